"""Specification of the metrics derived from the journal and the graph (agentos.ops.metrics)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agentos.cli.stats import parse_since
from agentos.graph import Attempt, Event, Task, TaskStatus
from agentos.ops.metrics import GroupStats, read_history, repo_of, summarise

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
H = timedelta(hours=1)


def ev(type_: str, task: str | None, at: datetime, **data: Any) -> Event:
    return Event(type=type_, task=task, ts=at, data=data)


def ended(task: str, at: datetime, agent: str, n: int, outcome: str, blocker: str | None = None, **more: Any) -> Event:
    data = {"attempt": n, "agent": agent, "outcome": outcome, "blocker_code": blocker, "duration_s": 600.0}
    data.update(more)
    return ev("attempt_ended", task, at, **data)


def task(task_id: str, type_: str = "implementation", attempts: list[Attempt] | None = None) -> Task:
    repo, _, num = task_id.partition("#")
    return Task(
        id=task_id,
        repo=repo,
        issue=int(num),
        title=f"issue {num}",
        type=type_,  # type: ignore[arg-type]
        status=TaskStatus.MERGED,
        attempts=attempts or [],
        created_at=T0 - 48 * H,
        updated_at=T0,
    )


def attempt(n: int, agent: str, at: datetime, error: str = "") -> Attempt:
    return Attempt(number=n, agent=agent, started_at=at, ended_at=at + H / 6, error=error)


@pytest.fixture
def data() -> tuple[list[Event], list[Task]]:
    """A small week: codex merges twice, claude fails three ways and gets a task escalated."""
    tasks = [
        task(
            "calc#1",
            attempts=[attempt(1, "claude", T0, "`pytest` exit 1: E assert 2 == 3"), attempt(2, "codex", T0 + H)],
        ),
        task("calc#2", "docs", [attempt(1, "claude", T0), attempt(2, "claude", T0 + H)]),
        task("web#3", attempts=[attempt(1, "codex", T0 + 0.5 * H)]),
        task("calc#4", attempts=[attempt(1, "claude", T0 + 2 * H)]),
    ]
    events = [
        ev("task_created", "calc#1", T0, issue=1, generation=1),
        ended("calc#1", T0 + 0.2 * H, "claude", 1, "complete", tokens=100, cost_usd=0.1),
        ev("transition", "calc#1", T0 + 0.3 * H, **{"from": "validating", "to": "retrying", "blocker": "test_failure"}),
        ended("calc#1", T0 + 1.5 * H, "codex", 2, "complete", tokens=300, cost_usd=0.3),
        ev("transition", "calc#1", T0 + 1.6 * H, **{"from": "validating", "to": "pr_open", "pr": 9}),
        ev("merged", "calc#1", T0 + 3 * H, pr=9, sha="abc", attempts=2),
        ended("calc#2", T0 + 0.5 * H, "claude", 1, "failed", "timeout", error="idle limit reached"),
        ended("calc#2", T0 + 1.5 * H, "claude", 2, "failed", "timeout", error="idle limit reached"),
        ev("escalated", "calc#2", T0 + 1.6 * H, blocker="timeout", attempts=2),
        ended("web#3", T0 + 0.7 * H, "codex", 1, "complete", tokens=1000, cost_usd=0.5),
        ev("merged", "web#3", T0 + 1.5 * H, pr=4, sha="def", attempts=1),
        ended("calc#4", T0 + 2.1 * H, "claude", 1, "failed", "quota_limited", error="usage limit"),
        ended("calc#4", T0 + 2.2 * H, "claude", 2, "interrupted"),
        ev("pr_rebased", "web#3", T0 + H, pr=4),
    ]
    return events, tasks


class TestReadHistory:
    def test_a_failed_validation_turns_the_complete_attempt_into_a_failure(self, data: Any) -> None:
        """A complete attempt followed by a validation failure counts as failed with that blocker."""
        history = read_history(*data, since=T0, until=T0 + 24 * H)
        first = next(r for r in history.attempts if r.task == "calc#1" and r.number == 1)
        assert (first.outcome, first.blocker, first.succeeded) == ("failed", "test_failure", False)
        failure = next(f for f in history.failures if f.task == "calc#1")
        assert (failure.stage, failure.agent, failure.blocker) == ("validation", "claude", "test_failure")
        assert "assert 2 == 3" in failure.error  # from the graph's attempt, the event carries none

    def test_interrupted_attempts_are_nobodys_attempts(self, data: Any) -> None:
        """A daemon restart ends an attempt as interrupted; it is not counted at all."""
        history = read_history(*data, since=T0, until=T0 + 24 * H)
        assert [r.number for r in history.attempts if r.task == "calc#4"] == [1]

    def test_finishes_belong_to_the_last_attempts_agent(self, data: Any) -> None:
        """calc#1 was failed by claude and merged by codex: the merge is codex's."""
        history = read_history(*data, since=T0, until=T0 + 24 * H)
        merged = {f.task: f for f in history.finishes if f.kind == "merged"}
        assert merged["calc#1"].agent == "codex"
        assert merged["calc#1"].hours == pytest.approx(3.0)  # from task_created
        assert merged["web#3"].hours == pytest.approx(1.0)  # no task_created: from the first attempt

    def test_the_window_bounds_are_inclusive_and_enforced(self, data: Any) -> None:
        """Events before ``since`` or after ``until`` are left out."""
        history = read_history(*data, since=T0 + 1.5 * H, until=T0 + 1.6 * H)
        assert sorted((r.task, r.number) for r in history.attempts) == [("calc#1", 2), ("calc#2", 2)]
        assert [f.task for f in history.finishes] == ["web#3", "calc#2"]

    def test_ci_send_backs_are_failures_of_stage_ci(self) -> None:
        """A PR sent back by CI is a failure, but the attempt that opened it stays a success."""
        t = task("calc#5", attempts=[attempt(1, "codex", T0, "CI failed on the PR: tests")])
        events = [
            ended("calc#5", T0 + H / 6, "codex", 1, "complete"),
            ev("transition", "calc#5", T0 + H, **{"from": "pr_open", "to": "retrying", "blocker": "test_failure"}),
        ]
        history = read_history(events, [t], since=T0, until=T0 + H)
        assert history.attempts[0].succeeded
        assert [(f.stage, f.error) for f in history.failures] == [("ci", "CI failed on the PR: tests")]

    def test_tasks_missing_from_the_graph_still_count(self) -> None:
        """A task pruned from the graph keeps its repo (from its id) and an unknown type."""
        history = read_history([ended("o/r#7.2", T0, "claude", 1, "failed", "runner_failure")], [], since=T0, until=T0)
        row = history.attempts[0]
        assert (row.repo, row.type) == ("o/r", "unknown")
        assert repo_of("o/r#7.2") == "o/r"


