"""`agentos tasks`, `agentos task show` and `agentos logs` read a state directory written by the real Store."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentos.cli._common import console
from agentos.cli.main import app
from agentos.cli.views import follow_log, safe_id
from agentos.graph import Task, TaskStatus
from agentos.store import Store
from agentos.testing import end_attempt, start_attempt, transition

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _wide_console() -> Iterator[None]:
    """Tables as a wide terminal shows them (rich would otherwise assume 80 columns)."""
    old = console._width
    console.width = 200
    yield
    console._width = old


def task(n: int, title: str, repo: str = "calc") -> Task:
    return Task(id=Task.make_id(repo, n), repo=repo, issue=n, title=title, created_at=T0, updated_at=T0)


def write_log(state: Path, task_id: str, attempt: int, text: str) -> Path:
    path = state / "runs" / safe_id(task_id) / str(attempt) / "agent.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def state(tmp_path: Path) -> Path:
    """A state dir with a merged task (two attempts), an escalated one, and one still running."""
    state = tmp_path / "state"
    store = Store(state, fsync=False)
    store.lock()
    graph, daemon = store.load()
    merged, blocked, running = task(1, "Fix add()"), task(2, "Vague wish"), task(3, "Add a --verbose flag", "web")
    events = []
    for t in (merged, blocked, running):
        graph.put(t)
    a1, e = start_attempt(merged, "codex", T0)
    a1.run_dir = str(state / "runs" / safe_id(merged.id) / "1")
    events += [e, end_attempt(merged, T0 + timedelta(seconds=75), outcome="failed", blocker_code="test_failure")]
    events.append(transition(merged, TaskStatus.RETRYING, T0 + timedelta(seconds=76)))
    a2, e = start_attempt(merged, "claude", T0 + timedelta(minutes=2))
    a2.run_dir = str(state / "runs" / safe_id(merged.id) / "2")
    events.append(e)
    events.append(
        end_attempt(
            merged, T0 + timedelta(minutes=5), outcome="complete", tokens_in=1200, tokens_out=340, cost_usd=0.42
        )
    )
    merged.branch, merged.pr = "agentos/1-fix-add", 7
    events += [
        transition(merged, TaskStatus.VALIDATING, T0 + timedelta(minutes=5)),
        transition(merged, TaskStatus.PR_OPEN, T0 + timedelta(minutes=6)),
        transition(merged, TaskStatus.MERGED, T0 + timedelta(minutes=9)),
    ]
    _, e = start_attempt(blocked, "claude", T0 + timedelta(minutes=1))
    events += [e, end_attempt(blocked, T0 + timedelta(minutes=3), outcome="blocked", blocker_code="missing_context")]
    events.append(transition(blocked, TaskStatus.BLOCKED, T0 + timedelta(minutes=3)))
    _, e = start_attempt(running, "claude", T0 + timedelta(minutes=20))
    events.append(e)
    store.append(events[:4], [merged])
    store.snapshot(graph, daemon)  # half in the snapshot, half in the journal: the views must replay both
    store.append(events[4:], [merged, blocked, running])
    store.close()
    write_log(state, "calc#1", 1, "attempt one: tests failed\n")
    write_log(state, "calc#1", 2, "attempt two: all green\n")
    return state


@pytest.fixture
def config(tmp_path: Path, state: Path) -> Path:
    path = tmp_path / "agentos.yaml"
    path.write_text(
        f"state_dir: {state}\nforge: local\nrepos:\n"
        f"  - {{name: calc, path: {tmp_path}, test_command: 'true'}}\n"
        f"  - {{name: web, path: {tmp_path}, test_command: 'true'}}\n"
    )
    return path


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def stdout_lines(proc: subprocess.Popen[bytes]) -> queue.Queue[bytes]:
    """``proc``'s stdout, line by line as it prints them (``b""`` once it closes), read by a thread."""
    lines: queue.Queue[bytes] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in iter(proc.stdout.readline, b""):
            lines.put(line)
        lines.put(b"")

    threading.Thread(target=read, daemon=True).start()
    return lines


