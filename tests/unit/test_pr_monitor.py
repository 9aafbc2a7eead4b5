"""The PR monitor's rules, on a real runtime and journal with an in-memory forge, fake branches and a fake clock.

The forge records every call that changes something (``FakeForge.changes``) so "a second pass changes
nothing" is checked directly; time is a :class:`Clock` the tests move (STYLE rule 7).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agentos import caller, testing
from agentos.config import Config
from agentos.errors import ControlError
from agentos.forge.base import (
    BLOCKED_LABEL,
    READY_LABEL,
    REVIEW_LABEL,
    BoardStatus,
    CheckRun,
    Checks,
    Comment,
    Issue,
    MergeReason,
    MergeResult,
    PullRequest,
    marker,
)
from agentos.graph import Attempt, Event, Task, TaskStatus
from agentos.jobs._pr_policy import Blocker, ci_context, is_wedged, normalise, red_blocker
from agentos.jobs.pr_monitor import PRMonitor, RebaseOutcome
from agentos.jobs.verify import FileChange, PRDiff
from agentos.ops.metrics import read_history
from agentos.task_graph import TaskGraph

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
FAKE_LLM = Path(__file__).parents[1] / "fakes" / "agents" / "json_answer.py"
REPO = "app"
TOKEN = "ghp_" + "Z9y8X7w6" * 5
SMALL = PRDiff((FileChange("notes.txt", 3, 0),))


# ---------------------------------------------------------------------------------------------- fakes


@dataclass
class FakePR:
    number: int
    head: str
    head_sha: str
    state: str = "open"
    mergeable: bool | None = True
    labels: list[str] = field(default_factory=list)
    comments: list[Comment] = field(default_factory=list)
    body: str = ""


class FakeForge(testing.FakeForge):
    """The in-memory forge with PRs scripted per test: checks per head sha, comments by key, labels; every change
    recorded as ``(what, number, …)``."""

    def __init__(self, *, checks_merge_result: bool = False) -> None:
        super().__init__()
        self.checks_merge_result = checks_merge_result
        self.prs: dict[int, FakePR] = {}
        self.checks_by_sha: dict[str, Checks] = {}
        self.issue_labels: dict[int, list[str]] = {}
        self.comments_of: dict[int, list[Comment]] = {}
        self.refuse: tuple[MergeReason, str] | None = None  # the next merges are refused: why, and the message
        self.changes: list[tuple[Any, ...]] = []
        self.read: list[int] = []  # PR numbers asked for one by one (get_pr)
        self._ids = 0

    def green(self, sha: str) -> None:
        self.checks_by_sha[sha] = Checks(sha=sha, state="success", runs=[CheckRun(name="ci", state="success")])

    def red(self, sha: str, *, log_tail: str = "FAILED test_x: assert 1 == 2", name: str = "ci") -> None:
        run = CheckRun(name=name, state="failure", summary="1 test failed", log_tail=log_tail)
        self.checks_by_sha[sha] = Checks(sha=sha, state="failure", runs=[run])

    def pending(self, sha: str) -> None:
        self.checks_by_sha[sha] = Checks(sha=sha, state="pending", runs=[CheckRun(name="ci", state="pending")])

    async def get_pr(self, repo: str, number: int) -> PullRequest:
        self.read.append(number)
        return self._pr(repo, number)

    def _pr(self, repo: str, number: int) -> PullRequest:
        p = self.prs[number]
        return PullRequest(
            repo=repo,
            number=number,
            title=f"Task {number}",
            body=p.body,
            head=p.head,
            base="main",
            state=p.state,  # type: ignore[arg-type]
            head_sha=p.head_sha,
            mergeable=p.mergeable,
            created_at=NOW,
            labels=list(p.labels),
        )

    async def open_prs(self, repo: str) -> list[PullRequest]:
        return [self._pr(repo, n) for n, p in sorted(self.prs.items()) if p.state == "open"]

    async def checks(self, repo: str, number: int) -> Checks:
        sha = self.prs[number].head_sha
        return self.checks_by_sha.get(sha, Checks(sha=sha, state="pending"))

    async def merge_pr(self, repo: str, number: int, *, sha: str, title: str, body: str) -> MergeResult:
        p = self.prs[number]
        if p.state == "merged":
            return MergeResult(merged=True, reason="merged", sha=f"squash-{number}", message="already merged")
        self.changes.append(("merge", number, sha))
        if self.refuse is not None:
            return MergeResult(merged=False, reason=self.refuse[0], message=self.refuse[1])
        if sha != p.head_sha:
            moved = f"head moved: expected {sha}, it is at {p.head_sha}"
            return MergeResult(merged=False, reason="head_moved", message=moved)
        p.state = "merged"
        return MergeResult(merged=True, reason="merged", sha=f"squash-{number}", message="merged")

    async def close_pr(self, repo: str, number: int, *, comment: str = "") -> None:
        if comment:
            await self.comment(repo, number, comment, key=f"close-pr-{number}")
        self.changes.append(("close_pr", number))
        self.prs[number].state = "closed"

    def _comments(self, number: int) -> list[Comment]:
        return self.prs[number].comments if number in self.prs else self.comments_of.setdefault(number, [])

    async def comment(self, repo: str, number: int, body: str, *, key: str) -> Comment:
        existing = self._comments(number)
        found = next((c for c in existing if marker(key) in c.body), None)
        if found is not None:
            return found
        self._ids += 1
        new = Comment(id=self._ids, author="agentos", body=f"{body}\n\n{marker(key)}", created_at=NOW)
        existing.append(new)
        self.changes.append(("comment", number, key))
        return new

    async def comments(self, repo: str, number: int) -> list[Comment]:
        return list(self._comments(number))

    def _labels(self, number: int) -> list[str]:
        return self.prs[number].labels if number in self.prs else self.issue_labels.setdefault(number, [])

    async def add_labels(self, repo: str, number: int, labels: list[str]) -> None:
        have = self._labels(number)
        for label in labels:
            if label not in have:
                have.append(label)
                self.changes.append(("label", number, label))

    async def remove_label(self, repo: str, number: int, label: str) -> None:
        have = self._labels(number)
        if label in have:
            have.remove(label)
            self.changes.append(("unlabel", number, label))

    async def close_issue(self, repo: str, number: int) -> None:
        self.changes.append(("close_issue", number))

    async def get_issue(self, repo: str, number: int) -> Issue:
        return Issue(repo=repo, number=number, title=f"Issue {number}", created_at=NOW, updated_at=NOW)

    async def set_board_status(self, repo: str, issue: int, status: BoardStatus) -> None:
        self.changes.append(("board", issue, status))


class FakeBranches:
    """The monitor's git seam: which PRs are behind the base, their diffs, scripted rebase outcomes."""

    def __init__(self, forge: FakeForge) -> None:
        self.forge = forge
        self.behind: set[int] = set()
        self.diffs: dict[int, PRDiff] = {}
        self.outcome: str = "pushed"
        self.rebased: list[tuple[str, str]] = []
        self.deleted: list[tuple[str, str]] = []
        self.removed: list[str] = []

    async def sync(self, repo: str) -> None:
        return None

    async def up_to_date(self, repo: str, pr: PullRequest) -> bool:
        return pr.number not in self.behind

    async def diff(self, repo: str, pr: PullRequest) -> PRDiff:
        return self.diffs.get(pr.number, SMALL)

    async def rebase(self, task: Task, head_sha: str, patch: Path) -> RebaseOutcome:
        assert task.pr is not None
        self.rebased.append((task.id, head_sha))
        if self.outcome == "conflict":
            patch.parent.mkdir(parents=True, exist_ok=True)
            patch.write_text("diff --git a/x b/x\n")
            return RebaseOutcome("conflict", head_sha, ("agent_output.txt",), str(patch))
        if self.outcome != "pushed":
            return RebaseOutcome(self.outcome, head_sha)  # type: ignore[arg-type]
        pr = self.forge.prs[task.pr]
        pr.head_sha = f"{head_sha}-rebased"
        pr.mergeable = True
        self.behind.discard(task.pr)
        return RebaseOutcome("pushed", pr.head_sha)

    async def delete(self, repo: str, branch: str, sha: str) -> None:
        self.deleted.append((branch, sha))

    async def remove_worktree(self, repo: str, branch: str) -> None:
        self.removed.append(branch)


