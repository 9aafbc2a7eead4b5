"""Outcome attribution, the pure part: a metric's number, a before/after verdict, and the score per objective.

The ``outcome_check`` job (:mod:`agentos.jobs.outcome_check`) reads each ``objectives.yaml`` metric when a task
merges (the baseline) and again ``loops.measurement_window_days`` later, and journals ``outcome_measured`` with
the verdict :func:`classify` gives. Everything here is a function of its arguments: no clock, no file.

A number's verdict is deterministic::

    before or after missing / not a number ─────────────────────────► inconclusive
    |after − before| ≤ loops.outcome_noise_pct % of |before| ───────► unchanged
    moved the metric's way (up or down) ────────────────────────────► improved
    moved the other way ────────────────────────────────────────────► regressed

A ``kind: prose`` metric reads text (:func:`prose_text`: redacted, cut to :data:`PROSE_CHARS`); its verdict is
``loops.llm_agent``'s (:mod:`agentos.jobs._prose_judge`), or ``unchanged`` for the same text and ``inconclusive``
without a text or an answer.

The score of an objective (a metric of one repo) over the measured merges is ``(improved − regressed) /
(improved + unchanged + regressed)``, from −1 to 1; inconclusive measurements are counted but not scored.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from agentos.graph import Event
from agentos.jsonpointer import MISSING, json_at
from agentos.redact import redact

__all__ = [
    "PROSE_CHARS",
    "VERDICTS",
    "ObjectiveScore",
    "OutcomeVerdict",
    "classify",
    "number_of",
    "objectives_problems",
    "outcome_lines",
    "parse_number",
    "prose_text",
    "score_objectives",
]

OutcomeVerdict = Literal["improved", "unchanged", "regressed", "inconclusive"]
VERDICTS: tuple[OutcomeVerdict, ...] = ("improved", "unchanged", "regressed", "inconclusive")
PROSE_CHARS = 4096
"""How much of a prose metric's text is kept, journalled and shown to the LLM."""


