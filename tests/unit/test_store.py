"""Specification of the snapshot + journal store (agentos.store)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from agentos.graph import Event, Task
from agentos.store import (
    NOTIFIED_KEEP,
    SCHEMA,
    AlreadyRunning,
    CorruptState,
    DaemonState,
    JobRun,
    SchemaTooNew,
    StateError,
    Store,
)
from agentos.task_graph import TaskGraph
from agentos.testing import start_attempt

NOW = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)


def make_task(n: int, **fields: Any) -> Task:
    fields.setdefault("title", f"issue {n}")
    return Task(id=f"calc#{n}", repo="calc", issue=n, created_at=NOW, updated_at=NOW, **fields)


def touch(task: Task, note: str, at: datetime = NOW) -> Event:
    """Change ``task`` and return the event that says so."""
    task.note = note
    task.updated_at = at
    return Event(type="noted", task=task.id, ts=at, data={"note": note})


def open_store(state_dir: Path, **kwargs: Any) -> tuple[Store, TaskGraph, DaemonState]:
    store = Store(state_dir, **kwargs)
    store.lock()
    graph, daemon = store.load()
    return store, graph, daemon


def reload(state_dir: Path, **kwargs: Any) -> tuple[TaskGraph, DaemonState]:
    """Load ``state_dir`` the way a restarted daemon does (with the lock), then let go of it."""
    store = Store(state_dir, **kwargs)
    store.lock()
    try:
        return store.load()
    finally:
        store.close()


def journal_records(state_dir: Path) -> list[dict[str, Any]]:
    lines = (state_dir / "journal.jsonl").read_bytes().splitlines()
    return [json.loads(line) for line in lines]


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def store(state_dir: Path) -> Iterator[Store]:
    store = Store(state_dir)
    store.lock()
    store.load()
    yield store
    store.close()


class TestDaemonState:
    """The daemon's own state model."""

    def test_mark_notified_dedups(self) -> None:
        """A key is reported new once and already-sent after that."""
        state = DaemonState()
        assert state.mark_notified("digest:2026-11-24") is True
        assert state.mark_notified("digest:2026-11-24") is False
        assert state.notified == ["digest:2026-11-24"]

    def test_keeps_only_the_most_recent_keys(self) -> None:
        """Both marking and validation keep the last NOTIFIED_KEEP keys, dropping the oldest."""
        state = DaemonState(notified=[f"k{i}" for i in range(NOTIFIED_KEEP + 10)])
        assert len(state.notified) == NOTIFIED_KEEP
        assert state.notified[0] == "k10"
        state.mark_notified("new")
        assert len(state.notified) == NOTIFIED_KEEP
        assert state.notified[0] == "k11"
        assert state.notified[-1] == "new"


class TestRoundTrip:
    """Snapshot then load gives back the same state."""

    def test_empty_directory_loads_empty(self, state_dir: Path) -> None:
        """With no file at all the state is empty and the directory is created private."""
        graph, daemon = reload(state_dir)
        assert len(graph) == 0
        assert daemon == DaemonState()
        assert state_dir.stat().st_mode & 0o777 == 0o700

    def test_snapshot_round_trip(self, store: Store, state_dir: Path) -> None:
        """Tasks with attempts and every daemon field survive a snapshot and a fresh load."""
        task = make_task(1, goal="add", depends_on=["calc#0"])
        start_attempt(task, "claude", NOW)
        graph = TaskGraph([task, make_task(2, priority="high")])
        daemon = DaemonState(
            paused=True,
            disabled_jobs=["digest"],
            disabled_repos=["old"],
            job_runs={"dispatch": JobRun(last_run=NOW, last_success=NOW, runs=3, failures=1, last_error="boom")},
            paused_agents={"claude": NOW + timedelta(hours=1)},
            notified=["a", "b"],
        )
        store.snapshot(graph, daemon)
        store.close()
        loaded, loaded_daemon = reload(state_dir)
        assert [t.model_dump() for t in loaded] == [t.model_dump() for t in graph]
        assert loaded_daemon == daemon
        snapshot = json.loads((state_dir / "graph.json").read_bytes())
        assert (snapshot["schema"], snapshot["seq"]) == (SCHEMA, 0)
        assert (state_dir / "graph.json").stat().st_mode & 0o777 == 0o600

    def test_loaded_tasks_are_compact_and_still_change_and_journal(self, store: Store, state_dir: Path) -> None:
        """Tasks from the snapshot and from journal replay share their field bookkeeping (2 KB a model
        instance otherwise, issue 10); changing one after the restart is journalled and reloads the same."""
        tasks = [make_task(n) for n in (1, 2, 3)]
        for task in tasks:
            start_attempt(task, "claude", NOW)
        store.snapshot(TaskGraph(tasks), DaemonState())
        store.append([touch(tasks[0], "replayed")], [tasks[0]])
        store.close()
        store, graph, _ = open_store(state_dir)
        one, two, three = graph.get("calc#1"), graph.get("calc#2"), graph.get("calc#3")
        assert one.note == "replayed"
        assert one.model_fields_set is two.model_fields_set is three.model_fields_set
        assert one.attempts[0].model_fields_set is two.attempts[0].model_fields_set
        two.attempts[0].summary = "after the restart"
        store.append([touch(two, "changed after the restart")], [two])
        store.close()
        again, _ = reload(state_dir)
        assert [t.model_dump() for t in again] == [t.model_dump() for t in graph]
        assert again.get("calc#3").attempts[0].summary == ""


