"""Child processes of agentos: one environment allowlist, one process-group kill policy, the ``/proc`` helpers.

Every program agentos starts for someone else (an agent CLI, a repo's hook, its test command) runs

* with :func:`scrubbed_env`: an allowlist of the daemon's environment, never all of it. The one
  allowlist (:data:`ENV_ALLOWLIST`) is ``PATH``, ``HOME``, ``USER``, ``LANG``, ``LC_ALL``, ``TZ``, ``TERM``,
  ``TMPDIR`` and ``VIRTUAL_ENV``: where programs and the user's files are, the locale and zone (Codex prints reset
  times without a zone, tests compare dates), a terminal type for tools that ask, scratch space, and the Python
  environment the daemon runs in (a repo's ``make test`` finds the same interpreter the operator tested with).
  The caller adds the names its config passes (``pass_env``) and literal values (``extra``); ``PATH`` falls
  back to :data:`os.defpath`; ``GIT_TERMINAL_PROMPT=0`` stops git from waiting on a password prompt; systemd's
  ``NOTIFY_SOCKET``, ``WATCHDOG_*`` and ``LISTEN_*`` are dropped even when listed (a child that could talk to
  the notify socket could fake the daemon's readiness or watchdog).
* in a new session (:func:`spawn`), so ``killpg(pid)`` reaches every process it starts, and
* under one kill policy (:func:`terminate_group`): SIGTERM to the group, ``grace_s`` for the group to go, then
  SIGKILL (logged as ``process_kill_escalated``: that is an escalation), then a final SIGKILL sweep. A child that
  ended by itself gets the sweep too (:func:`sweep_group`), so nothing it left in the background outlives it.

A process that leaves the group (``setsid()``) escapes ``killpg``; the agent runner marks every agent's
environment with ``AGENTOS_ATTEMPT=<marker>`` (:data:`MARKER_ENV`) and :func:`kill_marked` finds what still
carries it. After a daemon crash :func:`kill_orphan` kills a recorded ``(pid, start time)`` only when the start
time still matches (the pid may have been reused).

:func:`run_shell` runs a command line (hooks, tests) this way and keeps the tail of its output. git itself runs
through :func:`agentos.gitutil.git` with its own, narrower environment (no agent runs there).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

from agentos.runners.confinement import confine
from agentos.runners.sandbox import SandboxSpec, SandboxUnavailable

__all__ = [
    "ENV_ALLOWLIST",
    "MARKER_ENV",
    "CommandResult",
    "group_alive",
    "kill_marked",
    "kill_orphan",
    "marked_pids",
    "proc_start_time",
    "run_shell",
    "scrubbed_env",
    "signal_group",
    "spawn",
    "sweep_group",
    "terminate_group",
    "wait_exit",
    "wait_group_gone",
]

log = structlog.get_logger(__name__)

ENV_ALLOWLIST = ("PATH", "HOME", "USER", "LANG", "LC_ALL", "TZ", "TERM", "TMPDIR", "VIRTUAL_ENV")
"""What every child (agent, hook, test command) gets from the daemon's environment when it is set."""
MARKER_ENV = "AGENTOS_ATTEMPT"
"""The variable whose value marks every process of one attempt (see :func:`kill_marked`)."""
TAIL_BYTES = 16 * 1024

_FORBIDDEN_ENV = ("NOTIFY_SOCKET",)
_FORBIDDEN_ENV_PREFIXES = ("WATCHDOG_", "LISTEN_")
_TICK_S = 0.1  # how often a wait for the child's exit looks at it while nothing else wakes it
_POLL_S = 0.02  # how often a dying group is checked
_REAP_S = 5.0  # after SIGKILL, how long to wait for the group to disappear


# ---------------------------------------------------------------- environment


def scrubbed_env(
    pass_env: Sequence[str] = (), extra: Mapping[str, str] | None = None, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of a child: :data:`ENV_ALLOWLIST` and the ``pass_env`` names copied from ``base`` (the
    daemon's environment by default) when set, then ``extra``'s literal values, ``GIT_TERMINAL_PROMPT=0``, and
    ``PATH`` defaulting to :data:`os.defpath`. systemd's notify and socket variables never pass."""
    source = os.environ if base is None else base
    env = {name: source[name] for name in (*ENV_ALLOWLIST, *pass_env) if name in source}
    env.update(extra or {})
    env["GIT_TERMINAL_PROMPT"] = "0"
    env.setdefault("PATH", os.defpath)
    return {k: v for k, v in env.items() if not _forbidden_env(k)}


def _forbidden_env(name: str) -> bool:
    return name in _FORBIDDEN_ENV or name.startswith(_FORBIDDEN_ENV_PREFIXES)


# ---------------------------------------------------------------- spawning and the kill policy


async def spawn(
    argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], stdin: bool = False
) -> asyncio.subprocess.Process:
    """Start ``argv`` in a new session (it leads its own process group) with exactly ``env``; stdout and stderr
    share one pipe; stdin is a pipe when ``stdin``, else ``/dev/null``. Raises ``OSError`` when it cannot start."""
    return await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=dict(env),
        stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )


