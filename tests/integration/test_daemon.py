"""The daemon as operators meet it: a real ``agentos run`` process, a real control socket, real signals.

Every test starts ``agentos run --config <tmp config>`` as a subprocess (its state dir, control socket
and notify socket in temp dirs) and steers it with ``agentos ctl … --json`` subprocesses or the
socket's ``request()`` helper. Waits are bounded polls (a few seconds at most), never fixed sleeps.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agentos.control.socket import request
from agentos.errors import ControlError
from agentos.graph import Event
from agentos.store import Store
from tests.waiting import wait_until

AGENTOS = Path(sys.executable).parent / "agentos"
START_TIMEOUT = 15.0
GRACE_S = 1.0
NOBODY = 65534


def agentos(*args: str) -> list[str]:
    """The command line of the installed ``agentos`` script (or the module, when it is not installed)."""
    if AGENTOS.exists():
        return [str(AGENTOS), *args]
    return [sys.executable, "-m", "agentos.cli.main", *args]


def write_config(
    path: Path,
    state_dir: Path,
    repo: Path | None,
    *,
    workers: int = 2,
    agent_argv: list[str] | None = None,
    extra: str = "",
) -> Path:
    argv = agent_argv or [sys.executable, "-c", "print('nothing to do')", "{prompt_file}"]
    repos = (
        f"repos:\n  - name: calc\n    path: {repo}\n    test_command: 'true'\n" if repo is not None else "repos: []\n"
    )
    path.write_text(
        "# the daemon test's config\n"
        f"state_dir: {state_dir}\n"
        f"max_parallel_workers: {workers}   # edited by the reload tests\n"
        f"{repos}"
        "agents:\n"
        "  sleeper:\n"
        "    kind: command\n"
        f"    argv: {json.dumps(argv)}\n"
        "routing:\n"
        "  default: [sleeper]\n"
        "  max_attempts: 1\n"
        "limits:\n"
        f"  shutdown_grace_s: {GRACE_S}\n"
        "  kill_grace_s: 0.5\n"
        f"{extra}",
        encoding="utf-8",
    )
    return path


def parse_log(text: str) -> list[dict[str, Any]]:
    """The daemon's JSON log lines (``<prio>{...}``); anything else (a plain message) is skipped."""
    events = []
    for line in text.splitlines():
        if line.startswith("<") and ">" in line:
            try:
                events.append(json.loads(line.split(">", 1)[1]))
            except ValueError:
                continue
    return events


@dataclass
class Daemon:
    """A running ``agentos run`` process and the ways to talk to it."""

    proc: subprocess.Popen[bytes]
    log: Path
    socket: Path
    env: dict[str, str]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def events(self, name: str) -> list[dict[str, Any]]:
        return [e for e in parse_log(self.output()) if e.get("event") == name]

    def wait_for_event(self, name: str, timeout: float = 5.0) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            self._check_alive()
            found = self.events(name)
            return found[-1] if found else None

        return wait_until(probe, what=f"log event {name!r}", timeout=timeout)

    def _check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"the daemon exited with {self.proc.returncode}:\n{self.output()}")

    def request(self, cmd: str, args: dict[str, Any] | None = None) -> Any:
        return request(self.socket, cmd, args, timeout=10)

    def wait_ready(self) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            self._check_alive()
            status: dict[str, Any] = self.request("status")
            return status

        return wait_until(
            probe, what="the daemon to answer status", timeout=START_TIMEOUT, retry=(ControlError, OSError)
        )

    def ctl(self, *args: str, ok: bool = True) -> Any:
        """``agentos ctl ARGS --json``: its parsed JSON output (``ok=False``: the completed process)."""
        done = subprocess.run(agentos("ctl", *args, "--json"), env=self.env, capture_output=True, text=True, timeout=30)
        if not ok:
            return done
        assert done.returncode == 0, f"ctl {' '.join(args)} exited {done.returncode}: {done.stderr}"
        return json.loads(done.stdout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = GRACE_S + 5) -> tuple[int, float]:
        """Send ``sig`` and wait for the exit: ``(exit code, seconds it took)``."""
        started = time.monotonic()
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout)
        return code, time.monotonic() - started


