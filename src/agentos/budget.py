"""Budgets: token and cost ceilings per issue, and per agent per day and per month.

The figures come from the attempts the graph recorded (what each CLI reported), never from estimates:

    attempts ──► Spend (tokens, $, attempts, not measured) ──► issue ceiling   → escalate, no more retries
                                                          └──► agent period   → warn once · pause until the next one

Days and months begin at midnight in the config's top-level ``timezone`` (``Config.zone``).
Everything here is pure (explicit ``now`` and time zone): :class:`agentos.agents.pool.AgentPool` applies the
verdicts to the daemon state (a pause in ``paused_agents``, the same one a usage limit sets; a persisted "sent"
marker so a warning goes out once per agent and period; a journal event and a notice).

An attempt whose CLI reported no cost (Codex, Gemini, ``command`` agents) counts toward token limits with the
tokens it reported, toward cost limits not at all, and is counted as "not measured" wherever figures are shown.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from agentos.config import AgentConfig, Limits
from agentos.graph import Attempt, Task

BUDGET_CODE = "budget_exceeded"
"""The blocker an issue over its token or cost ceiling is escalated with."""
Period = Literal["day", "month"]


@dataclass(frozen=True, slots=True)
class Spend:
    """What some attempts consumed, as their CLIs reported it."""

    tokens: int = 0
    cost_usd: float = 0.0
    attempts: int = 0
    unmeasured: int = 0  # attempts whose CLI ran but reported no cost
    untokened: int = 0  # attempts whose CLI ran but reported no tokens

    def __add__(self, other: Spend) -> Spend:
        return Spend(
            self.tokens + other.tokens,
            self.cost_usd + other.cost_usd,
            self.attempts + other.attempts,
            self.unmeasured + other.unmeasured,
            self.untokened + other.untokened,
        )

    def describe(self) -> str:
        """``123,456 tokens / $4.20 over 3 attempts (1 not measured)``; a figure no attempt reported is said so."""
        measured = self.attempts - self.unmeasured
        tokens = (
            "tokens not measured" if self.attempts and self.untokened == self.attempts else f"{self.tokens:,} tokens"
        )
        cost = "cost not measured" if self.attempts and not measured else f"${self.cost_usd:,.2f}"
        plural = "" if self.attempts == 1 else "s"
        text = f"{tokens} / {cost} over {self.attempts} attempt{plural}"
        if self.unmeasured and measured:
            text += f" ({self.unmeasured} with no cost reported: not measured)"
        return text


def attempt_spend(attempt: Attempt) -> Spend:
    """One attempt's figures; an attempt still running has none yet."""
    if attempt.outcome == "running" and attempt.cost_reported is None:
        return Spend()
    return Spend(
        tokens=attempt.tokens_in + attempt.tokens_out,
        cost_usd=attempt.cost_usd,
        attempts=1,
        unmeasured=1 if attempt.cost_reported is False else 0,
        untokened=1 if attempt.tokens_reported is False else 0,
    )


def issue_spend(tasks: Iterable[Task]) -> Spend:
    """Every attempt of every generation of one issue (pass ``graph.for_issue(repo, number)``)."""
    total = Spend()
    for task in tasks:
        for attempt in task.attempts:
            total += attempt_spend(attempt)
    return total


def reached(spend: Spend, *, max_tokens: int | None, max_usd: float | None) -> list[str]:
    """The limits ``spend`` has reached, as text (``["100,000 tokens"]``); empty when it is within them."""
    hit = []
    if max_tokens is not None and spend.tokens >= max_tokens:
        hit.append(f"{max_tokens:,} tokens")
    if max_usd is not None and spend.cost_usd >= max_usd:
        hit.append(f"${max_usd:,.2f}")
    return hit


def issue_breach(tasks: Iterable[Task], limits: Limits) -> str | None:
    """``spent 123,456 tokens / $4.20 over 3 attempts; limit 100,000 tokens`` when the issue is over a
    ceiling (``limits.max_task_tokens``, ``limits.max_task_cost_usd``), else None."""
    if limits.max_task_tokens is None and limits.max_task_cost_usd is None:
        return None
    spend = issue_spend(tasks)
    hit = reached(spend, max_tokens=limits.max_task_tokens, max_usd=limits.max_task_cost_usd)
    return f"spent {spend.describe()}; limit {' and '.join(hit)}" if hit else None


# ---------------------------------------------------------------- per agent and period


