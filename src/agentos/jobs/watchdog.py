"""The stall watchdog: attempts whose process is gone, or that outlived every limit, are ended.

The runner enforces the idle and wall-clock limits itself; this job catches what it cannot: an
attempt recorded as running whose supervising coroutine is gone (it died with an exception; a live
agent process of it is killed) or whose agent process vanished, an attempt past its wall-clock limit
plus grace, and a hand-off (VALIDATING) that nothing runs any more, which is resumed.

It also does two pieces of upkeep that must go on while the daemon is paused:

* after a failed state write (a full disk) it retries the write (``retry_writes``) and does
  nothing else until that works: ending an attempt would be a state change it cannot save;
* it keeps every repo within its worktree budget (``max_worktrees``, ``max_worktree_disk_mb``): the oldest
  worktrees of finished tasks go first (:meth:`Workspace.enforce_budget`); a repo still over budget gets no
  new worktree from the dispatcher, and the operator is told once per episode.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Protocol

from agentos import logging as alog
from agentos.agents.runner import kill_orphan, proc_start_time
from agentos.errors import AgentosError
from agentos.graph import Task, TaskStatus
from agentos.lifecycle import Lifecycle
from agentos.notices import safe_id
from agentos.ports import Clock, Journal, Notify, Settings, Wake, Workspaces
from agentos.task_graph import TaskGraph
from agentos.verdicts import Verdict
from agentos.workspace import Finished

log = alog.get_logger("agentos.watchdog")


class Handoffs(Protocol):
    """What the watchdog needs of the executor: run a hand-off whose coroutine is gone again."""

    def resume_handoff(self, task: Task) -> None: ...


class StallWatchdog:
    def __init__(
        self,
        *,
        settings: Settings,
        journal: Journal,
        clock: Clock,
        graph: TaskGraph,
        workspaces: Workspaces,
        lifecycle: Lifecycle,
        executor: Handoffs,
        notify: Notify,
        wake: Wake,
        retry_writes: Callable[[], bool],
    ) -> None:
        self.settings = settings
        self.journal = journal
        self.clock = clock
        self.graph = graph
        self.workspaces = workspaces
        self.lifecycle = lifecycle
        self.running = lifecycle.running
        self.executor = executor
        self.notify = notify
        self.wake = wake
        self.retry_writes = retry_writes
        self.over_budget: dict[str, str] = {}
        """Repos whose worktree budget cleanup could not meet → why (the operator was told)."""

    def __repr__(self) -> str:
        return f"<StallWatchdog running={len(self.running)} over_budget={len(self.over_budget)}>"

    async def tick(self) -> None:
        if self.journal.held is not None and not self.retry_writes():
            return  # the disk is still full: no state change can be saved, so none is made
        await self._end_stalled()
        await self.enforce_budgets()

    async def _end_stalled(self) -> None:
        limits = self.settings.config.limits
        limit = timedelta(minutes=limits.max_runtime_minutes) + timedelta(seconds=limits.kill_grace_s + 60)
        for task in list(self.graph):
            attempt = task.current_attempt
            supervised = self.running.supervised(task.id)
            if task.status is TaskStatus.VALIDATING and attempt is not None and not supervised:
                # A hand-off whose coroutine is gone: every step of it is idempotent, so run it again.
                log.warning("handoff_unsupervised_resumed", task=task.id)
                self.executor.resume_handoff(task)
                continue
            if task.status is not TaskStatus.RUNNING or attempt is None or attempt.outcome != "running":
                continue
            overdue = self.clock() - attempt.started_at > limit
            if supervised and not overdue:
                continue
            runner = self.running.get(task.id)
            if supervised and overdue and runner is not None:
                runner.cancel()
                log.warning("attempt_overdue_cancelled", task=task.id)
            alive = attempt.pid is not None and proc_start_time(attempt.pid) == attempt.pid_start
            if alive and attempt.pid and attempt.pid_start and not supervised:
                # Nobody reads its output or enforces its limits any more: it must not run on unseen.
                await asyncio.to_thread(kill_orphan, attempt.pid, attempt.pid_start)
            reason = "attempt no longer supervised" if attempt.pid is None or alive else "agent process vanished"
            if supervised:
                reason = "attempt overdue: past every time limit"
            log.warning("stalled_attempt_ended", task=task.id, reason=reason)
            await self.lifecycle.attempt_failed(task, Verdict("failed", "timeout", error=reason))

    async def enforce_budgets(self) -> None:
        """Each repo with a worktree budget: remove the oldest finished worktrees; tell once when it stays over."""
        state_dir = self.settings.config.state_path
        for repo in self.settings.config.repos:
            ws = self.workspaces.workspace(repo)
            if not ws.budgeted:
                self.over_budget.pop(repo.name, None)
                continue
            live = {t.branch for t in self.graph if t.repo == repo.name and t.branch and not t.is_terminal}
            live |= {t.branch for t in map(self.graph.find, self.running) if t is not None and t.branch}
            finished = {
                t.branch: Finished(
                    t.updated_at.timestamp(),
                    state_dir / "runs" / safe_id(t.id) / "budget-cleanup.patch",
                    keep_branch=t.status not in (TaskStatus.MERGED, TaskStatus.ACCEPTED),
                )
                for t in self.graph
                if t.repo == repo.name and t.branch and t.is_terminal and t.branch not in live
            }
            try:
                report = await ws.enforce_budget(finished)
            except AgentosError as exc:
                log.warning("worktree_budget_failed", repo=repo.name, error=str(exc))
                continue
            if report.removed:
                self.wake("dispatch")
            if report.full is None:
                if self.over_budget.pop(repo.name, None) is not None:
                    log.info("worktree_budget_met", repo=repo.name, worktrees=report.count, bytes=report.size)
                continue
            if repo.name in self.over_budget:
                continue
            self.over_budget[repo.name] = report.full
            log.warning("worktree_budget_exceeded", repo=repo.name, why=report.full, worktrees=report.count)
            self.notify.notify(
                2,
                f"worktree_budget:{repo.name}",
                f"Repo {repo.name} is over its worktree budget ({report.full}) and no finished task's worktree "
                "is left to remove: new tasks for it wait until a running one finishes or the budget is raised.",
            )