def signal_group(pgid: int, sig: signal.Signals) -> bool:
    """Send ``sig`` to the group; False when the group no longer exists (or is not ours to signal)."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        log.warning("process_group_signal_denied", pgid=pgid, signal=sig.name)
        return False
    return True


async def wait_exit(proc: asyncio.subprocess.Process, timeout: float) -> bool:
    """Wait up to ``timeout`` for the child itself to exit; whether it did. Looks at ``returncode`` because
    ``Process.wait()`` also waits for the pipes to close, which a grandchild holding stdout can delay forever."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    waiter = asyncio.ensure_future(proc.wait())
    try:
        while proc.returncode is None:
            left = deadline - loop.time()
            if left <= 0:
                return False
            await asyncio.wait({waiter}, timeout=min(left, _TICK_S))
        return True
    finally:
        waiter.cancel()


async def wait_group_gone(proc: asyncio.subprocess.Process, timeout: float) -> bool:
    """Wait up to ``timeout`` for the child to exit and its whole group (``pgid`` = its pid) to be gone."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        if proc.returncode is not None and not group_alive(proc.pid):
            return True
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(_POLL_S)


async def terminate_group(proc: asyncio.subprocess.Process, grace_s: float, *, what: str) -> bool:
    """SIGTERM the child's group, give it ``grace_s`` to go, SIGKILL what is left (logged), then sweep with a
    last SIGKILL. ``what`` names the child in the log (``agent``, ``command``). True when SIGKILL was needed."""
    pgid = proc.pid
    signal_group(pgid, signal.SIGTERM)
    escalated = False
    if not await wait_group_gone(proc, grace_s):
        escalated = True
        log.warning("process_kill_escalated", what=what, pid=proc.pid, grace_s=grace_s)
        signal_group(pgid, signal.SIGKILL)
        if not await wait_group_gone(proc, _REAP_S):
            log.error("process_group_survived_sigkill", what=what, pid=proc.pid)
    signal_group(pgid, signal.SIGKILL)  # the sweep: anything that slipped in between
    return escalated


async def sweep_group(proc: asyncio.subprocess.Process, *, what: str) -> None:
    """After the child exited by itself: SIGKILL what it left running in its group (servers, stuck tools)."""
    if group_alive(proc.pid):
        log.info("process_leftovers_killed", what=what, pid=proc.pid)
        signal_group(proc.pid, signal.SIGKILL)
        await wait_group_gone(proc, _REAP_S)


# ---------------------------------------------------------------- /proc


def _stat_fields(pid: int) -> list[str] | None:
    """Fields 3… of ``/proc/<pid>/stat`` (the command name may contain spaces and parentheses)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    _, sep, rest = raw.rpartition(b")")
    return rest.decode("ascii", "replace").split() if sep else None


def proc_start_time(pid: int) -> int | None:
    """Field 22 of ``/proc/<pid>/stat``: when the process started, in clock ticks since boot; ``None`` if gone."""
    fields = _stat_fields(pid)
    try:
        return int(fields[19]) if fields else None
    except (IndexError, ValueError):
        return None


