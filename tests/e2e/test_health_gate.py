"""The agent health gate through the real daemon on the local forge, with the fake agent CLIs: an agent that
failed 3 of 3 attempts at a task type this week is skipped for the next task of that type (``agent_gated``
journalled with its figures, shown by ``agentos ctl agents``); when every agent fails, the gate opens and says so."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tests.e2e.conftest import REPO, Loop, claude_agent, command_agent

MakeLoop = Callable[..., Loop]


def journal(loop: Loop) -> list[dict[str, Any]]:
    """Every journal line the daemon wrote (rotated history first)."""
    paths = [*sorted((loop.state / "events").glob("events-*.jsonl")), loop.state / "journal.jsonl"]
    lines = [line for p in paths if p.exists() for line in p.read_text().splitlines() if line.strip()]
    return [json.loads(line) for line in lines]


def fail_three(loop: Loop) -> list[str]:
    """Three issues filed at once, each escalated after one failed attempt; their task ids."""
    ids = [f"{REPO}#{loop.new_issue(f'Add greeting number {n}')}" for n in (1, 2, 3)]
    for task_id in ids:
        loop.wait_status(task_id, "blocked")
    return ids


class TestHealthGate:
    def test_an_agent_failing_3_of_3_is_skipped_for_the_next_task(self, make_loop: MakeLoop) -> None:
        """flaky (first in the chain) failed three tasks: the fourth goes straight to steady and merges; the
        journal says why flaky was skipped, and `ctl agents` shows it gated for that task type."""
        loop = make_loop(
            {"flaky": claude_agent("blocked"), "steady": command_agent("complete")}, routing={"max_attempts": 1}
        )
        failed = fail_three(loop)
        assert {loop.task(t)["attempts"][0]["agent"] for t in failed} == {"flaky"}

        task_id = f"{REPO}#{loop.new_issue('Add greeting number 4')}"
        task = loop.wait_status(task_id, "merged")

        assert [(a["agent"], a["outcome"]) for a in task["attempts"]] == [("steady", "complete")]
        [gated] = [e for e in journal(loop) if e["type"] == "agent_gated"]
        assert gated["task"] == task_id
        data = gated["data"]
        assert (data["agent"], data["type"], data["action"]) == ("flaky", task["type"], "skipped")
        assert (data["week_attempts"], data["week_successes"]) == (3, 0)
        assert data["reason"].startswith("last 7 days 0/3 (0%) succeeded")

        rows = {r["agent"]: r for r in json.loads(loop.cli("ctl", "agents", "--json").stdout)}
        [flaky] = rows["flaky"]["health"]
        assert (flaky["type"], flaky["week"], flaky["gate"]) == (task["type"], "0/3 (0%)", "skipped")
        assert rows["steady"]["health"][0]["gate"] == "ok"
        shown = loop.cli("ctl", "agents").stdout
        health = shown.split("health (routing.health_gate)")[1]
        [line] = [ln for ln in health.splitlines() if ln.strip().startswith("flaky")]
        assert "0/3 (0%)" in line and "skipped" in line and "last 7 days" in line

    def test_when_every_agent_fails_the_gate_opens_and_says_so(self, make_loop: MakeLoop) -> None:
        """The only agent failed 3 of 3: the fourth task still runs on it; agent_gated says the gate opened and
        one notice tells the operator."""
        loop = make_loop({"flaky": claude_agent("blocked")}, routing={"max_attempts": 1})
        fail_three(loop)

        task_id = f"{REPO}#{loop.new_issue('Add greeting number 4')}"
        task = loop.wait_status(task_id, "blocked")

        assert [a["agent"] for a in task["attempts"]] == ["flaky"]
        events = journal(loop)
        [gated] = [e for e in events if e["type"] == "agent_gated"]
        assert gated["task"] == task_id and gated["data"]["action"] == "opened"
        assert gated["data"]["week_attempts"] == 3
        notices = [e["data"] for e in events if e["type"] == "notification_sent"]
        [opened] = [n for n in notices if n["key"].startswith("health_gate_open:")]
        assert "Every agent for" in opened["text"] and "flaky" in opened["text"]
        [row] = json.loads(loop.cli("ctl", "agents", "--json").stdout)
        assert row["health"][0]["gate"] == "open: every agent of the chain is failing"