@dataclass
class Rig:
    core: testing.Rig
    forge: FakeForge
    branches: FakeBranches

    @property
    def monitor(self) -> PRMonitor:
        return self.core.monitor

    @property
    def clock(self) -> testing.SettableClock:
        return self.core.clock

    @property
    def notes(self) -> testing.RecordingNotifier:
        return self.core.notes

    @property
    def events(self) -> list[Event]:
        return self.core.journal.events

    @property
    def graph(self) -> TaskGraph:
        return self.core.graph

    def open_pr(
        self, n: int, *, checks: str = "green", issue: int | None = None, generation: int = 1, **fields: Any
    ) -> Task:
        """A task (of issue ``n`` unless given) in pr_open with PR #(n + 100) at ``sha<n>``, checks ``checks``."""
        number, sha, issue = n + 100, f"sha{n}", issue or n
        branch = f"agentos/{n}-task"
        self.forge.prs[number] = FakePR(number, branch, sha, body=f"Closes #{issue}\n\nDid it.")
        self.forge.issue_labels[issue] = [READY_LABEL]
        getattr(self.forge, checks)(sha)
        run_dir = self.core.config.state_path / "runs" / f"app-{n}" / "1"
        values: dict[str, Any] = {
            "id": Task.make_id(REPO, issue, generation),
            "repo": REPO,
            "issue": issue,
            "generation": generation,
            "title": f"Task {n}",
            "status": TaskStatus.PR_OPEN,
            "pr": number,
            "branch": branch,
            "attempts": [Attempt(number=1, agent="claude", started_at=NOW, outcome="complete", run_dir=str(run_dir))],
            "created_at": NOW + timedelta(seconds=n),
            "updated_at": NOW,
        }
        task = Task(**{**values, **fields})
        journal = self.core.journal
        journal.commit([journal.event("task_created", task.id, issue=issue, generation=generation)], [task])
        return task

    def types(self) -> list[str]:
        return [e.type if e.type != "transition" else f"->{e.data['to']}" for e in self.events]

    async def quiet_tick(self) -> None:
        """A pass that must change nothing: no journal line, no forge change, no notification."""
        before = (len(self.events), len(self.forge.changes), len(self.notes.sent), len(self.branches.rebased))
        await self.monitor.tick()
        after = (len(self.events), len(self.forge.changes), len(self.notes.sent), len(self.branches.rebased))
        assert after == before, f"the second pass changed something: {self.types()[before[0] :]}"


def build_rig(tmp_path: Path, *, checks_merge_result: bool = False, **config: Any) -> Rig:
    cfg = {
        "state_dir": str(tmp_path / "state"),
        "repos": [{"name": REPO, "path": str(tmp_path / "repo"), "test_command": "true"}],
        "agents": {"claude": {"kind": "claude"}},
        "routing": {"default": ["claude"]},
        "sandbox": {"mode": "off"},  # the fake one-shot judge records its prompts outside any sandbox
    }
    for key, value in config.items():
        cfg[key] = {**cfg[key], **value} if isinstance(cfg.get(key), dict) else value
    if "repo" in config:
        cfg["repos"] = [{**cfg["repos"][0], **config["repo"]}]  # type: ignore[index]
        del cfg["repo"]
    conf = Config.model_validate(cfg)
    forge = FakeForge(checks_merge_result=checks_merge_result)
    branches = FakeBranches(forge)
    return Rig(testing.build(conf, now=NOW, forge=forge, branches=branches), forge, branches)


