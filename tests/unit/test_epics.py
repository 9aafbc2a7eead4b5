"""Specification of epic splits (jobs/epics.py): planned once and journalled first, each part filed once
(also across a crash mid-split), a chain of ``Depends on``, the parent closed only when every part merged."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from pydantic import BaseModel, ValidationError

from agentos._fake_forge import FakeForge
from agentos.config import Config, RepoConfig
from agentos.forge.base import READY_LABEL, Issue, NotFound
from agentos.graph import Task, TaskStatus
from agentos.issue_text import parse_issue
from agentos.jobs.epics import Epics, SplitAnswer
from agentos.task_graph import TaskGraph
from agentos.testing import MemoryJournal, MemorySettings, SettableClock, transition
from tests.unit.test_dispatch import issue, make

M = TypeVar("M", bound=BaseModel)
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PLAN = {
    "parts": [
        {"title": f"Part {k}", "goal": f"Do step {k}.", "success_criteria": [f"step {k} works"]} for k in (1, 2, 3)
    ]
}


class Scripted:
    """A planner agent with scripted answers (None: a failed or twice-invalid answer)."""

    def __init__(self, *answers: dict[str, Any] | None) -> None:
        self.answers = list(answers)
        self.asked: list[str] = []

    async def ask(self, prompt: str, model: type[M]) -> M | None:
        self.asked.append(prompt)
        answer = self.answers.pop(0) if self.answers else None
        return None if answer is None else model.model_validate(answer)


class CrashingForge(FakeForge):
    """Files ``allowed`` issues, then fails like a daemon killed mid-split would."""

    allowed = 10**6

    async def create_issue(self, repo: str, title: str, body: str, labels: list[str], *, key: str) -> Issue:
        if self.allowed <= 0:
            raise NotFound("the forge went away")
        self.allowed -= 1
        return await super().create_issue(repo, title, body, labels, key=key)


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock(T0)


@pytest.fixture
def settings(tmp_path: Path) -> MemorySettings:
    repos = [RepoConfig(name="calc", path=str(tmp_path / "calc"), test_command="true")]
    agents = {"planner": {"kind": "command", "argv": ["true"]}}
    config = Config(state_dir=str(tmp_path / "state"), repos=repos, agents=agents, loops={"llm_agent": "planner"})
    return MemorySettings(config)


def epics_over(
    settings: MemorySettings, journal: MemoryJournal, forge: FakeForge, graph: TaskGraph, llm: Scripted
) -> Epics:
    clock = journal.clock
    return Epics(settings=settings, journal=journal, clock=clock, graph=graph, forge=forge, store=journal, llm=llm)


def parts_of(forge: FakeForge, epic: int) -> list[Issue]:
    return sorted((i for i in forge.issues.values() if i.body.startswith(f"Part of #{epic} ")), key=lambda i: i.number)


def merged(graph: TaskGraph, clock: SettableClock, issue: Issue) -> None:
    task = Task(id=Task.make_id("calc", issue.number), repo="calc", issue=issue.number, title=issue.title,
                created_at=T0, updated_at=T0)  # fmt: skip
    graph.put(task)
    for status in (TaskStatus.RUNNING, TaskStatus.VALIDATING, TaskStatus.PR_OPEN, TaskStatus.MERGED):
        transition(task, status, clock())


class TestEpics:
    async def test_an_epic_becomes_ready_parts_chained_by_depends_on(
        self, settings: MemorySettings, clock: SettableClock
    ) -> None:
        """Three planned parts → three ready `Part of #1` issues, each depending on the one before; the epic
        gets one comment listing them and loses its ready label."""
        forge, graph = FakeForge(clock), TaskGraph()
        journal = MemoryJournal(graph, clock)
        epic = forge.add_issue("calc", 1, "Big thing", labels=[READY_LABEL, "epic"], body="All of it.")
        epics = epics_over(settings, journal, forge, graph, Scripted(PLAN))
        assert epics.is_epic(epic)
        await epics.split(epic)
        parts = parts_of(forge, 1)
        assert [p.title for p in parts] == ["Part 1", "Part 2", "Part 3"]
        assert all(READY_LABEL in p.labels for p in parts)
        deps = [parse_issue(p.title, p.body, p.labels).depends_on for p in parts]
        assert deps == [[], [parts[0].number], [parts[1].number]]
        assert parse_issue(parts[1].title, parts[1].body, []).success_criteria == ["step 2 works"]
        (comment,) = forge.comment_bodies("calc", 1)
        assert all(f"#{p.number} Part" in comment for p in parts)
        assert READY_LABEL not in forge.labels("calc", 1)
        types = journal.types()
        assert types.index("epic_split_planned") < types.index("epic_split")

    async def test_a_crash_mid_split_resumes_from_the_journal_without_asking_again_or_filing_twice(
        self, settings: MemorySettings, clock: SettableClock
    ) -> None:
        """Killed after part 1 was filed (and even merged and closed): the restarted daemon files parts 2 and
        3 only, from the journalled plan; the planner is not asked again."""
        forge, graph = CrashingForge(clock), TaskGraph()
        journal = MemoryJournal(graph, clock)
        epic = forge.add_issue("calc", 1, "Big thing", labels=[READY_LABEL, "epic"])
        forge.allowed = 1
        llm = Scripted(PLAN)
        await epics_over(settings, journal, forge, graph, llm).split(epic)
        (first,) = parts_of(forge, 1)
        await forge.close_issue("calc", first.number)  # the part ran and merged before the restart
        forge.allowed = 10**6

        restarted = epics_over(settings, journal, forge, graph, llm)
        assert await restarted.known("calc", 1)
        await restarted.split(epic)  # the dispatcher sees the still-ready epic again: nothing happens
        await restarted.tick()
        await restarted.tick()
        parts = parts_of(forge, 1)
        assert [p.title for p in parts] == ["Part 1", "Part 2", "Part 3"]
        assert parse_issue("", parts[1].body, []).depends_on == [first.number]
        assert len(llm.asked) == 1
        assert journal.types().count("epic_split") == 1

    async def test_the_parent_closes_only_when_every_part_merged(
        self, settings: MemorySettings, clock: SettableClock
    ) -> None:
        """Two of three parts merged: the epic stays open; the third merges: one comment, closed."""
        forge, graph = FakeForge(clock), TaskGraph()
        journal = MemoryJournal(graph, clock)
        epic = forge.add_issue("calc", 1, "Big thing", labels=[READY_LABEL, "epic"])
        epics = epics_over(settings, journal, forge, graph, Scripted(PLAN))
        await epics.split(epic)
        parts = parts_of(forge, 1)
        for part in parts[:2]:
            merged(graph, clock, part)
        await epics.tick()
        assert forge.issues["calc", 1].state == "open"
        merged(graph, clock, parts[2])
        await epics.tick()
        await epics.tick()
        assert forge.issues["calc", 1].state == "closed"
        done = [b for b in forge.comment_bodies("calc", 1) if "Every part of this epic merged" in b]
        assert len(done) == 1 and all(f"#{p.number}" in done[0] for p in parts)
        assert journal.types().count("epic_closed") == 1

    async def test_no_usable_plan_gives_one_comment_and_leaves_the_epic_to_a_human(
        self, settings: MemorySettings, clock: SettableClock
    ) -> None:
        """Two bad answers (the asker's None) → one comment, no part, and later passes and a restart do
        nothing more."""
        forge, graph = FakeForge(clock), TaskGraph()
        journal = MemoryJournal(graph, clock)
        epic = forge.add_issue("calc", 1, "Big thing", labels=[READY_LABEL, "epic"])
        llm = Scripted(None, PLAN)
        await epics_over(settings, journal, forge, graph, llm).split(epic)
        restarted = epics_over(settings, journal, forge, graph, llm)
        await restarted.split(epic)
        await restarted.tick()
        assert parts_of(forge, 1) == [] and len(llm.asked) == 1
        (comment,) = forge.comment_bodies("calc", 1)
        assert "could not split this epic" in comment
        assert READY_LABEL not in forge.labels("calc", 1)

    @pytest.mark.parametrize(
        "answer",
        [
            pytest.param({"parts": PLAN["parts"][:1]}, id="one-part"),
            pytest.param({"parts": PLAN["parts"] * 2}, id="six-parts"),
            pytest.param({"parts": [{"title": "x", "goal": "y", "success_criteria": []}] * 2}, id="no-criteria"),
        ],
    )
    def test_a_split_has_two_to_five_parts_with_criteria(self, answer: dict[str, Any]) -> None:
        """One part, six parts or a part without criteria is no usable plan (asked again, then left alone)."""
        with pytest.raises(ValidationError):
            SplitAnswer.model_validate(answer)


class TestDispatcher:
    async def test_an_unsplittable_epic_runs_as_one_task_once_its_epic_label_is_removed(self) -> None:
        """Left for a human, it is not admitted while labelled `epic`; without the label, made ready again, it
        becomes one task (the planner is not asked to split it again)."""
        dispatcher, world, _ = make(issue(1, labels=(READY_LABEL, "epic")), loops={"llm_agent": "claude"})
        llm = Scripted(None)
        journal, forge, graph = world.journal, world.forge, world.graph
        dispatcher.epics = epics_over(world.settings, journal, forge, graph, llm)
        await dispatcher.tick()
        assert graph.latest_for_issue("calc", 1) is None and READY_LABEL not in forge.labels("calc", 1)
        await forge.add_labels("calc", 1, [READY_LABEL])
        await dispatcher.tick()
        assert graph.latest_for_issue("calc", 1) is None
        await forge.remove_label("calc", 1, "epic")
        await dispatcher.tick()
        assert graph.latest_for_issue("calc", 1) is not None and len(llm.asked) == 1