def period_bounds(now: datetime, zone: ZoneInfo, period: Period) -> tuple[datetime, datetime, str]:
    """``(start, end, label)`` of the day or month around ``now`` in ``zone``; start and end in UTC."""
    local = now.astimezone(zone)
    if period == "day":
        start = local.replace(hour=0, minute=0, second=0, microsecond=0)
        nxt = start + timedelta(days=1)  # wall-clock arithmetic: midnight to midnight, DST or not
        label = f"{start:%Y-%m-%d}"
    else:
        start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        nxt = (start + timedelta(days=32)).replace(day=1)
        label = f"{start:%Y-%m}"
    # Rebuild from the wall-clock fields so the zone's offset is the one in force at that moment.
    start = datetime(start.year, start.month, start.day, tzinfo=zone)
    nxt = datetime(nxt.year, nxt.month, nxt.day, tzinfo=zone)
    return start.astimezone(UTC), nxt.astimezone(UTC), label


def agent_spend(tasks: Iterable[Task], start: datetime, end: datetime) -> dict[str, Spend]:
    """Per agent, the attempts that ended (or, still being recorded, started) in ``[start, end)``."""
    out: dict[str, Spend] = {}
    for task in tasks:
        for attempt in task.attempts:
            at = attempt.ended_at or attempt.started_at
            if start <= at < end:
                out[attempt.agent] = out.get(attempt.agent, Spend()) + attempt_spend(attempt)
    return out


Pair = tuple[int | None, float | None]  # (tokens, usd); None: no limit of that kind


@dataclass(frozen=True, slots=True)
class AgentVerdict:
    """One agent's standing in one period: the soft limits it reached (warn) and the hard ones (stop)."""

    agent: str
    period: Period
    label: str  # 2025-01 or 2025-01-31
    until: datetime  # the period's end (UTC): when a stopped agent may run again
    spend: Spend
    warn: list[str] = field(default_factory=list)
    stop: list[str] = field(default_factory=list)
    hard: Pair = (None, None)  # the period's hard limits (tokens, usd) the verdict was made against

    @property
    def warn_key(self) -> str:
        return f"budget:warn:{self.agent}:{self.label}"

    @property
    def stop_key(self) -> str:
        return f"budget:stop:{self.agent}:{self.label}"

    @property
    def lift_key(self) -> str:
        """An operator lifted this breach by hand: it holds for the period while the hard limits stay these."""
        return f"budget:lift:{self.agent}:{self.label}:{self.hard[0]}:{self.hard[1]}"


def _limits(cfg: AgentConfig) -> dict[Period, tuple[Pair, Pair]]:
    """Per period with a limit: the soft (warn) and the hard (stop) ``(tokens, usd)``."""
    out: dict[Period, tuple[Pair, Pair]] = {}
    if cfg.max_cost_usd_per_day is not None:
        out["day"] = ((None, None), (None, cfg.max_cost_usd_per_day))
    soft: Pair = (cfg.monthly_warn_tokens, cfg.monthly_warn_usd)
    hard: Pair = (cfg.monthly_max_tokens, cfg.monthly_max_usd)
    if soft != (None, None) or hard != (None, None):
        out["month"] = (soft, hard)
    return out


def has_agent_limits(agents: Mapping[str, AgentConfig]) -> bool:
    return any(_limits(cfg) for cfg in agents.values())


def agent_verdicts(
    tasks: Iterable[Task],
    agents: Mapping[str, AgentConfig],
    now: datetime,
    zone: ZoneInfo,
    *,
    also: Iterable[str] = (),
) -> list[AgentVerdict]:
    """One verdict per agent and period with a limit, in config order, days before months.

    Agents named in ``also`` (the paused ones) get a verdict for both periods even without a limit, or without
    a config (removed while paused, last), so a pause whose limit was removed from the config is seen to be over.
    """
    task_list = list(tasks)
    extra = set(also)
    spent: dict[Period, tuple[datetime, str, dict[str, Spend]]] = {}
    verdicts = []
    gone: list[tuple[str, AgentConfig | None]] = [(name, None) for name in dict.fromkeys(also) if name not in agents]
    for name, cfg in [*agents.items(), *gone]:
        limits = _limits(cfg) if cfg is not None else {}
        periods: list[Period] = ["day", "month"] if name in extra else sorted(limits)
        for period in periods:
            (warn_tokens, warn_usd), (stop_tokens, stop_usd) = limits.get(period, ((None, None), (None, None)))
            if period not in spent:
                start, end, label = period_bounds(now, zone, period)
                spent[period] = (end, label, agent_spend(task_list, start, end))
            end, label, by_agent = spent[period]
            spend = by_agent.get(name, Spend())
            warn = reached(spend, max_tokens=warn_tokens, max_usd=warn_usd)
            stop = reached(spend, max_tokens=stop_tokens, max_usd=stop_usd)
            hard = (stop_tokens, stop_usd)
            verdicts.append(AgentVerdict(name, period, label, end, spend, warn=warn, stop=stop, hard=hard))
    return verdicts


