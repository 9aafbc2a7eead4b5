"""The git work of the PR monitor on a repo's PR branches, behind one narrow seam (:class:`Branches`).

:class:`WorkspaceBranches` does it in the daemon's clone of the repo (the one the executor's worktrees
share); the monitor's unit tests substitute a fake. Pushes are lease pushes, never a bare force.
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from agentos import logging as alog
from agentos import memory
from agentos.forge.base import PullRequest
from agentos.graph import Task
from agentos.jobs.verify import PRDiff, parse_added, parse_numstat
from agentos.ports import Settings, Workspaces
from agentos.workspace import PushRejected, Workspace, WorkspaceError

log = alog.get_logger("agentos.pr_monitor")

MEMORY_FILE = memory.FILE  # every task appends to it: a conflict there alone is resolved as a union


@dataclass(frozen=True)
class RebaseOutcome:
    status: Literal["pushed", "noop", "conflict", "moved"]
    head: str = ""
    conflicts: tuple[str, ...] = ()
    patch: str | None = None


class Branches(Protocol):
    """The git work the monitor needs on a repo's PR branches (tests substitute a fake)."""

    async def sync(self, repo: str) -> None:
        """Fetch the repo's branches (once per pass, before the other calls)."""
        ...

    async def up_to_date(self, repo: str, pr: PullRequest) -> bool:
        """Does the PR's head contain the current base?"""
        ...

    async def diff(self, repo: str, pr: PullRequest) -> PRDiff: ...

    async def rebase(self, task: Task, head_sha: str, patch: Path) -> RebaseOutcome:
        """Rebase the task's branch (expected at ``head_sha``) onto the base and push it with a lease.

        On a conflict the branch's change is saved to ``patch`` and the worktree reset to the base."""
        ...

    async def delete(self, repo: str, branch: str, sha: str) -> None:
        """Delete the remote branch if it is still at ``sha``, and its worktree."""
        ...

    async def remove_worktree(self, repo: str, branch: str) -> None:
        """Remove the branch's worktree and local branch (the task is done with them)."""
        ...


class WorkspaceBranches:
    """:class:`Branches` over the daemon's clone of each repo, the one the executor's worktrees share."""

    def __init__(self, settings: Settings, workspaces: Workspaces) -> None:
        self.settings = settings
        self.workspaces = workspaces

    def _ws(self, repo: str) -> Workspace:
        return self.workspaces.workspace(self.settings.repo(repo))

    async def sync(self, repo: str) -> None:
        await self._ws(repo).fetch()

    async def _head(self, ws: Workspace, pr: PullRequest) -> str | None:
        rev = await ws.rev(pr.head_sha) if pr.head_sha else None
        return rev or await ws.rev(f"refs/remotes/origin/{pr.head}")

    async def up_to_date(self, repo: str, pr: PullRequest) -> bool:
        ws = self._ws(repo)
        base, head = await ws.rev(f"refs/remotes/origin/{pr.base}"), await self._head(ws, pr)
        return base is not None and head is not None and await ws.is_ancestor(base, head)

    async def diff(self, repo: str, pr: PullRequest) -> PRDiff:
        ws = self._ws(repo)
        head = await self._head(ws, pr)
        if head is None:
            raise WorkspaceError(f"{repo}#{pr.number}: the head {pr.head} is not in the clone")
        spec = f"refs/remotes/origin/{pr.base}...{head}"
        quiet = ("-c", "core.quotePath=false", "diff", "--no-color", "--no-ext-diff", "--no-renames")
        stat = await ws.git(*quiet, "--numstat", "-z", spec)
        text = await ws.git(*quiet, "-U0", spec)
        added, numbers = parse_added(text.out)
        return PRDiff(parse_numstat(stat.out), added, numbers)

    async def rebase(self, task: Task, head_sha: str, patch: Path) -> RebaseOutcome:
        ws = self._ws(task.repo)
        assert task.branch is not None
        worktree = await ws.prepare(task.branch)
        remote = await ws.rev(f"refs/remotes/origin/{task.branch}")
        if remote is None or (head_sha and remote != head_sha):
            return RebaseOutcome("moved", remote or "")
        await ws.reset(worktree, to=remote)  # the PR's head is the truth, whatever the worktree held
        result = await ws.rebase_onto_base(worktree)
        ok, head, conflicts = result.ok, result.head, list(result.conflicts)
        if not ok and conflicts == [MEMORY_FILE]:
            conflicts, head = await _rebase_with_memory_union(ws, worktree)
            ok = not conflicts
        if ok:
            if head == remote:
                return RebaseOutcome("noop", remote)
            try:
                await ws.push(worktree, task.branch, expected=remote)
            except PushRejected:
                return RebaseOutcome("moved", remote)
            return RebaseOutcome("pushed", head)
        if not conflicts:  # nothing of its own on top of the base (or a dirty tree): nothing to push
            log.info("rebase_skipped", branch=task.branch, detail=result.detail)
            return RebaseOutcome("noop", remote)
        base = f"refs/remotes/origin/{ws.base}"
        diff = await ws.git("diff", "--binary", "--no-color", f"{base}...HEAD", cwd=worktree)
        await asyncio.to_thread(_write, patch, diff.out)
        await ws.reset(worktree, to=base)
        return RebaseOutcome("conflict", remote, tuple(conflicts), str(patch))

    async def delete(self, repo: str, branch: str, sha: str) -> None:
        ws = self._ws(repo)
        async with ws.lock:
            lease = f"--force-with-lease=refs/heads/{branch}:{sha}"
            res = await ws.git("push", "--porcelain", lease, "origin", f":refs/heads/{branch}", check=False)
        if not res.ok and "does not exist" not in res.err + res.out:
            log.warning("branch_not_deleted", branch=branch, detail=(res.err or res.out).strip()[-200:])
        await ws.remove(branch)

    async def remove_worktree(self, repo: str, branch: str) -> None:
        await self._ws(repo).remove(branch)


