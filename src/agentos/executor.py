"""The executor: one attempt of one task, from worktree to pull request (or to retry or escalation).

    prepare worktree → hooks → prompt → agent process → contract → commit → diff? → tests →
    CODEBASE.md entry → push → PR "Closes #N" → comment            (complete)
    … → commit to branch, next agent builds on it                   (partial)
    … → patch saved in the run dir, worktree reset                  (blocked, timeout, invalid, crash)

Every state change is journalled (``Runtime.commit``) before the side effect it licenses, and every
side effect is idempotent (worktree reuse, lease pushes, PR by head branch, comments by key), so a
crash at any point followed by :meth:`Executor.recover` finishes the work exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from agentos import logging as alog
from agentos import memory
from agentos.agents.adapters import AgentNotInstalled, build_invocation, parse_output
from agentos.agents.contract import (
    PERMANENT_CODES,
    RESULT_FILE,
    ContractError,
    ResultContract,
    read_contract,
    read_result_bytes,
)
from agentos.agents.pool import AgentPool
from agentos.agents.prompt import PriorAttempt, PromptTooLarge, build_prompt, fence
from agentos.agents.runner import RunSpec, kill_marked, kill_orphan, run_process
from agentos.budget import BUDGET_CODE, issue_breach, issue_spend
from agentos.control.notify import action_button, issue_button
from agentos.errors import AgentosError
from agentos.forge.base import BLOCKED_LABEL
from agentos.fsutil import atomic_write_text
from agentos.graph import (
    Attempt,
    Event,
    Task,
    TaskStatus,
    backoff_seconds,
    end_attempt,
    start_attempt,
    transition,
)
from agentos.redact import find_secrets, redact
from agentos.runtime import Runtime
from agentos.workspace import Breach, Workspace, branch_name

log = alog.get_logger("agentos.executor")

START_FILE = "start_sha"  # in the run dir: the branch tip the attempt started from
CONTAINMENT_CODES: dict[str, bool] = {
    "history_rewritten": False,  # the branch was rewritten or left: work saved as a patch, retried from the start
    "workspace_violation": True,  # agentos's clone or the user's repo was changed: a human must look
    "secret_detected": True,  # a push would publish a secret: nothing pushed, a human must look
}
"""Blocker codes agentos assigns when it contains a misbehaving agent (code → permanent)."""


@dataclass
class Verdict:
    """How an attempt ended, before the task's status follows from it."""

    outcome: str  # complete | partial | blocked | failed
    blocker: str | None = None
    summary: str = ""
    error: str = ""
    keep_changes: bool = False


def counted_attempts(task: Task) -> int:
    """Attempts that count toward ``max_attempts``: a usage limit or a daemon restart burns none."""
    return sum(
        1 for a in task.attempts if a.outcome not in ("interrupted", "running") and a.blocker_code != "quota_limited"
    )


def safe_id(task_id: str) -> str:
    return task_id.replace("/", "_").replace("#", "-")


