"""Fixtures of the reliability suite: the e2e ``Loop`` (the real daemon) over one or several repositories.

Every agent a test configures carries ``RELIABILITY_RUN=<uuid>`` in its environment, which its children
inherit: :func:`marked_processes` finds whatever is left of them in ``/proc`` (the orphan check), and the
teardown kills it so a failing test never leaves a hung agent behind.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agentos.config import RepoConfig
from agentos.forge.base import READY_LABEL, Comment, Issue
from agentos.forge.local import LocalForge, parse_issue_file
from tests.daemon_process import FAKES, alive, init_repo, main_log, parse_log, spawn_daemon
from tests.e2e.conftest import Loop
from tests.e2e.conftest import make_loop as make_loop  # the e2e fixture, reused as is
from tests.waiting import wait_until

MARKER_ENV = "RELIABILITY_RUN"
MARKER = uuid.uuid4().hex
"""One value per test session: every fake agent started by this suite carries it."""


log_events = parse_log
"""The daemon's JSON log lines (the suite's tests know it by this name)."""


def marked(agent: dict[str, Any]) -> dict[str, Any]:
    """``agent`` with the suite's marker in its environment."""
    return {**agent, "env": {**agent.get("env", {}), MARKER_ENV: MARKER}}


def claude(mode: str = "complete", **env: str) -> dict[str, Any]:
    return marked({"kind": "claude", "binary": str(FAKES / "claude"), "env": {"FAKE_AGENT_MODE": mode, **env}})


def command(mode: str = "complete", **env: str) -> dict[str, Any]:
    return marked(
        {
            "kind": "command",
            "argv": [str(FAKES / "command_agent.py"), "{prompt_file}"],
            "env": {"FAKE_AGENT_MODE": mode, **env},
        }
    )


def marked_processes(marker: str = MARKER) -> list[int]:
    """Live (not zombie) processes whose environment carries ``RELIABILITY_RUN=<marker>``."""
    needle = f"{MARKER_ENV}={marker}".encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            environ = Path(f"/proc/{name}/environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0") and alive(int(name)):
            found.append(int(name))
    return found


def kill_marked(marker: str = MARKER) -> list[int]:
    pids = marked_processes(marker)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return pids


def wait_no_marked(timeout: float = 10.0) -> list[int]:
    """The marked processes still alive after ``timeout`` (they may be on their way out when asked)."""
    try:
        wait_until(lambda: not marked_processes(), what="the marked processes to exit", timeout=timeout, poll=0.1)
    except AssertionError:
        return marked_processes()
    return []


@dataclass
class MultiLoop(Loop):
    """A :class:`Loop` over several user repositories (``repos/<name>``), each like the e2e one."""

    names: tuple[str, ...] = ("alpha", "beta", "gamma")
    issues_filed: list[tuple[str, int]] = field(default_factory=list)

    def repo_path(self, name: str) -> Path:
        return self.root / "repos" / name

    def repo_configs(self) -> list[dict[str, Any]]:
        return [
            {"name": n, "path": str(self.repo_path(n)), "test_command": "python3 -m unittest -q", "test_timeout_s": 60}
            for n in self.names
        ]

    def setup(self) -> None:
        self.overrides.setdefault("repos", self.repo_configs())
        super().setup()
        for name in self.names:
            init_repo(self.repo_path(name), self.env, name)

    # ------------------------------------------------------------ the daemon, killed at any moment

    def spawn(self) -> subprocess.Popen[bytes]:
        """Start ``agentos run`` without waiting for it (a kill may come before it answers)."""
        assert self.daemon is None or self.daemon.poll() is not None, "the daemon is already running"
        self.starts += 1
        self.daemon = spawn_daemon(self.config, self.env, self.log, banner=f"start {self.starts} (not waited for)")
        return self.daemon

    # ------------------------------------------------------------ the forge, read and written in-process

    def forge_api(self) -> LocalForge:
        repos = {n: RepoConfig(name=n, path=str(self.repo_path(n)), test_command="true") for n in self.names}
        return LocalForge(self.state, repos)

    def file_issues(self, issues: Iterable[tuple[str, str, str]]) -> list[tuple[str, int]]:
        """Open ready issues ``(repo, title, body)`` directly in the forge's files (no CLI start-up per issue)."""

        async def go() -> list[tuple[str, int]]:
            forge = self.forge_api()
            made = []
            for repo, title, body in issues:
                issue = await forge.new_issue(repo, title, body, [READY_LABEL], author="soak")
                made.append((repo, issue.number))
            return made

        made = asyncio.run(go())
        self.issues_filed += made
        return made

    def forge_dir(self, name: str) -> Path:
        return self.state / "local-forge" / name

    def issue_in(self, name: str, number: int) -> tuple[Issue, list[Comment]]:
        path = self.forge_dir(name) / "issues" / f"{number}.md"
        return parse_issue_file(path.read_text(encoding="utf-8"), name, path)

    def pulls_in(self, name: str) -> list[dict[str, Any]]:
        folder = self.forge_dir(name) / "pulls"
        return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []

    def main_log_of(self, name: str) -> list[tuple[str, str]]:
        return main_log(self.repo_path(name), self.env)

    def worktrees_left(self) -> list[Path]:
        """Worktree directories under the state dir (scratch ones included), for every repo."""
        left: list[Path] = []
        for name in self.names:
            base = self.state / "worktrees" / name
            if base.is_dir():
                left += [p for p in base.iterdir() if p.name != ".scratch"]
                scratch = base / ".scratch"
                if scratch.is_dir():
                    left += list(scratch.iterdir())
        return left


MakeMulti = Callable[..., MultiLoop]


@pytest.fixture
def make_multi(tmp_path: Path) -> Iterator[MakeMulti]:
    """``make_multi(agents, names=…, **config_overrides)``: a :class:`MultiLoop`, not started."""
    made: list[MultiLoop] = []
    run_dirs: list[Path] = []

    def make(agents: dict[str, dict[str, Any]], *, names: tuple[str, ...] | None = None, **overrides: Any) -> MultiLoop:
        run_dir = Path(tempfile.mkdtemp(prefix="arel-", dir="/tmp"))  # a socket path has 108 bytes
        run_dirs.append(run_dir)
        root = tmp_path / f"multi{len(made)}"
        root.mkdir()
        extra = {"names": names} if names else {}
        loop = MultiLoop(root=root, run_dir=run_dir, agents=agents, overrides=overrides, **extra)
        made.append(loop)
        loop.setup()
        return loop

    yield make
    problems = []
    for loop in made:
        if loop.daemon is not None and loop.daemon.poll() is None:
            try:
                loop.stop()
            except AssertionError as exc:
                problems.append(str(exc))
    for run_dir in run_dirs:
        shutil.rmtree(run_dir, ignore_errors=True)
    assert not problems, "\n".join(problems)


@pytest.fixture(autouse=True)
def _no_agent_outlives_its_test() -> Iterator[None]:
    """Whatever a test's agents left running is killed afterwards (the tests assert on it themselves)."""
    yield
    kill_marked()
