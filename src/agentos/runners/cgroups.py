"""Resource limits of one sandboxed run: a cgroup with a memory limit and a process-count limit.

``RLIMIT_AS`` is no memory limit for Node CLIs (V8 reserves far more address space than it uses), so the limits
are the kernel's cgroup controllers, on the hierarchy the host has:

* **cgroup v1** (``/sys/fs/cgroup/memory``, ``/sys/fs/cgroup/pids`` writable, as on this project's test
  machines): a child of the daemon's own cgroup in each hierarchy; ``memory.limit_in_bytes`` (and
  ``memory.memsw.limit_in_bytes``, so swap is no way round it) and ``pids.max``; with a CPU limit, the ``cpu``
  hierarchy's ``cpu.cfs_quota_us``.
* **cgroup v2** (``/sys/fs/cgroup/cgroup.controllers``): a child of the daemon's own cgroup with ``memory.max``,
  ``memory.swap.max``, ``pids.max`` and, with a CPU limit, ``cpu.max``. The daemon's cgroup must be delegated
  to it (systemd ``Delegate=yes``, as the shipped units say, and no ``ProtectControlGroups=yes``); the daemon
  moves itself into a leaf child first, so that its cgroup may enable the controllers for its children
  (:func:`_v2_parent`). When it cannot, the limits are skipped.

The run's first process joins the cgroup before it execs the sandbox (:meth:`Cgroup.join_argv`: a tiny
``sh`` prefix writes its own pid into ``cgroup.procs``), so everything it starts is counted and limited. After
the run :meth:`Cgroup.oom_killed` says whether the kernel's OOM killer fired there (the attempt then fails as
``resource_limit``) and :meth:`Cgroup.remove` kills what is left in it and removes it. Where no cgroup can be
made, :func:`create` returns ``None`` and logs ``resource_limits_unavailable`` once: the run goes on unlimited.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

__all__ = ["CGROUP_ROOT", "Cgroup", "create", "unavailable_reason"]

log = structlog.get_logger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
_JOIN = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"'
_warned = False


@dataclass(frozen=True)
class Cgroup:
    """One run's cgroup: a folder per v1 hierarchy (memory, pids), or one v2 folder."""

    dirs: tuple[Path, ...]
    version: int

    def join_argv(self, argv: Sequence[str]) -> list[str]:
        """``argv`` behind a ``/bin/sh`` prefix that moves itself into this cgroup, then execs ``argv``."""
        files = [str(d / "cgroup.procs") for d in self.dirs]
        return ["/bin/sh", "-c", _JOIN, "agentos-cgroup", *files, "--", *argv]

    def oom_killed(self) -> bool:
        """Whether the kernel's OOM killer killed a process of this cgroup."""
        for d in self.dirs:
            for name in ("memory.events", "memory.oom_control"):
                with contextlib.suppress(OSError, ValueError):
                    for line in (d / name).read_text().splitlines():
                        key, _, value = line.partition(" ")
                        if key == "oom_kill" and int(value) > 0:
                            return True
        return False

    def pids(self) -> list[int]:
        found: set[int] = set()
        for d in self.dirs:
            with contextlib.suppress(OSError, ValueError):
                found.update(int(p) for p in (d / "cgroup.procs").read_text().split())
        return sorted(found)

    def kill(self) -> list[int]:
        """SIGKILL every process still in the cgroup (whatever session or group it moved to); the pids."""
        killed: list[int] = []
        for _ in range(5):
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
            time.sleep(0.02)
        return killed

    def remove(self) -> None:
        """Kill what is left, then remove the cgroup's folders (retried while the last processes are reaped)."""
        if killed := self.kill():
            log.warning("cgroup_leftovers_killed", pids=killed)
        for d in self.dirs:
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)
            else:
                log.warning("cgroup_not_removed", path=str(d))


def _own(controller: str) -> Path | None:
    """The daemon's own cgroup folder of a v1 ``controller``, or the v2 one for ``""``."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers.split(",") == [controller] or (controller == "" and controllers == ""):
            base = CGROUP_ROOT / controller if controller else CGROUP_ROOT
            return base / path.lstrip("/")
    return None


def _write(path: Path, value: str) -> None:
    path.write_text(value)


_PERIOD_US = 100_000


def _create_v1(name: str, memory_bytes: int, max_processes: int, cpus: float | None) -> Cgroup:
    made: list[Path] = []
    try:
        for controller in ("memory", "pids", *(["cpu"] if cpus else [])):
            parent = _own(controller)
            if parent is None or not (parent / "cgroup.procs").exists():
                raise OSError(f"no cgroup v1 {controller} hierarchy")
            d = parent / name
            d.mkdir()
            made.append(d)
        memory, pids = made[:2]
        _write(memory / "memory.limit_in_bytes", str(memory_bytes))
        if (memory / "memory.memsw.limit_in_bytes").exists():
            with contextlib.suppress(OSError):  # swap accounting may be off: then there is no swap to escape to
                _write(memory / "memory.memsw.limit_in_bytes", str(memory_bytes))
        _write(pids / "pids.max", str(max_processes))
        if cpus:
            _write(made[2] / "cpu.cfs_period_us", str(_PERIOD_US))
            _write(made[2] / "cpu.cfs_quota_us", str(round(cpus * _PERIOD_US)))
    except OSError:
        for d in made:
            with contextlib.suppress(OSError):
                d.rmdir()
        raise
    return Cgroup(tuple(made), 1)


DAEMON_LEAF = "agentos-daemon"
"""Under cgroup v2, the child of the daemon's delegated cgroup the daemon moves itself into (see :func:`_v2_parent`)."""