class Executor:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.on_pr_opened: Callable[[], None] = lambda: None
        self.on_slot_free: Callable[[], None] = lambda: None

    def __repr__(self) -> str:
        return f"<Executor running={len(self.rt.running)}>"

    # ------------------------------------------------------------ lifecycle

    def choose_agent(self, task: Task) -> str | None:
        """The first agent of the task's chain that is not paused by a usage limit."""
        return AgentPool.from_runtime(self.rt).choose(task)

    def start(self, task: Task) -> bool:
        """Begin an attempt in the background; False when no agent is available now.

        A task the system itself re-queued (RETRYING: after a failure, or a red PR sent back) whose issue is over
        its token or cost ceiling is escalated instead. A QUEUED one runs: it is new, or an operator retried it,
        and gets that one attempt before the ceiling is checked again.
        """
        if task.status is TaskStatus.RETRYING and (breach := self.budget_breach(task)):
            self._launch(task.id, self._escalate_over_budget(task, breach, []))
            return False
        agent = self.choose_agent(task)
        if agent is None:
            return False
        if task.branch is None:
            # A new generation starts afresh from the base, never on the branch of the one before it.
            suffix = f"-g{task.generation}" if task.generation > 1 else ""
            task.branch = branch_name(task.issue, task.title) + suffix
        attempt, event = start_attempt(task, agent, self.rt.now())
        attempt.run_dir = str(self.run_dir(task, attempt))
        self.rt.commit([event], [task])
        self._launch(task.id, self._attempt(task, attempt))
        return True

    def _launch(self, task_id: str, coro: object) -> None:
        runner: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self.rt.running[task_id] = runner

        def done(t: asyncio.Task[None]) -> None:
            self.rt.running.pop(task_id, None)
            if not t.cancelled() and t.exception() is not None:
                log.error("executor_crashed", task=task_id, error=repr(t.exception()))
            self.on_slot_free()

        runner.add_done_callback(done)

    def resume_handoff(self, task: Task) -> None:
        """Run the hand-off of a VALIDATING task again in the background (after a crash of its coroutine)."""
        attempt = task.current_attempt
        if attempt is not None and task.status is TaskStatus.VALIDATING and task.id not in self.rt.running:
            self._launch(task.id, self._resume_handoff(task, attempt))

    def run_dir(self, task: Task, attempt: Attempt) -> Path:
        return self.rt.state_dir / "runs" / safe_id(task.id) / str(attempt.number)

    def marker_prefix(self) -> str:
        """The start of every ``AGENTOS_ATTEMPT`` marker of this state dir's agents (runner.kill_marked)."""
        return hashlib.sha256(str(self.rt.state_dir.resolve()).encode()).hexdigest()[:12] + "/"

    async def drain(self, grace_s: float) -> None:
        """Shutdown: give running attempts ``grace_s`` to finish, then interrupt them."""
        pending = list(self.rt.running.values())
        if pending:
            _done, still = await asyncio.wait(pending, timeout=grace_s)
            for t in still:
                t.cancel()
            await asyncio.gather(*still, return_exceptions=True)

    async def recover(self) -> None:
        """After a crash: end attempts that were running, re-queue their tasks, resume hand-offs.

        Worktrees are repaired (stale git locks cleared) before any hand-off resumes, so the repair never
        races a git command of ours; escalations whose comment was not posted are finished.
        """
        now = self.rt.now()
        resume: list[tuple[Task, Attempt]] = []
        for task in list(self.rt.graph):
            attempt = task.current_attempt
            if task.status is TaskStatus.RUNNING and attempt is not None and attempt.outcome == "running":
                if attempt.pid and attempt.pid_start:
                    killed = await asyncio.to_thread(kill_orphan, attempt.pid, attempt.pid_start)
                    if killed:
                        log.warning("orphan_agent_killed", task=task.id, pid=attempt.pid)
                ev1 = end_attempt(task, now, outcome="interrupted", error="daemon stopped during the attempt")
                ev2 = transition(task, TaskStatus.QUEUED, now, reason="recovered_after_restart")
                self.rt.commit([ev1, ev2], [task])
                log.warning("attempt_interrupted", task=task.id, attempt=attempt.number)
            elif task.status is TaskStatus.VALIDATING and attempt is not None:
                resume.append((task, attempt))
        # Whatever still carries our marker is an orphan: an agent whose pid the dead daemon never journalled,
        # or a process an agent moved out of its group. None of ours runs yet (we hold the state lock).
        await asyncio.to_thread(kill_marked, self.marker_prefix(), prefix=True)
        keep = {t.branch for t in self.rt.graph if t.branch and not t.is_terminal}
        for repo in self.rt.config.repos:
            with contextlib.suppress(AgentosError):
                await self.rt.workspace(repo).repair(keep)
        for task, _attempt in resume:
            log.info("handoff_resumed", task=task.id)
            self.resume_handoff(task)
        for task in list(self.rt.graph):
            if task.status is TaskStatus.BLOCKED and not self._escalation_marker(task).exists():
                log.info("escalation_resumed", task=task.id)
                await self._announce_escalation(task)

    # ------------------------------------------------------------ one attempt

    async def _attempt(self, task: Task, attempt: Attempt) -> None:
        alog.clear()  # not the context of the job that started us
        with alog.bound(task=task.id, repo=task.repo, issue=task.issue, attempt=attempt.number, agent=attempt.agent):
            try:
                await self._attempt_body(task, attempt)
            except asyncio.CancelledError:
                if attempt.outcome == "running":
                    ev = end_attempt(task, self.rt.now(), outcome="interrupted", error="daemon shutting down")
                    ev2 = transition(task, TaskStatus.QUEUED, self.rt.now(), reason="shutdown")
                    self.rt.commit([ev, ev2], [task])
                raise
            except Exception as exc:
                log.error("attempt_crashed", error=repr(exc), exc_info=True)
                if attempt.outcome == "running":
                    verdict = Verdict("failed", "environment_failure", error=f"{type(exc).__name__}: {exc}")
                    await self._after_failure(task, attempt, verdict)
                elif task.status is TaskStatus.VALIDATING:
                    await self._fail_validation(task, attempt, "environment_failure", f"{type(exc).__name__}: {exc}")

    async def _attempt_body(self, task: Task, attempt: Attempt) -> None:
        rt = self.rt
        repo = rt.repo(task.repo)
        ws = rt.workspace(repo)
        run_dir = Path(attempt.run_dir or self.run_dir(task, attempt))
        run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        await self._board(task, "In Progress")
        assert task.branch is not None
        try:
            worktree, start_sha = await ws.prepare_head(task.branch)
        except AgentosError as exc:
            await self._after_failure(task, attempt, Verdict("failed", "environment_failure", error=str(exc)))
            return
        if await self._stash_leftovers(ws, worktree, task):
            start_sha = await ws.head_sha(worktree)
        (worktree / RESULT_FILE).unlink(missing_ok=True)
        (run_dir / START_FILE).write_text(start_sha + "\n", encoding="utf-8")
        hook = await ws.run_hook("before_run", worktree)
        if hook is not None and not hook.ok:
            await self._after_failure(task, attempt, Verdict("failed", "environment_failure", error=hook.detail))
            return

        try:
            prompt = build_prompt(
                task,
                repo_memory=memory.read(worktree),
                prior_attempts=self._prior(task),
                test_command=repo.test_command,
            )
        except PromptTooLarge as exc:
            await self._after_failure(task, attempt, Verdict("failed", "prompt_too_large", error=str(exc)))
            return
        prompt_file = run_dir / "prompt.md"
        prompt_file.write_text(prompt, encoding="utf-8")
        agent_cfg = rt.config.agents[attempt.agent]
        try:
            inv = build_invocation(
                attempt.agent,
                agent_cfg,
                prompt=prompt,
                prompt_file=prompt_file,
                worktree=worktree,
                task_id=task.id,
                base_env=os.environ,
            )
        except AgentNotInstalled as exc:
            await self._after_failure(task, attempt, Verdict("failed", "runner_failure", error=str(exc)))
            return
        limits = rt.config.limits
        guard = await ws.guard(worktree)

        def started(pid: int, start_time: int) -> None:
            attempt.pid, attempt.pid_start = pid, start_time
            rt.commit([rt.event("agent_started", task.id, pid=pid, agent=attempt.agent)], [task])
            log.info("agent_spawned", pid=pid, log=str(run_dir / "agent.log"))

        outcome = await run_process(
            RunSpec(
                argv=inv.argv,
                cwd=worktree,
                env=inv.env,
                stdin=inv.stdin,
                log_path=run_dir / "agent.log",
                idle_timeout_s=limits.idle_timeout_minutes * 60,
                max_runtime_s=limits.max_runtime_minutes * 60,
                kill_grace_s=limits.kill_grace_s,
                max_log_bytes=limits.max_log_bytes,
                marker=f"{self.marker_prefix()}{task.id}/{attempt.number}",
            ),
            on_start=started,
        )
        # Before any git command of ours runs there: a replaced .git or a tampered clone is put back first.
        breaches = await ws.check_guard(worktree, guard, branch=task.branch, since=start_sha)
        await ws.run_hook("after_run", worktree)
        log_text = _read_tail(run_dir / "agent.log", 2 * 1024 * 1024)
        report = parse_output(agent_cfg.kind, log_text, outcome.exit_code, now=rt.now())
        attempt.tokens_in, attempt.tokens_out = report.tokens_in, report.tokens_out
        attempt.cost_usd, attempt.turns = report.cost_usd, report.turns
        attempt.cost_reported, attempt.tokens_reported = report.cost_reported, report.tokens_reported
        # An agent past its daily or monthly limit is paused before its next start.
        AgentPool.from_runtime(rt).enforce_budgets()
        attempt.exit_code = outcome.exit_code
        result_path = worktree / RESULT_FILE
        with contextlib.suppress(ContractError, OSError):  # never through a symlink, never from a FIFO
            data = await asyncio.to_thread(read_result_bytes, result_path, 256 * 1024, truncate=True)
            (run_dir / RESULT_FILE).write_bytes(data)
        if breaches:
            await self._contain(task, attempt, ws, worktree, start_sha, breaches)
            return

        verdict = await self._judge(task, attempt, outcome, report, result_path)
        if verdict.outcome == "complete":
            await self._validate(task, attempt, ws, worktree, verdict)
        else:
            await self._after_failure(task, attempt, verdict, ws=ws, worktree=worktree, since=start_sha)

    async def _contain(
        self, task: Task, attempt: Attempt, ws: Workspace, worktree: Path, since: str, breaches: list[Breach]
    ) -> None:
        """An agent that changed what it must not: its work is saved as a patch, the branch goes back to where
        the attempt started, and the attempt fails with a containment code whatever its result file says."""
        kinds = {b.kind for b in breaches}
        if kinds & {"shared", "remote"}:
            code = "workspace_violation"
        elif "history" in kinds:
            code = "history_rewritten"
        else:
            code = "environment_failure"  # only its own .git link, which was put back
        detail = "; ".join(b.detail for b in breaches)
        log.warning("attempt_contained", code=code, breaches=[b.kind for b in breaches])
        patch = Path(attempt.run_dir or self.run_dir(task, attempt)) / "changes.patch"
        if await ws.save_patch(worktree, patch, since=since):
            attempt.patch_path = str(patch)
        assert task.branch is not None
        await ws.restore_branch(worktree, task.branch, since)
        await self._after_failure(task, attempt, Verdict("failed", code, error=detail))

    async def _judge(self, task: Task, attempt: Attempt, outcome: object, report: object, result: Path) -> Verdict:
        from agentos.agents.adapters import AgentReport
        from agentos.agents.runner import RunOutcome

        assert isinstance(outcome, RunOutcome) and isinstance(report, AgentReport)
        tail = redact(outcome.log_tail[-2000:])
        if outcome.not_found:
            return Verdict("failed", "runner_failure", error=f"could not start the agent: {tail}")
        if report.failure == "quota_limited":
            AgentPool.from_runtime(self.rt).pause_for_quota(attempt.agent, report.reset_at, report.detail)
            return Verdict("failed", "quota_limited", error=report.detail or tail)
        if report.failure == "missing_credentials":
            return Verdict("failed", "missing_credentials", error=report.detail or tail)
        if outcome.timed_out:
            return Verdict("failed", "timeout", error=f"{outcome.timed_out} limit reached; last output: {tail[-500:]}")
        try:
            contract = read_contract(result)
        except ContractError as exc:
            if report.failure == "runner_failure" or (outcome.exit_code not in (0, None) and not result.exists()):
                return Verdict("failed", "runner_failure", error=f"exit {outcome.exit_code}: {tail[-1500:]}")
            return Verdict("failed", "invalid_result_contract", error=str(exc))
        if contract.status == "complete":
            return Verdict("complete", None, summary=contract.summary)
        return Verdict(
            contract.status,
            contract.blocker_code,
            summary=contract.summary,
            error=contract.blockers,
            keep_changes=contract.status == "partial",
        )

    async def _validate(self, task: Task, attempt: Attempt, ws: Workspace, worktree: Path, verdict: Verdict) -> None:
        """A complete attempt: its work is committed *before* VALIDATING is journalled, so a hand-off
        resumed after a crash starts from a clean worktree (what the test run left behind is dropped)."""
        rt = self.rt
        (worktree / RESULT_FILE).unlink(missing_ok=True)
        await ws.commit_all(worktree, _commit_message(task, verdict.summary))
        ev = end_attempt(task, rt.now(), outcome="complete", summary=verdict.summary[:2000])
        ev2 = transition(task, TaskStatus.VALIDATING, rt.now())
        rt.commit([ev, ev2], [task])
        await self._handoff(task, attempt, ws, worktree)

    async def _resume_handoff(self, task: Task, attempt: Attempt) -> None:
        alog.clear()
        with alog.bound(task=task.id, repo=task.repo, issue=task.issue, attempt=attempt.number):
            ws: Workspace | None = None
            worktree: Path | None = None
            try:
                ws = self.rt.workspace(self.rt.repo(task.repo))
                assert task.branch is not None
                worktree = await ws.prepare(task.branch)
                await ws.reset(worktree)
                await self._handoff(task, attempt, ws, worktree)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("handoff_crashed", error=repr(exc), exc_info=not isinstance(exc, AgentosError))
                if task.status is TaskStatus.VALIDATING:
                    detail = f"{type(exc).__name__}: {exc}"
                    await self._fail_validation(task, attempt, "environment_failure", detail, ws=ws, worktree=worktree)

    async def _handoff(self, task: Task, attempt: Attempt, ws: Workspace, worktree: Path) -> None:
        """Prove, record and publish a complete (committed) attempt. Every step may be repeated safely:
        the PR is found by its head branch before one is opened, the comment is keyed."""
        rt = self.rt
        repo = rt.repo(task.repo)
        stat = await ws.diff_stat(worktree)
        if stat.files == 0:
            await self._fail_validation(
                task, attempt, "no_diff_produced", "the agent reported complete but changed nothing"
            )
            return
        tests = await ws.run_tests(worktree)
        if tests.code != 0 or tests.timed_out:
            why = "timed out" if tests.timed_out else f"exit {tests.code}"
            detail = f"`{repo.test_command}` {why}:\n{redact(tests.output_tail[-3000:])}"
            await self._fail_validation(task, attempt, "test_failure", detail, ws=ws, worktree=worktree)
            return
        await ws.reset(worktree)  # drop what the test run left behind (caches, reports)
        if await memory.record(worktree, task, attempt, stat.paths):
            await ws.commit_all(worktree, f"CODEBASE.md: notes from {task.id}")  # the only change after the reset
        branch = task.branch or ""
        leaks, scanned = await ws.find_secrets(worktree, find_secrets)
        if leaks:
            await self._refuse_secret(task, attempt, ws, worktree, leaks)
            return
        await ws.push(worktree, branch, sha=scanned)  # the commit the scan read, not HEAD asked again
        pr = await rt.forge.find_pr(task.repo, branch)
        if pr is None:
            body = _pr_body(task, attempt, stat.files)
            pr = await rt.forge.open_pr(task.repo, head=branch, base=repo.base_branch, title=task.title, body=body)
            log.info("pr_opened", pr=pr.number, url=pr.url)
        else:
            log.info("pr_reused", pr=pr.number, state=pr.state)
        # The comment is keyed, so posting it before the state change is safe to repeat after a crash.
        await self._safe(
            rt.forge.comment(
                task.repo,
                task.issue,
                redact(_attempt_comment(task, attempt, pr.number)),
                key=f"attempt:{task.id}:{attempt.number}",
            )
        )
        task.pr = pr.number
        ev = transition(task, TaskStatus.PR_OPEN, rt.now(), pr=pr.number)
        rt.commit([ev], [task])
        await self._board(task, "In Review")
        self.on_pr_opened()

    async def _refuse_secret(
        self, task: Task, attempt: Attempt, ws: Workspace, worktree: Path, leaks: list[str]
    ) -> None:
        """A branch that would publish a secret is never pushed: escalate, then reset the branch to the base
        (its change is kept, secret and all, in the run dir, which only agentos's user can read)."""
        base = f"refs/remotes/origin/{ws.base}"
        patch = Path(attempt.run_dir or self.run_dir(task, attempt)) / "secret.patch"
        diff = await ws.git("diff", "--binary", "--no-color", f"{base}...HEAD", cwd=worktree, check=False)
        await asyncio.to_thread(atomic_write_text, patch, diff.out)
        shown = "; ".join(leaks[:5]) + (f" (+{len(leaks) - 5} more)" if len(leaks) > 5 else "")
        detail = (
            f"a push would publish a secret: {shown}. Nothing was pushed. The branch was reset to {ws.base}; its "
            f"change, secret included, is in {patch}. If the secret is real, rotate it."
        )
        log.warning("secret_in_branch", leaks=len(leaks))
        await self._fail_validation(task, attempt, "secret_detected", detail, ws=ws, worktree=worktree)
        assert task.branch is not None
        if (worktree / ".git").exists():
            await ws.restore_branch(worktree, task.branch, base)
        else:  # the escalation removed the worktree; its branch stays, emptied
            await ws.git("branch", "-f", task.branch, base, check=False)

    async def _fail_validation(
        self,
        task: Task,
        attempt: Attempt,
        code: str,
        detail: str,
        *,
        ws: Workspace | None = None,
        worktree: Path | None = None,
    ) -> None:
        attempt.blocker_code = code
        attempt.error = redact(detail)[-3000:]
        attempt.outcome = "failed"
        task.last_blocker = code
        log.warning("validation_failed", code=code)
        if ws is not None and worktree is not None:
            with contextlib.suppress(AgentosError):
                await ws.reset(worktree)  # the agent's work stays committed on the branch; test leftovers go
        await self._after_failure(task, attempt, Verdict("failed", code, error=detail, keep_changes=True))

    # ------------------------------------------------------------ failure paths

    async def _after_failure(
        self,
        task: Task,
        attempt: Attempt,
        verdict: Verdict,
        *,
        ws: Workspace | None = None,
        worktree: Path | None = None,
        since: str | None = None,
    ) -> None:
        """End a failed attempt; keep (partial) or save-and-drop (anything else) its changes; retry or escalate.

        ``since`` is where the attempt started: a blocked, timed-out or invalid attempt's changes, commits
        included, are saved as ``changes.patch`` in its run dir and the branch goes back to ``since``.
        """
        rt = self.rt
        now = rt.now()
        events: list[Event] = []
        if attempt.outcome == "running":
            events.append(
                end_attempt(
                    task,
                    now,
                    outcome=verdict.outcome if verdict.outcome in ("partial", "blocked") else "failed",  # type: ignore[arg-type]
                    blocker_code=verdict.blocker,
                    summary=verdict.summary[:2000],
                    error=redact(verdict.error)[-3000:],
                )
            )
        if ws is not None and worktree is not None:
            if verdict.keep_changes:
                await ws.commit_all(worktree, _commit_message(task, verdict.summary or "partial work", partial=True))
            else:
                patch = Path(attempt.run_dir or self.run_dir(task, attempt)) / "changes.patch"
                if await ws.save_patch(worktree, patch, since=since):
                    attempt.patch_path = str(patch)
                await ws.reset(worktree, to=since)
        permanent = verdict.blocker in PERMANENT_CODES or CONTAINMENT_CODES.get(verdict.blocker or "", False)
        exhausted = counted_attempts(task) >= rt.config.routing.max_attempts
        if permanent or exhausted:
            await self._escalate(task, events, reason="permanent" if permanent else "max_attempts")
            return
        if breach := self.budget_breach(task):
            await self._escalate_over_budget(task, breach, events)
            return
        delay = (
            0.0
            if verdict.blocker == "quota_limited"
            else backoff_seconds(
                counted_attempts(task), rt.config.routing.backoff_base_s, rt.config.routing.backoff_cap_s
            )
        )
        task.not_before = now + timedelta(seconds=delay)
        events.append(transition(task, TaskStatus.RETRYING, now, blocker=verdict.blocker, retry_in_s=delay))
        rt.commit(events, [task])
        log.info("attempt_failed_will_retry", blocker=verdict.blocker, retry_in_s=delay)

    async def _escalate(self, task: Task, events: Sequence[Event], *, reason: str) -> None:
        """Label the issue blocked (and no longer ready), journal BLOCKED, then comment and notify.

        The labels change first, so the dispatcher never sees a blocked task on a still-ready issue; the
        comment is keyed and :meth:`recover` posts it if the daemon died before it did.
        """
        rt = self.rt
        await self._safe(rt.forge.remove_label(task.repo, task.issue, rt.ready_label))
        await self._safe(rt.forge.add_labels(task.repo, task.issue, [BLOCKED_LABEL]))
        await self._board(task, "Blocked")
        evs = list(events)
        evs.append(transition(task, TaskStatus.BLOCKED, rt.now(), reason=reason, blocker=task.last_blocker))
        evs.append(rt.event("escalated", task.id, blocker=task.last_blocker, attempts=len(task.attempts)))
        rt.commit(evs, [task])
        log.warning("task_escalated", blocker=task.last_blocker, attempts=len(task.attempts))
        await self._announce_escalation(task)
        if task.branch:  # a finished task keeps no worktree (LESSONS #17); its branch stays for a retry
            try:
                await rt.workspace(rt.repo(task.repo)).remove(task.branch, keep_branch=True)
            except AgentosError as exc:
                log.warning("worktree_remove_failed", error=str(exc))

    def budget_breach(self, task: Task) -> str | None:
        """``spent …; limit …`` when the task's issue (every attempt of every generation) is over a ceiling."""
        return issue_breach(self._issue_tasks(task), self.rt.config.limits)

    def _issue_tasks(self, task: Task) -> list[Task]:
        tasks = self.rt.graph.for_issue(task.repo, task.issue)
        return tasks if any(t is task for t in tasks) else [*tasks, task]

    async def _escalate_over_budget(self, task: Task, breach: str, events: Sequence[Event]) -> None:
        task.last_blocker = BUDGET_CODE
        log.warning("task_over_budget", task=task.id, detail=breach)
        await self._escalate(task, events, reason="budget")

    def _escalation_marker(self, task: Task) -> Path:
        return self.rt.state_dir / "runs" / safe_id(task.id) / f"escalated-{len(task.attempts)}"

    async def _announce_escalation(self, task: Task) -> None:
        """The structured comment (once, by key) and the notification; then the marker that says so."""
        rt = self.rt
        key = f"escalation:{task.id}:{len(task.attempts)}"
        figures = self.budget_breach(task) or f"spent {issue_spend(self._issue_tasks(task)).describe()}"
        try:
            await rt.forge.comment(task.repo, task.issue, redact(_escalation_comment(task, figures)), key=key)
        except AgentosError as exc:
            log.warning("forge_call_failed", error=str(exc))
            return  # no marker: the next start tries again
        if rt.notifier is not None:
            url = ""
            with contextlib.suppress(AgentosError):  # the button degrades to "show" when the issue can't be read
                url = (await rt.forge.get_issue(task.repo, task.issue)).url
            try:
                buttons = [
                    action_button("Retry", "retry", task.id),
                    action_button("Cancel", "cancel", task.id),
                    issue_button(url, task.id),
                ]
            except ValueError:  # an id too long for Telegram's 64-byte callback data: /retry ID still works
                buttons = [issue_button(url, task.id)] if url.startswith("http") else []
            rt.notifier.notify(
                1,
                key,
                f"Escalated {task.id}: {task.title}\nblocker: {task.last_blocker}\nattempts: {len(task.attempts)}"
                f"\n{figures}",
                buttons=buttons,
            )
        marker = self._escalation_marker(task)
        with contextlib.suppress(OSError):
            marker.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            marker.write_text(key + "\n", encoding="utf-8")

    # ------------------------------------------------------------ helpers

    def _prior(self, task: Task) -> list[PriorAttempt]:
        prior = []
        for a in task.attempts[:-1]:
            text = ""
            if a.run_dir:
                path = Path(a.run_dir) / RESULT_FILE
                if path.is_file():
                    text = path.read_text(encoding="utf-8", errors="replace")[:20_000]
            prior.append(
                PriorAttempt(
                    number=a.number,
                    agent=a.agent,
                    outcome=a.outcome,
                    blocker_code=a.blocker_code,
                    result_text=text,
                    patch_path=a.patch_path,
                    error=a.error[-3000:],  # a CI report (PR monitor) is up to 3000 characters
                )
            )
        return prior

    async def _stash_leftovers(self, ws: Workspace, worktree: Path, task: Task) -> bool:
        """A worktree left dirty by the previous attempt: keep its changes as a patch, start clean.

        An *interrupted* attempt (the daemon died) never got a verdict, so even what it committed is
        unproven: the branch goes back to where that attempt started, its work saved as a patch.
        True when HEAD was moved.
        """
        if len(task.attempts) < 2:
            return False
        prev = task.attempts[-2]
        prev_dir = Path(prev.run_dir or self.run_dir(task, prev))
        since = _read_start(prev_dir) if prev.outcome == "interrupted" else None
        saved = await ws.save_patch(worktree, prev_dir / "leftover.patch", since=since)
        if saved:
            prev.patch_path = prev.patch_path or str(prev_dir / "leftover.patch")
        if saved or since is not None:
            await ws.reset(worktree, to=since)
        return since is not None

    async def _board(self, task: Task, status: str) -> None:
        await self._safe(self.rt.forge.set_board_status(task.repo, task.issue, status))  # type: ignore[arg-type]

    @staticmethod
    async def _safe(coro: object) -> None:
        """A forge call whose failure must not stop the task (it is retried by the next run)."""
        try:
            await coro  # type: ignore[misc]
        except AgentosError as exc:
            log.warning("forge_call_failed", error=str(exc))


