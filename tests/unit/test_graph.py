"""The task graph's rules: legal transitions, attempts, dependencies, dispatch order, backoff."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agentos.graph import IllegalTransition, Task, TaskStatus, backoff_seconds
from agentos.replay import compact
from agentos.task_graph import TaskGraph
from agentos.testing import end_attempt, start_attempt, transition

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def make(issue: int, *, priority: str = "normal", age: int = 0, deps: list[str] | None = None) -> Task:
    return Task(
        id=Task.make_id("calc", issue),
        repo="calc",
        issue=issue,
        title=f"issue {issue}",
        priority=priority,  # type: ignore[arg-type]
        depends_on=deps or [],
        created_at=T0 - timedelta(minutes=age),
        updated_at=T0,
    )


class TestTransitions:
    def test_happy_path(self) -> None:
        """queued → running → validating → pr_open → merged is legal and each step yields an event."""
        task = make(1)
        attempt, ev = start_attempt(task, "claude", T0)
        assert ev.data == {"from": "queued", "to": "running", "agent": "claude", "attempt": 1}
        end_attempt(task, T0 + timedelta(seconds=5), outcome="complete")
        assert attempt.duration_s == 5
        for status in (TaskStatus.VALIDATING, TaskStatus.PR_OPEN, TaskStatus.MERGED):
            transition(task, status, T0)
        assert task.is_terminal

    @pytest.mark.parametrize(
        ("start", "to"),
        [
            (TaskStatus.MERGED, TaskStatus.RUNNING),
            (TaskStatus.QUEUED, TaskStatus.MERGED),
            (TaskStatus.BLOCKED, TaskStatus.RUNNING),
            (TaskStatus.CANCELLED, TaskStatus.PR_OPEN),
            (TaskStatus.DONE, TaskStatus.QUEUED),
            (TaskStatus.PR_OPEN, TaskStatus.DONE),
            (TaskStatus.RUNNING, TaskStatus.DONE),
        ],
    )
    def test_illegal_transition_raises(self, start: TaskStatus, to: TaskStatus) -> None:
        """A change the rules do not allow raises and leaves the task as it was."""
        task = make(1)
        task.status = start
        with pytest.raises(IllegalTransition, match=f"{start.value} → {to.value}"):
            transition(task, to, T0)
        assert task.status is start

    def test_end_attempt_needs_a_running_attempt(self) -> None:
        """An attempt cannot end twice."""
        task = make(1)
        start_attempt(task, "a", T0)
        end_attempt(task, T0, outcome="failed", blocker_code="timeout")
        assert task.last_blocker == "timeout"
        with pytest.raises(IllegalTransition):
            end_attempt(task, T0, outcome="failed")


class TestDispatchOrder:
    def test_priority_then_age(self) -> None:
        """High priority goes first; within a priority, the oldest issue first."""
        graph = TaskGraph([make(1, age=1), make(2, priority="high"), make(3, age=5), make(4, priority="low", age=9)])
        assert [t.issue for t in graph.dispatchable(T0)] == [2, 3, 1, 4]

    def test_dependencies_wait_for_merge(self) -> None:
        """A task whose dependency is not merged is not dispatchable; unknown ids block too."""
        dep = make(1)
        child = make(2, deps=[dep.id])
        orphan = make(3, deps=["calc#99"])
        graph = TaskGraph([dep, child, orphan])
        assert [t.issue for t in graph.dispatchable(T0)] == [1]
        dep.status = TaskStatus.MERGED
        assert [t.issue for t in graph.dispatchable(T0)] == [2]

    def test_backoff_holds_a_retry(self) -> None:
        """A retrying task waits until its not_before time."""
        task = make(1)
        task.status = TaskStatus.RETRYING
        task.not_before = T0 + timedelta(seconds=20)
        graph = TaskGraph([task])
        assert graph.dispatchable(T0) == []
        assert graph.dispatchable(T0 + timedelta(seconds=20)) == [task]


@pytest.mark.parametrize(("n", "expected"), [(0, 0), (1, 10), (2, 20), (3, 40), (5, 160), (6, 300), (20, 300)])
def test_backoff_formula(n: int, expected: float) -> None:
    """Retry delay is min(10 s · 2^(n-1), 5 min)."""
    assert backoff_seconds(n) == expected


class TestIssueIndex:
    def test_generations_come_oldest_first_and_a_replaced_task_is_not_listed_twice(self) -> None:
        """for_issue lists each generation once, oldest first, whatever order they were put in."""
        second = make(1).model_copy(update={"id": Task.make_id("calc", 1, 2), "generation": 2})
        first = make(1)
        graph = TaskGraph([second, first])
        assert [t.generation for t in graph.for_issue("calc", 1)] == [1, 2]
        again = first.model_copy(update={"note": "put again"})
        graph.put(again)
        assert graph.for_issue("calc", 1) == [again, second]
        assert graph.latest_for_issue("calc", 1) is second
        assert graph.for_issue("calc", 2) == []

    def test_a_task_moved_to_another_issue_leaves_the_old_one(self) -> None:
        graph = TaskGraph([make(1)])
        graph.put(make(1).model_copy(update={"issue": 7}))
        assert graph.for_issue("calc", 1) == []
        assert [t.issue for t in graph.for_issue("calc", 7)] == [7]


class TestCompact:
    """Tasks read back from disk are made smaller in memory without changing what they hold."""

    def read_back(self, task: Task) -> Task:
        return compact(Task.model_validate(task.model_dump(mode="json")))

    def finished(self, issue: int) -> Task:
        task = make(issue)
        start_attempt(task, "claude", T0)
        end_attempt(task, T0 + timedelta(minutes=3), outcome="failed", blocker_code="test_failure", error="boom")
        transition(task, TaskStatus.BLOCKED, T0 + timedelta(minutes=3))
        return task

    def test_a_compacted_task_holds_the_same_data(self) -> None:
        task = self.finished(1)
        back = self.read_back(task)
        assert back == task
        assert back.model_dump(mode="json") == task.model_dump(mode="json")
        assert back.last_blocker == "test_failure"

    def test_loaded_tasks_share_their_field_bookkeeping(self) -> None:
        """Two tasks read back share one set of field names per model instead of 2 KB each."""
        a, b = self.read_back(self.finished(1)), self.read_back(self.finished(2))
        assert a.model_fields_set is b.model_fields_set
        assert a.attempts[0].model_fields_set is b.attempts[0].model_fields_set
        assert a.repo is b.repo
        assert a.attempts[0].blocker_code is b.attempts[0].blocker_code

    def test_changing_a_compacted_task_changes_only_that_task(self) -> None:
        a, b = self.read_back(self.finished(1)), self.read_back(self.finished(2))
        transition(a, TaskStatus.QUEUED, T0 + timedelta(minutes=5))
        start_attempt(a, "codex", T0 + timedelta(minutes=6))
        a.attempts[0].summary = "changed"
        assert (a.status, len(a.attempts), a.attempts[0].summary) == (TaskStatus.RUNNING, 2, "changed")
        assert (b.status, len(b.attempts), b.attempts[0].summary) == (TaskStatus.BLOCKED, 1, "")
        assert b.model_fields_set == set(Task.model_fields)

    def test_a_task_missing_fields_keeps_its_own_bookkeeping(self) -> None:
        """A task written before a field existed still reports which fields it was given."""
        data = make(1).model_dump(mode="json")
        del data["note"]
        task = compact(Task.model_validate(data))
        assert "note" not in task.model_fields_set
        assert task.note == ""
