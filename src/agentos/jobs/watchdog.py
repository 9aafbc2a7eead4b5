"""The stall watchdog: attempts whose process is gone, or that outlived every limit, are ended.

The runner enforces the idle and wall-clock limits itself; this job catches what it cannot: an
attempt recorded as running whose supervising coroutine is gone (it died with an exception) or whose
agent process vanished, and an attempt past its wall-clock limit plus grace.
"""

from __future__ import annotations

from datetime import timedelta

from agentos import logging as alog
from agentos.agents.runner import proc_start_time
from agentos.executor import Executor, Verdict
from agentos.graph import TaskStatus
from agentos.runtime import Runtime

log = alog.get_logger("agentos.watchdog")


class StallWatchdog:
    def __init__(self, rt: Runtime, executor: Executor) -> None:
        self.rt = rt
        self.executor = executor

    async def tick(self) -> None:
        rt = self.rt
        limit = timedelta(minutes=rt.config.limits.max_runtime_minutes) + timedelta(
            seconds=rt.config.limits.kill_grace_s + 60
        )
        for task in list(rt.graph):
            attempt = task.current_attempt
            if task.status is not TaskStatus.RUNNING or attempt is None or attempt.outcome != "running":
                continue
            supervised = task.id in rt.running and not rt.running[task.id].done()
            alive = attempt.pid is None or proc_start_time(attempt.pid) == attempt.pid_start
            overdue = rt.now() - attempt.started_at > limit
            if supervised and not overdue:
                continue
            if supervised and overdue:
                rt.running[task.id].cancel()
                log.warning("attempt_overdue_cancelled", task=task.id)
            reason = "agent process vanished" if not alive else "attempt no longer supervised"
            log.warning("stalled_attempt_ended", task=task.id, reason=reason)
            await self.executor._after_failure(task, attempt, Verdict("failed", "timeout", error=reason))
