"""The journal's line format and its rotated history (``events/events-YYYY-MM-DD.jsonl``).

A journal line starts ``{"seq":N,"ts":"…"`` so :func:`line_head` can read its place without parsing the
rest; :func:`parse_record` accepts a line only when it is a whole record. The history files hold the
journal lines that compaction rotated out, grouped by day; :func:`history_tail` finds where one ends
(cutting a torn last line) and :func:`records_in` reads events back for the improvement loops.
:class:`~agentos.store.Store` and :class:`~agentos.history.History` own the files, :mod:`agentos.replay`
rebuilds the state from them; this module only reads and shapes their bytes.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import structlog
from pydantic import ValidationError

from agentos.graph import Event, Task

__all__ = [
    "STATE_TYPES",
    "JournalRecord",
    "Line",
    "as_utc",
    "change_records",
    "day_of",
    "file_day",
    "history_tail",
    "line_head",
    "parse_record",
    "read_bytes",
    "records_in",
    "split_lines",
    "write_all",
]

log = structlog.get_logger("agentos.store")

STATE_TYPES = frozenset({"task_upsert", "daemon_update"})
"""Journal line types that only carry state, not an event; :meth:`Store.iter_events` skips them."""

_HEAD = re.compile(rb'^\{"seq":(\d+),"ts":"([^"]*)"')


@dataclass(frozen=True, slots=True)
class JournalRecord:
    """One line of history: its place in the sequence and the event it recorded."""

    seq: int
    event: Event


@dataclass(slots=True)
class Line:
    """One whole journal record and where it was read (for the error that names a damaged one)."""

    seq: int
    rec: dict[str, Any]
    source: Path
    lineno: int


def change_records(events: Sequence[Event], tasks: Iterable[Task]) -> list[dict[str, Any]]:
    """The journal records of one change, ``seq`` still 0: one per event, a task's state riding on the last
    event that names it, and a ``task_upsert`` record for each changed task no event names."""
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
    return records


def as_utc(moment: datetime) -> datetime:
    """Aware datetimes in UTC; naive ones are taken to be UTC already."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def parse_record(line: bytes) -> dict[str, Any] | None:
    """A journal line as a dict, or None when it is not a well-formed record."""
    try:
        rec = json.loads(line)
    except ValueError:
        return None
    if not isinstance(rec, dict):
        return None
    seq, schema = rec.get("seq"), rec.get("schema")
    if type(seq) is not int or type(schema) is not int or not isinstance(rec.get("type"), str):
        return None
    return rec


def split_lines(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """``(lineno, end offset, line)`` for every newline-terminated line; a torn remainder is not yielded."""
    start, lineno = 0, 0
    while (nl := data.find(b"\n", start)) >= 0:
        lineno += 1
        yield lineno, nl + 1, data[start:nl]
        start = nl + 1


def line_head(line: bytes) -> tuple[int, str] | None:
    """``(seq, ts)`` of a journal line, read from its fixed prefix when possible."""
    match = _HEAD.match(line)
    if match:
        return int(match.group(1)), match.group(2).decode()
    rec = parse_record(line)
    if rec is None:
        return None
    return rec["seq"], str(rec.get("ts", ""))


def day_of(ts: str) -> str | None:
    try:
        return as_utc(datetime.fromisoformat(ts)).date().isoformat()
    except ValueError:
        return None


def file_day(path: Path) -> date | None:
    try:
        return date.fromisoformat(path.name.removeprefix("events-").removesuffix(".jsonl"))
    except ValueError:
        return None


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def history_tail(fd: int, path: Path) -> int:
    """The last seq in a history file; cuts off a torn last line left by a crashed rotation."""
    size = os.fstat(fd).st_size
    pos, chunk, buf = size, 65536, b""
    while pos > 0:
        step = min(chunk, pos)
        pos -= step
        buf = os.pread(fd, step, pos) + buf
        last_nl = buf.rfind(b"\n")
        if last_nl >= 0 and buf.rfind(b"\n", 0, last_nl) >= 0:
            break
        chunk *= 2
    last_nl = buf.rfind(b"\n")
    valid_end = pos + last_nl + 1
    if valid_end < size:
        os.ftruncate(fd, valid_end)
        log.warning("history_torn_tail_dropped", path=str(path), bytes=size - valid_end)
    if last_nl < 0:
        return 0
    head = line_head(buf[buf.rfind(b"\n", 0, last_nl) + 1 : last_nl])
    if head is not None:
        return head[0]
    seqs = [h[0] for _, _, raw in split_lines(os.pread(fd, valid_end, 0)) if (h := line_head(raw))]
    return max(seqs, default=0)


def records_in(
    data: bytes, source: Path, cutoff: datetime, include_state: bool, seen: set[int]
) -> Iterator[JournalRecord]:
    skipped = 0
    for _, _, raw in split_lines(data):
        rec = parse_record(raw)
        if rec is None:
            skipped += 1
            continue
        if rec["seq"] in seen or (rec["type"] in STATE_TYPES and not include_state):
            continue
        try:
            event = Event.model_validate(
                {"type": rec["type"], "task": rec.get("task"), "ts": rec.get("ts"), "data": rec.get("data", {})}
            )
        except ValidationError:
            skipped += 1
            continue
        seen.add(rec["seq"])
        if as_utc(event.ts) >= cutoff:
            yield JournalRecord(rec["seq"], event)
    if skipped:
        log.warning("history_lines_skipped", path=str(source), lines=skipped)
