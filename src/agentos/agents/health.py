"""The agent health gate: rolling success per (agent, task type), and which agents a chain skips now.

Pure: the caller passes the tasks (the journal as replayed into the task graph: each attempt's agent, end
time, outcome and blocker, the fields ``attempt_ended`` journals), the clock's ``now`` and the
``routing.health_gate`` settings; :class:`agentos.agents.pool.AgentPool` applies the answer::

    tasks ──► health_table(now) ──► {(agent, type): AgentHealth(week, day, reason)}
    chain ──► gate_chain(chain, type, table) ──► Gate(usable, skipped, opened)

An attempt counts when it ended (not ``running``, not ``interrupted``: a restart, a shutdown or an operator's
cancel is nobody's fault) and its blocker is not transient (:data:`TRANSIENT_BLOCKERS`: a usage limit, the
machine or the runner failing says nothing about the agent's work). It succeeded when its outcome is
``complete`` (a complete attempt whose hand-off failed, red tests or no diff, ended ``failed``).

An agent is gated for a task type when its last 7 days are at or under ``week_max_rate`` over at least
``week_min_attempts`` counted attempts, or its last 24 hours at or under ``day_max_rate`` over at least
``day_min_attempts``. When every agent of a chain is gated, none is: the gate *opens* (fail-open) and the
caller says so.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from agentos.config import HealthGate
from agentos.graph import Attempt, Task

__all__ = [
    "DAY",
    "TRANSIENT_BLOCKERS",
    "WEEK",
    "AgentHealth",
    "Gate",
    "Window",
    "assess",
    "counted",
    "gate_chain",
    "health_table",
]

WEEK = timedelta(days=7)
DAY = timedelta(hours=24)

TRANSIENT_BLOCKERS = frozenset(
    {
        "quota_limited",
        "environment_failure",
        "runner_lost",
        "no_ray_node",
        "interrupted",
        "cancelled",
        "closed",
        "wontfix",
    }
)
"""Blockers that say nothing about the agent's work (a usage limit, the machine, the runner, an operator)."""


def counted(attempt: Attempt) -> bool:
    """True when the attempt counts toward its agent's health (ended, and not for a transient reason)."""
    if attempt.outcome in ("running", "interrupted") or attempt.ended_at is None:
        return False
    return attempt.blocker_code not in TRANSIENT_BLOCKERS


@dataclass(frozen=True, slots=True)
class Window:
    """Counted attempts and successes in one window."""

    attempts: int = 0
    successes: int = 0

    @property
    def rate(self) -> float | None:
        return self.successes / self.attempts if self.attempts else None

    def describe(self) -> str:
        """``1/4 (25%)``, or ``no attempts``."""
        rate = self.rate
        return "no attempts" if rate is None else f"{self.successes}/{self.attempts} ({rate:.0%})"


@dataclass(frozen=True, slots=True)
class AgentHealth:
    """One agent's recent success at one task type, and why it is gated (None: it is not)."""

    agent: str
    type: str
    week: Window
    day: Window
    reason: str | None = None

    @property
    def gated(self) -> bool:
        return self.reason is not None

    def figures(self) -> dict[str, Any]:
        """The figures an ``agent_gated`` event and ``ctl agents`` carry."""
        return {
            "agent": self.agent,
            "type": self.type,
            "week_attempts": self.week.attempts,
            "week_successes": self.week.successes,
            "day_attempts": self.day.attempts,
            "day_successes": self.day.successes,
            "reason": self.reason,
        }


def assess(week: Window, day: Window, gate: HealthGate) -> str | None:
    """Why an agent with these figures is gated, or None when it is not."""
    if week.attempts >= gate.week_min_attempts and (week.rate or 0.0) <= gate.week_max_rate:
        return (
            f"last 7 days {week.describe()} succeeded: at or under {gate.week_max_rate:.0%} "
            f"over {gate.week_min_attempts}+ attempts"
        )
    if day.attempts >= gate.day_min_attempts and (day.rate or 0.0) <= gate.day_max_rate:
        return (
            f"last 24 h {day.describe()} succeeded: at or under {gate.day_max_rate:.0%} "
            f"over {gate.day_min_attempts}+ attempts"
        )
    return None


def health_table(tasks: Iterable[Task], now: datetime, gate: HealthGate) -> dict[tuple[str, str], AgentHealth]:
    """Every (agent, task type) with a counted attempt that ended in the last 7 days, with its verdict."""
    week_start, day_start = now - WEEK, now - DAY
    counts: dict[tuple[str, str], list[int]] = {}  # (agent, type) → [week attempts, successes, day attempts, successes]
    for task in tasks:
        if task.updated_at < week_start:  # ending an attempt updates its task: nothing of this one is recent
            continue
        for attempt in task.attempts:
            ended = attempt.ended_at
            if ended is None or ended < week_start or ended > now or not counted(attempt):
                continue
            key: tuple[str, str] = (attempt.agent, task.type)
            row = counts.get(key)
            if row is None:
                row = counts[key] = [0, 0, 0, 0]
            success = int(attempt.outcome == "complete")
            row[0] += 1
            row[1] += success
            if ended >= day_start:
                row[2] += 1
                row[3] += success
    table: dict[tuple[str, str], AgentHealth] = {}
    for key, (week_n, week_ok, day_n, day_ok) in sorted(counts.items()):
        week, day = Window(week_n, week_ok), Window(day_n, day_ok)
        table[key] = AgentHealth(key[0], key[1], week, day, assess(week, day, gate))
    return table


@dataclass(frozen=True, slots=True)
class Gate:
    """What the gate did to one chain: the agents left, the ones skipped, and whether it opened."""

    usable: list[str]
    skipped: list[AgentHealth]
    opened: bool = False
    """Every agent would have been skipped: none is (``skipped`` holds them all, ``usable`` is the chain)."""


def gate_chain(chain: Sequence[str], task_type: str, table: dict[tuple[str, str], AgentHealth]) -> Gate:
    """The chain without the agents gated for ``task_type``; the whole chain when that would leave none."""
    skipped = [h for a in chain if (h := table.get((a, task_type))) is not None and h.gated]
    if not skipped:
        return Gate(list(chain), [])
    usable = [a for a in chain if all(h.agent != a for h in skipped)]
    if not usable:
        return Gate(list(chain), skipped, opened=True)
    return Gate(usable, skipped)