@dataclass
class Site:
    """One test's world: a git repo, a config, a state dir, the sockets, and the daemons started."""

    root: Path
    run_dir: Path
    repo: Path
    config: Path
    state: Path
    env: dict[str, str]
    started: list[Daemon] = field(default_factory=list)

    @property
    def socket(self) -> Path:
        return self.run_dir / "agentos.sock"

    def launch(self, *, env: dict[str, str] | None = None, config: Path | None = None, ready: bool = True) -> Daemon:
        log = self.root / f"daemon-{len(self.started)}.log"
        full_env = {**self.env, **(env or {})}
        with log.open("wb") as out:
            proc = subprocess.Popen(
                agentos("run", "--config", str(config or self.config)),
                env=full_env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.root,
            )
        daemon = Daemon(proc, log, Path(full_env["AGENTOS_SOCKET"]), full_env)
        self.started.append(daemon)
        if ready:
            daemon.wait_ready()
        return daemon

    def run_once(self, *args: str, timeout: float = 15) -> subprocess.CompletedProcess[str]:
        """An ``agentos`` command that is expected to exit by itself."""
        return subprocess.run(agentos(*args), env=self.env, capture_output=True, text=True, timeout=timeout)


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    # Sockets live in a short /tmp dir: AF_UNIX paths are limited to 107 bytes, and the uid test
    # needs a directory that another user can traverse.
    run_dir = Path(tempfile.mkdtemp(prefix="aos-", dir="/tmp"))
    repo = tmp_path / "calc"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    (repo / "README.md").write_text("calc\n")
    _git(repo, "add", "README.md")
    _git(repo, "commit", "-q", "-m", "init")
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "WATCHDOG_", "LISTEN_"))}
    for key in ("STATE_DIRECTORY", "AGENTOS_CONFIG", "CREDENTIALS_DIRECTORY", "XDG_RUNTIME_DIR"):
        env.pop(key, None)
    env.update(AGENTOS_SOCKET=str(run_dir / "agentos.sock"), RUNTIME_DIRECTORY=str(run_dir), COLUMNS="80")
    s = Site(tmp_path, run_dir, repo, write_config(tmp_path / "config.yaml", state, repo), state, env)
    try:
        yield s
    finally:
        for daemon in s.started:
            if daemon.proc.poll() is None:
                daemon.proc.kill()
                daemon.proc.wait(timeout=5)
        shutil.rmtree(run_dir, ignore_errors=True)


class TestControl:
    def test_status_answers_and_daemon_started_is_logged(self, site: Site) -> None:
        """`ctl status --json` reports the running daemon, and its start is one structured log line."""
        daemon = site.launch()
        status = daemon.ctl("status")
        assert status["pid"] == daemon.pid
        assert status["paused"] is False
        assert status["max_parallel_workers"] == 2
        assert status["repos"] == ["calc"]
        assert status["state_dir"] == str(site.state)
        started = daemon.wait_for_event("daemon_started")
        assert started["pid"] == daemon.pid
        assert started["socket"] == str(site.socket)
        assert started["level"] == "info"

    def test_without_bubblewrap_status_and_a_sev1_notice_name_the_fix(self, site: Site, tmp_path: Path) -> None:
        """``sandbox.mode: bubblewrap`` with no bwrap on PATH: the daemon serves, ``ctl status`` says the sandbox is
        unusable and how to fix it, and one sev1 notice says so at start."""
        tools = tmp_path / "tools"  # git and python3, but no bwrap
        tools.mkdir()
        for name in ("git", "python3"):
            found = shutil.which(name)
            assert found is not None
            (tools / name).symlink_to(found)
        daemon = site.launch(env={"PATH": str(tools)})
        assert (
            daemon.ctl("status")["sandbox"]
            == "bubblewrap, unusable: bubblewrap is not installed: apt-get install bubblewrap"
        )
        notices = [e for e in parse_log(daemon.output()) if e.get("key") == "sandbox_unavailable"]
        assert notices and notices[0]["severity"] == 1

    def test_pause_resume_and_state_survive_a_restart(self, site: Site) -> None:
        """Pause and a disabled job are kept across a restart; resume undoes the pause."""
        daemon = site.launch()
        assert daemon.ctl("pause") == {"paused": True}
        assert daemon.request("status")["paused"] is True
        daemon.request("job", {"name": "dispatch", "enabled": False})
        assert daemon.stop()[0] == 0

        again = site.launch()
        assert again.request("status")["paused"] is True
        jobs = {row["name"]: row for row in again.request("jobs")}
        assert jobs["dispatch"]["enabled"] is False
        assert again.ctl("resume") == {"paused": False}
        assert again.request("status")["paused"] is False

    def test_job_off_then_jobs_shows_it_disabled(self, site: Site) -> None:
        """`job off dispatch` is visible in `jobs`; `job on` restores it; an unknown job is an error."""
        daemon = site.launch()
        daemon.ctl("job", "off", "dispatch")
        jobs = {row["name"]: row for row in daemon.ctl("jobs")}
        assert set(jobs) >= {"dispatch", "pr_monitor", "stall_watchdog"}
        assert jobs["dispatch"]["enabled"] is False
        assert jobs["dispatch"]["next_run"] is None
        assert jobs["pr_monitor"]["enabled"] is True
        assert daemon.request("job", {"name": "dispatch", "enabled": True}) == {"job": "dispatch", "enabled": True}
        assert {r["name"]: r for r in daemon.request("jobs")}["dispatch"]["enabled"] is True
        with pytest.raises(ControlError, match="no job named 'nosuch'"):
            daemon.request("job", {"name": "nosuch", "enabled": False})

    def test_run_job_runs_it_and_records_the_run(self, site: Site) -> None:
        """`run stall_watchdog` runs it now (also when paused) and `jobs` shows the run; paused dispatch refuses."""
        daemon = site.launch()
        assert daemon.ctl("run", "stall_watchdog") == {"job": "stall_watchdog", "result": "ok"}
        row = {r["name"]: r for r in daemon.request("jobs")}["stall_watchdog"]
        assert row["last_run"] is not None
        assert row["last_success"] is not None
        assert row["last_error"] is None
        assert row["runs"] >= 1

        daemon.request("pause")
        assert daemon.request("run", {"name": "stall_watchdog"})["result"] == "ok"  # it runs while paused
        refused = daemon.ctl("run", "dispatch", ok=False)
        assert refused.returncode == 1
        assert "paused" in refused.stderr


