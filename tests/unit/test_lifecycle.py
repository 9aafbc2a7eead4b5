"""Lifecycle decisions on in-memory ports: what happens to a task after a verdict, a PR's state, an operator."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from agentos import caller
from agentos.agents.contract import ResultContract
from agentos.budget import BUDGET_CODE
from agentos.config import Config
from agentos.errors import ControlError
from agentos.forge.base import BLOCKED_LABEL, READY_LABEL, REVIEW_LABEL, RUNNING_LABEL
from agentos.graph import Attempt, IllegalTransition, Task, TaskStatus
from agentos.lifecycle import Verdict
from agentos.testing import T0, Rig, build

REPO = "calc"


def config(tmp_path: Path, **overrides: Any) -> Config:
    data: dict[str, Any] = {
        "state_dir": str(tmp_path / "state"),
        "repos": [{"name": REPO, "path": str(tmp_path / "calc"), "test_command": "true"}],
        "agents": {"claude": {"kind": "claude"}, "codex": {"kind": "codex"}},
        "routing": {"default": ["claude", "codex"], "max_attempts": 3, "backoff_base_s": 10, "backoff_cap_s": 300},
        "limits": {"max_task_tokens": 100_000},
        **overrides,
    }
    return Config.model_validate(data)


def attempt(n: int, outcome: str = "running", blocker: str | None = None, **fields: Any) -> Attempt:
    return Attempt(number=n, agent="claude", started_at=T0, outcome=outcome, blocker_code=blocker, **fields)  # type: ignore[arg-type]


def make_task(*attempts: Attempt, status: TaskStatus = TaskStatus.RUNNING, **fields: Any) -> Task:
    return Task(
        id=f"{REPO}#7",
        repo=REPO,
        issue=7,
        title="Fix the sum",
        status=status,
        attempts=list(attempts),
        branch="agentos/7-fix-the-sum",
        created_at=T0,
        updated_at=T0,
        **fields,
    )


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    made = build(config(tmp_path))
    made.forge.add_issue(REPO, 7, "Fix the sum", labels=[READY_LABEL, RUNNING_LABEL])
    return made


def put(rig: Rig, task: Task) -> Task:
    rig.graph.put(task)
    return task


class TestAttemptFailed:
    async def test_a_retryable_failure_retries_after_a_backoff(self, rig: Rig) -> None:
        """A timeout with attempts left: the attempt ends failed, the task waits base·2^(n-1) seconds."""
        task = put(rig, make_task(attempt(1)))
        await rig.lifecycle.attempt_failed(task, Verdict("failed", "timeout", error="idle limit reached"))
        assert task.status is TaskStatus.RETRYING
        assert task.not_before == T0 + timedelta(seconds=10)
        assert (task.attempts[0].outcome, task.attempts[0].blocker_code) == ("failed", "timeout")
        assert rig.journal.types(task.id) == ["attempt_ended", "->retrying"]
        assert rig.notes.sent == []

    async def test_a_usage_limit_retries_at_once_and_burns_no_attempt(self, rig: Rig) -> None:
        """quota_limited: no backoff, and it does not count toward max_attempts."""
        task = put(rig, make_task(attempt(1, "failed", "timeout"), attempt(2, "failed", "timeout"), attempt(3)))
        await rig.lifecycle.attempt_failed(task, Verdict("failed", "quota_limited"))
        assert task.status is TaskStatus.RETRYING and task.not_before == T0
        assert task.counted_attempts() == 2

    async def test_a_permanent_code_escalates_at_once(self, rig: Rig) -> None:
        """manual_intervention_required: blocked label, no ready label, a keyed comment, a sev1 notice with actions."""
        task = put(rig, make_task(attempt(1)))
        await rig.lifecycle.attempt_failed(
            task, Verdict("blocked", "manual_intervention_required", error="needs a key")
        )
        assert task.status is TaskStatus.BLOCKED and task.last_blocker == "manual_intervention_required"
        labels = rig.forge.labels(REPO, 7)
        assert BLOCKED_LABEL in labels and READY_LABEL not in labels and RUNNING_LABEL not in labels
        [comment] = rig.forge.comment_bodies(REPO, 7)
        assert "agentos escalated this issue" in comment and "escalation:calc#7:1" in comment
        [note] = rig.notes.sent
        assert note.severity == 1 and note.key == "escalation:calc#7:1"
        assert [(a.kind, a.ref) for a in note.actions] == [
            ("retry", "calc#7"),
            ("cancel", "calc#7"),
            ("wontfix", "calc#7"),
            ("show", "calc#7"),
        ]
        assert note.actions[3].url == "https://forge.example/calc/issues/7"
        assert "escalated" in rig.journal.types(task.id)

    async def test_the_last_allowed_attempt_escalates(self, rig: Rig) -> None:
        """After max_attempts counted failures the task is blocked, not retried."""
        task = put(rig, make_task(attempt(1, "failed", "timeout"), attempt(2, "failed", "timeout"), attempt(3)))
        await rig.lifecycle.attempt_failed(task, Verdict("failed", "test_failure"))
        assert task.status is TaskStatus.BLOCKED
        assert [e.data.get("reason") for e in rig.journal.events if e.type == "transition"] == ["max_attempts"]

    async def test_an_issue_over_its_budget_escalates_with_the_figures(self, rig: Rig) -> None:
        """Past max_task_tokens the task is blocked as budget_exceeded; the comment names the spend."""
        task = put(rig, make_task(attempt(1, tokens_in=150_000)))
        await rig.lifecycle.attempt_failed(task, Verdict("failed", "timeout"))
        assert task.status is TaskStatus.BLOCKED and task.last_blocker == BUDGET_CODE
        [comment] = rig.forge.comment_bodies(REPO, 7)
        assert "Budget: spent" in comment and "limit 100,000 tokens" in comment

    async def test_a_failed_hand_off_is_judged_like_a_failed_attempt(self, rig: Rig) -> None:
        """Red tests after a complete attempt: the attempt is failed with test_failure and the task retried."""
        task = put(rig, make_task(attempt(1, "complete"), status=TaskStatus.VALIDATING))
        await rig.lifecycle.validation_failed(task, "test_failure", "`pytest` exit 1")
        assert task.status is TaskStatus.RETRYING
        assert (task.attempts[0].outcome, task.attempts[0].blocker_code) == ("failed", "test_failure")


class TestCompletedWithoutChange:
    CONTRACT = ResultContract(
        status="complete", summary="Use SQLite.", done="compared both", decisions="keep SQLite", risks="none"
    )

    @pytest.mark.parametrize("kind", ["research", "architecture", "docs"])
    async def test_an_answer_is_posted_and_the_issue_closed(self, rig: Rig, kind: str) -> None:
        """Research, architecture, docs: the result on the issue (keyed), DONE journalled, issue closed, no PR."""
        task = put(rig, make_task(attempt(1, "complete"), status=TaskStatus.VALIDATING, type=kind))
        await rig.lifecycle.completed_without_change(task, task.attempts[0], self.CONTRACT)
        assert task.status is TaskStatus.DONE and task.is_terminal
        [comment] = rig.forge.comment_bodies(REPO, 7)
        assert "Use SQLite." in comment and "keep SQLite" in comment and "answer:calc#7" in comment
        assert (await rig.forge.get_issue(REPO, 7)).state == "closed"
        assert "completed_without_change" in rig.journal.types(task.id)
        assert [(n.severity, n.key) for n in rig.notes.sent] == [(3, "done:calc#7")]
        assert rig.wakes.jobs == ["dispatch"]

    async def test_a_repeat_after_a_crash_posts_nothing_twice(self, rig: Rig) -> None:
        task = put(rig, make_task(attempt(1, "complete"), status=TaskStatus.VALIDATING, type="research"))
        await rig.forge.comment(REPO, 7, "the answer, posted before the crash", key="answer:calc#7")
        await rig.lifecycle.completed_without_change(task, task.attempts[0], self.CONTRACT)
        assert len(rig.forge.comment_bodies(REPO, 7)) == 1 and task.status is TaskStatus.DONE

    async def test_an_implementation_without_a_change_failed(self, rig: Rig) -> None:
        """Any other type: no_diff_produced, retried like a failed attempt; the issue stays open."""
        task = put(rig, make_task(attempt(1, "complete"), status=TaskStatus.VALIDATING))
        await rig.lifecycle.completed_without_change(task, task.attempts[0], self.CONTRACT)
        assert task.status is TaskStatus.RETRYING and task.last_blocker == "no_diff_produced"
        assert rig.forge.comment_bodies(REPO, 7) == []
        assert (await rig.forge.get_issue(REPO, 7)).state == "open"

    async def test_a_done_task_releases_its_dependants(self, rig: Rig) -> None:
        task = put(rig, make_task(attempt(1, "complete"), status=TaskStatus.VALIDATING, type="research"))
        waiting = make_task(status=TaskStatus.QUEUED, depends_on=[task.id]).model_copy(update={"id": f"{REPO}#8"})
        put(rig, waiting.model_copy(update={"issue": 8}))
        waiting = rig.graph.get(f"{REPO}#8")
        assert not rig.graph.deps_met(waiting)
        await rig.lifecycle.completed_without_change(task, task.attempts[0], None)
        assert rig.graph.deps_met(waiting)


class TestRecoverEscalations:
    async def test_an_unannounced_escalation_is_announced_once(self, rig: Rig) -> None:
        """A BLOCKED task without its marker gets its comment and notice after a restart, and only once."""
        task = put(rig, make_task(attempt(1, "failed", "timeout"), status=TaskStatus.BLOCKED))
        await rig.lifecycle.recover_escalations()
        await rig.lifecycle.recover_escalations()
        assert len(rig.forge.comment_bodies(REPO, 7)) == 1
        assert [n.key for n in rig.notes.sent] == [f"escalation:{task.id}:1"]


class TestPullRequests:
    def pr_task(self, rig: Rig, **fields: Any) -> Task:
        rig.forge.add_pr(REPO, 101, "agentos/7-fix-the-sum")
        return put(rig, make_task(attempt(1, "complete"), status=TaskStatus.PR_OPEN, pr=101, **fields))

    async def test_a_red_pr_goes_back_to_an_agent_with_the_report(self, rig: Rig) -> None:
        """Within the fix budget: RETRYING at once, the report as the last error, approval and review label gone."""
        task = self.pr_task(rig, approved_at=T0)
        pr = await rig.forge.get_pr(REPO, 101)
        await rig.forge.add_labels(REPO, 101, [REVIEW_LABEL])
        pr = await rig.forge.get_pr(REPO, 101)
        assert await rig.lifecycle.send_back(task, pr, "CI failed: test_sum", reason="ci_failed")
        assert task.status is TaskStatus.RETRYING and task.not_before == T0
        assert task.ci_fix_attempts == 1 and task.approved_at is None
        assert task.attempts[0].error == "CI failed: test_sum"
        assert REVIEW_LABEL not in rig.forge.labels(REPO, 101)
        assert rig.wakes.jobs == ["dispatch"]

    async def test_a_rebase_conflict_keeps_the_approval_and_says_conflict(self, rig: Rig) -> None:
        """A branch that conflicts with its base goes back as `rebase_conflict`, not `test_failure`, and the
        operator's approval stands (the same change is redone on top of the base)."""
        task = self.pr_task(rig, approved_at=T0)
        pr = await rig.forge.get_pr(REPO, 101)
        assert await rig.lifecycle.send_back(task, pr, "conflicts in calc.py", reason="rebase_conflict")
        assert task.status is TaskStatus.RETRYING and task.last_blocker == "rebase_conflict"
        assert task.approved_at == T0

    async def test_a_branch_that_keeps_conflicting_escalates_as_a_conflict(self, rig: Rig) -> None:
        """The fix budget spent on conflicts: escalated with blocker `rebase_conflict`."""
        task = self.pr_task(rig, ci_fix_attempts=rig.config.routing.max_ci_fix_attempts)
        pr = await rig.forge.get_pr(REPO, 101)
        assert not await rig.lifecycle.send_back(task, pr, "conflicts again", reason="rebase_conflict")
        assert task.status is TaskStatus.BLOCKED and task.last_blocker == "rebase_conflict"

    async def test_past_the_fix_budget_it_escalates_and_leaves_the_pr_open(self, rig: Rig) -> None:
        """The budget spent: a comment on the PR, the task blocked, the PR still open for a human."""
        limit = rig.config.routing.max_ci_fix_attempts
        task = self.pr_task(rig, ci_fix_attempts=limit)
        pr = await rig.forge.get_pr(REPO, 101)
        assert not await rig.lifecycle.send_back(task, pr, "CI failed again", reason="ci_failed")
        assert task.status is TaskStatus.BLOCKED and task.ci_fix_attempts == 0
        assert any(f"CI stayed red after {limit} fix attempts" in c for c in rig.forge.comment_bodies(REPO, 101))
        assert (await rig.forge.get_pr(REPO, 101)).state == "open"

    async def test_a_wedged_pr_is_respawned_once_then_escalated(self, rig: Rig) -> None:
        """The first wedge cancels the task and queues generation 2; its own wedge would escalate."""
        task = self.pr_task(rig, last_signature="red:test:abc")
        pr = await rig.forge.get_pr(REPO, 101)
        fresh = rig.lifecycle.respawn(task, pr)
        assert task.status is TaskStatus.CANCELLED and task.last_blocker == "wedged"
        assert fresh is not None and fresh.id == "calc#7.2" and fresh.status is TaskStatus.QUEUED
        assert rig.graph.find("calc#7.2") is fresh
        assert rig.lifecycle.wedged_before(fresh)
        assert [n.severity for n in rig.notes.sent] == [2]

    async def test_a_merge_closes_the_issue_and_wakes_the_dispatcher(self, rig: Rig) -> None:
        """MERGED, the issue closed, the running label gone, a digest line, the outcome baseline read, dependants
        may start."""
        task = self.pr_task(rig, last_signature="pending:ci:1")
        await rig.lifecycle.merged(task, "abc123")
        assert task.status is TaskStatus.MERGED and task.last_signature is None
        issue = await rig.forge.get_issue(REPO, 7)
        assert issue.state == "closed" and RUNNING_LABEL not in issue.labels
        assert [(n.severity, n.key) for n in rig.notes.sent] == [(3, "merged:calc#7")]
        assert rig.wakes.jobs == ["outcome_check", "dispatch"]


