"""``GitHubForge``: the :class:`~agentos.forge.base.Forge` protocol over GitHub's REST and GraphQL APIs.

Readiness (DESIGN §10, LESSONS #16). An issue is ready when it is open and either carries the ready
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

Creates are idempotent (LESSONS #2): every create first looks for what it may already have made (PR by
head branch; comment and issue by the hidden ``marker(key)``), and a create that fails in a way that
may have left it applied (:class:`OutcomeUnknown`: a timeout, a dropped connection, a 5xx) is followed
by another look before it is tried again.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Literal, TypeVar
from urllib.parse import quote

import httpx
import structlog

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
from agentos.forge._github_payloads import (
    _App,
    _CombinedStatus,
    _dig,
    _GqlEdits,
    _GqlIssueNode,
    _GqlItem,
    _GqlItems,
    _GqlProject,
    _RestCheckRun,
    _RestComment,
    _RestEvent,
    _RestIssue,
    _RestPermission,
    _RestPull,
)
from agentos.forge._github_projects import (
    _M_ADD_ITEM,
    _M_SET_STATUS,
    _MIRROR,
    _Q_BOARD,
    _Q_ISSUE_ITEMS,
    _Q_PROJECT,
    _Q_PROJECT_BY_ID,
    ProjectConfig,
    _BoardRead,
    _ProjectMeta,
)
from agentos.forge.base import (
    READY_LABEL,
    BoardStatus,
    CheckRun,
    Checks,
    CheckState,
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
    "ClientStats",
    "GitHubClient",
    "GitHubError",
    "GitHubForge",
    "OutcomeUnknown",
    "Permission",
    "ProjectConfig",
    "RateLimited",
    "TokenAuth",
    "backoff_delay",
    "check_run_state",
    "combine_states",
    "load_app_key",
    "rate_limit_wait",
    "ready_verdict",
    "route_of",
]

Permission = Literal["none", "read", "triage", "write", "maintain", "admin"]
PERMISSION_RANK: dict[str, int] = {"none": 0, "read": 1, "triage": 2, "write": 3, "maintain": 4, "admin": 5}
Verdict = Literal["ready", "no_ready_event", "untrusted", "edited_after_ready"]
_VERDICT_EVENTS: dict[str, str] = {
    "no_ready_event": "issue_no_ready_event",
    "untrusted": "issue_untrusted",
    "edited_after_ready": "issue_edited_after_ready",
}

GIT_TOKEN_ENV = "AGENTOS_GIT_TOKEN"
GIT_CREDENTIAL_HELPER = (
    f'!f() {{ test "$1" = get || exit 0; echo username=x-access-token; echo "password=${GIT_TOKEN_ENV}"; }}; f'
)
LOG_TAIL_LINES = 50
LOG_TAIL_CHARS = 4000
CREATE_ATTEMPTS = 3

_log = structlog.get_logger("agentos.forge.github")
_T = TypeVar("_T")
_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


# ---------------------------------------------------------------------------------------------- policies


def ready_verdict(
    *,
    ready_at: datetime | None,
    actor: str | None,
    role: str,
    trusted_permission: Permission,
    edited_at: datetime | None,
    trusted_actors: frozenset[str] = frozenset(),
) -> Verdict:
    """Whether an issue made ready at ``ready_at`` by ``actor`` (who has ``role``) may run."""
    if ready_at is None or not actor:
        return "no_ready_event"
    if actor not in trusted_actors and PERMISSION_RANK.get(role, 0) < PERMISSION_RANK[trusted_permission]:
        return "untrusted"
    if edited_at is not None and edited_at > ready_at:
        return "edited_after_ready"
    return "ready"


def check_run_state(status: str, conclusion: str | None) -> CheckState:
    """A check run's state: not completed is pending; success, neutral and skipped pass; the rest fail."""
    if status != "completed" or conclusion is None:
        return "pending"
    if conclusion in ("success", "neutral", "skipped"):
        return "success"
    if conclusion in ("action_required", "stale"):
        return "pending"
    return "failure"


