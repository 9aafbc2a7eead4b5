"""How a command's answer reads: short plain text for a chat, tables and key/value lines for a terminal.

Pure functions of the controller's JSON-able answers; no I/O and nothing heavy imported (``agentos ctl``
imports this through :mod:`agentos.control.commands`). Chat text is redacted *before* it is cut
(:func:`one_line`). Terminal answers are :class:`Table` and :class:`KeyValues` views, printed by the CLI.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from agentos.redact import redact

JSON = Mapping[str, Any]


# ---------------------------------------------------------------- chat


def one_line(value: object, default: str = "-", limit: int = 300) -> str:
    """``value`` as one line of at most ``limit`` characters, redacted *before* it is cut.

    A cut first could keep the head of a token too short to still look like one: ``ghp_`` and 15 of its
    characters would then reach the chat, as redacting the whole reply later no longer catches them.
    """
    if value is None or value == "":
        return default
    if isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, list | tuple):
        text = ", ".join(one_line(v, default, limit) for v in value) or default
    elif isinstance(value, Mapping):
        text = ", ".join(f"{k}={one_line(v, default, limit)}" for k, v in value.items()) or default
    else:
        text = str(value)
    text = redact(text)
    text = " ".join(text.split()) if "\n" in text else text
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _when(value: object) -> str:
    """An ISO timestamp shortened to minutes (``2026-11-25 08:00``); anything else as text."""
    text = one_line(value)
    match = re.match(r"(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d)", text)
    return f"{match.group(1)} {match.group(2)}" if match else text


def duration(seconds: object) -> str:
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds != seconds:
        return "?"
    total = int(max(0.0, min(float(seconds), 1e9)))
    days, rem = divmod(total, 86400)
    hours, rem = divmod(rem, 3600)
    minutes = rem // 60
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m"


def chat_status(status: JSON) -> str:
    paused = status.get("paused") is True
    head = "⏸ Paused: no new work starts (/on resumes)" if paused else "▶ Running"
    lines = [
        f"{head} · {_int(status.get('running'))} running · {_int(status.get('queued'))} queued"
        f" · up {duration(status.get('uptime_s'))}"
    ]
    counts = status.get("counts")
    if isinstance(counts, Mapping) and counts:
        lines.append("tasks: " + ", ".join(f"{k} {one_line(v)}" for k, v in counts.items()))
    agents = status.get("paused_agents")
    if isinstance(agents, Mapping) and agents:
        lines.append("paused agents: " + ", ".join(f"{k} until {_when(v)}" for k, v in agents.items()))
    if status.get("state_writes_held"):
        lines.append(f"⚠ state writes held: {one_line(status.get('state_writes_held'))}")
    refused = status.get("repos_refused")
    if isinstance(refused, Mapping):
        lines.extend(f"⚠ repo {one_line(name)} refused: {one_line(why)}" for name, why in refused.items())
    sandbox = str(status.get("sandbox") or "")
    if sandbox and sandbox != "bubblewrap":
        lines.append(f"⚠ sandbox {one_line(sandbox)}")
    return "\n".join(lines)


def chat_agents(agents: Sequence[JSON]) -> str:
    if not agents:
        return "No agents."
    lines = []
    for agent in agents:
        name = one_line(agent.get("agent"), "?")
        if agent.get("paused_until"):
            until = agent.get("paused_until_local") or _when(agent.get("paused_until"))
            lines.append(f"⏸ {name} · paused until {one_line(until)} · /agent resume {name}")
        else:
            lines.append(f"✓ {name}")
        if agent.get("why"):
            lines.append(f"    why: {one_line(agent.get('why'))}")
        month, spend, limits = (one_line(agent.get(k)) for k in ("month", "month_spend", "limits"))
        lines.append(f"    {month}: {spend} · limits {limits}")
        for h in agent.get("health") or []:
            mark = {"skipped": "⛔ skipped", "ok": "ok"}.get(str(h.get("gate")), one_line(h.get("gate")))
            week, day = one_line(h.get("week")), one_line(h.get("day"))
            lines.append(f"    {one_line(h.get('type'))}: 7d {week} · 24h {day} · {mark}")
    return "\n".join(lines)


def chat_jobs(jobs: Sequence[JSON]) -> str:
    if not jobs:
        return "No jobs."
    lines = []
    for job in jobs:
        mark = "✓" if job.get("enabled") is not False else "✗"
        line = (
            f"{mark} {one_line(job.get('name'), '?')} · next {_when(job.get('next_run'))}"
            f" · runs {_int(job.get('runs'))} · failures {_int(job.get('failures'))}"
        )
        if job.get("last_error"):
            line += f"\n    last error: {one_line(job.get('last_error'), limit=160)}"
        lines.append(line)
    return "\n".join(lines)


def chat_plans(plans: Sequence[JSON]) -> str:
    """``/plan``: each repo's pending sprint plan, its picks and deadline."""
    lines = []
    for plan in plans:
        if not plan.get("pending"):
            lines.append(f"{one_line(plan.get('repo'), '?')}: no plan waiting.")
            continue
        lines.append(f"Sprint plan {one_line(plan.get('plan'))} for {one_line(plan.get('repo'))}:")
        for pick in plan.get("picks") or []:
            why = f": {one_line(pick.get('rationale'))}" if pick.get("rationale") else ""
            lines.append(
                f"  #{pick.get('issue')} {one_line(pick.get('title'))} ({one_line(pick.get('priority'))}){why}"
            )
        lines.append(f"  expires {one_line(plan.get('deadline'))} · /plan approve {plan.get('repo')} · /plan skip")
    return "\n".join(lines) or "No repos."