class TestCancel:
    async def test_a_running_attempt_is_stopped_and_recorded_as_the_operators_cancel(self, rig: Rig) -> None:
        """CANCELLED with the attempt interrupted by operator_cancel, its coroutine stopped, the labels gone."""
        task = put(rig, make_task(attempt(1)))
        started = asyncio.Event()

        async def agent() -> None:
            started.set()
            await asyncio.Event().wait()

        rig.running.launch(task.id, agent())
        await started.wait()
        await rig.lifecycle.cancel(task)
        assert task.id not in rig.running
        assert task.status is TaskStatus.CANCELLED and not task.awaiting_unready
        assert task.attempts[0].outcome == "interrupted" and "operator_cancel" in task.attempts[0].error
        assert "operator_cancel" in rig.journal.types(task.id)
        labels = rig.forge.labels(REPO, 7)
        assert READY_LABEL not in labels and RUNNING_LABEL not in labels

    async def test_a_ready_label_that_could_not_be_removed_is_removed_later(self, rig: Rig) -> None:
        """The forge refuses now: the task stays awaiting_unready until clear_ready succeeds."""
        task = put(rig, make_task(status=TaskStatus.QUEUED))
        rig.forge.fail.add("remove_label")
        await rig.lifecycle.cancel(task)
        assert task.status is TaskStatus.CANCELLED and task.awaiting_unready
        rig.forge.fail.clear()
        assert await rig.lifecycle.clear_ready(task)
        assert not task.awaiting_unready and READY_LABEL not in rig.forge.labels(REPO, 7)

    async def test_on_a_board_repo_only_a_retry_restarts_it(self, tmp_path: Path) -> None:
        """Where a Projects board's Status makes issues ready, the cancel is never taken back by the card."""
        board = build(
            config(
                tmp_path,
                forge="github",
                github={},
                repos=[{"name": REPO, "project": {"owner": "o", "number": 1}, "test_command": "true"}],
            )
        )
        board.forge.add_issue(REPO, 7, "Fix the sum")
        task = put(board, make_task(status=TaskStatus.QUEUED))
        await board.lifecycle.cancel(task)
        await board.lifecycle.clear_ready(task)  # the dispatcher's next pass
        assert task.awaiting_unready, "the dispatcher keeps not admitting the issue"

    async def test_an_open_pr_is_closed_with_a_comment(self, rig: Rig) -> None:
        """A task in pr_open: the PR is closed with the reason (the branch is not touched)."""
        rig.forge.add_pr(REPO, 101, "agentos/7-fix-the-sum")
        task = put(rig, make_task(attempt(1, "complete"), status=TaskStatus.PR_OPEN, pr=101))
        await rig.lifecycle.cancel(task)
        assert (await rig.forge.get_pr(REPO, 101)).state == "closed"
        assert any("cancelled by the operator" in c for c in rig.forge.comment_bodies(REPO, 101))

    async def test_cancelled_or_merged_tasks_cannot_be_cancelled(self, rig: Rig) -> None:
        """A second cancel, or a cancel of a merged task, is refused."""
        with pytest.raises(IllegalTransition):
            await rig.lifecycle.cancel(put(rig, make_task(status=TaskStatus.CANCELLED)))
        with pytest.raises(IllegalTransition):
            await rig.lifecycle.cancel(make_task(status=TaskStatus.MERGED))


