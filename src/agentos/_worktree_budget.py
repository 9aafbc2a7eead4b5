"""The worktree budget of a repo (``max_worktrees``, ``max_worktree_disk_mb``): :class:`WorktreeBudget`, over the
public face of a :class:`~agentos.workspace.Workspace` (which has one and delegates to it).

:meth:`WorktreeBudget.has_room` says whether a new worktree fits, :meth:`WorktreeBudget.enforce` removes the
oldest worktrees of finished tasks (their uncommitted work saved as a patch first) until one does.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import structlog

from agentos.config import RepoConfig
from agentos.gitutil import WorkspaceError

__all__ = ["BudgetReport", "Finished", "TaskWorktrees", "WorktreeBudget"]

log = structlog.get_logger("agentos.workspace")


@dataclass(frozen=True)
class Finished:
    """A task worktree the budget may remove: its task ended (merged, escalated, cancelled, failed)."""

    ended_at: float
    """When the task ended (epoch seconds): the oldest goes first."""
    patch: Path
    """Where uncommitted work in the worktree is saved before it goes."""
    keep_branch: bool = True
    """Keep the local branch (an unmerged task's commits, for a retry)."""


@dataclass(frozen=True)
class BudgetReport:
    """A repo's task worktrees after :meth:`WorktreeBudget.enforce`."""

    count: int
    size: int
    removed: tuple[str, ...] = ()
    """Branches whose worktrees were removed."""
    full: str | None = None
    """Why a new worktree does not fit even after the cleanup; None when it fits."""


def _du(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


class TaskWorktrees(Protocol):
    """What the budget needs of a workspace: where its task worktrees are, and how one is saved and removed."""

    @property
    def repo(self) -> RepoConfig: ...

    @property
    def worktrees_dir(self) -> Path: ...

    def worktree_for(self, branch: str) -> Path: ...

    async def save_patch(self, worktree: Path, path: Path, *, since: str | None = None) -> bool: ...

    async def remove(self, branch: str, *, keep_branch: bool = False) -> None: ...


class WorktreeBudget:
    """The worktree budget of one repository's workspace (whose task worktrees it counts and removes)."""

    def __init__(self, worktrees: TaskWorktrees) -> None:
        self.worktrees = worktrees
        self.measured_size: int | None = None
        """Bytes under the task worktrees at the last :meth:`enforce` (walking the trees is too slow for every
        dispatch)."""

    @property
    def repo(self) -> RepoConfig:
        return self.worktrees.repo

    @property
    def budgeted(self) -> bool:
        return self.repo.max_worktrees is not None or self.repo.max_worktree_disk_mb is not None

    def _task_dirs(self) -> list[Path]:
        if not self.worktrees.worktrees_dir.is_dir():
            return []
        return sorted(p for p in self.worktrees.worktrees_dir.iterdir() if p.name != ".scratch" and p.is_dir())

    def _over(self, count: int, size: int | None, *, adding: int = 1) -> str | None:
        """Why ``adding`` more worktrees do not fit beside ``count`` using ``size`` bytes; None when they do."""
        most, mb = self.repo.max_worktrees, self.repo.max_worktree_disk_mb
        if most is not None and count + adding > most:
            return f"{count} worktrees, max_worktrees is {most}"
        if mb is not None and size is not None and size >= mb * 2**20:
            return f"worktrees use {size / 2**20:.0f} MB, max_worktree_disk_mb is {mb}"
        return None

    def has_room(self, branch: str | None, *, starting: int = 0) -> bool:
        """Whether a task on ``branch`` may start: its worktree exists (it is reused) or a new one fits the
        budget beside ``starting`` others on their way. The disk figure is the one the last
        :meth:`enforce` measured (walking the trees is too slow for every dispatch)."""
        if not self.budgeted or (branch is not None and self.worktrees.worktree_for(branch).is_dir()):
            return True
        return self._over(len(self._task_dirs()), self.measured_size, adding=starting + 1) is None

    async def enforce(self, finished: Mapping[str, Finished]) -> BudgetReport:
        """Remove the oldest worktrees of ``finished`` (branch → how) until a new worktree fits the budget.

        Only worktrees named in ``finished`` are candidates, never a live task's. Uncommitted and untracked
        work is saved to ``Finished.patch`` first; a worktree whose work cannot be saved is left alone.
        """
        dirs = await asyncio.to_thread(self._task_dirs)
        if not self.budgeted:
            return BudgetReport(len(dirs), 0)
        sizes = {path: await asyncio.to_thread(_du, path) for path in dirs}
        by_dir = {self.worktrees.worktree_for(branch): (branch, how) for branch, how in finished.items()}
        candidates = sorted((by_dir[p] for p in dirs if p in by_dir), key=lambda item: item[1].ended_at)
        count, size = len(dirs), sum(sizes.values())
        removed: list[str] = []
        for branch, how in candidates:
            if self._over(count, size) is None:
                break
            path = self.worktrees.worktree_for(branch)
            try:
                saved = await self.worktrees.save_patch(path, how.patch)
            except WorkspaceError as exc:  # unsaved work we cannot prove is safe: keep the worktree
                log.warning("worktree_budget_kept", repo=self.repo.name, branch=branch, error=str(exc))
                continue
            await self.worktrees.remove(branch, keep_branch=how.keep_branch)
            count, size = count - 1, size - sizes[path]
            removed.append(branch)
            log.info(
                "worktree_budget_removed",
                repo=self.repo.name,
                branch=branch,
                freed_bytes=sizes[path],
                patch=str(how.patch) if saved else None,
            )
        self.measured_size = size
        return BudgetReport(count, size, tuple(removed), self._over(count, size))

    async def disk_usage(self) -> int:
        """Bytes under this repo's worktrees dir (apparent sizes, symlinks not followed)."""
        if not self.worktrees.worktrees_dir.is_dir():
            return 0
        return await asyncio.to_thread(_du, self.worktrees.worktrees_dir)
