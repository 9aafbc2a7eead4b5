"""Specification of the sprint plan with one-tap approval (jobs/planner.py, jobs/sprint_plan.py) and of
auto_ready with recurrence escalation (jobs/auto_ready.py, jobs/incidents.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from pydantic import BaseModel

from agentos.config import Config, RepoConfig
from agentos.errors import ControlError
from agentos.forge.base import READY_LABEL, Issue
from agentos.forge.local import LocalForge
from agentos.graph import Task, TaskStatus
from agentos.jobs._loops import LoopSettings
from agentos.testing import (
    LoopRig,
    RecordingNotifier,
    SettableClock,
    Wakes,
    build_loops,
    end_attempt,
    start_attempt,
    transition,
)

M = TypeVar("M", bound=BaseModel)
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
OBJECTIVES = "# Objectives\n\n- Make exports fast for accountants\n"
ON = LoopSettings(sprint_enabled=True, plan_size=5)


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock(T0)


@pytest.fixture
def rt(tmp_path: Path, clock: SettableClock) -> LoopRig:
    (tmp_path / "calc").mkdir()
    (tmp_path / "calc" / "OBJECTIVES.md").write_text(OBJECTIVES)
    repos = [RepoConfig(name="calc", path=str(tmp_path / "calc"), test_command="true")]
    config = Config(state_dir=str(tmp_path / "state"), repos=repos)
    forge = LocalForge(tmp_path / "state", {r.name: r for r in repos}, clock=clock)
    return build_loops(config, forge, clock=clock)


async def backlog(rt: LoopRig, n: int = 8) -> list[Issue]:
    return [
        await rt.forge.create_issue("calc", f"Backlog item {i}", f"## Goal\nitem {i}", [], key=f"backlog-{i}")
        for i in range(1, n + 1)
    ]


async def ready(rt: LoopRig) -> list[int]:
    return sorted(i.number for i in await rt.forge.ready_issues("calc"))


def events_of(rt: LoopRig, type_: str) -> list[Any]:
    return [e for e in rt.journal.iter_events(T0 - timedelta(days=60)) if e.type == type_]


class Planner:
    """A scripted planner agent: answers each question with the next of ``answers`` (None: it failed)."""

    def __init__(self, *answers: dict[str, Any] | None) -> None:
        self.answers = list(answers)
        self.asked: list[str] = []

    async def ask(self, prompt: str, model: type[M]) -> M | None:
        self.asked.append(prompt)
        answer = self.answers.pop(0) if self.answers else None
        return None if answer is None else model.model_validate(answer)


class TestSprintPlan:
    async def test_a_plan_waits_for_approval_then_its_issues_run(self, rt: LoopRig) -> None:
        """8 backlog issues, none ready → a plan of 5 with Approve / Skip; nothing is ready until approved."""
        await backlog(rt)
        notes, wakes = RecordingNotifier(), Wakes()
        planner = rt.sprint_planner(ON, notify=notes, wake=wakes)
        await planner.tick()
        assert await ready(rt) == []
        (note,) = notes.sent
        assert note.key == "plan:calc:2026-03-02" and "#1 Backlog item 1" in note.text
        assert [(a.kind, a.ref) for a in note.actions] == [("plan_approve", "calc"), ("plan_skip", "calc")]
        pending = await planner.plans.pending("calc")
        assert pending is not None and pending.issues == [1, 2, 3, 4, 5]

        await planner.tick()  # one plan pending per repo: nothing new
        assert len(notes.sent) == 1

        result = await planner.plans.approve("calc")
        assert result["ready"] == [1, 2, 3, 4, 5] and await ready(rt) == [1, 2, 3, 4, 5]
        assert wakes.jobs == ["dispatch"]
        assert await planner.plans.pending("calc") is None
        sprint_notes = [i for i in await rt.forge.list_issues("calc") if i.title == "Sprint 2026-03-02"]
        assert len(sprint_notes) == 1 and "Next focus" in sprint_notes[0].body
        with pytest.raises(ControlError, match="no sprint plan waits"):
            await planner.plans.approve("calc")

    async def test_the_pending_plan_survives_a_restart(self, rt: LoopRig) -> None:
        """The plan lives in the journal: a planner built afresh over it approves the same picks."""
        await backlog(rt)
        await rt.sprint_planner(ON).tick()
        again = rt.sprint_planner(ON)
        await again.plans.approve("calc")
        assert await ready(rt) == [1, 2, 3, 4, 5]

    async def test_skip_runs_nothing_and_the_next_plan_does_not_repeat_the_picks(
        self, rt: LoopRig, clock: SettableClock
    ) -> None:
        """A skipped plan's picks are left out of the next plan, proposed at the next run; nothing ran."""
        await backlog(rt)
        planner = rt.sprint_planner(LoopSettings(sprint_enabled=True, plan_size=3))
        await planner.tick()
        await planner.plans.skip("calc")
        assert await ready(rt) == []
        await planner.tick()  # the operator said "not these": another plan at once
        pending = await planner.plans.pending("calc")
        assert pending is not None and pending.issues == [4, 5, 6]

    async def test_an_unanswered_plan_is_skipped_at_its_deadline(self, rt: LoopRig, clock: SettableClock) -> None:
        """After sprint_approval_hours the plan expires: skipped, nothing ready, a sev3 notice."""
        await backlog(rt)
        notes = RecordingNotifier()
        planner = rt.sprint_planner(ON, notify=notes)
        await planner.tick()
        clock.advance(hours=25)
        await planner.tick()
        assert await planner.plans.pending("calc") is None
        assert await ready(rt) == []
        assert [e.data["reason"] for e in events_of(rt, "sprint_skipped")] == ["expired"]
        assert notes.sent[-1].key.startswith("plan_expired:calc")
        await planner.tick()  # an expired plan waits out the cadence: the operator is away
        assert await planner.plans.pending("calc") is None

    async def test_auto_approve_applies_the_plan_at_once(self, rt: LoopRig) -> None:
        """sprint_auto_approve: the picks are ready without a question."""
        await backlog(rt)
        notes = RecordingNotifier()
        await rt.sprint_planner(LoopSettings(sprint_enabled=True, sprint_auto_approve=True), notify=notes).tick()
        assert await ready(rt) == [1, 2, 3, 4, 5]
        assert notes.sent == []

    async def test_the_planner_agent_picks_from_the_backlog_with_the_objectives(self, rt: LoopRig) -> None:
        """The agent sees the objectives and the backlog; only open candidates count, at most plan_size."""
        await backlog(rt)
        await rt.forge.add_labels("calc", 8, [READY_LABEL])
        agent = Planner(
            {
                "promote": [
                    {"issue": 7, "rationale": "exports are the objective", "priority": "high"},
                    {"issue": 8, "rationale": "already ready"},
                    {"issue": 99, "rationale": "does not exist"},
                    {"issue": 2, "rationale": "unblocks 7"},
                ]
            }
        )
        planner = rt.sprint_planner(ON, llm=agent)
        await planner.tick()
        (prompt,) = agent.asked
        assert "Make exports fast for accountants" in prompt and "#3 [normal] Backlog item 3" in prompt
        pending = await planner.plans.pending("calc")
        assert pending is not None and pending.issues == [7, 2] and pending.source == "planner agent"
        assert pending.picks[0].rationale == "exports are the objective"

    async def test_without_a_usable_answer_the_rule_plans(self, rt: LoopRig) -> None:
        """An agent that fails (or promotes nothing valid) leaves the plan to priority and age."""
        await backlog(rt)
        planner = rt.sprint_planner(ON, llm=Planner(None))
        await planner.tick()
        pending = await planner.plans.pending("calc")
        assert pending is not None and pending.issues == [1, 2, 3, 4, 5] and pending.source == "rule"


    async def test_a_finished_sprint_is_reported_once_and_the_next_plan_comes_early(self, rt: LoopRig) -> None:
        """Every pick merged before the cadence ends: one "completed" notice, the next plan at once, and the
        old sprint note gets its report as a comment and is closed."""
        await backlog(rt)
        notes = RecordingNotifier()
        s = LoopSettings(sprint_enabled=True, sprint_auto_approve=True, plan_size=2)
        planner = rt.sprint_planner(s, notify=notes)
        await planner.tick()
        await planner.tick()  # the picks are still open: nothing new
        assert await ready(rt) == [1, 2] and notes.sent == []
        for n in (1, 2):
            merge_fix(rt, n)
            await rt.forge.close_issue("calc", n)
        await planner.tick()
        (done,) = notes.sent
        assert done.key == "sprint_done:calc:2026-03-02" and "2 merged" in done.text
        assert await ready(rt) == [3, 4]
        await planner.tick()
        assert len(notes.sent) == 1
        old_note, new_note = [i for i in await rt.forge.list_issues("calc", state="all") if "Sprint" in i.title]
        assert old_note.state == "closed" and new_note.title == "Sprint 2026-03-02-2"
        (report,) = await rt.forge.comments("calc", old_note.number)
        assert "**Sprint report** (2026-03-02)" in report.body and "2 merged" in report.body


