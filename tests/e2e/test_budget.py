"""Budgets through the real daemon: an issue past its token ceiling escalates with the figures, and an agent
past its monthly limit is paused while the next agent of the chain does the work.

The fake Claude Code reports, per editing run, 54,281 tokens (14 input + 5,213 cache creation + 48,120 cache
read + 934 output) and $0.0912, as the real CLI's JSON result does; the ``command`` agent reports nothing.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from agentos.budget import period_bounds
from agentos.store import Store

from .conftest import AGENTOS, REPO, Loop, claude_agent, command_agent

MakeLoop = Callable[..., Loop]
KEY = re.compile(r"<!-- agentos:key=(.*?) -->")


def escalations(loop: Loop, number: int) -> dict[str, str]:
    """Escalation comments on the issue by key."""
    out = {}
    for comment in loop.issue(number)[1]:
        for key in KEY.findall(comment.body):
            if key.startswith("escalation:"):
                out[key] = comment.body
    return out


class TestIssueCeiling:
    def test_a_task_over_its_token_budget_escalates_with_the_figures(self, make_loop: MakeLoop) -> None:
        """With max_task_tokens 100,000 the second 54,281-token attempt ends the retries (max_attempts is 4): the
        issue is blocked with budget_exceeded and the note gives the spend and the limit. An operator retry is
        told it is over budget, runs exactly one more attempt, and escalates again with the new figures."""
        loop = make_loop(
            {"claude": claude_agent("partial")},
            routing={"max_attempts": 4},
            limits={"max_task_tokens": 100_000},
        )
        number = loop.new_issue("Grow the file")
        task_id = f"{REPO}#{number}"

        task = loop.wait_status(task_id, "blocked")
        assert task["last_blocker"] == "budget_exceeded"
        assert [(a["outcome"], a["tokens_in"] + a["tokens_out"]) for a in task["attempts"]] == [
            ("partial", 54_281),
            ("partial", 54_281),
        ]
        notes = loop.wait_for(lambda: escalations(loop, number), what="the escalation comment")
        note = notes[f"escalation:{task_id}:2"]
        assert "Budget: spent 108,562 tokens / $0.18 over 2 attempts; limit 100,000 tokens." in note
        assert "`budget_exceeded`" in note and "A retry runs one more attempt" in note

        answer = loop.ctl("retry", {"id": task_id})
        assert answer["budget"] == (
            "over budget (spent 108,562 tokens / $0.18 over 2 attempts; limit 100,000 tokens): "
            "this retry runs one attempt; if it fails, it escalates again"
        )

        def escalated_again() -> dict[str, str] | None:
            found = escalations(loop, number)
            return found if f"escalation:{task_id}:3" in found else None

        notes = loop.wait_for(escalated_again, what="the second escalation")
        assert (
            "Budget: spent 162,843 tokens / $0.27 over 3 attempts; limit 100,000 tokens."
            in notes[f"escalation:{task_id}:3"]
        )
        for _ in range(2):  # nothing re-dispatches it on its own
            loop.ctl("run", {"name": "dispatch"})
        task = loop.task(task_id)
        assert task["status"] == "blocked" and len(task["attempts"]) == 3


class TestAgentMonth:
    def test_an_agent_over_its_monthly_limit_is_paused_and_the_chain_moves_on(self, make_loop: MakeLoop) -> None:
        """One $0.09 run puts claude over monthly_max_usd 0.05: it is paused until the first of next month, the
        next issue goes straight to the backup agent, and the backup's attempt (no cost reported) is shown as
        "not measured" rather than $0.00."""
        claude = {**claude_agent("complete"), "monthly_max_usd": 0.05}
        loop = make_loop({"claude": claude, "backup": command_agent("complete")})
        first = loop.new_issue("First change")
        loop.wait_status(f"{REPO}#{first}", "merged")

        status = loop.ctl("status")
        _, until, _ = period_bounds(datetime.now(UTC), ZoneInfo("UTC"), "month")
        assert datetime.fromisoformat(status["paused_agents"]["claude"]) == until
        since = datetime.now(UTC) - timedelta(hours=1)
        paused = [e for e in Store(loop.state, fsync=False).iter_events(since) if e.type == "agent_budget_paused"]
        assert len(paused) == 1 and paused[0].data["cost_usd"] == 0.0912

        second = loop.new_issue("Second change")
        task = loop.wait_status(f"{REPO}#{second}", "merged")
        assert [(a["agent"], a["cost_reported"]) for a in task["attempts"]] == [("backup", False)]

        env = {**loop.env, "COLUMNS": "200"}
        shown = subprocess.run(
            [str(AGENTOS), "task", "show", f"{REPO}#{second}", "--config", str(loop.config)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        assert "not measured" in shown and "$0.00" not in shown
        rows = json.loads(loop.cli("tasks", "--json", "--config", str(loop.config)).stdout)
        assert {r["id"]: (r["cost_usd"], r["not_measured"]) for r in rows} == {
            f"{REPO}#{first}": (0.0912, 0),
            f"{REPO}#{second}": (0.0, 1),
        }
