"""Dispatch intelligence through the real daemon on the local forge, with a scripted planner agent (a ``command``
agent answering JSON) and fake workers: an epic becomes sub-issues that run in dependency order and close it,
also when the daemon is killed mid-split; a terse issue is normalised, or left as filed after two bad answers."""

from __future__ import annotations

import datetime as dt
import fcntl
import itertools
import json
import sys
from collections.abc import Callable
from typing import Any

from agentos.forge.base import READY_LABEL

from .conftest import FAKES, REPO, Loop, claude_agent

MakeLoop = Callable[..., Loop]
SPLIT = {
    "parts": [
        {"title": f"Export step {k}", "goal": f"Step {k} of the export.", "success_criteria": [f"step {k} is done"]}
        for k in (1, 2, 3)
    ]
}
NORMALISED = {
    "goal": "Greet first-time visitors by name on the start page.",
    "success_criteria": ["The start page greets a first-time visitor by name"],
    "constraints": ["Keep the greeting under 80 characters"],
    "type": "debugging",
    "agent": "claude",
}


def planner_loop(make_loop: MakeLoop, answer: Any, **loops: Any) -> Loop:
    """A daemon whose ``loops.llm_agent`` is a scripted planner answering ``answer`` (JSON, or any text)."""
    planner = {"kind": "command", "argv": [sys.executable, str(FAKES / "json_answer.py"), "{prompt_file}", "A", "L"]}
    loop = make_loop(
        {"claude": claude_agent("complete"), "other": claude_agent("complete"), "planner": planner},
        routing={"default": ["claude"]},
        loops={"llm_agent": "planner", **loops},
        start=False,
    )
    loop.agents["planner"]["argv"][3] = str(loop.root / "answer.txt")
    loop.agents["planner"]["argv"][4] = str(loop.root / "planner-prompts.log")
    loop.write_config()
    (loop.root / "answer.txt").write_text(answer if isinstance(answer, str) else json.dumps(answer))
    loop.start()
    return loop


def planner_prompts(loop: Loop) -> list[str]:
    log = loop.root / "planner-prompts.log"
    return [p for p in log.read_text().split("\n=====\n") if p.strip()] if log.exists() else []


def parts(loop: Loop, epic: int) -> list[int]:
    """The sub-issues filed for ``epic``, by number."""
    found = []
    for path in sorted((loop.forge / "issues").glob("*.md")):
        number = int(path.stem)
        if number != epic and loop.issue(number)[0].body.startswith(f"Part of #{epic} "):
            found.append(number)
    return sorted(found)


def merged_at(loop: Loop, task_id: str) -> dt.datetime:
    pr = loop.task(task_id)["pr"]
    (record,) = [p for p in loop.pulls() if p["number"] == pr]
    return dt.datetime.fromisoformat(record["merged_at"])