# ---------------------------------------------------------------- auto_ready


def fail_attempt(rt: LoopRig, issue: int, n: int, blocker: str = "runner_failure") -> Task:
    task = rt.graph.latest_for_issue("calc", issue)
    now = rt.clock()
    if task is None:
        task = Task(id=Task.make_id("calc", issue), repo="calc", issue=issue, title="t", created_at=now, updated_at=now)
    _, ev1 = start_attempt(task, "claude", now)
    error = f"exit 1 at 2026-03-02T09:0{n % 10}:00Z\nError: cannot open /tmp/run-{n}/sock (pid {4000 + n})"
    ev2 = end_attempt(task, now, outcome="failed", blocker_code=blocker, error=error)
    ev3 = transition(task, TaskStatus.RETRYING, now, blocker=blocker)
    rt.journal.commit([ev1, ev2, ev3], [task])
    return task


def merge_fix(rt: LoopRig, issue: int) -> None:
    now = rt.clock()
    task = Task(id=Task.make_id("calc", issue), repo="calc", issue=issue, title="fix", created_at=now, updated_at=now)
    _, started = start_attempt(task, "codex", now)
    events = [started, end_attempt(task, now, outcome="complete"), transition(task, TaskStatus.VALIDATING, now)]
    events.append(transition(task, TaskStatus.PR_OPEN, now, pr=500))
    task.pr = 500
    events.append(transition(task, TaskStatus.MERGED, now, sha="abc", pr=500))
    rt.journal.commit(events, [task])


