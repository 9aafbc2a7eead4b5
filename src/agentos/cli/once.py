"""``agentos run --once``: start the daemon, work through what is ready now, and exit.

It dispatches the ready issues and waits until nothing is left to do in this run: no attempt running,
no task queued or waiting to retry (unless it waits on a dependency that is not merged), and no PR of a
``full``-mode repo left to merge. PRs that wait for an approval (``dispatcher_only``) stay open for later.
Progress is a live line per task on a terminal, plain lines otherwise; log lines go to stderr at
``warning`` or above. Exit codes are the daemon's (docs/operations.md), plus 1 when ``--timeout`` ran out.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from rich.console import Console

from agentos import logging as alog
from agentos.cli._common import count
from agentos.config import Config, ConfigError, load_config
from agentos.graph import ACTIVE, DISPATCHABLE, Task, TaskStatus
from agentos.progress import Progress
from agentos.runtime import Runtime

__all__ = ["pending", "run_once"]

POLL_S = 0.2
LEVELS = ("debug", "info", "warning", "error")


def pending(rt: Runtime) -> list[str]:
    """The tasks this run still waits for (see the module's rule)."""
    return [task.id for task in rt.graph if _waits_for(rt, task)]


def _waits_for(rt: Runtime, task: Task) -> bool:
    if task.status in ACTIVE:
        return True
    if task.status in DISPATCHABLE:
        return rt.graph.deps_met(task) and rt.repo_enabled(task.repo)
    return task.status is TaskStatus.PR_OPEN and _full(rt.config, task.repo)


def _full(config: Config, repo: str) -> bool:
    try:
        return config.repo(repo).automation_mode == "full"
    except KeyError:
        return False


def _dispatched_since(rt: Runtime, start: float) -> bool:
    """A dispatch run began after ``start`` (unix time) and has finished (``last_run`` is set as it begins)."""
    record = rt.state.job_runs.get("dispatch")
    busy = rt.scheduler.busy() if rt.scheduler is not None else []
    return (
        record is not None
        and record.last_run is not None
        and record.last_run.timestamp() >= start
        and ("dispatch" not in busy)
    )


async def _run(config: Config, path: Path | None, console: Console, timeout: float) -> int:
    from agentos.daemon import Daemon

    started = time.time()
    daemon = Daemon(config, path)
    runner = asyncio.create_task(daemon.run())
    ready = asyncio.create_task(daemon.ready.wait())
    await asyncio.wait({runner, ready}, return_when=asyncio.FIRST_COMPLETED)
    if runner.done():  # it could not start (a config problem, another daemon): its code says why
        ready.cancel()
        return runner.result()
    rt = daemon.rt
    assert rt is not None
    progress = Progress(console, title_of=lambda task_id: t.title if (t := rt.graph.find(task_id)) else "")
    rt.listeners.append(progress)
    deadline = time.monotonic() + timeout
    settled = False
    with progress:
        while time.monotonic() < deadline and not runner.done():
            if _dispatched_since(rt, started) and not pending(rt):
                settled = True
                break
            await asyncio.sleep(POLL_S)
    daemon.request_stop()
    code = await runner
    counts = rt.graph.counts()
    seen = [t for t in rt.graph if t.id in progress.rows]
    merged = sum(1 for t in seen if t.status in (TaskStatus.MERGED, TaskStatus.ACCEPTED))
    blocked = sum(1 for t in seen if t.status is TaskStatus.BLOCKED)
    opened = sum(1 for t in seen if t.status is TaskStatus.PR_OPEN)
    console.print(
        f"this run: {count(len(seen), 'task')}, {merged} merged, {blocked} escalated, {count(opened, 'PR')} open; "
        f"in all: {counts['queued'] + counts['retrying']} queued",
        highlight=False,
    )
    if not settled and code == 0 and time.monotonic() >= deadline:
        left = ", ".join(pending(rt)) or "none"
        console.print(f"[red]--once: still working after {timeout:.0f}s[/red] (pending: {left})", highlight=False)
        return 1
    return code


def run_once(config_path: str | None, timeout: float, *, console: Console | None = None) -> int:
    """The body of ``agentos run --once``."""
    try:
        config, path = load_config(config_path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr, flush=True)
        return 78
    level = config.log_level if LEVELS.index(config.log_level) >= LEVELS.index("warning") else "warning"
    alog.configure(level, stream=sys.stderr)
    out = console or Console(highlight=False)
    try:
        return asyncio.run(_run(config, path.resolve() if path else None, out, timeout))
    except KeyboardInterrupt:
        return 0