def _read_tail(path: Path, limit: int) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            return f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def _read_start(run_dir: Path) -> str | None:
    try:
        sha = (run_dir / START_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return sha or None


def _commit_message(task: Task, summary: str, *, partial: bool = False) -> str:
    first = (redact(summary).strip().splitlines() or [task.title])[0][:72]  # commits are pushed: no secrets
    prefix = "partial: " if partial else ""
    return f"{prefix}{first}\n\nagentos task {task.id} (issue #{task.issue})"


def _pr_body(task: Task, attempt: Attempt, files: int) -> str:
    return (
        f"Closes #{task.issue}\n\n"
        f"{redact(attempt.summary) or task.title}\n\n"
        f"---\nagentos task `{task.id}` · attempt {attempt.number} by `{attempt.agent}` · {files} files changed"
    )


def _attempt_comment(task: Task, attempt: Attempt, pr: int) -> str:
    return (
        f"**agentos**: attempt {attempt.number} by `{attempt.agent}` is complete; PR #{pr} is open.\n\n"
        f"{attempt.summary or '(no summary)'}"
    )


def _last_contract(task: Task) -> ResultContract | None:
    """The newest result file an attempt of ``task`` left that parses."""
    for attempt in reversed(task.attempts):
        if attempt.run_dir:
            try:
                return read_contract(Path(attempt.run_dir) / RESULT_FILE)
            except ContractError:
                continue
    return None


def _cell(text: str, limit: int = 160) -> str:
    return " ".join(text.split()).replace("|", "\\|")[:limit]


def _escalation_comment(task: Task, figures: str = "") -> str:
    """What was tried by whom, the blocker codes, what it cost, the last error, the next step, the manual steps."""
    lines = [
        f"**agentos escalated this issue** after {len(task.attempts)} attempts; it needs a human.",
        "",
        f"Task `{task.id}`, last blocker: `{task.last_blocker or '-'}`.",
        "",
    ]
    if figures:
        lines += [f"Budget: {figures}.", ""]
    if task.last_blocker == BUDGET_CODE:
        lines += [
            "The issue reached its token or cost ceiling (`limits.max_task_tokens`, `limits.max_task_cost_usd`), "
            "so agentos stopped retrying it. A retry runs one more attempt; raise the limit for more.",
            "",
        ]
    lines += [
        "| # | agent | outcome | blocker | note |",
        "|---|---|---|---|---|",
    ]
    for a in task.attempts:
        lines.append(
            f"| {a.number} | `{a.agent}` | {a.outcome} | `{a.blocker_code or '-'}` | {_cell(a.error or a.summary)} |"
        )
    last = task.attempts[-1] if task.attempts else None
    if last and last.error.strip():
        lines += ["", "Last error:", "", fence(last.error.strip()[-1500:])]
    contract = _last_contract(task)
    next_step = contract.next_step.strip() if contract else ""
    manual = contract.manual_steps.strip() if contract else ""
    if manual and manual.lower() not in ("none", "n/a", "-"):
        lines += ["", "**Manual steps** (from the agent):", "", fence(manual[-1500:])]
    if next_step and next_step.lower() not in ("none", "n/a", "-"):
        lines += ["", f"**The agent's next step:** {_cell(next_step, 500)}"]
    lines += [
        "",
        "**Next step:** fix the blocker above (or clarify the issue), then make the issue ready again "
        f"(`agentos issue ready {task.issue}` on the local forge) or run `agentos ctl task retry {task.id}`.",
    ]
    return "\n".join(lines)
