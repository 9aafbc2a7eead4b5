"""``agentos stats [--since 7d] [--json]``: success, cost and blockers per agent, task type and repo.

Reads the state directory read-only (a load without the lock, plus the rotated history), so it works
while the daemon runs; log lines go to stderr so ``--json`` stays parseable. Register with
``app.command("stats")(stats_command)``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from agentos.cli._common import ConfigOption, JsonOption, console, fail, load, print_json
from agentos.cli.views import StateDirOption, quiet_logs, resolve_state_dir

if TYPE_CHECKING:
    from agentos.ops.metrics import GroupStats

__all__ = ["parse_since", "stats_command"]

_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([mhdw])\s*$", re.IGNORECASE)
_UNIT = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
COLUMNS = ("att", "ok", "mrg", "esc", "esc%", "a/m", "h/m", "tok", "$")
LEGEND = (
    "att attempts · ok success rate · mrg merged · esc escalated · a/m attempts per merged task · "
    "h/m median hours to merge · tok tokens · $ cost (+N: attempts whose CLI reported no cost, not measured)"
)


def parse_since(value: str, now: datetime) -> datetime:
    """``7d``, ``24h``, ``90m``, ``2w`` before ``now``, or an ISO date/datetime (UTC when naive)."""
    match = _SPAN.match(value)
    if match:
        return now - float(match.group(1)) * _UNIT[match.group(2).lower()]
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"--since {value!r}: give a span like 7d, 24h, 90m, 2w or an ISO date") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _cost(g: GroupStats) -> str:
    if g.not_measured and g.not_measured == g.attempts:
        return "not measured"
    return format(g.cost_usd, ".2f") + (f" +{g.not_measured}" if g.not_measured else "")


def _render(groups: list[GroupStats], name: str) -> None:
    """One table per grouping; the key column never wraps (narrow terminals squeeze the figures)."""
    if not groups:
        console.print(f"{name}: (none)", highlight=False, markup=False)
        return
    t = Table(show_edge=False, header_style="bold", pad_edge=False)
    t.add_column(name, no_wrap=True, min_width=min(24, max(len(g.key) for g in groups)))
    for col in COLUMNS:
        t.add_column(col, justify="right", no_wrap=True)
    for g in groups:
        t.add_row(
            g.key,
            str(g.attempts),
            _fmt(g.success_rate, ".0%"),
            str(g.merged),
            str(g.escalated),
            _fmt(g.escalation_rate, ".0%"),
            _fmt(g.attempts_per_merged, ".1f"),
            _fmt(g.median_hours_to_merge, ".1f"),
            str(g.tokens),
            _cost(g),
        )
    console.print(t)


def stats_command(
    since: str = typer.Option("7d", "--since", help="Window: 7d, 24h, 90m, 2w, or an ISO date."),
    as_json: bool = JsonOption,
    config: str | None = ConfigOption,
    state_dir: str | None = StateDirOption,
) -> None:
    """Success rate, attempts per merge, time to merge, escalations, tokens, cost, blockers and measured objectives."""
    from agentos.ops.metrics import summarise
    from agentos.outcomes import objectives_problems, outcome_lines, score_objectives
    from agentos.store import StateError, Store

    cfg, path = load(config)
    quiet_logs()
    now = datetime.now(UTC)
    try:
        start = parse_since(since, now)
    except ValueError as exc:
        fail(str(exc), 2)
    where = resolve_state_dir(cfg, path, state_dir)
    if not where.is_dir():
        fail(f"no state in {where} yet; start the daemon first")
    store = Store(where, fsync=False)
    try:
        graph, _state = store.load()
        events = list(store.iter_events(start))
    except StateError as exc:
        fail(f"cannot read the state in {where}: {exc}")
    except PermissionError as exc:
        fail(f"cannot read the state in {where}: {exc.strerror} (run as the daemon's user, or with sudo)")
    report = summarise(events, graph, since=start, until=now)
    objectives, problems = score_objectives(events), objectives_problems(events)
    if as_json:
        print_json({**report.as_dict(), "outcomes": [o.as_dict() for o in objectives], "objectives_problems": problems})
        return
    console.print(f"agentos stats since {start:%Y-%m-%d %H:%M} UTC ({where})", highlight=False, markup=False)
    for groups, name in (
        ([report.overall], "overall"),
        (report.by_agent, "agent"),
        (report.by_type, "task type"),
        (report.by_repo, "repo"),
    ):
        _render(groups, name)
    console.print(LEGEND, highlight=False, markup=False, style="dim")
    if report.overall.top_blockers:
        top = ", ".join(f"{code} ×{n}" for code, n in report.overall.top_blockers)
        console.print(f"top blockers: {top}", highlight=False, markup=False)
    if objectives:  # outcome attribution: the objectives.yaml metrics measured after merges (docs/loops.md)
        console.print("objectives (measured after merges):", highlight=False, markup=False)
        for line in outcome_lines(objectives):
            console.print(line, highlight=False, markup=False, soft_wrap=True)
    for repo, problem in problems.items():  # one line per repo whose objectives.yaml cannot be used
        console.print(f"{repo}: objectives not measured: {problem}", highlight=False, markup=False, soft_wrap=True)
