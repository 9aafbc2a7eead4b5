"""Specification of the incident scanner (agentos.jobs.incidents): signatures, clusters, one issue each."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from pydantic import BaseModel

from agentos.config import Config, RepoConfig
from agentos.forge.base import marker
from agentos.forge.local import LocalForge
from agentos.graph import Task, TaskStatus
from agentos.jobs._loops import LoopSettings
from agentos.jobs.incidents import cluster_failures, headline, normalise_error, signature
from agentos.ops.metrics import Failure
from agentos.testing import LoopRig, SettableClock, build_loops, end_attempt, start_attempt, transition

M = TypeVar("M", bound=BaseModel)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SECRET = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4"


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock(T0)


@pytest.fixture
def rt(tmp_path: Path, clock: SettableClock) -> LoopRig:
    repos = []
    for name in ("calc", "web"):
        (tmp_path / name).mkdir()
        repos.append(RepoConfig(name=name, path=str(tmp_path / name), test_command="true"))
    config = Config(state_dir=str(tmp_path / "state"), repos=repos)
    forge = LocalForge(tmp_path / "state", {r.name: r for r in repos}, clock=clock)
    return build_loops(config, forge, clock=clock)


def fail_attempt(rt: LoopRig, repo: str, issue: int, error: str, blocker: str = "runner_failure") -> Task:
    """One failed attempt, journalled the way the executor does (start, end, retry)."""
    task = rt.graph.latest_for_issue(repo, issue)
    now = rt.clock()
    if task is None:
        task = Task(
            id=Task.make_id(repo, issue), repo=repo, issue=issue, title=f"issue {issue}", created_at=now, updated_at=now
        )
    _, ev1 = start_attempt(task, "claude", now)
    ev2 = end_attempt(task, now, outcome="failed", blocker_code=blocker, error=error)
    ev3 = transition(task, TaskStatus.RETRYING, now, blocker=blocker)
    rt.journal.commit([ev1, ev2, ev3], [task])
    return task


def crash(n: int) -> str:
    return f"exit 1: starting run {n} at 2026-03-02T09:0{n}:00Z\nError: cannot open /tmp/run-{n}/sock (pid {4000 + n})"


async def open_issues(rt: LoopRig, repo: str = "calc") -> list[Any]:
    return await rt.forge.list_issues(repo)


class TestNormalise:
    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            pytest.param("failed at 2026-03-02T09:01:02.5+01:00 ok", "failed at <ts> ok", id="iso-datetime"),
            pytest.param("took 12:30:01, 45 ms", "took <ts>, <n> ms", id="time-and-number"),
            pytest.param("commit 3f9a2c1d not found", "commit <hex> not found", id="sha"),
            pytest.param("at 0xDEADBEEF", "at <hex>", id="hex-literal"),
            pytest.param("id 123e4567-e89b-12d3-a456-426614174000", "id <id>", id="uuid"),
            pytest.param("GET https://api.example.com/x?y=1 failed", "get <url> failed", id="url"),
            pytest.param("No such file: /srv/app/tests/test_x.py", "no such file: <path>", id="abs-path"),
            pytest.param("in src/agentos/x.py line 3", "in <path> line <n>", id="rel-path"),
            pytest.param("  Many   spaces\there ", "many spaces here", id="whitespace"),
        ],
    )
    def test_what_varies_is_stripped(self, raw: str, expected: str) -> None:
        """Times, ids, URLs, paths, hex and numbers become placeholders; case and spacing are folded."""
        assert normalise_error(raw) == expected

    def test_long_texts_are_cut(self) -> None:
        """A normalised text is at most 160 characters."""
        assert len(normalise_error("word " * 100)) == 160


class TestHeadline:
    @pytest.mark.parametrize(
        ("error", "expected"),
        [
            pytest.param(
                "exit 1:\nrunning\nValueError: bad input\nerror later", "ValueError: bad input", id="exception"
            ),
            pytest.param(
                "`pytest -q` exit 1:\n=====\nFAILED tests/test_a.py::test_x - assert 1\n1 failed in 0.1s",
                "FAILED tests/test_a.py::test_x - assert 1",
                id="failed-line",
            ),
            pytest.param("step one\npermission denied for x", "permission denied for x", id="error-word"),
            pytest.param("just text\nmore", "just text", id="first-line"),
            pytest.param("idle limit reached; last output: 42 files", "idle limit reached", id="cut-last-output"),
            pytest.param("", "", id="empty"),
        ],
    )
    def test_the_most_telling_line_wins(self, error: str, expected: str) -> None:
        """Exception names beat FAILED lines, which beat error words, which beat the first line."""
        assert headline(error) == expected


class TestClusters:
    def test_occurrences_that_differ_only_in_details_share_a_signature(self) -> None:
        """Paths, pids and times do not split a cluster; a different blocker code does."""
        fails = [
            Failure(T0, f"calc#{n}", "calc", "implementation", "claude", "runner_failure", crash(n), "attempt")
            for n in range(3)
        ]
        fails.append(Failure(T0, "calc#9", "calc", "implementation", "claude", "timeout", crash(9), "attempt"))
        clusters = cluster_failures(fails)
        assert [c.count for c in clusters] == [3, 1]
        assert clusters[0].text == "error: cannot open <path> (pid <n>)"
        assert clusters[0].signature == signature("runner_failure", clusters[0].text)
        assert signature("runner_failure", "x") != signature("timeout", "x")


class TestIncidentScanner:
    async def test_below_the_threshold_nothing_is_filed(self, rt: LoopRig) -> None:
        """Two occurrences are not an incident."""
        for n in range(2):
            fail_attempt(rt, "calc", n + 1, crash(n))
        await rt.incident_scanner().tick()
        assert await open_issues(rt) == []

    async def test_three_occurrences_file_exactly_one_issue(self, rt: LoopRig, clock: SettableClock) -> None:
        """The third occurrence files one autonomous-fix issue with the evidence, redacted."""
        fail_attempt(rt, "calc", 1, crash(1) + f"\ntoken {SECRET}")
        fail_attempt(rt, "calc", 1, crash(2))
        fail_attempt(rt, "web", 2, crash(3))
        clock.advance(minutes=5)
        scanner = rt.incident_scanner()
        await scanner.tick()
        await scanner.tick()
        issues = await open_issues(rt)
        assert len(issues) == 1 and await open_issues(rt, "web") == []
        issue = issues[0]
        assert issue.labels == ["autonomous-fix"]
        assert issue.title.startswith("Recurring runner_failure: error: cannot open <path>")
        assert "`calc#1`" in issue.body and "`web#2`" in issue.body
        assert "seen 3 times" in issue.body
        assert SECRET not in issue.body and "[REDACTED]" in issue.body
        assert await rt.forge.comments("calc", issue.number) == []
        reported = [e for e in rt.journal.iter_events(T0) if e.type == "incident_reported"]
        assert [(e.data["action"], e.data["count"]) for e in reported] == [("filed", 3)]

    async def test_a_fourth_occurrence_comments_once_a_day(self, rt: LoopRig, clock: SettableClock) -> None:
        """New occurrences comment on the open issue, at most once a day, never twice for the same ones."""
        for n in range(3):
            fail_attempt(rt, "calc", n + 1, crash(n))
        scanner = rt.incident_scanner()
        await scanner.tick()
        clock.advance(hours=1)
        fail_attempt(rt, "calc", 4, crash(4))
        await scanner.tick()
        await scanner.tick()
        (issue,) = await open_issues(rt)
        comments = await rt.forge.comments("calc", issue.number)
        assert len(comments) == 1
        assert "1 new occurrence" in comments[0].body and "`calc#4`" in comments[0].body
        clock.advance(hours=1)
        fail_attempt(rt, "calc", 5, crash(5))
        await scanner.tick()  # same day: the day's comment is already there
        assert len(await rt.forge.comments("calc", issue.number)) == 1
        clock.advance(hours=20)  # the next day, still within the 24 h window of #5
        await scanner.tick()
        comments = await rt.forge.comments("calc", issue.number)
        assert len(comments) == 2 and "`calc#5`" in comments[1].body
        assert len(await open_issues(rt)) == 1

    async def test_the_open_issue_is_found_in_any_repo(self, rt: LoopRig, clock: SettableClock) -> None:
        """The signature's open issue in another repo is commented on, not duplicated."""
        for n in range(3):
            fail_attempt(rt, "calc", n + 1, crash(n))
        fails = read_failures(rt)
        sig = cluster_failures(fails)[0].signature
        other = await rt.forge.create_issue("web", "older incident", "body", ["autonomous-fix"], key=f"incident:{sig}")
        await rt.incident_scanner().tick()
        assert await open_issues(rt) == []
        assert len(await rt.forge.comments("web", other.number)) == 1

    async def test_a_closed_incident_that_recurs_is_filed_again(self, rt: LoopRig, clock: SettableClock) -> None:
        """Closing the issue says "fixed"; a new burst files a new one (still one open)."""
        for n in range(3):
            fail_attempt(rt, "calc", n + 1, crash(n))
        scanner = rt.incident_scanner()
        await scanner.tick()
        (first,) = await open_issues(rt)
        await rt.forge.close_issue("calc", first.number)
        clock.advance(days=2)
        for n in range(3):
            fail_attempt(rt, "calc", n + 10, crash(n))
        await scanner.tick()
        (second,) = await open_issues(rt)
        assert second.number != first.number

    async def test_an_llm_names_the_cluster_when_configured(self, rt: LoopRig) -> None:
        """A configured LLM gives the title and an explanation; its text is redacted too."""

        class Namer:
            async def ask(self, prompt: str, model: type[M]) -> M | None:
                assert "runner_failure" in prompt
                answer = {"title": "Socket directory missing", "explanation": f"The run dir is gone. {SECRET}"}
                return model.model_validate(answer)

        for n in range(3):
            fail_attempt(rt, "calc", n + 1, crash(n))
        await rt.incident_scanner(LoopSettings(), llm=Namer()).tick()
        (issue,) = await open_issues(rt)
        assert issue.title == "Recurring runner_failure: Socket directory missing"
        assert "The run dir is gone." in issue.body and SECRET not in issue.body

    async def test_the_threshold_and_window_are_settings(self, rt: LoopRig, clock: SettableClock) -> None:
        """threshold 2 files on two; occurrences older than the window are not counted."""
        fail_attempt(rt, "calc", 1, crash(1))
        clock.advance(hours=30)
        fail_attempt(rt, "calc", 2, crash(2))
        await rt.incident_scanner(LoopSettings(incident_threshold=2)).tick()
        assert await open_issues(rt) == []
        fail_attempt(rt, "calc", 3, crash(3))
        await rt.incident_scanner(LoopSettings(incident_threshold=2)).tick()
        (issue,) = await open_issues(rt)
        assert marker(f"incident:{signature('runner_failure', normalise_error(headline(crash(1))))}") in issue.body


def read_failures(rt: LoopRig) -> list[Failure]:
    from agentos.ops.metrics import read_history

    return read_history(
        list(rt.journal.iter_events(T0 - timedelta(days=1))), rt.graph, since=T0 - timedelta(days=1), until=rt.clock()
    ).failures