MakeRig = Callable[..., Rig]


@pytest.fixture
def make_rig(tmp_path: Path) -> Iterator[MakeRig]:
    """``make_rig(**config)``: a rig whose config has these overrides (``repo=`` for the one repo's keys)."""
    made: list[Rig] = []

    def make(**config: Any) -> Rig:
        made.append(build_rig(tmp_path, **config))
        return made[-1]

    yield make


@pytest.fixture
def rig(make_rig: MakeRig) -> Rig:
    return make_rig()


# ---------------------------------------------------------------------------------------------- policies


class TestPolicies:
    def test_normalise_drops_what_changes_between_runs(self) -> None:
        """Directories, hashes, numbers and spacing do not make two reports of one failure differ."""
        a = normalise("FAILED /tmp/a1/x/test_app.py::test_x - assert 1 == 2 (abc1234f, 0.31s)")
        b = normalise("FAILED  /var/tmp/zz/test_app.py::test_x - assert 3 == 4 (ffee0011aa, 12.5s)")
        assert a == b == "failed test_app.py::test_x - assert <n> == <n> (<sha>, <n>s)"

    def test_signature_is_names_plus_error_lines(self) -> None:
        """The same failing checks with the same errors share a signature; another check name does not."""
        one = Checks(sha="1", state="failure", runs=[CheckRun(name="ci", state="failure", log_tail="Error: at 12")])
        two = Checks(sha="2", state="failure", runs=[CheckRun(name="ci", state="failure", log_tail="Error: at 99")])
        lint = Checks(sha="3", state="failure", runs=[CheckRun(name="lint", state="failure", log_tail="Error: at 1")])
        assert red_blocker(one).signature == red_blocker(two).signature
        assert red_blocker(one).signature != red_blocker(lint).signature
        assert red_blocker(one).signature.startswith("red:ci:")
        assert Blocker("pending", ("ci",)).signature != Blocker("red", ("ci",)).signature

    @pytest.mark.parametrize(
        ("since", "now", "hours", "wedged"),
        [
            pytest.param(NOW, NOW + timedelta(hours=4), 4, False, id="exactly-the-limit"),
            pytest.param(NOW, NOW + timedelta(hours=4, seconds=1), 4, True, id="past-the-limit"),
            pytest.param(NOW, NOW + timedelta(microseconds=1), 0, True, id="zero-hours-any-time"),
            pytest.param(None, NOW, 0, False, id="never-blocked"),
        ],
    )
    def test_wedged_after_the_limit(self, since: datetime | None, now: datetime, hours: float, wedged: bool) -> None:
        """Wedged means blocked on one signature for longer than wedged_after_hours."""
        assert is_wedged(since, now, hours) is wedged

    def test_ci_context_names_summarises_tails_and_redacts(self) -> None:
        """The follow-up's context has each failing check's name, summary and log tail, tokens redacted."""
        runs = [
            CheckRun(name="unit", state="failure", summary="2 failed", log_tail="x" * 5000 + f"\nboom {TOKEN}"),
            CheckRun(name="lint", state="failure", summary="E501", log_tail="line too long"),
            CheckRun(name="docs", state="success"),
        ]
        text = ci_context(Checks(sha="abcdef1234567", state="failure", runs=runs))
        assert text.startswith("CI failed on the PR (head abcdef123456)")
        assert "- unit: 2 failed" in text and "boom [REDACTED]" in text and TOKEN not in text
        assert "- lint: E501\nline too long" in text and "docs" not in text
        assert len(text) <= 3000


# ---------------------------------------------------------------------------------------------- the gate


