"""A fake GitHub on 127.0.0.1: REST, GraphQL (Projects v2) and git smart HTTP over real HTTP.

Point :class:`agentos.forge.github.GitHubClient` at ``fake.url`` with ``TokenAuth(fake.token)`` (login
``agentos-bot``, admin on every repo). State lives in memory (:attr:`FakeGitHub.state`); every repo is also
a real bare git repository under ``fake.git_root``:

* ``git push`` over HTTP: ``{fake.url}/{owner}/{name}.git`` is served by ``git http-backend`` and wants
  Basic auth with any user name and a valid token as password, so the credential helper of
  ``GitHubForge.git_credentials`` is exercised for real (``GitHubForge(git_base_url=None)`` derives this
  URL from the client's base URL);
* or a ``file://`` remote: :meth:`FakeGitHub.file_url` is the same bare repository on disk (no auth).

The merge endpoint squashes (or merges) the head onto the base in that repository with ``git merge-tree``
and ``git commit-tree``, so merged commits are real. Response shapes, status codes and headers follow
GitHub's: ``ETag`` on every GET and 304 on a matching ``If-None-Match`` (per token, and free), ``Link``
pagination honouring ``per_page``, ``x-ratelimit-*`` headers, 403/429 with ``retry-after``.

Merge queues: :meth:`fake.queues.require <tests.fakes.github_merge_queue.FakeMergeQueues.require>` puts a
ruleset requiring GitHub's merge queue on a branch; entries, merge groups and their checks are modelled in
:mod:`tests.fakes.github_merge_queue`.

Reviews: :meth:`FakeGitHub.add_review` (with line comments) and :meth:`FakeGitHub.add_comment`, read back by
``GET …/pulls/{n}/reviews``, ``GET …/pulls/{n}/comments`` and ``GET …/issues/{n}/comments``; a reply in a review
thread is ``POST …/pulls/{n}/comments/{id}/replies``.

GraphQL is matched by *operation name* (the ones ``GitHubForge`` sends: ``AgentosProject``,
``AgentosProjectById``, ``AgentosBoardItems``, ``AgentosReadyEdits``, ``AgentosIssueItems``, ``AgentosAddItem``,
``AgentosSetStatus``, the merge queue's ``AgentosMergeQueue``, ``AgentosEnqueue``, ``AgentosQueueDrop`` and
``AgentosDequeue``, and ``AgentosSetStatusOptions`` that ``agentos init`` sends), not parsed; variables are honoured.

Webhooks: :meth:`FakeGitHub.add_webhook` (URL, secret) makes the fake deliver signed events there as GitHub
does (:mod:`tests.fakes.github_hooks`): ``issues`` labeled/unlabeled, ``issue_comment``, ``pull_request``
opened/closed, ``pull_request_review``, ``check_run``, ``status``; :meth:`FakeGitHub.deliver` sends any other.

Tokens: ``fake.token`` is unlimited; :meth:`~FakeGitHub.add_classic_token` answers with ``X-OAuth-Scopes``;
:meth:`~FakeGitHub.add_fine_grained_token` and a GitHub App's installation tokens (:meth:`~FakeGitHub.enable_app`:
the JWT is verified with the app's public key, RS256, against :attr:`FakeGitHub.clock`) are held to their
permissions on REST routes and git push, with GitHub's 403 and ``x-accepted-github-permissions`` header.

Fault switches (API requests only; ``method``/``path`` narrow them, ``path`` is a regex searched in the path):
:meth:`~FakeGitHub.fail_next` (5xx), :meth:`~FakeGitHub.secondary_limit` (403 + ``retry-after``),
:meth:`~FakeGitHub.exhaust_rate_limit` (403, ``x-ratelimit-remaining: 0``), :meth:`~FakeGitHub.drop_connections`,
:meth:`~FakeGitHub.create_then_stall` (apply the request, then stall past the client's timeout),
:meth:`~FakeGitHub.fail_randomly` (a seeded share of requests answer 5xx, some after being applied), and
:attr:`~FakeGitHub.latency`. Timestamps come from a fake clock that starts at 2025-01-01T00:00:00Z and
advances one second per change, so "edited after labelled" is never a tie.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import itertools
import json
import os
import random
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import jwt
import pytest_asyncio
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fakes.github_hooks import Delivery, WebhookSender
from tests.fakes.github_merge_queue import FakeMergeQueue, FakeMergeQueues

__all__ = [
    "FakeGitHub",
    "FakeIssue",
    "FakeProject",
    "FakePull",
    "FakeRepo",
    "Fault",
    "Flaky",
    "RequestRecord",
    "app_key_pair",
    "fake_github",
]

BOT_LOGIN = "agentos-bot"
APP_LOGIN = "agentos-app[bot]"
FAKE_EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
DEFAULT_OPTIONS = ("Todo", "Ready", "In Progress", "In Review", "Blocked", "Done")
RATE_LIMIT = 5000
ROLES = ("read", "triage", "write", "maintain", "admin")
ROLE_KEYS = {"pull": "read", "triage": "triage", "push": "write", "maintain": "maintain", "admin": "admin"}
APP_PERMISSIONS = {
    "metadata": "read",
    "issues": "write",
    "pull_requests": "write",
    "contents": "write",
    "checks": "read",
    "statuses": "read",
    "actions": "read",
    "organization_projects": "write",
}
"""What the docs (docs/github.md) tell an app owner to grant; the default of :meth:`FakeGitHub.enable_app`."""
CLOSING = re.compile(r"(?i)\b(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?)\s+#(\d+)\b")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
FaultKind = Literal["status", "secondary", "exhaust", "drop", "stall_after"]
LOGIN = web.RequestKey("login", str)


@dataclass
class Fault:
    """The next ``count`` matching API requests misbehave as ``kind`` says."""

    kind: FaultKind
    count: int
    method: str | None = None
    path: str | None = None
    status: int = 502
    seconds: float = 0.0

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (
            self.path is None or bool(re.search(self.path, path))
        )


@dataclass
class Flaky:
    """Every matching API request fails with ``status`` with probability ``rate`` (seeded, so a run repeats).

    A share ``applied`` of those failures come *after* the request was applied, as when a proxy answers
    502 after the backend did the work: a create then exists although the client saw a 5xx.
    """

    rate: float
    status: int = 502
    applied: float = 0.5
    method: str | None = None
    path: str | None = None
    seed: int = 0
    failed: int = 0
    failed_after_apply: int = 0
    rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def roll(self, method: str, path: str) -> Literal["before", "after"] | None:
        """Whether this request fails, and if so before or after it is applied."""
        if self.method is not None and self.method != method:
            return None
        if self.path is not None and not re.search(self.path, path):
            return None
        if self.rng.random() >= self.rate:
            return None
        self.failed += 1
        if self.rng.random() < self.applied:
            self.failed_after_apply += 1
            return "after"
        return "before"


@dataclass
class RequestRecord:
    """One request the fake answered (status 0: the connection was dropped)."""

    method: str
    path: str
    query: str
    status: int
    login: str | None = None


@dataclass
class FakeComment:
    id: int
    user: str
    body: str
    created_at: str
    updated_at: str


@dataclass
class FakeIssue:
    """An issue, or the issue half of a pull request (``is_pr``): title, body, labels, comments, events."""

    number: int
    node_id: str
    title: str
    body: str
    user: str
    created_at: str
    updated_at: str
    state: str = "open"
    state_reason: str | None = None
    closed_at: str | None = None
    last_edited_at: str | None = None
    labels: list[str] = field(default_factory=list)
    comments: list[FakeComment] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    is_pr: bool = False


@dataclass
class FakeReview:
    """A submitted review: ``state`` is GitHub's (``CHANGES_REQUESTED``, ``APPROVED``, ``COMMENTED``, …)."""

    id: int
    user: str
    state: str
    body: str
    submitted_at: str
    commit_id: str


@dataclass
class FakeReviewComment:
    """A comment on a line of a PR's diff; ``in_reply_to_id`` makes it a reply in that comment's thread."""

    id: int
    review_id: int | None
    user: str
    body: str
    path: str
    line: int | None
    created_at: str
    commit_id: str
    in_reply_to_id: int | None = None


@dataclass
class FakePull:
    """The pull-request half: branches, merge state; ``head_sha`` is frozen when the PR closes."""

    number: int
    node_id: str
    head: str
    base: str
    head_sha: str = ""
    merged_at: str | None = None
    merge_commit_sha: str | None = None
    merged_by: str | None = None
    reviews: list[FakeReview] = field(default_factory=list)
    review_comments: list[FakeReviewComment] = field(default_factory=list)


@dataclass
class FakeRepo:
    full_name: str
    id: int
    path: Path
    default_branch: str = "main"
    issues: dict[int, FakeIssue] = field(default_factory=dict)
    pulls: dict[int, FakePull] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    permissions: dict[str, str] = field(default_factory=dict)
    check_runs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    statuses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    job_logs: dict[int, str] = field(default_factory=dict)
    workflow_runs: dict[str, int] = field(default_factory=dict)  # head sha → the one workflow run id
    merge_queues: dict[str, FakeMergeQueue] = field(default_factory=dict)  # branch → its required merge queue
    next_number: int = 1

    @property
    def owner(self) -> str:
        return self.full_name.split("/")[0]

    @property
    def name(self) -> str:
        return self.full_name.split("/")[1]


