"""``agentos run --once``: the real daemon works through what is ready, prints plain progress lines off a TTY,
and exits."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

from .conftest import AGENTOS, REPO, Loop, claude_agent

MakeLoop = Callable[..., Loop]


class TestRunOnce:
    def test_works_through_ready_issues_then_exits(self, make_loop: MakeLoop) -> None:
        """Two ready issues (one merges, one escalates): exit 0, one plain line per change, a summary."""
        loop = make_loop({"claude": claude_agent("plan")}, start=False)
        ok = loop.new_issue("Add a greeting", "soak-plan: hello.txt complete\n")
        bad = loop.new_issue("Vague wish", "soak-plan: wish.txt blocked\n")

        done = subprocess.run(
            [str(AGENTOS), "run", "--once", "--timeout", "120", "--config", str(loop.config)],
            env=loop.env,
            capture_output=True,
            text=True,
            timeout=180,
        )

        assert done.returncode == 0, done.stdout + done.stderr
        lines = done.stdout.splitlines()
        started = f"{REPO}#{ok}      queued → running  agent=claude attempt=1"
        assert any(line.endswith(started) for line in lines), done.stdout
        assert any(line.endswith(f"{REPO}#{ok}      MERGED") for line in lines)
        assert any(line.endswith(f"{REPO}#{bad}      ESCALATED") for line in lines)
        assert "this run: 2 tasks, 1 merged, 1 escalated, 0 PRs open" in done.stdout
        assert "{" not in done.stdout, "log lines belong on stderr"
        assert "\x1b[" not in done.stdout, "no live view off a terminal"

    def test_times_out_with_exit_1_naming_what_is_pending(self, make_loop: MakeLoop) -> None:
        """An attempt that outlives --timeout: exit 1, and the pending task is named."""
        loop = make_loop({"claude": claude_agent("plan")}, start=False, limits={"idle_timeout_minutes": 5})
        slow = loop.new_issue("Slow", "soak-plan: slow.txt hang\n")

        done = subprocess.run(
            [str(AGENTOS), "run", "--once", "--timeout", "3", "--config", str(loop.config)],
            env=loop.env,
            capture_output=True,
            text=True,
            timeout=120,
        )

        assert done.returncode == 1, done.stdout + done.stderr
        assert f"--once: still working after 3s (pending: {REPO}#{slow})" in done.stdout
