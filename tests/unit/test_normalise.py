"""Specification of the one-shot normaliser (jobs/normalise.py) and how the dispatcher uses it: only terse
issues are asked about; the answer fills only what the issue leaves out; a failed answer leaves it as filed."""

from __future__ import annotations

from typing import Any, TypeVar

import pytest
from pydantic import BaseModel

from agentos.agents.prompt import build_prompt
from agentos.forge.base import READY_LABEL
from agentos.issue_text import parse_issue
from agentos.jobs.epics import Epics
from agentos.jobs.normalise import NormaliseAnswer, Normaliser, fill, is_terse
from tests.unit.test_dispatch import issue, make

M = TypeVar("M", bound=BaseModel)
ANSWER = {
    "goal": "Greet new users by name on the start page.",
    "success_criteria": ["The start page says 'Hello, <name>'", "A test covers it"],
    "constraints": ["Keep the public API"],
    "type": "debugging",
    "agent": "codex",
}
ON = {"loops": {"normalise": True, "llm_agent": "claude"}}


class Scripted:
    """An LLM agent with scripted answers (None: it failed or answered garbage twice)."""

    def __init__(self, *answers: dict[str, Any] | None) -> None:
        self.answers = list(answers)
        self.asked: list[str] = []

    async def ask(self, prompt: str, model: type[M]) -> M | None:
        self.asked.append(prompt)
        answer = self.answers.pop(0) if self.answers else None
        return None if answer is None else model.model_validate(answer)


class TestTerse:
    @pytest.mark.parametrize(
        ("body", "terse"),
        [
            pytest.param("", True, id="title-only"),
            pytest.param("Make the greeting nicer.", True, id="one-line"),
            pytest.param("word " * 40, False, id="forty-words"),
            pytest.param("<!-- " + "hidden " * 100 + "-->\nShort.", True, id="hidden-words-do-not-count"),
            pytest.param("## Done when\n\n- it greets\n", False, id="has-criteria"),
            pytest.param("## Acceptance\n\n- file: GREETING.md\n", False, id="has-acceptance"),
        ],
    )
    def test_terse_means_no_criteria_and_few_words(self, body: str, terse: bool) -> None:
        """Only a short issue without criteria or acceptance checks is normalised."""
        assert is_terse(body, parse_issue("Greeting", body, []), 40) is terse


class TestFill:
    @pytest.mark.parametrize(
        ("body", "labels", "kind", "agent"),
        [
            pytest.param("", [], "debugging", "codex", id="nothing-given: both filled"),
            pytest.param("Type: docs\n", [], None, "codex", id="type-line-wins"),
            pytest.param("", ["type:research"], None, "codex", id="type-label-wins"),
            pytest.param("", ["agent:claude"], "debugging", None, id="agent-label-wins"),
            pytest.param("Agent: claude\n", [], "debugging", None, id="agent-line-wins"),
        ],
    )
    def test_only_what_the_issue_leaves_out(self, body: str, labels: list[str], kind: str, agent: str) -> None:
        """Explicit `Type:`/`Agent:` lines and `type:`/`agent:` labels win over the normaliser."""
        parsed = parse_issue("Greeting", body, labels)
        outcome = fill(NormaliseAnswer.model_validate(ANSWER), parsed, {"claude", "codex"}, "planner")
        assert (outcome.type, outcome.agent) == (kind, agent)
        assert outcome.normalised.success_criteria == ANSWER["success_criteria"]

    def test_an_unknown_agent_is_dropped(self) -> None:
        answer = NormaliseAnswer.model_validate({**ANSWER, "agent": "gpt-9"})
        assert fill(answer, parse_issue("x", "", []), {"claude"}, "planner").agent is None

    def test_an_answer_without_criteria_is_no_answer(self) -> None:
        """The normaliser must give at least one criterion: an empty list fails validation (asked again)."""
        with pytest.raises(ValueError):
            NormaliseAnswer.model_validate({**ANSWER, "success_criteria": []})


