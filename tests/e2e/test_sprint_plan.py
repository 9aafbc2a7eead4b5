"""The sprint plan through the real daemon: a scripted planner agent (a ``command`` agent answering JSON)
proposes from a backlog nobody labelled ready; ``ctl plan skip`` runs nothing and the next plan picks
others; ``ctl plan approve`` makes the picks ready and the fake worker merges them."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

from agentos.forge.base import READY_LABEL

from .conftest import FAKES, REPO, Loop, claude_agent

MakeLoop = Callable[..., Loop]
OBJECTIVES = "# Objectives\n\n- Make the greeting friendlier for new users\n"


def file_issue(loop: Loop, title: str) -> int:
    """``agentos issue new`` without ``--ready``: a backlog issue."""
    done = loop.cli(
        "issue", "new", "--repo", REPO, "--title", title, "--json", "--config", str(loop.config),
        "--body-file", "-", input=f"## Goal\n\n{title}.\n",
    )  # fmt: skip
    start = done.stdout.find("{") if done.stdout.startswith("{") else done.stdout.find("\n{") + 1
    return int(json.loads(done.stdout[start:])["number"])


def answer(loop: Loop, *numbers: int) -> None:
    """What the scripted planner agent answers next."""
    promote = [{"issue": n, "rationale": f"#{n} serves the objective", "priority": "high"} for n in numbers]
    (loop.root / "plan-answer.txt").write_text(json.dumps({"promote": promote}))


def pending(loop: Loop) -> dict[str, Any]:
    (plan,) = loop.ctl("plan_show", {"repo": REPO})
    assert isinstance(plan, dict)
    return plan


class TestSprintPlan:
    def test_skip_then_approve_runs_only_the_approved_plan(self, make_loop: MakeLoop) -> None:
        """8 backlog issues → a plan of ≤ 5 from the planner agent (it saw OBJECTIVES.md); skip → nothing ran
        and the next plan leaves the skipped picks out; approve → those issues run and merge."""
        planner = {
            "kind": "command",
            "argv": [sys.executable, str(FAKES / "json_answer.py"), "{prompt_file}", "ANSWER", "LOG"],
        }
        loop = make_loop(
            {"claude": claude_agent("complete"), "planner": planner},
            routing={"default": ["claude"]},
            loops={"sprint_enabled": True, "plan_size": 5, "llm_agent": "planner"},
            start=False,
        )
        loop.agents["planner"]["argv"][3] = str(loop.root / "plan-answer.txt")
        loop.agents["planner"]["argv"][4] = str(loop.root / "planner-prompts.log")
        loop.write_config()
        (loop.repo / "OBJECTIVES.md").write_text(OBJECTIVES)
        loop.git("add", "OBJECTIVES.md", cwd=loop.repo)
        loop.git("commit", "-qm", "objectives", cwd=loop.repo)
        loop.start()
        backlog = [file_issue(loop, f"Backlog item {n}") for n in range(1, 9)]

        answer(loop, backlog[0], backlog[1])
        loop.ctl("run", {"name": "sprint_plan"})
        plan = pending(loop)
        assert plan["pending"] and [p["issue"] for p in plan["picks"]] == backlog[:2]
        assert "Make the greeting friendlier" in (loop.root / "planner-prompts.log").read_text()
        loop.ctl("plan_skip", {"repo": REPO})

        answer(loop, backlog[0], backlog[2], backlog[3])  # #1 was skipped: it is left out
        loop.ctl("run", {"name": "sprint_plan"})
        plan = pending(loop)
        assert [p["issue"] for p in plan["picks"]] == [backlog[2], backlog[3]]
        assert loop.tasks() == []  # nothing ran while plans waited
        assert all(READY_LABEL not in loop.issue(n)[0].labels for n in backlog)

        result = loop.ctl("plan_approve", {"repo": None})
        assert result["ready"] == [backlog[2], backlog[3]]
        for n in (backlog[2], backlog[3]):
            loop.wait_status(f"{REPO}#{n}", "merged", timeout=90)
        assert sorted(t["issue"] for t in loop.tasks()) == [backlog[2], backlog[3]]
        assert not pending(loop)["pending"]

    def test_an_unanswered_plan_is_skipped_at_its_deadline(self, make_loop: MakeLoop) -> None:
        """With a deadline of a few seconds, a run of the planner after it skips the plan: nothing ran."""
        loop = make_loop(
            {"claude": claude_agent("complete")},
            loops={"sprint_enabled": True, "plan_size": 2, "sprint_approval_hours": 0.001},
        )
        backlog = [file_issue(loop, f"Backlog item {n}") for n in range(1, 4)]
        loop.ctl("run", {"name": "sprint_plan"})
        plan = pending(loop)
        assert [p["issue"] for p in plan["picks"]] == backlog[:2]
        shown = loop.cli("ctl", "plan", "show", REPO).stdout
        assert "Sprint plan" in shown and "Backlog item 1" in shown

        def expired() -> bool:
            loop.ctl("run", {"name": "sprint_plan"})
            return not pending(loop)["pending"]

        loop.wait_for(expired, what="the plan to expire")
        assert loop.tasks() == []
        assert all(READY_LABEL not in loop.issue(n)[0].labels for n in backlog)


class TestAutoReady:
    def test_a_recurring_failure_is_fixed_with_no_human_and_escalated_when_it_returns(
        self, make_loop: MakeLoop
    ) -> None:
        """Under `auto_ready: fix_issues` a signature seen 3 times files a fix issue that runs and merges by
        itself; the same signature after that merge is escalated on the fix issue, not filed again."""
        loop = make_loop(
            {"claude": claude_agent("complete"), "crasher": claude_agent("crash")},
            # the same agent must keep crashing: the health gate would route around it after 3 failures
            routing={"default": ["claude"], "max_attempts": 1, "health_gate": {"enabled": False}},
            loops={"auto_ready": "fix_issues", "incident_threshold": 3},
        )
        body = "## Goal\n\nTry it.\n\nAgent: crasher\n"
        first = [loop.new_issue(f"Crashing {n}", body) for n in range(3)]
        for n in first:
            loop.wait_status(f"{REPO}#{n}", "blocked")
        loop.ctl("run", {"name": "incident_scan"})
        loop.wait_for(lambda: [t for t in loop.tasks() if t["issue"] not in first], what="the fix issue to run")
        fixes = [t for t in loop.tasks() if t["issue"] not in first]
        (fix,) = fixes
        loop.wait_status(fix["id"], "merged", timeout=90)
        issue, _ = loop.issue(fix["issue"])
        assert "autonomous-fix" in issue.labels and issue.state == "closed"

        again = [loop.new_issue(f"Crashing again {n}", body) for n in range(3)]
        for n in again:
            loop.wait_status(f"{REPO}#{n}", "blocked")
        loop.ctl("run", {"name": "incident_scan"})
        known = {*first, *again, fix["issue"]}
        assert [t for t in loop.tasks() if t["issue"] not in known] == []
        _, comments = loop.issue(fix["issue"])
        assert any("Recurred after the fix merged" in c.body for c in comments)
