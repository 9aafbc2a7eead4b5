"""The housekeeping job: rotated journals past their retention are deleted, every day, not only at start-up.

Compaction moves old journal lines to ``events/events-YYYY-MM-DD.jsonl`` (docs/events.md); the loops and
``agentos stats`` read them. A file whose whole day is older than ``limits.event_retention_days`` (90) is
deleted by :meth:`Housekeeping.tick` (daily at 03:43 in the config's ``timezone`` by default, and once when
the daemon starts). The files themselves are named by UTC day, whatever the zone. A pass that deletes
nothing journals nothing, so running it twice in a row changes nothing the second time.
"""

from __future__ import annotations

from datetime import timedelta

from agentos import logging as alog
from agentos.ports import Clock, Journal, Settings
from agentos.store import Store

__all__ = ["Housekeeping"]

log = alog.get_logger("agentos.housekeeping")


class Housekeeping:
    """The ``housekeeping`` job (daily): prune rotated event files older than the retention."""

    def __init__(self, *, settings: Settings, journal: Journal, clock: Clock, store: Store) -> None:
        self._settings = settings
        self._journal = journal
        self._clock = clock
        self._store = store
        self.pruned = 0

    def __repr__(self) -> str:
        return f"<Housekeeping pruned={self.pruned}>"

    async def tick(self) -> None:
        days = self._settings.config.limits.event_retention_days
        cutoff = self._clock() - timedelta(days=days)
        try:
            removed = self._store.prune_events(cutoff)  # a glob and a few unlinks: no thread needed
        except OSError as exc:
            log.warning("events_prune_failed", error=str(exc))
            return
        if removed:
            self.pruned += len(removed)
            self._journal.record("events_pruned", None, before=cutoff.date().isoformat(), files=len(removed))