def _v2_parent(controllers: Sequence[str]) -> Path:
    """The daemon's own v2 cgroup, with ``controllers`` enabled for its children.

    Under systemd with ``Delegate=yes`` the daemon's cgroup (``…/agentos.service``) is its to manage, but v2 lets a
    cgroup hand controllers to its children only when no process sits in it (``EBUSY``): the daemon first moves
    itself into a leaf child, :data:`DAEMON_LEAF`; what it starts afterwards starts there, and each run's cgroup is
    a sibling of that leaf."""
    own = _own("")
    if own is None:
        raise OSError("no cgroup v2 membership")
    parent = own.parent if own.name == DAEMON_LEAF else own
    enabled = (parent / "cgroup.subtree_control").read_text().split()
    missing = " ".join(f"+{c}" for c in controllers if c not in enabled)
    if not missing:
        return parent
    try:
        _write(parent / "cgroup.subtree_control", missing)
    except OSError:  # EBUSY: the daemon (and whatever it runs now) is in it
        pids = (parent / "cgroup.procs").read_text().split()
        strangers = [pid for pid in pids if not _ours(int(pid)) and os.path.exists(f"/proc/{pid}")]
        if strangers:  # not the daemon's own cgroup (a login session's, say): moving its processes is not ours
            raise OSError(f"{parent} holds processes other than agentos's ({', '.join(strangers[:5])})") from None
        leaf = parent / DAEMON_LEAF
        leaf.mkdir(exist_ok=True)
        for pid in pids:
            with contextlib.suppress(OSError):  # a process that ended meanwhile
                _write(leaf / "cgroup.procs", pid)
        _write(parent / "cgroup.subtree_control", missing)
        log.info("cgroup_daemon_moved", leaf=str(leaf))
    return parent


def _ours(pid: int) -> bool:
    """Whether ``pid`` is this process or one it started (following parents up from ``pid``)."""
    me = os.getpid()
    for _ in range(64):
        if pid == me:
            return True
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            pid = int(stat.rpartition(")")[2].split()[1])  # the field after the state: the parent's pid
        except (OSError, ValueError, IndexError):
            return False
        if pid <= 1:
            return False
    return False


def _create_v2(name: str, memory_bytes: int, max_processes: int, cpus: float | None) -> Cgroup:
    parent = _v2_parent(("memory", "pids", *(["cpu"] if cpus else [])))
    d = parent / name
    d.mkdir()
    try:
        _write(d / "memory.max", str(memory_bytes))
        with contextlib.suppress(OSError):
            _write(d / "memory.swap.max", "0")
        _write(d / "pids.max", str(max_processes))
        if cpus:
            _write(d / "cpu.max", f"{round(cpus * _PERIOD_US)} {_PERIOD_US}")
    except OSError:
        d.rmdir()
        raise
    return Cgroup((d,), 2)


def create(label: str, *, memory_mb: int, max_processes: int, cpus: float | None = None) -> Cgroup | None:
    """A new cgroup for one run with these limits (``cpus``: CPU time as a number of cores, ``None`` for no
    limit), or ``None`` (logged once) when none can be made here."""
    global _warned
    name = "agentos-" + "".join(c if c.isalnum() else "-" for c in label)[:60] + "-" + uuid.uuid4().hex[:8]
    try:
        if (CGROUP_ROOT / "cgroup.controllers").exists():
            return _create_v2(name, memory_mb * 1024 * 1024, max_processes, cpus)
        return _create_v1(name, memory_mb * 1024 * 1024, max_processes, cpus)
    except OSError as exc:
        if not _warned:
            _warned = True
            log.warning("resource_limits_unavailable", error=str(exc), hint="runs go on without memory/pid limits")
        return None


def unavailable_reason() -> str | None:
    """``None`` when a limited cgroup can be made here, else why not (for ``agentos doctor``)."""
    try:
        if (CGROUP_ROOT / "cgroup.controllers").exists():
            group = _create_v2("agentos-probe-" + uuid.uuid4().hex[:8], 64 << 20, 64, None)
        else:
            group = _create_v1("agentos-probe-" + uuid.uuid4().hex[:8], 64 << 20, 64, None)
    except OSError as exc:
        return f"no writable cgroup for memory/process limits ({exc})"
    group.remove()
    return None
