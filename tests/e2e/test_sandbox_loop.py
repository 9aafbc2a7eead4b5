"""The whole loop through the real daemon with ``sandbox.mode: bubblewrap``: the agent, the hooks and the test
command run in bubblewrap, and the issue still ends merged."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from agentos.runners.sandbox import SANDBOX_HOME, probe

from .conftest import REPO, Loop, claude_agent

MakeLoop = Callable[..., Loop]
PROBLEM = probe()
pytestmark = pytest.mark.skipif(PROBLEM is not None, reason=f"bubblewrap cannot run here: {PROBLEM}")


def test_issue_merged_with_every_attempt_sandboxed(make_loop: MakeLoop) -> None:
    """The fake Claude edits, commits and writes its result file inside its sandbox, the repo's tests and
    hooks run sandboxed (the hook sees the sandbox's HOME and no state directory), and the PR merges."""
    sandbox = {"mode": "bubblewrap", "memory_mb": 1024, "max_processes": 256, "tmp_mb": 64}
    loop = make_loop({"claude": claude_agent("complete")}, start=False, sandbox=sandbox)
    probe_hook = f'test "$HOME" = {SANDBOX_HOME} && ! test -e {loop.state}/graph.json'
    repo = {"name": REPO, "path": str(loop.repo), "test_command": "python3 -m unittest -q", "test_timeout_s": 60}
    loop.overrides["repos"] = [{**repo, "hooks": {"before_run": probe_hook}}]
    loop.write_config()
    loop.start()
    body = "## Goal\n\nSay hello.\n\n## Success Criteria\n\n- a greeting exists\n\nType: implementation\n"
    number = loop.new_issue("Add a greeting", body)

    task = loop.wait_status(f"{REPO}#{number}", "merged")

    [pull] = loop.pulls()
    assert pull["state"] == "merged" and pull["head"] == task["branch"]
    assert "edited by the fake agent" in loop.show("agent_output.txt")
    assert [a["outcome"] for a in task["attempts"]] == ["complete"]
