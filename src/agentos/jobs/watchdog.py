"""The stall watchdog: attempts whose process is gone, or that outlived every limit, are ended.

The runner enforces the idle and wall-clock limits itself; this job catches what it cannot: an
attempt recorded as running whose supervising coroutine is gone (it died with an exception; a live
agent process of it is killed) or whose agent process vanished, an attempt past its wall-clock limit
plus grace, and a hand-off (VALIDATING) that nothing runs any more, which is resumed.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from agentos import logging as alog
from agentos.agents.runner import kill_orphan, proc_start_time
from agentos.executor import Executor, Verdict
from agentos.graph import TaskStatus
from agentos.runtime import Runtime

log = alog.get_logger("agentos.watchdog")


class StallWatchdog:
    def __init__(self, rt: Runtime, executor: Executor) -> None:
        self.rt = rt
        self.executor = executor

    def __repr__(self) -> str:
        return f"<StallWatchdog running={len(self.rt.running)}>"

    async def tick(self) -> None:
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
            await self.executor._after_failure(task, attempt, Verdict("failed", "timeout", error=reason))
