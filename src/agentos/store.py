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

The journal's line format and the reading of its rotated history are in :mod:`agentos.journal`.

Exceptions::

    AgentosError
     └── StateError          anything wrong with the state directory
          ├── CorruptState   a file does not parse or validate (a bad snapshot is quarantined)
          ├── SchemaTooNew   a file written by a newer agentos
          └── AlreadyRunning another process holds agentos.lock
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
from pydantic import BaseModel, Field, TypeAdapter, ValidationError, field_validator

from agentos.errors import AgentosError
from agentos.fsutil import atomic_write_bytes
from agentos.graph import Event, Task, TaskGraph, compact
from agentos.history import History
from agentos.journal import (
    STATE_TYPES,
    JournalRecord,
    _as_utc,
    _Line,
    _parse_record,
    _read_bytes,
    _records_in,
    _split_lines,
    _write_all,
)

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

SCHEMA = 1
"""The schema this code writes. Files with a lower ``"schema"`` are migrated on load."""

NOTIFIED_KEEP = 5000
"""How many notification dedup keys :class:`DaemonState` keeps (the most recent)."""

Migration = Callable[[dict[str, Any]], dict[str, Any]]
MIGRATIONS: dict[int, Migration] = {}
"""``MIGRATIONS[n]`` turns a schema-``n`` document into schema ``n + 1`` (the chain sets ``"schema"``).

A document is ``{"schema", "seq", "tasks": [task dicts], "daemon": {daemon fields}}``. Journal lines are
migrated as partial documents: ``tasks`` holds the one task the line carries (or none) and ``daemon`` only
the fields the line changed, so a migration must tolerate missing daemon keys."""

_TASKS = TypeAdapter(list[Task])
_SNAPSHOT_KEYS = frozenset({"schema", "seq", "tasks", "daemon"})


class StateError(AgentosError):
    """The state directory cannot be read or written as the rules require."""


class CorruptState(StateError):
    """A state file fails to parse or validate; snapshots are renamed ``*.corrupt-<ts>`` first."""


class SchemaTooNew(StateError):
    """A state file was written by a newer agentos; an older binary would drop its fields."""


class AlreadyRunning(StateError):
    """Another process holds ``agentos.lock`` in the same state directory."""


class JobRun(BaseModel):
    """The run history of one scheduled job."""

    last_run: datetime | None = None
    last_success: datetime | None = None
    last_error: str | None = None
    runs: int = 0
    failures: int = 0


class DaemonState(BaseModel):
    """The daemon's own small state: kill switch, disabled jobs and repos, job runs, agent cool-downs."""

    paused: bool = False
    disabled_jobs: list[str] = Field(default_factory=list)
    disabled_repos: list[str] = Field(default_factory=list)
    job_runs: dict[str, JobRun] = Field(default_factory=dict)
    paused_agents: dict[str, datetime] = Field(default_factory=dict)
    notified: list[str] = Field(default_factory=list)

    @field_validator("notified")
    @classmethod
    def _keep_recent(cls, keys: list[str]) -> list[str]:
        return keys[-NOTIFIED_KEEP:]

    def mark_notified(self, key: str) -> bool:
        """Remember that the notification ``key`` was sent; False when it already was (so skip it)."""
        if key in self.notified:
            return False
        self.notified.append(key)
        if len(self.notified) > NOTIFIED_KEEP:
            del self.notified[: len(self.notified) - NOTIFIED_KEEP]
        return True


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _first_error(exc: ValidationError, prefix: str = "") -> str:
    """The first validation error on one line: ``where: what (+N more)``."""
    errors = exc.errors()
    first = errors[0]
    where = ".".join([prefix, *(str(part) for part in first["loc"])] if prefix else map(str, first["loc"]))
    where = where or "<root>"
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first['msg']}{more}"


