"""Progress of long foreground work (``agentos demo``, ``agentos run --once``), fed by the runtime's events.

On a terminal, one live line per task (status, agent, attempt, elapsed) redrawn in place with rich, and
each merge or escalation printed above it. Anywhere else (a pipe, a CI log), one plain line per change::

       3.2s  calc#1     queued → running  agent=demo attempt=1

:func:`render_table` (the live view) and :func:`plain_line` (the log line) are pure; :class:`Progress`
is the runtime listener that keeps the rows and picks one of the two.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType

from rich.console import Console
from rich.live import Live
from rich.table import Table

from agentos.graph import Event

__all__ = ["Progress", "TaskLine", "plain_line", "render_table"]

STYLES = {
    "running": "bold cyan",
    "validating": "cyan",
    "pr_open": "blue",
    "merged": "bold green",
    "accepted": "bold green",
    "done": "bold green",
    "blocked": "bold red",
    "failed": "red",
    "cancelled": "dim",
    "retrying": "yellow",
    "queued": "dim",
}
FINAL = frozenset({"merged", "accepted", "done", "blocked", "failed", "cancelled"})


@dataclass
class TaskLine:
    """What the live view shows of one task: times are ``time.monotonic()`` seconds."""

    task: str
    title: str = ""
    status: str = "queued"
    agent: str = "-"
    attempt: int = 0
    since: float = 0.0
    ended: float | None = None

    def elapsed(self, now: float) -> float:
        return (self.ended if self.ended is not None else now) - self.since


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds < 3600 else f"{seconds // 3600}h{seconds % 3600 // 60:02d}"


def render_table(rows: Sequence[TaskLine], now: float) -> Table:
    """The live view: one line per task, in the order they appeared."""
    table = Table(show_edge=False, header_style="bold", pad_edge=False, box=None)
    for name, justify in (("task", "left"), ("status", "left"), ("agent", "left"), ("try", "right")):
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    table.add_column("elapsed", justify="right", no_wrap=True)
    table.add_column("title", overflow="ellipsis", no_wrap=True, max_width=48)
    for row in rows:
        table.add_row(
            row.task,
            f"[{STYLES.get(row.status, '')}]{row.status}[/]" if row.status in STYLES else row.status,
            row.agent,
            str(row.attempt or "-"),
            _clock(row.elapsed(now)),
            row.title,
            style="dim" if row.status in ("cancelled",) else None,
        )
    if not rows:
        table.add_row("(waiting for ready issues)", "", "", "", "", "")
    return table


def plain_line(event: Event, at: float) -> str | None:
    """One log line for an event that changes what a task is doing; ``None`` for the others."""
    data = event.data
    if event.type == "task_created":
        line = "task created"
    elif event.type == "transition":
        line = f"{data['from']} → {data['to']}"
        extra = {k: v for k, v in data.items() if k in ("agent", "attempt", "pr", "blocker", "reason")}
        if extra:
            line += "  " + " ".join(f"{k}={v}" for k, v in extra.items())
    elif event.type == "attempt_ended":
        line = f"attempt {data['attempt']} by {data['agent']}: {data['outcome']}"
        if data.get("blocker_code"):
            line += f" ({data['blocker_code']})"
    elif event.type in ("merged", "escalated"):
        line = event.type.upper()
    else:
        return None
    return f"{at:6.1f}s  {event.task or '':<10} {line}"


class Progress:
    """A runtime listener (``rt.listeners.append(progress)``); use it as a context manager around the wait."""

    def __init__(
        self,
        console: Console,
        *,
        live: bool | None = None,
        title_of: Callable[[str], str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.console = console
        self.live = console.is_terminal if live is None else live
        self.title_of = title_of
        self.clock = clock
        self.t0 = clock()
        self.rows: dict[str, TaskLine] = {}
        self._live: Live | None = None
        self._lock = threading.Lock()  # rich redraws from its own thread

    def __repr__(self) -> str:
        return f"<Progress tasks={len(self.rows)} live={self.live}>"

    def __enter__(self) -> Progress:
        if self.live:
            self._live = Live(
                get_renderable=self._view,
                console=self.console,
                refresh_per_second=4,
                transient=False,
            )
            self._live.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def _view(self) -> Table:
        with self._lock:
            rows = list(self.rows.values())
        return render_table(rows, self.clock())

    def __call__(self, event: Event) -> None:
        if event.task is None:
            return
        now = self.clock()
        with self._lock:
            row = self._row(event.task, now)
            self._apply(row, event, now)
        if self.live:
            if event.type in ("merged", "escalated"):
                style = "green" if event.type == "merged" else "red"
                self.console.print(f"[{style}]{event.type.upper()}[/] {event.task} {row.title}", highlight=False)
        else:
            line = plain_line(event, now - self.t0)
            if line is not None:
                self.console.print(line, highlight=False, markup=False, soft_wrap=True)  # a log line: never cut

    @staticmethod
    def _apply(row: TaskLine, event: Event, now: float) -> None:
        data = event.data
        if event.type == "transition":
            row.status = str(data.get("to", row.status))
            if "agent" in data:
                row.agent = str(data["agent"])
            if "attempt" in data:
                row.attempt = int(data["attempt"])
            row.ended = now if row.status in FINAL else None

    def _row(self, task: str, now: float) -> TaskLine:
        row = self.rows.get(task)
        if row is None:
            title = self.title_of(task) if self.title_of is not None else ""
            row = self.rows[task] = TaskLine(task, title=title, since=now)
        return row
