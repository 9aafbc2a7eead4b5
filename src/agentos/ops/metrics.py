"""Metrics from the event journal and the task graph: per agent, task type and repo.

Pure: the caller passes the events, the tasks and the window (``since``, ``until``); nothing here reads
a clock or a file. :func:`read_history` turns raw events into three row kinds, and :func:`summarise`
groups them::

    events + tasks ──► History(attempts, failures, finishes) ──► GroupStats per agent / type / repo

Definitions (docs/events.md has the events they come from):

- an **attempt** is an ``attempt_ended`` event, minus ``interrupted`` ones (a daemon restart is nobody's
  fault). A ``complete`` attempt whose validation then failed (a ``transition`` from ``validating`` with a
  ``blocker``) counts as failed with that blocker.
- **success rate** = successful attempts / attempts, not counting ``quota_limited`` ones (a usage limit
  says nothing about the agent's work).
- a **failure** is an attempt that ended with a blocker code, a failed validation, or a PR sent back by
  CI (``transition`` from ``pr_open`` with a ``blocker``). Its error text is the event's, or the graph's
  attempt error when the event has none.
- a **finish** is a ``merged`` or ``escalated`` event; it belongs to the agent of the task's last attempt.
  **Escalation rate** = escalated / (merged + escalated). **Attempts per merged task** uses the ``attempts``
  the ``merged`` event carries. **Time to merge** runs from the ``task_created`` event when it is in the
  events given, else from the task's first attempt.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

from agentos.graph import Attempt, Event, Task

__all__ = [
    "AttemptRow",
    "CheckFlip",
    "Failure",
    "Finish",
    "GroupStats",
    "History",
    "StatsReport",
    "group_stats",
    "read_history",
    "repo_of",
    "summarise",
]

UNKNOWN = "unknown"


def repo_of(task_id: str) -> str:
    """The repo part of a task id (``owner/name#12.2`` → ``owner/name``)."""
    return task_id.rsplit("#", 1)[0] if "#" in task_id else UNKNOWN


@dataclass(frozen=True, slots=True)
class AttemptRow:
    ts: datetime
    task: str
    repo: str
    type: str
    agent: str
    number: int
    outcome: str
    blocker: str | None
    duration_s: float
    tokens: int
    cost_usd: float
    cost_reported: bool | None = None  # False: the CLI reported no cost ("not measured")

    @property
    def succeeded(self) -> bool:
        return self.outcome == "complete"

    @property
    def rated(self) -> bool:
        """Counts toward a success rate (a usage limit does not)."""
        return self.blocker != "quota_limited"


@dataclass(frozen=True, slots=True)
class Failure:
    ts: datetime
    task: str
    repo: str
    type: str
    agent: str
    blocker: str
    error: str
    stage: Literal["attempt", "validation", "ci"]


@dataclass(frozen=True, slots=True)
class Finish:
    ts: datetime
    task: str
    repo: str
    type: str
    agent: str
    kind: Literal["merged", "escalated"]
    attempts: int
    started: datetime | None
    blocker: str | None = None

    @property
    def hours(self) -> float | None:
        return None if self.started is None else (self.ts - self.started).total_seconds() / 3600


@dataclass(frozen=True, slots=True)
class CheckFlip:
    """A PR's checks red, then green, on one head commit: nothing changed but the result (a flaky test)."""

    ts: datetime
    task: str
    repo: str
    sha: str
    signature: str  # the red blocker's (``red:<check names>:<digest>``)


@dataclass(frozen=True, slots=True)
class History:
    attempts: list[AttemptRow]
    failures: list[Failure]
    finishes: list[Finish]
    flips: list[CheckFlip] = field(default_factory=list)


def _attempt_at(task: Task | None, ts: datetime, number: int | None = None) -> Attempt | None:
    """The task's attempt with ``number``, else the last one that started by ``ts``."""
    if task is None:
        return None
    if number is not None:
        return next((a for a in task.attempts if a.number == number), None)
    started = [a for a in task.attempts if a.started_at <= ts]
    return started[-1] if started else None


def read_history(events: Iterable[Event], tasks: Iterable[Task], *, since: datetime, until: datetime) -> History:
    """Attempts, failures and finishes of the events with ``since <= ts <= until``, oldest first."""
    by_id = {t.id: t for t in tasks}
    window = sorted((e for e in events if e.task and since <= e.ts <= until), key=lambda e: e.ts)
    created: dict[str, datetime] = {}
    attempts: list[AttemptRow] = []
    last_row: dict[str, int] = {}
    failures: list[Failure] = []
    finishes: list[Finish] = []
    flips: list[CheckFlip] = []
    red_on: dict[str, tuple[str, str]] = {}  # task → (head sha, signature) of its last red checks
    for ev in window:
        task_id = ev.task or ""
        task = by_id.get(task_id)
        repo = task.repo if task else repo_of(task_id)
        ttype = task.type if task else UNKNOWN
        data = ev.data
        if ev.type == "task_created":
            created.setdefault(task_id, ev.ts)
        elif ev.type == "attempt_ended" and data.get("outcome") != "interrupted":
            number = int(data.get("attempt") or 0)
            agent = str(data.get("agent") or UNKNOWN)
            blocker = data.get("blocker_code") or None
            row = AttemptRow(
                ts=ev.ts,
                task=task_id,
                repo=repo,
                type=ttype,
                agent=agent,
                number=number,
                outcome=str(data.get("outcome") or UNKNOWN),
                blocker=blocker,
                duration_s=float(data.get("duration_s") or 0.0),
                tokens=int(data.get("tokens") or 0),
                cost_usd=float(data.get("cost_usd") or 0.0),
                cost_reported=data.get("cost_reported"),
            )
            last_row[task_id] = len(attempts)
            attempts.append(row)
            if blocker:
                error = str(data.get("error") or "") or _error_of(task, ev.ts, number)
                failures.append(Failure(ev.ts, task_id, repo, ttype, agent, blocker, error, "attempt"))
        elif ev.type == "transition" and data.get("blocker") and data.get("from") in ("validating", "pr_open"):
            blocker = str(data["blocker"])
            index = last_row.get(task_id)
            agent = attempts[index].agent if index is not None else _agent_of(task, ev.ts)
            if data["from"] == "validating" and index is not None and attempts[index].succeeded:
                old = attempts[index]
                attempts[index] = AttemptRow(**{**asdict(old), "outcome": "failed", "blocker": blocker})
            stage: Literal["validation", "ci"] = "validation" if data["from"] == "validating" else "ci"
            failures.append(Failure(ev.ts, task_id, repo, ttype, agent, blocker, _error_of(task, ev.ts), stage))
        elif ev.type == "pr_blocked" and data.get("kind") == "red" and data.get("sha"):
            red_on[task_id] = (str(data["sha"]), str(data.get("signature") or ""))
        elif ev.type == "pr_unblocked" and data.get("sha"):
            red = red_on.pop(task_id, None)
            if red is not None and red[0] == data["sha"]:
                flips.append(CheckFlip(ev.ts, task_id, repo, red[0], red[1]))
        elif ev.type in ("merged", "escalated"):
            index = last_row.get(task_id)
            agent = attempts[index].agent if index is not None else _agent_of(task, ev.ts)
            first = task.attempts[0].started_at if task and task.attempts else None
            count = data.get("attempts")
            finishes.append(
                Finish(
                    ts=ev.ts,
                    task=task_id,
                    repo=repo,
                    type=ttype,
                    agent=agent,
                    kind="merged" if ev.type == "merged" else "escalated",
                    attempts=int(count) if count is not None else (len(task.attempts) if task else 0),
                    started=created.get(task_id, first),
                    blocker=data.get("blocker"),
                )
            )
    return History(attempts, failures, finishes, flips)


def _error_of(task: Task | None, ts: datetime, number: int | None = None) -> str:
    attempt = _attempt_at(task, ts, number)
    return attempt.error if attempt else ""


def _agent_of(task: Task | None, ts: datetime) -> str:
    attempt = _attempt_at(task, ts)
    return attempt.agent if attempt else UNKNOWN


@dataclass(frozen=True, slots=True)
class GroupStats:
    """The figures of one group (an agent, a task type, a repo, a pair, or everything)."""

    key: str
    attempts: int
    successes: int
    success_rate: float | None
    tasks: int
    merged: int
    escalated: int
    escalation_rate: float | None
    attempts_per_merged: float | None
    median_hours_to_merge: float | None
    tokens: int
    cost_usd: float
    top_blockers: tuple[tuple[str, int], ...]
    not_measured: int = 0  # attempts whose CLI reported no cost: not in cost_usd

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["top_blockers"] = [{"code": c, "count": n} for c, n in self.top_blockers]
        return out


def _ratio(num: float, den: float) -> float | None:
    return None if den == 0 else num / den


def group_stats(
    history: History, key: Callable[[AttemptRow | Failure | Finish], str], *, top: int = 3
) -> list[GroupStats]:
    """One :class:`GroupStats` per distinct ``key`` of the rows, sorted by key."""
    groups: dict[str, tuple[list[AttemptRow], list[Failure], list[Finish]]] = defaultdict(lambda: ([], [], []))
    for row in history.attempts:
        groups[key(row)][0].append(row)
    for fail in history.failures:
        groups[key(fail)][1].append(fail)
    for fin in history.finishes:
        groups[key(fin)][2].append(fin)
    return [_stats(name, *groups[name], top=top) for name in sorted(groups)]


def _stats(
    name: str, rows: Sequence[AttemptRow], fails: Sequence[Failure], fins: Sequence[Finish], *, top: int
) -> GroupStats:
    rated = [r for r in rows if r.rated]
    successes = sum(1 for r in rows if r.succeeded)
    merged = [f for f in fins if f.kind == "merged"]
    escalated = [f for f in fins if f.kind == "escalated"]
    hours = [h for f in merged if (h := f.hours) is not None]
    blockers = Counter(f.blocker for f in fails)
    return GroupStats(
        key=name,
        attempts=len(rows),
        successes=successes,
        success_rate=_ratio(sum(1 for r in rated if r.succeeded), len(rated)),
        tasks=len({r.task for r in rows} | {f.task for f in fins}),
        merged=len(merged),
        escalated=len(escalated),
        escalation_rate=_ratio(len(escalated), len(merged) + len(escalated)),
        attempts_per_merged=_ratio(sum(f.attempts for f in merged), len(merged)),
        median_hours_to_merge=statistics.median(hours) if hours else None,
        tokens=sum(r.tokens for r in rows),
        cost_usd=round(sum(r.cost_usd for r in rows), 6),
        not_measured=sum(1 for r in rows if r.cost_reported is False),
        top_blockers=tuple(sorted(blockers.items(), key=lambda kv: (-kv[1], kv[0]))[:top]),
    )


@dataclass(frozen=True, slots=True)
class StatsReport:
    since: datetime
    until: datetime
    overall: GroupStats
    by_agent: list[GroupStats]
    by_type: list[GroupStats]
    by_repo: list[GroupStats]

    def as_dict(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "overall": self.overall.as_dict(),
            "by_agent": [g.as_dict() for g in self.by_agent],
            "by_type": [g.as_dict() for g in self.by_type],
            "by_repo": [g.as_dict() for g in self.by_repo],
        }


def summarise(events: Iterable[Event], tasks: Iterable[Task], *, since: datetime, until: datetime) -> StatsReport:
    """The whole report for the window: everything, then per agent, task type and repo."""
    history = read_history(events, tasks, since=since, until=until)
    overall = group_stats(history, lambda _row: "all")
    empty = _stats("all", [], [], [], top=3)
    return StatsReport(
        since=since,
        until=until,
        overall=overall[0] if overall else empty,
        by_agent=group_stats(history, lambda row: row.agent),
        by_type=group_stats(history, lambda row: row.type),
        by_repo=group_stats(history, lambda row: row.repo),
    )
