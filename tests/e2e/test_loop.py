"""The whole loop through the real daemon process: issue → worktree → agent → checks → merge or escalation."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from agentos.config import RepoConfig
from agentos.forge.base import BLOCKED_LABEL, READY_LABEL
from agentos.forge.local import LocalForge

from .conftest import REPO, Loop, alive, claude_agent, command_agent, pid_list

MakeLoop = Callable[..., Loop]
KEY = re.compile(r"<!-- agentos:key=(.*?) -->")
CHECK_LINES = """import pathlib
import sys

path = pathlib.Path("agent_output.txt")
lines = len(path.read_text().splitlines()) if path.exists() else 2
print(f"agent_output.txt has {lines} lines; 2 needed")
sys.exit(0 if lines >= 2 else 1)
"""


def comment_keys(loop: Loop, number: int) -> list[str]:
    return [key for c in loop.issue(number)[1] for key in KEY.findall(c.body)]


class TestFirstAttempt:
    def test_issue_merged_on_first_attempt(self, make_loop: MakeLoop) -> None:
        """A ready issue becomes a squash commit "<title> (#pr)" closing it, and its worktree goes away."""
        loop = make_loop({"claude": claude_agent("complete")})
        body = "## Goal\n\nSay hello.\n\n## Success Criteria\n\n- a greeting exists\n\nType: implementation\n"
        number = loop.new_issue("Add a greeting", body)
        task_id = f"{REPO}#{number}"

        task = loop.wait_status(task_id, "merged")

        [pull] = loop.pulls()
        assert pull["state"] == "merged" and pull["head"] == task["branch"]
        subject, message = loop.main_log()[0]
        assert subject == f"Add a greeting (#{pull['number']})"
        assert f"Closes #{number}" in message
        assert "edited by the fake agent" in loop.show("agent_output.txt")
        assert f"## #{number} Add a greeting" in loop.show("CODEBASE.md")
        assert ".agent_result.md" not in loop.git("ls-tree", "-r", "--name-only", "main")
        issue, comments = loop.issue(number)
        assert issue.state == "closed"
        assert [KEY.findall(c.body) for c in comments] == [[f"attempt:{task_id}:1"]]
        assert [a["outcome"] for a in task["attempts"]] == ["complete"]
        loop.wait_for(lambda: not loop.worktree(task).exists(), what="the worktree to be removed")
        assert task["branch"] not in loop.git("branch", "--list")
        rows = json.loads(loop.cli("ctl", "tasks", "--json").stdout)
        assert [(r["id"], r["status"], r["pr"]) for r in rows] == [(task_id, "merged", pull["number"])]
        assert loop.stop() == 0  # SIGTERM: a clean shutdown


class TestRetries:
    def test_partial_then_complete_builds_on_the_first_attempt(self, make_loop: MakeLoop) -> None:
        """A partial attempt's work is committed to the branch; the next agent sees its result file and builds on it."""
        loop = make_loop(
            {
                "half": claude_agent("partial", FAKE_AGENT_COMMIT="0"),
                "finisher": command_agent("complete"),
            },
            routing={"max_attempts": 3},
            start=False,
        )
        prompts = loop.root / "finisher-prompts.log"
        loop.agents["finisher"]["env"]["FAKE_AGENT_PROMPT_LOG"] = str(prompts)
        loop.write_config()
        loop.start()
        number = loop.new_issue("Write both halves")
        task_id = f"{REPO}#{number}"

        task = loop.wait_status(task_id, "merged")

        assert [(a["agent"], a["outcome"], a["blocker_code"]) for a in task["attempts"]] == [
            ("half", "partial", "test_failure"),
            ("finisher", "complete", None),
        ]
        prompt = prompts.read_text()
        assert "## Attempt 1 by half: partial, blocker test_failure" in prompt
        assert "> STATUS: partial" in prompt  # the first attempt's result file, quoted
        assert "finish the remaining half" in prompt
        lines = loop.show("agent_output.txt").splitlines()
        assert len(lines) == 2, "the second agent appended to the first one's (uncommitted, then committed) work"
        assert [c for c in loop.main_log() if "(#" in c[0]] == loop.main_log()[:1]

    def test_failing_tests_send_the_committed_work_to_the_next_agent(self, make_loop: MakeLoop) -> None:
        """`complete` with red tests is test_failure; the next agent gets the test output and builds on the branch."""
        loop = make_loop(
            {"first": claude_agent("complete"), "second": command_agent("complete")},
            routing={"max_attempts": 3},
            start=False,
        )
        (loop.repo / "check_lines.py").write_text(CHECK_LINES)
        loop.git("add", "check_lines.py")
        loop.git("commit", "-q", "-m", "a check that wants two lines")
        prompts = loop.root / "second-prompts.log"
        loop.agents["second"]["env"]["FAKE_AGENT_PROMPT_LOG"] = str(prompts)
        loop.overrides["repos"] = [
            {"name": REPO, "path": str(loop.repo), "test_command": "python3 check_lines.py", "test_timeout_s": 60}
        ]
        loop.write_config()
        loop.start()
        number = loop.new_issue("Two lines please")
        task_id = f"{REPO}#{number}"

        task = loop.wait_status(task_id, "merged")

        assert [(a["agent"], a["outcome"], a["blocker_code"]) for a in task["attempts"]] == [
            ("first", "failed", "test_failure"),
            ("second", "complete", None),
        ]
        prompt = prompts.read_text()
        assert "## Attempt 1 by first: failed, blocker test_failure" in prompt
        assert "agent_output.txt has 1 lines; 2 needed" in prompt
        assert len(loop.show("agent_output.txt").splitlines()) == 2
        assert len(loop.pulls()) == 1

    def test_a_usage_limit_burns_no_attempt(self, make_loop: MakeLoop) -> None:
        """An agent that hits its usage limit is paused and the next agent runs, even with max_attempts 1."""
        loop = make_loop(
            {"limited": claude_agent("quota"), "backup": command_agent("complete")}, routing={"max_attempts": 1}
        )
        number = loop.new_issue("Work around the limit")

        task = loop.wait_status(f"{REPO}#{number}", "merged")

        assert [(a["agent"], a["blocker_code"]) for a in task["attempts"]] == [
            ("limited", "quota_limited"),
            ("backup", None),
        ]

    def test_escalated_after_max_attempts(self, make_loop: MakeLoop) -> None:
        """After max_attempts the issue is labelled blocked, gets one structured comment, and is not re-run."""
        loop = make_loop({"first": claude_agent("blocked"), "second": command_agent("blocked")})
        number = loop.new_issue("Do the vague thing")
        task_id = f"{REPO}#{number}"

        task = loop.wait_status(task_id, "blocked")

        assert [(a["agent"], a["blocker_code"]) for a in task["attempts"]] == [
            ("first", "missing_context"),
            ("second", "missing_context"),
        ]
        # The comment follows the journalled BLOCKED (and is re-posted by a restart if the daemon died first).
        loop.wait_for(lambda: comment_keys(loop, number), what="the escalation comment")
        issue, comments = loop.issue(number)
        assert BLOCKED_LABEL in issue.labels and READY_LABEL not in issue.labels
        assert issue.state == "open"
        escalations = [c for c in comments if "escalated this issue" in c.body]
        assert len(escalations) == 1
        note = escalations[0].body
        assert "| 1 | `first` | blocked | `missing_context` |" in note
        assert "| 2 | `second` | blocked | `missing_context` |" in note
        assert "name the file in the issue" in note  # the agent's NEXT_STEP
        assert f"agentos ctl task retry {task_id}" in note
        assert loop.pulls() == []
        for _ in range(2):  # the dispatcher does not start a new generation for a blocked issue
            loop.ctl("run", {"name": "dispatch"})
        assert [t["id"] for t in loop.tasks()] == [task_id]
        assert comment_keys(loop, number) == [f"escalation:{task_id}:2"]

    def test_no_result_file_is_invalid_result_contract(self, make_loop: MakeLoop) -> None:
        """No result file is invalid_result_contract: the attempt's work (commits too) is saved as a patch
        named in the next prompt, and undone on the branch."""
        loop = make_loop({"forgetful": claude_agent("noresult"), "finisher": command_agent("complete")}, start=False)
        prompts = loop.root / "finisher-prompts.log"
        loop.agents["finisher"]["env"]["FAKE_AGENT_PROMPT_LOG"] = str(prompts)
        loop.write_config()
        loop.start()
        number = loop.new_issue("Forget the contract")
        task_id = f"{REPO}#{number}"

        task = loop.wait_status(task_id, "merged")

        first, second = task["attempts"]
        assert (first["agent"], first["outcome"], first["blocker_code"]) == (
            "forgetful",
            "failed",
            "invalid_result_contract",
        )
        assert second["outcome"] == "complete"
        patch = Path(first["patch_path"])
        assert patch == loop.run_path(task_id, 1) / "changes.patch"
        assert "edited by the fake agent" in patch.read_text()  # the agent committed it; it is saved all the same
        assert f"Its changes were saved as a patch: {patch}" in prompts.read_text()
        assert len(loop.show("agent_output.txt").splitlines()) == 1, "the invalid attempt's commit was undone"