# ---------------------------------------------------------------- wording


def period_word(v: AgentVerdict) -> str:
    """``daily`` or ``monthly``."""
    return "daily" if v.period == "day" else "monthly"


def verdict_figures(v: AgentVerdict, hit: list[str]) -> str:
    """``spent 1,000 tokens / $6.00 over 1 attempt in 2025-03; limit $5.00``."""
    return f"spent {v.spend.describe()} in {v.label}; limit {' and '.join(hit)}"


def local_time(moment: datetime, zone: ZoneInfo) -> str:
    """``2025-04-01 00:00 Europe/Berlin``."""
    return f"{moment.astimezone(zone):%Y-%m-%d %H:%M} {zone.key}"


# ---------------------------------------------------------------- paused agents: why, and lifting by hand


@dataclass(frozen=True, slots=True)
class AgentPause:
    """Why an agent is paused now, and the budget breaches (if any) a lift by hand would waive."""

    agent: str
    until: datetime
    why: str
    breaches: list[AgentVerdict] = field(default_factory=list)


def describe_pause(
    agent: str, until: datetime, verdicts: Iterable[AgentVerdict], notified: Iterable[str], zone: ZoneInfo
) -> AgentPause:
    """Name the cause of ``agent``'s pause until ``until``: a daily or monthly budget, else a usage limit.

    ``paused_agents`` keeps only the end of a pause; a budget pause ends exactly when its period does and its
    stop notice is on record, so that is how it is told from a usage limit (the CLI's reset time or the
    agent's ``cooldown_minutes``).
    """
    sent = set(notified)
    mine = [v for v in verdicts if v.agent == agent]
    breaches = [v for v in mine if v.stop]
    for v in mine:
        if v.until == until and v.stop_key in sent:
            why = (
                f"{period_word(v)} budget: {verdict_figures(v, v.stop)}"
                if v.stop
                else f"{period_word(v)} budget (no longer over it: lifted at the next dispatch)"
            )
            return AgentPause(agent, until, why, breaches)
    return AgentPause(agent, until, f"usage limit reported by the CLI (until {local_time(until, zone)})", breaches)


def limits_text(cfg: AgentConfig) -> str:
    """``month: warn $5.00, max $10.00 · day: max $3.00``; ``none`` for an agent without limits."""
    parts = []
    month = [
        f"{kind} {value}"
        for kind, value in (
            ("warn", _pair(cfg.monthly_warn_tokens, cfg.monthly_warn_usd)),
            ("max", _pair(cfg.monthly_max_tokens, cfg.monthly_max_usd)),
        )
        if value
    ]
    if month:
        parts.append("month: " + ", ".join(month))
    if cfg.max_cost_usd_per_day is not None:
        parts.append(f"day: max ${cfg.max_cost_usd_per_day:,.2f}")
    return " · ".join(parts) or "none"


def _pair(tokens: int | None, usd: float | None) -> str:
    shown = ([f"{tokens:,} tokens"] if tokens is not None else []) + ([f"${usd:,.2f}"] if usd is not None else [])
    return " / ".join(shown)


# ---------------------------------------------------------------- display


def cost_cell(cost_usd: float, reported: bool | None) -> str:
    """An attempt's cost for a table: ``$0.09``, ``not measured`` when the CLI reported none, blank for nothing."""
    if reported is False:
        return "not measured"
    return f"${cost_usd:.2f}" if cost_usd else ""


def task_cost_cell(cost_usd: float, unmeasured: int) -> str:
    """A task's cost for a table: ``$0.18``, ``$0.18 +1 not measured``, or ``not measured``."""
    if not unmeasured:
        return f"${cost_usd:.2f}" if cost_usd else ""
    return f"${cost_usd:.2f} +{unmeasured} not measured" if cost_usd else "not measured"
