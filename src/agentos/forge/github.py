"""``GitHubForge``: the :class:`~agentos.forge.base.Forge` protocol over GitHub's REST and GraphQL APIs.

Readiness (docs/security.md). An issue is ready when it is open and either carries the ready
label or, when a :class:`ProjectConfig` is given for its repo, its Projects v2 card's Status is
*Ready*. It is then run only if

* the person who made it ready has ``trusted_permission`` (default triage) or more on the repo
  (``GET /repos/{o}/{r}/collaborators/{user}/permission``, cached), or is in ``trusted_actors``; and
* its body was not edited after it was made ready (GraphQL ``Issue.lastEditedAt``, which only body
  edits move; REST has no body-edit time).

Label mode takes the ready moment and actor from the last ``labeled`` event of the ready label
(``GET …/issues/{n}/events``, conditional). Board mode takes them from the Status field value
(``updatedAt`` and ``creator`` of the single-select value). A verdict is cached against the issue's
``updated_at`` (board: the value's ``updatedAt`` and ``lastEditedAt``), which moves on every label and
body change, so an idle poll costs one conditional list request (a free 304) per repo in label mode and
one small GraphQL query per *board* in board mode: repos that share a board share one read of it per
poll. A read serves each repo once (a repo's next poll reads afresh), for at most ``board_ttl`` seconds,
and is dropped when agentos moves a card itself.

Creates are idempotent: every create first looks for what it may already have made (PR by
head branch; comment and issue by the hidden ``marker(key)``), and a create that fails in a way that
may have left it applied (:class:`OutcomeUnknown`: a timeout, a dropped connection, a 5xx) is followed
by another look before it is tried again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Literal, TypeVar
from urllib.parse import quote

import httpx
import structlog

from agentos.forge._github_checks import CheckReader, check_run_state, combine_states
from agentos.forge._github_http import (
    API_VERSION,
    JSON,
    AppAuth,
    Auth,
    ClientStats,
    GitHubClient,
    GitHubError,
    OutcomeUnknown,
    RateLimited,
    TokenAuth,
    backoff_delay,
    load_app_key,
    rate_limit_wait,
    route_of,
)
from agentos.forge._github_merge_queue import GitHubMergeQueue
from agentos.forge._github_payloads import _comment, _dig, _issue, _pull, _RestPull
from agentos.forge._github_projects import (
    _M_SET_STATUS,
    _MIRROR,
    BoardOption,
    ProjectConfig,
    StatusField,
    missing_status_options,
    options_with,
    read_status_field,
    set_status_options,
)
from agentos.forge._github_readiness import Permission, ReadyGate, ready_verdict, split_repo
from agentos.forge._github_reviews import GitHubReviews
from agentos.forge.base import (
    READY_LABEL,
    BoardStatus,
    Checks,
    Comment,
    ForgeError,
    Issue,
    MergeReason,
    MergeResult,
    NotFound,
    PullRequest,
    marker,
)
from agentos.redact import redact

if TYPE_CHECKING:
    from agentos.config import RepoConfig

__all__ = [
    "API_VERSION",
    "GIT_CREDENTIAL_HELPER",
    "AppAuth",
    "Auth",
    "BoardOption",
    "ClientStats",
    "GitHubClient",
    "GitHubError",
    "GitHubForge",
    "OutcomeUnknown",
    "Permission",
    "ProjectConfig",
    "RateLimited",
    "StatusField",
    "TokenAuth",
    "backoff_delay",
    "check_run_state",
    "combine_states",
    "load_app_key",
    "missing_status_options",
    "options_with",
    "rate_limit_wait",
    "read_status_field",
    "ready_verdict",
    "route_of",
    "set_status_options",
]

GIT_TOKEN_ENV = "AGENTOS_GIT_TOKEN"
GIT_CREDENTIAL_HELPER = (
    f'!f() {{ test "$1" = get || exit 0; echo username=x-access-token; echo "password=${GIT_TOKEN_ENV}"; }}; f'
)
CREATE_ATTEMPTS = 3

_log = structlog.get_logger("agentos.forge.github")
_T = TypeVar("_T")


# ---------------------------------------------------------------------------------------------- policies


def _default_git_base(api_base: str) -> str:
    url = httpx.URL(api_base)
    if url.host == "api.github.com":
        return "https://github.com"
    path = url.path.rstrip("/")
    path = path.removesuffix("/api/v3")
    return str(url.copy_with(path=path or "/")).rstrip("/")


# ---------------------------------------------------------------------------------------------- forge


class GitHubForge:
    """The :class:`~agentos.forge.base.Forge` protocol on GitHub (``kind = "github"``; repos are ``owner/name``).

    ``projects`` maps a repo to its board (readiness from the board, cards moved with the task);
    ``trusted_actors`` are logins trusted without a permission lookup (e.g. ``agentos[bot]``, whose
    issues carry the ready label); ``git_base_url`` is where ``git`` pushes (default: derived from the
    API base, ``https://github.com`` for api.github.com); ``checks_grace`` is how long after a PR's last
    update a head with no checks at all counts as pending rather than success; ``board_ttl`` bounds how
    long one read of a board may serve the other repos that share it (a poll of all repos takes less).
    """

    kind = "github"
    checks_merge_result = False  # GitHub's checks ran on the head: a PR behind its base is rebased before merging
    issue_writer = None  # `agentos issue` files issues on the local forge; here they are GitHub's own

    def __init__(
        self,
        client: GitHubClient,
        *,
        ready_label: str = READY_LABEL,
        projects: Mapping[str, ProjectConfig] | None = None,
        trusted_permission: Permission = "triage",
        trusted_actors: Iterable[str] = (),
        git_base_url: str | None = None,
        fetch_action_logs: bool = True,
        checks_grace: float = 120.0,
        permission_ttl: float = 600.0,
        board_ttl: float = 2.0,
    ) -> None:
        self._client = client
        self.ready_label = ready_label
        self._projects = dict(projects or {})
        self.git_base_url = (git_base_url or _default_git_base(client.base_url)).rstrip("/")
        self._gate = ReadyGate(
            client,
            ready_label=ready_label,
            projects=self._projects,
            trusted_permission=trusted_permission,
            trusted_actors=trusted_actors,
            permission_ttl=permission_ttl,
            board_ttl=board_ttl,
        )
        self._checks = CheckReader(client, fetch_action_logs=fetch_action_logs, checks_grace=checks_grace)
        self._reviews = GitHubReviews(client, self._gate.trusted)
        self._queue = GitHubMergeQueue(client, self._checks)

    def __repr__(self) -> str:
        return f"<GitHubForge {self._gate!r} {self._client!r}>"

    async def aclose(self) -> None:
        await self._client.aclose()

    @property
    def reviews(self) -> GitHubReviews:
        """PR reviews and comments, their authors judged by the readiness rule (:mod:`._github_reviews`)."""
        return self._reviews

    @property
    def merge_queue(self) -> GitHubMergeQueue:
        """GitHub's merge queue, for base branches whose rulesets require it (:mod:`._github_merge_queue`)."""
        return self._queue

    @property
    def credentials(self) -> GitHubForge:
        """The git credentials capability: :meth:`git_credentials`."""
        return self

    def reconfigure(self, repos: Sequence[RepoConfig]) -> None:
        """Nothing to learn: repos are named per call, and a change of boards needs a restart (daemon.reload)."""

    @property
    def stats(self) -> ClientStats:
        """The client's request counters (``stats.counted``: requests that count against the rate limit)."""
        return self._client.stats

    # -- issues ---------------------------------------------------------------------------------------

    async def ready_issues(self, repo: str) -> list[Issue]:
        """Open issues made ready by a trusted person and not edited since, oldest first (see module doc)."""
        split_repo(repo)
        return await self._gate.ready_issues(repo)

    async def get_issue(self, repo: str, number: int) -> Issue:
        split_repo(repo)
        return _issue(repo, await self._client.get(f"/repos/{repo}/issues/{number}"))

    async def list_issues(self, repo: str, *, state: Literal["open", "closed", "all"] = "open") -> list[Issue]:
        """Issues (not PRs) in ``state``, oldest first."""
        split_repo(repo)
        raw = await self._client.paginate(f"/repos/{repo}/issues", params={"state": state})
        issues = [_issue(repo, x) for x in raw if _dig(x, "pull_request") is None]
        return sorted(issues, key=lambda i: i.number)

    async def create_issue(self, repo: str, title: str, body: str, labels: list[str], *, key: str) -> Issue:
        """Create an issue, or return the open one whose body carries ``marker(key)`` (found by listing)."""
        tag = marker(key)
        payload: JSON = {"title": redact(title), "body": f"{redact(body)}\n\n{tag}", "labels": list(labels)}

        async def find() -> Issue | None:
            return next((i for i in await self.list_issues(repo) if tag in i.body), None)

        async def create() -> Issue:
            return _issue(repo, await self._client.post(f"/repos/{repo}/issues", json=payload))

        return await self._create_once("issue", repo, find, create)

    async def comment(self, repo: str, number: int, body: str, *, key: str) -> Comment:
        """Comment (redacted, with ``marker(key)``), unless a comment carrying the marker is already there."""
        tag = marker(key)
        payload: JSON = {"body": f"{redact(body)}\n\n{tag}"}

        async def find() -> Comment | None:
            return next((c for c in await self.comments(repo, number) if tag in c.body), None)

        async def create() -> Comment:
            return _comment(await self._client.post(f"/repos/{repo}/issues/{number}/comments", json=payload))

        return await self._create_once("comment", repo, find, create)

    async def comments(self, repo: str, number: int) -> list[Comment]:
        split_repo(repo)
        return [_comment(x) for x in await self._client.paginate(f"/repos/{repo}/issues/{number}/comments")]

    async def add_labels(self, repo: str, number: int, labels: list[str]) -> None:
        """Add labels (GitHub creates a missing label with a default colour). Safe to repeat."""
        split_repo(repo)
        if labels:
            payload: JSON = {"labels": list(labels)}
            await self._client.post(f"/repos/{repo}/issues/{number}/labels", json=payload, idempotent=True)

    async def remove_label(self, repo: str, number: int, label: str) -> None:
        """Remove a label; a label that is not there is not an error."""
        split_repo(repo)
        try:
            await self._client.delete(f"/repos/{repo}/issues/{number}/labels/{quote(label, safe='')}")
        except NotFound:
            pass

    async def close_issue(self, repo: str, number: int) -> None:
        split_repo(repo)
        payload: JSON = {"state": "closed", "state_reason": "completed"}
        await self._client.patch(f"/repos/{repo}/issues/{number}", json=payload)

    async def set_board_status(self, repo: str, issue: int, status: BoardStatus) -> None:
        """Mirror ``status`` in labels (running/blocked), then move the Projects v2 card when a board is configured.

        A card not yet on the board is added to it.
        """
        current = set((await self.get_issue(repo, issue)).labels)
        add, remove = _MIRROR[status]
        if missing := [label for label in add if label not in current]:
            await self.add_labels(repo, issue, missing)
        for label in remove:
            if label in current:
                await self.remove_label(repo, issue, label)
        project = self._projects.get(repo)
        if project is None:
            return
        meta = await self._gate.project_meta(repo, project)
        option = meta.options.get(project.option_name(status).lower())
        if option is None:
            raise ForgeError(
                f"board of {repo} has no {project.status_field!r} option {project.option_name(status)!r} "
                f"(has: {', '.join(sorted(meta.options)) or 'none'})"
            )
        item = await self._gate.item_id(repo, issue, meta)
        variables: dict[str, JSON] = {"project": meta.id, "item": item, "field": meta.field_id, "option": option}
        await self._client.graphql(_M_SET_STATUS, variables, idempotent=True)
        self._gate.board_moved(meta, project)
        _log.info("board_status_set", repo=repo, issue=issue, status=status)

    # -- pull requests --------------------------------------------------------------------------------

    async def find_pr(self, repo: str, head: str) -> PullRequest | None:
        """The open PR for branch ``head``, else the latest merged one; closed unmerged PRs are ignored."""
        owner, _ = split_repo(repo)
        raw = await self._client.paginate(f"/repos/{repo}/pulls", params={"head": f"{owner}:{head}", "state": "all"})
        prs = [_pull(repo, x) for x in raw]
        prs = [p for p in prs if p.head == head]
        for state in ("open", "merged"):
            found = [p for p in prs if p.state == state]
            if found:
                return max(found, key=lambda p: p.number)
        return None

    async def open_pr(self, repo: str, *, head: str, base: str, title: str, body: str) -> PullRequest:
        """Open a PR, or return the one already open (or merged) for ``head``."""
        payload: JSON = {"title": redact(title), "head": head, "base": base, "body": redact(body)}

        async def create() -> PullRequest:
            try:
                return _pull(repo, await self._client.post(f"/repos/{repo}/pulls", json=payload))
            except GitHubError as exc:
                if exc.status == 422 and "already exists" in exc.message and (found := await self.find_pr(repo, head)):
                    return found
                raise

        return await self._create_once("pr", repo, lambda: self.find_pr(repo, head), create)

    async def get_pr(self, repo: str, number: int) -> PullRequest:
        return _pull(repo, await self._raw_pull(repo, number))

    async def open_prs(self, repo: str) -> list[PullRequest]:
        split_repo(repo)
        raw = await self._client.paginate(f"/repos/{repo}/pulls", params={"state": "open"})
        return sorted((_pull(repo, x) for x in raw), key=lambda p: p.number)

    async def checks(self, repo: str, number: int) -> Checks:
        """Check runs and commit statuses on the PR's head, combined; failing runs carry summary and log tail.

        With no checks at all the head is pending for ``checks_grace`` seconds after the PR's last update
        (CI may not have registered yet), then success (a repo without CI).
        """
        return await self._checks.read(repo, await self._raw_pull(repo, number))

    async def merge_pr(self, repo: str, number: int, *, sha: str, title: str, body: str) -> MergeResult:
        """Squash-merge if the head is still ``sha``, then delete the head branch; where the base requires the merge
        queue, enqueue the PR instead (``reason="queued"``, see :meth:`_enqueue`).

        A refusal (405/409/422: head moved, not mergeable) is ``merged=False`` with GitHub's message,
        unless the PR turns out to be merged already, which is success.
        """
        raw = await self._raw_pull(repo, number)
        if raw.merged_at is None and raw.state == "open" and await self._queue.required(repo, raw.base.ref):
            return await self._enqueue(repo, raw, sha)
        subject = title if title.endswith(f"(#{number})") else f"{title} (#{number})"
        payload: JSON = {
            "merge_method": "squash",
            "sha": sha,
            "commit_title": redact(subject),
            "commit_message": redact(body),
        }
        try:
            data = await self._client.put(f"/repos/{repo}/pulls/{number}/merge", json=payload)
        except GitHubError as exc:
            if exc.status not in (405, 409, 422):
                raise
            pr = await self._raw_pull(repo, number)
            if pr.merged_at is None:
                _log.info("pr_merge_refused", repo=repo, pr=number, status=exc.status, message=exc.message)
                return MergeResult(merged=False, reason=_refusal(exc.message), message=exc.message)
            result = MergeResult(merged=True, reason="merged", sha=pr.merge_commit_sha or "", message="already merged")
        else:
            merged_sha = _dig(data, "sha")
            merged = merged_sha if isinstance(merged_sha, str) else ""
            result = MergeResult(merged=True, reason="merged", sha=merged, message="merged")
            pr = await self._raw_pull(repo, number)
        if pr.head.repo is None or pr.head.repo.full_name.lower() == repo.lower():
            await self._delete_branch(repo, pr.head.ref)
        _log.info("pr_merged", repo=repo, pr=number, sha=result.sha)
        return result

    async def _enqueue(self, repo: str, pr: _RestPull, sha: str) -> MergeResult:
        """Put the PR in the base's merge queue (GraphQL ``enqueuePullRequest``), guarded by ``sha``.

        GitHub merges it when its merge group's checks pass. A refusal is read like a refused merge
        (conflict, head moved…), unless the PR merged meanwhile."""
        try:
            entry = await self._queue.enqueue(repo, pr.node_id, sha)
        except GitHubError as exc:
            if exc.status != 200 or isinstance(exc, RateLimited):  # an HTTP failure, not GitHub's answer to the PR
                raise
            if (await self._raw_pull(repo, pr.number)).merged_at is not None:
                return MergeResult(merged=True, reason="merged", sha=sha, message="already merged")
            _log.info("pr_enqueue_refused", repo=repo, pr=pr.number, message=exc.message)
            return MergeResult(merged=False, reason=_refusal(exc.message), message=exc.message)
        _log.info("github_pr_enqueued", repo=repo, pr=pr.number, position=entry.position, state=entry.state)
        message = f"in the merge queue of {pr.base.ref} at position {entry.position} ({entry.state})"
        return MergeResult(merged=False, reason="queued", sha=sha, message=message)

    async def close_pr(self, repo: str, number: int, *, comment: str = "") -> None:
        """Close without merging, after an optional comment (idempotent by its text)."""
        if comment:
            digest = hashlib.sha256(comment.encode()).hexdigest()[:12]
            await self.comment(repo, number, comment, key=f"close-pr-{number}-{digest}")
        await self._client.patch(f"/repos/{repo}/pulls/{number}", json={"state": "closed"})

    async def board_options(self, repo: str) -> list[str]:
        """The option names (lower-cased) of the status field of ``repo``'s board.

        Raises :class:`NotFound` when the board is not there and :class:`ForgeError` when it has no
        single-select field of that name (``agentos doctor`` reports both).
        """
        project = self._projects.get(repo)
        if project is None:
            raise ForgeError(f"no Projects v2 board is configured for {repo}")
        return sorted((await self._gate.project_meta(repo, project)).options)

    async def git_credentials(self, repo: str) -> tuple[str, dict[str, str]]:
        """The HTTPS remote of ``repo`` and the env that lets ``git push`` authenticate to it.

        The token travels in ``AGENTOS_GIT_TOKEN`` and a ``credential.helper`` set through
        ``GIT_CONFIG_COUNT``/``GIT_CONFIG_KEY_n`` reads it: nothing on disk, nothing in argv, nothing
        in the URL. Inherited helpers are reset first. Give this env to git only, never to an agent.
        """
        split_repo(repo)
        token = await self._client.token()
        env = {
            "GIT_CONFIG_COUNT": "2",
            "GIT_CONFIG_KEY_0": "credential.helper",
            "GIT_CONFIG_VALUE_0": "",
            "GIT_CONFIG_KEY_1": "credential.helper",
            "GIT_CONFIG_VALUE_1": GIT_CREDENTIAL_HELPER,
            "GIT_TERMINAL_PROMPT": "0",
            GIT_TOKEN_ENV: token,
        }
        return f"{self.git_base_url}/{repo}.git", env

    # -- internals ------------------------------------------------------------------------------------

    async def _create_once(
        self, what: str, repo: str, find: Callable[[], Awaitable[_T | None]], create: Callable[[], Awaitable[_T]]
    ) -> _T:
        split_repo(repo)
        last: OutcomeUnknown | None = None
        for attempt in range(1, CREATE_ATTEMPTS + 1):
            found = await find()
            if found is not None:
                if last is not None:
                    _log.info("github_create_found_after_failure", what=what, repo=repo, attempt=attempt)
                return found
            try:
                return await create()
            except OutcomeUnknown as exc:
                _log.warning("github_create_outcome_unknown", what=what, repo=repo, attempt=attempt, error=exc.message)
                last = exc
                if attempt < CREATE_ATTEMPTS:
                    await self._client.sleep(backoff_delay(attempt, 0.5))
        assert last is not None
        raise last

    async def _raw_pull(self, repo: str, number: int) -> _RestPull:
        split_repo(repo)
        return _RestPull.model_validate(await self._client.get(f"/repos/{repo}/pulls/{number}"))

    async def _delete_branch(self, repo: str, branch: str) -> None:
        try:
            await self._client.delete(f"/repos/{repo}/git/refs/heads/{quote(branch, safe='/')}")
        except NotFound:
            return
        except GitHubError as exc:
            if exc.status != 422:  # "Reference does not exist"
                raise
            return
        _log.info("branch_deleted", repo=repo, branch=branch)


def _refusal(message: str) -> MergeReason:
    """Why GitHub refused a merge, from its message (405 "not mergeable", 409 "Head branch was modified")."""
    text = message.lower()
    if "conflict" in text or "not mergeable" in text:
        return "conflict"
    if "head" in text and ("moved" in text or "modified" in text):
        return "head_moved"
    return "refused"