def chat_incidents(incidents: Sequence[JSON]) -> str:
    """``/incidents``: each open incident's signature, count, first and last seen, fix issue, ack."""
    lines = []
    for i in incidents:
        acked = f" · acked by {one_line(i.get('acked_by'))}" if i.get("acked") else ""
        lines.append(
            f"{one_line(i.get('signature'))} · {one_line(i.get('blocker'))} ×{i.get('count')} · "
            f"first {one_line(i.get('first_seen'))[:16]} · last {one_line(i.get('last_seen'))[:16]} · "
            f"fix {one_line(i.get('fix_issue')) or 'none'}{acked}\n  {one_line(i.get('text'))}"
        )
    if not lines:
        return "No open incidents."
    return "\n".join([*lines, "/ack SIG silences one · /resolve SIG closes it"])


def chat_repos(repos: Sequence[JSON]) -> str:
    if not repos:
        return "No repos."
    lines = []
    for repo in repos:
        mark = "✓" if repo.get("enabled") is not False and not repo.get("refused") else "✗"
        cadence = repo.get("cadence_days")
        grooming = f"groom every {one_line(cadence)}d" if cadence else "no grooming cadence"
        lines.append(f"{mark} {one_line(repo.get('name'), '?')} · {one_line(repo.get('mode'))} · {grooming}")
        if repo.get("refused"):
            lines.append(f"    refused: {one_line(repo.get('refused'))}")
        if repo.get("held"):
            lines.append(f"    held over the config file: {one_line(repo.get('held'))}")
    return "\n".join(lines)


_MAX_TASK_LINES = 30


def chat_tasks(tasks: Sequence[JSON]) -> str:
    if not tasks:
        return "No tasks."
    lines = []
    for task in tasks[:_MAX_TASK_LINES]:
        line = (
            f"{one_line(task.get('id'), '?')} · {one_line(task.get('status'))} · {one_line(task.get('agent'))}"
            f" · try {_int(task.get('attempts'))} · {one_line(task.get('title'), '', 60)}"
        )
        if task.get("pr"):
            line += f" · PR {one_line(task.get('pr'))}"
        lines.append(line)
    if len(tasks) > _MAX_TASK_LINES:
        lines.append(f"… and {len(tasks) - _MAX_TASK_LINES} more (narrow with /tasks REPO STATUS)")
    return "\n".join(lines)


