"""The stall watchdog: attempts whose process is gone, or that outlived every limit, are ended.

The runner enforces the idle and wall-clock limits itself; this job catches what it cannot: an
attempt recorded as running whose supervising coroutine is gone (it died with an exception; a live
agent process of it is killed) or whose agent process vanished, an attempt past its wall-clock limit
plus grace, and a hand-off (VALIDATING) that nothing runs any more, which is resumed.

It also does two pieces of upkeep that must go on while the daemon is paused:

* after a failed state write (a full disk) it retries the write (:meth:`Runtime.retry_state_write`) and does
  nothing else until that works: ending an attempt would be a state change it cannot save;
* it keeps every repo within its worktree budget (``max_worktrees``, ``max_worktree_disk_mb``): the oldest
  worktrees of finished tasks go first (:meth:`Workspace.enforce_budget`); a repo still over budget gets no
  new worktree from the dispatcher, and the operator is told once per episode.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from agentos import logging as alog
from agentos.agents.runner import kill_orphan, proc_start_time
from agentos.errors import AgentosError
from agentos.executor import Executor
from agentos.graph import TaskStatus
from agentos.lifecycle import Verdict
from agentos.notices import safe_id
from agentos.runtime import Runtime
from agentos.workspace import Finished

log = alog.get_logger("agentos.watchdog")


class StallWatchdog:
    def __init__(self, rt: Runtime, executor: Executor) -> None:
        self.rt = rt
        self.executor = executor
        self.over_budget: dict[str, str] = {}
        """Repos whose worktree budget cleanup could not meet → why (the operator was told)."""

    def __repr__(self) -> str:
        return f"<StallWatchdog running={len(self.rt.running)} over_budget={len(self.over_budget)}>"

    async def tick(self) -> None:
        if self.rt.write_failure is not None and not self.rt.retry_state_write():
            return  # the disk is still full: no state change can be saved, so none is made
        await self._end_stalled()
        await self.enforce_budgets()

    async def _end_stalled(self) -> None:
        rt = self.rt
        limit = timedelta(minutes=rt.config.limits.max_runtime_minutes) + timedelta(
            seconds=rt.config.limits.kill_grace_s + 60
        )
        for task in list(rt.graph):
            attempt = task.current_attempt
            supervised = task.id in rt.running and not rt.running[task.id].done()
            if task.status is TaskStatus.VALIDATING and attempt is not None and not supervised:
                # A hand-off whose coroutine is gone: every step of it is idempotent, so run it again.
                log.warning("handoff_unsupervised_resumed", task=task.id)
                self.executor.resume_handoff(task)
                continue
            if task.status is not TaskStatus.RUNNING or attempt is None or attempt.outcome != "running":
                continue
            overdue = rt.now() - attempt.started_at > limit
            if supervised and not overdue:
                continue
            if supervised and overdue:
                rt.running[task.id].cancel()
                log.warning("attempt_overdue_cancelled", task=task.id)
            alive = attempt.pid is not None and proc_start_time(attempt.pid) == attempt.pid_start
            if alive and attempt.pid and attempt.pid_start and not supervised:
                # Nobody reads its output or enforces its limits any more: it must not run on unseen.
                await asyncio.to_thread(kill_orphan, attempt.pid, attempt.pid_start)
            reason = "attempt no longer supervised" if attempt.pid is None or alive else "agent process vanished"
            if supervised:
                reason = "attempt overdue: past every time limit"
            log.warning("stalled_attempt_ended", task=task.id, reason=reason)
            await self.executor.lifecycle.attempt_failed(task, Verdict("failed", "timeout", error=reason))

    async def enforce_budgets(self) -> None:
        """Each repo with a worktree budget: remove the oldest finished worktrees; tell once when it stays over."""
        rt = self.rt
        for repo in rt.config.repos:
            ws = rt.workspace(repo)
            if not ws.budgeted:
                self.over_budget.pop(repo.name, None)
                continue
            live = {t.branch for t in rt.graph if t.repo == repo.name and t.branch and not t.is_terminal}
            live |= {t.branch for t in map(rt.graph.find, rt.running) if t is not None and t.branch}
            finished = {
                t.branch: Finished(
                    t.updated_at.timestamp(),
                    rt.state_dir / "runs" / safe_id(t.id) / "budget-cleanup.patch",
                    keep_branch=t.status is not TaskStatus.MERGED,
                )
                for t in rt.graph
                if t.repo == repo.name and t.branch and t.is_terminal and t.branch not in live
            }
            try:
                report = await ws.enforce_budget(finished)
            except AgentosError as exc:
                log.warning("worktree_budget_failed", repo=repo.name, error=str(exc))
                continue
            if report.removed and rt.scheduler is not None and rt.scheduler.has_job("dispatch"):
                rt.scheduler.poke("dispatch")
            if report.full is None:
                if self.over_budget.pop(repo.name, None) is not None:
                    log.info("worktree_budget_met", repo=repo.name, worktrees=report.count, bytes=report.size)
                continue
            if repo.name in self.over_budget:
                continue
            self.over_budget[repo.name] = report.full
            log.warning("worktree_budget_exceeded", repo=repo.name, why=report.full, worktrees=report.count)
            if rt.notifier is not None:
                rt.notifier.notify(
                    2,
                    f"worktree_budget:{repo.name}",
                    f"Repo {repo.name} is over its worktree budget ({report.full}) and no finished task's worktree "
                    "is left to remove: new tasks for it wait until a running one finishes or the budget is raised.",
                )