def by_key(groups: list[GroupStats]) -> dict[str, GroupStats]:
    return {g.key: g for g in groups}


class TestSummarise:
    @pytest.mark.parametrize(
        ("group", "key", "expected"),
        [
            pytest.param(
                "by_agent",
                "claude",
                {"attempts": 4, "successes": 0, "success_rate": 0.0, "merged": 0, "escalated": 1},
                id="claude-quota-not-rated",
            ),
            pytest.param(
                "by_agent",
                "codex",
                {"attempts": 2, "successes": 2, "success_rate": 1.0, "merged": 2, "attempts_per_merged": 1.5},
                id="codex",
            ),
            pytest.param(
                "by_agent", "codex", {"median_hours_to_merge": 2.0, "tokens": 1300, "cost_usd": 0.8}, id="codex-cost"
            ),
            pytest.param("by_type", "docs", {"attempts": 2, "escalation_rate": 1.0, "merged": 0}, id="docs"),
            pytest.param(
                "by_type", "implementation", {"attempts": 4, "successes": 2, "escalation_rate": 0.0}, id="impl"
            ),
            pytest.param("by_repo", "web", {"attempts": 1, "merged": 1, "tasks": 1, "cost_usd": 0.5}, id="web"),
            pytest.param(
                "by_repo",
                "calc",
                {"attempts": 5, "merged": 1, "escalated": 1, "escalation_rate": 0.5, "tasks": 3},
                id="calc",
            ),
        ],
    )
    def test_figures_per_group(self, data: Any, group: str, key: str, expected: dict[str, Any]) -> None:
        """Each group's figures follow the definitions in the module docstring."""
        report = summarise(*data, since=T0, until=T0 + 24 * H)
        stats = by_key(getattr(report, group))[key]
        for name, value in expected.items():
            assert getattr(stats, name) == pytest.approx(value), name

    def test_top_blockers_are_counted_most_first(self, data: Any) -> None:
        """Blocker codes of every failure, most frequent first, ties by name."""
        report = summarise(*data, since=T0, until=T0 + 24 * H)
        assert report.overall.top_blockers == (("timeout", 2), ("quota_limited", 1), ("test_failure", 1))

    def test_an_empty_window_gives_empty_figures(self) -> None:
        """No events: zero counts and no rates (never a division by zero)."""
        report = summarise([], [], since=T0, until=T0 + H)
        assert report.overall.attempts == 0
        assert report.overall.success_rate is None and report.overall.escalation_rate is None
        assert report.by_agent == []

    def test_the_report_is_plain_json(self, data: Any) -> None:
        """as_dict() survives json.dumps (the --json output of agentos stats)."""
        report = summarise(*data, since=T0, until=T0 + 24 * H)
        decoded = json.loads(json.dumps(report.as_dict()))
        assert decoded["overall"]["top_blockers"][0] == {"code": "timeout", "count": 2}
        assert {g["key"] for g in decoded["by_agent"]} == {"claude", "codex"}


class TestParseSince:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            pytest.param("7d", T0 - 7 * 24 * H, id="days"),
            pytest.param("24h", T0 - 24 * H, id="hours"),
            pytest.param("90m", T0 - 1.5 * H, id="minutes"),
            pytest.param("2w", T0 - 14 * 24 * H, id="weeks"),
            pytest.param("2026-03-01", datetime(2026, 3, 1, tzinfo=UTC), id="iso-date"),
            pytest.param("2026-03-01T08:00:00+01:00", datetime(2026, 3, 1, 7, tzinfo=UTC), id="iso-aware"),
        ],
    )
    def test_spans_and_dates(self, value: str, expected: datetime) -> None:
        """``agentos stats --since`` takes a span before now or an ISO date (UTC when naive)."""
        assert parse_since(value, T0) == expected

    def test_nonsense_is_refused(self) -> None:
        """An unreadable --since names the accepted forms."""
        with pytest.raises(ValueError, match="7d, 24h"):
            parse_since("last tuesday", T0)
