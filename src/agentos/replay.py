"""The state rebuilt from its files: snapshot parsing, schema migration, the journal scan and its replay.

Pure functions over bytes and parsed records; :meth:`agentos.store.Store.load` reads the files, holds the lock,
quarantines a damaged snapshot (:class:`SnapshotUnreadable` says why) and truncates a torn journal tail.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from agentos.acceptance import AcceptanceState
from agentos.graph import Attempt, Task
from agentos.journal import Line, parse_record, split_lines
from agentos.state_model import SCHEMA, CorruptState, DaemonState, Migration, SchemaTooNew, StateError

__all__ = [
    "TASKS",
    "SnapshotUnreadable",
    "apply_record",
    "check_contiguous",
    "compact",
    "first_error",
    "migrate",
    "migrate_record",
    "parse_snapshot",
    "scan_journal",
    "validate_tasks",
]

TASKS = TypeAdapter(list[Task])
"""Validates and dumps a snapshot's ``"tasks"`` in one pass."""
_SNAPSHOT_KEYS = frozenset({"schema", "seq", "tasks", "daemon"})


class SnapshotUnreadable(Exception):
    """A snapshot that does not parse or validate: ``why``, for the store to quarantine it with."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


def first_error(exc: ValidationError, prefix: str = "") -> str:
    """The first validation error on one line: ``where: what (+N more)``."""
    errors = exc.errors()
    first = errors[0]
    where = ".".join([prefix, *(str(part) for part in first["loc"])] if prefix else map(str, first["loc"]))
    where = where or "<root>"
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first['msg']}{more}"


def validate_tasks(items: Any) -> list[Task]:
    """``list[Task]`` from a snapshot's parsed ``"tasks"``, emptying ``items`` as it goes.

    One task at a time, each :func:`compact`-ed and its parsed dict dropped at once, so the
    memory one task's validation churns through is reused by the next instead of being left scattered
    over the heap (RSS after a restart with 10k tasks: 157 → 87 MB, docs/performance.md). Raises the
    ValidationError of the whole list, as ``TypeAdapter(list[Task])`` does.
    """
    if type(items) is not list:
        return TASKS.validate_python(items)
    items.reverse()
    tasks: list[Task] = []
    while items:
        item = items.pop()
        try:
            tasks.append(compact(Task.model_validate(item)))
        except ValidationError:
            TASKS.validate_python([*tasks, item, *reversed(items)])  # every error, numbered as in the file
            raise
    return tasks


def parse_snapshot(
    path: Path, data: bytes, migrations: Mapping[int, Migration]
) -> tuple[int, dict[str, Task], DaemonState, bool]:
    """``(seq, tasks, daemon, migrated)`` of a snapshot; :class:`SnapshotUnreadable` when it is damaged."""
    try:
        raw = json.loads(data)
    except ValueError as exc:
        raise SnapshotUnreadable(f"not valid JSON ({exc})") from None
    if not isinstance(raw, dict) or type(raw.get("schema")) is not int:
        raise SnapshotUnreadable('not a snapshot (no integer "schema")')
    schema: int = raw["schema"]
    if schema > SCHEMA:
        raise SchemaTooNew(f"{path} has schema {schema} but this agentos reads up to {SCHEMA}; upgrade agentos")
    raw = migrate(raw, path, migrations)
    if set(raw) != _SNAPSHOT_KEYS or type(raw["seq"]) is not int or raw["seq"] < 0:
        raise SnapshotUnreadable(f"expected keys {sorted(_SNAPSHOT_KEYS)} with an integer seq")
    try:
        tasks = validate_tasks(raw["tasks"])
    except ValidationError as exc:
        raise SnapshotUnreadable(f"invalid state: {first_error(exc, 'tasks')}") from None
    try:
        daemon = DaemonState.model_validate(raw["daemon"])
    except ValidationError as exc:
        raise SnapshotUnreadable(f"invalid state: {first_error(exc, 'daemon')}") from None
    return raw["seq"], {task.id: task for task in tasks}, daemon, schema < SCHEMA


def migrate(doc: dict[str, Any], source: Path, migrations: Mapping[int, Migration]) -> dict[str, Any]:
    """``doc`` brought from its ``"schema"`` up to :data:`SCHEMA` one migration at a time."""
    version: int = doc["schema"]
    while version < SCHEMA:
        step = migrations.get(version)
        if step is None:
            raise StateError(f"{source}: no migration from schema {version} to {version + 1}")
        try:
            doc = step(dict(doc))
        except Exception as exc:  # a migration bug or unexpected data: report it with the file
            raise StateError(f"{source}: migrating schema {version} → {version + 1} failed: {exc!r}") from exc
        version += 1
        doc["schema"] = version
    return doc


def scan_journal(data: bytes, path: Path) -> tuple[list[Line], int, bool]:
    """``(committed lines, end offset of the last whole batch, whether a tail was dropped)``.

    Lines after the first bad one must all be bad too (a torn tail); a whole line after a bad one is
    damage in the middle and raises CorruptState. An unfinished batch at the end is part of the tail.
    """
    parsed = [(lineno, end, parse_record(raw)) for lineno, end, raw in split_lines(data)]
    first_bad = next((i for i, (_, _, rec) in enumerate(parsed) if rec is None), len(parsed))
    for lineno, _, rec in parsed[first_bad:]:
        if rec is not None:
            raise CorruptState(
                f"{path}: line {parsed[first_bad][0]} is damaged but line {lineno} after it is whole; refusing to guess"
            )
    committed: list[Line] = []
    batch: list[Line] = []
    batch_upto = 0
    good_end, prev = 0, None
    for lineno, end, rec in parsed[:first_bad]:
        assert rec is not None
        seq: int = rec["seq"]
        upto = rec.get("upto", seq)
        if prev is not None and seq != prev + 1:
            raise CorruptState(f"{path}: line {lineno} has seq {seq} after {prev}")
        if type(upto) is not int or upto < seq or (batch and upto != batch_upto):
            raise CorruptState(f"{path}: line {lineno} breaks its batch (upto={upto!r})")
        prev = seq
        batch.append(Line(seq, rec, path, lineno))
        batch_upto = upto
        if seq == upto:
            committed.extend(batch)
            batch = []
            good_end = end
    return committed, good_end, good_end < len(data)


def check_contiguous(pending: dict[int, Line], base_seq: int, base_path: Path | None) -> list[Line]:
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


def apply_record(
    line: Line, tasks: dict[str, Task], daemon: dict[str, Any], migrations: Mapping[int, Migration]
) -> bool:
    """Apply one record to the state being rebuilt; True when it had to be migrated."""
    rec = line.rec
    where = f"{line.source}: line {line.lineno} (seq {line.seq})"
    schema: int = rec["schema"]
    migrated = schema < SCHEMA
    if schema > SCHEMA:
        raise SchemaTooNew(f"{where} has schema {schema} but this agentos reads up to {SCHEMA}")
    if migrated:
        rec = migrate_record(rec, line.source, migrations)
    try:
        if "task_state" in rec:
            task = compact(Task.model_validate(rec["task_state"]))
            tasks[task.id] = task
    except ValidationError as exc:
        raise CorruptState(f"{where}: invalid task state: {first_error(exc)}") from None
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


def migrate_record(rec: dict[str, Any], source: Path, migrations: Mapping[int, Migration]) -> dict[str, Any]:
    """A journal line of an older schema, migrated as a partial document."""
    doc = {
        "schema": rec["schema"],
        "seq": rec["seq"],
        "tasks": [rec["task_state"]] if "task_state" in rec else [],
        "daemon": rec.get("daemon") or {},
    }
    doc = migrate(doc, source, migrations)
    rec = dict(rec, schema=SCHEMA)
    if "task_state" in rec:
        rec["task_state"] = doc["tasks"][0]
    if "daemon" in rec:
        rec["daemon"] = doc["daemon"]
    return rec


_TASK_FIELDS: set[str] = set(Task.model_fields)
_ATTEMPT_FIELDS: set[str] = set(Attempt.model_fields)
_ACCEPTANCE_FIELDS: set[str] = set(AcceptanceState.model_fields)


def compact(task: Task) -> Task:
    """Shrink a task read back from disk (in place) and return it; what it holds is unchanged.

    pydantic keeps on every instance the set of field names it was given (``model_fields_set``). A task
    or attempt read from a snapshot or the journal was given every field, and a set of 20 or more names
    costs 2.2 KB, more than the rest of an attempt. Such instances share one set per model: pydantic only
    ever adds field names to it, and they are all there already. The short strings that repeat from task
    to task (repository, agent names, blocker codes) are interned.
    """
    if task.__pydantic_fields_set__ == _TASK_FIELDS:
        object.__setattr__(task, "__pydantic_fields_set__", _TASK_FIELDS)
    if task.acceptance.__pydantic_fields_set__ == _ACCEPTANCE_FIELDS:
        object.__setattr__(task.acceptance, "__pydantic_fields_set__", _ACCEPTANCE_FIELDS)
    fields = task.__dict__
    fields["repo"] = sys.intern(task.repo)
    for key in ("agent", "last_blocker"):
        if fields[key] is not None:
            fields[key] = sys.intern(fields[key])
    for attempt in task.attempts:
        if attempt.__pydantic_fields_set__ == _ATTEMPT_FIELDS:
            object.__setattr__(attempt, "__pydantic_fields_set__", _ATTEMPT_FIELDS)
        fields = attempt.__dict__
        fields["agent"] = sys.intern(attempt.agent)
        if attempt.blocker_code is not None:
            fields["blocker_code"] = sys.intern(attempt.blocker_code)
    return task