class TestCIGate:
    async def test_green_is_merged_once_and_recorded(self, rig: Rig) -> None:
        """Green and mergeable: squash-merged at the checked sha, issue closed, card Done, graph and journal."""
        task = rig.open_pr(1)

        await rig.monitor.tick()

        assert task.status is TaskStatus.MERGED
        assert ("merge", 101, "sha1") in rig.forge.changes
        assert ("close_issue", 1) in rig.forge.changes and ("board", 1, "Done") in rig.forge.changes
        merged = [e for e in rig.events if e.type == "merged"]
        assert [(e.task, e.data["pr"], e.data["sha"]) for e in merged] == [(task.id, 101, "squash-101")]
        assert rig.branches.removed == [task.branch]
        await rig.quiet_tick()

    async def test_pending_waits(self, rig: Rig) -> None:
        """Pending checks: no merge; the blocker is journalled once, and a second pass changes nothing."""
        task = rig.open_pr(1, checks="pending")

        await rig.monitor.tick()

        assert task.status is TaskStatus.PR_OPEN and rig.forge.changes == []
        assert rig.types()[-1] == "pr_blocked" and task.last_signature == "pending:ci:" + task.last_signature[-12:]
        await rig.quiet_tick()
        rig.forge.green("sha1")
        await rig.monitor.tick()
        assert task.status is TaskStatus.MERGED

    async def test_checks_of_an_older_head_are_not_trusted(self, rig: Rig) -> None:
        """Green checks that ran on a commit the PR has moved away from are no reason to merge."""
        task = rig.open_pr(1)
        rig.forge.prs[101].head_sha = "sha1-amended"
        rig.forge.checks_by_sha["sha1-amended"] = rig.forge.checks_by_sha["sha1"]  # the forge answers stale checks

        await rig.monitor.tick()

        assert task.status is TaskStatus.PR_OPEN and rig.forge.changes == []

    async def test_a_head_that_moved_during_the_merge_is_not_merged(self, rig: Rig) -> None:
        """The merge names the sha the checks ran on; the forge refuses when the head moved, and that is no error."""
        task = rig.open_pr(1)
        rig.forge.refuse = ("head_moved", "Head branch was modified. Review and try the merge again.")

        await rig.monitor.tick()

        assert task.status is TaskStatus.PR_OPEN and task.last_signature is None
        rig.forge.refuse = None
        await rig.monitor.tick()
        assert task.status is TaskStatus.MERGED

    async def test_a_merge_refused_for_another_reason_blocks_the_pr_on_it(self, rig: Rig) -> None:
        """A refusal that is neither a conflict nor a moved head (a protected branch…) is a blocker of the PR."""
        task = rig.open_pr(1)
        rig.forge.refuse = ("refused", "Required status check is expected")

        await rig.monitor.tick()

        assert task.status is TaskStatus.PR_OPEN
        assert task.last_signature is not None and task.last_signature.startswith("refused:")
        assert [e.data["kind"] for e in rig.events if e.type == "pr_blocked"] == ["refused"]

    async def test_already_merged_is_success(self, rig: Rig) -> None:
        """A merge that the forge reports as already done marks the task merged."""
        task = rig.open_pr(1)

        async def merged_already(*_: Any, **__: Any) -> MergeResult:
            return MergeResult(merged=True, reason="merged", sha="old-squash", message="already merged")

        rig.forge.merge_pr = merged_already  # type: ignore[method-assign]
        await rig.monitor.tick()
        assert task.status is TaskStatus.MERGED
        assert [e.data["sha"] for e in rig.events if e.type == "merged"] == ["old-squash"]

    async def test_a_merge_the_journal_missed_is_reconciled_never_repeated(self, rig: Rig) -> None:
        """Crash between merge and journal: merged on the forge → the task is marked merged, never merged again."""
        task = rig.open_pr(1)
        rig.forge.prs[101].state = "merged"

        await rig.monitor.tick()

        assert task.status is TaskStatus.MERGED
        assert not [c for c in rig.forge.changes if c[0] == "merge"]
        [merged] = [e for e in rig.events if e.type == "merged"]
        assert merged.data["reconciled"] is True
        assert rig.branches.deleted == [(task.branch, "sha1")]

    async def test_a_pr_closed_by_someone_cancels_the_task(self, rig: Rig) -> None:
        """A PR closed without a merge (not by agentos) cancels its task."""
        task = rig.open_pr(1)
        rig.forge.prs[101].state = "closed"
        await rig.monitor.tick()
        assert task.status is TaskStatus.CANCELLED
        assert rig.events[-1].data["reason"] == "pr_closed_without_merge"

    async def test_a_disabled_repo_is_skipped(self, rig: Rig) -> None:
        """`ctl repo off` stops PR monitoring of that repo too."""
        task = rig.open_pr(1)
        rig.core.settings.disabled.add(REPO)
        await rig.monitor.tick()
        assert task.status is TaskStatus.PR_OPEN and rig.forge.changes == []


# ---------------------------------------------------------------------------------------------- red CI


class TestRedCI:
    async def test_red_goes_back_to_an_agent_with_the_failing_checks(self, rig: Rig) -> None:
        """Red CI: the task is retried on the same branch; its last attempt carries names, summary, log tail."""
        task = rig.open_pr(1, checks="red")
        rig.forge.red("sha1", log_tail=f"E   AssertionError: wanted 2 lines\nusing token {TOKEN}")

        await rig.monitor.tick()

        assert task.status is TaskStatus.RETRYING and task.ci_fix_attempts == 1
        assert task.branch == "agentos/1-task" and task.pr == 101
        error = task.attempts[-1].error
        assert "- ci: 1 test failed" in error and "wanted 2 lines" in error
        assert TOKEN not in error and "[REDACTED]" in error
        [sent] = [e for e in rig.events if e.type == "transition" and e.data["to"] == "retrying"]
        assert (sent.data["reason"], sent.data["blocker"]) == ("ci_failed", "test_failure")

    async def test_red_then_green_on_the_same_head_is_a_flip_in_the_history(self, rig: Rig) -> None:
        """pr_blocked and pr_unblocked carry the head sha, so checks that flip on one commit read as flaky."""
        task = rig.open_pr(1, checks="red")
        await rig.monitor.tick()
        assert task.status is TaskStatus.RETRYING
        task.status = TaskStatus.PR_OPEN  # the follow-up found nothing to fix: same head, checks re-run green
        rig.forge.green("sha1")
        await rig.monitor.tick()
        assert task.status is TaskStatus.MERGED
        blocked, unblocked = [e for e in rig.events if e.type in ("pr_blocked", "pr_unblocked")]
        assert (blocked.data["sha"], unblocked.data["sha"]) == ("sha1", "sha1")
        history = read_history(rig.events, rig.graph, since=NOW, until=rig.clock.now)
        assert [(f.task, f.sha) for f in history.flips] == [(task.id, "sha1")]

    async def test_red_after_the_fix_budget_escalates_and_leaves_the_pr_open(self, make_rig: MakeRig) -> None:
        """With max_ci_fix_attempts spent: a PR comment, the issue escalated (blocked label), the PR stays open."""
        rig = make_rig(routing={"max_ci_fix_attempts": 3})
        task = rig.open_pr(1, checks="red", ci_fix_attempts=3)

        await rig.monitor.tick()

        assert task.status is TaskStatus.BLOCKED
        assert rig.forge.prs[101].state == "open"
        [comment] = rig.forge.prs[101].comments
        assert "stopped sending this PR back to an agent: CI stayed red after 3 fix attempts" in comment.body
        assert "1 test failed" in comment.body
        assert BLOCKED_LABEL in rig.forge.issue_labels[1] and READY_LABEL not in rig.forge.issue_labels[1]
        assert [e.type for e in rig.events][-3:] == ["ci_fix_exhausted", "transition", "escalated"]
        assert any("escalated this issue" in c.body for c in rig.forge.comments_of[1])
        assert task.ci_fix_attempts == 0, "an operator's retry gets a fresh budget"
        await rig.quiet_tick()


