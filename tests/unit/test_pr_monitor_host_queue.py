"""The PR monitor on a repo whose base requires the host's merge queue: the monitor's side of GitHub's queue.

The forge of :mod:`tests.unit.test_pr_monitor` with a scripted :class:`~agentos.forge.base.HostMergeQueue`: its
``merge_pr`` enqueues (``reason="queued"``) and the test says what the queue holds and why it dropped a PR.
"""

from __future__ import annotations

from pathlib import Path

from agentos import testing
from agentos.config import Config
from agentos.forge.base import CheckRun, Checks, MergeResult, QueueDrop, QueueEntry
from agentos.graph import TaskStatus
from tests.unit.test_pr_monitor import NOW, REPO, FakeBranches, FakeForge, Rig


class ScriptedQueue:
    """GitHub's queue as the test scripts it: the entries, and each PR's last drop."""

    def __init__(self) -> None:
        self.queued: list[QueueEntry] = []
        self.drops: dict[int, QueueDrop] = {}
        self.asked = 0

    async def required(self, repo: str, base: str) -> bool:
        return repo == REPO and base == "main"

    async def entries(self, repo: str, base: str) -> list[QueueEntry]:
        self.asked += 1
        return list(self.queued)

    async def last_drop(self, repo: str, number: int) -> QueueDrop | None:
        return self.drops.get(number)


class QueueForge(FakeForge):
    def __init__(self) -> None:
        super().__init__()
        self.queue = ScriptedQueue()

    @property
    def merge_queue(self) -> ScriptedQueue:  # type: ignore[override]
        return self.queue

    async def merge_pr(self, repo: str, number: int, *, sha: str, title: str, body: str) -> MergeResult:
        self.changes.append(("enqueue", number, sha))
        position = len(self.queue.queued) + 1
        self.queue.queued.append(QueueEntry(number=number, position=position, state="queued", head_sha=sha))
        return MergeResult(merged=False, reason="queued", sha=sha, message=f"position {position}")


def queue_rig(tmp_path: Path) -> tuple[Rig, QueueForge]:
    """The rig of :func:`tests.unit.test_pr_monitor.build_rig`, its forge merging through a scripted queue."""
    config = Config.model_validate(
        {
            "state_dir": str(tmp_path / "state"),
            "repos": [{"name": REPO, "path": str(tmp_path / "repo"), "test_command": "true"}],
            "agents": {"claude": {"kind": "claude"}},
            "routing": {"default": ["claude"]},
        }
    )
    forge = QueueForge()
    branches = FakeBranches(forge)
    return Rig(testing.build(config, now=NOW, forge=forge, branches=branches), forge, branches), forge


def drop(kind: str, reason: str, head: str, checks: Checks | None = None) -> QueueDrop:
    return QueueDrop(kind=kind, reason=reason, head_sha=head, at=NOW, checks=checks)  # type: ignore[arg-type]


