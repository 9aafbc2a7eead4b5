"""``agentos demo``: the whole loop on a throwaway repository, with no tokens and no network.

It builds a small ``calc`` repository whose test fails, files three issues on the local forge (fix the
bug; add a feature that depends on the fix; a vague wish with no patch, which escalates), runs the real
daemon with the demo agent (``agentos.demo_agent``, a stand-in that applies the patch in the issue) and
prints a timeline until every issue is merged or escalated. ``AGENTOS_DEMO_AGENT=claude`` uses the real
Claude Code CLI instead.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

import agentos
from agentos import logging as alog
from agentos.config import Config, load_config
from agentos.forge.base import READY_LABEL
from agentos.forge.local import LocalForge
from agentos.graph import TaskStatus
from agentos.progress import Progress
from agentos.runners.sandbox import probe

console = Console(highlight=False)

CALC = '''"""A tiny calculator."""


def add(a: int, b: int) -> int:
    return a - b
'''
TEST = """import unittest

from calc import add


class TestAdd(unittest.TestCase):
    def test_add(self) -> None:
        self.assertEqual(add(2, 3), 5)


if __name__ == "__main__":
    unittest.main()
"""
MULTIPLY = """

def multiply(a: int, b: int) -> int:
    return a * b
"""
TEST_MULTIPLY = """import unittest

from calc import multiply


class TestMultiply(unittest.TestCase):
    def test_multiply(self) -> None:
        self.assertEqual(multiply(4, 5), 20)