# ---------------------------------------------------------------------------------------------- conflicts, queue


class TestConflictsAndQueue:
    async def test_a_conflicting_pr_is_rebased(self, rig: Rig) -> None:
        """mergeable=false: the branch is rebased onto the base and pushed; the new head is checked next."""
        task = rig.open_pr(1)
        rig.forge.prs[101].mergeable = False

        await rig.monitor.tick()

        assert rig.branches.rebased == [(task.id, "sha1")]
        assert [e.data["reason"] for e in rig.events if e.type == "pr_rebased"] == ["conflict"]
        assert task.status is TaskStatus.PR_OPEN
        rig.forge.green("sha1-rebased")
        await rig.monitor.tick()
        assert task.status is TaskStatus.MERGED
        assert ("merge", 101, "sha1-rebased") in rig.forge.changes

    async def test_a_rebase_conflict_goes_back_to_an_agent(self, rig: Rig) -> None:
        """A rebase that conflicts: the change is saved as a patch and the task retried with the files named."""
        task = rig.open_pr(1)
        rig.forge.prs[101].mergeable = False
        rig.branches.outcome = "conflict"

        await rig.monitor.tick()

        assert task.status is TaskStatus.RETRYING and task.ci_fix_attempts == 1
        assert "conflicts with main in: agent_output.txt" in task.attempts[-1].error
        assert task.attempts[-1].patch_path and Path(task.attempts[-1].patch_path).is_file()
        assert rig.events[-1].data["reason"] == "rebase_conflict"

    async def test_one_merge_per_pass_then_the_next_is_rebased_onto_it(self, rig: Rig) -> None:
        """Two green PRs: the oldest merges; the other, now behind the base, is rebased and re-checked first."""
        first, second = rig.open_pr(1), rig.open_pr(2)

        await rig.monitor.tick()

        assert (first.status, second.status) == (TaskStatus.MERGED, TaskStatus.PR_OPEN)
        assert rig.branches.rebased == [(second.id, "sha2")]
        assert [e.data["reason"] for e in rig.events if e.type == "pr_rebased"] == ["queue"]
        await rig.monitor.tick()  # the rebased head's checks are running
        assert second.status is TaskStatus.PR_OPEN
        rig.forge.green("sha2-rebased")
        await rig.monitor.tick()
        assert second.status is TaskStatus.MERGED
        assert [c for c in rig.forge.changes if c[0] == "merge"] == [
            ("merge", 101, "sha1"),
            ("merge", 102, "sha2-rebased"),
        ]

    async def test_an_up_to_date_pr_being_checked_holds_the_queue(self, rig: Rig) -> None:
        """While a PR that contains the base is still being checked, no PR behind the base is rebased."""
        older = rig.open_pr(1)
        rig.branches.behind.add(101)
        rig.open_pr(2, checks="pending")  # up to date, checks running: it will merge first

        await rig.monitor.tick()

        assert rig.branches.rebased == [] and older.status is TaskStatus.PR_OPEN
        rig.forge.green("sha2")
        await rig.monitor.tick()
        assert rig.branches.rebased == [(older.id, "sha1")], "the newer merged, then the older was rebased onto it"

    async def test_on_the_local_forge_checks_of_the_merge_result_need_no_rebase(self, make_rig: MakeRig) -> None:
        """Local forge: checks already test the merge result, so the next PR merges after fresh checks, unrebased."""
        rig = make_rig(checks_merge_result=True)
        first, second = rig.open_pr(1), rig.open_pr(2)
        rig.branches.behind.update({101, 102})

        await rig.monitor.tick()
        assert (first.status, second.status) == (TaskStatus.MERGED, TaskStatus.PR_OPEN)
        await rig.monitor.tick()
        assert second.status is TaskStatus.MERGED and rig.branches.rebased == []

    async def test_prs_waiting_behind_the_head_are_not_read_one_by_one(self, make_rig: MakeRig) -> None:
        """Five green PRs: after the first pass, a pass reads only the queue's head by itself (the others come
        from one listing of the open PRs), so draining N PRs costs O(N) reads, not O(N²)."""
        rig = make_rig(checks_merge_result=True)
        tasks = [rig.open_pr(n) for n in range(1, 6)]
        await rig.monitor.tick()  # every PR checked once, the first merged
        rig.forge.read.clear()
        waited = rig.monitor.waited

        await rig.monitor.tick()

        assert [t.status for t in tasks[:2]] == [TaskStatus.MERGED] * 2
        assert rig.forge.read == [102], "only the head was read by itself"
        assert rig.monitor.waited == waited + 3


# ---------------------------------------------------------------------------------------------- approvals