@dataclass
class FakeProjectItem:
    id: str
    repo: str
    number: int
    status: str | None = None  # option name
    updated_at: str | None = None
    creator: str | None = None
    history: list[tuple[str, str]] = field(default_factory=list)  # (status, who set it), oldest first


@dataclass
class FakeProject:
    id: str
    owner: str
    number: int
    field_id: str
    field_name: str
    options: dict[str, str]  # name → option id
    items: list[FakeProjectItem] = field(default_factory=list)
    styles: dict[str, tuple[str, str]] = field(default_factory=dict)  # option id → (color, description)


@dataclass
class FakeState:
    """Everything the fake knows; tests read and poke it directly."""

    repos: dict[str, FakeRepo] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)  # token → login
    installation_tokens: dict[str, float] = field(default_factory=dict)  # token → expiry (epoch, fake.clock)
    token_scopes: dict[str, str] = field(default_factory=dict)  # classic token → its X-OAuth-Scopes header
    token_permissions: dict[str, dict[str, str]] = field(default_factory=dict)  # fine-grained token → permissions
    projects: dict[str, FakeProject] = field(default_factory=dict)
    requests: list[RequestRecord] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    flaky: Flaky | None = None
    remaining: dict[str, int] = field(default_factory=lambda: {"core": RATE_LIMIT, "graphql": RATE_LIMIT})
    reset_at: int = field(default_factory=lambda: int(time.time()) + 3600)
    app_id: str | None = None
    app_public_key: str | None = None
    app_permissions: dict[str, str] = field(default_factory=dict)
    installation_id: int | None = None
    installation_token_ttl: float = 3600.0
    graphql_page_size: int = 100
    checks_forbidden: bool = False  # as for a fine-grained PAT: check-runs answers 403
    _tick: int = 0
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1000))

    def now(self) -> str:
        """The fake clock: one second later on every call."""
        self._tick += 1
        return (FAKE_EPOCH + timedelta(seconds=self._tick)).strftime("%Y-%m-%dT%H:%M:%SZ")

    def new_id(self) -> int:
        return next(self._ids)

    def take_fault(self, method: str, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.count > 0 and fault.matches(method, path):
                fault.count -= 1
                if fault.count == 0:
                    self.faults.remove(fault)
                return fault
        return None


def _user(login: str) -> dict[str, Any]:
    return {
        "login": login,
        "id": int(hashlib.sha1(login.encode()).hexdigest()[:8], 16),
        "type": "Bot" if login.endswith("[bot]") else "User",
        "html_url": f"https://github.com/{login}",
    }


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response(
        {"message": message, "documentation_url": "https://docs.github.com/rest", **extra}, status=status
    )


_LEVELS = {"none": 0, "read": 1, "write": 2, "admin": 3}
_ROUTE_PERMISSIONS: tuple[tuple[str, str], ...] = (  # (path regex after /repos/{o}/{r}, permission)
    (r"^$", "metadata"),
    (r"^/rules/", "metadata"),
    (r"^/collaborators/", "metadata"),
    (r"^/(issues|labels)\b", "issues"),
    (r"^/pulls/\d+/merge$", "contents"),
    (r"^/pulls\b", "pull_requests"),
    (r"^/git/", "contents"),
    (r"^/commits/[^/]+/check-runs$", "checks"),
    (r"^/(commits/[^/]+/status|statuses/)", "statuses"),
    (r"^/actions/", "actions"),
)


@functools.cache
def app_key_pair(which: int = 0) -> tuple[str, str]:
    """A real RSA key pair ``(private PEM, public PEM)`` for GitHub App tests, made once per ``which`` per process."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private.decode(), public.decode()


def _permission_for(method: str, path: str) -> tuple[str, str] | None:
    """The fine-grained permission (name, level) a REST route needs; None when not modelled (GraphQL, /user)."""
    match = re.match(r"^/repos/[^/]+/[^/]+(.*)$", path)
    if match is None:
        return None
    rest = match.group(1)
    for pattern, name in _ROUTE_PERMISSIONS:
        if re.search(pattern, rest):
            return name, "read" if method in ("GET", "HEAD") or name == "metadata" else "write"
    return None


class FakeGitHub:
    """The server and its handle (see the module docstring). Use the ``fake_github`` fixture in tests."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.git_root = root / "git"
        self.state = FakeState()
        self.latency = 0.0
        self.login = BOT_LOGIN
        self.token = "ghp_" + secrets.token_hex(18)
        self.state.tokens[self.token] = BOT_LOGIN
        self.url = ""
        self.clock: Callable[[], float] = time.time
        """The fake's time for JWT checks and installation-token expiry; share a test clock with the client."""
        self._runner: web.AppRunner | None = None
        self._release = asyncio.Event()
        self.hooks: list[WebhookSender] = []
        self.queues = FakeMergeQueues(self)

    def __repr__(self) -> str:
        return f"<FakeGitHub {self.url} repos={len(self.state.repos)} requests={len(self.state.requests)}>"

    # -- lifecycle ------------------------------------------------------------------------------------

    async def start(self) -> None:
        self.git_root.mkdir(parents=True, exist_ok=True)
        app = web.Application(middlewares=[self._middleware], client_max_size=256 * 1024 * 1024)
        r = app.router
        repo = "/repos/{owner}/{repo}"
        r.add_post("/app/installations/{iid}/access_tokens", self._h_access_token)
        r.add_post("/graphql", self._h_graphql)
        r.add_get("/user", self._h_user)
        r.add_get(repo, self._h_repo)
        r.add_get(repo + "/labels/{name}", self._h_get_label)
        r.add_post(repo + "/labels", self._h_create_label)
        r.add_get(repo + "/issues", self._h_list_issues)
        r.add_post(repo + "/issues", self._h_create_issue)
        r.add_get(repo + "/issues/{number:\\d+}", self._h_get_issue)
        r.add_patch(repo + "/issues/{number:\\d+}", self._h_patch_issue)
        r.add_get(repo + "/issues/{number:\\d+}/comments", self._h_list_comments)
        r.add_post(repo + "/issues/{number:\\d+}/comments", self._h_create_comment)
        r.add_get(repo + "/issues/{number:\\d+}/events", self._h_events)
        r.add_post(repo + "/issues/{number:\\d+}/labels", self._h_add_labels)
        r.add_delete(repo + "/issues/{number:\\d+}/labels/{name}", self._h_remove_label)
        r.add_get(repo + "/collaborators/{user}/permission", self._h_permission)
        r.add_get(repo + "/pulls", self._h_list_pulls)
        r.add_post(repo + "/pulls", self._h_create_pull)
        r.add_get(repo + "/pulls/{number:\\d+}", self._h_get_pull)
        r.add_patch(repo + "/pulls/{number:\\d+}", self._h_patch_pull)
        r.add_put(repo + "/pulls/{number:\\d+}/merge", self._h_merge)
        r.add_get(repo + "/pulls/{number:\\d+}/reviews", self._h_list_reviews)
        r.add_get(repo + "/pulls/{number:\\d+}/comments", self._h_list_review_comments)
        r.add_post(repo + "/pulls/{number:\\d+}/comments/{id:\\d+}/replies", self._h_reply_review_comment)
        r.add_delete(repo + "/git/refs/heads/{ref:.+}", self._h_delete_ref)
        r.add_get(repo + "/commits/{sha}/check-runs", self._h_check_runs)
        r.add_get(repo + "/commits/{sha}/status", self._h_combined_status)
        r.add_post(repo + "/statuses/{sha}", self._h_create_status)
        r.add_get(repo + "/actions/jobs/{id:\\d+}/logs", self._h_job_logs)
        r.add_get(repo + "/actions/runs", self._h_workflow_runs)
        r.add_get(repo + "/actions/runs/{run:\\d+}/jobs", self._h_workflow_jobs)
        r.add_get("/_blob/job-logs/{owner}/{repo}/{id:\\d+}", self._h_blob_logs)
        self.queues.routes(r)
        r.add_route("*", "/{owner}/{gitdir:[^/]+\\.git}/{tail:.*}", self._h_git)
        self._runner = web.AppRunner(app, shutdown_timeout=0.2, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def stop(self) -> None:
        self._release.set()
        for hook in self.hooks:
            await hook.aclose()
        if self._runner is not None:
            await self._runner.cleanup()

    # -- setup helpers --------------------------------------------------------------------------------

    async def add_repo(
        self, full_name: str, *, default_branch: str = "main", files: dict[str, str] | None = None
    ) -> FakeRepo:
        """A repo with a bare git repository holding one commit of ``files`` (top-level names only)."""
        owner, name = full_name.split("/")
        path = self.git_root / owner / f"{name}.git"
        path.parent.mkdir(parents=True, exist_ok=True)
        await self._git(None, "init", "--bare", "-q", "-b", default_branch, str(path))
        entries = []
        for file_name, content in sorted((files or {"README.md": f"# {name}\n"}).items()):
            blob = await self._git(path, "hash-object", "-w", "--stdin", stdin=content.encode())
            entries.append(f"100644 blob {blob}\t{file_name}\n")
        tree = await self._git(path, "mktree", stdin="".join(entries).encode())
        commit = await self._git(path, "commit-tree", tree, "-m", "Initial commit")
        await self._git(path, "update-ref", f"refs/heads/{default_branch}", commit)
        repo = FakeRepo(full_name=full_name, id=self.state.new_id(), path=path, default_branch=default_branch)
        repo.permissions[BOT_LOGIN] = "admin"
        repo.permissions[APP_LOGIN] = "write"
        self.state.repos[full_name] = repo
        return repo

    def add_user(self, login: str, *, repo: str | None = None, role: str | None = None) -> str:
        """A user with a token of their own (returned); with ``repo`` and ``role``, a collaborator there."""
        token = "ghp_" + secrets.token_hex(18)
        self.state.tokens[token] = login
        if repo is not None and role is not None:
            self.set_permission(repo, login, role)
        return token

    def set_permission(self, repo: str, login: str, role: str) -> None:
        """``role``: read, triage, write, maintain or admin."""
        self.state.repos[repo].permissions[login] = role

    def enable_app(
        self,
        app_id: int | str,
        installation_id: int,
        public_key_pem: str,
        *,
        token_ttl: float = 3600.0,
        permissions: dict[str, str] | None = None,
    ) -> None:
        """Accept JWTs of ``app_id`` signed by the key of ``public_key_pem`` (RS256, verified) for installation
        tokens of ``installation_id``, valid ``token_ttl`` seconds of :attr:`clock` and limited to ``permissions``
        (default: everything agentos needs, as GitHub's ``{"issues": "write", …}``)."""
        self.state.app_id = str(app_id)
        self.state.app_public_key = public_key_pem
        self.state.installation_id = installation_id
        self.state.installation_token_ttl = token_ttl
        self.state.app_permissions = dict(APP_PERMISSIONS if permissions is None else permissions)

    def add_classic_token(self, scopes: str, *, login: str = BOT_LOGIN) -> str:
        """A classic PAT of ``login`` whose responses carry ``X-OAuth-Scopes: scopes`` (returned)."""
        token = "ghp_" + secrets.token_hex(18)
        self.state.tokens[token] = login
        self.state.token_scopes[token] = scopes
        return token

    def add_fine_grained_token(self, permissions: dict[str, str], *, login: str = BOT_LOGIN) -> str:
        """A fine-grained PAT of ``login`` limited to ``permissions`` (``{"issues": "read", …}``; returned)."""
        token = "github_pat_" + secrets.token_hex(24)
        self.state.tokens[token] = login
        self.state.token_permissions[token] = dict(permissions)
        return token

    def add_webhook(self, url: str, secret: str) -> WebhookSender:
        """A repository webhook: every event from now on is delivered, signed, to ``url`` (content type JSON)."""
        hook = WebhookSender(url, secret, hook_id=len(self.hooks) + 1)
        self.hooks.append(hook)
        return hook

    def deliver(self, repo: str, event: str, payload: dict[str, Any], *, actor: str = BOT_LOGIN) -> list[Delivery]:
        """Deliver ``event`` to every webhook, ``repository`` and ``sender`` added to ``payload`` as GitHub does."""
        fake_repo = self.state.repos[repo]
        full = {
            **payload,
            "repository": {
                "id": fake_repo.id,
                "node_id": f"R_{fake_repo.id}",
                "name": fake_repo.name,
                "full_name": fake_repo.full_name,
                "private": True,
                "owner": _user(fake_repo.owner),
                "default_branch": fake_repo.default_branch,
            },
            "sender": _user(actor),
        }
        return [hook.send(event, full) for hook in self.hooks]

    def _hook_pull(self, repo: FakeRepo, pull: FakePull) -> dict[str, Any]:
        """A PR as webhook payloads carry it (the stored head sha: no git call in a sync path)."""
        return {
            **self._issue_json(repo, repo.issues[pull.number]),
            "url": f"{self.url}/repos/{repo.full_name}/pulls/{pull.number}",
            "head": {"ref": pull.head, "sha": pull.head_sha},
            "base": {"ref": pull.base},
            "merged": pull.merged_at is not None,
            "merged_at": pull.merged_at,
        }

    def add_label(self, repo: str, name: str, color: str = "ededed") -> None:
        """A repository label (as created in the web UI or by ``agentos init``)."""
        self.state.repos[repo].labels[name] = color

    def add_issue(
        self, repo: str, title: str, body: str = "", *, author: str = "alice", labels: Iterable[str] = ()
    ) -> FakeIssue:
        """An open issue; ``labels`` are set without events (use :meth:`label_issue` for a labelled event)."""
        return self._new_issue(self.state.repos[repo], title, body, author, list(labels))

    def label_issue(self, repo: str, number: int, label: str, *, actor: str) -> None:
        """``actor`` adds ``label`` (recording a ``labeled`` event), as if done in the web UI."""
        self._add_label(self.state.repos[repo], self.state.repos[repo].issues[number], label, actor)

    def unlabel_issue(self, repo: str, number: int, label: str, *, actor: str) -> None:
        self._remove_label(self.state.repos[repo].issues[number], label, actor)

    def add_comment(self, repo: str, number: int, body: str, *, author: str) -> FakeComment:
        """``author`` comments on an issue or a PR's conversation, as in the web UI."""
        issue = self.state.repos[repo].issues[number]
        now = self.state.now()
        comment = FakeComment(self.state.new_id(), author, body, now, now)
        issue.comments.append(comment)
        issue.updated_at = now
        if self.hooks:
            fake_repo = self.state.repos[repo]
            payload = {
                "action": "created",
                "issue": self._issue_json(fake_repo, issue),
                "comment": self._comment_json(fake_repo, issue, comment),
            }
            self.deliver(repo, "issue_comment", payload, actor=author)
        return comment

    def add_review(
        self,
        repo: str,
        number: int,
        *,
        author: str,
        state: str = "CHANGES_REQUESTED",
        body: str = "",
        comments: Iterable[tuple[str, int, str]] = (),
    ) -> FakeReview:
        """``author`` submits a review of PR ``number`` with line ``comments`` (path, line, text)."""
        pull = self.state.repos[repo].pulls[number]
        now = self.state.now()
        review = FakeReview(self.state.new_id(), author, state, body, now, pull.head_sha)
        pull.reviews.append(review)
        for path, line, text in comments:
            pull.review_comments.append(
                FakeReviewComment(self.state.new_id(), review.id, author, text, path, line, now, pull.head_sha)
            )
        self.state.repos[repo].issues[number].updated_at = now
        if self.hooks:
            fake_repo = self.state.repos[repo]
            payload = {
                "action": "submitted",
                "review": self._review_json(fake_repo, number, review),
                "pull_request": self._hook_pull(fake_repo, pull),
            }
            self.deliver(repo, "pull_request_review", payload, actor=author)
        return review

    def edit_issue_body(self, repo: str, number: int, body: str) -> None:
        """The author edits the body: ``lastEditedAt`` and ``updated_at`` move."""
        issue = self.state.repos[repo].issues[number]
        issue.body = body
        issue.last_edited_at = issue.updated_at = self.state.now()

    def add_check_run(
        self,
        repo: str,
        sha: str,
        name: str,
        *,
        status: str = "completed",
        conclusion: str | None = "success",
        title: str | None = None,
        summary: str | None = None,
        text: str | None = None,
        app: str = "github-actions",
        log: str | None = None,
    ) -> int:
        """A check run on ``sha``; ``log`` becomes the Actions job log served by the logs endpoint."""
        fake_repo = self.state.repos[repo]
        run_id = self.state.new_id()
        now = self.state.now()
        fake_repo.check_runs.setdefault(sha, []).append(
            {
                "id": run_id,
                "name": name,
                "head_sha": sha,
                "status": status,
                "conclusion": conclusion if status == "completed" else None,
                "started_at": now,
                "completed_at": now if status == "completed" else None,
                "output": {"title": title, "summary": summary, "text": text, "annotations_count": 0},
                "app": {"slug": app, "name": app},
                "details_url": f"https://github.com/{repo}/runs/{run_id}",
                "html_url": f"https://github.com/{repo}/runs/{run_id}",
            }
        )
        if log is not None:
            fake_repo.job_logs[run_id] = log
        if self.hooks:
            action = "completed" if status == "completed" else "created"
            self.deliver(repo, "check_run", {"action": action, "check_run": fake_repo.check_runs[sha][-1]}, actor=app)
        return run_id

    def add_status(self, repo: str, sha: str, context: str, state: str, description: str = "") -> None:
        """A commit status (``success``, ``pending``, ``failure``, ``error``); the latest per context wins."""
        self._status(self.state.repos[repo], sha, context, state, description)

    def add_project(
        self, owner: str, number: int, *, field_name: str = "Status", options: Iterable[str] = DEFAULT_OPTIONS
    ) -> FakeProject:
        project = FakeProject(
            id=f"PVT_{self.state.new_id()}",
            owner=owner,
            number=number,
            field_id=f"PVTSSF_{self.state.new_id()}",
            field_name=field_name,
            options={name: secrets.token_hex(4) for name in options},
        )
        self.state.projects[project.id] = project
        return project

    def add_card(
        self, project: FakeProject, repo: str, number: int, status: str | None = None, *, actor: str = ""
    ) -> FakeProjectItem:
        item = FakeProjectItem(id=f"PVTI_{self.state.new_id()}", repo=repo, number=number)
        project.items.append(item)
        if status is not None:
            self.set_card_status(project, repo, number, status, actor=actor or BOT_LOGIN)
        return item

    def set_card_status(self, project: FakeProject, repo: str, number: int, status: str, *, actor: str) -> None:
        """``actor`` moves the card (adding it to the board first if needed)."""
        item = self._card(project, repo, number) or self.add_card(project, repo, number)
        item.status, item.updated_at, item.creator = status, self.state.now(), actor
        item.history.append((status, actor))

    def card_status(self, project: FakeProject, repo: str, number: int) -> str | None:
        item = self._card(project, repo, number)
        return item.status if item else None

    def card_history(self, project: FakeProject, repo: str, number: int) -> list[str]:
        """Every status the card was given, oldest first, repeats included."""
        item = self._card(project, repo, number)
        return [status for status, _ in item.history] if item else []

    # -- fault switches -------------------------------------------------------------------------------

    def fail_next(
        self, count: int = 1, status: int = 502, *, method: str | None = None, path: str | None = None
    ) -> None:
        self.state.faults.append(Fault("status", count, method, path, status=status))

    def secondary_limit(
        self, count: int = 1, *, retry_after: int = 3, method: str | None = None, path: str | None = None
    ) -> None:
        self.state.faults.append(Fault("secondary", count, method, path, status=403, seconds=retry_after))

    def exhaust_rate_limit(
        self, count: int = 1, *, reset_in: int = 60, method: str | None = None, path: str | None = None
    ) -> None:
        self.state.faults.append(Fault("exhaust", count, method, path, status=403, seconds=reset_in))

    def fail_randomly(
        self,
        rate: float,
        *,
        status: int = 502,
        applied: float = 0.5,
        seed: int = 0,
        method: str | None = None,
        path: str | None = None,
    ) -> Flaky:
        """From now on a share ``rate`` of API requests fail with ``status`` (see :class:`Flaky`); returns its counters.

        The one-shot switches (``fail_next``…) take precedence; :meth:`stop_failing` turns it off.
        """
        self.state.flaky = Flaky(rate, status, applied, method, path, seed)
        return self.state.flaky

    def stop_failing(self) -> None:
        self.state.flaky = None

    def drop_connections(self, count: int = 1, *, method: str | None = None, path: str | None = None) -> None:
        self.state.faults.append(Fault("drop", count, method, path))

    def create_then_stall(
        self, count: int = 1, *, method: str = "POST", path: str | None = None, seconds: float = 2.0
    ) -> None:
        """Apply the request, then hold the response ``seconds`` (past the client's timeout)."""
        self.state.faults.append(Fault("stall_after", count, method, path, seconds=seconds))

    # -- inspection -----------------------------------------------------------------------------------

    def file_url(self, repo: str) -> str:
        return self.state.repos[repo].path.as_uri()

    def requests_to(self, method: str, path: str) -> list[RequestRecord]:
        """Recorded requests with ``method`` whose path matches the regex ``path``."""
        return [r for r in self.state.requests if r.method == method and re.search(path, r.path)]

    async def branch_sha(self, repo: str, branch: str) -> str | None:
        return await self._rev(self.state.repos[repo], branch)

    async def git(self, repo: str, *args: str) -> str:
        """Run git in the repo's bare repository; returns stdout stripped."""
        return await self._git(self.state.repos[repo].path, *args)

    # -- plumbing -------------------------------------------------------------------------------------

    async def _git(self, cwd: Path | None, *args: str, stdin: bytes | None = None, check: bool = True) -> str:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.root),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_AUTHOR_NAME": "Fake GitHub",
            "GIT_AUTHOR_EMAIL": "noreply@github.invalid",
            "GIT_COMMITTER_NAME": "GitHub",
            "GIT_COMMITTER_EMAIL": "noreply@github.com",
        }
        proc = await asyncio.create_subprocess_exec(
            "git",
            *args,
            cwd=cwd,
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate(stdin)
        if check and proc.returncode != 0:
            raise RuntimeError(f"git {' '.join(args)} failed: {err.decode(errors='replace')}")
        return out.decode().strip() if proc.returncode == 0 else ""

    async def _rev(self, repo: FakeRepo, branch: str) -> str | None:
        sha = await self._git(repo.path, "rev-parse", "--verify", "-q", f"refs/heads/{branch}", check=False)
        return sha or None

    def _new_issue(
        self, repo: FakeRepo, title: str, body: str, author: str, labels: list[str], *, is_pr: bool = False
    ) -> FakeIssue:
        number = repo.next_number
        repo.next_number += 1
        now = self.state.now()
        node = f"{'PR' if is_pr else 'I'}_{repo.id}_{number}"
        issue = FakeIssue(number, node, title, body, author, now, now, is_pr=is_pr)
        repo.issues[number] = issue
        for label in labels:
            repo.labels.setdefault(label, "ededed")
            if label not in issue.labels:
                issue.labels.append(label)
        return issue

    def _event(self, issue: FakeIssue, event: str, actor: str, **extra: Any) -> None:
        now = self.state.now()
        issue.events.append(
            {
                "id": self.state.new_id(),
                "node_id": f"E_{self.state.new_id()}",
                "event": event,
                "actor": _user(actor),
                "created_at": now,
                "commit_id": None,
                **extra,
            }
        )
        issue.updated_at = now

    def _add_label(self, repo: FakeRepo, issue: FakeIssue, label: str, actor: str) -> None:
        color = repo.labels.setdefault(label, "ededed")
        if label not in issue.labels:
            issue.labels.append(label)
            self._event(issue, "labeled", actor, label={"name": label, "color": color})
            self._announce_issue(repo, issue, "labeled", actor, label={"name": label, "color": color})

    def _remove_label(self, issue: FakeIssue, label: str, actor: str) -> bool:
        if label not in issue.labels:
            return False
        issue.labels.remove(label)
        self._event(issue, "unlabeled", actor, label={"name": label, "color": "ededed"})
        repo = next((r for r in self.state.repos.values() if r.issues.get(issue.number) is issue), None)
        if repo is not None:
            self._announce_issue(repo, issue, "unlabeled", actor, label={"name": label, "color": "ededed"})
        return True

    def _announce_issue(self, repo: FakeRepo, issue: FakeIssue, action: str, actor: str, **extra: Any) -> None:
        """An ``issues`` (or, on a PR, ``pull_request``) delivery to the webhooks, if any."""
        if not self.hooks:
            return
        if issue.is_pr:
            pull = self._hook_pull(repo, repo.pulls[issue.number])
            self.deliver(
                repo.full_name,
                "pull_request",
                {"action": action, "number": issue.number, "pull_request": pull, **extra},
                actor=actor,
            )
        else:
            self.deliver(
                repo.full_name,
                "issues",
                {"action": action, "issue": self._issue_json(repo, issue), **extra},
                actor=actor,
            )

    def _close(self, issue: FakeIssue, actor: str, reason: str = "completed") -> None:
        if issue.state != "closed":
            issue.state, issue.state_reason = "closed", reason
            self._event(issue, "closed", actor)
            issue.closed_at = issue.updated_at

    def _status(self, repo: FakeRepo, sha: str, context: str, state: str, description: str) -> dict[str, Any]:
        now = self.state.now()
        status = {
            "id": self.state.new_id(),
            "context": context,
            "state": state,
            "description": description,
            "target_url": None,
            "created_at": now,
            "updated_at": now,
        }
        repo.statuses.setdefault(sha, []).append(status)
        if self.hooks:
            self.deliver(repo.full_name, "status", {"sha": sha, **status})
        return status

    def _card(self, project: FakeProject, repo: str, number: int) -> FakeProjectItem | None:
        return next((i for i in project.items if i.repo == repo and i.number == number), None)

    # -- middleware: faults, auth, rate limit, ETag ---------------------------------------------------

    def _login_of(self, request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() not in ("bearer", "token"):
            return None
        if token in self.state.tokens:
            return self.state.tokens[token]
        if self._installation_token_valid(token):
            return APP_LOGIN
        return None

    def _installation_token_valid(self, token: str) -> bool:
        expiry = self.state.installation_tokens.get(token)
        return expiry is not None and expiry > self.clock()

    def _denied(self, request: web.Request) -> web.Response | None:
        """A 403 as GitHub answers a fine-grained or installation token lacking the route's permission."""
        held = self._permissions_of(request)
        needed = _permission_for(request.method, request.path)
        if held is None or needed is None:
            return None
        permissions, who = held
        name, level = needed
        if _LEVELS.get(permissions.get(name, "none"), 0) >= _LEVELS[level]:
            return None
        response = _error(403, f"Resource not accessible by {who}")
        response.headers["x-accepted-github-permissions"] = f"{name}={level}"
        return response

    def _permissions_of(self, request: web.Request) -> tuple[dict[str, str], str] | None:
        """The permissions a fine-grained or installation token holds, and who holds it; None when unlimited."""
        token = request.headers.get("Authorization", "").partition(" ")[2]
        if token in self.state.installation_tokens:
            return self.state.app_permissions, "integration"
        if token in self.state.token_permissions:
            return self.state.token_permissions[token], "personal access token"
        return None

    def _rate_headers(self, resource: str) -> dict[str, str]:
        remaining = self.state.remaining[resource]
        return {
            "x-ratelimit-limit": str(RATE_LIMIT),
            "x-ratelimit-remaining": str(remaining),
            "x-ratelimit-used": str(RATE_LIMIT - remaining),
            "x-ratelimit-reset": str(self.state.reset_at),
            "x-ratelimit-resource": resource,
        }

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if path.startswith("/_blob/") or re.match(r"^/[^/]+/[^/]+\.git/", path):
            return await handler(request)
        record = RequestRecord(request.method, path, request.query_string, 0)
        self.state.requests.append(record)
        if self.latency:
            await asyncio.sleep(self.latency)
        resource = "graphql" if path == "/graphql" else "core"
        fault = self.state.take_fault(request.method, path)
        if fault is not None and fault.kind != "stall_after":
            faulty = self._faulty(request, fault, resource)
            record.status = faulty.status if fault.kind != "drop" else 0
            return faulty
        flaky = self.state.flaky.roll(request.method, path) if fault is None and self.state.flaky else None
        if flaky == "before":
            assert self.state.flaky is not None
            record.status = self.state.flaky.status
            return _error(record.status, "Server Error (injected)")
        response: web.StreamResponse
        if path.startswith("/app/"):
            response = await handler(request)
        else:
            login = self._login_of(request)
            if login is None:
                record.status = 401
                return _error(401, "Bad credentials")
            request[LOGIN] = login
            record.login = login
            denied = self._denied(request)
            if denied is not None:
                record.status = denied.status
                return denied
            try:
                response = await handler(request)
            except web.HTTPException as exc:  # the 404s of _repo/_issue/_pull and the logs redirect
                response = web.Response(status=exc.status, body=exc.body, headers=exc.headers)
        response = self._conditional(request, response, resource)
        scopes = self.state.token_scopes.get(request.headers.get("Authorization", "").partition(" ")[2])
        if scopes is not None:  # a classic PAT: GitHub lists its scopes on every response
            response.headers["X-OAuth-Scopes"] = scopes
        record.status = response.status
        if flaky == "after" and self.state.flaky is not None:  # applied; the client is told it failed
            record.status = self.state.flaky.status
            return _error(record.status, "Server Error (injected after the request was applied)")
        if fault is not None:  # stall_after: the work is done; the answer comes too late
            try:
                await asyncio.wait_for(self._release.wait(), fault.seconds)
            except TimeoutError:
                pass
        return response

    def _faulty(self, request: web.Request, fault: Fault, resource: str) -> web.Response:
        if fault.kind == "drop":
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=500)
        if fault.kind == "secondary":
            response = _error(
                403, "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
            )
            response.headers.update(self._rate_headers(resource))
            response.headers["retry-after"] = str(int(fault.seconds))
            return response
        if fault.kind == "exhaust":
            response = _error(403, "API rate limit exceeded for user ID 1.")
            response.headers.update(self._rate_headers(resource))
            response.headers["x-ratelimit-remaining"] = "0"
            response.headers["x-ratelimit-reset"] = str(int(time.time() + fault.seconds))
            return response
        return _error(fault.status, "Server Error (injected)")

    def _conditional(self, request: web.Request, response: web.StreamResponse, resource: str) -> web.StreamResponse:
        if not isinstance(response, web.Response):
            return response
        if request.method == "GET" and response.status == 200 and isinstance(response.body, bytes):
            token = request.headers.get("Authorization", "")
            etag = 'W/"' + hashlib.sha1(token.encode() + response.body).hexdigest() + '"'
            if request.headers.get("If-None-Match") == etag:
                not_modified = web.Response(status=304, headers={"ETag": etag, **self._rate_headers(resource)})
                return not_modified
            response.headers["ETag"] = etag
        if self.state.remaining[resource] > 0:
            self.state.remaining[resource] -= 1
        response.headers.update(self._rate_headers(resource))
        return response

    # -- pagination -----------------------------------------------------------------------------------

    def _page(
        self, request: web.Request, items: list[Any], *, key: str | None = None, extra: dict[str, Any] | None = None
    ) -> web.Response:
        per_page = max(1, min(100, int(request.query.get("per_page", "30"))))
        page = max(1, int(request.query.get("page", "1")))
        last = max(1, -(-len(items) // per_page))
        chunk = items[(page - 1) * per_page : page * per_page]
        links = []
        if page < last:
            links.append(f'<{request.url.update_query(page=page + 1)}>; rel="next"')
            links.append(f'<{request.url.update_query(page=last)}>; rel="last"')
        if page > 1:
            links.append(f'<{request.url.update_query(page=1)}>; rel="first"')
            links.append(f'<{request.url.update_query(page=page - 1)}>; rel="prev"')
        body: Any = chunk if key is None else {"total_count": len(items), key: chunk, **(extra or {})}
        response = web.json_response(body)
        if links:
            response.headers["Link"] = ", ".join(links)
        return response

    # -- REST: helpers --------------------------------------------------------------------------------

    def _repo(self, request: web.Request) -> FakeRepo:
        full = f"{request.match_info['owner']}/{request.match_info['repo']}"
        repo = self.state.repos.get(full)
        if repo is None:
            raise web.HTTPNotFound(text=json.dumps({"message": "Not Found"}), content_type="application/json")
        return repo

    def _issue(self, repo: FakeRepo, request: web.Request) -> FakeIssue:
        issue = repo.issues.get(int(request.match_info["number"]))
        if issue is None:
            raise web.HTTPNotFound(text=json.dumps({"message": "Not Found"}), content_type="application/json")
        return issue

    def _pull(self, repo: FakeRepo, request: web.Request) -> FakePull:
        pull = repo.pulls.get(int(request.match_info["number"]))
        if pull is None:
            raise web.HTTPNotFound(text=json.dumps({"message": "Not Found"}), content_type="application/json")
        return pull

    def _issue_json(self, repo: FakeRepo, issue: FakeIssue) -> dict[str, Any]:
        api = f"{self.url}/repos/{repo.full_name}"
        data: dict[str, Any] = {
            "id": repo.id * 100000 + issue.number,
            "node_id": issue.node_id,
            "url": f"{api}/issues/{issue.number}",
            "repository_url": api,
            "html_url": f"https://github.com/{repo.full_name}/{'pull' if issue.is_pr else 'issues'}/{issue.number}",
            "number": issue.number,
            "title": issue.title,
            "body": issue.body or None,
            "state": issue.state,
            "state_reason": issue.state_reason,
            "locked": False,
            "labels": [
                {"name": name, "color": repo.labels.get(name, "ededed"), "default": False} for name in issue.labels
            ],
            "user": _user(issue.user),
            "assignees": [],
            "comments": len(issue.comments),
            "created_at": issue.created_at,
            "updated_at": issue.updated_at,
            "closed_at": issue.closed_at,
        }
        if issue.is_pr:
            data["pull_request"] = {
                "url": f"{api}/pulls/{issue.number}",
                "merged_at": repo.pulls[issue.number].merged_at,
            }
        return data

    async def _pull_json(self, repo: FakeRepo, pull: FakePull) -> dict[str, Any]:
        issue = repo.issues[pull.number]
        if issue.state == "open":
            pull.head_sha = await self._rev(repo, pull.head) or pull.head_sha
        base_sha = await self._rev(repo, pull.base) or ""
        repo_json = {"full_name": repo.full_name, "name": repo.name, "owner": _user(repo.owner), "id": repo.id}
        return {
            **self._issue_json(repo, issue),
            "id": repo.id * 100000 + pull.number,
            "node_id": pull.node_id,
            "url": f"{self.url}/repos/{repo.full_name}/pulls/{pull.number}",
            "head": {"ref": pull.head, "sha": pull.head_sha, "label": f"{repo.owner}:{pull.head}", "repo": repo_json},
            "base": {"ref": pull.base, "sha": base_sha, "label": f"{repo.owner}:{pull.base}", "repo": repo_json},
            "merged": pull.merged_at is not None,
            "merged_at": pull.merged_at,
            "merge_commit_sha": pull.merge_commit_sha,
            "mergeable": None if issue.state != "open" else await self.queues.mergeable(repo, pull) is not False,
            "draft": False,
        }

    @staticmethod
    async def _json(request: web.Request) -> dict[str, Any]:
        try:
            data = await request.json()
        except ValueError as exc:
            raise web.HTTPBadRequest(
                text=json.dumps({"message": "Problems parsing JSON"}), content_type="application/json"
            ) from exc
        return data if isinstance(data, dict) else {}

    # -- REST: handlers -------------------------------------------------------------------------------

    async def _h_access_token(self, request: web.Request) -> web.Response:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or self.state.app_id is None or self.state.app_public_key is None:
            return _error(401, "A JSON web token could not be decoded")
        try:  # times are checked below against the fake's clock
            claims = jwt.decode(
                token,
                self.state.app_public_key,
                algorithms=["RS256"],
                options={"verify_exp": False, "verify_iat": False, "require": ["iat", "exp", "iss"]},
            )
        except jwt.PyJWTError:
            return _error(401, "A JSON web token could not be decoded")
        if str(claims["iss"]) != self.state.app_id:
            return _error(401, "'Issuer' claim ('iss') must be an Integer")
        now = self.clock()
        if float(claims["iat"]) > now + 60:
            return _error(401, "'Issued at' claim ('iat') must be an Integer representing a time in the past")
        if float(claims["exp"]) < now or float(claims["exp"]) - float(claims["iat"]) > 600:
            return _error(401, "'Expiration time' claim ('exp') is too far in the future or expired")
        if int(request.match_info["iid"]) != self.state.installation_id:
            return _error(404, "Not Found")
        minted = "ghs_" + secrets.token_hex(18)
        expires = now + self.state.installation_token_ttl
        self.state.installation_tokens[minted] = expires
        expires_at = datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "token": minted,
            "expires_at": expires_at,
            "permissions": self.state.app_permissions,
            "repository_selection": "selected",
        }
        return web.json_response(body, status=201)

    async def _h_user(self, request: web.Request) -> web.Response:
        if request[LOGIN] == APP_LOGIN:
            return _error(403, "Resource not accessible by integration")
        return web.json_response(_user(request[LOGIN]))

    async def _h_get_label(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        name = request.match_info["name"]
        if name not in repo.labels:
            return _error(404, "Not Found")
        return web.json_response({"name": name, "color": repo.labels[name], "default": False})

    async def _h_create_label(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        data = await self._json(request)
        name, color = str(data.get("name") or ""), str(data.get("color") or "ededed")
        if not name or name in repo.labels:
            code = "already_exists" if name else "missing_field"
            return _error(422, "Validation Failed", errors=[{"resource": "Label", "code": code, "field": "name"}])
        repo.labels[name] = color
        body = {"name": name, "color": color, "description": data.get("description"), "default": False}
        return web.json_response(body, status=201)

    async def _h_repo(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        role = repo.permissions.get(request[LOGIN], "read")
        body: dict[str, Any] = {
            "id": repo.id,
            "full_name": repo.full_name,
            "name": repo.name,
            "owner": _user(repo.owner),
            "default_branch": repo.default_branch,
            "private": True,
            "role_name": role,
        }
        if request[LOGIN] != APP_LOGIN:  # GitHub tells users their role; an installation gets none
            rank = ROLES.index(role)
            body["permissions"] = {key: rank >= ROLES.index(needed) for key, needed in ROLE_KEYS.items()}
        return web.json_response(body)

    async def _h_list_issues(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        state = request.query.get("state", "open")
        wanted = [x for x in request.query.get("labels", "").split(",") if x]
        issues = [
            i
            for i in repo.issues.values()
            if (state == "all" or i.state == state) and all(label in i.labels for label in wanted)
        ]
        issues.sort(key=lambda i: i.number, reverse=request.query.get("direction", "desc") == "desc")
        return self._page(request, [self._issue_json(repo, i) for i in issues])

    async def _h_create_issue(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        data = await self._json(request)
        if not data.get("title"):
            return _error(
                422, "Validation Failed", errors=[{"resource": "Issue", "field": "title", "code": "missing_field"}]
            )
        issue = self._new_issue(repo, str(data["title"]), str(data.get("body") or ""), request[LOGIN], [])
        for label in data.get("labels") or []:
            self._add_label(repo, issue, str(label), request[LOGIN])
        return web.json_response(self._issue_json(repo, issue), status=201)

    async def _h_get_issue(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        return web.json_response(self._issue_json(repo, self._issue(repo, request)))

    async def _h_patch_issue(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        issue = self._issue(repo, request)
        data = await self._json(request)
        if "title" in data and data["title"] != issue.title:
            self._event(issue, "renamed", request[LOGIN], rename={"from": issue.title, "to": data["title"]})
            issue.title = str(data["title"])
        if "body" in data and (data["body"] or "") != issue.body:
            issue.body = str(data["body"] or "")
            issue.last_edited_at = issue.updated_at = self.state.now()
        if data.get("state") == "closed":
            self._close(issue, request[LOGIN], str(data.get("state_reason") or "completed"))
        elif data.get("state") == "open" and issue.state == "closed":
            issue.state, issue.state_reason, issue.closed_at = "open", "reopened", None
            self._event(issue, "reopened", request[LOGIN])
        return web.json_response(self._issue_json(repo, issue))

    async def _h_list_comments(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        issue = self._issue(repo, request)
        return self._page(request, [self._comment_json(repo, issue, c) for c in issue.comments])

    def _comment_json(self, repo: FakeRepo, issue: FakeIssue, c: FakeComment) -> dict[str, Any]:
        return {
            "id": c.id,
            "node_id": f"IC_{c.id}",
            "body": c.body,
            "user": _user(c.user),
            "created_at": c.created_at,
            "updated_at": c.updated_at,
            "html_url": f"https://github.com/{repo.full_name}/issues/{issue.number}#issuecomment-{c.id}",
            "issue_url": f"{self.url}/repos/{repo.full_name}/issues/{issue.number}",
        }

    async def _h_create_comment(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        issue = self._issue(repo, request)
        data = await self._json(request)
        now = self.state.now()
        comment = FakeComment(self.state.new_id(), request[LOGIN], str(data.get("body") or ""), now, now)
        issue.comments.append(comment)
        issue.updated_at = now
        return web.json_response(self._comment_json(repo, issue, comment), status=201)

    async def _h_events(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        return self._page(request, list(self._issue(repo, request).events))

    async def _h_add_labels(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        issue = self._issue(repo, request)
        data = await self._json(request)
        for label in data.get("labels") or []:
            self._add_label(repo, issue, str(label), request[LOGIN])
        return web.json_response([{"name": n, "color": repo.labels[n], "default": False} for n in issue.labels])

    async def _h_remove_label(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        issue = self._issue(repo, request)
        if not self._remove_label(issue, request.match_info["name"], request[LOGIN]):
            return _error(404, "Label does not exist")
        return web.json_response([{"name": n, "color": repo.labels[n], "default": False} for n in issue.labels])

    async def _h_permission(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        login = request.match_info["user"]
        role = repo.permissions.get(login)
        if role is None:
            return _error(404, f"{login} is not a user")
        legacy = {"maintain": "write", "triage": "read"}.get(role, role)
        return web.json_response({"permission": legacy, "role_name": role, "user": _user(login)})

    async def _h_list_pulls(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        await self.queues.settle()
        state = request.query.get("state", "open")
        head = request.query.get("head")
        base = request.query.get("base")
        pulls = []
        for pull in sorted(repo.pulls.values(), key=lambda p: p.number, reverse=True):
            issue = repo.issues[pull.number]
            if state != "all" and issue.state != state:
                continue
            if head is not None and head not in (f"{repo.owner}:{pull.head}", pull.head):
                continue
            if base is not None and base != pull.base:
                continue
            pulls.append(await self._pull_json(repo, pull))
        return self._page(request, pulls)

    async def _h_create_pull(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        data = await self._json(request)
        head = str(data.get("head") or "").split(":")[-1]
        base = str(data.get("base") or "")
        head_sha, base_sha = await self._rev(repo, head), await self._rev(repo, base)
        if head_sha is None or base_sha is None:
            field_name = "head" if head_sha is None else "base"
            return _error(
                422, "Validation Failed", errors=[{"resource": "PullRequest", "field": field_name, "code": "invalid"}]
            )
        for pull in repo.pulls.values():
            if pull.head == head and repo.issues[pull.number].state == "open":
                return _error(
                    422,
                    "Validation Failed",
                    errors=[
                        {
                            "resource": "PullRequest",
                            "code": "custom",
                            "message": f"A pull request already exists for {repo.owner}:{head}.",
                        }
                    ],
                )
        if head_sha == base_sha:
            return _error(
                422,
                "Validation Failed",
                errors=[
                    {"resource": "PullRequest", "code": "custom", "message": f"No commits between {base} and {head}"}
                ],
            )
        issue = self._new_issue(
            repo, str(data.get("title") or head), str(data.get("body") or ""), request[LOGIN], [], is_pr=True
        )
        pull = FakePull(issue.number, issue.node_id, head, base, head_sha)
        repo.pulls[issue.number] = pull
        self._announce_issue(repo, issue, "opened", request[LOGIN])
        return web.json_response(await self._pull_json(repo, pull), status=201)

    async def _h_get_pull(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        await self.queues.settle()
        return web.json_response(await self._pull_json(repo, self._pull(repo, request)))

    async def _h_patch_pull(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        pull = self._pull(repo, request)
        issue = repo.issues[pull.number]
        data = await self._json(request)
        if "title" in data:
            issue.title = str(data["title"])
        if "body" in data:
            issue.body = str(data["body"] or "")
        if data.get("state") == "closed" and issue.state == "open":
            pull.head_sha = await self._rev(repo, pull.head) or pull.head_sha
            self._close(issue, request[LOGIN], "completed")
        return web.json_response(await self._pull_json(repo, pull))

    async def _h_merge(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        pull = self._pull(repo, request)
        issue = repo.issues[pull.number]
        data = await self._json(request)
        if issue.state != "open":
            return _error(405, "Pull Request is not mergeable")
        head_sha, base_sha = await self._rev(repo, pull.head), await self._rev(repo, pull.base)
        if head_sha is None or base_sha is None:
            return _error(422, "Head branch does not exist")
        if data.get("sha") and data["sha"] != head_sha:
            return _error(409, "Head branch was modified. Review and try the merge again.")
        method = data.get("merge_method", "merge")
        tree = await self._git(repo.path, "merge-tree", "--write-tree", base_sha, head_sha, check=False)
        if not tree:
            return _error(405, "Pull Request is not mergeable")
        tree = tree.splitlines()[0]
        title = str(data.get("commit_title") or f"{issue.title} (#{pull.number})")
        message = str(data.get("commit_message") or "")
        parents = ["-p", base_sha] + (["-p", head_sha] if method == "merge" else [])
        args = ["commit-tree", tree, *parents, "-m", title] + (["-m", message] if message else [])
        commit = await self._git(repo.path, *args)
        await self._git(repo.path, "update-ref", f"refs/heads/{pull.base}", commit, base_sha)
        self._merged(repo, pull, commit, head_sha, request[LOGIN])
        return web.json_response({"sha": commit, "merged": True, "message": "Pull Request successfully merged"})

    def _merged(self, repo: FakeRepo, pull: FakePull, commit: str, head_sha: str, actor: str) -> None:
        """The PR merged as ``commit`` (the base moved there already): closed, and the issues it closes."""
        issue = repo.issues[pull.number]
        pull.head_sha, pull.merged_at, pull.merge_commit_sha = head_sha, self.state.now(), commit
        pull.merged_by = actor
        self._event(issue, "merged", actor, commit_id=commit)
        self._close(issue, actor)
        self._announce_issue(repo, issue, "closed", actor)
        if pull.base == repo.default_branch:
            for ref in CLOSING.findall(issue.body):
                target = repo.issues.get(int(ref))
                if target is not None and not target.is_pr:
                    self._close(target, actor)

    def _review_json(self, repo: FakeRepo, number: int, r: FakeReview) -> dict[str, Any]:
        return {
            "id": r.id,
            "node_id": f"PRR_{r.id}",
            "user": _user(r.user),
            "body": r.body,
            "state": r.state,
            "submitted_at": r.submitted_at,
            "commit_id": r.commit_id,
            "author_association": "COLLABORATOR" if r.user in repo.permissions else "NONE",
            "html_url": f"https://github.com/{repo.full_name}/pull/{number}#pullrequestreview-{r.id}",
            "pull_request_url": f"{self.url}/repos/{repo.full_name}/pulls/{number}",
        }

    def _review_comment_json(self, repo: FakeRepo, number: int, c: FakeReviewComment) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": c.id,
            "node_id": f"PRRC_{c.id}",
            "pull_request_review_id": c.review_id,
            "user": _user(c.user),
            "body": c.body,
            "path": c.path,
            "line": c.line,
            "original_line": c.line,
            "side": "RIGHT",
            "commit_id": c.commit_id,
            "original_commit_id": c.commit_id,
            "diff_hunk": "@@",
            "created_at": c.created_at,
            "updated_at": c.created_at,
            "author_association": "COLLABORATOR" if c.user in repo.permissions else "NONE",
            "html_url": f"https://github.com/{repo.full_name}/pull/{number}#discussion_r{c.id}",
            "pull_request_url": f"{self.url}/repos/{repo.full_name}/pulls/{number}",
        }
        if c.in_reply_to_id is not None:
            data["in_reply_to_id"] = c.in_reply_to_id
        return data

    async def _h_list_reviews(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        pull = self._pull(repo, request)
        return self._page(request, [self._review_json(repo, pull.number, r) for r in pull.reviews])

    async def _h_list_review_comments(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        pull = self._pull(repo, request)
        return self._page(request, [self._review_comment_json(repo, pull.number, c) for c in pull.review_comments])

    async def _h_reply_review_comment(self, request: web.Request) -> web.Response:
        """A reply in a review thread: GitHub files it under the thread's first comment."""
        repo = self._repo(request)
        pull = self._pull(repo, request)
        top = next((c for c in pull.review_comments if c.id == int(request.match_info["id"])), None)
        if top is None:
            return _error(404, "Not Found")
        data = await self._json(request)
        now = self.state.now()
        root = top.in_reply_to_id or top.id
        reply = FakeReviewComment(
            self.state.new_id(),
            None,
            request[LOGIN],
            str(data.get("body") or ""),
            top.path,
            top.line,
            now,
            top.commit_id,
            in_reply_to_id=root,
        )
        pull.review_comments.append(reply)
        repo.issues[pull.number].updated_at = now
        return web.json_response(self._review_comment_json(repo, pull.number, reply), status=201)

    async def _h_delete_ref(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        ref = request.match_info["ref"]
        if await self._rev(repo, ref) is None:
            return _error(422, "Reference does not exist")
        await self._git(repo.path, "update-ref", "-d", f"refs/heads/{ref}")
        return web.Response(status=204)

    async def _h_check_runs(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        if self.state.checks_forbidden:
            response = _error(403, "Resource not accessible by personal access token")
            response.headers["x-accepted-github-permissions"] = "checks=read"
            return response
        return self._page(request, list(repo.check_runs.get(request.match_info["sha"], [])), key="check_runs")

    async def _h_combined_status(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        sha = request.match_info["sha"]
        latest: dict[str, dict[str, Any]] = {}
        for status in repo.statuses.get(sha, []):
            latest[status["context"]] = status
        states = {s["state"] for s in latest.values()}
        combined = (
            "failure"
            if states & {"failure", "error"}
            else "pending"
            if "pending" in states or not states
            else "success"
        )
        return web.json_response(
            {
                "state": combined,
                "sha": sha,
                "total_count": len(latest),
                "statuses": list(latest.values()),
                "repository": {"full_name": repo.full_name},
            }
        )

    async def _h_create_status(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        data = await self._json(request)
        status = self._status(
            repo,
            request.match_info["sha"],
            str(data.get("context") or "default"),
            str(data.get("state")),
            str(data.get("description") or ""),
        )
        return web.json_response(status, status=201)

    async def _h_job_logs(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        job = int(request.match_info["id"])
        if job not in repo.job_logs:
            return _error(404, "Not Found")
        raise web.HTTPFound(f"{self.url}/_blob/job-logs/{repo.full_name}/{job}?sig=fake")

    async def _h_workflow_runs(self, request: web.Request) -> web.Response:
        """One workflow run per head sha that has github-actions check runs (its jobs are those runs)."""
        repo = self._repo(request)
        sha, event = request.query.get("head_sha"), request.query.get("event")
        runs = []
        for head, checks in repo.check_runs.items():
            if (sha is None or head == sha) and any(c["app"]["slug"] == "github-actions" for c in checks):
                group = self.queues.group_branch(repo, head)
                kind = "pull_request" if group is None else "merge_group"
                if event is not None and event != kind:
                    continue
                branch = group or next((p.head for p in repo.pulls.values() if p.head_sha == head), None)
                run_id = repo.workflow_runs.setdefault(head, self.state.new_id())
                runs.append(
                    {
                        "id": run_id,
                        "name": "CI",
                        "head_sha": head,
                        "head_branch": branch,
                        "event": kind,
                        "status": "completed",
                        "run_attempt": 1,
                    }
                )
        runs.sort(key=lambda r: r["id"], reverse=True)  # newest first, as GitHub lists them
        return self._page(request, runs, key="workflow_runs")

    async def _h_workflow_jobs(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        run_id = int(request.match_info["run"])
        head = next((h for h, r in repo.workflow_runs.items() if r == run_id), None)
        if head is None:
            return _error(404, "Not Found")
        keys = ("id", "name", "status", "conclusion", "started_at", "completed_at")
        jobs = [
            {**{k: c[k] for k in keys}, "run_id": run_id, "head_sha": head, "steps": []}
            for c in repo.check_runs[head]
            if c["app"]["slug"] == "github-actions"
        ]
        return self._page(request, jobs, key="jobs")

    async def _h_blob_logs(self, request: web.Request) -> web.Response:
        repo = self.state.repos[f"{request.match_info['owner']}/{request.match_info['repo']}"]
        return web.Response(text=repo.job_logs[int(request.match_info["id"])], content_type="text/plain")

    # -- GraphQL --------------------------------------------------------------------------------------

    async def _h_graphql(self, request: web.Request) -> web.Response:
        data = await self._json(request)
        query = str(data.get("query") or "")
        variables = data.get("variables") or {}
        match = re.match(r"\s*(?:query|mutation)\s+(\w+)", query)
        op = getattr(self, f"_gql_{match.group(1)}", None) if match else None
        if op is None:
            name = match.group(1) if match else "anonymous"
            return web.json_response({"errors": [{"message": f"fake GitHub does not serve operation {name}"}]})
        result = op(request[LOGIN], variables)
        if asyncio.iscoroutine(result):  # the merge queue's operations run git
            result = await result
        return web.json_response(result)

    def _project_json(self, project: FakeProject, field_name: str) -> dict[str, Any]:
        field_json = None
        if field_name == project.field_name:
            field_json = {
                "id": project.field_id,
                "name": project.field_name,
                "options": [
                    {"id": oid, "name": name, "color": color, "description": description}
                    for name, oid in project.options.items()
                    for color, description in [project.styles.get(oid, ("GRAY", ""))]
                ],
            }
        return {"id": project.id, "field": field_json}

    def _gql_AgentosProject(self, login: str, v: dict[str, Any]) -> dict[str, Any]:
        for project in self.state.projects.values():
            if project.owner == v["owner"] and project.number == v["number"]:
                return {"data": {"repositoryOwner": {"projectV2": self._project_json(project, v["field"])}}}
        return {
            "data": {"repositoryOwner": {"projectV2": None}},
            "errors": [
                {
                    "type": "NOT_FOUND",
                    "path": ["repositoryOwner", "projectV2"],
                    "message": f"Could not resolve to a ProjectV2 with the number {v['number']}.",
                }
            ],
        }

    def _gql_AgentosProjectById(self, login: str, v: dict[str, Any]) -> dict[str, Any]:
        project = self.state.projects.get(v["id"])
        if project is None:
            return {
                "data": {"node": None},
                "errors": [
                    {
                        "type": "NOT_FOUND",
                        "path": ["node"],
                        "message": f"Could not resolve to a node with the global id of '{v['id']}'",
                    }
                ],
            }
        return {"data": {"node": self._project_json(project, v["field"])}}

    def _gql_AgentosBoardItems(self, login: str, v: dict[str, Any]) -> dict[str, Any]:
        project = self.state.projects[v["project"]]
        start = int(v.get("cursor") or 0)
        size = min(100, self.state.graphql_page_size)
        nodes = []
        for item in project.items[start : start + size]:
            issue = self.state.repos[item.repo].issues[item.number]
            value = None
            if v["field"] == project.field_name and item.status is not None:
                value = {"name": item.status, "updatedAt": item.updated_at, "creator": {"login": item.creator}}
            content = (
                {
                    "number": issue.number,
                    "state": issue.state.upper(),
                    "lastEditedAt": issue.last_edited_at,
                    "repository": {"nameWithOwner": item.repo},
                }
                if not issue.is_pr
                else {}
            )
            nodes.append({"id": item.id, "fieldValueByName": value, "content": content})
        end = start + len(nodes)
        page_info = {"hasNextPage": end < len(project.items), "endCursor": str(end)}
        return {"data": {"node": {"items": {"pageInfo": page_info, "nodes": nodes}}}}

    def _gql_AgentosReadyEdits(self, login: str, v: dict[str, Any]) -> dict[str, Any]:
        repo = self.state.repos[f"{v['owner']}/{v['name']}"]
        wanted = v.get("labels") or []
        issues = [
            i
            for i in sorted(repo.issues.values(), key=lambda i: i.number)
            if not i.is_pr and i.state == "open" and all(label in i.labels for label in wanted)
        ]
        start = int(v.get("cursor") or 0)
        size = min(100, self.state.graphql_page_size)
        chunk = issues[start : start + size]
        nodes = [{"number": i.number, "lastEditedAt": i.last_edited_at} for i in chunk]
        page_info = {"hasNextPage": start + len(chunk) < len(issues), "endCursor": str(start + len(chunk))}
        return {"data": {"repository": {"issues": {"pageInfo": page_info, "nodes": nodes}}}}

    def _gql_AgentosIssueItems(self, login: str, v: dict[str, Any]) -> dict[str, Any]:
        full = f"{v['owner']}/{v['name']}"
        issue = self.state.repos[full].issues[v["number"]]
        items = [
            {"id": item.id, "project": {"id": p.id}}
            for p in self.state.projects.values()
            for item in p.items
            if item.repo == full and item.number == issue.number
        ]
        return {"data": {"repository": {"issue": {"id": issue.node_id, "projectItems": {"nodes": items}}}}}

    def _gql_AgentosAddItem(self, login: str, v: dict[str, Any]) -> dict[str, Any]:
        project = self.state.projects[v["project"]]
        for repo in self.state.repos.values():
            for issue in repo.issues.values():
                if issue.node_id == v["content"]:
                    item = self._card(project, repo.full_name, issue.number) or self.add_card(
                        project, repo.full_name, issue.number
                    )
                    return {"data": {"addProjectV2ItemById": {"item": {"id": item.id}}}}
        return {"data": None, "errors": [{"type": "NOT_FOUND", "message": "content not found"}]}

    def _gql_AgentosSetStatus(self, login: str, v: dict[str, Any]) -> dict[str, Any]:
        project = self.state.projects[v["project"]]
        item = next((i for i in project.items if i.id == v["item"]), None)
        names = {oid: name for name, oid in project.options.items()}
        if item is None or v["field"] != project.field_id or v["option"] not in names:
            return {"data": None, "errors": [{"type": "UNPROCESSABLE", "message": "bad item, field or option"}]}
        item.status, item.updated_at, item.creator = names[v["option"]], self.state.now(), login
        item.history.append((item.status, login))
        return {"data": {"updateProjectV2ItemFieldValue": {"projectV2Item": {"id": item.id}}}}

    def _gql_AgentosSetStatusOptions(self, login: str, v: dict[str, Any]) -> dict[str, Any]:
        """``updateProjectV2Field`` with ``singleSelectOptions``: the list *replaces* the options. An option sent with
        the ``id`` of an existing one keeps it (and its cards' values); one without gets a new id; one left out is
        deleted and its cards lose their value, as GitHub does."""
        project = next((p for p in self.state.projects.values() if p.field_id == v["field"]), None)
        if project is None:
            message = f"Could not resolve to a node with the global id of '{v['field']}'"
            return {"data": {"updateProjectV2Field": None}, "errors": [{"type": "NOT_FOUND", "message": message}]}
        colors = {"BLUE", "GRAY", "GREEN", "ORANGE", "PINK", "PURPLE", "RED", "YELLOW"}
        known = {oid: name for name, oid in project.options.items()}
        options: dict[str, str] = {}
        styles: dict[str, tuple[str, str]] = {}
        for o in v["options"]:
            name, color, text = o.get("name"), o.get("color"), o.get("description")
            if not (isinstance(name, str) and isinstance(text, str) and color in colors):
                message = "Argument 'singleSelectOptions' on 'UpdateProjectV2FieldInput' has an invalid value"
                return {"data": None, "errors": [{"type": "INVALID", "message": message}]}
            if o.get("id") is not None and o["id"] not in known:
                return {"data": None, "errors": [{"type": "UNPROCESSABLE", "message": f"unknown option id {o['id']}"}]}
            oid = o.get("id") or secrets.token_hex(4)
            options[name] = oid
            styles[oid] = (color, text)
        names = {oid: name for name, oid in options.items()}
        for item in project.items:
            old = next((oid for oid, name in known.items() if name == item.status), None)
            item.status = names.get(old) if old is not None else item.status
        project.options, project.styles = options, styles
        field_json = self._project_json(project, project.field_name)["field"]
        return {"data": {"updateProjectV2Field": {"projectV2Field": field_json}}}

    def _gql_AgentosEnqueue(self, login: str, v: dict[str, Any]) -> Awaitable[dict[str, Any]]:
        return self.queues.gql_enqueue(login, v)

    def _gql_AgentosDequeue(self, login: str, v: dict[str, Any]) -> Awaitable[dict[str, Any]]:
        return self.queues.gql_dequeue(login, v)

    def _gql_AgentosMergeQueue(self, login: str, v: dict[str, Any]) -> Awaitable[dict[str, Any]]:
        return self.queues.gql_merge_queue(login, v)

    def _gql_AgentosQueueDrop(self, login: str, v: dict[str, Any]) -> Awaitable[dict[str, Any]]:
        return self.queues.gql_queue_drop(login, v)

    # -- git smart HTTP -------------------------------------------------------------------------------

    async def _h_git(self, request: web.Request) -> web.StreamResponse:
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        login = None
        if scheme.lower() == "basic":
            _, _, password = base64.b64decode(encoded).decode(errors="replace").partition(":")
            login = self.state.tokens.get(password) or (APP_LOGIN if self._installation_token_valid(password) else None)
        if login is None:
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="fake GitHub"'})
        pushing = "git-receive-pack" in request.path or request.query.get("service") == "git-receive-pack"
        if login == APP_LOGIN and _LEVELS.get(self.state.app_permissions.get("contents", "none"), 0) < (
            2 if pushing else 1
        ):
            return web.Response(status=403, text="Permission to this repository denied to the app.")
        full = f"{request.match_info['owner']}/{request.match_info['gitdir'].removesuffix('.git')}"
        if full not in self.state.repos:
            return web.Response(status=404, text="Repository not found.")
        body = await request.read()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.root),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_PROJECT_ROOT": str(self.git_root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": f"/{full}.git/{request.match_info['tail']}",
            "REQUEST_METHOD": request.method,
            "QUERY_STRING": request.query_string,
            "CONTENT_TYPE": request.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": login,
            "REMOTE_ADDR": "127.0.0.1",
        }
        if "Content-Encoding" in request.headers:
            env["HTTP_CONTENT_ENCODING"] = request.headers["Content-Encoding"]
        if "Git-Protocol" in request.headers:
            env["GIT_PROTOCOL"] = request.headers["Git-Protocol"]
        proc = await asyncio.create_subprocess_exec(
            "git",
            "http-backend",
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, _ = await proc.communicate(body)
        sep = b"\r\n\r\n" if b"\r\n\r\n" in out else b"\n\n"
        head, _, payload = out.partition(sep)
        status, headers = 200, {}
        for line in head.decode(errors="replace").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name and name.lower() != "content-length":
                headers[name.strip()] = value.strip()
        return web.Response(status=status, body=payload, headers=headers)


@pytest_asyncio.fixture
async def fake_github(tmp_path: Path) -> AsyncIterator[FakeGitHub]:
    """A running :class:`FakeGitHub` on 127.0.0.1 with no repos yet; stopped after the test."""
    fake = FakeGitHub(tmp_path / "fake-github")
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()
