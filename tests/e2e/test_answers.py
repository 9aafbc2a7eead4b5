"""Tasks that complete without a change, through the real daemon on the local forge: a research issue's answer
is posted on the issue, which is closed; no PR; the task is ``done``. The worker's prompt quotes the repo's
product context."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .conftest import FAKES, REPO, Loop

MakeLoop = Callable[..., Loop]
KEY = re.compile(r"<!-- agentos:key=(.*?) -->")


def answer_agent(log: str) -> dict[str, Any]:
    return {"kind": "command", "argv": [str(FAKES / "answer_agent.py"), "{prompt_file}", log]}


def journal(loop: Loop) -> list[dict[str, Any]]:
    paths = [*sorted((loop.state / "events").glob("events-*.jsonl")), loop.state / "journal.jsonl"]
    lines = [line for p in paths if p.exists() for line in p.read_text().splitlines() if line.strip()]
    return [json.loads(line) for line in lines]


def test_a_research_issue_is_answered_on_the_issue_and_closed(make_loop: MakeLoop, tmp_path: Path) -> None:
    """No Type line: "Evaluate" makes it research; the agent changes nothing and its answer closes the issue."""
    log = tmp_path / "prompts.log"
    loop = make_loop({"scout": answer_agent(str(log))}, start=False)
    (loop.repo / "NORTH_STAR.md").write_text("Every household keeps its accounts in one file.\n")
    loop.git("add", "NORTH_STAR.md")
    loop.git("commit", "-q", "-m", "north star")
    loop.start()

    number = loop.new_issue("Evaluate SQLite against Postgres", "Which database should we use?")
    task_id = f"{REPO}#{number}"
    task = loop.wait_status(task_id, "done")

    assert [a["outcome"] for a in task["attempts"]] == ["complete"]
    assert loop.pulls() == []
    # The issue is closed just after `done` is journalled: wait for it rather than race it.
    loop.wait_for(lambda: loop.issue(number)[0].state == "closed", what="the issue to be closed")
    _, comments = loop.issue(number)
    [answer] = [c for c in comments if f"answer:{task_id}" in KEY.findall(c.body)]
    assert "SQLite is enough" in answer.body and "keep SQLite until there is more than one writer" in answer.body
    lines = [line for line in journal(loop) if line.get("task") == task_id]
    assert any(line.get("type") == "completed_without_change" for line in lines), lines
    assert {"from": "validating", "to": "done"}.items() <= next(
        line["data"] for line in lines if line.get("type") == "transition" and line["data"].get("to") == "done"
    ).items()
    prompt = log.read_text()
    assert "type research" in prompt  # inferred from "Evaluate"
    assert "# Product context" in prompt
    assert "## NORTH_STAR.md\n\n```\nEvery household keeps its accounts in one file.\n```" in prompt


def test_a_context_file_changed_on_the_base_reaches_the_next_attempt(make_loop: MakeLoop, tmp_path: Path) -> None:
    """The product context is read again when the base branch moved: a NORTH_STAR.md committed between two issues
    is in the second worker prompt, not the first."""
    log = tmp_path / "prompts.log"
    loop = make_loop({"scout": answer_agent(str(log))})
    first = loop.new_issue("Evaluate SQLite against Postgres", "Which database should we use?")
    loop.wait_status(f"{REPO}#{first}", "done")
    assert "NORTH_STAR.md" not in log.read_text()

    (loop.repo / "NORTH_STAR.md").write_text("One file per household.\n")
    loop.git("add", "NORTH_STAR.md")
    loop.git("commit", "-q", "-m", "north star")
    second = loop.new_issue("Evaluate SQLite against DuckDB", "Which one for the reports?")
    loop.wait_status(f"{REPO}#{second}", "done")
    assert log.read_text().count("One file per household.") == 1
