"""Supervise one agent process: spawn it, stream its output into a capped log, enforce two limits, kill its group.

The runner knows nothing about agents (that is :mod:`agentos.agents.adapters`). It runs an argv in its own
session through :mod:`agentos.proc` (the one process layer: spawn, kill policy, ``/proc`` helpers, the scrubbed
environment, re-exported here), so a kill reaches the whole process tree the agent starts, and it watches two
limits:

* **idle**: no output for ``idle_timeout_s`` (the agent is stalled), and
* **wall**: ``max_runtime_s`` since the spawn, however chatty the agent is.

Either one ends the run the same way, :func:`agentos.proc.terminate_group`: SIGTERM to the group, up to
``kill_grace_s`` for the group to go, then SIGKILL to the group (logged as an escalation), then a final SIGKILL
sweep. A run that ends by itself gets the sweep too, so nothing the agent started in the background outlives the
attempt. Cancelling :func:`run_process` (daemon shutdown) runs the same kill, shielded, and re-raises.

stdout and stderr share one pipe that a reader task copies into the log; the log keeps its first bytes and,
once ``max_log_bytes`` is reached, only the last quarter (at most 1 MiB) of everything after, so the CLI's
final JSON report and its last error lines survive a flood. The pipe is always drained, so the child never
blocks on a full pipe.

For restart reconciliation the daemon persists ``(pid, start_time)`` from ``on_start`` and, after a crash,
calls :func:`kill_orphan`, which only kills when the start time still matches (the pid may have been reused).

A process that leaves the group (``setsid()``, a daemonising dev server) escapes ``killpg``. Every agent therefore
gets ``AGENTOS_ATTEMPT=<marker>`` in its environment (``RunSpec.marker``), which its children inherit, and every
run ends with a sweep of ``/proc`` for live processes of ours that carry it (:func:`kill_marked`). After a crash
the daemon sweeps by the marker's prefix, which also finds an agent whose pid it never got to persist. Only a
process that drops or rewrites its environment on ``exec`` gets away; a sandbox (cgroup) is the full answer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

import structlog

from agentos.proc import (
    ENV_ALLOWLIST,
    MARKER_ENV,
    kill_marked,
    kill_orphan,
    proc_start_time,
    scrubbed_env,
    spawn,
    sweep_group,
    terminate_group,
)
from agentos.runners.confinement import confine
from agentos.runners.sandbox import SandboxSpec, SandboxUnavailable

__all__ = [
    "ENV_ALLOWLIST",
    "MARKER_ENV",
    "RunOutcome",
    "RunSpec",
    "TimedOut",
    "kill_marked",
    "kill_orphan",
    "proc_start_time",
    "run_process",
    "scrubbed_env",
]

log = structlog.get_logger(__name__)

TimedOut = Literal["idle", "wall"]

TAIL_BYTES = 4096
_CHUNK = 64 * 1024
_TAIL_RESERVE_MAX = 1 << 20
_TICK_S = 0.1  # how often the watchdog looks at the child while nothing else wakes it
_DRAIN_S = 2.0  # after the group is gone, how long an escaped process may hold the output pipe


@dataclass(frozen=True)
class RunSpec:
    """Everything needed to run one process. ``env`` is the child's whole environment (nothing is inherited)."""

    argv: list[str]
    cwd: Path
    env: dict[str, str]
    stdin: bytes | None
    log_path: Path
    idle_timeout_s: float
    max_runtime_s: float
    kill_grace_s: float
    max_log_bytes: int
    marker: str | None = None
    """``AGENTOS_ATTEMPT`` for the child's environment; every process still carrying it is killed at the end."""
    sandbox: SandboxSpec | None = None
    """Run inside this bubblewrap sandbox and its cgroup (:mod:`agentos.runners`); ``None``: unconfined."""

    def __post_init__(self) -> None:
        if not self.argv:
            raise ValueError("RunSpec.argv is empty")
        if self.idle_timeout_s <= 0 or self.max_runtime_s <= 0 or self.kill_grace_s < 0:
            raise ValueError("RunSpec limits must be positive (kill_grace_s may be 0)")
        if self.max_log_bytes < 1:
            raise ValueError("RunSpec.max_log_bytes must be at least 1")