class TestDependencies:
    def test_dependent_issue_starts_only_after_its_dependency_merged(self, make_loop: MakeLoop) -> None:
        """`Depends on #N` holds a task back (even a higher-priority, older one) until #N's task merged."""
        loop = make_loop({"claude": claude_agent("complete")}, max_parallel_workers=2)
        later = loop.new_issue("Second part", "Build on the first part.\n\nDepends on #2\n", "prio:high")
        first = loop.new_issue("First part", "The foundation.")
        assert (later, first) == (1, 2)

        dependent = loop.wait_status(f"{REPO}#{later}", "merged")

        base = loop.task(f"{REPO}#{first}")
        assert base["status"] == "merged"
        base_pull = next(p for p in loop.pulls() if p["head"] == base["branch"])
        merged_at = datetime.fromisoformat(base_pull["merged_at"])
        started_at = datetime.fromisoformat(dependent["attempts"][0]["started_at"])
        assert started_at >= merged_at
        subjects = [s for s, _ in loop.main_log() if "(#" in s]
        assert [s.split(" (#")[0] for s in subjects] == ["Second part", "First part"]
        assert len(loop.show("agent_output.txt").splitlines()) == 2

    def test_a_dependency_closed_by_hand_releases_the_dependent(self, make_loop: MakeLoop) -> None:
        """A task waiting on an issue that is closed without ever having a task runs once it is closed."""
        loop = make_loop({"claude": claude_agent("complete")})
        waiting = loop.new_issue("Needs the other", "Depends on #2\n")
        loop.cli("issue", "new", "--repo", REPO, "--title", "Done by hand", "--config", str(loop.config))
        loop.ctl("run", {"name": "dispatch"})
        assert loop.task(f"{REPO}#{waiting}")["depends_on"] == [f"{REPO}#2"]
        assert loop.task(f"{REPO}#{waiting}")["attempts"] == []

        asyncio.run(
            LocalForge(loop.state, {REPO: RepoConfig(name=REPO, path=str(loop.repo), test_command="true")}).close_issue(
                REPO, 2
            )
        )

        task = loop.wait_status(f"{REPO}#{waiting}", "merged")
        assert task["depends_on"] == []
        assert [t["id"] for t in loop.tasks()] == [f"{REPO}#{waiting}"]


