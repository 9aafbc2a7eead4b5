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
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from agentos.control.socket import request
from agentos.errors import ControlError
from agentos.forge.base import Comment, Issue
from agentos.forge.local import parse_issue_file
from tests.daemon_process import (
    AGENTOS,
    DROPPED_ENV,
    FAKES,
    ROOT,
    TEST_FILE,
    DaemonFiles,
    alive,
    daemon_env,
    init_repo,
    main_log,
    merge_overrides,
    pid_list,
    read_log,
    socket_answers,
    spawn_daemon,
    stop_daemon,
    write_gitconfig,
)
from tests.daemon_process import git as _git
from tests.waiting import wait_until

__all__ = ["AGENTOS", "DROPPED_ENV", "FAKES", "ROOT", "TEST_FILE", "alive", "pid_list"]  # imported from here too

T = TypeVar("T")

REPO = "app"
WAIT_S = 30.0
POLL_S = 0.1


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


@dataclass
class Loop(DaemonFiles):
    """One user repository, one config and one daemon, driven from the outside."""

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
    def forge(self) -> Path:
        return self.state / "local-forge" / REPO

    def worktree(self, task: dict[str, Any]) -> Path:
        return self.state / "worktrees" / REPO / str(task["branch"]).replace("/", "-")

    def run_path(self, task_id: str, attempt: int) -> Path:
        return self.state / "runs" / task_id.replace("/", "_").replace("#", "-") / str(attempt)

    # ------------------------------------------------------------ set-up

    def setup(self) -> None:
        home = self.root / "home"
        write_gitconfig(home, default_branch="main")
        self.env = daemon_env(home, self.run_dir)
        init_repo(self.repo, self.env, "app")
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
            # The fakes record prompts and pids in files outside their worktree, which a sandbox hides:
            # tests/e2e/test_sandbox_loop.py runs the loop with `mode: bubblewrap`.
            "sandbox": {"mode": "off"},
        }
        merge_overrides(config, self.overrides)
        self.config.write_text(json.dumps(config, indent=2) + "\n")  # JSON is YAML

    # ------------------------------------------------------------ the daemon

    def start(self) -> None:
        """Start ``agentos run`` and wait until its control socket answers."""
        assert self.daemon is None or self.daemon.poll() is not None, "the daemon is already running"
        self.starts += 1
        self.daemon = spawn_daemon(self.config, self.env, self.log, banner=f"start {self.starts}")

        def answers() -> bool:
            assert self.daemon is not None
            if self.daemon.poll() is not None:
                raise AssertionError(f"the daemon exited with {self.daemon.returncode}:\n{self.log_tail()}")
            return socket_answers(self.socket)

        self.wait_for(answers, what="the daemon's control socket")

    def kill9(self) -> None:
        """SIGKILL the daemon (only the daemon: agents run in sessions of their own)."""
        assert self.daemon is not None
        os.kill(self.daemon.pid, signal.SIGKILL)
        self.daemon.wait(timeout=10)

    def stop(self) -> int | None:
        return stop_daemon(self.daemon, self.log_tail)

    def log_tail(self, chars: int = 4000) -> str:
        return read_log(self.log)[-chars:] or "(no daemon log)"

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

    def wait_for(
        self,
        check: Callable[[], T | None],
        *,
        what: str,
        timeout: float = WAIT_S,
        retry: tuple[type[BaseException], ...] = (),
    ) -> T:
        """Poll ``check`` every 0.1 s until it returns something truthy; fail with the tasks and the daemon's log."""
        return wait_until(check, what=what, timeout=timeout, poll=POLL_S, retry=retry, context=self.debug)

    def wait_status(self, task_id: str, *statuses: str, timeout: float = WAIT_S) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            if self.daemon is not None and self.daemon.poll() is not None:
                raise AssertionError(f"the daemon died ({self.daemon.returncode}):\n{self.log_tail()}")
            task = self.task(task_id)
            return task if task["status"] in statuses else None

        # ControlError, OSError: restarting, or the task is not there yet; anything else fails at once
        what = f"{task_id} to be {'/'.join(statuses)}"
        return self.wait_for(check, what=what, timeout=timeout, retry=(ControlError, OSError))

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
        return main_log(self.repo, self.env)

    def show(self, path: str, ref: str = "main") -> str:
        return self.git("show", f"{ref}:{path}")


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
