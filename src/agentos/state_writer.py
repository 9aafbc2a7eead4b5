"""The state's one writer: every change journalled (fsynced) before it is acted on, and the write hold.

``StateWriter.commit`` is the only way state changes: it applies nothing itself, it journals (fsynced) the
events and the changed tasks that a graph rule produced, so a crash after it returns loses nothing.

When the state cannot be written (the disk is full, ``ENOSPC``/``EDQUOT``, or any other write error) the
writer *holds* (:attr:`StateWriter.write_failure`): the change is refused with :class:`StateError` so nothing
is acted on outside, every later ``commit`` and ``save_state`` is refused without touching the disk (the
files on disk stay the last good state), the dispatcher starts nothing, and the operator gets one sev1
alert naming the disk and its free space. :meth:`StateWriter.retry_state_write` (the stall watchdog calls it)
writes a full snapshot of the in-memory state once it can, wakes the dispatcher, and work resumes.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from agentos import logging as alog
from agentos.graph import Event, Task
from agentos.ports import Clock, Notify, Wake
from agentos.store import DaemonState, StateError, Store
from agentos.task_graph import TaskGraph

__all__ = ["StateWriteFailure", "StateWriter"]

log = alog.get_logger("agentos.state_writer")


@dataclass(frozen=True)
class StateWriteFailure:
    """Why the state could not be written, and where: what the alert and the log line say."""

    since: datetime
    path: str
    mount: str
    free_bytes: int
    error: str
    disk_full: bool

    def describe(self) -> str:
        what = "the disk is full" if self.disk_full else "a write failed"
        return f"{what}: {self.path} on {self.mount} has {_size(self.free_bytes)} free ({self.error})"


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 1024:.1f} KiB"


def _mount_of(path: Path) -> str:
    """``<mount point> (<device>)`` of the file system holding ``path`` (from /proc/self/mounts)."""
    best, device = "/", "?"
    target = str(path.resolve())
    try:
        lines = Path("/proc/self/mounts").read_text(encoding="utf-8").splitlines()
    except OSError:
        return best
    for line in lines:
        fields = line.split()
        if len(fields) < 2:
            continue
        point = fields[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, device = point, fields[0]
    return f"{best} ({device})"


def _free_bytes(path: Path) -> int:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return 0


class StateWriter:
    """Journals changes to ``graph`` and ``state`` through ``store``; holds every write after one fails.

    Implements :class:`agentos.ports.Journal`. ``notify`` gets the sev1 "cannot save" and "saves again"
    notices; ``wake("dispatch")`` runs the dispatcher once writes work again. ``listeners`` see every event
    written (or, while held, every event recorded).
    """

    def __init__(
        self,
        store: Store,
        graph: TaskGraph,
        state: DaemonState,
        *,
        clock: Clock,
        notify: Notify | None = None,
        wake: Wake | None = None,
    ) -> None:
        self.store = store
        self.graph = graph
        self.state = state
        self.clock = clock
        self.notify = notify
        self.wake = wake
        self.listeners: list[Callable[[Event], None]] = []
        self.write_failure: StateWriteFailure | None = None
        """Set while the state cannot be written: nothing new starts until :meth:`retry_state_write` succeeds."""

    def __repr__(self) -> str:
        return f"<StateWriter {self.store.state_dir} held={self.held is not None} listeners={len(self.listeners)}>"

    @property
    def held(self) -> str | None:
        """Why state writes are held (the disk is full), or None when they work."""
        return None if self.write_failure is None else self.write_failure.describe()

    def commit(self, events: Iterable[Event], tasks: Iterable[Task] = ()) -> None:
        """Journal events and the tasks they changed (fsynced) before anything is done outside."""
        task_list, event_list = list(tasks), list(events)
        for task in task_list:
            if task.id not in self.graph:
                self.graph.put(task)
        self._write(lambda: self.store.append(event_list, task_list))
        try:
            self.store.maybe_compact(self.graph, self.state)
        except StateError as exc:  # the change itself is journalled: hold, but do not take it back
            self._write_failed(exc)
        self._tell(event_list)

    def save_state(self) -> None:
        """Journal the daemon's own state (pause, disabled jobs and repos, job runs)."""
        self._write(lambda: self.store.append([], [], daemon=self.state))

    def save_job_state(self) -> None:
        """:meth:`save_state` for bookkeeping (job runs) that must not fail its caller: while the state cannot
        be written it stays in memory, and :meth:`retry_state_write` saves it with everything else."""
        try:
            self.save_state()
        except StateError as exc:
            log.debug("job_state_not_saved", error=str(exc))

    def _write(self, append: Callable[[], int]) -> None:
        if self.write_failure is not None:
            raise StateError(f"state writes are held until space returns: {self.write_failure.describe()}")
        try:
            append()
        except StateError as exc:
            self._write_failed(exc)
            raise

    def _write_failed(self, exc: StateError) -> None:
        """Hold every state write, log a line naming the disk and its free space, alert the operator once."""
        if self.write_failure is not None:
            return
        cause = exc.__cause__
        code = cause.errno if isinstance(cause, OSError) else None
        path = self.store.state_dir
        failure = StateWriteFailure(
            since=self.clock(),
            path=str(path),
            mount=_mount_of(path),
            free_bytes=_free_bytes(path),
            error=f"{os.strerror(code)}" if code is not None else str(exc),
            disk_full=code in (errno.ENOSPC, errno.EDQUOT),
        )
        self.write_failure = failure
        log.critical(
            "state_write_failed",
            path=failure.path,
            mount=failure.mount,
            free_bytes=failure.free_bytes,
            disk_full=failure.disk_full,
            error=str(exc),
        )
        if self.notify is not None:
            self.notify.notify(
                1,
                f"state_write_failed:{failure.since.isoformat()}",
                f"agentos cannot save its state: {failure.describe()}. Nothing new starts; the state on disk is "
                "the last good one. Free some space: agentos resumes by itself within 5 minutes.",
            )

    def retry_state_write(self) -> bool:
        """After a failed write: save the whole in-memory state as a snapshot; True when writes work again.

        The snapshot holds every change made since the failure (a change refused on disk is, like a change
        journalled just before a crash, one that nothing acted on): the stall watchdog ends what it left.
        """
        failure = self.write_failure
        if failure is None:
            return True
        try:
            self.store.snapshot(self.graph, self.state)
        except StateError as exc:
            log.warning(
                "state_write_still_failing",
                path=failure.path,
                free_bytes=_free_bytes(Path(failure.path)),
                error=str(exc),
            )
            return False
        self.write_failure = None
        free = _free_bytes(Path(failure.path))
        log.warning(
            "state_write_resumed",
            path=failure.path,
            mount=failure.mount,
            free_bytes=free,
            held_s=round((self.clock() - failure.since).total_seconds(), 1),
        )
        if self.notify is not None:
            self.notify.notify(
                1,
                f"state_write_resumed:{failure.since.isoformat()}",
                f"agentos saves its state again ({failure.path} has {_size(free)} free); dispatching resumed.",
            )
        if self.wake is not None:
            self.wake("dispatch")
        return True

    def event(self, type_: str, task: str | None = None, **data: Any) -> Event:
        return Event(type=type_, task=task, ts=self.clock(), data=data)

    def record(self, type_: str, task: str | None = None, **data: Any) -> None:
        """Journal an event that changes no task (a job run, a notification, a merge seen elsewhere).

        While the state cannot be written the event is only logged (``event_not_journalled``): it records
        what already happened, and its caller (often a failure handler) must not fail for it.
        """
        event = self.event(type_, task, **data)
        try:
            self._write(lambda: self.store.append([event]))
        except StateError:
            log.warning("event_not_journalled", event_type=type_, task=task)
        self._tell([event])

    def _tell(self, events: list[Event]) -> None:
        for event in events:
            for listener in self.listeners:
                try:
                    listener(event)
                except Exception:  # a listener must never break a state change
                    log.error("event_listener_failed", event_type=event.type, exc_info=True)
