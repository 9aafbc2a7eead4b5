"""`agentos ctl task close --wontfix` end to end on the local forge: the real daemon, the real CLI, real git."""

from __future__ import annotations

import json

from .conftest import REPO
from .test_reviews import MakeLoop, protected_loop, waiting_pull


def test_wont_fix_closes_the_issue_the_pr_and_its_branch(make_loop: MakeLoop) -> None:
    """A task whose PR waits for approval, closed as won't fix from the command line: cancelled with blocker
    wontfix, the PR closed, its branch gone from the user's repository, the issue closed with the reason."""
    loop = protected_loop(make_loop)
    number = loop.new_issue("Write output")
    task_id = f"{REPO}#{number}"
    pull = waiting_pull(loop)
    assert pull["head"] in loop.git("branch", "--list", pull["head"])

    done = loop.cli("ctl", "task", "close", task_id, "--wontfix", "--reason", "not needed after all", "--json")

    assert json.loads(done.stdout) == {"task": task_id, "status": "cancelled", "blocker": "wontfix"}
    assert loop.pulls()[0]["state"] == "closed"
    assert loop.git("branch", "--list", pull["head"]) == ""
    issue, comments = loop.issue(number)
    assert issue.state == "closed" and "wontfix" in issue.labels
    assert any("won't fix by the operator (ctl): not needed after all" in c.body for c in comments)
    [row] = [t for t in loop.tasks() if t["id"] == task_id]
    assert (row["status"], row["blocker"]) == ("cancelled", "wontfix")
