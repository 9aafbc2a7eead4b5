"""What the egress proxy refused an attempt is on its record and in every place a person reads about it."""

from __future__ import annotations

from datetime import UTC, datetime

from agentos.control import replies
from agentos.graph import Task
from agentos.notices import escalation_comment, escalation_notice, pr_body

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def task_with_denials() -> Task:
    task = Task(id="calc#7", repo="calc", issue=7, title="Fix the parser", created_at=T0, updated_at=T0)
    attempt, _ = task.start_attempt("claude", T0, branch="agentos/7-fix")
    task.note_egress("blocked: evil.example:443 ×3", attempt=attempt)
    task.note_egress("tests blocked: pypi.org:443 ×1", attempt=attempt)
    task.end_attempt(T0, outcome="failed", blocker_code="test_failure", error="tests failed")
    return task


def test_the_agents_and_the_tests_denials_are_both_kept() -> None:
    [attempt] = task_with_denials().attempts
    assert attempt.egress_denied == "blocked: evil.example:443 ×3; tests blocked: pypi.org:443 ×1"


def test_an_attempt_without_denials_says_nothing() -> None:
    task = Task(id="calc#8", repo="calc", issue=8, title="t", created_at=T0, updated_at=T0)
    attempt, _ = task.start_attempt("claude", T0)
    task.note_egress("", attempt=attempt)
    assert attempt.egress_denied == ""
    assert "blocked" not in pr_body(task, attempt, 1)


def test_the_pr_body_and_the_escalation_name_the_refused_hosts() -> None:
    task = task_with_denials()
    [attempt] = task.attempts
    assert "blocked: evil.example:443 ×3" in pr_body(task, attempt, 2)
    assert "blocked: evil.example:443 ×3" in escalation_comment(task)
    assert "attempt 1 egress blocked: evil.example:443 ×3" in escalation_notice(task, "")


def test_ctl_and_chat_task_views_show_them() -> None:
    shown = task_with_denials().model_dump(mode="json")
    assert "blocked: evil.example:443 ×3" in replies.chat_task(shown)
    [_, table] = replies.terminal_task(shown)
    assert isinstance(table, replies.Table) and "egress_denied" in table.columns