class TestJournal:
    """Appends are journal lines that a load replays over the snapshot."""

    def test_replay_after_append_without_snapshot(self, store: Store, state_dir: Path) -> None:
        """Changes appended after the last snapshot are all there after a restart."""
        graph = TaskGraph([make_task(1), make_task(2)])
        store.snapshot(graph, DaemonState())
        first = graph.get("calc#1")
        assert store.append([touch(first, "one")], [first]) == 1
        second = graph.get("calc#2")
        assert store.append([touch(second, "two"), touch(first, "three")], [first, second]) == 3
        store.close()
        loaded, _ = reload(state_dir)
        assert loaded.get("calc#1").note == "three"
        assert loaded.get("calc#2").note == "two"

    def test_one_line_per_event_with_the_task_on_its_last_event(self, store: Store, state_dir: Path) -> None:
        """Each event is a line; a changed task rides on the last event naming it, others get upsert lines."""
        a, b, c = make_task(1), make_task(2), make_task(3)
        events = [touch(a, "x"), touch(a, "y"), Event(type="tick", ts=NOW)]
        store.append(events, [a, b, c])
        records = journal_records(state_dir)
        assert [(r["seq"], r["type"], r["task"]) for r in records] == [
            (1, "noted", "calc#1"),
            (2, "noted", "calc#1"),
            (3, "tick", None),
            (4, "task_upsert", "calc#2"),
            (5, "task_upsert", "calc#3"),
        ]
        assert ["task_state" in r for r in records] == [False, True, False, True, True]
        assert {r["upto"] for r in records} == {5}
        assert all(r["schema"] == SCHEMA for r in records)

    def test_new_task_without_event_is_upserted(self, store: Store, state_dir: Path) -> None:
        """A task passed without an event still reaches the state."""
        store.append([], [make_task(7, title="fresh")])
        store.close()
        loaded, _ = reload(state_dir)
        assert loaded.get("calc#7").title == "fresh"

    def test_daemon_changes_are_journaled(self, store: Store, state_dir: Path) -> None:
        """A daemon-only change is a daemon_update line, replayed on load."""
        daemon = DaemonState()
        daemon.paused = True
        daemon.job_runs["dispatch"] = JobRun(last_run=NOW, runs=1)
        store.append([], daemon=daemon)
        assert journal_records(state_dir)[-1]["type"] == "daemon_update"
        store.close()
        _, loaded = reload(state_dir)
        assert loaded == daemon

    def test_notifications_cost_the_change_not_the_list(self, store: Store, state_dir: Path) -> None:
        """With 5000 keys remembered, one more notification writes a short line and still replays exactly."""
        daemon = DaemonState(notified=[f"key-{i:05d}" for i in range(NOTIFIED_KEEP)])
        store.append([], daemon=daemon)
        size = (state_dir / "journal.jsonl").stat().st_size
        daemon.mark_notified("key-new")
        store.append([], daemon=daemon)
        assert (state_dir / "journal.jsonl").stat().st_size - size < 300
        store.close()
        _, loaded = reload(state_dir)
        assert loaded.notified == daemon.notified

    def test_nothing_to_record_writes_nothing(self, store: Store, state_dir: Path) -> None:
        """An append with no events, no tasks and an unchanged daemon state returns the current seq."""
        store.append([], [make_task(1)])
        assert store.append([], daemon=DaemonState()) == 1
        assert len(journal_records(state_dir)) == 1

    def test_seq_continues_after_restart(self, store: Store, state_dir: Path) -> None:
        """A restarted store numbers its next line after the last durable one."""
        task = make_task(1)
        store.append([touch(task, "a")], [task])
        store.close()
        again, graph, _ = open_store(state_dir)
        task = graph.get("calc#1")
        assert again.append([touch(task, "b")], [task]) == 2
        again.close()

    def test_lines_already_in_the_snapshot_are_ignored(self, store: Store, state_dir: Path) -> None:
        """A journal left behind by a crash between snapshot and truncation does not re-apply old states."""
        task = make_task(1)
        graph = TaskGraph([task])
        store.append([touch(task, "old")], [task])
        stale = (state_dir / "journal.jsonl").read_bytes()
        task.note = "newer, not journaled"
        store.snapshot(graph, DaemonState())
        (state_dir / "journal.jsonl").write_bytes(stale)
        store.close()
        loaded, _ = reload(state_dir)
        assert loaded.get("calc#1").note == "newer, not journaled"

    def test_writing_needs_the_lock_and_a_load(self, state_dir: Path) -> None:
        """append and snapshot refuse to run on a store that is not locked and loaded."""
        store = Store(state_dir)
        store.load()
        with pytest.raises(StateError, match="lock"):
            store.append([Event(type="tick", ts=NOW)])
        store.lock()
        with pytest.raises(StateError, match="load"):
            store.snapshot(TaskGraph(), DaemonState())
        store.close()

    def test_failed_fsync_stops_further_writes(self, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
        """After an fsync error the journal is untrusted: that append and every later one raise StateError."""

        def failing_fsync(fd: int) -> None:
            raise OSError(5, "Input/output error")

        store.append([Event(type="tick", ts=NOW)])  # the journal exists and is open
        monkeypatch.setattr(os, "fsync", failing_fsync)
        with pytest.raises(StateError, match=r"journal\.jsonl: fsync failed"):
            store.append([Event(type="tick", ts=NOW)])
        monkeypatch.undo()
        with pytest.raises(StateError, match="restart"):
            store.append([Event(type="tick", ts=NOW)])


class TestTornTail:
    """A crash mid-append leaves a torn tail that load drops."""

    def test_torn_last_line_is_dropped_with_a_warning(self, store: Store, state_dir: Path) -> None:
        """A half-written last line is dropped, logged, cut from the file, and its seq is reused."""
        task = make_task(1)
        store.append([touch(task, "kept")], [task])
        store.close()
        journal = state_dir / "journal.jsonl"
        good = journal.read_bytes()
        journal.write_bytes(good + b'{"seq":2,"ts":"2026-11-24T09:30:00Z","type":"noted","task":"ca')
        with capture_logs() as logs:
            again, graph, _ = open_store(state_dir)
        assert graph.get("calc#1").note == "kept"
        assert any(entry["event"] == "journal_torn_tail_dropped" for entry in logs)
        assert journal.read_bytes() == good
        task = graph.get("calc#1")
        assert again.append([touch(task, "after")], [task]) == 2
        again.close()
        assert reload(state_dir)[0].get("calc#1").note == "after"

    def test_unfinished_batch_is_dropped_whole(self, store: Store, state_dir: Path) -> None:
        """When a multi-line append lost its last line, none of its lines are applied."""
        a, b = make_task(1), make_task(2)
        store.append([], [a, b])
        store.append([touch(a, "a2"), touch(b, "b2")], [a, b])
        store.close()
        journal = state_dir / "journal.jsonl"
        lines = journal.read_bytes().splitlines(keepends=True)
        journal.write_bytes(b"".join(lines[:-1]))
        loaded, _ = reload(state_dir)
        assert (loaded.get("calc#1").note, loaded.get("calc#2").note) == ("", "")

    def test_damage_before_whole_lines_is_an_error(self, store: Store, state_dir: Path) -> None:
        """A bad line followed by a whole one is corruption, not a torn tail: CorruptState names the file."""
        task = make_task(1)
        for note in ("a", "b", "c"):
            store.append([touch(task, note)], [task])
        store.close()
        journal = state_dir / "journal.jsonl"
        lines = journal.read_bytes().splitlines(keepends=True)
        journal.write_bytes(lines[0] + b"garbage\n" + lines[2])
        with pytest.raises(CorruptState, match=r"journal\.jsonl: line 2"):
            reload(state_dir)

    def test_read_only_load_repairs_nothing(self, store: Store, state_dir: Path) -> None:
        """A load without the lock sees the state but leaves the torn tail on disk."""
        task = make_task(1)
        store.append([touch(task, "kept")], [task])
        store.close()
        journal = state_dir / "journal.jsonl"
        torn = journal.read_bytes() + b'{"seq":2,'
        journal.write_bytes(torn)
        graph, _ = Store(state_dir).load()
        assert graph.get("calc#1").note == "kept"
        assert journal.read_bytes() == torn


class TestCorruptSnapshot:
    """A snapshot that does not parse is an error, never an empty state."""

    def test_corrupt_snapshot_is_quarantined(self, store: Store, state_dir: Path) -> None:
        """Unparseable graph.json raises CorruptState naming it and is renamed graph.json.corrupt-<ts>."""
        store.snapshot(TaskGraph([make_task(1)]), DaemonState())
        store.close()
        (state_dir / "graph.json").write_bytes(b'{"schema": 1, "seq": 0, "tasks": [')
        clock = datetime(2026, 11, 24, 10, 0, 5, tzinfo=UTC)
        with pytest.raises(CorruptState, match=r"graph\.json: not valid JSON") as caught:
            reload(state_dir, clock=lambda: clock)
        assert "\n" not in str(caught.value)
        assert not (state_dir / "graph.json").exists()
        assert (state_dir / "graph.json.corrupt-20261124T100005Z").exists()

    def test_invalid_snapshot_is_quarantined(self, store: Store, state_dir: Path) -> None:
        """Valid JSON that fails validation is treated the same way."""
        store.snapshot(TaskGraph([make_task(1)]), DaemonState())
        store.close()
        doc = json.loads((state_dir / "graph.json").read_bytes())
        doc["tasks"][0]["status"] = "exploded"
        (state_dir / "graph.json").write_text(json.dumps(doc))
        with pytest.raises(CorruptState, match=r"tasks\.0\.status"):
            reload(state_dir)
        assert list(state_dir.glob("graph.json.corrupt-*"))

    def test_invalid_task_deep_in_the_snapshot_is_named_with_every_error_counted(
        self, store: Store, state_dir: Path
    ) -> None:
        """Tasks are read one by one, but the error still names the first bad task's place and counts the rest."""
        store.snapshot(TaskGraph([make_task(n) for n in range(1, 6)]), DaemonState())
        store.close()
        doc = json.loads((state_dir / "graph.json").read_bytes())
        doc["tasks"][2]["status"] = "exploded"
        doc["tasks"][2]["issue"] = "three"
        doc["tasks"][4]["created_at"] = "yesterday"
        (state_dir / "graph.json").write_text(json.dumps(doc))
        with pytest.raises(CorruptState, match=r"invalid state: tasks\.2\.issue: .* \(\+2 more\)"):
            reload(state_dir)

    def test_next_start_falls_back_to_the_backup(self, store: Store, state_dir: Path) -> None:
        """After quarantining, the next load uses graph.json.bak plus rotated history and journal."""
        task = make_task(1)
        graph = TaskGraph([task])
        store.snapshot(graph, DaemonState())
        store.append([touch(task, "in history")], [task])
        store.snapshot(graph, DaemonState())
        store.append([touch(task, "in journal")], [task])
        store.close()
        (state_dir / "graph.json").write_bytes(b"\x00" * 64)
        with pytest.raises(CorruptState):
            reload(state_dir)
        again, loaded, _ = open_store(state_dir)
        assert loaded.get("calc#1").note == "in journal"
        assert again.needs_snapshot
        again.close()

    def test_never_empty_when_every_snapshot_was_quarantined(self, state_dir: Path) -> None:
        """With graph.json and its backup both quarantined, load refuses to start from nothing."""
        state_dir.mkdir()
        (state_dir / "graph.json.corrupt-20261124T100005Z").write_bytes(b"junk")
        with pytest.raises(CorruptState, match="quarantined"):
            reload(state_dir)

    def test_leftover_temp_files_are_removed(self, store: Store, state_dir: Path) -> None:
        """Temp files from a snapshot cut short are deleted by the next locked load."""
        store.close()
        leftover = state_dir / ".graph.json.abc123.tmp"
        leftover.write_bytes(b"{")
        reload(state_dir)
        assert not leftover.exists()


class TestBackup:
    """graph.json.bak is the previous snapshot and the fallback when graph.json is gone."""

    def test_backup_used_when_snapshot_missing(self, store: Store, state_dir: Path) -> None:
        """With graph.json missing and .bak present, the state comes from .bak (bridged by events/)."""
        task = make_task(1)
        graph = TaskGraph([task])
        store.snapshot(graph, DaemonState())
        store.append([touch(task, "second")], [task])
        store.snapshot(graph, DaemonState(paused=True))
        store.close()
        assert json.loads((state_dir / "graph.json.bak").read_bytes())["seq"] == 0
        (state_dir / "graph.json").unlink()
        with capture_logs() as logs:
            loaded, daemon = reload(state_dir)
        assert loaded.get("calc#1").note == "second"
        assert any(entry["event"] == "snapshot_fallback" for entry in logs)
        assert daemon.paused is False  # the un-journaled pause lived only in the lost snapshot

    def test_gap_that_history_cannot_bridge_is_an_error(self, store: Store, state_dir: Path) -> None:
        """When changes between the backup and the journal are gone, load raises instead of guessing."""
        task = make_task(1)
        graph = TaskGraph([task])
        store.snapshot(graph, DaemonState())
        store.append([touch(task, "lost")], [task])
        store.snapshot(graph, DaemonState())
        store.append([touch(task, "journal")], [task])
        store.close()
        (state_dir / "graph.json").unlink()
        for path in (state_dir / "events").iterdir():
            path.unlink()
        with pytest.raises(CorruptState, match="missing"):
            reload(state_dir)


class TestSchema:
    """Files carry a schema number; old ones are migrated, newer ones refused."""

    @staticmethod
    def v0_to_v1(doc: dict[str, Any]) -> dict[str, Any]:
        """Schema 0 called the title "name"."""
        for task in doc["tasks"]:
            task["title"] = task.pop("name")
        return doc

    def test_migration_hook_applied(self, state_dir: Path) -> None:
        """A schema-0 snapshot and schema-0 journal lines are migrated through the chain before validation."""
        state_dir.mkdir()
        old = make_task(1).model_dump(mode="json")
        old["name"] = old.pop("title")
        doc = {"schema": 0, "seq": 1, "tasks": [old], "daemon": {}}
        (state_dir / "graph.json").write_text(json.dumps(doc))
        newer = dict(old, id="calc#2", issue=2, name="from journal")
        line = {
            "seq": 2,
            "ts": NOW.isoformat(),
            "type": "task_upsert",
            "task": "calc#2",
            "data": {},
            "task_state": newer,
            "schema": 0,
        }
        (state_dir / "journal.jsonl").write_text(json.dumps(line) + "\n")
        store, graph, _ = open_store(state_dir, migrations={0: self.v0_to_v1})
        assert graph.get("calc#1").title == "issue 1"
        assert graph.get("calc#2").title == "from journal"
        assert store.needs_snapshot
        store.close()

    def test_missing_migration_is_an_error(self, state_dir: Path) -> None:
        """An old schema with no migration step raises StateError and leaves the file alone."""
        state_dir.mkdir()
        (state_dir / "graph.json").write_text(json.dumps({"schema": 0, "seq": 0, "tasks": [], "daemon": {}}))
        with pytest.raises(StateError, match="no migration from schema 0"):
            reload(state_dir, migrations={})
        assert (state_dir / "graph.json").exists()

    def test_newer_snapshot_refused(self, state_dir: Path) -> None:
        """A snapshot from a newer agentos raises SchemaTooNew and is not quarantined."""
        state_dir.mkdir()
        doc = {"schema": SCHEMA + 1, "seq": 0, "tasks": [], "daemon": {}}
        (state_dir / "graph.json").write_text(json.dumps(doc))
        with pytest.raises(SchemaTooNew, match=r"graph\.json has schema 2"):
            reload(state_dir)
        assert (state_dir / "graph.json").exists()

    def test_newer_journal_line_refused(self, state_dir: Path) -> None:
        """A journal line from a newer agentos raises SchemaTooNew naming the journal."""
        state_dir.mkdir()
        line = {"seq": 1, "ts": NOW.isoformat(), "type": "tick", "task": None, "data": {}, "schema": SCHEMA + 1}
        (state_dir / "journal.jsonl").write_text(json.dumps(line) + "\n")
        with pytest.raises(SchemaTooNew, match=r"journal\.jsonl"):
            reload(state_dir)


HOLDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from agentos.store import Store
    store = Store(Path(sys.argv[1]))
    store.lock()
    print("locked", flush=True)
    sys.stdin.read()
    """
)


class TestLock:
    """One daemon per state directory."""

    def test_lock_refuses_a_second_holder(self, state_dir: Path) -> None:
        """While another process holds the lock, lock() raises AlreadyRunning naming its pid and the directory."""
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(state_dir)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().strip() == "locked"
            with pytest.raises(AlreadyRunning) as caught:
                Store(state_dir).lock()
            assert str(caught.value) == (
                f"another agentos daemon (pid {holder.pid}) is using {state_dir}; stop it first"
            )
        finally:
            holder.communicate("")
        store = Store(state_dir)
        store.lock()  # released when the holder exited
        store.close()

    def test_second_store_in_the_same_process_is_refused(self, store: Store, state_dir: Path) -> None:
        """The lock is per open file, so a second Store in the same process is refused too, until close()."""
        with pytest.raises(AlreadyRunning, match=str(os.getpid())):
            Store(state_dir).lock()
        store.close()
        with Store(state_dir) as again:
            assert "locked" in repr(again)


class TestCompaction:
    """Snapshots truncate the journal and move its lines to events/ for the loops."""

    def test_maybe_compact_waits_for_the_threshold(self, store: Store, state_dir: Path) -> None:
        """maybe_compact snapshots only when the journal holds more than ``every`` lines."""
        task = make_task(1)
        graph = TaskGraph([task])
        for i in range(3):
            store.append([touch(task, str(i))], [task])
        assert store.maybe_compact(graph, DaemonState(), every=3) is False
        store.append([touch(task, "3")], [task])
        assert store.maybe_compact(graph, DaemonState(), every=3) is True
        assert store.journal_lines == 0
        assert (state_dir / "journal.jsonl").stat().st_size == 0
        assert json.loads((state_dir / "graph.json").read_bytes())["seq"] == 4

    def test_compaction_keeps_events_readable(self, store: Store, state_dir: Path) -> None:
        """iter_events returns rotated and current events in order, by day file, from ``since`` on."""
        task = make_task(1)
        graph = TaskGraph([task])
        day1, day2 = NOW - timedelta(days=1), NOW
        store.append([touch(task, "a", day1)], [task])
        store.append([touch(task, "b", day2)], [task])
        store.snapshot(graph, DaemonState())
        store.append([touch(task, "c", day2 + timedelta(minutes=1))], [task])
        store.append([], [make_task(2)])  # a state-only line is not an event
        assert sorted(p.name for p in (state_dir / "events").iterdir()) == [
            "events-2026-11-23.jsonl",
            "events-2026-11-24.jsonl",
        ]
        notes = [e.data["note"] for e in store.iter_events(NOW - timedelta(days=7))]
        assert notes == ["a", "b", "c"]
        assert [e.data["note"] for e in store.iter_events(day2)] == ["b", "c"]
        records = list(store.iter_records(day1, include_state=True))
        assert [r.seq for r in records] == [1, 2, 3, 4]
        assert records[-1].event.type == "task_upsert"

    def test_rotation_after_a_crash_does_not_duplicate_history(self, store: Store, state_dir: Path) -> None:
        """Lines a crashed compaction already copied to events/ are not copied again."""
        task = make_task(1)
        graph = TaskGraph([task])
        store.append([touch(task, "a")], [task])
        journal = (state_dir / "journal.jsonl").read_bytes()
        store.snapshot(graph, DaemonState())
        store.close()
        (state_dir / "journal.jsonl").write_bytes(journal)  # as if we died before truncating
        again, graph, daemon = open_store(state_dir)
        again.snapshot(graph, daemon)
        history = (state_dir / "events" / "events-2026-11-24.jsonl").read_bytes().splitlines()
        assert [json.loads(line)["seq"] for line in history] == [1]
        again.close()

    def test_prune_deletes_old_history_files(self, store: Store, state_dir: Path) -> None:
        """prune_events removes day files entirely older than the cut-off and keeps the rest."""
        task = make_task(1)
        for days in (10, 3, 0):
            store.append([touch(task, str(days), NOW - timedelta(days=days))], [task])
        store.snapshot(TaskGraph([task]), DaemonState())
        removed = store.prune_events(NOW - timedelta(days=7))
        assert [p.name for p in removed] == ["events-2026-11-14.jsonl"]
        assert [e.data["note"] for e in store.iter_events(NOW - timedelta(days=30))] == ["3", "0"]
