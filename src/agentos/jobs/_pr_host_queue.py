"""The PR monitor's view of the host's own merge queue (GitHub's), for repos whose base branch requires it.

:class:`HostQueueView` asks the forge's :class:`~agentos.forge.base.HostMergeQueue` whether a repo merges through
it, reads its entries once per pass, logs a queued PR's place when it changes, and finds the drop that applies to a
PR's current head. What the monitor does with them is in :mod:`agentos.jobs.pr_monitor` (docs/pr-monitor.md §2a).
"""

from __future__ import annotations

from collections.abc import Collection

from agentos import logging as alog
from agentos.forge.base import Forge, PullRequest, QueueDrop, QueueEntry
from agentos.graph import Task
from agentos.ports import Settings

log = alog.get_logger("agentos.pr_monitor")


class HostQueueView:
    def __init__(self, *, settings: Settings, forge: Forge) -> None:
        self.settings = settings
        self.forge = forge
        self.passes = 0  # PR passes skipped because the PR sits in the host's queue
        self._seen: dict[str, tuple[str, int, str]] = {}  # task id → its last logged place in the queue

    def __repr__(self) -> str:
        return f"<HostQueueView passes={self.passes} seen={len(self._seen)}>"

    def forget(self, live: Collection[str]) -> None:
        self._seen = {k: v for k, v in self._seen.items() if k in live}

    async def entries(self, repo: str) -> dict[int, QueueEntry] | None:
        """The host's queue of the repo's base (PR number → entry), or None when agentos's own queue merges."""
        queue = self.forge.merge_queue
        base = self.settings.repo(repo).base_branch
        if queue is None or not await queue.required(repo, base):
            return None
        return {entry.number: entry for entry in await queue.entries(repo, base)}

    def queued(self, task: Task, entry: QueueEntry) -> None:
        """The PR sits in the queue: nothing to do; its state, position and group commit are logged as they change."""
        self.passes += 1
        seen = (entry.state, entry.position, entry.group_sha)
        if self._seen.get(task.id) != seen:
            self._seen[task.id] = seen
            group = entry.group_sha[:12]
            log.info("pr_in_merge_queue", pr=entry.number, state=entry.state, position=entry.position, group=group)

    async def drop_on_head(self, task: Task, pr: PullRequest) -> QueueDrop | None:
        """The queue's last drop of the PR if it dropped its current head (an older head's drop is history)."""
        queue = self.forge.merge_queue
        if queue is None:
            return None
        drop = await queue.last_drop(task.repo, pr.number)
        return drop if drop is not None and drop.head_sha == pr.head_sha else None