class TestRetry:
    def test_a_cancelled_task_is_queued_again(self, rig: Rig) -> None:
        """An operator's retry queues the task at once and wakes the dispatcher."""
        task = put(rig, make_task(attempt(1, "interrupted"), status=TaskStatus.CANCELLED, awaiting_unready=True))
        rig.lifecycle.retry(task)
        assert task.status is TaskStatus.QUEUED and task.not_before is None and not task.awaiting_unready
        assert rig.wakes.jobs == ["dispatch"]

    def test_a_live_task_is_not_retried(self, rig: Rig) -> None:
        """Retrying a running task is refused."""
        with pytest.raises(IllegalTransition):
            rig.lifecycle.retry(put(rig, make_task(attempt(1))))

    def test_a_retry_with_an_agent_reroutes_the_next_attempt_and_says_who(self, rig: Rig) -> None:
        """``retry --agent claude``: claude runs next though it failed the task twice; the journal says who."""
        task = put(rig, make_task(attempt(1, "failed"), attempt(2, "failed"), status=TaskStatus.BLOCKED))
        with caller.calling("telegram:42"):
            rig.lifecycle.retry(task, "claude")
        assert task.status is TaskStatus.QUEUED and rig.pool.choose(task) == "claude"
        retried = [e for e in rig.journal.events if e.type == "operator_retry"]
        assert retried[-1].data == {"by": "telegram:42", "agent": "claude"}
        task.start_attempt("claude", T0)
        assert task.reroute is None, "the reroute is for one attempt"

    def test_an_unknown_agent_is_refused_naming_the_agents(self, rig: Rig) -> None:
        """One line naming the agents; the task does not move."""
        task = put(rig, make_task(status=TaskStatus.BLOCKED))
        with pytest.raises(ControlError, match="no agent named 'gpt'; agents: claude, codex"):
            rig.lifecycle.retry(task, "gpt")
        assert task.status is TaskStatus.BLOCKED