_ATTEMPT_KEYS = ("number", "agent", "outcome", "blocker_code", "duration_s")


def _node(attempt: JSON) -> str:
    """Where an attempt ran: ``here``, or the first 12 characters of its Ray node's id."""
    node = str(attempt.get("node") or "")
    return f"ray {node[:12]}" if node else "here"


def _format_attempt(attempt: JSON) -> str:
    head = " · ".join(one_line(attempt.get(k)) for k in _ATTEMPT_KEYS if attempt.get(k) not in (None, ""))
    head += f" · on {_node(attempt)}" if attempt.get("node") else ""
    detail = attempt.get("summary") or attempt.get("error")
    blocked = f" · {one_line(attempt.get('egress_denied'), limit=120)}" if attempt.get("egress_denied") else ""
    return f"  - {head}" + (f": {one_line(detail, limit=120)}" if detail else "") + blocked


def chat_task(task: JSON) -> str:
    lines = []
    for key, value in task.items():
        if value in (None, "", [], {}, 0) and key != "issue":
            continue
        if isinstance(value, list) and all(isinstance(v, Mapping) for v in value):
            lines.append(f"{key}: {len(value)}")
            lines.extend(_format_attempt(cast(JSON, v)) for v in value[-5:])
        elif key.endswith("_at"):
            lines.append(f"{key}: {_when(value)}")
        else:
            lines.append(f"{key}: {one_line(value)}")
    return "\n".join(lines) or "Empty task record."


def format_issue(issue: JSON) -> str:
    """The reply to "Open issue": title, state and labels, then the body (the split at the limit is the sender's)."""
    head = f"{one_line(issue.get('issue'))}: {one_line(issue.get('title'))}"
    labels = issue.get("labels")
    facts = [f"state: {one_line(issue.get('state'))}", f"task: {one_line(issue.get('status'))}"]
    if issue.get("blocker"):
        facts.append(f"blocker: {one_line(issue.get('blocker'))}")
    if isinstance(labels, Sequence) and not isinstance(labels, str) and labels:
        facts.append("labels: " + ", ".join(str(label) for label in labels))
    body = str(issue.get("body") or "").strip() or "(no description)"
    return "\n".join([head, " · ".join(facts), "", body])


def chat_retry(args: JSON, result: Any) -> str:
    budget = result.get("budget") if isinstance(result, Mapping) else None
    agent = args.get("agent")
    to = f" for agent {agent}" if agent else ""
    return f"Task {args['id']} re-queued{to}." + (f"\n{budget}" if budget else "")


def chat_agent_resumed(args: JSON, result: Any) -> str:
    lifted = result if isinstance(result, Mapping) else {}
    why, budget = lifted.get("why"), lifted.get("budget")
    return (
        f"Agent {args['name']} resumed"
        + (f" (it was paused: {one_line(why)})" if why else "")
        + "."
        + (f"\n{one_line(budget)}" if budget else "")
    )


# ---------------------------------------------------------------- terminal


@dataclass(frozen=True, slots=True)
class Table:
    """Rows shown under column headers (``(none)`` when empty)."""

    rows: list[dict[str, Any]]
    columns: list[str]
    title: str | None = None


@dataclass(frozen=True, slots=True)
class KeyValues:
    """One ``key  value`` line per item."""

    data: dict[str, Any]


View = Table | KeyValues


def when(iso: str | None, now: datetime | None = None) -> str:
    """``in 42s`` / ``3m ago`` / ``2h ago`` / ``4d ago`` for a table cell; empty when there is no time."""
    if not iso:
        return ""
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    delta = (moment - (now or datetime.now(UTC))).total_seconds()
    size, unit = abs(delta), "s"
    for limit, divisor, name in ((90, 60, "m"), (5400, 3600, "h"), (172800, 86400, "d")):
        if abs(delta) >= limit:
            size, unit = abs(delta) / divisor, name
    amount = f"{size:.0f}{unit}"
    return f"in {amount}" if delta >= 0 else f"{amount} ago"