class TestEpics:
    def test_an_epic_runs_as_its_parts_in_dependency_order_and_then_closes(self, make_loop: MakeLoop) -> None:
        """The planner splits the epic into 3 ready `Part of` issues chained by `Depends on`; each starts only
        after the one before merged; the epic itself never runs and closes with a comment listing the parts."""
        loop = planner_loop(make_loop, SPLIT)
        epic = loop.new_issue("Export everything", "## Goal\n\nExports for every report.\n", "epic")
        numbers = loop.wait_for(lambda: (found := parts(loop, epic)) and len(found) == 3 and found, what="3 parts")
        issues = [loop.issue(n)[0] for n in numbers]
        assert [i.title for i in issues] == ["Export step 1", "Export step 2", "Export step 3"]
        assert all(READY_LABEL in i.labels for i in issues)
        assert f"Depends on #{numbers[0]}" in issues[1].body and f"Depends on #{numbers[1]}" in issues[2].body
        for n in numbers:
            loop.wait_status(f"{REPO}#{n}", "merged", timeout=90)
        merges = [merged_at(loop, f"{REPO}#{n}") for n in numbers]
        assert merges == sorted(merges)
        for before, after in itertools.pairwise(numbers):
            started = dt.datetime.fromisoformat(loop.task(f"{REPO}#{after}")["attempts"][0]["started_at"])
            assert started >= merged_at(loop, f"{REPO}#{before}")
        loop.wait_for(lambda: loop.issue(epic)[0].state == "closed", what="the epic to close")
        assert epic not in {t["issue"] for t in loop.tasks()}
        comments = [c.body for c in loop.issue(epic)[1]]
        (done,) = [c for c in comments if "Every part of this epic merged" in c]
        assert all(f"#{n}" in done for n in numbers)
        assert len(planner_prompts(loop)) == 1 and "split-epic" in planner_prompts(loop)[0]

    def test_a_daemon_killed_mid_split_files_no_part_twice(self, make_loop: MakeLoop) -> None:
        """The forge is locked after the split was planned; the daemon is killed while it waits to file the
        first part; after a restart the journalled plan is filed once, and the planner is not asked again."""
        loop = planner_loop(make_loop, SPLIT)
        epic = loop.new_issue("Export everything", "## Goal\n\nExports for every report.\n", "epic")
        with open(loop.forge / ".lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # the daemon can read the forge but file nothing
            loop.wait_for(lambda: "epic_split_planned" in (loop.state / "journal.jsonl").read_text(), what="the plan")
            loop.kill9()
            fcntl.flock(lock, fcntl.LOCK_UN)
        assert parts(loop, epic) == []
        loop.start()
        numbers = loop.wait_for(lambda: (found := parts(loop, epic)) and len(found) == 3 and found, what="3 parts")
        loop.wait_status(f"{REPO}#{numbers[0]}", "merged", timeout=90)
        assert len(parts(loop, epic)) == 3
        assert len(planner_prompts(loop)) == 1
        split_comments = [c for c in loop.issue(epic)[1] if "split this epic" in c.body]
        assert len(split_comments) == 1

    def test_an_epic_the_planner_cannot_split_is_left_for_a_human(self, make_loop: MakeLoop) -> None:
        """Garbage twice → one comment on the epic, no sub-issue, no task, and its ready label removed."""
        loop = planner_loop(make_loop, "I would rather not.")
        epic = loop.new_issue("Export everything", "## Goal\n\nExports.\n", "epic")
        loop.wait_for(lambda: READY_LABEL not in loop.issue(epic)[0].labels, what="the epic to be left alone")
        issue, comments = loop.issue(epic)
        assert [c.body.split("\n")[0] for c in comments if "could not split" in c.body] != []
        assert len([c for c in comments if "could not split" in c.body]) == 1
        assert issue.state == "open" and parts(loop, epic) == [] and loop.tasks() == []
        assert len(planner_prompts(loop)) == 2  # asked, then asked once more with the correction


class TestNormaliser:
    def test_a_terse_issue_is_worked_from_the_normalised_criteria(self, make_loop: MakeLoop) -> None:
        """A one-line issue labelled `agent:other`: the worker prompt has the normaliser's goal, criteria and
        constraints and the original line; its type is filled, its agent label wins; `task show` shows it."""
        loop = planner_loop(make_loop, NORMALISED, normalise=True)
        number = loop.new_issue("Nicer greeting", "Make it nicer.", "agent:other")
        task_id = f"{REPO}#{number}"
        task = loop.wait_status(task_id, "merged", timeout=90)
        assert task["type"] == "debugging" and task["attempts"][0]["agent"] == "other"
        assert task["normalised"]["filled"] == ["type"]
        prompt = (loop.run_path(task_id, 1) / "prompt.md").read_text()
        for text in [NORMALISED["goal"], *NORMALISED["success_criteria"], *NORMALISED["constraints"], "Make it nicer."]:
            assert text in prompt
        assert "normalise-issue" in planner_prompts(loop)[0] and len(planner_prompts(loop)) == 1
        shown = loop.cli("ctl", "task", "show", task_id).stdout
        assert NORMALISED["success_criteria"][0] in shown
        offline = loop.cli("task", "show", task_id, "--config", str(loop.config)).stdout
        assert "criteria (normalised)" in offline and NORMALISED["constraints"][0] in offline

    def test_a_terse_issue_is_left_as_filed_when_the_planner_answers_garbage_twice(self, make_loop: MakeLoop) -> None:
        """Two bad answers: the task runs from the issue as filed (no criteria invented), nothing is posted."""
        loop = planner_loop(make_loop, "{not json", normalise=True)
        number = loop.new_issue("Nicer greeting", "Make it nicer.")
        task_id = f"{REPO}#{number}"
        task = loop.wait_status(task_id, "merged", timeout=90)
        assert task["normalised"] is None and task["success_criteria"] == []
        prompt = (loop.run_path(task_id, 1) / "prompt.md").read_text()
        assert "Make it nicer." in prompt and "As filed" not in prompt
        assert len(planner_prompts(loop)) == 2
        assert not any("normalis" in c.body for c in loop.issue(number)[1])
        assert '"issue_normalised"' in (loop.state / "journal.jsonl").read_text()