@dataclass
class RunOutcome:
    """How a run ended.

    ``exit_code`` is the child's exit status, negative for a signal (``-9``), ``None`` when it never started.
    ``log_bytes`` counts everything the child printed; ``truncated`` says some of it was dropped from the log.
    ``killed_escalated`` says SIGTERM was not enough and the group got SIGKILL. ``refused`` is why a sandboxed
    run never started (bwrap is not usable here: the line names the fix); ``resource_limit`` says the kernel's
    OOM killer killed a process of the run's cgroup (it went over ``sandbox.memory_mb``).
    """

    exit_code: int | None
    timed_out: TimedOut | None
    duration_s: float
    log_tail: str
    log_bytes: int
    truncated: bool
    not_found: bool
    killed_escalated: bool
    refused: str | None = None
    resource_limit: bool = False


# ---------------------------------------------------------------- the log


class _CappedLog:
    """Writes output to the log file up to a head budget, then holds only a rolling tail until :meth:`close`."""

    def __init__(self, file: BinaryIO, max_bytes: int, now: float) -> None:
        self._file = file
        self._tail_budget = min(max_bytes // 4, _TAIL_RESERVE_MAX)
        self._head_budget = max_bytes - self._tail_budget
        self._head_written = 0
        self._held: deque[bytes] = deque()
        self._held_len = 0
        self._dropped = 0
        self._recent = bytearray()
        self._write_failed = False
        self.received = 0
        self.last_output = now

    def feed(self, data: bytes, now: float) -> None:
        self.received += len(data)
        self.last_output = now
        self._recent += data
        del self._recent[:-TAIL_BYTES]
        room = self._head_budget - self._head_written
        if room > 0:
            head, data = data[:room], data[room:]
            self._write(head)
            self._head_written += len(head)
            if data:
                self._write(
                    b"\n[agentos: log cap reached; only the last %d bytes of further output are kept]\n"
                    % self._tail_budget
                )
        if data:
            self._held.append(data)
            self._held_len += len(data)
            while self._held and self._held_len - len(self._held[0]) >= self._tail_budget:
                gone = self._held.popleft()
                self._held_len -= len(gone)
                self._dropped += len(gone)

    def note(self, text: str) -> None:
        """An agentos line in the log (not agent output)."""
        self._write(text.encode())

    def close(self) -> None:
        tail = b"".join(self._held)
        if len(tail) > self._tail_budget:
            self._dropped += len(tail) - self._tail_budget
            tail = tail[len(tail) - self._tail_budget :]
        if self._dropped:
            note = b"[agentos: %d bytes of output dropped; the last %d bytes follow]\n"
            self._write(note % (self._dropped, len(tail)))
        self._write(tail)
        with contextlib.suppress(OSError):
            self._file.flush()

    @property
    def truncated(self) -> bool:
        return self._dropped > 0 or self._held_len > self._tail_budget

    @property
    def tail(self) -> str:
        return bytes(self._recent).decode("utf-8", "replace")

    def _write(self, data: bytes) -> None:
        if not data or self._write_failed:
            return
        try:
            self._file.write(data)
        except OSError as exc:  # a full disk must not stop the pump: the child would block on its pipe
            self._write_failed = True
            log.error("agent_log_write_failed", error=str(exc))


async def _pump(stream: asyncio.StreamReader, sink: _CappedLog) -> None:
    loop = asyncio.get_running_loop()
    while chunk := await stream.read(_CHUNK):
        sink.feed(chunk, loop.time())


async def _feed(stream: asyncio.StreamWriter, data: bytes) -> None:
    """Write the prompt and close stdin; a child that exits without reading it is not an error."""
    try:
        stream.write(data)
        await stream.drain()
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        stream.close()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            await stream.wait_closed()


# ---------------------------------------------------------------- supervision


async def _watch(proc: asyncio.subprocess.Process, sink: _CappedLog, spec: RunSpec, started: float) -> TimedOut | None:
    """Wait for the child to exit or a limit to pass. Polls ``returncode`` because ``Process.wait()`` also waits
    for the pipes to close, which a grandchild holding stdout can delay forever."""
    loop = asyncio.get_running_loop()
    waiter = asyncio.ensure_future(proc.wait())
    try:
        while proc.returncode is None:
            now = loop.time()
            wall_at = started + spec.max_runtime_s
            idle_at = sink.last_output + spec.idle_timeout_s
            if now >= wall_at:
                return "wall"
            if now >= idle_at:
                return "idle"
            await asyncio.wait({waiter}, timeout=min(wall_at, idle_at, now + _TICK_S) - now)
        return None
    finally:
        waiter.cancel()


async def _finish_io(pump: asyncio.Task[None], feeder: asyncio.Task[None] | None) -> None:
    await asyncio.wait({pump}, timeout=_DRAIN_S)
    for task in (pump, feeder):
        if task is not None and not task.done():
            task.cancel()
    await asyncio.gather(pump, *([feeder] if feeder else []), return_exceptions=True)


async def run_process(spec: RunSpec, *, on_start: Callable[[int, int], None] | None = None) -> RunOutcome:
    """Run ``spec.argv`` under supervision and report how it ended.

    ``on_start(pid, start_time)`` is called right after the spawn so the caller can persist both for
    :func:`kill_orphan`. A program that cannot be started (missing, not executable, missing cwd) gives
    ``RunOutcome(not_found=True)`` with the reason in the log; a sandbox that cannot start here gives
    ``RunOutcome(refused=<the fix>)`` and starts nothing. Cancellation kills the group, then re-raises.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    spec.log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(spec.log_path, "ab", buffering=0) as file:  # unbuffered: `agentos logs -f` sees output live
        sink = _CappedLog(file, spec.max_log_bytes, started)
        try:
            async with confine(spec.argv, spec.sandbox, label=spec.marker or spec.log_path.parent.name) as run:
                outcome = await _supervise(spec, run.argv, sink, started, on_start)
                if outcome.exit_code is not None and run.oom_killed():
                    outcome.resource_limit = True
                    sink.note("\n[agentos: the attempt went over its memory limit (sandbox.memory_mb): killed]\n")
                    log.warning("agent_memory_limit_reached", exit_code=outcome.exit_code, log=str(spec.log_path))
        except SandboxUnavailable as exc:
            message = f"[agentos: no sandbox, nothing started: {exc}]\n"
            sink.note(message)
            log.error("agent_not_started", argv0=spec.argv[0], error=str(exc))
            outcome = RunOutcome(None, None, loop.time() - started, message, 0, False, False, False, refused=str(exc))
        finally:
            sink.close()
        return outcome


async def _supervise(
    spec: RunSpec, argv: list[str], sink: _CappedLog, started: float, on_start: Callable[[int, int], None] | None
) -> RunOutcome:
    loop = asyncio.get_running_loop()
    try:
        proc = await spawn(
            argv,
            cwd=spec.cwd,
            env={**spec.env, MARKER_ENV: spec.marker} if spec.marker else spec.env,
            stdin=spec.stdin is not None,
        )
    except (FileNotFoundError, PermissionError) as exc:
        message = f"[agentos: cannot start {spec.argv[0]!r} in {str(spec.cwd)!r}: {exc}]\n"
        sink.note(message)
        log.warning("agent_not_started", argv0=spec.argv[0], error=str(exc))
        return RunOutcome(None, None, loop.time() - started, message, 0, False, True, False)

    start_time = proc_start_time(proc.pid) or 0  # first thing: a fast child may be reaped soon after
    log.info("agent_process_started", pid=proc.pid, argv0=spec.argv[0], cwd=str(spec.cwd), log=str(spec.log_path))
    assert proc.stdout is not None
    pump = asyncio.create_task(_pump(proc.stdout, sink))
    feeder = asyncio.create_task(_feed(proc.stdin, spec.stdin)) if proc.stdin and spec.stdin is not None else None
    timed_out: TimedOut | None = None
    escalated = False
    try:
        if on_start is not None:
            on_start(proc.pid, start_time)
        timed_out = await _watch(proc, sink, spec, started)
        if timed_out is None:
            await sweep_group(proc, what="agent")
        else:
            log.warning(
                "agent_timed_out",
                pid=proc.pid,
                limit=timed_out,
                idle_timeout_s=spec.idle_timeout_s,
                max_runtime_s=spec.max_runtime_s,
            )
            escalated = await terminate_group(proc, spec.kill_grace_s, what="agent")
        if spec.marker:  # what left the group (setsid) is found by the marker it inherited
            await asyncio.to_thread(kill_marked, spec.marker)
    except BaseException:  # cancelled (daemon shutdown) or on_start failed: the agent must not outlive us
        log.warning("agent_run_interrupted", pid=proc.pid)
        await asyncio.shield(terminate_group(proc, spec.kill_grace_s, what="agent"))
        if spec.marker:
            kill_marked(spec.marker)
        raise
    finally:
        try:
            await _finish_io(pump, feeder)
        finally:
            if timed_out is not None:
                limit = spec.idle_timeout_s if timed_out == "idle" else spec.max_runtime_s
                sink.note(f"\n[agentos: {timed_out} limit of {limit:g}s reached; process group killed]\n")
    return RunOutcome(
        exit_code=proc.returncode,
        timed_out=timed_out,
        duration_s=loop.time() - started,
        log_tail=sink.tail,
        log_bytes=sink.received,
        truncated=sink.truncated,
        not_found=False,
        killed_escalated=escalated,
    )