class TestReload:
    def test_sighup_reloads_the_config(self, site: Site) -> None:
        """Editing max_parallel_workers and sending SIGHUP changes what status reports."""
        daemon = site.launch()
        assert daemon.request("status")["max_parallel_workers"] == 2
        write_config(site.config, site.state, site.repo, workers=5)
        daemon.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: daemon.request("status")["max_parallel_workers"] == 5, what="the reloaded config", timeout=5)
        assert daemon.wait_for_event("config_reloaded")["max_parallel_workers"] == 5

    def test_a_bad_config_on_sighup_keeps_the_last_good_one(self, site: Site) -> None:
        """A broken file is rejected with its problems logged; the daemon runs on with the old config."""
        daemon = site.launch()
        site.config.write_text(site.config.read_text().replace("max_parallel_workers: 2", "max_parallel_workers: 0"))
        daemon.proc.send_signal(signal.SIGHUP)
        rejected = daemon.wait_for_event("config_reload_rejected")
        assert any("max_parallel_workers" in p for p in rejected["problems"])
        assert rejected["level"] == "error"
        assert daemon.request("status")["max_parallel_workers"] == 2

        refused = daemon.ctl("reload", ok=False)  # the same through the socket, with the reason
        assert refused.returncode == 1
        assert "config not reloaded" in refused.stderr and "max_parallel_workers" in refused.stderr

        write_config(site.config, site.root / "elsewhere", site.repo, workers=4)  # valid, but needs a restart
        with pytest.raises(ControlError, match="state_dir: changed; that needs a restart"):
            daemon.request("reload")
        assert daemon.request("status")["state_dir"] == str(site.state)

        write_config(site.config, site.state, site.repo, workers=3)
        assert daemon.request("reload")["reloaded"] is True
        assert daemon.request("status")["max_parallel_workers"] == 3

    def test_a_reload_that_changes_timezone_reschedules_the_crons(self, site: Site) -> None:
        """`timezone: Asia/Tokyo` plus a reload moves the digest to 08:00 Tokyo time; `ctl jobs` shows the offset."""
        daemon = site.launch()
        before = {row["name"]: row for row in daemon.ctl("jobs")}
        assert before["daily_digest"]["next_run"].endswith("T08:00:00+00:00")

        write_config(site.config, site.state, site.repo, extra="timezone: Asia/Tokyo\n")
        assert daemon.request("reload")["reloaded"] is True
        assert daemon.wait_for_event("config_reloaded")["timezone"] == "Asia/Tokyo"
        after = {row["name"]: row for row in daemon.ctl("jobs")}
        assert after["daily_digest"]["next_run"].endswith("T08:00:00+09:00")
        assert after["housekeeping"]["next_run"].endswith("T03:43:00+09:00")
        assert after["dispatch"]["next_run"].endswith("+09:00")
        wide = {**daemon.env, "COLUMNS": "200"}  # rich wraps table cells at 80 columns without a terminal
        shown = subprocess.run(agentos("ctl", "jobs"), env=wide, capture_output=True, text=True, timeout=30)
        digest_line = next(line for line in shown.stdout.splitlines() if "daily_digest" in line)
        assert "T08:00+09:00 (in " in digest_line