def combine_states(states: Iterable[CheckState]) -> CheckState | None:
    """Any failure fails, else any pending is pending, else success; None when there are no checks."""
    seen = set(states)
    if not seen:
        return None
    if "failure" in seen:
        return "failure"
    return "pending" if "pending" in seen else "success"


def _tail(text: str) -> str:
    return "\n".join(text.rstrip().splitlines()[-LOG_TAIL_LINES:])[-LOG_TAIL_CHARS:]


_Q_READY_EDITS = """query AgentosReadyEdits($owner: String!, $name: String!, $labels: [String!], $cursor: String) {
  repository(owner: $owner, name: $name) {
    issues(first: 100, after: $cursor, states: [OPEN], labels: $labels) {
      pageInfo { hasNextPage endCursor } nodes { number lastEditedAt } } }
}"""


def _split(repo: str) -> tuple[str, str]:
    if not _REPO.match(repo):
        raise ForgeError(f"GitHub repo must be 'owner/name', not {repo!r}")
    owner, name = repo.split("/")
    return owner, name


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
        self._trusted_permission: Permission = trusted_permission
        self._trusted_actors = frozenset(trusted_actors)
        self.git_base_url = (git_base_url or _default_git_base(client.base_url)).rstrip("/")
        self._fetch_action_logs = fetch_action_logs
        self._checks_grace = checks_grace
        self._permission_ttl = permission_ttl
        self._board_ttl = board_ttl
        self._boards: dict[tuple[str, str], _BoardRead] = {}  # (project id, status field) → the last read
        self._roles: dict[tuple[str, str], tuple[str, float]] = {}
        self._verdicts: dict[tuple[str, int], tuple[object, Verdict]] = {}
        self._meta: dict[str, _ProjectMeta] = {}
        self._items: dict[tuple[str, int], str] = {}
        self._checks_forbidden: set[str] = set()

    def __repr__(self) -> str:
        return f"<GitHubForge boards={len(self._projects)} verdicts={len(self._verdicts)} {self._client!r}>"

    async def aclose(self) -> None:
        await self._client.aclose()

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
        _split(repo)
        project = self._projects.get(repo)
        if project is not None:
            ready = await self._board_ready(repo, project)
        else:
            ready = await self._label_ready(repo)
        return sorted(ready, key=lambda i: (i.created_at, i.number))

    async def get_issue(self, repo: str, number: int) -> Issue:
        _split(repo)
        return self._issue(repo, await self._client.get(f"/repos/{repo}/issues/{number}"))

    async def list_issues(self, repo: str, *, state: Literal["open", "closed", "all"] = "open") -> list[Issue]:
        """Issues (not PRs) in ``state``, oldest first."""
        _split(repo)
        raw = await self._client.paginate(f"/repos/{repo}/issues", params={"state": state})
        issues = [self._issue(repo, x) for x in raw if _dig(x, "pull_request") is None]
        return sorted(issues, key=lambda i: i.number)

    async def create_issue(self, repo: str, title: str, body: str, labels: list[str], *, key: str) -> Issue:
        """Create an issue, or return the open one whose body carries ``marker(key)`` (found by listing)."""
        tag = marker(key)
        payload: JSON = {"title": redact(title), "body": f"{redact(body)}\n\n{tag}", "labels": list(labels)}

        async def find() -> Issue | None:
            return next((i for i in await self.list_issues(repo) if tag in i.body), None)

        async def create() -> Issue:
            return self._issue(repo, await self._client.post(f"/repos/{repo}/issues", json=payload))

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
        _split(repo)
        return [_comment(x) for x in await self._client.paginate(f"/repos/{repo}/issues/{number}/comments")]

    async def add_labels(self, repo: str, number: int, labels: list[str]) -> None:
        """Add labels (GitHub creates a missing label with a default colour). Safe to repeat."""
        _split(repo)
        if labels:
            payload: JSON = {"labels": list(labels)}
            await self._client.post(f"/repos/{repo}/issues/{number}/labels", json=payload, idempotent=True)

    async def remove_label(self, repo: str, number: int, label: str) -> None:
        """Remove a label; a label that is not there is not an error."""
        _split(repo)
        try:
            await self._client.delete(f"/repos/{repo}/issues/{number}/labels/{quote(label, safe='')}")
        except NotFound:
            pass

    async def close_issue(self, repo: str, number: int) -> None:
        _split(repo)
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
        meta = await self._project_meta(repo, project)
        option = meta.options.get(project.option_name(status).lower())
        if option is None:
            raise ForgeError(
                f"board of {repo} has no {project.status_field!r} option {project.option_name(status)!r} "
                f"(has: {', '.join(sorted(meta.options)) or 'none'})"
            )
        item = await self._item_id(repo, issue, meta)
        variables: dict[str, JSON] = {"project": meta.id, "item": item, "field": meta.field_id, "option": option}
        await self._client.graphql(_M_SET_STATUS, variables, idempotent=True)
        self._boards.pop((meta.id, project.status_field), None)  # the next poll reads the board afresh
        _log.info("board_status_set", repo=repo, issue=issue, status=status)

    # -- pull requests --------------------------------------------------------------------------------

    async def find_pr(self, repo: str, head: str) -> PullRequest | None:
        """The open PR for branch ``head``, else the latest merged one; closed unmerged PRs are ignored."""
        owner, _ = _split(repo)
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
        _split(repo)
        raw = await self._client.paginate(f"/repos/{repo}/pulls", params={"state": "open"})
        return sorted((_pull(repo, x) for x in raw), key=lambda p: p.number)

    async def checks(self, repo: str, number: int) -> Checks:
        """Check runs and commit statuses on the PR's head, combined; failing runs carry summary and log tail.

        With no checks at all the head is pending for ``checks_grace`` seconds after the PR's last update
        (CI may not have registered yet), then success (a repo without CI).
        """
        pr = await self._raw_pull(repo, number)
        sha = pr.head.sha
        check_runs = await self._check_runs(repo, sha)
        combined = _CombinedStatus.model_validate(await self._client.get(f"/repos/{repo}/commits/{sha}/status"))
        runs: list[CheckRun] = []
        for run in check_runs:
            state = check_run_state(run.status, run.conclusion)
            summary = ": ".join(s for s in (run.output.title, run.output.summary) if s)
            log_tail = await self._log_tail(repo, run) if state == "failure" else ""
            runs.append(CheckRun(name=run.name, state=state, summary=summary[:2000], log_tail=log_tail))
        for status in combined.statuses:
            status_state: CheckState = "success" if status.state == "success" else "failure"
            if status.state == "pending":
                status_state = "pending"
            runs.append(CheckRun(name=status.context, state=status_state, summary=status.description or ""))
        overall = combine_states(r.state for r in runs)
        if overall is None:
            young = self._client.clock() - pr.updated_at.timestamp() < self._checks_grace
            overall = "pending" if young else "success"
        return Checks(sha=sha, state=overall, runs=runs)

    async def merge_pr(self, repo: str, number: int, *, sha: str, title: str, body: str) -> MergeResult:
        """Squash-merge if the head is still ``sha``, then delete the head branch.

        A refusal (405/409/422: head moved, not mergeable) is ``merged=False`` with GitHub's message,
        unless the PR turns out to be merged already, which is success.
        """
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
        return sorted((await self._project_meta(repo, project)).options)

    async def git_credentials(self, repo: str) -> tuple[str, dict[str, str]]:
        """The HTTPS remote of ``repo`` and the env that lets ``git push`` authenticate to it.

        The token travels in ``AGENTOS_GIT_TOKEN`` and a ``credential.helper`` set through
        ``GIT_CONFIG_COUNT``/``GIT_CONFIG_KEY_n`` reads it: nothing on disk, nothing in argv, nothing
        in the URL. Inherited helpers are reset first. Give this env to git only, never to an agent.
        """
        _split(repo)
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
        _split(repo)
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

    def _issue(self, repo: str, raw: JSON) -> Issue:
        r = _RestIssue.model_validate(raw)
        return Issue(
            repo=repo,
            number=r.number,
            title=r.title,
            body=r.body or "",
            state=r.state,
            labels=[label.name for label in r.labels],
            author=r.user.login if r.user else "",
            created_at=r.created_at,
            updated_at=r.updated_at,
            url=r.html_url,
        )

    async def _raw_pull(self, repo: str, number: int) -> _RestPull:
        _split(repo)
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

    async def _check_runs(self, repo: str, sha: str) -> list[_RestCheckRun]:
        """The latest check runs on ``sha``; from the Actions jobs when the token may not read checks.

        Fine-grained PATs cannot be granted the Checks permission (the endpoint answers 403), but an
        Actions job *is* a check run (same id and name) and Actions: read is grantable. Only Actions
        checks are seen that way; other apps' checks must then report commit statuses.
        """
        if repo not in self._checks_forbidden:
            try:
                raw = await self._client.paginate(f"/repos/{repo}/commits/{sha}/check-runs", items_key="check_runs")
                return [_RestCheckRun.model_validate(x) for x in raw]
            except GitHubError as exc:
                if exc.status != 403:
                    raise
                self._checks_forbidden.add(repo)
                _log.warning("check_runs_forbidden", repo=repo, fallback="actions_jobs", error=exc.message)
        params: dict[str, str | int] = {"head_sha": sha}
        workflow_runs = await self._client.paginate(
            f"/repos/{repo}/actions/runs", params=params, items_key="workflow_runs"
        )
        latest: dict[str, _RestCheckRun] = {}
        run_ids = {_dig(r, "id") for r in workflow_runs}
        for run_id in sorted(i for i in run_ids if isinstance(i, int)):
            path = f"/repos/{repo}/actions/runs/{run_id}/jobs"
            for job in await self._client.paginate(path, params={"filter": "latest"}, items_key="jobs"):
                parsed = _RestCheckRun.model_validate(job).model_copy(update={"app": _App(slug="github-actions")})
                latest[parsed.name] = parsed  # a later workflow run of the same job wins
        return list(latest.values())

    async def _log_tail(self, repo: str, run: _RestCheckRun) -> str:
        if self._fetch_action_logs and run.app is not None and run.app.slug == "github-actions":
            try:
                return _tail(await self._client.get_text(f"/repos/{repo}/actions/jobs/{run.id}/logs"))
            except (GitHubError, NotFound) as exc:
                _log.info("check_log_unavailable", repo=repo, run=run.name, error=str(exc))
        return _tail(run.output.text or "")

    async def _role(self, repo: str, user: str) -> str:
        now = self._client.clock()
        cached = self._roles.get((repo, user))
        if cached is not None and now - cached[1] < self._permission_ttl:
            return cached[0]
        try:
            raw = await self._client.get(f"/repos/{repo}/collaborators/{quote(user, safe='')}/permission")
            perm = _RestPermission.model_validate(raw)
            role = perm.role_name if perm.role_name in PERMISSION_RANK else perm.permission
        except NotFound:
            role = "none"
        role = role if role in PERMISSION_RANK else "none"
        self._roles[(repo, user)] = (role, now)
        return role

    async def _judge(
        self, repo: str, number: int, *, ready_at: datetime | None, actor: str | None, edited_at: datetime | None
    ) -> Verdict:
        role = "none"
        if actor and actor not in self._trusted_actors:
            role = await self._role(repo, actor)
        verdict = ready_verdict(
            ready_at=ready_at,
            actor=actor,
            role=role,
            trusted_permission=self._trusted_permission,
            edited_at=edited_at,
            trusted_actors=self._trusted_actors,
        )
        if verdict != "ready":
            _log.info(_VERDICT_EVENTS[verdict], repo=repo, issue=number, actor=actor, role=role)
        return verdict

    async def _label_ready(self, repo: str) -> list[Issue]:
        raw = await self._client.paginate(f"/repos/{repo}/issues", params={"state": "open", "labels": self.ready_label})
        issues = [self._issue(repo, x) for x in raw if _dig(x, "pull_request") is None]
        stale = [i for i in issues if self._verdicts.get((repo, i.number), (None,))[0] != i.updated_at]
        edits = await self._edit_times(repo) if stale else {}
        for issue in stale:
            ready_at, actor = await self._ready_event(repo, issue.number)
            edited_at = edits.get(issue.number)
            verdict = await self._judge(repo, issue.number, ready_at=ready_at, actor=actor, edited_at=edited_at)
            self._verdicts[(repo, issue.number)] = (issue.updated_at, verdict)
        listed = {i.number for i in issues}
        for key in [k for k in self._verdicts if k[0] == repo and k[1] not in listed]:
            del self._verdicts[key]
        return [i for i in issues if self._verdicts[(repo, i.number)][1] == "ready"]

    async def _ready_event(self, repo: str, number: int) -> tuple[datetime | None, str | None]:
        raw = await self._client.paginate(f"/repos/{repo}/issues/{number}/events")
        events = [_RestEvent.model_validate(x) for x in raw]
        labeled = [e for e in events if e.event == "labeled" and e.label and e.label.name == self.ready_label]
        if not labeled:
            return None, None
        last = max(enumerate(labeled), key=lambda pair: (pair[1].created_at, pair[0]))[1]
        return last.created_at, last.actor.login if last.actor else None

    async def _edit_times(self, repo: str) -> dict[int, datetime | None]:
        owner, name = _split(repo)
        out: dict[int, datetime | None] = {}
        cursor: str | None = None
        while True:
            variables: dict[str, JSON] = {"owner": owner, "name": name, "labels": [self.ready_label], "cursor": cursor}
            data = await self._client.graphql(_Q_READY_EDITS, variables)
            page = _GqlEdits.model_validate(_dig(data, "repository", "issues"))
            out.update((n.number, n.lastEditedAt) for n in page.nodes)
            if not page.pageInfo.hasNextPage:
                return out
            cursor = page.pageInfo.endCursor

    async def _project_meta(self, repo: str, project: ProjectConfig) -> _ProjectMeta:
        if (meta := self._meta.get(repo)) is not None:
            return meta
        if project.node_id is not None:
            data = await self._client.graphql(_Q_PROJECT_BY_ID, {"id": project.node_id, "field": project.status_field})
            raw = _dig(data, "node")
        else:
            owner = project.owner or _split(repo)[0]
            variables: dict[str, JSON] = {"owner": owner, "number": project.number, "field": project.status_field}
            raw = _dig(await self._client.graphql(_Q_PROJECT, variables), "repositoryOwner", "projectV2")
        if not raw:
            raise NotFound(f"Projects v2 board for {repo} not found ({project.model_dump(exclude_defaults=True)})")
        found = _GqlProject.model_validate(raw)
        if found.field is None or found.field.id is None:
            raise ForgeError(f"board of {repo} has no single-select field {project.status_field!r}")
        meta = _ProjectMeta(found.id, found.field.id, {o.name.lower(): o.id for o in found.field.options})
        self._meta[repo] = meta
        return meta

    async def _item_id(self, repo: str, number: int, meta: _ProjectMeta) -> str:
        if (item := self._items.get((repo, number))) is not None:
            return item
        owner, name = _split(repo)
        data = await self._client.graphql(_Q_ISSUE_ITEMS, {"owner": owner, "name": name, "number": number})
        node = _GqlIssueNode.model_validate(_dig(data, "repository", "issue"))
        item = next((i.id for i in node.projectItems.nodes if i.project.id == meta.id), None)
        if item is None:
            added = await self._client.graphql(_M_ADD_ITEM, {"project": meta.id, "content": node.id}, idempotent=True)
            found = _dig(added, "addProjectV2ItemById", "item", "id")
            if not isinstance(found, str):
                raise GitHubError("addProjectV2ItemById returned no item", status=200, method="POST", route="/graphql")
            item = found
        self._items[(repo, number)] = item
        return item

    async def _board_items(self, repo: str, meta: _ProjectMeta, project: ProjectConfig) -> list[_GqlItem]:
        """Every item of the board. One read serves each repo sharing the board once (so one poll of N repos
        costs one read), for at most ``board_ttl`` seconds; a repo asking a second time gets a fresh read."""
        key = (meta.id, project.status_field)
        now = self._client.clock()
        last = self._boards.get(key)
        if last is not None and repo not in last.served and now - last.at < self._board_ttl:
            last.served.add(repo)
            return last.items
        items: list[_GqlItem] = []
        cursor: str | None = None
        while True:
            variables: dict[str, JSON] = {"project": meta.id, "field": project.status_field, "cursor": cursor}
            data = await self._client.graphql(_Q_BOARD, variables)
            page = _GqlItems.model_validate(_dig(data, "node", "items"))
            items.extend(page.nodes)
            if not page.pageInfo.hasNextPage:
                break
            cursor = page.pageInfo.endCursor
        self._boards[key] = _BoardRead(now, items, {repo})
        return items

    async def _board_ready(self, repo: str, project: ProjectConfig) -> list[Issue]:
        meta = await self._project_meta(repo, project)
        ready_name = project.option_name("Ready").lower()
        ready: list[Issue] = []
        for item in await self._board_items(repo, meta, project):
            content, value = item.content, item.fieldValueByName
            if content is None or content.number is None or content.repository is None:
                continue
            if content.repository.nameWithOwner.lower() != repo.lower():
                continue
            self._items[(repo, content.number)] = item.id
            if content.state != "OPEN" or value is None or (value.name or "").lower() != ready_name:
                continue
            actor = value.creator.login if value.creator else None
            version = (value.updatedAt, content.lastEditedAt, actor)
            cached = self._verdicts.get((repo, content.number))
            if cached is None or cached[0] != version:
                verdict = await self._judge(
                    repo, content.number, ready_at=value.updatedAt, actor=actor, edited_at=content.lastEditedAt
                )
                cached = (version, verdict)
                self._verdicts[(repo, content.number)] = cached
            if cached[1] == "ready":
                ready.append(await self.get_issue(repo, content.number))
        return ready


def _comment(raw: JSON) -> Comment:
    c = _RestComment.model_validate(raw)
    return Comment(id=c.id, author=c.user.login if c.user else "", body=c.body or "", created_at=c.created_at)


def _pull(repo: str, raw: JSON | _RestPull) -> PullRequest:
    p = raw if isinstance(raw, _RestPull) else _RestPull.model_validate(raw)
    return PullRequest(
        repo=repo,
        number=p.number,
        title=p.title,
        body=p.body or "",
        head=p.head.ref,
        base=p.base.ref,
        state="merged" if p.merged_at is not None else p.state,
        head_sha=p.head.sha,
        mergeable=p.mergeable,
        created_at=p.created_at,
        url=p.html_url,
        labels=[label.name for label in p.labels],
    )


def _refusal(message: str) -> MergeReason:
    """Why GitHub refused a merge, from its message (405 "not mergeable", 409 "Head branch was modified")."""
    text = message.lower()
    if "conflict" in text or "not mergeable" in text:
        return "conflict"
    if "head" in text and ("moved" in text or "modified" in text):
        return "head_moved"
    return "refused"