def _validate_tasks(items: Any) -> list[Task]:
    """``list[Task]`` from a snapshot's parsed ``"tasks"``, emptying ``items`` as it goes.

    One task at a time, each :func:`~agentos.graph.compact`-ed and its parsed dict dropped at once, so the
    memory one task's validation churns through is reused by the next instead of being left scattered
    over the heap (RSS after a restart with 10k tasks: 157 → 87 MB, docs/performance.md). Raises the
    ValidationError of the whole list, as ``TypeAdapter(list[Task])`` does.
    """
    if type(items) is not list:
        return _TASKS.validate_python(items)
    items.reverse()
    tasks: list[Task] = []
    while items:
        item = items.pop()
        try:
            tasks.append(compact(Task.model_validate(item)))
        except ValidationError:
            _TASKS.validate_python([*tasks, item, *reversed(items)])  # every error, numbered as in the file
            raise
    return tasks


def _notified_delta(old: list[str], new: list[str]) -> tuple[int, list[str]]:
    """``(keep, added)`` with ``old[len(old) - keep:] + added == new``, keeping as much of ``old`` as fits."""
    if old:
        last = old[-1]
        for j in range(min(len(new), len(old)) - 1, -1, -1):
            if new[j] == last and new[: j + 1] == old[len(old) - j - 1 :]:
                return j + 1, new[j + 1 :]
    return 0, list(new)


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
            journal = _read_bytes(self.journal_path)  # before the snapshot: a concurrent compaction stays consistent
            base_path, base_seq, tasks, daemon, migrated = self._read_base(writable)
            lines, good_end, dropped = self._scan_journal(journal)
            if dropped:
                log.warning("journal_torn_tail_dropped", path=str(self.journal_path), bytes=len(journal) - good_end)
                if writable:
                    self._truncate_file(self.journal_path, good_end)
            pending = {line.seq: line for line in lines if line.seq > base_seq}
            from_events = 0
            if base_path != self.graph_path:  # an older snapshot or none: bridge with the rotated history
                for line in self.history.lines():
                    if line.seq > base_seq and line.seq not in pending:
                        pending[line.seq] = line
                        from_events += 1
            replayed = self._check_contiguous(pending, base_seq, base_path)
            daemon_dict = daemon.model_dump(mode="json")
            for line in replayed:
                migrated |= self._apply(line, tasks, daemon_dict)
            try:
                daemon = DaemonState.model_validate(daemon_dict)
            except ValidationError as exc:
                raise CorruptState(
                    f"{self.journal_path}: daemon state after replay is invalid: {_first_error(exc)}"
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
            return (path, *self._parse_snapshot(path, data, writable))
        quarantined = sorted(p.name for p in self.state_dir.glob("graph.json*.corrupt-*"))
        if quarantined:
            raise CorruptState(
                f"{self.graph_path} is missing and earlier snapshots were quarantined ({', '.join(quarantined)});"
                " restore one, or move them away to start empty"
            )
        return None, 0, {}, DaemonState(), False

    def _parse_snapshot(
        self, path: Path, data: bytes, writable: bool
    ) -> tuple[int, dict[str, Task], DaemonState, bool]:
        try:
            raw = json.loads(data)
        except ValueError as exc:
            raise self._corrupt(path, f"not valid JSON ({exc})", writable) from None
        if not isinstance(raw, dict) or type(raw.get("schema")) is not int:
            raise self._corrupt(path, 'not a snapshot (no integer "schema")', writable)
        schema: int = raw["schema"]
        if schema > SCHEMA:
            raise SchemaTooNew(f"{path} has schema {schema} but this agentos reads up to {SCHEMA}; upgrade agentos")
        raw = self._migrate(raw, path)
        if set(raw) != _SNAPSHOT_KEYS or type(raw["seq"]) is not int or raw["seq"] < 0:
            raise self._corrupt(path, f"expected keys {sorted(_SNAPSHOT_KEYS)} with an integer seq", writable)
        try:
            tasks = _validate_tasks(raw["tasks"])
        except ValidationError as exc:
            raise self._corrupt(path, f"invalid state: {_first_error(exc, 'tasks')}", writable) from None
        try:
            daemon = DaemonState.model_validate(raw["daemon"])
        except ValidationError as exc:
            raise self._corrupt(path, f"invalid state: {_first_error(exc, 'daemon')}", writable) from None
        return raw["seq"], {task.id: task for task in tasks}, daemon, schema < SCHEMA

    def _corrupt(self, path: Path, why: str, writable: bool) -> CorruptState:
        """Quarantine ``path`` (when we hold the lock) and build the error that names it."""
        if not writable:
            return CorruptState(f"{path}: {why}")
        stamp = _as_utc(self._clock()).strftime("%Y%m%dT%H%M%SZ")
        target = path.with_name(f"{path.name}.corrupt-{stamp}")
        n = 1
        while target.exists():
            target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
            n += 1
        os.rename(path, target)
        self._fsync_dir(self.state_dir)
        log.error("snapshot_quarantined", path=str(path), moved_to=str(target), reason=why)
        return CorruptState(f"{path}: {why}; moved to {target.name}")

    def _migrate(self, doc: dict[str, Any], source: Path) -> dict[str, Any]:
        version: int = doc["schema"]
        while version < SCHEMA:
            step = self._migrations.get(version)
            if step is None:
                raise StateError(f"{source}: no migration from schema {version} to {version + 1}")
            try:
                doc = step(dict(doc))
            except Exception as exc:  # a migration bug or unexpected data: report it with the file
                raise StateError(f"{source}: migrating schema {version} → {version + 1} failed: {exc!r}") from exc
            version += 1
            doc["schema"] = version
        return doc

    def _scan_journal(self, data: bytes) -> tuple[list[_Line], int, bool]:
        """``(committed lines, end offset of the last whole batch, whether a tail was dropped)``.

        Lines after the first bad one must all be bad too (a torn tail); a whole line after a bad one is
        damage in the middle and raises CorruptState. An unfinished batch at the end is part of the tail.
        """
        parsed = [(lineno, end, _parse_record(raw)) for lineno, end, raw in _split_lines(data)]
        first_bad = next((i for i, (_, _, rec) in enumerate(parsed) if rec is None), len(parsed))
        for lineno, _, rec in parsed[first_bad:]:
            if rec is not None:
                raise CorruptState(
                    f"{self.journal_path}: line {parsed[first_bad][0]} is damaged but line {lineno} after it is"
                    " whole; refusing to guess"
                )
        committed: list[_Line] = []
        batch: list[_Line] = []
        batch_upto = 0
        good_end, prev = 0, None
        for lineno, end, rec in parsed[:first_bad]:
            assert rec is not None
            seq: int = rec["seq"]
            upto = rec.get("upto", seq)
            if prev is not None and seq != prev + 1:
                raise CorruptState(f"{self.journal_path}: line {lineno} has seq {seq} after {prev}")
            if type(upto) is not int or upto < seq or (batch and upto != batch_upto):
                raise CorruptState(f"{self.journal_path}: line {lineno} breaks its batch (upto={upto!r})")
            prev = seq
            batch.append(_Line(seq, rec, self.journal_path, lineno))
            batch_upto = upto
            if seq == upto:
                committed.extend(batch)
                batch = []
                good_end = end
        return committed, good_end, good_end < len(data)

    def _check_contiguous(self, pending: dict[int, _Line], base_seq: int, base_path: Path | None) -> list[_Line]:
        """The records to replay in order; a hole in the sequence raises CorruptState."""
        expected = base_seq + 1
        ordered = [pending[seq] for seq in sorted(pending)]
        base = base_path.name if base_path else "an empty state"
        for line in ordered:
            if line.seq != expected:
                raise CorruptState(
                    f"{line.source}: changes {expected}..{line.seq - 1} are missing after {base}"
                    f" (seq {base_seq}); the state would be incomplete"
                )
            expected += 1
        return ordered

    def _apply(self, line: _Line, tasks: dict[str, Task], daemon: dict[str, Any]) -> bool:
        """Apply one record to the state being rebuilt; True when it had to be migrated."""
        rec = line.rec
        where = f"{line.source}: line {line.lineno} (seq {line.seq})"
        schema: int = rec["schema"]
        migrated = schema < SCHEMA
        if schema > SCHEMA:
            raise SchemaTooNew(f"{where} has schema {schema} but this agentos reads up to {SCHEMA}")
        if migrated:
            rec = self._migrate_record(rec, line.source)
        try:
            if "task_state" in rec:
                task = compact(Task.model_validate(rec["task_state"]))
                tasks[task.id] = task
        except ValidationError as exc:
            raise CorruptState(f"{where}: invalid task state: {_first_error(exc)}") from None
        patch = rec.get("daemon")
        if patch is not None:
            if not isinstance(patch, dict):
                raise CorruptState(f"{where}: daemon change is not an object")
            daemon.update(patch)
        if "notified_add" in rec:
            keep, added, old = rec.get("notified_keep", 0), rec["notified_add"], daemon.get("notified", [])
            if type(keep) is not int or not 0 <= keep <= len(old) or not isinstance(added, list):
                raise CorruptState(f"{where}: notified change does not fit the state")
            daemon["notified"] = old[len(old) - keep :] + added
        return migrated

    def _migrate_record(self, rec: dict[str, Any], source: Path) -> dict[str, Any]:
        doc = {
            "schema": rec["schema"],
            "seq": rec["seq"],
            "tasks": [rec["task_state"]] if "task_state" in rec else [],
            "daemon": rec.get("daemon") or {},
        }
        doc = self._migrate(doc, source)
        rec = dict(rec, schema=SCHEMA)
        if "task_state" in rec:
            rec["task_state"] = doc["tasks"][0]
        if "daemon" in rec:
            rec["daemon"] = doc["daemon"]
        return rec

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
            changed = {task.id: task for task in tasks}
            carrier = {ev.task: i for i, ev in enumerate(events) if ev.task is not None and ev.task in changed}
            records: list[dict[str, Any]] = []
            for i, ev in enumerate(events):
                dumped = ev.model_dump(mode="json")
                rec = {"seq": 0, "ts": dumped["ts"], "type": ev.type, "task": ev.task, "data": dumped["data"]}
                if ev.task is not None and carrier.get(ev.task) == i:
                    rec["task_state"] = changed[ev.task].model_dump(mode="json")
                records.append(rec)
            for task_id, task in changed.items():
                if task_id not in carrier:
                    state = task.model_dump(mode="json")
                    records.append(
                        {
                            "seq": 0,
                            "ts": state["updated_at"],
                            "type": "task_upsert",
                            "task": task_id,
                            "data": {},
                            "task_state": state,
                        }
                    )
            new_daemon = None
            if daemon is not None:
                new_daemon = daemon.model_dump(mode="json")
                delta = self._daemon_delta(new_daemon)
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

    def _daemon_delta(self, new: dict[str, Any]) -> dict[str, Any]:
        old = self._daemon_saved
        delta: dict[str, Any] = {}
        changed = {key: value for key, value in new.items() if key != "notified" and old.get(key) != value}
        if changed:
            delta["daemon"] = changed
        if new["notified"] != old.get("notified"):
            keep, added = _notified_delta(old.get("notified", []), new["notified"])
            delta["notified_keep"] = keep
            delta["notified_add"] = added
        return delta

    def _write_journal(self, data: bytes) -> None:
        try:
            fd = self._journal()
        except OSError as exc:
            raise StateError(f"{self.journal_path}: cannot open the journal: {exc}") from exc
        try:
            _write_all(fd, data)
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
                _TASKS.dump_json(list(graph)),
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
        cutoff = _as_utc(since)
        with self._mutex:
            journal = _read_bytes(self.journal_path)
        seen: set[int] = set()
        yield from self.history.records(cutoff, include_state, seen)
        yield from _records_in(journal, self.journal_path, cutoff, include_state, seen)

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

    def _truncate_file(self, path: Path, size: int) -> None:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.ftruncate(fd, size)
            if self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)

    def _fsync_dir(self, path: Path) -> None:
        if not self.fsync:
            return
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