class TestTasks:
    def test_lists_every_task_newest_first_as_json(self, config: Path) -> None:
        """`tasks --json` reads snapshot and journal without a daemon and sorts by the last change."""
        code, out = run("tasks", "--config", str(config), "--json")
        assert code == 0, out
        rows = json.loads(out)
        assert [r["id"] for r in rows] == ["web#3", "calc#1", "calc#2"]
        merged = rows[1]
        assert merged["status"] == "merged" and merged["attempts"] == 2 and merged["pr"] == 7
        assert merged["agent"] == "claude" and merged["cost_usd"] == 0.42

    def test_filters_by_repo_and_status(self, config: Path) -> None:
        """--repo and --status narrow the list; an unknown status is refused with the valid ones."""
        _, out = run("tasks", "-c", str(config), "--repo", "calc", "--status", "blocked", "--json")
        assert [r["id"] for r in json.loads(out)] == ["calc#2"]
        code, out = run("tasks", "-c", str(config), "--status", "nope")
        assert code == 1 and "queued" in out

    def test_table_shows_ids_statuses_and_blockers(self, config: Path) -> None:
        """The table has one row per task with its status and last blocker code."""
        code, out = run("tasks", "-c", str(config))
        assert code == 0, out
        for text in ("calc#1", "merged", "calc#2", "blocked", "missing_context", "web#3", "running"):
            assert text in out

    def test_works_while_a_daemon_holds_the_lock(self, config: Path, state: Path) -> None:
        """The view never takes the lock, so a running daemon does not stop it (and it does not stop one)."""
        daemon = Store(state, fsync=False)
        daemon.lock()
        try:
            code, out = run("tasks", "-c", str(config), "--json")
        finally:
            daemon.close()
        assert code == 0 and len(json.loads(out)) == 3

    def test_no_state_yet_is_an_empty_list(self, tmp_path: Path) -> None:
        """A state dir that does not exist yet shows no tasks and is not created."""
        code, out = run("tasks", "--state-dir", str(tmp_path / "none"), "--json")
        assert code == 0 and json.loads(out) == []
        assert not (tmp_path / "none").exists()


class TestTaskShow:
    def test_shows_attempts_with_blockers_durations_tokens_cost_and_pr(self, config: Path, state: Path) -> None:
        """`task show` lists every attempt and the PR's place on the local forge."""
        code, out = run("task", "show", "calc#1", "-c", str(config))
        assert code == 0, out
        for text in ("Fix add()", "merged", "agentos/1-fix-add", "codex", "test_failure", "1m15s", "1200/340"):
            assert text in out
        assert "$0.42" in out and "pulls/7.json" in out
        assert str(state / "runs" / "calc-1" / "2") in out.replace("\n", "")

    def test_json_has_the_pr_url(self, config: Path) -> None:
        """The JSON form is the whole task plus the PR link."""
        _, out = run("task", "show", "calc#1", "-c", str(config), "--json")
        data = json.loads(out)
        assert data["pr_url"].startswith("file://") and data["attempts"][0]["blocker_code"] == "test_failure"

    def test_an_issue_number_is_enough_when_one_repo_has_it(self, config: Path) -> None:
        """`task show 3` finds web#3; an unknown id names the tasks there are."""
        code, out = run("task", "show", "3", "-c", str(config), "--json")
        assert code == 0 and json.loads(out)["id"] == "web#3"
        code, out = run("task", "show", "calc#99", "-c", str(config))
        assert code == 1 and "calc#1" in out