class TestApprovals:
    async def test_dispatcher_only_never_merges_on_its_own(self, make_rig: MakeRig) -> None:
        """dispatcher_only: the green PR is labelled agentos:review and announced once, and waits for approval."""
        rig = make_rig(repo={"automation_mode": "dispatcher_only"})
        task = rig.open_pr(1)

        for _ in range(3):
            await rig.monitor.tick()

        assert task.status is TaskStatus.PR_OPEN and not [c for c in rig.forge.changes if c[0] == "merge"]
        assert REVIEW_LABEL in rig.forge.prs[101].labels
        [(severity, _, text, actions)] = rig.notes.sent
        assert severity == 1 and text == f"PR {REPO}#101 is green and waits for your approval: Task 1"
        assert [(a.kind, a.label) for a in actions] == [("approve", "Approve"), ("reject", "Reject")]
        assert await rig.monitor.approve(REPO, 101, True) == {"pr": f"{REPO}#101", "result": "merged"}
        assert task.status is TaskStatus.MERGED and task.approved_at == NOW

    async def test_protected_path_is_blocked_with_a_reason_until_approved(self, rig: Rig) -> None:
        """A PR touching .github/workflows/ is high risk: labelled and explained, never merged, until approved."""
        task = rig.open_pr(1)
        rig.branches.diffs[101] = PRDiff((FileChange(".github/workflows/ci.yml", 2, 0),))

        await rig.monitor.tick()
        await rig.quiet_tick()

        assert task.status is TaskStatus.PR_OPEN
        assert {"risk:high", REVIEW_LABEL} <= set(rig.forge.prs[101].labels)
        [comment] = rig.forge.prs[101].comments
        assert "risk **high**" in comment.body and "`.github/workflows/ci.yml`" in comment.body
        assert f"agentos ctl approve {REPO}#101" in comment.body
        [(_, _, text, _)] = rig.notes.sent
        assert "high risk" in text and ".github/workflows/ci.yml" in text
        result = await rig.monitor.approve(REPO, 101, True)
        assert result["result"] == "merged" and task.status is TaskStatus.MERGED

    async def test_approval_before_green_merges_when_green(self, rig: Rig) -> None:
        """An approval given while checks run is kept; the PR merges on the first green pass."""
        task = rig.open_pr(1, checks="pending")
        rig.branches.diffs[101] = PRDiff((FileChange("README.md", 3000, 0),))
        result = await rig.monitor.approve(REPO, 101, True)
        assert result == {"pr": f"{REPO}#101", "result": "approved", "status": "pr_open"}
        rig.forge.green("sha1")
        await rig.monitor.tick()
        assert task.status is TaskStatus.MERGED

    async def test_a_follow_up_attempt_needs_a_new_approval(self, rig: Rig) -> None:
        """Red CI after an approval sends the PR back and drops the approval: the new change is new."""
        task = rig.open_pr(1, checks="red", approved_at=NOW)
        rig.forge.prs[101].labels.append(REVIEW_LABEL)
        await rig.monitor.tick()
        assert task.status is TaskStatus.RETRYING and task.approved_at is None
        assert REVIEW_LABEL not in rig.forge.prs[101].labels

    async def test_reject_closes_and_takes_the_issue_out_of_the_ready_set(self, rig: Rig) -> None:
        """Reject: PR closed with a comment, task cancelled, ready label removed (no re-dispatch)."""
        task = rig.open_pr(1)
        assert await rig.monitor.approve(REPO, 101, False) == {"pr": f"{REPO}#101", "result": "rejected"}
        assert task.status is TaskStatus.CANCELLED and rig.forge.prs[101].state == "closed"
        assert READY_LABEL not in rig.forge.issue_labels[1]
        with pytest.raises(ControlError, match="not open for review"):
            await rig.monitor.approve(REPO, 101, True)
        with pytest.raises(ControlError, match="no agentos task owns PR"):
            await rig.monitor.approve(REPO, 999, True)


class TestStricterVerifier:
    """repos[].verifier: a stub, a skip marker or a TODO on an added line holds the PR; an approval overrides."""

    STUB = PRDiff(
        (FileChange("calc.py", 2, 0),),
        (("calc.py", "def add(a, b):"), ("calc.py", "    raise NotImplementedError")),
        (7, 8),
    )

    async def test_a_finding_holds_the_pr_with_one_comment_per_head(self, rig: Rig) -> None:
        """Held: risk:high, the review label, one comment naming the finding and its line; a new head, a new one."""
        task = rig.open_pr(1)
        rig.branches.diffs[101] = self.STUB

        await rig.monitor.tick()
        await rig.quiet_tick()

        assert task.status is TaskStatus.PR_OPEN and {"risk:high", REVIEW_LABEL} <= set(rig.forge.prs[101].labels)
        [comment] = rig.forge.prs[101].comments
        assert "`stub` at `calc.py:8`" in comment.body and "NotImplementedError" in comment.body
        [(_, _, text, _)] = rig.notes.sent
        assert "stub calc.py:8" in text
        rig.forge.prs[101].head_sha = "sha1b"  # a new head (a push of the same change): its own comment
        rig.forge.green("sha1b")
        await rig.monitor.tick()
        await rig.monitor.tick()
        assert len(rig.forge.prs[101].comments) == 2 and task.status is TaskStatus.PR_OPEN

    async def test_approve_overrides_and_is_audited(self, rig: Rig) -> None:
        """`ctl approve` merges the held PR; pr_approved says override, the findings and who approved it."""
        task = rig.open_pr(1)
        rig.branches.diffs[101] = self.STUB
        await rig.monitor.tick()

        with caller.calling("ctl"):
            assert (await rig.monitor.approve(REPO, 101, True))["result"] == "merged"

        assert task.status is TaskStatus.MERGED
        [approved] = [e for e in rig.events if e.type == "pr_approved"]
        assert approved.data["override"] is True and approved.data["by"] == "ctl"
        [finding] = approved.data["findings"]
        assert (finding["kind"], finding["file"], finding["line"]) == ("stub", "calc.py", 8)

    async def test_an_approval_before_any_pass_still_names_the_findings(self, rig: Rig) -> None:
        """Approved before this daemon verified the PR (just restarted): the findings are read from the diff."""
        rig.open_pr(1)
        rig.branches.diffs[101] = self.STUB
        assert (await rig.monitor.approve(REPO, 101, True))["result"] == "merged"
        [approved] = [e for e in rig.events if e.type == "pr_approved"]
        assert approved.data["override"] is True and approved.data["by"] == "operator"
        assert [f["kind"] for f in approved.data["findings"]] == ["stub"]

    async def test_approval_of_a_clean_pr_is_no_override(self, make_rig: MakeRig) -> None:
        """dispatcher_only with nothing found: the approval is journalled without override."""
        rig = make_rig(repo={"automation_mode": "dispatcher_only"})
        rig.open_pr(1)
        await rig.monitor.tick()
        with caller.calling("telegram:42"):
            await rig.monitor.approve(REPO, 101, True)
        [approved] = [e for e in rig.events if e.type == "pr_approved"]
        assert approved.data == {"pr": 101, "by": "telegram:42"}

    async def test_disabled_verifier_merges(self, make_rig: MakeRig) -> None:
        rig = make_rig(repo={"verifier": {"enabled": False}})
        task = rig.open_pr(1)
        rig.branches.diffs[101] = self.STUB
        await rig.monitor.tick()
        assert task.status is TaskStatus.MERGED


