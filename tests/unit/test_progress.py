"""The progress display: the live table renderer, the plain log lines, and the listener that picks one."""

from __future__ import annotations

import io
from datetime import UTC, datetime

from rich.console import Console

from agentos.graph import Event
from agentos.progress import Progress, TaskLine, plain_line, render_table

TS = datetime(2026, 1, 5, 12, tzinfo=UTC)


def ev(type_: str, task: str = "calc#1", **data: object) -> Event:
    return Event(type=type_, task=task, ts=TS, data=data)


def text_of(renderable: object, width: int = 120) -> str:
    out = io.StringIO()
    Console(file=out, width=width, force_terminal=False, color_system=None).print(renderable)
    return out.getvalue()


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class TestRenderTable:
    def test_one_line_per_task_with_status_agent_attempt_and_elapsed(self) -> None:
        """Each task is a line: id, status, agent, attempt and a m:ss clock (frozen once it ended)."""
        rows = [
            TaskLine("calc#1", title="Fix add", status="running", agent="claude", attempt=2, since=35.0),
            TaskLine("calc#2", title="Multiply", status="merged", agent="codex", attempt=1, since=0.0, ended=30.0),
        ]
        lines = text_of(render_table(rows, now=100.0)).splitlines()
        first = next(line for line in lines if "calc#1" in line)
        second = next(line for line in lines if "calc#2" in line)
        assert first.split()[:5] == ["calc#1", "running", "claude", "2", "1:05"] and "Fix add" in first
        assert second.split()[:5] == ["calc#2", "merged", "codex", "1", "0:30"]

    def test_no_tasks_yet_says_so(self) -> None:
        assert "(waiting for ready issues)" in text_of(render_table([], now=0.0))

    def test_hours_for_long_work(self) -> None:
        rows = [TaskLine("calc#1", status="running", since=0.0)]
        assert "2h05" in text_of(render_table(rows, now=7500.0))


class TestPlainLine:
    def test_transition_line_keeps_the_timeline_format(self) -> None:
        """The demo's timeline format: time, task padded to 10, from → to, then the details."""
        line = plain_line(ev("transition", **{"from": "queued", "to": "running", "agent": "demo", "attempt": 1}), 3.2)
        assert line == "   3.2s  calc#1     queued → running  agent=demo attempt=1"

    def test_attempt_and_outcome_lines(self) -> None:
        ended = ev("attempt_ended", attempt=1, agent="demo", outcome="blocked", blocker_code="missing_context")
        assert plain_line(ended, 1.0) == "   1.0s  calc#1     attempt 1 by demo: blocked (missing_context)"
        assert plain_line(ev("merged"), 2.0) == "   2.0s  calc#1     MERGED"

    def test_other_events_make_no_line(self) -> None:
        assert plain_line(ev("job_failed", task=None), 1.0) is None


class TestProgress:
    def test_without_a_terminal_every_change_is_one_plain_line(self) -> None:
        """Off a TTY no live view is drawn: each event is one line, and the rows still follow the task."""
        out = io.StringIO()
        clock = FakeClock()
        progress = Progress(Console(file=out, width=120), title_of=lambda _id: "Fix add", clock=clock)
        assert progress.live is False
        with progress:
            clock.now = 101.5
            progress(ev("task_created"))
            progress(ev("transition", **{"from": "queued", "to": "running", "agent": "demo", "attempt": 1}))
            clock.now = 110.0
            progress(ev("transition", **{"from": "pr_open", "to": "merged"}))
            progress(ev("merged"))
        assert out.getvalue().splitlines() == [
            "   1.5s  calc#1     task created",
            "   1.5s  calc#1     queued → running  agent=demo attempt=1",
            "  10.0s  calc#1     pr_open → merged",
            "  10.0s  calc#1     MERGED",
        ]
        row = progress.rows["calc#1"]
        assert (row.status, row.agent, row.attempt, row.title) == ("merged", "demo", 1, "Fix add")
        assert row.elapsed(500.0) == 8.5

    def test_a_long_plain_line_is_not_wrapped(self) -> None:
        """A pipe's console is 80 columns wide; a log line longer than that stays one line (grep-able)."""
        out = io.StringIO()
        progress = Progress(Console(file=out, width=80), title_of=lambda _id: "x", clock=FakeClock())
        with progress:
            progress(ev("transition", **{"from": "running", "to": "blocked", "reason": "max_attempts " + "r" * 60}))
        assert len(out.getvalue().splitlines()) == 1

    def test_on_a_terminal_only_outcomes_are_printed_above_the_live_view(self) -> None:
        """With a TTY the live table carries the states; merges and escalations are also printed once."""
        out = io.StringIO()
        console = Console(file=out, width=100, force_terminal=True, color_system=None)
        progress = Progress(console, clock=FakeClock())
        assert progress.live is True
        with progress:
            progress(ev("transition", **{"from": "queued", "to": "running", "agent": "demo", "attempt": 1}))
            progress(ev("escalated"))
        text = out.getvalue()
        assert "ESCALATED calc#1" in text and "queued → running" not in text
        assert "calc#1" in text and "running" in text
