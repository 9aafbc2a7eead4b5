"""Acceptance checks after the merge, through the real daemon on the local forge (issue #18).

A fake agent writes a file. An issue's ``## Acceptance`` command fails on the base after the first merge: a new
generation gets the command's output in its prompt, its merge passes the check, the task becomes ``accepted``
and the issue is closed (the PR said ``Refs #N``, so the merge did not close it). A ``human`` item waits for
``agentos ctl accept``; manual steps in the result are posted on the issue. A malformed section gets one comment.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agentos.forge.base import Comment

from .conftest import FAKES, REPO, Loop

MakeLoop = Callable[..., Loop]


def writer(path: str, text: str, **env: str) -> dict[str, Any]:
    return {
        "kind": "command",
        "argv": [str(FAKES / "writer_agent.py"), "{prompt_file}"],
        "env": {"FAKE_WRITE_PATH": path, "FAKE_WRITE_TEXT": text, **env},
    }


def keyed(comments: list[Comment], key: str) -> list[str]:
    return [c.body for c in comments if f"agentos:key={key}" in c.body]


def test_a_failing_check_goes_back_to_an_agent_then_passes_and_is_accepted(make_loop: MakeLoop) -> None:
    loop = make_loop(
        {"writer": writer("version.txt", "1\n", FAKE_WRITE_TEXT_ON_FEEDBACK="2\n")},
        acceptance={"max_fix_attempts": 2},
    )
    check = "grep -q 2 version.txt || { echo version-is-wrong; exit 3; }"
    body = f"Bump the version.\n\n## Acceptance\n- command: {check}\n"
    number = loop.new_issue("Bump the version", body)

    first = loop.wait_status(f"{REPO}#{number}", "merged")
    second = loop.wait_status(f"{REPO}#{number}.2", "accepted", timeout=60)

    assert first["status"] == "merged" and second["status"] == "accepted"
    assert f"command: {check}" in (loop.run_path(f"{REPO}#{number}", 1) / "prompt.md").read_text()
    prompt = (loop.run_path(f"{REPO}#{number}.2", 1) / "prompt.md").read_text()
    assert "An acceptance check failed after the merge" in prompt and "version-is-wrong" in prompt
    assert loop.show("version.txt") == "2\n"
    # `accepted` is journalled before the issue is closed on the forge: wait for the close a user would see
    loop.wait_for(lambda: loop.issue(number)[0].state == "closed", what=f"issue #{number} to be closed")
    _, comments = loop.issue(number)
    assert len(keyed(comments, f"acceptance-failed:{REPO}#{number}")) == 1
    assert all(f"Refs #{number}" in p["body"] for p in loop.pulls())


def test_a_human_check_waits_for_ctl_accept_and_manual_steps_are_posted(make_loop: MakeLoop) -> None:
    loop = make_loop({"writer": writer("notes.txt", "done\n", FAKE_MANUAL_STEPS="rotate the API token")})
    body = "Write notes.\n\n## Acceptance\n- file: notes.txt\n- human: the token was rotated\n"
    number = loop.new_issue("Write notes", body)
    task_id = f"{REPO}#{number}"

    loop.wait_status(task_id, "merged")
    loop.wait_for(lambda: keyed(loop.issue(number)[1], f"acceptance-wait:{task_id}") or None, what="the wait note")
    loop.ctl("run", {"name": "acceptance_check"})
    issue, comments = loop.issue(number)
    assert loop.task(task_id)["status"] == "merged" and issue.state == "open"
    [steps] = keyed(comments, f"manual-steps:{task_id}")
    assert "rotate the API token" in steps and f"agentos ctl accept {REPO}#{number}" in steps
    shown = loop.cli("task", "show", task_id, "--config", str(loop.config)).stdout
    assert "manual steps" in shown and "rotate the API token" in shown

    result = loop.ctl("accept", {"ref": f"{REPO}#{number}"})

    assert result["result"] == "accepted" and loop.task(task_id)["status"] == "accepted"
    loop.wait_for(lambda: loop.issue(number)[0].state == "closed", what=f"issue #{number} to be closed")


def test_a_malformed_section_gets_one_comment_and_the_task_runs_without_checks(make_loop: MakeLoop) -> None:
    loop = make_loop({"writer": writer("a.txt", "a\n")})
    number = loop.new_issue("Write a", "Write a.\n\n## Acceptance\n- run: make test\n")

    loop.wait_status(f"{REPO}#{number}", "merged")
    loop.ctl("run", {"name": "acceptance_check"})

    _, comments = loop.issue(number)
    [comment] = [c for c in comments if "could not be read" in c.body]
    assert "unknown key `run`" in comment.body and "runs without acceptance checks" in comment.body
    assert loop.task(f"{REPO}#{number}")["status"] == "merged"
    loop.wait_for(lambda: loop.issue(number)[0].state == "closed", what=f"issue #{number} to be closed")