class TestLogs:
    def test_prints_the_last_attempts_log(self, config: Path) -> None:
        """Without --attempt the last attempt's agent.log is printed."""
        code, out = run("logs", "calc#1", "-c", str(config))
        assert code == 0 and out == "attempt two: all green\n"

    def test_prints_an_earlier_attempt(self, config: Path) -> None:
        """--attempt N picks that attempt; a number out of range is an error."""
        assert run("logs", "calc#1", "--attempt", "1", "-c", str(config)) == (0, "attempt one: tests failed\n")
        code, out = run("logs", "calc#1", "--attempt", "5", "-c", str(config))
        assert code == 1 and "attempts 1–2" in out

    def test_follow_prints_appended_lines_and_stops_when_the_attempt_ends(self, config: Path, state: Path) -> None:
        """`logs -f` follows the file while the attempt runs and exits 0 once the state says it ended."""
        daemon = Store(state, fsync=False)  # this test plays the daemon: it holds the lock (its pid is alive)
        daemon.lock()
        graph, _ = daemon.load()
        log = write_log(state, "web#3", 1, "line 1\n")
        proc = subprocess.Popen(
            [sys.executable, "-m", "agentos.cli.main", "logs", "web#3", "-f", "--poll", "0.05", "-c", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
        )
        lines = stdout_lines(proc)
        try:
            assert lines.get(timeout=20) == b"line 1\n"  # it is following now
            with log.open("a") as f:
                f.write("line 2\n")
            assert lines.get(timeout=20) == b"line 2\n"  # printed as it was appended, not at the end
            with log.open("a") as f:
                f.write("line 3\n")
            assert lines.get(timeout=20) == b"line 3\n"
            running = graph.get("web#3")
            ended = end_attempt(running, datetime.now(UTC), outcome="partial", blocker_code="timeout")
            daemon.append([ended], [running])
            proc.wait(timeout=20)
            assert proc.stderr is not None
            err = proc.stderr.read()
        finally:
            proc.kill()
            daemon.close()
        assert proc.returncode == 0, err
        assert lines.get(timeout=20) == b""  # nothing more: its output ended
        assert "attempt 1 ended: partial (timeout)" in err.decode()

    def test_follow_stops_on_ctrl_c_with_exit_code_0(self, config: Path, state: Path) -> None:
        """Ctrl-C (SIGINT) ends `logs -f` quietly."""
        daemon = Store(state, fsync=False)
        daemon.lock()
        write_log(state, "web#3", 1, "working\n")
        proc = subprocess.Popen(
            [sys.executable, "-m", "agentos.cli.main", "logs", "web#3", "-f", "--poll", "0.05", "-c", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
        )
        try:
            deadline = time.monotonic() + 10
            while proc.stdout is not None and time.monotonic() < deadline:
                if proc.stdout.readline():
                    break
            os.kill(proc.pid, signal.SIGINT)
            _, err = proc.communicate(timeout=10)
        finally:
            proc.kill()
            daemon.close()
        assert proc.returncode == 0, err

    def test_follow_stops_when_the_daemon_is_gone(self, config: Path, state: Path) -> None:
        """With no live daemon an attempt stays 'running' forever, so following stops at once and says why."""
        (state / "agentos.lock").write_text("999999999\n")
        write_log(state, "web#3", 1, "half done\n")
        code, out = run("logs", "web#3", "-f", "-c", str(config), "--poll", "0.01")
        assert code == 0 and "half done" in out and "daemon is not running" in out


class TestFollowLog:
    def test_gives_up_at_its_time_limit(self, tmp_path: Path) -> None:
        """follow_log is bounded: past timeout_s it returns False having printed what there was."""
        path = tmp_path / "agent.log"
        path.write_text("a\n")
        now = [0.0]

        class Sink:
            data = b""

            def write(self, chunk: bytes) -> int:
                Sink.data += chunk
                return len(chunk)

            def flush(self) -> None:
                pass

        def sleep(seconds: float) -> None:
            now[0] += seconds
            with path.open("a") as f:
                f.write("more\n")

        done = follow_log(path, Sink(), lambda: False, poll_s=1, timeout_s=3, sleep=sleep, clock=lambda: now[0])  # type: ignore[arg-type]
        assert done is False and Sink.data == b"a\n" + b"more\n" * 3

    def test_waits_for_a_log_that_does_not_exist_yet(self, tmp_path: Path) -> None:
        """A log created after following starts is printed from its first byte."""
        path = tmp_path / "agent.log"
        calls = [0]
        out: list[bytes] = []

        class Sink:
            def write(self, chunk: bytes) -> int:
                out.append(chunk)
                return len(chunk)

            def flush(self) -> None:
                pass

        def ended() -> bool:
            calls[0] += 1
            if calls[0] == 2:
                path.write_text("hello\n")
            return calls[0] >= 3

        assert follow_log(path, Sink(), ended, poll_s=0, sleep=lambda s: None) is True  # type: ignore[arg-type]
        assert b"".join(out) == b"hello\n"
