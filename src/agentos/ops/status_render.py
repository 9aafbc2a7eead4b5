"""What the status page sends as HTML: the page and its SVG chart. Pure functions of the snapshot
:meth:`agentos.ops.status_page.StatusPage.snapshot` builds; no I/O, no clock. The Prometheus text is
:mod:`agentos.ops.prometheus`.

The page is one self-contained document: inline CSS, an inline SVG bar chart, no script and no external
asset; it refreshes itself every 15 s with ``<meta http-equiv="refresh">``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from html import escape
from typing import Any

__all__ = ["agent_chart_svg", "render_html"]

REFRESH_S = 15
CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;background:#f4f5f7;color:#1f2328}
header{background:#1f2328;color:#fff;padding:14px 28px;display:flex;gap:18px;align-items:baseline;flex-wrap:wrap}
header h1{font-size:20px;margin:0}header .meta{color:#c9d1d9;font-size:13px}
.pill{padding:2px 10px;border-radius:10px;font-size:12px;font-weight:600;text-transform:uppercase}
.on{background:#2da44e;color:#fff}.off{background:#d29922;color:#1f2328}
main{padding:18px 28px;display:grid;grid-template-columns:1fr 1fr;gap:18px}
section{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:12px 16px}
section.wide{grid-column:1/-1}h2{font-size:15px;margin:0 0 8px}
.tiles{display:flex;gap:12px;flex-wrap:wrap}
.tile{flex:1;min-width:110px;background:#f6f8fa;border-radius:6px;padding:8px 12px}
.tile b{display:block;font-size:22px}.tile span{color:#57606a;font-size:12px}
table{border-collapse:collapse;width:100%;font-size:13px}th{text-align:left;color:#57606a;font-weight:600}
th,td{padding:4px 8px;border-bottom:1px solid #eaeef2;vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums}code{font-size:12px}
.empty{color:#57606a;font-style:italic;margin:4px 0}.err{color:#cf222e}
footer{padding:0 28px 18px;color:#57606a;font-size:12px}
"""


def _e(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


def _when(iso: str | None, now: datetime) -> str:
    """``3m ago`` / ``in 42s`` relative to ``now``; ``-`` when there is no time."""
    if not iso:
        return "-"
    delta = (datetime.fromisoformat(iso) - now).total_seconds()
    text = _span(abs(delta))
    return f"in {text}" if delta > 0 else f"{text} ago"


def _span(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], empty: str, numeric: Sequence[int] = ()) -> str:
    """A table of already-escaped cells, or a line saying there is nothing."""
    body = [
        "<tr>" + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(r))
        for r in rows
    ]
    if not body:
        return f'<p class="empty">{_e(empty)}</p>'
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(r + '</tr>' for r in body)}</tbody></table>"


def agent_chart_svg(agents: Sequence[Mapping[str, Any]], *, width: int = 520) -> str:
    """A horizontal bar per agent: its success rate over the window, labelled with the attempts behind it."""
    rated = [a for a in agents if a.get("success_rate") is not None]
    if not rated:
        return '<p class="empty">No rated attempts in the window yet.</p>'
    label_w, bar_w, row_h = 130, width - 130 - 110, 26
    height = row_h * len(rated) + 8
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="success rate per agent">'
        "<title>Success rate per agent</title>"
    ]
    for i, agent in enumerate(rated):
        rate = float(agent["success_rate"])
        y = 4 + i * row_h
        fill = "#2da44e" if rate >= 0.7 else "#d29922" if rate >= 0.4 else "#cf222e"
        parts.append(
            f'<g class="bar" data-agent="{_e(agent["key"])}">'
            f'<text x="0" y="{y + 15}" font-size="13" fill="#1f2328">{_e(agent["key"])}</text>'
            f'<rect x="{label_w}" y="{y}" width="{bar_w}" height="18" rx="3" fill="#eaeef2"/>'
            f'<rect x="{label_w}" y="{y}" width="{round(bar_w * rate, 1)}" height="18" rx="3" fill="{fill}"/>'
            f'<text x="{label_w + bar_w + 8}" y="{y + 15}" font-size="12" fill="#57606a">'
            f"{rate:.0%} of {int(agent['attempts'])}</text></g>"
        )
    parts.append("</svg>")
    return "".join(parts)


