"""The state writer: every change journalled before it is acted on, and the write hold after a failed write.

The disk here is a real store in a temporary directory whose writes fail with ``ENOSPC`` while ``full`` is set,
so the hold is tested without root (the tmpfs version is tests/reliability/test_resources.py).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agentos.graph import Event, Task
from agentos.state_writer import StateWriter
from agentos.store import DaemonState, StateError, Store
from agentos.task_graph import TaskGraph
from agentos.testing import RecordingNotifier

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class FullDiskStore(Store):
    """A real store whose appends and snapshots fail with ``ENOSPC`` while ``full`` is set."""

    full = False
    writes = 0

    def _refuse(self, what: str) -> None:
        self.writes += 1
        if self.full:
            err = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            raise StateError(f"{self.state_dir}: {what} failed: {err}") from err

    def append(self, events: Sequence[Event], tasks: Iterable[Task] = (), daemon: DaemonState | None = None) -> int:
        self._refuse("append")
        return super().append(events, tasks, daemon)

    def snapshot(self, graph: TaskGraph, daemon: DaemonState) -> None:
        self._refuse("snapshot")
        super().snapshot(graph, daemon)


@dataclass
class Rig:
    store: FullDiskStore
    writer: StateWriter
    notices: RecordingNotifier
    woken: list[str]
    clock: list[datetime]


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    store = FullDiskStore(tmp_path / "state")
    store.lock()
    graph, state = store.load()
    notices, woken, clock = RecordingNotifier(), [], [NOW]
    writer = StateWriter(store, graph, state, clock=lambda: clock[0], notify=notices, wake=woken.append)
    yield Rig(store, writer, notices, woken, clock)
    store.close()


def make_task(number: int) -> Task:
    return Task(
        id=Task.make_id("calc", number),
        repo="calc",
        issue=number,
        title=f"task {number}",
        created_at=NOW,
        updated_at=NOW,
    )


def on_disk(state_dir: Path) -> dict[str, str]:
    graph, _ = Store(state_dir).load()
    return {task.id: task.title for task in graph}


class TestCommit:
    def test_a_commit_is_on_disk_when_it_returns(self, rig: Rig) -> None:
        """A committed task is in the graph and in what a restart would load."""
        task = make_task(1)
        rig.writer.commit([rig.writer.event("task_created", task.id)], [task])
        assert task.id in rig.writer.graph
        assert on_disk(rig.store.state_dir) == {task.id: "task 1"}
        assert rig.writer.held is None

    def test_listeners_see_every_committed_and_recorded_event(self, rig: Rig) -> None:
        """A listener gets each event written, in order; one that raises breaks nothing."""
        seen: list[str] = []
        rig.writer.listeners.append(lambda e: seen.append(e.type))

        def broken(event: Event) -> None:
            raise RuntimeError("a listener bug")

        rig.writer.listeners.append(broken)
        task = make_task(1)
        rig.writer.commit([rig.writer.event("task_created", task.id)], [task])
        rig.writer.record("job_ran", job="dispatch")
        assert seen == ["task_created", "job_ran"]


class TestWriteHold:
    def test_a_full_disk_refuses_the_change_and_holds_every_later_write(self, rig: Rig) -> None:
        """ENOSPC: the change is refused, later commits are refused without touching the store, one sev1 notice
        names the path and its free space, and the state on disk stays the last good one."""
        first = make_task(1)
        rig.writer.commit([rig.writer.event("task_created", first.id)], [first])
        good = on_disk(rig.store.state_dir)

        rig.store.full = True
        first.title = "renamed while the disk was full"
        with pytest.raises(StateError, match="No space left"):
            rig.writer.commit([rig.writer.event("task_renamed", first.id)], [first])
        failure = rig.writer.write_failure
        assert failure is not None and failure.disk_full
        assert rig.writer.held is not None and "the disk is full" in rig.writer.held

        writes = rig.store.writes
        second = make_task(2)
        with pytest.raises(StateError, match="held"):
            rig.writer.commit([rig.writer.event("task_created", second.id)], [second])
        with pytest.raises(StateError, match="held"):
            rig.writer.save_state()
        rig.writer.record("job_failed", job="x")  # bookkeeping is only logged while held: it does not raise
        rig.writer.save_job_state()
        assert rig.store.writes == writes, "a held write touched the store"

        assert [n.severity for n in rig.notices.sent] == [1]
        alert = rig.notices.sent[0].text
        assert "disk is full" in alert and str(rig.store.state_dir) in alert and " free " in alert
        assert on_disk(rig.store.state_dir) == good
        assert rig.woken == []

    def test_retry_saves_a_snapshot_once_the_disk_has_room_and_wakes_the_dispatcher(self, rig: Rig) -> None:
        """While still full a retry stays held and says nothing; once the store works it writes everything made
        in memory since the failure, sends one "resumed" notice and wakes the dispatcher."""
        task = make_task(1)
        rig.writer.commit([rig.writer.event("task_created", task.id)], [task])
        rig.store.full = True
        task.title = "renamed while the disk was full"
        with pytest.raises(StateError):
            rig.writer.commit([rig.writer.event("task_renamed", task.id)], [task])

        assert rig.writer.retry_state_write() is False
        assert rig.writer.write_failure is not None and len(rig.notices.sent) == 1 and rig.woken == []

        rig.store.full = False
        rig.clock[0] = NOW + timedelta(minutes=5)
        assert rig.writer.retry_state_write() is True
        assert rig.writer.write_failure is None and rig.writer.held is None
        assert on_disk(rig.store.state_dir) == {task.id: "renamed while the disk was full"}
        assert [n.severity for n in rig.notices.sent] == [1, 1]
        assert "saves its state again" in rig.notices.sent[1].text
        assert rig.woken == ["dispatch"]

        later = make_task(2)
        rig.writer.commit([rig.writer.event("task_created", later.id)], [later])
        assert later.id in on_disk(rig.store.state_dir)

    def test_retry_without_a_failure_is_a_no_op(self, rig: Rig) -> None:
        """With nothing held, a retry reports success and writes or sends nothing."""
        writes = rig.store.writes
        assert rig.writer.retry_state_write() is True
        assert rig.store.writes == writes and rig.notices.sent == [] and rig.woken == []
