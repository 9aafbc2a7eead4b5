"""``agentos ctl …``: talk to the running daemon over its control socket (stdlib socket, fast start).

Exit codes: 0 done, 1 the daemon refused or failed the command (its message on stderr), 3 no daemon
is running (one line: ``agentos is not running (no daemon at PATH)``) or it could not be reached.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from agentos.cli._common import JsonOption, fail, kv, print_json, table
from agentos.errors import ControlError

app = typer.Typer(help="Steer the running daemon.", no_args_is_help=True)
job_app = typer.Typer(help="Enable or disable a job.", no_args_is_help=True)
repo_app = typer.Typer(help="Repositories: on, off, mode, cadence.", no_args_is_help=True)
task_app = typer.Typer(help="One task: show, retry, cancel.", no_args_is_help=True)
agent_app = typer.Typer(help="One agent: resume (lift its pause).", no_args_is_help=True)
app.add_typer(job_app, name="job")
app.add_typer(agent_app, name="agent")
app.add_typer(repo_app, name="repo")
app.add_typer(task_app, name="task")

SocketOption = typer.Option(None, "--socket", envvar="AGENTOS_SOCKET", help="Control socket path.")
EXIT_FAILED = 1
EXIT_NOT_RUNNING = 3
TIMEOUT_S = 30.0
RUN_TIMEOUT_S = 3600.0
"""``ctl run JOB`` waits for the job, which may take as long as a dispatch or a PR sweep does."""


def socket_path(explicit: str | None) -> Path:
    from agentos.control.socket import client_socket_path

    return Path(explicit) if explicit else client_socket_path()


def call(cmd: str, args: dict[str, Any] | None = None, sock: str | None = None, *, timeout: float = TIMEOUT_S) -> Any:
    from agentos.control.socket import NotRunning, request

    path = socket_path(sock or os.environ.get("AGENTOS_SOCKET"))
    try:
        return request(path, cmd, args, timeout=timeout)
    except NotRunning as exc:
        fail(str(exc), EXIT_NOT_RUNNING, prefix=False)
    except ControlError as exc:
        fail(str(exc), EXIT_FAILED)
    except TimeoutError:
        fail(f"the daemon at {path} did not answer {cmd} within {timeout:g}s", EXIT_NOT_RUNNING)
    except OSError as exc:
        fail(f"cannot talk to the daemon at {path}: {exc}", EXIT_NOT_RUNNING)


def show(result: Any, as_json: bool) -> None:
    if as_json:
        print_json(result)
    elif isinstance(result, dict):
        kv(result)
    else:
        print_json(result)


@app.command()
def status(as_json: bool = JsonOption, sock: str | None = SocketOption) -> None:
    """Is it running, paused, how many agents are working; paused agents, a state-write hold, the status page."""
    result = call("status", sock=sock)
    if not as_json and isinstance(result, dict):
        result = {
            **result,
            "state_writes_held": result.get("state_writes_held") or "no",
            "status_page": result.get("status_page") or "off",
        }
    show(result, as_json)


@app.command()
def pause(as_json: bool = JsonOption, sock: str | None = SocketOption) -> None:
    """Stop starting new work (the kill switch); running attempts finish."""
    show(call("pause", sock=sock), as_json)


@app.command()
def resume(as_json: bool = JsonOption, sock: str | None = SocketOption) -> None:
    """Start dispatching again."""
    show(call("resume", sock=sock), as_json)


@app.command()
def reload(as_json: bool = JsonOption, sock: str | None = SocketOption) -> None:
    """Re-read the config file (same as SIGHUP)."""
    show(call("reload", sock=sock), as_json)


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


@app.command()
def jobs(as_json: bool = JsonOption, sock: str | None = SocketOption) -> None:
    """The job table: triggers, next runs (with the `timezone` offset), last runs, errors."""
    rows = call("jobs", sock=sock)
    if as_json:
        print_json(rows)
        return
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
    table(shown, ["name", "on", "trigger", "next", "last", "runs", "fails", "last_error"])


@job_app.command("on")
def job_on(name: str, as_json: bool = JsonOption, sock: str | None = SocketOption) -> None:
    """Let a job run on its schedule again."""
    show(call("job", {"name": name, "enabled": True}, sock), as_json)


@job_app.command("off")
def job_off(name: str, as_json: bool = JsonOption, sock: str | None = SocketOption) -> None:
    """Skip a job's scheduled runs (survives a restart; `ctl run` still runs it)."""
    show(call("job", {"name": name, "enabled": False}, sock), as_json)


