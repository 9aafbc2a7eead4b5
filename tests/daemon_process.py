"""``agentos run`` as a child process: what the e2e and reliability harnesses share.

The harnesses (:class:`tests.e2e.conftest.Loop`, :class:`tests.reliability.conftest.MultiLoop`,
``GhDaemon`` in ``tests/e2e/test_github_daemon.py`` and the GitHub fault soak) each drive one daemon
from the outside. This module holds the parts that do not depend on the forge: the environment a daemon
runs in, a throwaway user repository, starting and stopping the process, its control socket and its log.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentos.control.socket import request

ROOT = Path(__file__).resolve().parents[1]
FAKES = ROOT / "tests" / "fakes" / "agents"
AGENTOS = Path(sys.executable).with_name("agentos")
DROPPED_ENV = ("STATE_DIRECTORY", "NOTIFY_SOCKET", "AGENTOS_CONFIG", "XDG_RUNTIME_DIR", "CREDENTIALS_DIRECTORY")
"""Variables of the test runner's environment that would point a daemon at someone else's files."""
STOP_GRACE_S = 15.0

TEST_FILE = """import unittest


class TestApp(unittest.TestCase):
    def test_truth(self) -> None:
        self.assertTrue(True)
"""


def alive(pid: int) -> bool:
    """Running (zombies do not count: a container's pid 1 may never reap them)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def pid_list(path: Path) -> list[int]:
    """The pids a fake agent recorded in ``path``, one per line (none when it wrote nothing)."""
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True)
    return done.stdout


@dataclass
class DaemonFiles:
    """Where one test daemon keeps its config and log (``root``) and its control socket (``run_dir``)."""

    root: Path
    run_dir: Path

    @property
    def config(self) -> Path:
        return self.root / "agentos.yaml"

    @property
    def socket(self) -> Path:
        return self.run_dir / "agentos.sock"

    @property
    def log(self) -> Path:
        return self.root / "daemon.log"


# ---------------------------------------------------------------- the daemon's environment


def daemon_env(
    home: Path,
    run_dir: Path,
    *,
    drop: tuple[str, ...] = (),
    drop_prefixes: tuple[str, ...] = ("FAKE_AGENT_",),
    **extra: str,
) -> dict[str, str]:
    """This process's environment without what would leak into the daemon, with its own ``HOME`` and socket.

    ``drop`` and ``drop_prefixes`` name more variables to leave out; ``extra`` is set last.
    """
    prefixes = ("WATCHDOG_", "LISTEN_", "GIT_", *drop_prefixes)
    env = {k: v for k, v in os.environ.items() if k not in DROPPED_ENV and k not in drop and not k.startswith(prefixes)}
    env.update(
        HOME=str(home),
        GIT_CONFIG_NOSYSTEM="1",
        RUNTIME_DIRECTORY=str(run_dir),
        AGENTOS_SOCKET=str(run_dir / "agentos.sock"),
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.update(extra)
    return env


def write_gitconfig(home: Path, *, default_branch: str | None = None) -> None:
    """A git identity in ``home`` (created), optionally with ``init.defaultBranch``."""
    home.mkdir(parents=True, exist_ok=True)
    text = "[user]\n\tname = agentos e2e\n\temail = e2e@agentos.invalid\n"
    if default_branch is not None:
        text += f"[init]\n\tdefaultBranch = {default_branch}\n"
    (home / ".gitconfig").write_text(text)


def init_repo(path: Path, env: dict[str, str], title: str) -> None:
    """A user repository at ``path``: one commit on ``main`` with a README and a passing unittest."""
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main", env=env)
    (path / "README.md").write_text(f"# {title}\n")
    (path / "test_app.py").write_text(TEST_FILE)
    (path / ".gitignore").write_text("__pycache__/\n")
    git(path, "add", "-A", env=env)
    git(path, "commit", "-q", "-m", "initial commit", env=env)


def main_log(repo: Path, env: dict[str, str]) -> list[tuple[str, str]]:
    """(subject, body) of every commit on ``repo``'s main, newest first."""
    out = git(repo, "log", "--format=%s%x1f%b%x1e", "main", env=env)
    commits = []
    for record in out.split("\x1e"):
        if record.strip():
            subject, _, body = record.strip("\n").partition("\x1f")
            commits.append((subject, body))
    return commits


def merge_overrides(config: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``config`` with each override set, a dict override merged into a dict section."""
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return config


# ---------------------------------------------------------------- the process


def spawn_daemon(config: Path, env: dict[str, str], log: Path, *, banner: str | None = None) -> subprocess.Popen[bytes]:
    """``agentos run --config config`` in a session of its own, its output appended to ``log``."""
    with log.open("ab") as out:
        if banner is not None:
            out.write(f"\n===== {banner} =====\n".encode())
            out.flush()
        return subprocess.Popen(
            [str(AGENTOS), "run", "--config", str(config)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_daemon(proc: subprocess.Popen[bytes] | None, log_tail: Callable[[], str]) -> int | None:
    """SIGTERM, then the exit code; a daemon that ignores it for 15 s is killed and the test fails."""
    if proc is None or proc.poll() is not None:
        return None if proc is None else proc.returncode
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
        raise AssertionError(f"the daemon ignored SIGTERM for 15 s:\n{log_tail()}") from None


def socket_answers(socket: Path) -> bool:
    """The daemon's control socket answers ``status``."""
    try:
        request(socket, "status", timeout=1)
    except Exception:
        return False
    return True


# ---------------------------------------------------------------- the log


def read_log(log: Path) -> str:
    """The daemon's log so far ("" before it wrote one)."""
    try:
        return log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def parse_log(text: str) -> list[dict[str, Any]]:
    """The daemon's JSON log lines (``<prio>{…}``)."""
    out = []
    for line in text.splitlines():
        if line.startswith("<") and ">{" in line:
            try:
                out.append(json.loads(line.split(">", 1)[1]))
            except ValueError:
                continue
    return out