async def _unmerged(ws: Workspace, worktree: Path) -> list[str]:
    res = await ws.git("diff", "--name-only", "--diff-filter=U", "-z", cwd=worktree, check=False)
    return sorted({name for name in res.out.split("\0") if name})


async def _rebase_with_memory_union(ws: Workspace, worktree: Path) -> tuple[list[str], str]:
    """Rebase onto the base again, resolving ``CODEBASE.md`` as a union (both sides' entries, ours last).

    Every task appends an entry to ``CODEBASE.md``, so two PRs cut from one base always conflict there and
    nowhere else; that conflict must not send work back to an agent. Any other conflict aborts the rebase:
    ``(conflicting files, "")``; success: ``([], new head)``.
    """
    base = f"refs/remotes/origin/{ws.base}"
    quiet = {"GIT_EDITOR": "true"}
    res = await ws.git("rebase", "--no-autostash", base, cwd=worktree, check=False, timeout=600, env=quiet)
    for _ in range(1000):  # one round per replayed commit that conflicts
        if res.ok:
            return [], await ws.head_sha(worktree)
        conflicts = await _unmerged(ws, worktree)
        if conflicts != [MEMORY_FILE]:
            await ws.git("rebase", "--abort", cwd=worktree, check=False)
            return conflicts, ""
        stages = [await ws.git("show", f":{n}:{MEMORY_FILE}", cwd=worktree, check=False) for n in (2, 1, 3)]
        with tempfile.TemporaryDirectory() as tmp:
            names = []
            for name, stage in zip(("ours", "base", "theirs"), stages, strict=True):
                (Path(tmp) / name).write_text(stage.out if stage.ok else "", encoding="utf-8")
                names.append(str(Path(tmp) / name))
            merged = await ws.git("merge-file", "-p", "--union", *names, cwd=worktree, check=False)
        (worktree / MEMORY_FILE).write_text(merged.out, encoding="utf-8")
        await ws.git("add", "--", MEMORY_FILE, cwd=worktree)
        res = await ws.git("rebase", "--continue", cwd=worktree, check=False, timeout=600, env=quiet)
    await ws.git("rebase", "--abort", cwd=worktree, check=False)
    return [MEMORY_FILE], ""


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_text(text, encoding="utf-8")