"""


def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1"}
    done = subprocess.run(
        ["git", "-c", "user.name=agentos demo", "-c", "user.email=demo@agentos.invalid", *args],
        cwd=repo,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout


def make_repo(root: Path) -> tuple[Path, str, str]:
    """The demo repository, and two patches: the fix, and a feature written on top of the fix."""
    repo = root / "calc"
    repo.mkdir(parents=True)
    _git(repo, "init", "-q", "-b", "main")
    (repo / "calc.py").write_text(CALC)
    (repo / "test_calc.py").write_text(TEST)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "calc: add() (with a bug)")
    (repo / "calc.py").write_text(CALC.replace("a - b", "a + b"))
    fix = _git(repo, "diff")
    _git(repo, "commit", "-qam", "scratch")
    (repo / "calc.py").write_text(CALC.replace("a - b", "a + b") + MULTIPLY)
    (repo / "test_multiply.py").write_text(TEST_MULTIPLY)
    _git(repo, "add", "-A")
    feature = _git(repo, "diff", "--cached")
    _git(repo, "reset", "-q", "--hard", "HEAD~1")
    return repo, fix, feature


def write_config(root: Path, repo: Path) -> Path:
    agent = os.environ.get("AGENTOS_DEMO_AGENT", "demo")
    if agent == "claude":
        agents = (
            "  claude:\n    kind: claude\n"
            "    pass_env: [ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL, CLAUDE_CODE_OAUTH_TOKEN]\n"
        )
    else:
        agent = "demo"
        agents = (
            f'  demo:\n    kind: command\n    argv: ["{sys.executable}", -m, agentos.demo_agent, "{{prompt_file}}"]\n'
            f'    ro_paths: ["{Path(agentos.__file__).parent}"]\n'  # the demo agent imports agentos in its sandbox
        )
    problem = probe()
    if problem is not None:
        console.print(f"[yellow]bubblewrap is not usable here, so the demo runs unconfined: {problem}[/yellow]")
    path = root / "agentos.yaml"
    path.write_text(
        "# Written by `agentos demo`: a local forge, one repo, one stand-in agent.\n"
        f"state_dir: {root / 'state'}\n"
        "forge: local\n"
        "max_parallel_workers: 2\n"
        "repos:\n"
        "  - name: calc\n"
        f"    path: {repo}\n"
        f"    test_command: {sys.executable} -m unittest -q\n"
        "    test_timeout_s: 60\n"
        f"agents:\n{agents}"
        "routing:\n"
        f"  default: [{agent}]\n"
        "  max_attempts: 2\n"
        "  backoff_base_s: 1\n"
        "  backoff_cap_s: 2\n"
        "limits:\n"
        "  idle_timeout_minutes: 5\n"
        "  max_runtime_minutes: 10\n"
        "  shutdown_grace_s: 5\n"
        "jobs:\n"
        "  dispatch: {interval_s: 1}\n"
        "  pr_monitor: {interval_s: 1}\n"
        "log_level: error\n"
        f"sandbox: {{mode: {'off' if problem else 'bubblewrap'}}}\n"
    )
    return path


async def file_issues(config: Config, fix: str, feature: str) -> None:
    forge = LocalForge(config.state_path, {r.name: r for r in config.repos})
    await forge.new_issue(
        "calc",
        "Fix add() returning the wrong sum",
        "## Goal\n\n`add(2, 3)` returns -1; it must return 5.\n\n"
        f"```diff\n{fix}```\n\n## Success Criteria\n\n- `test_calc.py` passes\n",
        [READY_LABEL, "prio:high"],
    )
    await forge.new_issue(
        "calc",
        "Add multiply()",
        f"## Goal\n\nA `multiply(a, b)` next to `add`.\n\n```diff\n{feature}```\n\nDepends on #1\n",
        [READY_LABEL],
    )
    await forge.new_issue(
        "calc",
        "Make the calculator feel faster",
        "Users say it feels slow. No details yet.\n",
        [READY_LABEL, "prio:low"],
    )


async def _run(config: Config, path: Path, root: Path, timeout: float) -> int:
    from agentos.daemon import Daemon

    daemon = Daemon(config, path, socket_path=root / "agentos.sock")
    runner = asyncio.create_task(daemon.run())
    await daemon.ready.wait()
    rt = daemon.rt
    assert rt is not None
    progress = Progress(console, title_of=lambda task_id: t.title if (t := rt.graph.find(task_id)) else "")
    rt.listeners.append(progress)
    deadline = time.monotonic() + timeout
    done = False
    with progress:  # a live line per task on a terminal, a timeline of plain lines otherwise
        while time.monotonic() < deadline and not runner.done():
            tasks = list(rt.graph)
            if len(tasks) >= 3 and all(t.status in (TaskStatus.MERGED, TaskStatus.BLOCKED) for t in tasks):
                done = True
                break
            await asyncio.sleep(0.2)
    daemon.request_stop()
    await runner
    if not done:
        console.print(f"[red]the demo did not finish within {timeout:.0f}s[/red]")
        return 1
    merged = sum(1 for t in rt.graph if t.status is TaskStatus.MERGED)
    blocked = sum(1 for t in rt.graph if t.status is TaskStatus.BLOCKED)
    console.print(f"\n[bold]{merged} merged, {blocked} escalated.[/bold]")
    return 0


def _git_identity() -> None:
    """Commits agentos makes (partial work, CODEBASE.md) need an identity; a fresh machine may have none."""
    probe = subprocess.run(["git", "config", "--get", "user.email"], capture_output=True, text=True, check=False)
    if probe.returncode != 0 or not probe.stdout.strip():
        for who in ("AUTHOR", "COMMITTER"):
            os.environ.setdefault(f"GIT_{who}_NAME", "agentos demo")
            os.environ.setdefault(f"GIT_{who}_EMAIL", "demo@agentos.invalid")


def run_demo(workdir: Path | None = None, *, keep: bool = False, timeout: float = 180.0) -> int:
    if workdir is not None and workdir.exists() and any(workdir.iterdir()):
        console.print(f"[red]{workdir} is not empty; give --dir a new or empty directory[/red]")
        return 2
    root = workdir or Path(tempfile.mkdtemp(prefix="agentos-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    alog.configure("error")
    _git_identity()
    console.print(f"[bold]agentos demo[/bold] in {root}")
    repo, fix, feature = make_repo(root)
    path = write_config(root, repo)
    config, _ = load_config(path)
    asyncio.run(file_issues(config, fix, feature))
    console.print("A repository with a failing test, and three issues on the local forge:")
    console.print("  #1 Fix add()   #2 Add multiply() (depends on #1)   #3 a vague wish (will escalate)\n")
    code = asyncio.run(_run(config, path, root, timeout))
    console.print("\nThe repository's history now:")
    console.print(_git(repo, "log", "--oneline", "--no-decorate", "-n", "5").rstrip())
    issue3 = root / "state" / "local-forge" / "calc" / "issues" / "3.md"
    console.print(f"\nThe escalation note is on issue #3: {issue3}")
    if keep or workdir is not None:
        console.print(f"Everything is kept in {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    return code