class TestSystemd:
    def test_notify_ready_watchdog_stopping_then_exit_0(self, site: Site) -> None:
        """READY=1, WATCHDOG=1 (every WATCHDOG_USEC/2) and STOPPING=1 reach NOTIFY_SOCKET; SIGTERM exits 0."""
        notify_path = site.run_dir / "notify"
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
            notify.bind(str(notify_path))
            notify.settimeout(START_TIMEOUT)
            daemon = site.launch(env={"NOTIFY_SOCKET": str(notify_path), "WATCHDOG_USEC": "200000"}, ready=False)

            def next_message() -> list[str]:
                return notify.recv(4096).decode().split("\n")

            first = next_message()
            assert "READY=1" in first, first
            assert any(line.startswith("STATUS=") for line in first)
            notify.settimeout(2.0)  # at 100 ms a ping, two arrive well within this
            pings = [m for m in (next_message(), next_message()) if "WATCHDOG=1" in m]
            assert len(pings) == 2
            daemon.wait_ready()

            daemon.proc.send_signal(signal.SIGTERM)
            started = time.monotonic()
            while "STOPPING=1" not in (message := next_message()):
                assert "READY=1" not in message
            code = daemon.proc.wait(timeout=GRACE_S + 5)
            assert code == 0
            assert time.monotonic() - started < GRACE_S + 3.0  # plus interpreter teardown on a busy machine
        assert daemon.events("daemon_stopped")

    def test_sigterm_with_a_running_agent_exits_0_within_the_grace(self, site: Site) -> None:
        """A running attempt gets the grace period, is then interrupted, and the daemon still exits 0."""
        write_config(
            site.config,
            site.state,
            site.repo,
            agent_argv=[sys.executable, "-c", "import time; time.sleep(60)", "{prompt_file}"],
        )
        daemon = site.launch()
        made = site.run_once("issue", "new", "--config", str(site.config), "--title", "Sleep", "--ready")
        assert made.returncode == 0, made.stderr
        daemon.request("run", {"name": "dispatch"})

        def running_attempt() -> dict[str, Any] | None:
            tasks = daemon.request("tasks")
            if not tasks or tasks[0]["status"] != "running":
                return None
            task: dict[str, Any] = daemon.request("task", {"id": tasks[0]["id"]})
            attempt = task["attempts"][-1] if task["attempts"] else None
            return task if attempt and attempt.get("pid") else None

        task = wait_until(running_attempt, what="the attempt to start", timeout=10)
        agent_pid = task["attempts"][-1]["pid"]
        daemon.request("pause")  # so that the restart below does not dispatch the task again
        code, took = daemon.stop()
        assert code == 0
        assert took < GRACE_S + 0.5 + 2  # grace, then the agent's TERM→KILL grace, then the snapshot
        assert daemon.events("daemon_stopped")
        assert not _alive(agent_pid)

        again = site.launch()  # the interrupted attempt's task is queued again, not lost
        shown = again.request("task", {"id": task["id"]})
        assert shown["status"] == "queued"
        assert [a["outcome"] for a in shown["attempts"]] == ["interrupted"]
        assert again.stop()[0] == 0


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


class TestSingleInstance:
    def test_a_second_daemon_on_the_same_state_dir_is_refused(self, site: Site) -> None:
        """The second `agentos run` exits 2 naming the first one's pid; the first keeps serving."""
        daemon = site.launch()
        second = site.run_once("run", "--config", str(site.config))
        assert second.returncode == 2
        assert f"another agentos daemon (pid {daemon.pid})" in second.stderr
        assert daemon.request("status")["pid"] == daemon.pid

    def test_a_second_daemon_on_the_same_socket_is_refused(self, site: Site) -> None:
        """Another state dir but the same control socket: refused, instead of stealing the live socket."""
        daemon = site.launch()
        other = write_config(site.root / "other.yaml", site.root / "other-state", None)
        second = site.run_once("run", "--config", str(other))
        assert second.returncode == 2
        assert "another agentos daemon is serving" in second.stderr
        assert daemon.request("status")["pid"] == daemon.pid

    def test_ctl_without_a_daemon_says_so_in_one_line_and_exits_3(self, site: Site) -> None:
        """`agentos ctl status` with nothing running: one line on stderr, nothing on stdout, exit 3."""
        for args in (("ctl", "status"), ("ctl", "pause", "--json")):
            done = site.run_once(*args)
            assert done.returncode == 3
            assert done.stdout == ""
            lines = done.stderr.splitlines()
            assert len(lines) == 1, lines
            assert lines[0].startswith("agentos is not running")