def group_alive(pgid: int) -> bool:
    """Whether any process of the group is still running. Zombies don't count: they hold nothing and
    a container's pid 1 may never reap the grandchildren reparented to it."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        pids = [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return True
    for pid in pids:
        fields = _stat_fields(pid)
        if fields and len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            return True
    return False


def kill_orphan(pid: int, start_time: int) -> bool:
    """SIGKILL the group of a child left running by a crashed daemon, if it is still that child.

    ``start_time`` is what :func:`proc_start_time` returned at spawn. A pid that is gone, or that now belongs to
    a process with another start time (pid reuse), is left alone and False is returned.
    """
    if pid <= 1 or start_time <= 0 or proc_start_time(pid) != start_time:
        return False
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return False
    log.warning("orphan_process_killed", pid=pid, start_time=start_time)
    return True


def marked_pids(marker: str, *, prefix: bool = False) -> list[int]:
    """Live processes (not zombies) whose environment has ``AGENTOS_ATTEMPT=<marker>`` (or ``<marker>…``).

    Only processes whose ``/proc/<pid>/environ`` we may read are seen: our own user's (or all, as root).
    """
    needle = f"{MARKER_ENV}={marker}".encode()
    me = os.getpid()
    try:
        names = [name for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return []
    found = []
    for name in names:
        pid = int(name)
        if pid == me:
            continue
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        entries = environ.split(b"\0")
        hit = any(e.startswith(needle) for e in entries) if prefix else needle in entries
        fields = _stat_fields(pid) if hit else None
        if fields and fields[0] not in ("Z", "X"):
            found.append(pid)
    return found


def kill_marked(marker: str, *, prefix: bool = False) -> list[int]:
    """SIGKILL every live process carrying the marker (see :func:`marked_pids`); the pids killed.

    Scans again after killing, a few times, so a child forked between the scan and the kill is caught.
    """
    killed: list[int] = []
    for _ in range(3):
        pids = [pid for pid in marked_pids(marker, prefix=prefix) if pid not in killed]
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
    if killed:
        log.warning("marked_processes_killed", marker=marker, prefix=prefix, pids=killed)
    return killed


# ---------------------------------------------------------------- shell commands


@dataclass(frozen=True)
class CommandResult:
    """How a shell command ended. ``code`` is -1 when it was killed for its time limit."""

    code: int
    output_tail: str
    timed_out: bool
    duration_s: float

    @property
    def ok(self) -> bool:
        return self.code == 0 and not self.timed_out


async def run_shell(
    cmd: str,
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout: float,
    kill_grace_s: float = 5.0,
    tail_bytes: int = TAIL_BYTES,
    sandbox: SandboxSpec | None = None,
) -> CommandResult:
    """Run ``cmd`` with ``/bin/sh -c`` in its own process group, with exactly ``env`` as environment.

    With ``sandbox`` it runs in that bubblewrap sandbox and its cgroup (:mod:`agentos.runners`); when bwrap cannot
    run here nothing starts and the result is code 126 with the one line that names the fix.

    Output (stdout and stderr together) is kept as a tail of ``tail_bytes``. On timeout the group is ended by
    :func:`terminate_group`; when the shell exits by itself, what it left running in its group is killed too,
    so a stray background process cannot hold the output pipe open. Cancellation kills the group and re-raises.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        async with confine(["/bin/sh", "-c", cmd], sandbox, label="command") as run:
            code, tail, timed_out = await _run_shell(run.argv, cmd, cwd, env, timeout, kill_grace_s, tail_bytes)
    except SandboxUnavailable as exc:
        log.error("command_not_started", cmd=cmd[:200], error=str(exc))
        return CommandResult(126, f"[agentos: no sandbox, nothing started: {exc}]\n", False, 0.0)
    return CommandResult(code, tail, timed_out, round(loop.time() - started, 3))


async def _run_shell(
    argv: list[str], cmd: str, cwd: Path, env: Mapping[str, str], timeout: float, kill_grace_s: float, tail_bytes: int
) -> tuple[int, str, bool]:
    proc = await spawn(argv, cwd=cwd, env=env)
    tail = bytearray()

    async def pump() -> None:
        assert proc.stdout is not None
        while chunk := await proc.stdout.read(65536):
            tail.extend(chunk)
            if len(tail) > tail_bytes:
                del tail[: len(tail) - tail_bytes]

    reader = asyncio.create_task(pump())
    try:
        timed_out = not await wait_exit(proc, timeout)
        if timed_out:
            log.warning("command_timed_out", cmd=cmd[:200], pid=proc.pid, timeout_s=timeout)
            await terminate_group(proc, kill_grace_s, what="command")
        else:
            await sweep_group(proc, what="command")
        try:
            async with asyncio.timeout(max(kill_grace_s, 1.0)):
                await reader  # a process that left our group may still hold the pipe: stop waiting
        except TimeoutError:
            reader.cancel()
    except BaseException:
        signal_group(proc.pid, signal.SIGKILL)
        reader.cancel()
        raise
    code = -1 if timed_out else (proc.returncode if proc.returncode is not None else -1)
    return code, tail.decode("utf-8", "replace"), timed_out
