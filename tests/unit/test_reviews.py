"""Review feedback → the agent: which feedback sends a PR back, what the agent is told, how often."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agentos.forge.base import Feedback, PullRequest
from agentos.graph import Task, TaskStatus
from agentos.testing import T0, Rig, build
from tests.unit.test_lifecycle import REPO, attempt, config, make_task, put

BRANCH = "agentos/7-fix-the-sum"


def item(id_: str, kind: str = "comment", **fields: Any) -> Feedback:
    return Feedback(id=id_, kind=kind, author=fields.pop("author", "reviewer"), created_at=T0, **fields)  # type: ignore[arg-type]


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    made = build(config(tmp_path, routing={"default": ["claude"], "max_review_rounds": 2}))
    made.forge.add_issue(REPO, 7, "Fix the sum")
    made.forge.add_pr(REPO, 101, BRANCH)
    return made


def pr_task(rig: Rig, **fields: Any) -> Task:
    return put(rig, make_task(attempt(1, "complete"), status=TaskStatus.PR_OPEN, pr=101, **fields))


async def pr(rig: Rig) -> PullRequest:
    return await rig.forge.get_pr(REPO, 101)


class TestWhatCounts:
    async def test_requested_changes_go_back_to_an_agent_with_file_line_and_fenced_text(self, rig: Rig) -> None:
        """A trusted review that requests changes, with its line comment: RETRYING with the feedback as the report."""
        task = pr_task(rig)
        rig.forge.add_feedback(REPO, 101, item("review:1", "review", state="changes_requested", body="Needs tests"))
        rig.forge.add_feedback(
            REPO, 101, item("line:2", "line", body="```rm -rf``` off by 1", path="calc.py", line=12, review="review:1")
        )
        assert await rig.monitor.reviews.check(task, await pr(rig))
        assert task.status is TaskStatus.RETRYING and task.last_blocker == "review_requested"
        report = task.attempts[-1].error
        assert "`calc.py` line 12" in report and "Needs tests" in report and "untrusted" in report
        assert "````\n```rm -rf``` off by 1\n````" in report, "the text is fenced past its own backticks"
        assert task.review_rounds == 1 and rig.wakes.jobs == ["dispatch"]
        assert not await rig.monitor.reviews.check(task, await pr(rig)), "each piece is acted on once"

    @pytest.mark.parametrize("body", ["@agentos please rename x", "/agentos rename x"])
    async def test_a_comment_addressed_to_agentos_counts(self, rig: Rig, body: str) -> None:
        task = pr_task(rig)
        rig.forge.add_feedback(REPO, 101, item("comment:5", body=body))
        assert await rig.monitor.reviews.check(task, await pr(rig))
        assert task.status is TaskStatus.RETRYING

    async def test_chatter_approvals_and_agentos_own_comments_do_not(self, rig: Rig) -> None:
        task = pr_task(rig)
        rig.forge.add_feedback(REPO, 101, item("comment:5", body="nice work, cc @agentosfan"))
        rig.forge.add_feedback(REPO, 101, item("review:6", "review", state="approved", body="LGTM"))
        rig.forge.add_feedback(REPO, 101, item("comment:7", author="agentos", body="/agentos attempt 1 is done"))
        assert not await rig.monitor.reviews.check(task, await pr(rig))
        assert task.status is TaskStatus.PR_OPEN

    async def test_an_untrusted_author_changes_nothing_and_is_counted_once(self, rig: Rig) -> None:
        task = pr_task(rig)
        rig.forge.add_feedback(
            REPO, 101, item("review:3", "review", state="changes_requested", trusted=False, author="drive-by")
        )
        for _ in range(2):
            assert not await rig.monitor.reviews.check(task, await pr(rig))
        assert task.status is TaskStatus.PR_OPEN and rig.monitor.reviews.ignored == 1
        [ignored] = [e for e in rig.journal.events if e.type == "review_feedback_ignored"]
        assert ignored.data["authors"] == ["drive-by"]


class TestRounds:
    async def test_past_max_review_rounds_it_escalates_and_leaves_the_pr_open(self, rig: Rig) -> None:
        """Rounds spent: a PR comment, the task blocked, the PR open; a retry starts with fresh rounds."""
        task = pr_task(rig, review_rounds=2)
        rig.forge.add_feedback(REPO, 101, item("review:9", "review", state="changes_requested", body="Still wrong"))
        assert await rig.monitor.reviews.check(task, await pr(rig))
        assert task.status is TaskStatus.BLOCKED and task.review_rounds == 0
        assert any("max_review_rounds" in c for c in rig.forge.comment_bodies(REPO, 101))
        assert (await pr(rig)).state == "open"
        assert "review_rounds_exhausted" in rig.journal.types(task.id)
