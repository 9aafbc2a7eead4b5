"""The daily digest: the last day in one message, with the batched severity-3 notifications.

At 08:00 in the config's ``timezone`` (the ``daily_digest`` trigger) it summarises merges, escalations, what
is running, PRs waiting, cost and the top blockers and incident, appends the notifier's
:meth:`~Notifier.drain_digest` items, and sends it as one severity-2 notification keyed ``digest:<date>``.
The date is the local one, and the window is wall-clock in that zone: ``digest_window_hours`` (24) before
08:00 is 08:00 the day before, 23 or 25 hours earlier across a DST change, so no hour is reported twice or
missed. The text is journalled as ``digest_sent`` (also when no notifier is configured), and that event is
the gate: one digest per date, so a second run the same day changes nothing and drains nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Protocol

from agentos import logging as alog
from agentos.graph import Event, Task, TaskStatus
from agentos.jobs._loops import EventHistory, LoopSettings, last_event, read_events, settings_for
from agentos.ops.metrics import group_stats, read_history
from agentos.ops.notify import Message
from agentos.ports import Clock, Journal, Notify, Settings
from agentos.redact import redact
from agentos.task_graph import TaskGraph

__all__ = ["DailyDigest", "digest_text", "window"]

log = alog.get_logger("agentos.digest")

MAX_ITEMS = 15


def _title(graph: TaskGraph, task_id: str | None) -> str:
    task = graph.find(task_id or "")
    return task.title if task else ""


def _listed(lines: list[str], items: Sequence[str]) -> None:
    lines.extend(items[:MAX_ITEMS])
    if len(items) > MAX_ITEMS:
        lines.append(f"  … and {len(items) - MAX_ITEMS} more")


def digest_text(
    events: Sequence[Event],
    graph: TaskGraph,
    *,
    since: datetime,
    until: datetime,
    batched: Sequence[Message] = (),
    day: str = "",
    tz: tzinfo | None = None,
) -> str:
    """The digest for the window (pure: events, the graph and the batched messages in, text out).

    With ``tz`` the text says which window it covers, in that zone's wall-clock time."""
    window = [e for e in events if since <= e.ts <= until]
    merged = [e for e in window if e.type == "merged"]
    escalated = [e for e in window if e.type == "escalated"]
    history = read_history(window, graph, since=since, until=until)
    overall = group_stats(history, lambda _r: "all")
    lines = [f"agentos daily digest {day}".rstrip()]
    if tz is not None:
        lines.append(f"{since.astimezone(tz):%Y-%m-%d %H:%M} to {until.astimezone(tz):%Y-%m-%d %H:%M} {_zone_name(tz)}")
    lines.append("")
    lines.append(f"Merged ({len(merged)}):")
    _listed(lines, [f"• {e.task} PR #{e.data.get('pr')}: {_title(graph, e.task)}" for e in merged] or ["  none"])
    lines.append(f"Escalated ({len(escalated)}):")
    _listed(
        lines,
        [f"• {e.task} ({e.data.get('blocker') or '?'}): {_title(graph, e.task)}" for e in escalated] or ["  none"],
    )
    running = [t for t in graph if t.status in (TaskStatus.RUNNING, TaskStatus.VALIDATING)]
    waiting = [t for t in graph if t.status is TaskStatus.PR_OPEN]
    queued = sum(1 for t in graph if t.status in (TaskStatus.QUEUED, TaskStatus.RETRYING))
    lines.append(f"Running now: {len(running)}; PRs waiting: {len(waiting)}; queued: {queued}")
    _listed(lines, [f"• PR {t.repo}#{t.pr}: {t.title}" for t in _oldest(waiting)])
    if overall:
        g = overall[0]
        rate = "-" if g.success_rate is None else f"{g.success_rate:.0%}"
        lines.append(f"Attempts: {g.attempts} (success {rate}); tokens {g.tokens}; cost ${g.cost_usd:.2f}")
        if g.top_blockers:
            lines.append("Top blockers: " + ", ".join(f"{code} ×{n}" for code, n in g.top_blockers))
    incident = last_event(window, "incident_reported")
    if incident is not None:
        d = incident.data
        lines.append(
            f"Top incident: {d.get('blocker')} ×{d.get('count')} ({d.get('text')}), {d.get('repo')}#{d.get('issue')}"
        )
    if batched:
        lines += ["", f"Notifications ({len(batched)}):"]
        _listed(lines, [f"• {m.text.strip().splitlines()[0] if m.text.strip() else m.key}" for m in batched])
    return redact("\n".join(lines))


def _zone_name(tz: tzinfo) -> str:
    key = getattr(tz, "key", None)  # a ZoneInfo's IANA name
    return key if isinstance(key, str) else str(tz)


def window(now: datetime, hours: float, tz: tzinfo) -> tuple[datetime, str]:
    """``(since, date)`` of the digest sent at ``now``: ``hours`` earlier on ``tz``'s wall clock, and the local date.

    Wall-clock arithmetic (an aware ``ZoneInfo`` datetime minus a timedelta keeps the time of day), so the
    digest at 08:00 always starts at 08:00 the day before, whatever DST did in between.
    """
    local = now.astimezone(tz)
    since = (local - timedelta(hours=hours)).astimezone(UTC)
    return since, local.date().isoformat()


def _oldest(tasks: list[Task]) -> list[Task]:
    return sorted(tasks, key=lambda t: t.updated_at)


class DigestNotify(Notify, Protocol):
    """The notifier, which also keeps the sev3 notices for the digest."""

    def drain_digest(self) -> list[Message]: ...


class DailyDigest:
    """The ``daily_digest`` job (08:00 local): one digest per local date.

    ``tz`` fixes the zone (tests); by default it is the config's ``timezone``, read at each run so a reload
    that changes it applies to the next digest. With no ``notify`` the digest is only journalled."""

    def __init__(
        self,
        *,
        settings: Settings,
        journal: Journal,
        clock: Clock,
        graph: TaskGraph,
        store: EventHistory,
        notify: DigestNotify | None,
        loop_settings: LoopSettings | None = None,
        tz: tzinfo | None = None,
    ) -> None:
        self._settings = settings
        self._journal = journal
        self._clock = clock
        self._graph = graph
        self._store = store
        self._notify = notify
        self._loop_settings = loop_settings
        self.tz = tz
        self.sent = 0

    def __repr__(self) -> str:
        return f"<DailyDigest sent={self.sent}>"

    async def tick(self) -> None:
        s = settings_for(self._settings, self._loop_settings)
        now = self._clock()
        zone = self.tz or self._settings.config.zone
        since, day = window(now, s.digest_window_hours, zone)
        events = await read_events(self._store, min(since, now - timedelta(days=2)))
        if last_event(events, "digest_sent", date=day) is not None:
            return
        batched = self._notify.drain_digest() if self._notify is not None else []
        text = digest_text(events, self._graph, since=since, until=now, batched=batched, day=day, tz=zone)
        merged = sum(1 for e in events if e.type == "merged" and e.ts >= since)
        escalated = sum(1 for e in events if e.type == "escalated" and e.ts >= since)
        self._journal.record(
            "digest_sent", None, date=day, merged=merged, escalated=escalated, batched=len(batched), text=text
        )
        self.sent += 1
        if self._notify is not None:
            self._notify.notify(2, f"digest:{day}", text)
        log.info("digest_sent", date=day, merged=merged, escalated=escalated, batched=len(batched))