def when_at(iso: str | None, now: datetime | None = None) -> str:
    """``2026-03-29T08:00+02:00 (in 9h)``: the moment with its offset (the daemon's ``timezone``), then how far."""
    if not iso:
        return ""
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    return f"{moment.isoformat(timespec='minutes')} ({when(iso, now)})"


def terminal_status(status: Any) -> list[View]:
    return [
        KeyValues(
            {
                **status,
                "state_writes_held": status.get("state_writes_held") or "no",
                "repos_refused": "; ".join(f"{k}: {v}" for k, v in (status.get("repos_refused") or {}).items())
                or "none",
                "status_page": status.get("status_page") or "off",
            }
        )
    ]


def terminal_jobs(rows: Any) -> list[View]:
    shown = [
        {
            **row,
            "on": "yes" if row["enabled"] else "OFF",
            "next": when_at(row.get("next_run")),
            "last": when(row.get("last_run")),
            "fails": row.get("failures"),
        }
        for row in rows
    ]
    return [Table(shown, ["name", "on", "trigger", "next", "last", "runs", "fails", "last_error"])]


def terminal_agents(rows: Any) -> list[View]:
    shown = [
        {
            **row,
            "paused until": (
                f"{row['paused_until_local']} ({when(row['paused_until'])})" if row.get("paused_until") else "-"
            ),
            "why": row.get("why") or "",
            "spend": f"{row['month']}: {row['month_spend']}",
        }
        for row in rows
    ]
    health = [
        {**h, "7 days": h.get("week"), "24 h": h.get("day"), "why": h.get("reason") if h.get("gated") else ""}
        for row in rows
        for h in row.get("health") or []
    ]
    return [
        Table(shown, ["agent", "paused until", "why", "spend", "limits"]),
        Table(health, ["agent", "type", "7 days", "24 h", "gate", "why"], title="health (routing.health_gate)"),
    ]


def terminal_task(task: Any) -> list[View]:
    from agentos.budget import cost_cell  # only once a task is shown: the budget module is not light

    data = dict(task)
    attempts = data.pop("attempts", [])
    return [
        KeyValues({k: v for k, v in data.items() if v not in (None, [], "")}),
        Table(
            [
                {**a, "cost": cost_cell(a.get("cost_usd") or 0.0, a.get("cost_reported")), "node": _node(a)}
                for a in attempts
            ],
            ["number", "agent", "node", "outcome", "blocker_code", "duration_s", "cost", "egress_denied", "run_dir"],
            title="attempts",
        ),
    ]


def terminal_incidents(incidents: Any) -> list[View]:
    """``agentos ctl incidents``: one row per open incident, times as ``MM-DD HH:MM`` (UTC) to fit a terminal."""
    rows = [
        {
            "signature": i.get("signature"),
            "count": i.get("count"),
            "first": str(i.get("first_seen") or "")[5:16].replace("T", " "),
            "last": str(i.get("last_seen") or "")[5:16].replace("T", " "),
            "fix_issue": i.get("fix_issue"),
            "acked_by": i.get("acked_by"),
        }
        for i in incidents
    ]
    return [Table(rows, ["signature", "count", "first", "last", "fix_issue", "acked_by"], "Open incidents (UTC)")]


def terminal_plans(plans: Any) -> list[View]:
    """``agentos ctl plan show``: one table per repo with a plan waiting, or a line saying none waits."""
    views: list[View] = []
    for plan in plans:
        if not plan.get("pending"):
            views.append(KeyValues({"repo": plan.get("repo"), "plan": "none waiting"}))
            continue
        title = f"Sprint plan {plan.get('plan')} for {plan.get('repo')} (by the {plan.get('source')}), " + (
            f"expires {plan.get('deadline')}"
        )
        views.append(Table(list(plan.get("picks") or []), ["issue", "priority", "title", "rationale"], title))
    return views
