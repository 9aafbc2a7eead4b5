"""The running attempts: launched, stopped with a reason (waiting until they are gone), drained at shutdown."""

from __future__ import annotations

import asyncio

from agentos.running import SHUTDOWN, RunningAttempts


class TestRunningAttempts:
    async def test_stop_waits_for_the_attempt_and_says_why(self) -> None:
        """stop() cancels the attempt, returns once its clean-up ran, and the attempt saw the reason."""
        done: list[str] = []
        attempts = RunningAttempts(on_done=done.append)
        started = asyncio.Event()
        seen: list[str] = []

        async def attempt() -> None:
            started.set()
            try:
                await asyncio.Event().wait()
            finally:
                seen.append(attempts.stop_reason("calc#1"))

        attempts.launch("calc#1", attempt())
        await started.wait()
        assert attempts.supervised("calc#1") and "calc#1" in attempts
        assert await attempts.stop("calc#1", "operator_cancel")
        assert seen == ["operator_cancel"]
        assert "calc#1" not in attempts and done == ["calc#1"]
        assert not await attempts.stop("calc#1", "operator_cancel"), "nothing runs any more"

    async def test_drain_interrupts_what_outlives_the_grace_as_a_shutdown(self) -> None:
        """Shutdown: an attempt still running after the grace is cancelled, and it sees the reason "shutdown"."""
        attempts = RunningAttempts()
        release = asyncio.Event()
        reasons: list[str] = []

        async def quick() -> None:
            await release.wait()

        async def stuck() -> None:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                reasons.append(attempts.stop_reason("calc#2"))
                raise

        attempts.launch("calc#1", quick())
        attempts.launch("calc#2", stuck())
        release.set()
        finished = attempts.get("calc#1")
        assert finished is not None
        await finished
        await attempts.drain(grace_s=0.01)
        assert len(attempts) == 0
        assert reasons == [SHUTDOWN]