@app.command("run")
def run_job(name: str, as_json: bool = JsonOption, sock: str | None = SocketOption) -> None:
    """Run a job now and wait for it."""
    show(call("run", {"name": name}, sock, timeout=RUN_TIMEOUT_S), as_json)


@app.command()
def agents(as_json: bool = JsonOption, sock: str | None = SocketOption) -> None:
    """The agents: paused until when and why, this month's spend against their limits."""
    rows = call("agents", sock=sock)
    if as_json:
        print_json(rows)
        return
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
    table(shown, ["agent", "paused until", "why", "spend", "limits"])


@agent_app.command("resume")
def agent_resume(name: str, as_json: bool = JsonOption, sock: str | None = SocketOption) -> None:
    """Lift an agent's pause now (a usage limit's or a budget's; a budget lift lasts the period)."""
    show(call("agent_resume", {"name": name}, sock), as_json)


@app.command()
def repos(as_json: bool = JsonOption, sock: str | None = SocketOption) -> None:
    rows = call("repos", sock=sock)
    if as_json:
        print_json(rows)
    else:
        table(rows, ["name", "enabled", "mode", "cadence_days", "base", "path"])


@repo_app.command("on")
def repo_on(name: str, as_json: bool = JsonOption, sock: str | None = SocketOption) -> None:
    show(call("repo", {"name": name, "enabled": True}, sock), as_json)


@repo_app.command("off")
def repo_off(name: str, as_json: bool = JsonOption, sock: str | None = SocketOption) -> None:
    show(call("repo", {"name": name, "enabled": False}, sock), as_json)


@repo_app.command("mode")
def repo_mode(name: str, mode: str, as_json: bool = JsonOption, sock: str | None = SocketOption) -> None:
    """full (auto-merge on green) or dispatcher (PRs wait for approval); edits the config file."""
    show(call("repo_mode", {"name": name, "mode": mode}, sock), as_json)


@repo_app.command("cadence")
def repo_cadence(name: str, days: int, as_json: bool = JsonOption, sock: str | None = SocketOption) -> None:
    show(call("repo_cadence", {"name": name, "days": days}, sock), as_json)


@app.command()
def tasks(
    repo: str | None = typer.Option(None, "--repo"),
    status_: str | None = typer.Option(None, "--status"),
    as_json: bool = JsonOption,
    sock: str | None = SocketOption,
) -> None:
    """Tasks, newest first."""
    rows = call("tasks", {"repo": repo, "status": status_}, sock)
    if as_json:
        print_json(rows)
    else:
        table(rows, ["id", "status", "attempts", "agent", "pr", "blocker", "title"])


@task_app.command("show")
def task_show(task_id: str, as_json: bool = JsonOption, sock: str | None = SocketOption) -> None:
    data = call("task", {"id": task_id}, sock)
    if as_json:
        print_json(data)
        return
    from agentos.budget import cost_cell

    attempts = data.pop("attempts", [])
    kv({k: v for k, v in data.items() if v not in (None, [], "")})
    table(
        [{**a, "cost": cost_cell(a.get("cost_usd") or 0.0, a.get("cost_reported"))} for a in attempts],
        ["number", "agent", "outcome", "blocker_code", "duration_s", "cost", "run_dir"],
        title="attempts",
    )


@task_app.command("retry")
def task_retry(task_id: str, as_json: bool = JsonOption, sock: str | None = SocketOption) -> None:
    show(call("retry", {"id": task_id}, sock), as_json)


@task_app.command("cancel")
def task_cancel(task_id: str, as_json: bool = JsonOption, sock: str | None = SocketOption) -> None:
    show(call("cancel", {"id": task_id}, sock), as_json)


@app.command()
def approve(pr: str, as_json: bool = JsonOption, sock: str | None = SocketOption) -> None:
    """Merge a green PR that waits for review (repo#N)."""
    show(call("approve", {"ref": pr}, sock), as_json)


@app.command()
def reject(pr: str, as_json: bool = JsonOption, sock: str | None = SocketOption) -> None:
    """Close a PR that waits for review (repo#N)."""
    show(call("reject", {"ref": pr}, sock), as_json)