async def fix_issues(rt: LoopRig) -> list[Issue]:
    return [i for i in await rt.forge.list_issues("calc", state="all") if "autonomous-fix" in i.labels]


class TestAutoReady:
    async def test_under_fix_issues_an_incident_goes_to_the_queue(self, rt: LoopRig) -> None:
        """A signature seen 3 times files a fix issue that is made ready at once, and dispatch is woken."""
        for n in range(3):
            fail_attempt(rt, 100 + n, n)
        s = LoopSettings(auto_ready="fix_issues")
        wakes = Wakes()
        await rt.incident_scanner(s, offers=rt.auto_ready(s, wake=wakes)).tick()
        (fix,) = await fix_issues(rt)
        assert READY_LABEL in (await rt.forge.get_issue("calc", fix.number)).labels
        assert wakes.jobs == ["dispatch"]

    async def test_under_approve_a_new_fix_issue_is_offered_with_one_tap(self, rt: LoopRig) -> None:
        """approve: a notice with Make ready / Dismiss; Make ready labels it ready."""
        for n in range(3):
            fail_attempt(rt, 100 + n, n)
        s = LoopSettings(auto_ready="approve")
        notes = RecordingNotifier()
        offers = rt.auto_ready(s, notify=notes)
        await rt.incident_scanner(s, offers=offers).tick()
        (fix,) = await fix_issues(rt)
        assert READY_LABEL not in fix.labels
        (note,) = notes.sent
        ref = f"calc#{fix.number}"
        assert [(a.kind, a.ref) for a in note.actions] == [("issue_make_ready", ref), ("issue_dismiss", ref)]
        await offers.make_ready("calc", fix.number)
        assert READY_LABEL in (await rt.forge.get_issue("calc", fix.number)).labels

    async def test_the_per_day_cap_holds(self, rt: LoopRig, clock: SettableClock) -> None:
        """Over auto_ready_per_day, the next fix issue is offered instead of made ready."""
        s = LoopSettings(auto_ready="fix_issues", auto_ready_per_day=1)
        notes = RecordingNotifier()
        offers = rt.auto_ready(s, notify=notes)
        for n in range(3):
            fail_attempt(rt, 100 + n, n)
        for n in range(3):
            fail_attempt(rt, 200 + n, n, blocker="timeout")
        await rt.incident_scanner(s, offers=offers).tick()
        fixes = await fix_issues(rt)
        assert len(fixes) == 2
        assert sum(READY_LABEL in i.labels for i in fixes) == 1
        assert len(notes.sent) == 1 and notes.sent[0].actions[0].kind == "issue_make_ready"

    async def test_the_default_leaves_fix_issues_alone(self, rt: LoopRig) -> None:
        """auto_ready: none (the default): nothing ready, nothing offered."""
        for n in range(3):
            fail_attempt(rt, 100 + n, n)
        notes = RecordingNotifier()
        await rt.incident_scanner(offers=rt.auto_ready(notify=notes)).tick()
        (fix,) = await fix_issues(rt)
        assert READY_LABEL not in fix.labels and notes.sent == []

    async def test_a_signature_back_after_its_fix_merged_is_escalated_not_refiled(
        self, rt: LoopRig, clock: SettableClock
    ) -> None:
        """The fix merged and the issue closed; the same failure again → a sev1 notice and a comment."""
        for n in range(3):
            fail_attempt(rt, 100 + n, n)
        notes = RecordingNotifier()
        scanner = rt.incident_scanner(notify=notes)
        await scanner.tick()
        (fix,) = await fix_issues(rt)
        merge_fix(rt, fix.number)
        await rt.forge.close_issue("calc", fix.number)
        clock.advance(days=2)
        for n in range(3):
            fail_attempt(rt, 300 + n, n)
        await scanner.tick()
        assert [i.number for i in await fix_issues(rt)] == [fix.number]
        (note,) = [n for n in notes.sent if n.key.startswith("recurred:")]
        assert note.severity == 1 and f"calc#{fix.number}" in note.text
        comments = await rt.forge.comments("calc", fix.number)
        assert any("Recurred after the fix merged" in c.body for c in comments)

    async def test_proposals_reach_the_queue_only_under_all(self, rt: LoopRig) -> None:
        """The groomer's proposals are made ready under `all`; under `fix_issues` or `approve` they wait."""
        proposal = await rt.forge.create_issue("calc", "Proposed work", "body", ["agentos:proposed"], key="p1")
        for mode in ("approve", "fix_issues"):
            notes = RecordingNotifier()
            got = await rt.auto_ready(LoopSettings(auto_ready=mode), notify=notes).offer(
                "calc", proposal.number, proposal.title, "proposed"
            )
            assert got == "left" and notes.sent == []
        got = await rt.auto_ready(LoopSettings(auto_ready="all")).offer("calc", proposal.number, "x", "proposed")
        assert got == "ready" and await ready(rt) == [proposal.number]

    async def test_a_repo_override_wins(self, rt: LoopRig) -> None:
        """A repo's own auto_ready beats the loops default."""
        rt.config.repos[0].auto_ready = "fix_issues"
        issue = await rt.forge.create_issue("calc", "Fix it", "body", ["autonomous-fix"], key="f1")
        got = await rt.auto_ready(LoopSettings(auto_ready="none")).offer("calc", issue.number, "x", "incident")
        assert got == "ready"


@pytest.mark.parametrize(
    ("text", "name", "repo"),
    [
        ("/plan", "plan_show", None),
        ("/plan calc", "plan_show", "calc"),
        ("/plan approve", "plan_approve", None),
        ("/plan approve calc", "plan_approve", "calc"),
        ("/plan skip", "plan_skip", None),
    ],
)
def test_the_chat_spells_plan_commands(text: str, name: str, repo: str | None) -> None:
    """`/plan` shows, `/plan approve` and `/plan skip` decide (the repo is optional with one plan waiting)."""
    from agentos.control.telegram_commands import parse_command

    command = parse_command(text)
    assert (command.name, command.args["repo"]) == (name, repo)
