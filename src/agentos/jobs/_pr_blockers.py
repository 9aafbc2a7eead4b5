"""The PR monitor's blockers: what holds a PR (journalled when it changes), and a PR wedged on one for too long.

A PR blocked on one blocker signature (normalised failing-check names + error lines, a conflict, a merge refusal,
checks that never finish) for longer than ``routing.wedged_after_hours`` is closed with a comment, its branch
deleted, and the task re-spawned from the base as a new generation, once per issue; a second wedge escalates
instead and leaves the PR open for a human.
"""

from __future__ import annotations

from agentos import logging as alog
from agentos.forge.base import Forge, PullRequest
from agentos.graph import Task
from agentos.jobs._pr_git import Branches
from agentos.jobs._pr_policy import Blocker, BlockerKind, is_wedged, wedge_key, wedged_comment
from agentos.lifecycle import Lifecycle
from agentos.ports import Clock, Journal, Settings
from agentos.redact import redact

log = alog.get_logger("agentos.pr_monitor")

EARLIER_KINDS: dict[str, BlockerKind] = {"red": "red", "conflict": "conflict", "refused": "refused"}


class PRBlockers:
    """Notes and clears a PR's blocker; closes and re-spawns (or escalates) a PR wedged on one."""

    def __init__(
        self,
        *,
        settings: Settings,
        journal: Journal,
        clock: Clock,
        forge: Forge,
        lifecycle: Lifecycle,
        branches: Branches,
        counts: dict[str, int],
    ) -> None:
        self.settings = settings
        self.journal = journal
        self.clock = clock
        self.forge = forge
        self.lifecycle = lifecycle
        self.branches = branches
        self.counts = counts
        """The monitor's counters: ``wedged`` is counted here."""

    async def note(self, task: Task, pr: PullRequest, blocker: Blocker) -> bool:
        """Note the blocker (journalled when it changes); True when the PR was wedged on it and dealt with."""
        signature = blocker.signature
        now = self.clock()
        # Checks re-running after a fix or a rebase are no new blocker: the PR stays blocked on the old one
        # (its clock runs on) until it is seen green.
        rerun = blocker.kind == "pending" and bool(task.last_signature) and task.last_signature != signature
        if not rerun and (task.last_signature != signature or task.blocked_since is None):
            task.note_pr_blocker(signature, now)
            event = self.journal.event(
                "pr_blocked", task.id, pr=pr.number, kind=blocker.kind, signature=signature, sha=pr.head_sha
            )
            self.journal.commit([event], [task])
            log.info("pr_blocked", kind=blocker.kind, signature=signature)
            return False
        if not is_wedged(task.blocked_since, now, self.settings.config.routing.wedged_after_hours):
            return False
        earlier = EARLIER_KINDS.get((task.last_signature or "").split(":", 1)[0])
        if rerun and earlier is not None:  # still blocked on the earlier problem, whose checks re-run now
            blocker = Blocker(earlier, blocker.names)
        await self._wedged(task, pr, blocker)
        return True

    def clear(self, task: Task, pr: PullRequest) -> None:
        if not task.clear_pr_blocker():
            return
        self.journal.commit([self.journal.event("pr_unblocked", task.id, pr=pr.number, sha=pr.head_sha)], [task])

    async def _wedged(self, task: Task, pr: PullRequest, blocker: Blocker) -> None:
        """Close and re-spawn (the first time for this issue) or escalate (after a re-spawn wedged too)."""
        again = self.lifecycle.wedged_before(task)
        since = task.blocked_since or self.clock()
        hours = (self.clock() - since).total_seconds() / 3600
        body = wedged_comment(task, pr, blocker, hours, self.settings.repo(task.repo).base_branch, escalate=again)
        await self.forge.comment(task.repo, pr.number, redact(body), key=wedge_key(task))
        self.counts["wedged"] += 1
        log.warning("pr_wedged", signature=task.last_signature, hours=round(hours, 2), escalate=again)
        if again:
            await self.lifecycle.escalate_wedged(task, pr)
            return
        await self.forge.close_pr(task.repo, pr.number)
        await self.respawn(task, pr)

    async def respawn(self, task: Task, pr: PullRequest) -> None:
        """After the wedge comment and the close: delete the branch; lifecycle cancels and re-spawns the task."""
        if task.branch:
            await self.branches.delete(task.repo, task.branch, pr.head_sha)
        self.lifecycle.respawn(task, pr)