class TestDispatch:
    async def test_a_terse_issue_is_worked_from_the_normalised_text(self) -> None:
        """The task keeps the issue's own goal and gets the normaliser's next to it, in one journal write;
        the prompt shows the normalised goal, criteria and constraints and quotes the original as filed."""
        dispatcher, world, _ = make(issue(1, body="Make the greeting nicer."), **ON)
        llm = Scripted(ANSWER)
        dispatcher.normaliser = Normaliser(settings=world.settings, llm=llm)
        await dispatcher.tick()
        task = world.graph.latest_for_issue("calc", 1)
        assert task is not None and task.normalised is not None
        assert task.goal == "Make the greeting nicer." and task.type == "debugging" and task.agent == "codex"
        assert task.normalised.filled == ["type", "agent"]
        assert [e.type for e in world.events[:2]] == ["task_created", "issue_normalised"]
        assert world.events[1].data["ok"] is True
        prompt = build_prompt(task, repo_memory="", prior_attempts=[], test_command="true")
        assert "The start page says 'Hello, <name>'" in prompt and "Keep the public API" in prompt
        assert "As filed" in prompt and "Make the greeting nicer." in prompt
        await dispatcher.tick()
        assert len(llm.asked) == 1

    async def test_a_failed_answer_leaves_the_issue_as_filed_without_a_comment(self) -> None:
        dispatcher, world, _ = make(issue(1, body="Make the greeting nicer."), **ON)
        dispatcher.normaliser = Normaliser(settings=world.settings, llm=Scripted(None))
        await dispatcher.tick()
        task = world.graph.latest_for_issue("calc", 1)
        assert task is not None and task.normalised is None and task.success_criteria == []
        (note,) = [e for e in world.events if e.type == "issue_normalised"]
        assert note.data["ok"] is False
        assert world.forge.comment_bodies("calc", 1) == []
        prompt = build_prompt(task, repo_memory="", prior_attempts=[], test_command="true")
        assert "As filed" not in prompt

    @pytest.mark.parametrize(
        "config",
        [
            pytest.param({"loops": {"llm_agent": "claude"}}, id="normalise-off"),
            pytest.param({"loops": {"normalise": True}}, id="no-llm-agent"),
        ],
    )
    async def test_nothing_is_asked_unless_switched_on_with_an_agent(self, config: dict[str, Any]) -> None:
        dispatcher, world, _ = make(issue(1), **config)
        llm = Scripted(ANSWER)
        dispatcher.normaliser = Normaliser(settings=world.settings, llm=llm)
        await dispatcher.tick()
        assert llm.asked == [] and world.graph.latest_for_issue("calc", 1) is not None

    async def test_an_issue_with_criteria_is_not_asked_about(self) -> None:
        dispatcher, world, _ = make(issue(1, body="Greet.\n\n## Success criteria\n\n- it greets\n"), **ON)
        llm = Scripted(ANSWER)
        dispatcher.normaliser = Normaliser(settings=world.settings, llm=llm)
        await dispatcher.tick()
        assert llm.asked == []

    async def test_one_judged_too_big_is_split_like_an_epic(self) -> None:
        """`too_big` → no task: the epic splitter files its parts instead."""
        dispatcher, world, _ = make(issue(1, body="Rewrite everything."), **ON)
        dispatcher.normaliser = Normaliser(settings=world.settings, llm=Scripted({**ANSWER, "too_big": True}))
        parts = [{"title": f"P{k}", "goal": "g", "success_criteria": ["c"]} for k in (1, 2)]
        dispatcher.epics = Epics(
            settings=world.settings,
            journal=world.journal,
            clock=world.journal.clock,
            graph=world.graph,
            forge=world.forge,
            store=world.journal,
            llm=Scripted({"parts": parts}),
        )
        await dispatcher.tick()
        assert world.graph.latest_for_issue("calc", 1) is None
        filed = [i for i in world.forge.issues.values() if i.body.startswith("Part of #1 ")]
        assert len(filed) == 2 and all(READY_LABEL in i.labels for i in filed)
        await dispatcher.tick()  # the parts are admitted; the epic is not
        assert world.graph.latest_for_issue("calc", 1) is None
        assert {t.issue for t in world.graph} == {i.number for i in filed}

    async def test_issues_that_need_no_answer_start_before_the_agent_is_asked(self) -> None:
        """A slow answer for a terse issue does not hold back the ready issues listed with it."""
        full = "Greet.\n\n## Success criteria\n\n- it greets\n"
        dispatcher, world, executor = make(issue(1, body="Terse."), issue(2, body=full), **ON)
        seen: list[list[str]] = []

        class Watching(Scripted):
            async def ask(self, prompt: str, model: type[M]) -> M | None:
                seen.append(list(executor.started))
                return await super().ask(prompt, model)

        dispatcher.normaliser = Normaliser(settings=world.settings, llm=Watching(ANSWER))
        await dispatcher.tick()
        assert seen == [["calc#2"]]
        assert executor.started == ["calc#2", "calc#1"]
