"""The weekly report's evidence sections (pure): causes, retry storms, week over week, and measured objectives.

:class:`agentos.jobs.analysis.LogAnalyzer` reads two windows of ``analysis_days`` (this week and the one before)
and puts these sections into the report issue:

- **Causes**: failures and escalations of the week counted by blocker code (``test_failure``, ``timeout``, …),
  the most frequent first;
- **Retry storms**: the share of the week's tasks that needed ``STORM_ATTEMPTS`` (3) or more attempts, and the
  worst of them;
- **Week over week**: the main figures (attempts, success rate, merged, escalated, escalation rate, attempts
  per merge, median hours to merge, cost) this week, last week and the change;
- **Objectives**: the ``outcome_measured`` verdicts of the week per objective (:mod:`agentos.outcomes`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from agentos.graph import Event
from agentos.ops.metrics import GroupStats, History, group_stats
from agentos.outcomes import outcome_lines, score_objectives

__all__ = ["STORM_ATTEMPTS", "causes", "retry_storms", "week_over_week", "weekly_sections"]

STORM_ATTEMPTS = 3
"""A task that needed this many attempts or more is part of a retry storm."""


def causes(history: History) -> list[tuple[str, int, int]]:
    """``(blocker code, failures, escalations)`` of the window, most failures and escalations first."""
    failures = Counter(f.blocker for f in history.failures)
    escalations = Counter(f.blocker or "unknown" for f in history.finishes if f.kind == "escalated")
    codes = set(failures) | set(escalations)
    return sorted(
        ((code, failures[code], escalations[code]) for code in codes), key=lambda row: (-row[1] - row[2], row[0])
    )


def retry_storms(history: History, *, at_least: int = STORM_ATTEMPTS) -> tuple[int, int, list[tuple[str, int]]]:
    """``(tasks with ≥ at_least attempts, tasks with an attempt, [(task, attempts)] worst first)``; a task's
    attempts are the highest attempt number it reached in the window."""
    reached: dict[str, int] = {}
    for row in history.attempts:
        reached[row.task] = max(reached.get(row.task, 0), row.number, 1)
    storms = sorted(((t, n) for t, n in reached.items() if n >= at_least), key=lambda tn: (-tn[1], tn[0]))
    return len(storms), len(reached), storms


def _overall(history: History) -> GroupStats | None:
    groups = group_stats(history, lambda _row: "all")
    return groups[0] if groups else None


def _fmt(value: float | None, kind: str) -> str:
    if value is None:
        return "-"
    return {"pct": f"{value:.0%}", "num": f"{value:g}", "one": f"{value:.1f}", "usd": f"${value:.2f}"}[kind]


def _delta(now: float | None, before: float | None, kind: str) -> str:
    if now is None or before is None:
        return "-"
    diff = now - before
    if kind == "pct":
        return f"{diff * 100:+.0f} pts"
    return {"num": f"{diff:+g}", "one": f"{diff:+.1f}", "usd": f"{diff:+.2f}"}[kind]


def week_over_week(this: History, last: History) -> list[tuple[str, str, str, str]]:
    """``(figure, this week, last week, change)`` for the main figures."""
    now, before = _overall(this), _overall(last)
    figures: list[tuple[str, str, str]] = [
        ("attempts", "attempts", "num"),
        ("success rate", "success_rate", "pct"),
        ("merged", "merged", "num"),
        ("escalated", "escalated", "num"),
        ("escalation rate", "escalation_rate", "pct"),
        ("attempts per merge", "attempts_per_merged", "one"),
        ("median hours to merge", "median_hours_to_merge", "one"),
        ("cost", "cost_usd", "usd"),
    ]
    rows = []
    for label, attr, kind in figures:
        a = getattr(now, attr) if now is not None else (0 if kind == "num" else None)
        b = getattr(before, attr) if before is not None else (0 if kind == "num" else None)
        rows.append((label, _fmt(a, kind), _fmt(b, kind), _delta(a, b, kind)))
    storm_now, tasks_now, _ = retry_storms(this)
    storm_before, tasks_before, _ = retry_storms(last)
    share_now = storm_now / tasks_now if tasks_now else None
    share_before = storm_before / tasks_before if tasks_before else None
    label = f"tasks needing ≥ {STORM_ATTEMPTS} attempts"
    rows.append((label, _fmt(share_now, "pct"), _fmt(share_before, "pct"), _delta(share_now, share_before, "pct")))
    return rows


def weekly_sections(this: History, last: History, events: Iterable[Event], *, top: int = 8) -> list[str]:
    """The report's markdown lines for the four sections (``events``: this week's, for the objectives)."""
    lines = ["### Week over week", "", "| figure | this week | last week | change |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in week_over_week(this, last)]
    lines += ["", "### Causes (blocker codes)", ""]
    rows = causes(this)
    if rows:
        lines += ["| cause | failures | escalations |", "|---|---|---|"]
        lines += [f"| `{code}` | {fails} | {escs} |" for code, fails, escs in rows[:top]]
    else:
        lines.append("No failures this week.")
    storms, tasks, worst = retry_storms(this)
    lines += ["", "### Retry storms", ""]
    if tasks:
        share = f"{storms / tasks:.0%}"
        lines.append(f"{storms} of {tasks} tasks ({share}) needed {STORM_ATTEMPTS} or more attempts.")
        lines += [f"- `{task}`: {n} attempts" for task, n in worst[:top]]
    else:
        lines.append("No attempts this week.")
    scores = score_objectives(events)
    lines += ["", "### Objectives (outcomes measured this week)", ""]
    lines += outcome_lines(scores) or ["No merge reached its measurement window this week."]
    return [*lines, ""]
