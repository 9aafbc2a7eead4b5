"""Persistence of the task graph and the daemon's own state: a snapshot plus a journal.

Layout of the state directory::

    graph.json                       snapshot {"schema": 1, "seq": N, "tasks": [...], "daemon": {...}}
    graph.json.bak                   the previous snapshot (hard link kept by every snapshot)
    journal.jsonl                    one line per change since the snapshot, fsynced before append() returns
    events/events-YYYY-MM-DD.jsonl   journal lines rotated out by compaction, kept for the improvement loops
    agentos.lock                     flock held by the running daemon; holds its pid

A journal line is ``{"seq", "ts", "type", "task", "data", "schema", ...}`` (the :class:`Event` plus its
place in the sequence) and carries what the change did to the state:

- ``"task_state"``: the task's full state (an upsert; the line of the last event naming the task, or a
  ``task_upsert`` line of its own);
- ``"daemon"``: the :class:`DaemonState` fields that changed, each replaced whole;
- ``"notified_keep"``/``"notified_add"``: how the notification dedup list changed (keep the last
  ``keep`` keys, then add), so a notification does not rewrite 5000 keys;
- ``"upto"``: on every line of a multi-line :meth:`Store.append`, the batch's last seq. A batch is
  replayed whole or not at all.

Recovery (:meth:`Store.load`) reads the snapshot (``graph.json``, else ``graph.json.bak`` plus the rotated
history in ``events/`` to bridge the gap), migrates old schemas, replays the journal and drops a torn
tail. Anything else that does not parse is an error that stops the daemon loudly, never an empty state.

Beside this module: :mod:`agentos.journal` (the line format), :mod:`agentos.history` (the rotated history in
``events/``), :mod:`agentos.replay` (parsing, migrating and replaying the files) and :mod:`agentos.state_model`
(the schema, :class:`DaemonState`, and the :class:`StateError` tree). Their public names are re-exported here.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import structlog
from pydantic import ValidationError

from agentos.fsutil import atomic_write_bytes, fsync_dir, truncate_durably
from agentos.graph import Event, Task
from agentos.history import History
from agentos.journal import STATE_TYPES, JournalRecord, as_utc, change_records, read_bytes, records_in, write_all
from agentos.replay import (
    TASKS,
    SnapshotUnreadable,
    apply_record,
    check_contiguous,
    first_error,
    parse_snapshot,
    scan_journal,
)
from agentos.state_model import (
    MIGRATIONS,
    NOTIFIED_KEEP,
    SCHEMA,
    AlreadyRunning,
    CorruptState,
    DaemonState,
    JobRun,
    Migration,
    SchemaTooNew,
    StateError,
    daemon_delta,
)
from agentos.task_graph import TaskGraph

__all__ = [
    "MIGRATIONS",
    "NOTIFIED_KEEP",
    "SCHEMA",
    "STATE_TYPES",
    "AlreadyRunning",
    "CorruptState",
    "DaemonState",
    "JobRun",
    "JournalRecord",
    "Migration",
    "SchemaTooNew",
    "StateError",
    "Store",
]

log = structlog.get_logger("agentos.store")


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Store:
    """Snapshot + journal persistence of one state directory; one writer (the lock holder) at a time.

    Writing needs :meth:`lock` then :meth:`load`. A load without the lock is a read-only view: it repairs
    nothing, quarantines nothing, and may be slightly stale. Thread-safe: calls are serialised by a mutex,
    so callers may use :func:`asyncio.to_thread` for some calls and call others directly.
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        fsync: bool = True,
        migrations: Mapping[int, Migration] | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.fsync = fsync
        self.needs_snapshot = False
        """True after a load that migrated, fell back to the .bak or rebuilt from events/: snapshot soon."""
        self._migrations: Mapping[int, Migration] = MIGRATIONS if migrations is None else migrations
        self._clock = clock
        self._mutex = threading.RLock()
        self._lock_fd: int | None = None
        self._journal_fd: int | None = None
        self._writable = False
        self._broken: str | None = None
        self._seq = 0
        self._journal_lines = 0
        self._journal_size = 0
        self._daemon_saved: dict[str, Any] = DaemonState().model_dump(mode="json")
        self.history = History(self.state_dir / "events", fsync=fsync, clock=clock)
        """The rotated journal (``events/``) that compaction appends to and the loops read."""

    # ── paths and counters ───────────────────────────────────────────────────────────────────────────

    @property
    def graph_path(self) -> Path:
        return self.state_dir / "graph.json"

    @property
    def bak_path(self) -> Path:
        return self.state_dir / "graph.json.bak"

    @property
    def journal_path(self) -> Path:
        return self.state_dir / "journal.jsonl"

    @property
    def events_dir(self) -> Path:
        return self.history.events_dir

    @property
    def lock_path(self) -> Path:
        return self.state_dir / "agentos.lock"

    @property
    def seq(self) -> int:
        """The last durable sequence number (snapshot or journal)."""
        return self._seq

    @property
    def journal_lines(self) -> int:
        """Lines in the journal since the last snapshot."""
        return self._journal_lines

    def __repr__(self) -> str:
        held = "locked" if self._lock_fd is not None else "unlocked"
        return f"<Store {self.state_dir} seq={self._seq} journal={self._journal_lines} {held}>"

    # ── the lock ─────────────────────────────────────────────────────────────────────────────────────

    def lock(self) -> None:
        """Take ``agentos.lock`` (flock, non-blocking) and write our pid into it, or raise AlreadyRunning."""
        with self._mutex:
            if self._lock_fd is not None:
                return
            self._ensure_dir()
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise AlreadyRunning(
                    f"another agentos daemon (pid {holder}) is using {self.state_dir}; stop it first"
                ) from None
            except BaseException:
                os.close(fd)
                raise
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            self._lock_fd = fd

    def close(self) -> None:
        """Close the journal and release the lock (a later write needs lock() and load() again)."""
        with self._mutex:
            self._close_journal()
            self._writable = False
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # closing the only descriptor releases the flock
                self._lock_fd = None

    def __enter__(self) -> Store:
        self.lock()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ── load ─────────────────────────────────────────────────────────────────────────────────────────

    def load(self) -> tuple[TaskGraph, DaemonState]:
        """Read the snapshot, migrate it, replay the journal over it, and return the state.

        Falls back to ``graph.json.bak`` (bridged by ``events/``) when ``graph.json`` is missing. A snapshot
        that does not parse or validate is renamed ``*.corrupt-<ts>`` and raises :class:`CorruptState`; so
        does a journal that is damaged anywhere but its tail, or a gap in the sequence. Returns an empty
        state only when there is no state at all. With the lock held it also removes leftover temp files
        and truncates a torn journal tail, so that appends continue from the last whole batch.
        """
        with self._mutex:
            started = time.perf_counter()
            self._ensure_dir()
            writable = self._lock_fd is not None
            self._close_journal()
            self._writable = False
            if writable:
                self._remove_temp_files()
            journal = read_bytes(self.journal_path)  # before the snapshot: a concurrent compaction stays consistent
            base_path, base_seq, tasks, daemon, migrated = self._read_base(writable)
            lines, good_end, dropped = scan_journal(journal, self.journal_path)
            if dropped:
                log.warning("journal_torn_tail_dropped", path=str(self.journal_path), bytes=len(journal) - good_end)
                if writable:
                    truncate_durably(self.journal_path, good_end, fsync=self.fsync)
            pending = {line.seq: line for line in lines if line.seq > base_seq}
            from_events = 0
            if base_path != self.graph_path:  # an older snapshot or none: bridge with the rotated history
                for line in self.history.lines():
                    if line.seq > base_seq and line.seq not in pending:
                        pending[line.seq] = line
                        from_events += 1
            replayed = check_contiguous(pending, base_seq, base_path)
            daemon_dict = daemon.model_dump(mode="json")
            for line in replayed:
                migrated |= apply_record(line, tasks, daemon_dict, self._migrations)
            try:
                daemon = DaemonState.model_validate(daemon_dict)
            except ValidationError as exc:
                raise CorruptState(
                    f"{self.journal_path}: daemon state after replay is invalid: {first_error(exc)}"
                ) from None
            self._seq = replayed[-1].seq if replayed else base_seq
            self._journal_lines = len(lines)
            self._journal_size = good_end
            self._daemon_saved = daemon.model_dump(mode="json")
            self._broken = None
            self._writable = writable
            self.needs_snapshot = migrated or base_path == self.bak_path or from_events > 0
            log.info(
                "state_loaded",
                source=base_path.name if base_path else None,
                tasks=len(tasks),
                seq=self._seq,
                replayed=len(replayed),
                from_events=from_events,
                ms=round((time.perf_counter() - started) * 1000, 1),
            )
            return TaskGraph(tasks.values()), daemon

    def _read_base(self, writable: bool) -> tuple[Path | None, int, dict[str, Task], DaemonState, bool]:
        """``(path, seq, tasks, daemon, migrated)`` of the newest readable snapshot, or of an empty state."""
        for path in (self.graph_path, self.bak_path):
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                continue
            if path == self.bak_path:
                log.warning("snapshot_fallback", path=str(path))
            try:
                return (path, *parse_snapshot(path, data, self._migrations))
            except SnapshotUnreadable as exc:
                raise self._corrupt(path, exc.why, writable) from None
        quarantined = sorted(p.name for p in self.state_dir.glob("graph.json*.corrupt-*"))
        if quarantined:
            raise CorruptState(
                f"{self.graph_path} is missing and earlier snapshots were quarantined ({', '.join(quarantined)});"
                " restore one, or move them away to start empty"
            )
        return None, 0, {}, DaemonState(), False

    def _corrupt(self, path: Path, why: str, writable: bool) -> CorruptState:
        """Quarantine ``path`` (when we hold the lock) and build the error that names it."""
        if not writable:
            return CorruptState(f"{path}: {why}")
        stamp = as_utc(self._clock()).strftime("%Y%m%dT%H%M%SZ")
        target = path.with_name(f"{path.name}.corrupt-{stamp}")
        n = 1
        while target.exists():
            target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
            n += 1
        os.rename(path, target)
        self._fsync_dir(self.state_dir)
        log.error("snapshot_quarantined", path=str(path), moved_to=str(target), reason=why)
        return CorruptState(f"{path}: {why}; moved to {target.name}")

    # ── append ───────────────────────────────────────────────────────────────────────────────────────

    def append(self, events: Sequence[Event], tasks: Iterable[Task] = (), daemon: DaemonState | None = None) -> int:
        """Journal one change durably (written, flushed and fsynced) and return its last seq.

        One line per event; a task in ``tasks`` rides on the last event that names it, or gets a
        ``task_upsert`` line of its own. The changed fields of ``daemon`` ride on the last line (or a
        ``daemon_update`` line). Nothing to record writes nothing. The cost is that of the change, never
        of the graph. On :class:`StateError` nothing was acknowledged; stop acting on the change.
        """
        with self._mutex:
            self._check_writable()
            records = change_records(events, tasks)
            new_daemon = None
            if daemon is not None:
                new_daemon = daemon.model_dump(mode="json")
                delta = daemon_delta(self._daemon_saved, new_daemon)
                if delta:
                    if not records:
                        ts = self._clock().isoformat()
                        records.append({"seq": 0, "ts": ts, "type": "daemon_update", "task": None, "data": {}})
                    records[-1].update(delta)
            if not records:
                return self._seq
            last = self._seq + len(records)
            lines = []
            for offset, rec in enumerate(records, start=1):
                rec["seq"] = self._seq + offset
                rec["schema"] = SCHEMA
                if len(records) > 1:
                    rec["upto"] = last
                lines.append(json.dumps(rec, separators=(",", ":"), ensure_ascii=False).encode() + b"\n")
            data = b"".join(lines)
            self._write_journal(data)
            self._seq = last
            self._journal_lines += len(lines)
            self._journal_size += len(data)
            if new_daemon is not None:
                self._daemon_saved = new_daemon
            return last

    def _write_journal(self, data: bytes) -> None:
        try:
            fd = self._journal()
        except OSError as exc:
            raise StateError(f"{self.journal_path}: cannot open the journal: {exc}") from exc
        try:
            write_all(fd, data)
        except OSError as exc:
            try:
                os.ftruncate(fd, self._journal_size)  # take the partial batch back so later lines stay whole
            except OSError:
                self._broken = f"{self.journal_path} could not be rolled back after a failed write"
            raise StateError(f"{self.journal_path}: append failed: {exc}") from exc
        if self.fsync:
            try:
                os.fsync(fd)
            except OSError as exc:  # after a failed fsync the page cache may have dropped the data
                self._broken = f"{self.journal_path}: fsync failed ({exc})"
                raise StateError(self._broken) from exc

    def _journal(self) -> int:
        if self._journal_fd is None:
            existed = self.journal_path.exists()
            fd = os.open(self.journal_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                if not existed:
                    self._fsync_dir(self.state_dir)  # make the new file's name durable before its lines
            except BaseException:
                os.close(fd)
                raise
            self._journal_fd = fd
        return self._journal_fd

    def _close_journal(self) -> None:
        if self._journal_fd is not None:
            os.close(self._journal_fd)
            self._journal_fd = None

    def _check_writable(self) -> None:
        if self._broken is not None:
            raise StateError(f"{self._broken}; restart to recover from disk")
        if self._lock_fd is None or not self._writable:
            raise StateError(f"{self.state_dir}: call lock() and then load() before writing")

    # ── snapshot and compaction ──────────────────────────────────────────────────────────────────────

    def snapshot(self, graph: TaskGraph, daemon: DaemonState) -> None:
        """Write ``graph`` and ``daemon`` as the new snapshot at the current seq, then rotate the journal.

        ``graph`` must include every change appended so far. The previous snapshot is hard-linked to
        ``graph.json.bak`` first; the new one is written to a temp file, fsynced, renamed over
        ``graph.json`` and the directory fsynced. The journal's lines are then appended to
        ``events/events-<day of their ts>.jsonl`` (skipping lines a crashed rotation already copied) and
        the journal is truncated.
        """
        with self._mutex:
            self._check_writable()
            started = time.perf_counter()
            daemon_json = daemon.model_dump(mode="json")
            data = b'{"schema":%d,"seq":%d,"tasks":%b,"daemon":%b}\n' % (
                SCHEMA,
                self._seq,
                TASKS.dump_json(list(graph)),
                json.dumps(daemon_json, separators=(",", ":"), ensure_ascii=False).encode(),
            )
            try:
                self._link_backup()
                atomic_write_bytes(self.graph_path, data, fsync=self.fsync)
            except OSError as exc:
                raise StateError(f"{self.graph_path}: snapshot failed: {exc}") from exc
            self._daemon_saved = daemon_json
            self.needs_snapshot = False
            rotated = self._journal_lines
            try:
                self._rotate_journal()
            except OSError as exc:
                raise StateError(f"{self.events_dir}: rotating the journal failed: {exc}") from exc
            log.info(
                "snapshot_written",
                seq=self._seq,
                tasks=len(graph),
                bytes=len(data),
                rotated=rotated,
                ms=round((time.perf_counter() - started) * 1000, 1),
            )

    def maybe_compact(self, graph: TaskGraph, daemon: DaemonState, every: int = 1000) -> bool:
        """Snapshot when the journal holds more than ``every`` lines; True when it did."""
        with self._mutex:
            if self._journal_lines <= every:
                return False
            self.snapshot(graph, daemon)
            return True

    def _link_backup(self) -> None:
        tmp = self.state_dir / ".graph.json.bak.tmp"
        tmp.unlink(missing_ok=True)
        try:
            os.link(self.graph_path, tmp)
        except FileNotFoundError:
            return  # no current snapshot (first one, or it was quarantined): keep the old .bak
        os.replace(tmp, self.bak_path)

    def _rotate_journal(self) -> None:
        if self._journal_size:
            with open(self.journal_path, "rb") as f:
                self.history.add(f.read(self._journal_size))
        fd = self._journal()
        os.ftruncate(fd, 0)
        if self.fsync:
            os.fsync(fd)
        self._journal_size = 0
        self._journal_lines = 0

    # ── history ──────────────────────────────────────────────────────────────────────────────────────

    def iter_events(self, since: datetime) -> Iterator[Event]:
        """Events with ``ts >= since`` from ``events/`` and then the journal, oldest file first."""
        for record in self.iter_records(since):
            yield record.event

    def iter_records(self, since: datetime, *, include_state: bool = False) -> Iterator[JournalRecord]:
        """Like :meth:`iter_events` with each event's seq; ``include_state`` adds the state-only lines.

        Every seq is yielded once. The journal is read first, so a compaction running meanwhile
        cannot hide a change that was durable when the iteration started. Unreadable lines are skipped
        with a warning (this is history, not state).
        """
        cutoff = as_utc(since)
        with self._mutex:
            journal = read_bytes(self.journal_path)
        seen: set[int] = set()
        yield from self.history.records(cutoff, include_state, seen)
        yield from records_in(journal, self.journal_path, cutoff, include_state, seen)

    def prune_events(self, older_than: datetime) -> list[Path]:
        """Delete rotated history files whose whole day is before ``older_than``; return what was deleted."""
        return self.history.prune(older_than)

    # ── small helpers ────────────────────────────────────────────────────────────────────────────────

    def _ensure_dir(self) -> None:
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)

    def _remove_temp_files(self) -> None:
        for path in self.state_dir.glob(".graph.json.*.tmp"):
            path.unlink(missing_ok=True)
            log.warning("temp_file_removed", path=str(path))

    def _fsync_dir(self, path: Path) -> None:
        if self.fsync:
            fsync_dir(path)