class TestLlmJudge:
    """repos[].llm_judge: a real subprocess (the fake one-shot CLI) reviews green PRs and may only block."""

    def judged_rig(self, make_rig: MakeRig, tmp_path: Path, answer: str) -> tuple[Rig, Path]:
        (tmp_path / "answer.txt").write_text(answer)
        log = tmp_path / "judge-prompts.log"
        argv = [sys.executable, str(FAKE_LLM), "{prompt_file}", str(tmp_path / "answer.txt"), str(log)]
        rig = make_rig(agents={"judge": {"kind": "command", "argv": argv}}, repo={"llm_judge": "judge"})
        return rig, log

    async def test_a_block_verdict_makes_the_pr_wait_with_the_reasons(self, make_rig: MakeRig, tmp_path: Path) -> None:
        """The judge says block: high risk, its reasons in the comment, no merge; asked once per head."""
        answer = json.dumps({"verdict": "block", "reasons": [f"it deletes the tests, token {TOKEN}"]})
        rig, log = self.judged_rig(make_rig, tmp_path, answer)
        task = rig.open_pr(1)
        rig.branches.diffs[101] = PRDiff((FileChange("calc.py", 3, 0),), (("calc.py", "def add(a, b): return a + b"),))

        await rig.monitor.tick()
        await rig.quiet_tick()

        assert task.status is TaskStatus.PR_OPEN and {"risk:high", REVIEW_LABEL} <= set(rig.forge.prs[101].labels)
        [comment] = rig.forge.prs[101].comments
        assert "`llm_judge`: the LLM judge (judge) blocks it: it deletes the tests" in comment.body
        assert TOKEN not in comment.body
        prompts = log.read_text().split("\n=====\n")[:-1]
        assert len(prompts) == 1 and "calc.py: def add(a, b): return a + b" in prompts[0] and "Task 1" in prompts[0]
        assert (await rig.monitor.approve(REPO, 101, True))["result"] == "merged"

    async def test_a_criterion_judged_unmet_holds_the_pr_with_that_criterion(
        self, make_rig: MakeRig, tmp_path: Path
    ) -> None:
        """The issue's criteria are numbered in the prompt; the judge says ok overall but criterion 2 unmet: the
        PR is held (high risk, review label) and its comment names that criterion and the judge's reason."""
        answer = {
            "verdict": "ok",
            "reasons": [],
            "criteria": [
                {"criterion": 1, "met": True, "reason": "adds it"},
                {"criterion": 2, "met": False, "reason": "no negative numbers are handled"},
            ],
        }
        rig, log = self.judged_rig(make_rig, tmp_path, json.dumps(answer))
        criteria = ["add(a, b) returns the sum", "negative numbers work too"]
        task = rig.open_pr(1, success_criteria=criteria)

        await rig.monitor.tick()

        assert task.status is TaskStatus.PR_OPEN and {"risk:high", REVIEW_LABEL} <= set(rig.forge.prs[101].labels)
        [comment] = rig.forge.prs[101].comments
        assert (
            "`llm_judge`: the LLM judge (judge) finds criterion 2 unmet: “negative numbers work too”: "
            "no negative numbers are handled" in comment.body
        )
        assert "criterion 1" not in comment.body
        [prompt] = log.read_text().split("\n=====\n")[:-1]
        assert "Acceptance criteria of the issue:\n1. add(a, b) returns the sum\n2. negative numbers work too" in prompt
        assert '"criteria": [{"criterion": 1, "met": true | false' in prompt

    async def test_every_criterion_met_does_not_hold_the_pr(self, make_rig: MakeRig, tmp_path: Path) -> None:
        """A clean per-criterion verdict approves nothing and blocks nothing: the green PR merges."""
        answer = {"verdict": "ok", "criteria": [{"criterion": 1, "met": True}, {"criterion": 2, "met": True}]}
        rig, _ = self.judged_rig(make_rig, tmp_path, json.dumps(answer))
        task = rig.open_pr(1, success_criteria=["it adds", "it subtracts"])
        await rig.monitor.tick()
        assert task.status is TaskStatus.MERGED and rig.forge.prs[101].comments == []

    @pytest.mark.parametrize(
        "answer",
        [
            pytest.param('{"verdict": "ok", "reasons": []}', id="ok"),
            pytest.param('{"verdict": "maybe"}', id="invalid-verdict"),
            pytest.param("I cannot decide.", id="no-json"),
            pytest.param("exit 3", id="crash"),
        ],
    )
    async def test_ok_or_a_failed_judge_does_not_block(self, make_rig: MakeRig, tmp_path: Path, answer: str) -> None:
        """ok, a verdict that does not validate, prose or a crash: the green PR merges (fail-open)."""
        rig, _ = self.judged_rig(make_rig, tmp_path, answer)
        task = rig.open_pr(1)
        await rig.monitor.tick()
        assert task.status is TaskStatus.MERGED
        assert rig.forge.prs[101].comments == []


# ---------------------------------------------------------------------------------------------- wedged