class TestHostQueue:
    async def test_every_green_pr_is_enqueued_in_one_pass_and_none_is_rebased(self, tmp_path: Path) -> None:
        """Three green PRs, two behind main: all three enqueued oldest first, no rebase, no merge; the next pass
        reads no queued PR (no get_pr, no checks) and changes nothing."""
        rig, forge = queue_rig(tmp_path)
        tasks = [rig.open_pr(n) for n in (1, 2, 3)]
        rig.branches.behind = {102, 103}

        await rig.monitor.tick()

        assert [c for c in forge.changes if c[0] == "enqueue"] == [
            ("enqueue", 101, "sha1"),
            ("enqueue", 102, "sha2"),
            ("enqueue", 103, "sha3"),
        ]
        assert rig.branches.rebased == [] and all(t.status is TaskStatus.PR_OPEN for t in tasks)
        assert [e.data["pr"] for e in rig.events if e.type == "pr_enqueued"] == [101, 102, 103]
        forge.read.clear()
        await rig.quiet_tick()
        assert forge.read == [] and rig.monitor.host.passes == 3

    async def test_merged_by_the_queue_is_a_merge_with_the_branch_deleted(self, tmp_path: Path) -> None:
        rig, forge = queue_rig(tmp_path)
        task = rig.open_pr(1)
        await rig.monitor.tick()
        forge.queue.queued.clear()
        forge.prs[101].state = "merged"

        await rig.monitor.tick()

        assert task.status is TaskStatus.MERGED
        [merged] = [e for e in rig.events if e.type == "merged"]
        assert "reconciled" not in merged.data
        assert rig.branches.deleted == [("agentos/1-task", "sha1")]

    async def test_a_failing_group_on_the_current_head_goes_back_to_an_agent_once(self, tmp_path: Path) -> None:
        """Dropped for ``CI_FAILURE`` on its head: back to an agent with the group's failing check; a drop on an
        older head (the fix was pushed since) is ignored and the new head is enqueued."""
        rig, forge = queue_rig(tmp_path)
        task = rig.open_pr(1)
        run = CheckRun(name="merge-group", state="failure", summary="1 failed", log_tail="FAILED test_together")
        group = Checks(sha="group1", state="failure", runs=[run])
        forge.queue.drops[101] = drop("checks", "CI_FAILURE", "sha1", group)

        await rig.monitor.tick()

        assert task.status is TaskStatus.RETRYING and task.ci_fix_attempts == 1
        [sent] = [e for e in rig.events if e.type == "transition" and e.data.get("to") == "retrying"]
        assert sent.data["reason"] == "merge_group_failed"
        error = task.attempts[-1].error
        assert "merge queue dropped the PR (CI_FAILURE)" in error and "- merge-group: 1 failed" in error
        assert "FAILED test_together" in error
        assert not [c for c in forge.changes if c[0] == "enqueue"]

        fixed = rig.open_pr(2)
        forge.queue.drops[102] = drop("checks", "CI_FAILURE", "an-older-head")
        await rig.monitor.tick()
        assert fixed.status is TaskStatus.PR_OPEN and ("enqueue", 102, "sha2") in forge.changes

    async def test_a_pr_removed_by_a_person_is_a_refused_merge_not_enqueued_again(self, tmp_path: Path) -> None:
        rig, forge = queue_rig(tmp_path)
        task = rig.open_pr(1)
        forge.queue.drops[101] = drop("other", "MANUAL", "sha1")

        await rig.monitor.tick()

        assert [e.data["kind"] for e in rig.events if e.type == "pr_blocked"] == ["refused"]
        assert task.status is TaskStatus.PR_OPEN and not [c for c in forge.changes if c[0] == "enqueue"]
        await rig.quiet_tick()

    async def test_a_conflict_drop_waits_while_other_prs_are_queued(self, tmp_path: Path) -> None:
        rig, forge = queue_rig(tmp_path)
        rig.open_pr(1)
        forge.queue.queued.append(QueueEntry(number=999, position=1, state="awaiting_checks", head_sha="x"))
        forge.queue.drops[101] = drop("conflict", "MERGE_CONFLICT", "sha1")

        await rig.monitor.tick()
        assert not [c for c in forge.changes if c[0] == "enqueue"]

        forge.queue.queued.clear()  # the PR ahead merged
        await rig.monitor.tick()
        assert ("enqueue", 101, "sha1") in forge.changes

    async def test_an_approval_enqueues_at_once(self, tmp_path: Path) -> None:
        """``dispatcher_only``: the green PR waits for the operator; the approval enqueues it (``result: enqueued``)."""
        rig, forge = queue_rig(tmp_path)
        rig.core.config.repos[0].automation_mode = "dispatcher_only"
        rig.open_pr(1)
        await rig.monitor.tick()
        assert not [c for c in forge.changes if c[0] == "enqueue"]

        result = await rig.monitor.approve(REPO, 101, True)

        assert result == {"pr": f"{REPO}#101", "result": "enqueued"}
        assert [c for c in forge.changes if c[0] == "enqueue"] == [("enqueue", 101, "sha1")]
