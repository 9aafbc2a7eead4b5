"""Review comments reach the agent, end to end on the local forge: the real daemon, ``agentos pr review`` (the
real CLI), the fake agent CLI and real git. The repo protects the agent's output file, so every PR waits for an
operator's approval: the review arrives while the PR is open, not after it merged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agentos.forge.base import BLOCKED_LABEL, REVIEW_LABEL

from .conftest import REPO, Loop, claude_agent

MakeLoop = Callable[..., Loop]
SEPARATOR = "=== end of prompt ==="


def protected_loop(make_loop: MakeLoop, **overrides: Any) -> Loop:
    loop = make_loop({"claude": claude_agent("complete")}, start=False, **overrides)
    loop.agents["claude"]["env"]["FAKE_AGENT_PROMPT_LOG"] = str(loop.root / "prompts.log")
    loop.overrides["repos"] = [
        {
            "name": REPO,
            "path": str(loop.repo),
            "test_command": "python3 -m unittest -q",
            "protected_paths": ["agent_output.txt"],
        }
    ]
    loop.write_config()
    loop.start()
    return loop


def waiting_pull(loop: Loop) -> dict[str, Any]:
    def labelled() -> dict[str, Any] | None:
        pulls = loop.pulls()
        return pulls[0] if pulls and REVIEW_LABEL in pulls[0]["labels"] else None

    return loop.wait_for(labelled, what="the PR to wait for approval")


def review(loop: Loop, number: int, body: str) -> None:
    ref = f"{REPO}#{number}"
    loop.cli(
        "pr",
        "review",
        ref,
        "--request-changes",
        "--body",
        body,
        "--file",
        "agent_output.txt",
        "--line",
        "1",
        "--config",
        str(loop.config),
    )


def comments(loop: Loop, number: int) -> list[str]:
    return [c["body"] for c in next(p for p in loop.pulls() if p["number"] == number)["comments"]]


def test_a_requested_change_goes_to_the_agent_on_the_same_branch_and_the_fix_merges(make_loop: MakeLoop) -> None:
    """`agentos pr review --request-changes` → the next prompt has the review (file, line, fenced text) → the agent
    pushes to the same PR, says what changed there and answers the line comment → approved → merged."""
    loop = protected_loop(make_loop)
    number = loop.new_issue("Write output")
    task_id = f"{REPO}#{number}"
    pull = waiting_pull(loop)

    review(loop, pull["number"], "Write a second line too")

    def fixed() -> dict[str, Any] | None:
        task = loop.task(task_id)
        return task if len(task["attempts"]) == 2 and task["status"] == "pr_open" else None

    task = loop.wait_for(fixed, what="the review's fix to be pushed")
    assert task["review_rounds"] == 1 and task["pr"] == pull["number"]
    second = (loop.root / "prompts.log").read_text().split(SEPARATOR)[1]
    assert "Reviewers asked for changes on PR" in second and "`agent_output.txt` line 1" in second
    assert "Write a second line too" in second and "untrusted" in second
    loop.wait_for(lambda: len(comments(loop, pull["number"])) >= 3, what="the replies on the PR")
    said = comments(loop, pull["number"])
    assert any("addressed the review" in c for c in said), said
    assert any("Addressed in attempt 2" in c and "Write a second line too" in c for c in said), said
    assert [p["number"] for p in loop.pulls()] == [pull["number"]], "the same PR, no second one"

    waiting_pull(loop)
    assert loop.ctl("approve", {"ref": f"{REPO}#{pull['number']}"})["result"] == "merged"
    assert loop.task(task_id)["status"] == "merged"
    assert len(loop.show("agent_output.txt").splitlines()) == 2


def test_past_max_review_rounds_the_task_escalates(make_loop: MakeLoop) -> None:
    """With `routing.max_review_rounds: 0` a requested change escalates: blocked, the PR open with a comment."""
    loop = protected_loop(make_loop, routing={"max_review_rounds": 0})
    number = loop.new_issue("Write output")
    task_id = f"{REPO}#{number}"
    pull = waiting_pull(loop)

    review(loop, pull["number"], "No, do it differently")

    task = loop.wait_status(task_id, "blocked")
    assert task["last_blocker"] == "review_requested" and len(task["attempts"]) == 1
    assert any("max_review_rounds" in c for c in comments(loop, pull["number"]))
    assert loop.pulls()[0]["state"] == "open"
    assert BLOCKED_LABEL in loop.issue(number)[0].labels
