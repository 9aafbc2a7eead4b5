"""The executor: one attempt of one task, from worktree to pull request; its verdict goes to lifecycle.

    prepare worktree → hooks → prompt → agent process → contract → commit → diff? → tests →
    CODEBASE.md entry → push → PR "Closes #N" → comment            (complete)
    … → commit to branch, next agent builds on it                   (partial)
    … → patch saved in the run dir, worktree reset                  (blocked, timeout, invalid, crash)

The hand-off of a complete attempt (commit → tests → push → PR) is :class:`~agentos.handoff.Handoff`'s.

Every state change is journalled (``Journal.commit``) before the side effect it licenses, and every
side effect is idempotent (worktree reuse, lease pushes, PR by head branch, comments by key), so a
crash at any point followed by :meth:`Executor.recover` finishes the work exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from datetime import datetime
from pathlib import Path
from typing import Protocol

from agentos import logging as alog
from agentos import memory
from agentos.agents.adapters import AgentNotInstalled, parse_output
from agentos.agents.contract import RESULT_FILE, ContractError, read_result_bytes
from agentos.agents.prompt import PromptTooLarge, build_prompt
from agentos.agents.runner import kill_marked, kill_orphan
from agentos.context import ContextCache
from agentos.errors import AgentosError
from agentos.forge.base import BoardStatus, Forge
from agentos.graph import Attempt, Task, TaskStatus
from agentos.handoff import Handoff
from agentos.lifecycle import CONTAINMENT_CODES, Lifecycle, best_effort
from agentos.notices import commit_message, safe_id
from agentos.ports import Clock, Journal, Settings, Wake, Workspaces
from agentos.run_files import START_FILE, attempt_dir, prior_attempts, read_start, read_tail
from agentos.runners.egress import EgressProxy
from agentos.runners.port import (
    AttemptRun,
    AttemptSpec,
    NoNodeFits,
    Placement,
    Runner,
    RunnerLost,
    RunnerUnavailable,
    attempt_spec,
    runner_for,
)
from agentos.running import SHUTDOWN, RunningAttempts
from agentos.task_graph import TaskGraph
from agentos.verdicts import Verdict, judge
from agentos.workspace import Breach, Guard, Workspace, branch_name

__all__ = ["CONTAINMENT_CODES", "RESULT_FILE", "Executor", "Pool", "Verdict", "counted_attempts", "safe_id"]

log = alog.get_logger("agentos.executor")


def counted_attempts(task: Task) -> int:
    """Kept for callers of the old name: :meth:`Task.counted_attempts`."""
    return task.counted_attempts()


class Pool(Protocol):
    """Which agent runs next, and the pauses that keep one out (``agents/pool.py``'s ``AgentPool``)."""

    def choose(self, task: Task) -> str | None: ...

    def pause_for_quota(self, agent: str, until: datetime | None, detail: str = "") -> object:
        """Pause ``agent`` until ``until`` (the CLI's reset time), else for its ``cooldown_minutes``."""
        ...

    def enforce_budgets(self) -> object: ...


class Executor:
    """Runs attempts: one coroutine per attempt in :class:`RunningAttempts`, each ending in a verdict for lifecycle."""

    def __init__(
        self,
        *,
        settings: Settings,
        journal: Journal,
        clock: Clock,
        graph: TaskGraph,
        forge: Forge,
        workspaces: Workspaces,
        pool: Pool,
        lifecycle: Lifecycle,
        wake: Wake,
        egress: EgressProxy | None = None,
        runner: Runner | None = None,
    ) -> None:
        self.settings = settings
        self.journal = journal
        self.clock = clock
        self.graph = graph
        self.forge = forge
        self.workspaces = workspaces
        self.pool = pool
        self.lifecycle = lifecycle
        self.attempts = lifecycle.running
        self.wake = wake
        self.egress = egress  # the daemon's egress proxy, a sandboxed attempt's only way out (None: none, tests)
        self.runner = runner or runner_for(
            settings.config.runner, journal=journal, notify=lifecycle.notify, egress=egress
        )
        """Where attempts run (``runner.kind``): this machine, or a Ray cluster."""
        self.contexts = ContextCache()
        self.handoff = Handoff(
            settings=settings,
            journal=journal,
            clock=clock,
            forge=forge,
            workspaces=workspaces,
            lifecycle=lifecycle,
            wake=wake,
            egress=egress,
        )

    def __repr__(self) -> str:
        return f"<Executor running={len(self.attempts)}>"

    @property
    def state_dir(self) -> Path:
        return self.settings.config.state_path

    def choose_agent(self, task: Task) -> str | None:
        """The agent the task's next attempt gets (None: every agent of its chain is paused)."""
        return self.pool.choose(task)

    # ------------------------------------------------------------ starting, stopping

    def running(self) -> RunningAttempts:
        """The attempts running now (the dispatcher counts them, lifecycle stops one)."""
        return self.attempts

    def start(self, task: Task) -> bool:
        """Begin an attempt in the background; False when no agent is available now.

        A task the system itself re-queued (RETRYING: after a failure, or a red PR sent back) whose issue is over
        its token or cost ceiling is escalated instead. A QUEUED one runs: it is new, or an operator retried it,
        and gets that one attempt before the ceiling is checked again.
        """
        if task.status is TaskStatus.RETRYING and (breach := self.lifecycle.budget_breach(task)):
            self.attempts.launch(task.id, self.lifecycle.escalate_over_budget(task, breach))
            return False
        agent = self.choose_agent(task)
        if agent is None or not self.runner.ready():
            return False
        # A new generation starts afresh from the base, never on the branch of the one before it.
        suffix = f"-g{task.generation}" if task.generation > 1 else ""
        run_dir = self.state_dir / "runs" / safe_id(task.id) / str(len(task.attempts) + 1)
        attempt, event = task.start_attempt(
            agent, self.clock(), branch=branch_name(task.issue, task.title) + suffix, run_dir=str(run_dir)
        )
        self.journal.commit([event], [task])
        self.attempts.launch(task.id, self._attempt(task, attempt))
        return True

    async def stop(self, task_id: str, reason: str) -> bool:
        """Stop the attempt of ``task_id`` (its processes killed); see :meth:`RunningAttempts.stop`."""
        return await self.attempts.stop(task_id, reason)

    def resume_handoff(self, task: Task) -> None:
        """Run the hand-off of a VALIDATING task again in the background (after a crash of its coroutine)."""
        attempt = task.current_attempt
        if attempt is not None and task.status is TaskStatus.VALIDATING and task.id not in self.attempts:
            self.attempts.launch(task.id, self.handoff.resume(task, attempt))

    def run_dir(self, task: Task, attempt: Attempt) -> Path:
        return self.state_dir / "runs" / safe_id(task.id) / str(attempt.number)

    def marker_prefix(self) -> str:
        """The start of every ``AGENTOS_ATTEMPT`` marker of this state dir's agents (runner.kill_marked)."""
        return hashlib.sha256(str(self.state_dir.resolve()).encode()).hexdigest()[:12] + "/"

    async def drain(self, grace_s: float) -> None:
        """Shutdown: give running attempts ``grace_s`` to finish, then interrupt them: local ones are re-queued,
        those on a Ray cluster keep running there for the next start to find (:meth:`_left_running`)."""
        await self.attempts.drain(grace_s, before_cancel=self.runner.detach)

    def _left_running(self, task: Task, attempt: Attempt) -> bool:
        """A shutdown stopped following ``attempt``: True when its agent had started on a Ray node, where the
        runner leaves it, so it stays RUNNING for :meth:`recover` to reattach, as after a crash."""
        if attempt.runner != "ray":
            return False
        log.info("attempt_left_running", task=task.id, node=attempt.node or None)
        return True

    async def recover(self) -> None:
        """After a crash: end attempts that were running, re-queue their tasks, resume hand-offs.

        Worktrees are repaired (stale git locks cleared) before any hand-off resumes, so the repair never
        races a git command of ours; escalations whose comment was not posted are finished.
        """
        now = self.clock()
        resume: list[Task] = []
        reattach: list[Task] = []
        for task in list(self.graph):
            attempt = task.current_attempt
            if task.status is TaskStatus.RUNNING and attempt is not None and attempt.outcome == "running":
                if attempt.runner == "ray" or (self.runner.kind == "ray" and attempt.pid is None):
                    # On the cluster, unaffected by our restart (or its actor made before its node was journalled):
                    # found again by name, else re-queued.
                    reattach.append(task)
                    continue
                if attempt.pid and attempt.pid_start:
                    killed = await asyncio.to_thread(kill_orphan, attempt.pid, attempt.pid_start)
                    if killed:
                        log.warning("orphan_agent_killed", task=task.id, pid=attempt.pid)
                events = task.requeue(now, "recovered_after_restart", error="daemon stopped during the attempt")
                self.journal.commit(events, [task])
                log.warning("attempt_interrupted", task=task.id, attempt=attempt.number)
            elif task.status is TaskStatus.VALIDATING and attempt is not None:
                resume.append(task)
        # Whatever still carries our marker is an orphan: an agent whose pid the dead daemon never journalled,
        # or a process an agent moved out of its group. None of ours runs yet (we hold the state lock).
        await asyncio.to_thread(kill_marked, self.marker_prefix(), prefix=True)
        keep = {t.branch for t in self.graph if t.branch and not t.is_terminal}
        for repo in self.settings.config.repos:
            with contextlib.suppress(AgentosError):
                await self.workspaces.workspace(repo).repair(keep)
        for task in resume:
            log.info("handoff_resumed", task=task.id)
            self.resume_handoff(task)
        for task in reattach:
            assert task.current_attempt is not None
            self.attempts.launch(task.id, self._reattach(task, task.current_attempt))
        await self.lifecycle.recover_escalations()

    # ------------------------------------------------------------ one attempt

    async def _attempt(self, task: Task, attempt: Attempt) -> None:
        alog.clear()  # not the context of the job that started us
        with alog.bound(task=task.id, repo=task.repo, issue=task.issue, attempt=attempt.number, agent=attempt.agent):
            try:
                await self._attempt_body(task, attempt)
            except asyncio.CancelledError:
                # An operator's cancel journalled CANCELLED (the attempt ended) before it stopped us; a
                # shutdown did not: the attempt is interrupted and the task re-queued for the next start.
                reason = self.attempts.stop_reason(task.id)
                if attempt.outcome == "running" and reason == SHUTDOWN and not self._left_running(task, attempt):
                    events = task.requeue(self.clock(), "shutdown", error="daemon shutting down")
                    self.journal.commit(events, [task])
                log.info("attempt_stopped", reason=reason)
                raise
            except Exception as exc:
                log.error("attempt_crashed", error=repr(exc), exc_info=True)
                if attempt.outcome == "running":
                    verdict = Verdict("failed", "environment_failure", error=f"{type(exc).__name__}: {exc}")
                    await self.lifecycle.attempt_failed(task, verdict)
                elif task.status is TaskStatus.VALIDATING:
                    await self.handoff.fail(task, "environment_failure", f"{type(exc).__name__}: {exc}")

    async def _attempt_body(self, task: Task, attempt: Attempt) -> None:
        repo = self.settings.repo(task.repo)
        ws = self.workspaces.workspace(repo)
        run_dir = attempt_dir(self.state_dir, task, attempt)
        run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        await self._board(task, "In Progress")
        assert task.branch is not None
        try:
            worktree, start_sha = await ws.prepare_head(task.branch)
        except AgentosError as exc:
            await self.lifecycle.attempt_failed(task, Verdict("failed", "environment_failure", error=str(exc)))
            return
        if await self._stash_leftovers(ws, worktree, task):
            start_sha = await ws.head_sha(worktree)
        (worktree / RESULT_FILE).unlink(missing_ok=True)
        (run_dir / START_FILE).write_text(start_sha + "\n", encoding="utf-8")
        hook = await ws.run_hook("before_run", worktree)
        if hook is not None and not hook.ok:
            await self.lifecycle.attempt_failed(task, Verdict("failed", "environment_failure", error=hook.detail))
            return

        context = await self.contexts.read(task.repo, ws, self.settings.config.loops)
        try:
            prompt = build_prompt(
                task,
                repo_memory=memory.read(worktree),
                prior_attempts=prior_attempts(task, RESULT_FILE),
                test_command=repo.test_command,
                context=context,
            )
        except PromptTooLarge as exc:
            await self.lifecycle.attempt_failed(task, Verdict("failed", "prompt_too_large", error=str(exc)))
            return
        prompt_file = run_dir / "prompt.md"
        prompt_file.write_text(prompt, encoding="utf-8")
        spec = self._spec(task, attempt, worktree, start_sha, prompt)
        guard = await ws.guard(worktree)
        try:
            run = await self.runner.run(spec, lambda placed: self._placed(task, attempt, placed))
        except AgentNotInstalled as exc:
            await self.lifecycle.attempt_failed(task, Verdict("failed", "runner_failure", error=str(exc)))
            return
        except RunnerLost as exc:
            self._lost(task, str(exc))
            return
        except NoNodeFits as exc:
            await self.lifecycle.no_node_fits(task, str(exc))
            return
        except RunnerUnavailable as exc:  # the cluster went away before the agent started: not the agent's fault
            self.journal.commit(task.requeue(self.clock(), "runner_unavailable", error=str(exc)), [task])
            return
        self._note_egress(task, attempt, run)
        await self._judge(task, attempt, ws, worktree, start_sha, guard, run)

    async def _judge(
        self,
        task: Task,
        attempt: Attempt,
        ws: Workspace,
        worktree: Path,
        start_sha: str,
        guard: Guard,
        run: AttemptRun,
    ) -> None:
        """After the agent's run: the worktree checked, its report and result read, the verdict acted on."""
        assert task.branch is not None
        outcome = run.outcome
        agent_cfg = self.settings.config.agents[attempt.agent]
        run_dir = attempt_dir(self.state_dir, task, attempt)
        # Before any git command of ours runs there: a replaced .git or a tampered clone is put back first.
        breaches = await ws.check_guard(worktree, guard, branch=task.branch, since=start_sha)
        await ws.run_hook("after_run", worktree)
        log_text = read_tail(run_dir / "agent.log", 2 * 1024 * 1024)
        report = parse_output(agent_cfg.kind, log_text, outcome.exit_code, now=self.clock())
        task.note_usage(
            tokens_in=report.tokens_in,
            tokens_out=report.tokens_out,
            cost_usd=report.cost_usd,
            turns=report.turns,
            cost_reported=report.cost_reported,
            tokens_reported=report.tokens_reported,
            exit_code=outcome.exit_code,
        )
        self.pool.enforce_budgets()
        result_path = worktree / RESULT_FILE
        with contextlib.suppress(ContractError, OSError):  # never through a symlink, never from a FIFO
            data = await asyncio.to_thread(read_result_bytes, result_path, 256 * 1024, truncate=True)
            (run_dir / RESULT_FILE).write_bytes(data)
        if breaches:
            await self._contain(task, attempt, ws, worktree, start_sha, breaches)
            return

        verdict = judge(outcome, report, result_path)
        if verdict.blocker == "quota_limited":
            self.pool.pause_for_quota(attempt.agent, report.reset_at, verdict.error)
        if verdict.outcome == "complete":
            await self.handoff.begin(task, attempt, ws, worktree, verdict, tests=run.tests, refused=run.tests_egress)
        else:
            await self._failed(task, attempt, verdict, ws, worktree, since=start_sha)

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
        patch = attempt_dir(self.state_dir, task, attempt) / "changes.patch"
        if await ws.save_patch(worktree, patch, since=since):
            task.note_patch(str(patch))
        assert task.branch is not None
        await ws.restore_branch(worktree, task.branch, since)
        await self.lifecycle.attempt_failed(task, Verdict("failed", code, error=detail))

    async def _failed(
        self, task: Task, attempt: Attempt, verdict: Verdict, ws: Workspace, worktree: Path, *, since: str
    ) -> None:
        """A failed attempt's changes: kept (partial) or saved as ``changes.patch`` with the branch back at
        ``since`` (blocked, timed out, invalid); then lifecycle retries the task or escalates it."""
        if verdict.keep_changes:
            await ws.commit_all(worktree, commit_message(task, verdict.summary or "partial work", partial=True))
        else:
            patch = attempt_dir(self.state_dir, task, attempt) / "changes.patch"
            if await ws.save_patch(worktree, patch, since=since):
                task.note_patch(str(patch), attempt=attempt)
            await ws.reset(worktree, to=since)
        await self.lifecycle.attempt_failed(task, verdict)

    # ------------------------------------------------------------ the runner

    def _spec(self, task: Task, attempt: Attempt, worktree: Path, start_sha: str, prompt: str) -> AttemptSpec:
        run_dir = attempt_dir(self.state_dir, task, attempt)
        marker = f"{self.marker_prefix()}{task.id}/{attempt.number}"
        return attempt_spec(self.settings.config, task, attempt, worktree, start_sha, prompt, run_dir, marker)

    def _placed(self, task: Task, attempt: Attempt, placed: Placement) -> None:
        """The agent started: journal where (its pid here, for :func:`kill_orphan` after a crash; or its node)."""
        if placed.pid is not None:
            task.note_process(placed.pid, placed.pid_start or 0)
        if placed.runner != "local":
            task.note_placement(placed.runner, placed.node)
        where = {"pid": placed.pid} if placed.pid is not None else {"runner": placed.runner, "node": placed.node}
        self.journal.commit([self.journal.event("agent_started", task.id, agent=attempt.agent, **where)], [task])
        log.info("agent_spawned", **where, log=str(attempt_dir(self.state_dir, task, attempt) / "agent.log"))

    def _note_egress(self, task: Task, attempt: Attempt, run: AttemptRun) -> None:
        for host in run.denied:
            self.journal.record("egress_denied", task.id, attempt=attempt.number, host=host, during="agent")
        task.note_egress(run.egress, attempt=attempt)

    def _lost(self, task: Task, error: str) -> None:
        """The attempt's node died: re-queued, not counted against the agent (another node takes it)."""
        self.journal.commit(task.lose_runner(self.clock(), error), [task])
        log.warning("attempt_runner_lost", task=task.id, error=error)
        self.wake("dispatch")

    async def _reattach(self, task: Task, attempt: Attempt) -> None:
        """After a restart: wait again for an attempt still running on the cluster, then judge it as usual."""
        alog.clear()
        with alog.bound(task=task.id, repo=task.repo, issue=task.issue, attempt=attempt.number, agent=attempt.agent):
            try:
                repo = self.settings.repo(task.repo)
                ws = self.workspaces.workspace(repo)
                assert task.branch is not None
                worktree, _ = await ws.prepare_head(task.branch)
                run_dir = attempt_dir(self.state_dir, task, attempt)
                start_sha = read_start(run_dir) or await ws.head_sha(worktree)
                prompt = (run_dir / "prompt.md").read_text(encoding="utf-8")
                spec = self._spec(task, attempt, worktree, start_sha, prompt)
                guard = await ws.guard(worktree)
                try:
                    run = await self.runner.reattach(spec)
                except RunnerLost as exc:
                    self._lost(task, str(exc))
                    return
                if run is None:  # gone while we were down, its result with it
                    events = task.requeue(self.clock(), "recovered_after_restart", error="its actor is gone")
                    self.journal.commit(events, [task])
                    self.wake("dispatch")
                    return
                log.info("attempt_reattached", node=attempt.node)
                self._note_egress(task, attempt, run)
                await self._judge(task, attempt, ws, worktree, start_sha, guard, run)
            except asyncio.CancelledError:
                if (
                    attempt.outcome == "running"
                    and self.attempts.stop_reason(task.id) == SHUTDOWN
                    and not self._left_running(task, attempt)
                ):
                    self.journal.commit(task.requeue(self.clock(), "shutdown", error="daemon shutting down"), [task])
                raise
            except Exception as exc:
                log.error("attempt_crashed", error=repr(exc), exc_info=True)
                if attempt.outcome == "running":
                    verdict = Verdict("failed", "environment_failure", error=f"{type(exc).__name__}: {exc}")
                    await self.lifecycle.attempt_failed(task, verdict)

    # ------------------------------------------------------------ helpers

    async def _stash_leftovers(self, ws: Workspace, worktree: Path, task: Task) -> bool:
        """A worktree left dirty by the previous attempt: keep its changes as a patch, start clean.

        An *interrupted* attempt (the daemon died) never got a verdict, so even what it committed is
        unproven: the branch goes back to where that attempt started, its work saved as a patch.
        True when HEAD was moved.
        """
        if len(task.attempts) < 2:
            return False
        prev = task.attempts[-2]
        prev_dir = attempt_dir(self.state_dir, task, prev)
        since = read_start(prev_dir) if prev.outcome == "interrupted" else None
        saved = await ws.save_patch(worktree, prev_dir / "leftover.patch", since=since)
        if saved:
            task.note_patch(str(prev_dir / "leftover.patch"), attempt=prev, keep=True)
        if saved or since is not None:
            await ws.reset(worktree, to=since)
        return since is not None

    async def _board(self, task: Task, status: BoardStatus) -> None:
        await best_effort(self.forge.set_board_status(task.repo, task.issue, status))