def render_html(snap: Mapping[str, Any]) -> str:
    """The whole page for one snapshot."""
    now = datetime.fromisoformat(snap["generated_at"])
    d = snap["daemon"]
    recent = snap["recent"]
    window = f"{snap['window_days']}d"
    paused = bool(d["paused"])
    lag = snap.get("loop")
    tiles = [
        (f"{d['running']}/{d['max_parallel_workers']}", "agents running"),
        (str(d["queued"]), "queued"),
        (str(d["counts"].get("pr_open", 0)), "PRs open"),
        (str(recent["merged_in_window"]), f"merged ({window})"),
        (str(recent["escalated_in_window"]), f"escalated ({window})"),
        ("-" if not lag else f"{lag['lag_s'] * 1000:.0f} ms", "loop lag"),
    ]
    running = _table(
        ("task", "title", "agent", "attempt", "node", "status", "elapsed"),
        (
            (
                f"<code>{_e(r['id'])}</code>",
                _e(r["title"]),
                _e(r["agent"]),
                _e(r["attempt"]),
                f"<code>{_e(r.get('node', 'here'))}</code>",
                _e(r["status"]),
                _e(_span(r["elapsed_s"])),
            )
            for r in snap["running"]
        ),
        "No agent is working right now.",
        numeric=(3, 6),
    )
    queue = _table(
        ("task", "title", "status", "priority", "attempts", "waiting for"),
        (
            (
                f"<code>{_e(q['id'])}</code>",
                _e(q["title"]),
                _e(q["status"]),
                _e(q["priority"]),
                _e(q["attempts"]),
                _e(_waiting(q, now)),
            )
            for q in snap["queue"]
        ),
        "The queue is empty.",
        numeric=(4,),
    )
    merges = _table(
        ("when", "task", "agent", "attempts"),
        ((_e(_when(m["at"], now)), _task_cell(m), _e(m["agent"]), _e(m["attempts"])) for m in recent["merges"]),
        f"No merges in the last {window}.",
        numeric=(3,),
    )
    escalations = _table(
        ("when", "task", "agent", "blocker"),
        (
            (_e(_when(m["at"], now)), _task_cell(m), _e(m["agent"]), f"<code>{_e(m['blocker'] or '-')}</code>")
            for m in recent["escalations"]
        ),
        f"No escalations in the last {window}.",
    )
    jobs = _table(
        ("job", "trigger", "state", "last run", "next run", "runs", "failures", "last error"),
        (
            (
                f"<code>{_e(j['name'])}</code>",
                _e(j["trigger"]),
                _e(_job_state(j)),
                _e(_when(j["last_run"], now)),
                _e(_when(j["next_run"], now)),
                _e(j["runs"]),
                _e(j["failures"]),
                f'<span class="err">{_e(j["last_error"])}</span>' if j.get("last_error") else "",
            )
            for j in snap["jobs"]
        ),
        "The scheduler is not running.",
        numeric=(5, 6),
    )
    health = _table(
        ("agent", "task type", "last 7 days", "last 24 h", "gate", "why"),
        (
            (
                f"<code>{_e(h['agent'])}</code>",
                _e(h["type"]),
                _e(h["week"]),
                _e(h["day"]),
                f'<span class="err">{_e(h["gate"])}</span>' if h["gated"] else _e(h["gate"]),
                _e(h["reason"] or "") if h["gated"] else "",
            )
            for h in snap.get("health") or []
        ),
        "No agent attempts in the last 7 days.",
    )
    sandbox = str(d.get("sandbox") or "")
    warning = (  # an unconfined or unusable sandbox is said on top of the page, not in a corner of it
        f'<section class="wide"><p class="err"><b>Sandbox {_e(sandbox)}</b></p></section>'
        if sandbox and sandbox != "bubblewrap"
        else ""
    )
    tile_html = "".join(f'<div class="tile"><b>{_e(v)}</b><span>{_e(k)}</span></div>' for v, k in tiles)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="{REFRESH_S}"><title>agentos status</title><style>{CSS}</style></head>
<body><header><h1>agentos</h1>
<span class="pill {"off" if paused else "on"}">{"paused" if paused else "dispatching"}</span>
<span class="meta">v{_e(d["version"])} · forge {_e(d["forge"])} · repos {_e(", ".join(d["repos"]) or "none")} ·
up {_e(_span(d["uptime_s"]))} · {_e(d["tasks"])} tasks · updated {now:%Y-%m-%d %H:%M:%S} UTC</span></header>
<main>{warning}
<section class="wide"><div class="tiles">{tile_html}</div></section>
<section class="wide"><h2>Running</h2>{running}</section>
<section class="wide"><h2>Queue</h2>{queue}</section>
<section><h2>Recent merges</h2>{merges}</section>
<section><h2>Recent escalations</h2>{escalations}</section>
<section class="wide"><h2>Success rate per agent ({window})</h2>{agent_chart_svg(snap["agents"])}</section>
<section class="wide"><h2>Agent health (routing.health_gate)</h2>{health}</section>
<section class="wide"><h2>Jobs</h2>{jobs}</section>
</main>
<footer>Read-only. Refreshes every {REFRESH_S} s.
JSON: <code>/api/status</code> · Prometheus: <code>/metrics</code></footer>
</body></html>
"""


def _task_cell(row: Mapping[str, Any]) -> str:
    title = f" {_e(row['title'])}" if row.get("title") else ""
    return f"<code>{_e(row['task'])}</code>{title}"


def _waiting(row: Mapping[str, Any], now: datetime) -> str:
    if row["depends_on"]:
        return "after " + ", ".join(row["depends_on"])
    if row["not_before"] and datetime.fromisoformat(row["not_before"]) > now:
        return f"retry {_when(row['not_before'], now)}"
    return "a free worker"


def _job_state(job: Mapping[str, Any]) -> str:
    if job["running"]:
        return "running"
    return "enabled" if job["enabled"] else "disabled"
