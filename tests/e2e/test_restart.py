"""kill -9 of the daemon at the worst moments, then a restart: the same end state as an uninterrupted run."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import REPO, Loop, alive, claude_agent, pid_list

MakeLoop = Callable[..., Loop]
KEY = re.compile(r"<!-- agentos:key=(.*?) -->")
GATE = """import pathlib
import sys
import time

# A test command that says it started, then waits until the test lets it finish: the test kills the daemon
# while it runs, however slow the machine. Run n waits for release-<n> (or release-all) in its folder.
folder = pathlib.Path(sys.argv[1])
with (folder / "runs.log").open("a") as log:
    log.write("run\\n")
n = len((folder / "runs.log").read_text().splitlines())
deadline = time.monotonic() + 120
while not ((folder / f"release-{n}").exists() or (folder / "release-all").exists()):
    if time.monotonic() > deadline:
        sys.exit(1)
    time.sleep(0.05)
"""


def gate_runs(folder: Path) -> int:
    """How many times the gated test command has started."""
    log = folder / "runs.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


def assert_one_merge(loop: Loop, number: int, title: str) -> None:
    """One PR record, one squash commit closing the issue, no comment posted twice, the issue closed."""
    [pull] = loop.pulls()
    assert pull["state"] == "merged"
    merges = [(s, b) for s, b in loop.main_log() if "(#" in s]
    assert merges == [(f"{title} (#{pull['number']})", merges[0][1])]
    assert f"Closes #{number}" in merges[0][1]
    issue, comments = loop.issue(number)
    assert issue.state == "closed"
    keys = [key for c in comments for key in KEY.findall(c.body)]
    assert len(keys) == len(set(keys)) == len(comments)


@pytest.mark.slow
class TestKillNine:
    def test_kill9_during_an_attempt_then_restart_merges_once(self, make_loop: MakeLoop) -> None:
        """The interrupted attempt is ended (its agent killed), the task re-runs and merges exactly once."""
        loop = make_loop({"claude": claude_agent("slow", FAKE_AGENT_SLOW_S="2")}, start=False)
        pids, prompts = loop.root / "agent.pids", loop.root / "prompts.log"
        loop.agents["claude"]["env"].update(FAKE_AGENT_PID_FILE=str(pids), FAKE_AGENT_PROMPT_LOG=str(prompts))
        loop.write_config()
        loop.start()
        number = loop.new_issue("Survive a crash")
        task_id = f"{REPO}#{number}"
        [first_pid] = loop.wait_for(lambda: pid_list(pids), what="the agent to start")
        loop.wait_for(lambda: loop.task(task_id)["attempts"][0]["pid"], what="the attempt's pid in the journal")
        assert loop.task(task_id)["status"] == "running"  # the agent works for 2 s: this is mid-attempt

        loop.kill9()
        loop.start()
        task = loop.wait_status(task_id, "merged")

        assert [(a["outcome"], a["agent"]) for a in task["attempts"]] == [
            ("interrupted", "claude"),
            ("complete", "claude"),
        ]
        assert not alive(first_pid)
        assert_one_merge(loop, number, "Survive a crash")
        assert [KEY.findall(c.body) for c in loop.issue(number)[1]] == [[f"attempt:{task_id}:2"]]
        second_prompt = prompts.read_text().split("=== end of prompt ===")[1]
        assert "## Attempt 1 by claude: interrupted" in second_prompt
        assert len(loop.show("agent_output.txt").splitlines()) == 1

    def test_kill9_during_validation_and_review_never_opens_a_second_pr(self, make_loop: MakeLoop) -> None:
        """Killed while the tests run, then while the PR's checks run: one attempt, one PR, one comment, one merge."""
        loop = make_loop({"claude": claude_agent("complete")}, start=False)
        gate = loop.root / "gate"
        gate.mkdir()
        (gate / "gate.py").write_text(GATE)
        command = f"python3 {gate / 'gate.py'} {gate}"
        loop.overrides["repos"] = [
            {"name": REPO, "path": str(loop.repo), "test_command": command, "test_timeout_s": 180}
        ]
        loop.write_config()
        loop.start()
        number = loop.new_issue("Crash twice")
        task_id = f"{REPO}#{number}"

        loop.wait_for(lambda: gate_runs(gate) == 1, what="the tests to start (validating)")
        assert loop.task(task_id)["status"] == "validating"
        loop.kill9()
        (gate / "release-1").touch()  # the orphaned first run may end now
        loop.start()
        loop.wait_for(lambda: gate_runs(gate) == 2, what="the resumed validation's tests")
        (gate / "release-2").touch()
        loop.wait_for(lambda: gate_runs(gate) == 3, what="the PR's checks to start")
        task = loop.wait_status(task_id, "pr_open")
        loop.kill9()
        (gate / "release-all").touch()
        loop.start()
        task = loop.wait_status(task_id, "merged")

        assert [a["outcome"] for a in task["attempts"]] == ["complete"]
        assert_one_merge(loop, number, "Crash twice")
        assert [KEY.findall(c.body) for c in loop.issue(number)[1]] == [[f"attempt:{task_id}:1"]]
        assert loop.show("CODEBASE.md").count(f"## #{number} Crash twice") == 1