class TestClose:
    async def test_wontfix_closes_the_issue_with_the_reason_and_the_pr_and_says_who(self, rig: Rig) -> None:
        """The task ends cancelled with blocker wontfix; the issue is closed with the reason and a wontfix label;
        the open PR is closed; the journal names the operator."""
        rig.forge.add_pr(REPO, 101, "agentos/7-fix-the-sum")
        task = put(rig, make_task(attempt(1, "complete"), status=TaskStatus.PR_OPEN, pr=101))
        with caller.calling("ctl"):
            await rig.lifecycle.close(task, wontfix=True, reason="out of scope")
        assert task.status is TaskStatus.CANCELLED and task.last_blocker == "wontfix"
        issue = await rig.forge.get_issue(REPO, 7)
        assert issue.state == "closed" and "wontfix" in issue.labels and READY_LABEL not in issue.labels
        assert any("won't fix" in c and "out of scope" in c for c in rig.forge.comment_bodies(REPO, 7))
        assert (await rig.forge.get_pr(REPO, 101)).state == "closed"
        closed = [e for e in rig.journal.events if e.type == "operator_close"]
        assert closed[-1].data["by"] == "ctl" and closed[-1].data["reason"] == "out of scope"

    async def test_a_running_attempt_is_stopped(self, rig: Rig) -> None:
        task = put(rig, make_task(attempt(1)))
        started = asyncio.Event()

        async def agent() -> None:
            started.set()
            await asyncio.Event().wait()

        rig.running.launch(task.id, agent())
        await started.wait()
        await rig.lifecycle.close(task)
        assert task.id not in rig.running and task.attempts[0].outcome == "interrupted"
        assert task.status is TaskStatus.CANCELLED and task.last_blocker == "closed"

    async def test_a_cancelled_task_can_be_closed_a_merged_one_cannot(self, rig: Rig) -> None:
        task = put(rig, make_task(status=TaskStatus.CANCELLED))
        await rig.lifecycle.close(task, wontfix=True)
        assert task.last_blocker == "wontfix" and (await rig.forge.get_issue(REPO, 7)).state == "closed"
        with pytest.raises(IllegalTransition):
            await rig.lifecycle.close(make_task(status=TaskStatus.MERGED))