class TestWedged:
    async def test_wedged_pr_is_closed_and_respawned_once(self, rig: Rig) -> None:
        """Pending past wedged_after_hours: comment, close, branch deleted, task cancelled, a new generation queued."""
        task = rig.open_pr(1, checks="pending")
        await rig.monitor.tick()
        rig.clock.advance(hours=3, minutes=59)
        await rig.monitor.tick()
        assert task.status is TaskStatus.PR_OPEN

        rig.clock.advance(minutes=2)
        await rig.monitor.tick()

        assert task.status is TaskStatus.CANCELLED and task.last_blocker == "wedged"
        pr = rig.forge.prs[101]
        assert pr.state == "closed"
        [comment] = pr.comments
        assert "blocked on checks that never finished for 4.0 h" in comment.body
        assert "restarts from the current `main`" in comment.body
        assert rig.branches.deleted == [(task.branch, "sha1")]
        fresh = rig.graph.get(f"{REPO}#1.2")
        assert (fresh.status, fresh.generation, fresh.parent, fresh.branch, fresh.pr) == (
            TaskStatus.QUEUED,
            2,
            task.id,
            None,
            None,
        )
        assert fresh.attempts == [] and fresh.created_at == task.created_at
        wedged = [e for e in rig.events if e.type == "pr_wedged"]
        assert [e.data["action"] for e in wedged] == ["respawned"]
        await rig.quiet_tick()

    async def test_a_second_wedge_escalates_instead_of_looping(self, rig: Rig) -> None:
        """The re-spawned generation wedged too: escalate, leave its PR open, make no third generation."""
        rig.open_pr(1, checks="pending", status=TaskStatus.CANCELLED, last_blocker="wedged")
        second = rig.open_pr(2, checks="pending", issue=1, generation=2)
        await rig.monitor.tick()
        rig.clock.advance(hours=5)

        await rig.monitor.tick()

        assert second.status is TaskStatus.BLOCKED and rig.forge.prs[102].state == "open"
        assert "stops here" in rig.forge.prs[102].comments[0].body
        assert [e.data["action"] for e in rig.events if e.type == "pr_wedged"] == ["escalated"]
        assert len(rig.graph.for_issue(REPO, 1)) == 2

    async def test_red_stays_the_same_blocker_through_fix_attempts(self, rig: Rig) -> None:
        """The wedge clock runs from the first red, through the agent's fix and its re-running checks."""
        task = rig.open_pr(1, checks="red")
        await rig.monitor.tick()
        assert task.status is TaskStatus.RETRYING
        since = task.blocked_since
        # the agent pushes a "fix" (back in pr_open), checks run, then fail the same way
        task.status = TaskStatus.PR_OPEN
        rig.forge.prs[101].head_sha = "sha1-fix"
        rig.forge.pending("sha1-fix")
        rig.clock.advance(hours=2)
        await rig.monitor.tick()
        assert task.blocked_since == since, "re-running checks are no new blocker"
        rig.forge.red("sha1-fix")
        rig.clock.advance(hours=3)

        await rig.monitor.tick()

        assert task.status is TaskStatus.CANCELLED and rig.forge.prs[101].state == "closed"
        assert "the same failing checks" in rig.forge.prs[101].comments[0].body

    async def test_checks_that_hang_after_a_fix_wedge_on_the_old_blocker(self, rig: Rig) -> None:
        """Red, sent back, then the fix's checks never finish: wedged on the red signature, said so in the comment."""
        task = rig.open_pr(1, checks="red")
        await rig.monitor.tick()
        task.status = TaskStatus.PR_OPEN  # the agent's fix is pushed; its checks hang
        rig.forge.prs[101].head_sha = "sha1-fix"
        rig.forge.pending("sha1-fix")
        rig.clock.advance(hours=4, seconds=1)

        await rig.monitor.tick()

        assert task.status is TaskStatus.CANCELLED
        assert "blocked on the same failing checks" in rig.forge.prs[101].comments[0].body

    async def test_a_respawn_cut_short_by_a_crash_is_finished(self, rig: Rig) -> None:
        """PR closed with the wedge comment but the journal missed it: the next pass finishes the re-spawn."""
        task = rig.open_pr(1, checks="pending")
        await rig.forge.comment(REPO, 101, "wedged", key=f"wedged:{task.id}")
        rig.forge.prs[101].state = "closed"

        await rig.monitor.tick()

        assert task.status is TaskStatus.CANCELLED
        assert rig.graph.get(f"{REPO}#1.2").status is TaskStatus.QUEUED

    async def test_zero_hours_wedges_on_the_second_sighting(self, make_rig: MakeRig) -> None:
        """wedged_after_hours: 0 wedges a PR the second time the same blocker is seen (no waiting in tests)."""
        rig = make_rig(routing={"wedged_after_hours": 0})
        task = rig.open_pr(1, checks="pending")
        await rig.monitor.tick()
        assert task.status is TaskStatus.PR_OPEN
        rig.clock.advance(seconds=1)
        await rig.monitor.tick()
        assert task.status is TaskStatus.CANCELLED


class TestIdempotence:
    async def test_a_second_pass_over_every_waiting_state_changes_nothing(self, make_rig: MakeRig) -> None:
        """Pending, approval-waiting, high-risk and merged PRs: the second pass writes nothing anywhere."""
        rig = make_rig(repo={"automation_mode": "dispatcher_only"})
        rig.open_pr(1, checks="pending")
        rig.open_pr(2)
        rig.open_pr(3)
        rig.branches.diffs[103] = PRDiff((FileChange(".env", 1, 0),))
        merged = rig.open_pr(4)
        rig.forge.prs[104].state = "merged"
        await rig.monitor.tick()
        assert merged.status is TaskStatus.MERGED
        await rig.quiet_tick()
        assert repr(rig.monitor) == "<PRMonitor merged=1 rebased=0 sent_back=0 wedged=0>"
