"""The checks of a GitHub PR's head: check runs (or, without the Checks permission, the Actions jobs) and
commit statuses, combined into one state; a failing run carries its summary and the tail of its log."""

from __future__ import annotations

from collections.abc import Iterable

import structlog

from agentos.forge._github_http import GitHubClient, GitHubError
from agentos.forge._github_payloads import _App, _CombinedStatus, _dig, _RestCheckRun, _RestPull
from agentos.forge.base import CheckRun, Checks, CheckState, NotFound

__all__ = ["CheckReader", "check_run_state", "combine_states"]

_log = structlog.get_logger("agentos.forge.github")

LOG_TAIL_LINES = 50
LOG_TAIL_CHARS = 4000


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


class CheckReader:
    """Reads a PR head's checks; remembers the repos whose token may not read check runs."""

    def __init__(self, client: GitHubClient, *, fetch_action_logs: bool, checks_grace: float) -> None:
        self._client = client
        self._fetch_action_logs = fetch_action_logs
        self._checks_grace = checks_grace
        self._checks_forbidden: set[str] = set()

    def __repr__(self) -> str:
        return f"<CheckReader checks_forbidden={len(self._checks_forbidden)}>"

    async def read(self, repo: str, pr: _RestPull) -> Checks:
        """Check runs and commit statuses on the PR's head, combined; failing runs carry summary and log tail.

        With no checks at all the head is pending for ``checks_grace`` seconds after the PR's last update
        (CI may not have registered yet), then success (a repo without CI).
        """
        sha = pr.head.sha
        runs = await self._runs(repo, sha)
        overall = combine_states(r.state for r in runs)
        if overall is None:
            young = self._client.clock() - pr.updated_at.timestamp() < self._checks_grace
            overall = "pending" if young else "success"
        return Checks(sha=sha, state=overall, runs=runs)

    async def read_commit(self, repo: str, sha: str) -> Checks:
        """The checks on any commit (a merge group's): no checks at all is pending, not success."""
        runs = await self._runs(repo, sha)
        return Checks(sha=sha, state=combine_states(r.state for r in runs) or "pending", runs=runs)

    async def _runs(self, repo: str, sha: str) -> list[CheckRun]:
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
        return runs

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
