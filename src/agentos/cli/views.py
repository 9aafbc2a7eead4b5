"""``agentos tasks``, ``agentos task show`` and ``agentos logs``: read the state directory, never write it.

These views load the snapshot and journal without taking the daemon's lock (:meth:`Store.load` without
:meth:`Store.lock` is a read-only view), so they work whether a daemon runs or not; what they show may
be a second stale while it writes. ``logs -f`` follows an attempt's ``agent.log`` until the attempt ends.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import typer

from agentos.cli._common import ConfigOption, JsonOption, console, err_console, fail, kv, load, print_json

if TYPE_CHECKING:
    from agentos.config import Config
    from agentos.graph import Attempt, Task

task_app = typer.Typer(help="One task, read from the state directory (no daemon needed).", no_args_is_help=True)

StateDirOption = typer.Option(None, "--state-dir", help="State directory (default: from the config)")


# ---------------------------------------------------------------- where the state is


def safe_id(task_id: str) -> str:
    """A task id as a directory name (the executor's ``runs/<safe id>/<attempt>/`` layout)."""
    return task_id.replace("/", "_").replace("#", "-")


def resolve_state_dir(config: Config, config_path: Path | None, explicit: str | None = None) -> Path:
    """The state directory the daemon for this config uses (:attr:`Config.state_path`); ``--state-dir`` wins.

    ``config_path`` is unused: the config knows the file it was read from.
    """
    del config_path
    if explicit:
        return Path(explicit).expanduser()
    return config.state_path


def quiet_logs() -> None:
    """Send the store's log lines to stderr, warnings only, so stdout stays a table or JSON."""
    from agentos import logging as alog

    alog.configure("warning", stream=sys.__stderr__ or sys.stderr)


def read_tasks(state_dir: Path) -> list[Task]:
    """Every task in ``state_dir`` (empty when there is no state yet). Never writes."""
    from agentos.store import StateError, Store

    if not state_dir.is_dir():
        return []
    try:
        graph, _ = Store(state_dir, fsync=False).load()
    except StateError as exc:
        fail(f"cannot read the state in {state_dir}: {exc}")
    except PermissionError as exc:
        fail(f"cannot read the state in {state_dir}: {exc.strerror} (run as the daemon's user, or with sudo)")
    return list(graph)


def _state(config: str | None, state_dir: str | None) -> tuple[Config, Path]:
    cfg, path = load(config)
    quiet_logs()
    return cfg, resolve_state_dir(cfg, path, state_dir)


def find_task(tasks: list[Task], ref: str) -> Task:
    """A task by id, or by ``repo#N`` (its latest generation), or by ``N`` when only one repo has it."""
    by_id = {t.id: t for t in tasks}
    if ref in by_id:
        return by_id[ref]
    repo, _, num = ref.rpartition("#")
    if num.isdigit():
        matches = [t for t in tasks if t.issue == int(num) and (not repo or t.repo == repo)]
        repos = {t.repo for t in matches}
        if len(repos) == 1:
            return max(matches, key=lambda t: t.generation)
        if len(repos) > 1:
            fail(f"issue {num} exists in several repos ({', '.join(sorted(repos))}); name it as repo#{num}")
    known = ", ".join(sorted(by_id)[:10]) or "none"
    fail(f"no task {ref!r} (tasks: {known}{', …' if len(by_id) > 10 else ''})")


# ---------------------------------------------------------------- rows


def _ago(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return ""
    seconds = max(0, int((now - moment.astimezone(UTC)).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def attempt_row(attempt: Attempt) -> dict[str, Any]:
    return {
        "number": attempt.number,
        "agent": attempt.agent,
        "outcome": attempt.outcome,
        "blocker_code": attempt.blocker_code,
        "started": attempt.started_at.isoformat(),
        "duration_s": attempt.duration_s,
        "exit_code": attempt.exit_code,
        "tokens_in": attempt.tokens_in,
        "tokens_out": attempt.tokens_out,
        "cost_usd": attempt.cost_usd,
        "run_dir": attempt.run_dir,
        "summary": attempt.summary,
        "error": attempt.error,
    }


def pr_link(config: Config, state_dir: Path, task: Task) -> str | None:
    """Where to look at the task's PR: the GitHub web page, or the local forge's record."""
    if task.pr is None:
        return None
    if config.forge == "github":
        api = (config.github.api_url if config.github else "https://api.github.com").rstrip("/")
        web = "https://github.com" if api == "https://api.github.com" else api.removesuffix("/api/v3")
        return f"{web}/{task.repo}/pull/{task.pr}"
    return (state_dir / "local-forge" / task.repo / "pulls" / f"{task.pr}.json").absolute().as_uri()


def log_path(state_dir: Path, task: Task, attempt: Attempt) -> Path:
    run_dir = Path(attempt.run_dir) if attempt.run_dir else state_dir / "runs" / safe_id(task.id) / str(attempt.number)
    return run_dir / "agent.log"


# ---------------------------------------------------------------- commands


def tasks(
    repo: str | None = typer.Option(None, "--repo", "-r", help="Only this repo"),
    status: str | None = typer.Option(None, "--status", "-s", help="Only this status (queued, running, merged, …)"),
    config: str | None = ConfigOption,
    state_dir: str | None = StateDirOption,
    as_json: bool = JsonOption,
) -> None:
    """Tasks, most recently changed first, read from the state directory (daemon running or not)."""
    from agentos.budget import task_cost_cell
    from agentos.control.task_rows import task_row
    from agentos.graph import TaskStatus

    statuses = [s.value for s in TaskStatus]
    if status is not None and status not in statuses:
        fail(f"unknown status {status!r}; one of: {', '.join(statuses)}")
    _, state = _state(config, state_dir)
    found = [
        t for t in read_tasks(state) if (repo is None or t.repo == repo) and (status is None or t.status == status)
    ]
    found.sort(key=lambda t: t.updated_at, reverse=True)
    rows = [task_row(t) for t in found]
    if as_json:
        print_json(rows)
        return
    now = datetime.now(UTC)
    shown = [
        {
            **row,
            "cost": task_cost_cell(row["cost_usd"], row["not_measured"]),
            "updated": _ago(task.updated_at, now),
        }
        for row, task in zip(rows, found, strict=True)
    ]
    _table(shown, ["id", "status", "attempts", "agent", "pr", "blocker", "cost", "updated", "title"])


@task_app.command("show")
def task_show(
    task_id: str = typer.Argument(..., help="Task id (repo#N), or an issue number when one repo has it"),
    config: str | None = ConfigOption,
    state_dir: str | None = StateDirOption,
    as_json: bool = JsonOption,
) -> None:
    """One task: status, branch, PR link, and every attempt with its blocker code, duration, tokens and cost."""
    from agentos.budget import cost_cell, task_cost_cell
    from agentos.results import manual_steps_of

    cfg, state = _state(config, state_dir)
    task = find_task(read_tasks(state), task_id)
    link = pr_link(cfg, state, task)
    if as_json:
        print_json({**task.model_dump(mode="json"), "pr_url": link, "cost_usd": task.cost_usd()})
        return
    details: dict[str, Any] = {
        "id": task.id,
        "title": task.title,
        "status": task.status.value,
        "type": task.type,
        "priority": task.priority,
        "agent": task.agent,
        "branch": task.branch,
        "pr": f"#{task.pr}  {link}" if task.pr is not None else None,
        "depends_on": task.depends_on,
        "parent": task.parent,
        "last_blocker": task.last_blocker,
        "not_before": task.not_before.isoformat() if task.not_before else None,
        "created": task.created_at.isoformat(),
        "updated": task.updated_at.isoformat(),
        "cost": f"{task_cost_cell(task.cost_usd(), task.unmeasured()) or '$0.00'} ({task.tokens():,} tokens)",
        "note": task.note,
        "manual steps": manual_steps_of(task),
    }
    if task.normalised is not None:  # a terse issue, written out by the normaliser: what the agent works to
        filled = f", set {' and '.join(task.normalised.filled)}" if task.normalised.filled else ""
        details["normalised"] = f"by {task.normalised.by or 'the llm agent'}{filled}"
        details["goal (normalised)"] = task.normalised.goal
        details["criteria (normalised)"] = "; ".join(task.normalised.success_criteria)
        details["constraints (normalised)"] = "; ".join(task.normalised.constraints)
    kv({k: v for k, v in details.items() if v not in (None, [], "")})
    if not task.attempts:
        console.print("no attempts yet")
        return
    _table(
        [
            {
                "#": a.number,
                "agent": a.agent,
                "outcome": a.outcome,
                "blocker": a.blocker_code,
                "duration": _duration(a.duration_s)
                if a.outcome != "running"
                else f"{_duration((datetime.now(UTC) - a.started_at).total_seconds())} so far",
                "tokens": f"{a.tokens_in}/{a.tokens_out}" if a.tokens_in or a.tokens_out else "",
                "cost": cost_cell(a.cost_usd, a.cost_reported),
                "run dir": a.run_dir,
            }
            for a in task.attempts
        ],
        ["#", "agent", "outcome", "blocker", "duration", "tokens", "cost", "run dir"],
        title="attempts",
    )
    for a in task.attempts:
        if a.runner:  # it ran on a node of the cluster, not here
            where = f"attempt {a.number} ran on {a.runner} node {a.node}"
            console.print(where, markup=False, highlight=False, soft_wrap=True)
        if a.egress_denied:
            console.print(f"attempt {a.number} egress {a.egress_denied}", markup=False, highlight=False)
    last = task.attempts[-1]
    if last.summary:
        console.print(f"last summary: {last.summary}", markup=False, highlight=False)
    if last.error:
        console.print(f"last error: {last.error[-500:]}", markup=False, highlight=False)
    console.print(f"log: agentos logs '{task.id}' --attempt {last.number}", markup=False, highlight=False)


def logs(
    task_id: str = typer.Argument(..., help="Task id (repo#N)"),
    attempt: int | None = typer.Option(None, "--attempt", "-a", help="Attempt number (default: the last)"),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing until the attempt ends"),
    timeout: float | None = typer.Option(
        None, "--timeout", help="Stop following after this many seconds (default: the attempt's runtime limit)"
    ),
    poll: float = typer.Option(0.5, "--poll", hidden=True, help="Seconds between looks at the file and the state"),
    config: str | None = ConfigOption,
    state_dir: str | None = StateDirOption,
) -> None:
    """Print an attempt's agent log; with -f, follow it until the attempt ends (Ctrl-C stops)."""
    cfg, state = _state(config, state_dir)
    task = find_task(read_tasks(state), task_id)
    if not task.attempts:
        fail(f"task {task.id} has no attempts yet")
    chosen = _pick_attempt(task, attempt)
    path = log_path(state, task, chosen)
    out = sys.stdout.buffer
    if not follow:
        if not path.exists():
            fail(f"no log at {path}", 2)
        _copy_all(path, out)
        return
    limit = timeout if timeout is not None else _attempt_limit_s(cfg)

    why: list[str] = []
    looked = [float("-inf")]

    def ended() -> bool:
        """Whether the attempt is over; the state (a whole load) is read at most once a second."""
        if time.monotonic() - looked[0] < max(poll, 1.0):
            return False
        looked[0] = time.monotonic()
        current = next((t for t in read_tasks(state) if t.id == task.id), None)
        again = next((a for a in current.attempts if a.number == chosen.number), None) if current else None
        if again is None:
            why.append("the attempt is gone from the state")
        elif again.outcome != "running":
            why.append(
                f"attempt {again.number} ended: {again.outcome}"
                + (f" ({again.blocker_code})" if again.blocker_code else "")
            )
        elif not daemon_alive(state):
            why.append("the daemon is not running; the attempt will be ended as interrupted when it starts")
        return bool(why)

    try:
        finished = follow_log(path, out, ended, poll_s=poll, timeout_s=limit)
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
    note = why[-1] if finished and why else f"stopped following after {limit:.0f} s; the attempt is still running"
    err_console.print(note, markup=False, highlight=False)


def _table(rows: list[dict[str, Any]], columns: list[str], *, title: str | None = None) -> None:
    """A table whose ids never wrap and whose other cells fold rather than hide text behind an ellipsis."""
    from rich.table import Table
    from rich.text import Text

    if not rows:
        console.print("(none)")
        return
    t = Table(title=title, show_edge=False, header_style="bold")
    for col in columns:
        t.add_column(col, no_wrap=col in ("id", "#", "status"), overflow="fold")
    for row in rows:
        t.add_row(*(Text("" if row.get(c) is None else str(row.get(c))) for c in columns))
    console.print(t)


def _pick_attempt(task: Task, number: int | None) -> Attempt:
    if number is None:
        return task.attempts[-1]
    for a in task.attempts:
        if a.number == number:
            return a
    fail(f"task {task.id} has attempts 1–{len(task.attempts)}, not {number}")


def _attempt_limit_s(cfg: Config) -> float:
    """An attempt cannot outlive its wall-clock cap, the kill grace and a watchdog pass; follow no longer."""
    return cfg.limits.max_runtime_minutes * 60 + cfg.limits.kill_grace_s + 120


def _copy_all(path: Path, out: BinaryIO) -> int:
    with path.open("rb") as f:
        while chunk := f.read(65536):
            out.write(chunk)
        out.flush()
        return f.tell()


def daemon_alive(state_dir: Path) -> bool:
    """Whether the pid in ``agentos.lock`` is alive (the lock file keeps the last daemon's pid)."""
    try:
        pid = int((state_dir / "agentos.lock").read_text().strip() or "0")
    except (OSError, ValueError):
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def follow_log(
    path: Path,
    out: BinaryIO,
    ended: Callable[[], bool],
    *,
    poll_s: float = 0.5,
    timeout_s: float = 3600.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> bool:
    """Copy ``path`` to ``out`` as it grows until ``ended()``; True when it ended, False on the time limit.

    The state is asked every poll; once the attempt has ended, what was written up to then is drained
    before returning. A log that does not exist yet is waited for.
    """
    deadline = clock() + timeout_s
    offset = 0
    while True:
        done = ended()  # asked before reading, so every byte written before the end is printed
        offset = _copy_from(path, out, offset)
        if done:
            return True
        if clock() >= deadline:
            return False
        sleep(poll_s)


def _copy_from(path: Path, out: BinaryIO, offset: int) -> int:
    try:
        with path.open("rb") as f:
            if os.fstat(f.fileno()).st_size < offset:  # truncated or replaced: start again
                offset = 0
            f.seek(offset)
            while chunk := f.read(65536):
                out.write(chunk)
            out.flush()
            return f.tell()
    except FileNotFoundError:
        return offset