class TestStartupState:
    def test_a_corrupt_state_file_stops_the_daemon_with_exit_3(self, site: Site) -> None:
        """A snapshot that does not parse is never replaced by an empty state: the daemon refuses to start."""
        site.state.mkdir()
        (site.state / "graph.json").write_text('{"schema": 1, "seq": 3, "tasks": [{"id"')
        done = site.run_once("run", "--config", str(site.config))
        assert done.returncode == 3
        assert "graph.json" in done.stderr
        assert any(e["event"] == "state_unreadable" and e["level"] == "critical" for e in parse_log(done.stdout))
        assert list(site.state.glob("graph.json.corrupt-*"))  # quarantined, not overwritten

        again = site.run_once("run", "--config", str(site.config))  # what systemd's restart would do
        assert again.returncode == 3  # no .bak to recover from: still refuses, never starts empty
        assert "quarantined" in again.stderr

    def test_an_invalid_config_exits_78_with_one_line_per_problem(self, site: Site) -> None:
        """EX_CONFIG (78) so systemd does not restart in a loop; the problem names the file, line and key."""
        site.config.write_text(site.config.read_text().replace("max_parallel_workers: 2", "max_parallel_workers: 0"))
        done = site.run_once("run", "--config", str(site.config))
        assert done.returncode == 78
        assert f"{site.config}:3: max_parallel_workers:" in done.stderr

    def test_a_rebuilt_state_is_snapshotted_and_old_history_pruned_at_start(self, site: Site) -> None:
        """Recovered from graph.json.bak plus events/, the state becomes the new snapshot at once; old events go."""
        now = datetime.now(UTC)
        with Store(site.state) as store:
            graph, daemon_state = store.load()
            for round_ in range(2):
                store.append([Event(type="touch", ts=now, data={"round": round_})])
                store.snapshot(graph, daemon_state)
        (site.state / "graph.json").unlink()  # lost: the .bak and the rotated journal must do
        old = site.state / "events" / "events-2000-01-01.jsonl"
        old.write_text("")

        daemon = site.launch()
        assert (site.state / "graph.json").exists()  # written at start-up, not only at the stop
        assert not old.exists()
        assert daemon.events("state_resnapshotted_after_recovery")
        assert daemon.stop()[0] == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a client as another user")
class TestPeerCredentials:
    def test_a_client_of_another_uid_is_refused(self, site: Site) -> None:
        """The socket is 0600; even when opened up, a client running as `nobody` gets the uid refusal."""
        daemon = site.launch(config=write_config(site.root / "norepo.yaml", site.state, None))
        assert stat.S_IMODE(site.socket.stat().st_mode) == 0o600
        site.run_dir.chmod(0o755)  # let `nobody` reach the socket, so only SO_PEERCRED stands in the way
        site.socket.chmod(0o666)

        error = _request_as(NOBODY, site.socket, "pause")
        assert error == f"uid {NOBODY} may not control this daemon"
        refused = daemon.wait_for_event("control_client_refused")
        assert refused["uid"] == NOBODY
        assert daemon.request("status")["paused"] is False  # the refused pause did nothing


def _request_as(uid: int, path: Path, cmd: str) -> str:
    """Send one request from a child process running as ``uid``; the daemon's error text, or 'ok'."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop to uid, ask, report on the pipe, never return into pytest
        code = 0
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            try:
                request(path, cmd, timeout=5)
                answer = "ok"
            except ControlError as exc:
                answer = str(exc)
            os.write(write_end, answer.encode())
        except BaseException as exc:
            os.write(write_end, f"child failed: {exc!r}".encode())
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 4096):
        chunks.append(chunk)
    os.close(read_end)
    os.waitpid(pid, 0)
    return b"".join(chunks).decode()