def number_of(value: Any) -> float | None:
    """``value`` as a finite number: an int or float (not a bool), or a string that reads as one; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        text = value.strip().removesuffix("%").strip().replace(",", "")
        try:
            number = float(text)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def parse_number(text: str, pointer: str | None = None) -> float | None:
    """The number a command printed or a file holds: its last non-empty line (``87.5``, ``87.5%``), or with
    ``pointer`` the value at that JSON pointer of the text read as JSON. None when there is no number."""
    if pointer is not None:
        try:
            document = json.loads(text)
        except ValueError:
            return None
        return number_of(json_value(document, pointer))
    lines = [line for line in text.splitlines() if line.strip()]
    return number_of(lines[-1]) if lines else None


def json_value(document: Any, pointer: str) -> Any:
    """The value at an RFC 6901 pointer (``/a/0/b``, ``""`` for the whole document); None when there is none."""
    value = json_at(document, pointer)
    return None if value is MISSING else value


def prose_text(text: str, pointer: str | None = None, *, keep_end: bool = False) -> str | None:
    """A prose metric's reading: ``text`` (or the value at ``pointer`` of it read as JSON; not a string: as JSON),
    stripped, redacted, then cut to :data:`PROSE_CHARS` keeping its end (``keep_end``: a command's output) or its
    start (a file, a page). None when nothing is left."""
    if pointer is not None:
        try:
            value = json_value(json.loads(text), pointer)
        except ValueError:
            return None
        if value is None:
            return None
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = redact(text.strip())
    if len(text) > PROSE_CHARS:
        text = "…" + text[1 - PROSE_CHARS :] if keep_end else text[: PROSE_CHARS - 1] + "…"
    return text or None


def classify(
    before: float | None, after: float | None, direction: Literal["up", "down"] | str, noise_pct: float
) -> tuple[OutcomeVerdict, float | None]:
    """The verdict of one metric's before/after readings, and the change in percent of ``before`` (None when it
    cannot be said: a missing reading, or a change from 0)."""
    if before is None or after is None:
        return "inconclusive", None
    change = after - before
    pct = None if before == 0 else round(100.0 * change / abs(before), 2)
    if abs(change) <= abs(before) * noise_pct / 100.0:
        return "unchanged", pct
    better = change > 0 if direction == "up" else change < 0
    return ("improved" if better else "regressed"), pct


@dataclass(frozen=True)
class ObjectiveScore:
    """One objective (a metric of a repo) over the measured merges: how many of each verdict, and the last one."""

    repo: str
    metric: str
    direction: str
    weight: float
    counts: dict[str, int]
    last: dict[str, Any]

    @property
    def score(self) -> float | None:
        """(improved − regressed) / scored merges, −1 … 1; None when nothing was conclusive."""
        scored = self.counts["improved"] + self.counts["unchanged"] + self.counts["regressed"]
        return None if scored == 0 else (self.counts["improved"] - self.counts["regressed"]) / scored

    def as_dict(self) -> dict[str, Any]:
        return {
            "repo": self.repo,
            "metric": self.metric,
            "direction": self.direction,
            "weight": self.weight,
            **self.counts,
            "score": self.score,
            "last": self.last,
        }


def score_objectives(events: Iterable[Event], repo: str | None = None) -> list[ObjectiveScore]:
    """One :class:`ObjectiveScore` per (repo, metric) of the ``outcome_measured`` events (of ``repo`` when given),
    sorted by repo and metric; ``last`` is the newest measurement."""
    measured = sorted((e for e in events if e.type == "outcome_measured"), key=lambda e: e.ts)
    groups: dict[tuple[str, str], list[Event]] = {}
    for event in measured:
        key = (str(event.data.get("repo") or ""), str(event.data.get("metric") or ""))
        if repo is None or key[0] == repo:
            groups.setdefault(key, []).append(event)
    scores = []
    for (name, metric), group in sorted(groups.items()):
        counts: dict[str, int] = dict.fromkeys(VERDICTS, 0)
        for event in group:
            verdict = str(event.data.get("verdict"))
            counts[verdict if verdict in counts else "inconclusive"] += 1
        last = group[-1]
        scores.append(
            ObjectiveScore(
                repo=name,
                metric=metric,
                direction=str(last.data.get("direction") or ""),
                weight=float(last.data.get("weight") or 1.0),
                counts=counts,
                last={"task": last.task, "ts": last.ts.isoformat(), **last.data},
            )
        )
    return scores


def objectives_problems(events: Iterable[Event]) -> dict[str, str]:
    """Per repo, the one-line problem of its ``objectives.yaml`` as the newest baseline found it (a repo whose
    newest baseline read the file fine is not listed)."""
    newest: dict[str, Event] = {}
    for event in sorted((e for e in events if e.type == "outcome_baseline"), key=lambda e: e.ts):
        newest[str(event.data.get("repo") or "")] = event
    return {repo: str(e.data["problem"]) for repo, e in sorted(newest.items()) if e.data.get("problem")}


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _num(value: Any) -> str:
    return "?" if value is None else f"{value:g}"


def outcome_lines(scores: Iterable[ObjectiveScore], *, with_repo: bool = True) -> list[str]:
    """One line per objective: ``- app / coverage (up, weight 2): 2 improved, 1 regressed; score +0.33; last
    app#12: 80 → 84 (+5%), improved`` (a prose metric's last: ``app#12: improved (llm: <its reason>)``)."""
    lines = []
    for s in scores:
        counts = ", ".join(f"{n} {v}" for v, n in s.counts.items() if n) or "none"
        score = "-" if s.score is None else f"{s.score:+.2f}"
        last = s.last
        pct = last.get("change_pct")
        change = f" ({pct:+g}%)" if isinstance(pct, int | float) else ""
        where = f"{s.repo} / " if with_repo else ""
        if last.get("kind") == "prose":
            why = str(last.get("reason") or last.get("detail") or "").replace("\n", " ")
            reading = f"{last.get('verdict')} ({last.get('method') or 'rule'}: {_cut(why, 160)})"
        else:
            reading = f"{_num(last.get('before'))} → {_num(last.get('after'))}{change}, {last.get('verdict')}"
        lines.append(
            f"- {where}{s.metric} ({s.direction}, weight {s.weight:g}): {counts}; score {score}; last "
            f"{last.get('task')}: {reading}"
        )
    return lines
