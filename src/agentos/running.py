"""The attempts running now: one asyncio task each, keyed by task id, each stoppable with a reason.

The executor launches into it; lifecycle stops an attempt with a reason (an operator's cancel), the daemon's
shutdown drains it. A stop cancels the attempt's coroutine: the runner then takes the agent's process group
down (TERM → grace → KILL), a test command's group is killed, and :meth:`stop` returns once it is gone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

from agentos import logging as alog

log = alog.get_logger("agentos.running")

SHUTDOWN = "shutdown"


class RunningAttempts:
    """The running attempts' coroutines. ``tasks`` may be a dict shared with older readers (``Runtime.running``)."""

    def __init__(
        self, tasks: dict[str, asyncio.Task[None]] | None = None, *, on_done: Callable[[str], None] | None = None
    ) -> None:
        self._tasks: dict[str, asyncio.Task[None]] = tasks if tasks is not None else {}
        self._reasons: dict[str, str] = {}
        self._on_done = on_done

    def __repr__(self) -> str:
        return f"<RunningAttempts running={len(self._tasks)} stopping={len(self._reasons)}>"

    def __len__(self) -> int:
        return len(self._tasks)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._tasks

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._tasks))

    def get(self, task_id: str) -> asyncio.Task[None] | None:
        return self._tasks.get(task_id)

    def supervised(self, task_id: str) -> bool:
        """An attempt of ``task_id`` runs and its coroutine is alive."""
        runner = self._tasks.get(task_id)
        return runner is not None and not runner.done()

    def launch(self, task_id: str, coro: Coroutine[Any, Any, None]) -> None:
        runner = asyncio.get_running_loop().create_task(coro)
        self._tasks[task_id] = runner

        def done(t: asyncio.Task[None]) -> None:
            if self._tasks.get(task_id) is t:
                del self._tasks[task_id]
            self._reasons.pop(task_id, None)
            if not t.cancelled() and t.exception() is not None:
                log.error("executor_crashed", task=task_id, error=repr(t.exception()))
            if self._on_done is not None:
                self._on_done(task_id)

        runner.add_done_callback(done)

    def stop_reason(self, task_id: str) -> str:
        """Why the attempt of ``task_id`` is being stopped: ``shutdown`` unless :meth:`stop` gave a reason."""
        return self._reasons.get(task_id, SHUTDOWN)

    async def stop(self, task_id: str, reason: str) -> bool:
        """Stop the attempt of ``task_id`` (its processes killed) and wait until it is gone; False if none ran."""
        runner = self._tasks.get(task_id)
        if runner is None or runner.done():
            return False
        self._reasons[task_id] = reason
        log.info("attempt_stopping", task=task_id, reason=reason)
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        return True

    async def drain(self, grace_s: float, before_cancel: Callable[[], None] | None = None) -> None:
        """Shutdown: give running attempts ``grace_s`` to finish, then interrupt them (they are re-queued);
        ``before_cancel`` runs just before they are interrupted."""
        pending = list(self._tasks.values())
        if pending:
            _done, still = await asyncio.wait(pending, timeout=grace_s)
            if still and before_cancel is not None:
                before_cancel()
            for t in still:
                t.cancel()
            await asyncio.gather(*still, return_exceptions=True)
