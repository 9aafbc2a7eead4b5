"""End-to-end fixtures: the real daemon process, the real CLI, real git, the fake agent CLIs.

Each test gets a :class:`Loop`: a throwaway user repository (one commit on ``main``, a passing unittest),
a config file, a state dir, a runtime dir for the control socket and a ``HOME`` with a git identity. The
daemon is ``agentos run --config …`` in its own session; issues are filed with ``agentos issue new …
--ready`` (which pokes the daemon); the tests poll the control socket and the forge's files with bounded
waits. Nothing here sleeps longer than one 0.1 s poll.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from agentos.control.socket import request
from agentos.forge.base import Comment, Issue
from agentos.forge.local import parse_issue_file

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
FAKES = ROOT / "tests" / "fakes" / "agents"
AGENTOS = Path(sys.executable).with_name("agentos")
REPO = "app"
WAIT_S = 30.0
POLL_S = 0.1
DROPPED_ENV = ("STATE_DIRECTORY", "NOTIFY_SOCKET", "AGENTOS_CONFIG", "XDG_RUNTIME_DIR", "CREDENTIALS_DIRECTORY")

TEST_FILE = """import unittest


class TestApp(unittest.TestCase):
    def test_truth(self) -> None:
        self.assertTrue(True)
"""


def claude_agent(mode: str = "complete", **env: str) -> dict[str, Any]:
    """An agent of kind ``claude`` that runs the fake Claude Code CLI in ``mode``."""
    return {"kind": "claude", "binary": str(FAKES / "claude"), "env": {"FAKE_AGENT_MODE": mode, **env}}


def command_agent(mode: str = "complete", **env: str) -> dict[str, Any]:
    """An agent of kind ``command`` that runs the generic fake agent on the prompt file."""
    return {
        "kind": "command",
        "argv": [str(FAKES / "command_agent.py"), "{prompt_file}"],
        "env": {"FAKE_AGENT_MODE": mode, **env},
    }


def alive(pid: int) -> bool:
    """Running (zombies do not count: a container's pid 1 may never reap them)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def _git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True)
    return done.stdout


@dataclass
class Loop:
    """One user repository, one config and one daemon, driven from the outside."""

    root: Path
    run_dir: Path
    agents: dict[str, dict[str, Any]]
    overrides: dict[str, Any]
    daemon: subprocess.Popen[bytes] | None = None
    starts: int = 0
    env: dict[str, str] = field(default_factory=dict)

    # ------------------------------------------------------------ paths

    @property
    def repo(self) -> Path:
        return self.root / "repo"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def config(self) -> Path:
        return self.root / "agentos.yaml"

    @property
    def socket(self) -> Path:
        return self.run_dir / "agentos.sock"

    @property
    def log(self) -> Path:
        return self.root / "daemon.log"

    @property
    def forge(self) -> Path:
        return self.state / "local-forge" / REPO

    def worktree(self, task: dict[str, Any]) -> Path:
        return self.state / "worktrees" / REPO / str(task["branch"]).replace("/", "-")

    def run_path(self, task_id: str, attempt: int) -> Path:
        return self.state / "runs" / task_id.replace("/", "_").replace("#", "-") / str(attempt)

    # ------------------------------------------------------------ set-up

    def setup(self) -> None:
        home = self.root / "home"
        home.mkdir()
        (home / ".gitconfig").write_text(
            "[user]\n\tname = agentos e2e\n\temail = e2e@agentos.invalid\n[init]\n\tdefaultBranch = main\n"
        )
        self.env = {
            k: v
            for k, v in os.environ.items()
            if k not in DROPPED_ENV and not k.startswith(("WATCHDOG_", "LISTEN_", "GIT_", "FAKE_AGENT_"))
        }
        self.env.update(
            HOME=str(home),
            GIT_CONFIG_NOSYSTEM="1",
            RUNTIME_DIRECTORY=str(self.run_dir),
            AGENTOS_SOCKET=str(self.socket),
            PYTHONDONTWRITEBYTECODE="1",
        )
        self.repo.mkdir()
        _git(self.repo, "init", "-q", "-b", "main", env=self.env)
        (self.repo / "README.md").write_text("# app\n")
        (self.repo / "test_app.py").write_text(TEST_FILE)
        (self.repo / ".gitignore").write_text("__pycache__/\n")
        _git(self.repo, "add", "-A", env=self.env)
        _git(self.repo, "commit", "-q", "-m", "initial commit", env=self.env)
        self.write_config()

    def write_config(self) -> None:
        config: dict[str, Any] = {
            "state_dir": str(self.state),
            "forge": "local",
            "max_parallel_workers": 2,
            "repos": [
                {
                    "name": REPO,
                    "path": str(self.repo),
                    "test_command": "python3 -m unittest -q",
                    "test_timeout_s": 60,
                }
            ],
            "agents": self.agents,
            "routing": {"default": list(self.agents), "max_attempts": 2, "backoff_base_s": 0, "backoff_cap_s": 0},
            "limits": {
                "idle_timeout_minutes": 0.25,
                "max_runtime_minutes": 2,
                "kill_grace_s": 0.5,
                "shutdown_grace_s": 1,
            },
            "jobs": {
                "dispatch": {"interval_s": 0.5},
                "pr_monitor": {"interval_s": 0.5},
                "stall_watchdog": {"interval_s": 1},
            },
            "log_level": "info",
        }
        for key, value in self.overrides.items():
            if isinstance(value, dict) and isinstance(config.get(key), dict):
                config[key] = {**config[key], **value}
            else:
                config[key] = value
        self.config.write_text(json.dumps(config, indent=2) + "\n")  # JSON is YAML

    # ------------------------------------------------------------ the daemon

    def start(self) -> None:
        """Start ``agentos run`` and wait until its control socket answers."""
        assert self.daemon is None or self.daemon.poll() is not None, "the daemon is already running"
        self.starts += 1
        with self.log.open("ab") as out:
            out.write(f"\n===== start {self.starts} =====\n".encode())
            out.flush()
            self.daemon = subprocess.Popen(
                [str(AGENTOS), "run", "--config", str(self.config)],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        def answers() -> bool:
            assert self.daemon is not None
            if self.daemon.poll() is not None:
                raise AssertionError(f"the daemon exited with {self.daemon.returncode}:\n{self.log_tail()}")
            try:
                request(self.socket, "status", timeout=1)
            except Exception:
                return False
            return True

        self.wait_for(answers, what="the daemon's control socket")

    def kill9(self) -> None:
        """SIGKILL the daemon (only the daemon: agents run in sessions of their own)."""
        assert self.daemon is not None
        os.kill(self.daemon.pid, signal.SIGKILL)
        self.daemon.wait(timeout=10)

    def stop(self) -> int | None:
        if self.daemon is None or self.daemon.poll() is not None:
            return None if self.daemon is None else self.daemon.returncode
        self.daemon.send_signal(signal.SIGTERM)
        try:
            return self.daemon.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.daemon.kill()
            self.daemon.wait(timeout=5)
            raise AssertionError(f"the daemon ignored SIGTERM for 15 s:\n{self.log_tail()}") from None

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no daemon log)"

    # ------------------------------------------------------------ the CLI and the socket

    def cli(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(AGENTOS), *args], env=self.env, input=input, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, f"agentos {' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}"
        return done

    def new_issue(self, title: str, body: str = "", *labels: str) -> int:
        """``agentos issue new --ready`` (which pokes the daemon); the issue's number."""
        args = ["issue", "new", "--repo", REPO, "--title", title, "--ready", "--json", "--config", str(self.config)]
        for label in labels:
            args += ["--label", label]
        if body:
            args += ["--body-file", "-"]
        done = self.cli(*args, input=body or None)
        # The JSON document starts on its own line: the CLI may log a line before it (see the report).
        start = done.stdout.find("{") if done.stdout.startswith("{") else done.stdout.find("\n{") + 1
        return int(json.loads(done.stdout[start:])["number"])

    def ctl(self, cmd: str, args: dict[str, Any] | None = None) -> Any:
        return request(self.socket, cmd, args, timeout=60)  # `run JOB` waits out a run already under way

    def tasks(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.ctl("tasks")
        return rows

    def task(self, task_id: str) -> dict[str, Any]:
        data: dict[str, Any] = self.ctl("task", {"id": task_id})
        return data

    # ------------------------------------------------------------ waiting

    def wait_for(self, check: Callable[[], T | None], *, what: str, timeout: float = WAIT_S) -> T:
        """Poll ``check`` every 0.1 s until it returns something truthy; fail with the daemon's log."""
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{self.debug()}")
            time.sleep(POLL_S)

    def wait_status(self, task_id: str, *statuses: str, timeout: float = WAIT_S) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            if self.daemon is not None and self.daemon.poll() is not None:
                raise AssertionError(f"the daemon died ({self.daemon.returncode}):\n{self.log_tail()}")
            try:
                task = self.task(task_id)
            except Exception:
                return None
            return task if task["status"] in statuses else None

        return self.wait_for(check, what=f"{task_id} to be {'/'.join(statuses)}", timeout=timeout)

    def debug(self) -> str:
        try:
            tasks = json.dumps(self.tasks(), indent=1)
        except Exception as exc:
            tasks = f"(tasks unavailable: {exc})"
        return f"tasks: {tasks}\n--- daemon log (tail) ---\n{self.log_tail()}"

    # ------------------------------------------------------------ what the forge and git say

    def issue(self, number: int) -> tuple[Issue, list[Comment]]:
        path = self.forge / "issues" / f"{number}.md"
        return parse_issue_file(path.read_text(encoding="utf-8"), REPO, path)

    def pulls(self) -> list[dict[str, Any]]:
        folder = self.forge / "pulls"
        if not folder.is_dir():
            return []
        return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]

    def git(self, *args: str, cwd: Path | None = None) -> str:
        return _git(cwd or self.repo, *args, env=self.env)

    def main_log(self) -> list[tuple[str, str]]:
        """(subject, body) of every commit on the user's main, newest first."""
        out = self.git("log", "--format=%s%x1f%b%x1e", "main")
        commits = []
        for record in out.split("\x1e"):
            if record.strip():
                subject, _, body = record.strip("\n").partition("\x1f")
                commits.append((subject, body))
        return commits

    def show(self, path: str, ref: str = "main") -> str:
        return self.git("show", f"{ref}:{path}")


def pid_list(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()] if path.exists() else []


@pytest.fixture
def make_loop(tmp_path: Path) -> Iterator[Callable[..., Loop]]:
    """``make_loop(agents, **config_overrides)``: a started daemon over a fresh user repository."""
    made: list[Loop] = []
    run_dirs: list[Path] = []

    def make(agents: dict[str, dict[str, Any]], *, start: bool = True, **overrides: Any) -> Loop:
        run_dir = Path(tempfile.mkdtemp(prefix="ae2e-", dir="/tmp"))  # short: a socket path has 108 bytes
        run_dirs.append(run_dir)
        root = tmp_path / f"loop{len(made)}"
        root.mkdir()
        loop = Loop(root=root, run_dir=run_dir, agents=agents, overrides=overrides)
        made.append(loop)
        loop.setup()
        if start:
            loop.start()
        return loop

    yield make
    problems = []
    for loop in made:
        try:
            loop.stop()
        except AssertionError as exc:
            problems.append(str(exc))
        for pid_file in loop.root.glob("*.pids"):  # agents the test asked to record: none may outlive it
            for pid in pid_list(pid_file):
                if alive(pid):
                    with_group = os.getpgid(pid) == pid
                    (os.killpg if with_group else os.kill)(pid, signal.SIGKILL)
    for run_dir in run_dirs:
        shutil.rmtree(run_dir, ignore_errors=True)
    assert not problems, "\n".join(problems)
