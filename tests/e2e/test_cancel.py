"""An operator's cancel, through the real daemon: the work stops for good, whatever state the task was in.

A running agent's process group is killed, a running test command too, an open PR is closed (its branch kept);
the issue loses its ready and running labels; the task stays ``cancelled`` through later dispatch passes and a
restart, and no new generation starts until the issue is made ready again.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from agentos.forge.base import READY_LABEL, RUNNING_LABEL

from .conftest import REPO, Loop, alive, claude_agent, pid_list

MakeLoop = Callable[..., Loop]
PATIENT = {"idle_timeout_minutes": 10, "max_runtime_minutes": 20, "kill_grace_s": 1}
"""Limits that never end an attempt during a test: only the cancel may stop it."""


def journal(loop: Loop) -> list[dict[str, Any]]:
    """Every journal line the daemon wrote (rotated history first)."""
    paths = [*sorted((loop.state / "events").glob("events-*.jsonl")), loop.state / "journal.jsonl"]
    lines = [line for p in paths if p.exists() for line in p.read_text().splitlines() if line.strip()]
    return [json.loads(line) for line in lines]


def dispatch_passes(loop: Loop, n: int = 2) -> None:
    """Run the dispatcher ``n`` times now (each call waits for its pass to finish)."""
    for _ in range(n):
        loop.ctl("run", {"name": "dispatch"})


def assert_cancelled_for_good(loop: Loop, number: int, task_id: str) -> dict[str, Any]:
    """Cancelled, alone (no new generation), its issue out of the ready set; the journal says the operator did it."""
    task = loop.task(task_id)
    assert task["status"] == "cancelled"
    assert [t["id"] for t in loop.tasks()] == [task_id]
    issue, _comments = loop.issue(number)
    assert READY_LABEL not in issue.labels and RUNNING_LABEL not in issue.labels, issue.labels
    lines = [line for line in journal(loop) if line.get("task") == task_id]
    text = json.dumps(lines)
    assert any(line.get("type") == "operator_cancel" for line in lines), text
    assert "daemon shutting down" not in text and '"shutdown"' not in text
    return task


class TestCancel:
    @pytest.mark.slow
    def test_a_running_attempt_is_killed_and_the_task_stays_cancelled(self, make_loop: MakeLoop) -> None:
        """The agent's group (a child ignoring SIGTERM too) is gone when cancel returns; nothing starts it again."""
        loop = make_loop({"claude": claude_agent("hang")}, start=False)
        pids = loop.root / "agent.pids"
        loop.agents["claude"]["env"].update(FAKE_AGENT_FORK="1", FAKE_AGENT_PID_FILE=str(pids))
        loop.overrides["limits"] = PATIENT
        loop.write_config()
        loop.start()
        number = loop.new_issue("Cancel me while I run")
        task_id = f"{REPO}#{number}"
        agents = loop.wait_for(lambda: len(pid_list(pids)) >= 2 and pid_list(pids), what="the agent and its child")
        loop.wait_for(lambda: RUNNING_LABEL in loop.issue(number)[0].labels, what="the running label")

        assert loop.ctl("cancel", {"id": task_id}) == {"task": task_id, "status": "cancelled"}

        assert [pid for pid in agents if alive(pid)] == [], "cancel returns once the agent's group is gone"
        [attempt] = loop.task(task_id)["attempts"]
        assert attempt["outcome"] == "interrupted" and "operator_cancel" in attempt["error"]
        dispatch_passes(loop)
        assert_cancelled_for_good(loop, number, task_id)
        assert pid_list(pids) == agents, "no agent started again"

        loop.stop()
        loop.start()
        dispatch_passes(loop)
        assert_cancelled_for_good(loop, number, task_id)
        assert pid_list(pids) == agents

        loop.cli("issue", "ready", str(number), "--repo", REPO, "--config", str(loop.config))
        loop.wait_for(lambda: f"{task_id}.2" in [t["id"] for t in loop.tasks()], what="a fresh ready label's task")

    @pytest.mark.slow
    def test_validating_the_test_command_is_killed(self, make_loop: MakeLoop) -> None:
        """A cancel while the repo's tests run kills them; the task stays cancelled, nothing is pushed."""
        loop = make_loop({"claude": claude_agent("complete")}, start=False)
        test_pids = loop.root / "tests.pids"
        loop.overrides["repos"] = [
            {
                "name": REPO,
                "path": str(loop.repo),
                "test_command": f"echo $$ >> {test_pids}; exec sleep 600",
                "test_timeout_s": 900,
            }
        ]
        loop.overrides["limits"] = PATIENT
        loop.write_config()
        loop.start()
        number = loop.new_issue("Cancel me while I am tested")
        task_id = f"{REPO}#{number}"
        [tests] = loop.wait_for(lambda: pid_list(test_pids), what="the test command to start")
        assert loop.task(task_id)["status"] == "validating"

        loop.ctl("cancel", {"id": task_id})

        assert not alive(tests), "the test command was killed"
        dispatch_passes(loop)
        task = assert_cancelled_for_good(loop, number, task_id)
        assert [a["outcome"] for a in task["attempts"]] == ["complete"]
        assert loop.pulls() == []
        loop.stop()
        loop.start()
        dispatch_passes(loop)
        assert_cancelled_for_good(loop, number, task_id)
        assert pid_list(test_pids) == [tests], "the hand-off was not resumed"

    @pytest.mark.slow
    def test_an_open_pr_is_closed_and_its_branch_kept(self, make_loop: MakeLoop) -> None:
        """A cancel of a task whose PR waits for approval closes the PR with a comment; the branch stays."""
        loop = make_loop({"claude": claude_agent("complete")}, start=False)
        loop.overrides["repos"] = [
            {
                "name": REPO,
                "path": str(loop.repo),
                "test_command": "python3 -m unittest -q",
                "automation_mode": "dispatcher_only",
            }
        ]
        loop.write_config()
        loop.start()
        number = loop.new_issue("Cancel my PR")
        task_id = f"{REPO}#{number}"
        opened = loop.wait_status(task_id, "pr_open")
        [pull] = loop.wait_for(lambda: loop.pulls(), what="the PR record")

        loop.ctl("cancel", {"id": task_id})

        [pull] = loop.pulls()
        assert pull["state"] == "closed"
        assert any("cancelled by the operator" in c["body"] for c in pull["comments"]), pull["comments"]
        assert opened["branch"] in loop.git("branch", "--list"), "the branch is kept"
        dispatch_passes(loop)
        assert_cancelled_for_good(loop, number, task_id)
        assert [p["state"] for p in loop.pulls()] == ["closed"], "no second PR"
