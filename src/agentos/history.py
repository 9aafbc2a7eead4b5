"""The rotated history of the journal: ``events/events-YYYY-MM-DD.jsonl``, kept for the improvement loops.

Compaction (:meth:`agentos.store.Store.snapshot`) hands the journal's lines to :meth:`History.add`, which
appends each to the file of its day, skipping lines a crashed rotation already copied. The loops read events
back with :meth:`History.records`; housekeeping deletes old days with :meth:`History.prune`; recovery from an
older snapshot bridges the gap with :meth:`History.lines`. The line format is :mod:`agentos.journal`'s.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import structlog

from agentos.fsutil import fsync_dir
from agentos.journal import (
    JournalRecord,
    Line,
    as_utc,
    day_of,
    file_day,
    history_tail,
    line_head,
    parse_record,
    read_bytes,
    records_in,
    split_lines,
    write_all,
)

__all__ = ["History"]

log = structlog.get_logger("agentos.store")


class History:
    """The ``events/`` directory of one state directory (the store holds the lock that guards its writes)."""

    def __init__(self, events_dir: Path, *, fsync: bool, clock: Callable[[], datetime]) -> None:
        self.events_dir = events_dir
        self.fsync = fsync
        self._clock = clock

    def __repr__(self) -> str:
        return f"<History {self.events_dir}>"

    def _files(self) -> list[Path]:
        return sorted(self.events_dir.glob("events-*.jsonl"))

    def add(self, journal: bytes) -> None:
        """Append whole journal lines to the files of their days (``ts``; today for a line without one)."""
        groups: dict[str, list[tuple[int, bytes]]] = {}
        today = as_utc(self._clock()).date().isoformat()
        for _, _, raw in split_lines(journal):
            head = line_head(raw)
            if head is None:  # cannot happen: load() accepted every line of this journal
                continue
            groups.setdefault(day_of(head[1]) or today, []).append((head[0], raw + b"\n"))
        if not self.events_dir.exists():
            self.events_dir.mkdir(mode=0o700, exist_ok=True)
            self._fsync_dir(self.events_dir.parent)
        for day, items in sorted(groups.items()):
            self._append(self.events_dir / f"events-{day}.jsonl", items)

    def _append(self, path: Path, items: list[tuple[int, bytes]]) -> None:
        existed = path.exists()
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            last = history_tail(fd, path)
            data = b"".join(line for seq, line in items if seq > last)
            if data:
                write_all(fd, data)
                if self.fsync:
                    os.fsync(fd)
        finally:
            os.close(fd)
        if not existed:
            self._fsync_dir(path.parent)

    def lines(self) -> Iterator[Line]:
        """Every whole record, oldest file first (used to bridge from an older snapshot)."""
        for path in self._files():
            for lineno, _, raw in split_lines(read_bytes(path)):
                rec = parse_record(raw)
                if rec is not None:
                    yield Line(rec["seq"], rec, path, lineno)

    def records(self, cutoff: datetime, include_state: bool, seen: set[int]) -> Iterator[JournalRecord]:
        """The records with ``ts >= cutoff`` whose seq is not in ``seen`` (which grows); bad lines skipped."""
        for path in self._files():
            day = file_day(path)
            if day is None or day >= cutoff.date():
                yield from records_in(read_bytes(path), path, cutoff, include_state, seen)

    def prune(self, older_than: datetime) -> list[Path]:
        """Delete the files whose whole day is before ``older_than``; return what was deleted."""
        cutoff = as_utc(older_than).date()
        removed = []
        for path in self._files():
            day = file_day(path)
            if day is not None and day < cutoff:
                path.unlink(missing_ok=True)
                removed.append(path)
        if removed:
            log.info("events_pruned", files=len(removed), before=cutoff.isoformat())
        return removed

    def _fsync_dir(self, path: Path) -> None:
        if self.fsync:
            fsync_dir(path)