class TestLimits:
    @pytest.mark.slow
    def test_per_repo_limit_runs_one_attempt_at_a_time(self, make_loop: MakeLoop) -> None:
        """With max_parallel_per_repo 1, two ready issues of one repo never run at the same time."""
        loop = make_loop(
            {"claude": claude_agent("slow", FAKE_AGENT_SLOW_S="0.5")}, max_parallel_workers=3, max_parallel_per_repo=1
        )
        first = loop.new_issue("One at a time", "", "prio:high")
        second = loop.new_issue("Then the other")

        a = loop.wait_status(f"{REPO}#{first}", "merged")
        b = loop.wait_status(f"{REPO}#{second}", "merged")

        spans = sorted(
            (
                datetime.fromisoformat(t["attempts"][0]["started_at"]),
                datetime.fromisoformat(t["attempts"][0]["ended_at"]),
            )
            for t in (a, b)
        )
        assert spans[0][1] <= spans[1][0], f"attempts overlapped: {spans}"
        # The second branched from the old main and conflicted with the first merge: it was reset onto the new
        # main and redone (not sent round as a test failure until escalation), then merged cleanly.
        assert len(loop.show("agent_output.txt").splitlines()) == 2
        assert b["attempts"][-1]["outcome"] == "complete"

    def test_hung_agent_and_its_children_are_killed_at_the_idle_limit(self, make_loop: MakeLoop) -> None:
        """An agent that goes silent is killed with the child that ignores SIGTERM; the attempt is a timeout."""
        # The fake must start, fork and record both pids before the idle limit: the limit is derived from how long
        # a Python start-up takes on this machine now (a loaded machine gets a longer one), not a fixed 1.2 s.
        idle_s = idle_limit_for(startup_s())
        loop = make_loop({"claude": claude_agent("hang")}, routing={"max_attempts": 1}, start=False)
        pids = loop.root / "agent.pids"
        loop.agents["claude"]["env"].update(FAKE_AGENT_FORK="1", FAKE_AGENT_PID_FILE=str(pids))
        loop.overrides["limits"] = {"idle_timeout_minutes": idle_s / 60, "kill_grace_s": 0.5}
        loop.write_config()
        loop.start()
        number = loop.new_issue("Hang forever")
        task_id = f"{REPO}#{number}"
        found = loop.wait_for(lambda: len(pid_list(pids)) >= 2 and pid_list(pids), what="the agent and its child")

        task = loop.wait_status(task_id, "blocked")

        [attempt] = task["attempts"]
        assert (attempt["outcome"], attempt["blocker_code"]) == ("failed", "timeout")
        assert "idle limit" in attempt["error"]
        assert [pid for pid in found if alive(pid)] == []
        log = (loop.run_path(task_id, 1) / "agent.log").read_text()
        assert f"[agentos: idle limit of {idle_s:g}s reached; process group killed]" in log
        assert attempt["duration_s"] < idle_s + 10


def startup_s() -> float:
    """The slowest of three Python start-ups that import what the fake agents import, in seconds."""
    runs = []
    for _ in range(3):
        started = time.monotonic()
        subprocess.run([sys.executable, "-c", "import argparse, json, signal, subprocess"], check=True)
        runs.append(time.monotonic() - started)
    return max(runs)


def idle_limit_for(startup: float) -> float:
    """An idle limit well past one start-up (the fake and its child each start once): 1.2 s or 20 start-ups."""
    return round(max(1.2, 20 * startup), 1)
