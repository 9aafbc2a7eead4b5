"""`agentos issue new|ready` with the real daemon process: the daemon files the issue when it serves the CLI's
config, the CLI files it itself otherwise, and a retry never files a second one."""

from __future__ import annotations

import json
import os
import re
import signal
from collections.abc import Callable
from typing import Any

import pytest

from agentos.forge.base import READY_LABEL
from tests.daemon_process import parse_log, read_log

from .conftest import REPO, Loop, claude_agent

MakeLoop = Callable[..., Loop]
CLI_KEY = re.compile(r"<!-- agentos:key=cli:[0-9a-f]{32} -->")


def filed_by_daemon(loop: Loop) -> list[dict[str, Any]]:
    """The daemon's ``issue_filed`` log events: issues it filed (or found again by key) for the CLI."""
    return [e for e in parse_log(read_log(loop.log)) if e.get("event") == "issue_filed"]


def issue_files(loop: Loop) -> list[str]:
    folder = loop.forge / "issues"
    return sorted(p.name for p in folder.glob("*.md")) if folder.is_dir() else []


def number_of(stdout: str) -> int:
    return int(json.loads(stdout[stdout.index("{") :])["number"])


class TestThroughTheDaemon:
    def test_a_ready_issue_is_filed_by_the_daemon_once_and_merged(self, make_loop: MakeLoop) -> None:
        """`issue new --ready` with the daemon running: the daemon files it (one file, with the CLI's key) and
        the task runs to a merge."""
        loop = make_loop({"claude": claude_agent("complete")})
        number = loop.new_issue("Add a greeting", "## Goal\n\nSay hello.\n")

        loop.wait_status(f"{REPO}#{number}", "merged")
        assert [(e["number"], e["ready"]) for e in filed_by_daemon(loop)] == [(number, True)]
        assert issue_files(loop) == [f"{number}.md"]
        issue, _ = loop.issue(number)
        assert issue.title == "Add a greeting" and CLI_KEY.search(issue.body)
        assert issue.body.startswith("## Goal\n\nSay hello.")

    def test_ready_later_goes_through_the_daemon(self, make_loop: MakeLoop) -> None:
        """An issue filed without --ready waits; `issue ready N` (answered by the daemon) starts it."""
        loop = make_loop({"claude": claude_agent("complete")})
        config = str(loop.config)
        number = number_of(loop.cli("issue", "new", "--title", "Later", "--json", "--config", config).stdout)
        assert READY_LABEL not in loop.issue(number)[0].labels and loop.tasks() == []

        done = loop.cli("issue", "ready", str(number), "--config", config)

        assert done.stdout.strip() == f"{REPO}#{number} is ready"
        loop.wait_status(f"{REPO}#{number}", "merged")
        assert [(e["number"], e["ready"]) for e in filed_by_daemon(loop)] == [(number, False)]

    def test_a_paused_daemon_is_named_and_show_hides_the_key(self, make_loop: MakeLoop) -> None:
        """Issue #21, problem 9: `issue new --ready` while paused says nothing starts until `ctl resume`;
        `issue show` prints the body without the hidden key the daemon filed it with."""
        loop = make_loop({"claude": claude_agent("complete")})
        loop.ctl("pause")
        config = str(loop.config)
        done = loop.cli(
            "issue", "new", "--repo", REPO, "--title", "Waits", "--body", "Body.", "--ready", "--config", config
        )
        assert "nothing starts until `agentos ctl resume`" in done.stderr
        shown = loop.cli("issue", "show", "1", "--repo", REPO, "--config", config).stdout
        assert "Body." in shown and not CLI_KEY.search(shown) and "<!--" not in shown

    @pytest.mark.slow
    def test_a_daemon_that_answers_late_still_gets_exactly_one_issue(self, make_loop: MakeLoop) -> None:
        """The daemon is stopped (SIGSTOP) while the CLI waits: the CLI gives up after its timeout and files the
        issue itself; the daemon, resumed, reads the queued request, finds the issue by its key and files
        nothing more. One issue, one task, one merge."""
        loop = make_loop({"claude": claude_agent("complete")})
        assert loop.daemon is not None
        os.kill(loop.daemon.pid, signal.SIGSTOP)
        try:
            number = loop.new_issue("Answered late")
        finally:
            os.kill(loop.daemon.pid, signal.SIGCONT)

        late = loop.wait_for(lambda: filed_by_daemon(loop), what="the daemon to answer the queued request")
        assert [e["number"] for e in late] == [number]
        loop.wait_status(f"{REPO}#{number}", "merged")
        assert issue_files(loop) == [f"{number}.md"]
        assert [t["id"] for t in loop.tasks()] == [f"{REPO}#{number}"]


class TestWithoutTheDaemon:
    def test_with_no_daemon_the_cli_files_it_and_a_later_daemon_runs_it(self, make_loop: MakeLoop) -> None:
        """No daemon: `issue new --ready` files the issue itself; the daemon started afterwards merges it."""
        loop = make_loop({"claude": claude_agent("complete")}, start=False)
        number = loop.new_issue("Filed offline")
        assert number == 1 and issue_files(loop) == ["1.md"]
        assert READY_LABEL in loop.issue(number)[0].labels

        loop.start()

        loop.wait_status(f"{REPO}#{number}", "merged")
        assert filed_by_daemon(loop) == [] and issue_files(loop) == ["1.md"]

    def test_a_daemon_of_another_config_is_not_used(self, make_loop: MakeLoop) -> None:
        """The socket answers, but for another config file: the CLI files the issue in its own config's state."""
        running = make_loop({"claude": claude_agent("complete")})
        mine = make_loop({"claude": claude_agent("complete")}, start=False)
        mine.env = {**mine.env, "AGENTOS_SOCKET": str(running.socket)}

        number = mine.new_issue("Mine, not theirs")

        assert issue_files(mine) == [f"{number}.md"] and issue_files(running) == []
        assert filed_by_daemon(running) == []
