"""Git worktrees for attempts: one clone per repo kept by agentos, one worktree per task branch.

Layout under the state dir::

    clones/<repo>/                       bare clone, origin = the repo's remote (local forge: its path)
    worktrees/<repo>/<branch-slug>/      the worktree of one task branch, reused across attempts
    worktrees/<repo>/.scratch/<id>/      short-lived detached worktrees (checks, merges)

:class:`Workspace` is a :class:`~agentos.clone.Clone` (git in the shared clone, its lock, fetches, scratch
worktrees) with the task worktrees on top; operations inside one worktree (commit, diff, reset) take no lock.
Hooks and tests run sandboxed, as :mod:`agentos._worktree_commands` says. Two collaborators work
over its public face, reached under the names the executor and jobs use: :attr:`Workspace.attempt_guard`
(:meth:`~Workspace.guard`, :meth:`~Workspace.check_guard`, :meth:`~Workspace.find_secrets`) and
:attr:`Workspace.budget` (``max_worktrees``, ``max_worktree_disk_mb``: :meth:`~Workspace.has_room`,
:meth:`~Workspace.enforce_budget`).

A worktree is *ready* once it was created and its ``after_create`` hook passed; the mark lives in the
worktree's private git dir. :meth:`Workspace.prepare` recreates a worktree that is not ready (a crash
or a failed hook half-way), so it is idempotent.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

import structlog

from agentos._workspace_guard import AttemptGuard, Breach, Guard
from agentos._worktree import (
    LEASE_MARK,
    READY_MARK,
    DiffStat,
    HookFailed,
    HookName,
    HookResult,
    PushRejected,
    RebaseResult,
    admin_dir,
    branch_name,
    dir_name,
    loose_head,
    push_rejected,
    read_mark,
    rmtree,
    write_mark,
)
from agentos._worktree_budget import BudgetReport, Finished, WorktreeBudget
from agentos._worktree_commands import run_repo_hook, run_repo_tests
from agentos.agents.contract import RESULT_FILE
from agentos.clone import Clone, Credentials
from agentos.config import RepoConfig, SandboxConfig
from agentos.fsutil import atomic_write_bytes
from agentos.gitutil import GitError, GitResult, WorkspaceError
from agentos.proc import CommandResult
from agentos.runners.egress import EgressProxy

__all__ = [
    "RESULT_FILE",
    "Breach",
    "BudgetReport",
    "DiffStat",
    "Finished",
    "GitError",
    "Guard",
    "HookFailed",
    "HookName",
    "HookResult",
    "PushRejected",
    "RebaseResult",
    "Workspace",
    "WorkspaceError",
    "branch_name",
]

log = structlog.get_logger(__name__)


class Workspace(Clone):
    """The clone and worktrees agentos keeps for one repository."""

    def __init__(
        self,
        root: Path,
        repo: RepoConfig,
        *,
        remote_url: str,
        git_env: Mapping[str, str] | None = None,
        credentials: Credentials | None = None,
        sandbox: SandboxConfig | None = None,
        egress: EgressProxy | None = None,
    ) -> None:
        super().__init__(root, repo, remote_url=remote_url, git_env=git_env, credentials=credentials)
        self.sandbox = sandbox
        self.egress = egress
        self.attempt_guard = AttemptGuard(self)
        self.budget = WorktreeBudget(self)

    def __repr__(self) -> str:
        return f"Workspace(repo={self.repo.name!r}, clone={str(self.clone_path)!r}, remote={self.remote_url!r})"

    def worktree_for(self, branch: str) -> Path:
        return self.worktrees_dir / dir_name(branch)

    # ------------------------------------------------------------ worktrees of task branches

    async def prepare(self, branch: str) -> Path:
        """The worktree of ``branch``, created or reused, with no stale result file.

        A new worktree starts from the tip of ``origin/<branch>`` when the branch was pushed before,
        else from the latest ``origin/<base>`` (a local branch with commits of its own is kept).
        Uncommitted changes in a reused worktree are kept: the caller decides (:meth:`save_patch`,
        :meth:`reset`). Raises :class:`HookFailed` when ``after_create`` fails; the next call retries.
        """
        return (await self._prepare(branch))[0]

    async def prepare_head(self, branch: str) -> tuple[Path, str]:
        """:meth:`prepare`, and the commit the worktree's HEAD is on: for a worktree created now, the start point
        it was created at (no ``rev-parse``), unless an ``after_create`` hook ran there and may have moved it."""
        path, head = await self._prepare(branch)
        return path, head or await self.head_sha(path)

    async def _prepare(self, branch: str) -> tuple[Path, str | None]:
        async with self.lock:
            await self.ensure_clone_held()
            fetched = await self.fetch_held()
            path, made = await self._ensure_worktree(branch, fetched)
            if made is not None:  # the lease: where origin/<branch> was when the worktree was made ("" = absent)
                await asyncio.to_thread(write_mark, path, LEASE_MARK, made[0])
        (path / RESULT_FILE).unlink(missing_ok=True)
        if made is None:
            return path, None
        result = await self.run_hook("after_create", path)
        if not result.ok:
            raise HookFailed(result)
        await asyncio.to_thread(write_mark, path, READY_MARK, branch)
        return path, None if result.ran else made[1]

    async def _ensure_worktree(
        self, branch: str, fetched: Mapping[str, str] | None = None
    ) -> tuple[Path, tuple[str, str] | None]:
        """The worktree of ``branch`` and, when it was created now, the tip of ``origin/<branch>`` ("" = absent)
        and the commit it was created at; None when a ready worktree was reused. ``fetched``: the clone's refs,
        when the fetch just read them.

        When the directory does not exist (a new task), the worktree list is not read first: ``worktree add``
        itself refuses a branch checked out elsewhere or a path still registered, and then the full repair runs.
        """
        path = self.worktree_for(branch)
        if not path.exists():
            try:
                return path, await self._add_worktree(branch, path, fetched)
            except GitError as exc:
                log.info("worktree_add_retry", repo=self.repo.name, branch=branch, error=str(exc)[-200:])
        ref = f"refs/heads/{branch}"
        entries = await self.worktree_entries()
        if entries.get(path) == ref and path.is_dir() and read_mark(path, READY_MARK) is not None:
            return path, None
        for other, other_ref in entries.items():
            if other_ref == ref or other == path:
                log.warning("worktree_repairing", repo=self.repo.name, branch=branch, path=str(other))
                await self.drop_worktree(other)
        if path.exists():
            log.warning("worktree_dir_stale", repo=self.repo.name, branch=branch, path=str(path))
            await self.drop_worktree(path)
        return path, await self._add_worktree(branch, path)

    async def _add_worktree(self, branch: str, path: Path, fetched: Mapping[str, str] | None = None) -> tuple[str, str]:
        """``worktree add`` at the start point; the tip of ``origin/<branch>`` it saw ("" = absent) and the commit
        the worktree's HEAD is on."""
        path.parent.mkdir(parents=True, exist_ok=True)
        start, head, remote = await self._start_point(branch, fetched)
        if start is None:
            await self.git("worktree", "add", "-q", str(path), branch)
        else:
            await self.git("worktree", "add", "-q", "--no-track", "-B", branch, str(path), start)
        log.info("worktree_created", repo=self.repo.name, branch=branch, path=str(path), start=start or "local")
        return remote or "", head

    async def _start_point(
        self, branch: str, fetched: Mapping[str, str] | None = None
    ) -> tuple[str | None, str, str | None]:
        """Where a new worktree of ``branch`` starts (None: "the local branch as it is"), the commit that is, and
        ``origin/<branch>``. The refs come from ``fetched`` (the clone's refs, read by the fetch) when given."""
        base_ref, remote_ref, local_ref = (
            f"refs/remotes/origin/{self.base}",
            f"refs/remotes/origin/{branch}",
            f"refs/heads/{branch}",
        )
        found = fetched if fetched is not None else await self.refs(base_ref, remote_ref, local_ref)
        base, remote, local = found.get(base_ref), found.get(remote_ref), found.get(local_ref)
        if base is None:
            raise WorkspaceError(f"{self.remote_url} has no branch {self.base!r} (repo {self.repo.name})")
        if remote is not None:
            if local is not None and await self.is_ancestor(remote, local):
                return None, local, remote
            if local is not None and local != remote:
                log.warning("branch_reset_to_remote", repo=self.repo.name, branch=branch, lost=local)
            return remote, remote, remote
        if local is not None and not await self.is_ancestor(local, base):
            return None, local, remote
        return base, base, remote

    async def commit_all(self, worktree: Path, message: str) -> str | None:
        """Commit every change but ``.agent_result.md``; the new sha, or None when nothing changed.

        ``git commit`` runs straight away: it refuses when nothing is staged, and only then does ``diff --cached``
        tell "nothing to commit" from a real failure. With a merge in progress the order is the other way round,
        because there ``git commit`` would record a merge commit even without a change.
        """
        await asyncio.to_thread(self.write_exclude)
        await self.git("add", "-A", cwd=worktree)
        if os.path.lexists(worktree / RESULT_FILE):  # excluded, so staged only when tracked; absent, never staged
            await self.git("rm", "--cached", "-q", "--ignore-unmatch", "--", RESULT_FILE, cwd=worktree)
        admin = admin_dir(worktree)
        if (admin is None or (admin / "MERGE_HEAD").exists()) and not await self._staged(worktree):
            return None
        args = ("-c", "commit.gpgsign=false", "commit", "-q", "--no-verify", "--cleanup=whitespace", "-m", message)
        res = await self.git(*args, cwd=worktree, check=False)
        if not res.ok:
            if not await self._staged(worktree):
                return None
            raise GitError(args, res.code, res.err or res.out)
        return await self.head_sha(worktree)

    async def _staged(self, worktree: Path) -> bool:
        """Does the index differ from HEAD?"""
        staged = await self.git("diff", "--cached", "--quiet", cwd=worktree, check=False)
        if staged.code not in (0, 1):
            raise GitError(("diff", "--cached", "--quiet"), staged.code, staged.err)
        return staged.code == 1

    async def head_sha(self, worktree: Path) -> str:
        """The commit HEAD is on: read from git's own files when they hold it plainly (no process), else asked."""
        return loose_head(worktree) or (await self.git("rev-parse", "HEAD", cwd=worktree)).out.strip()

    async def diff_stat(self, worktree: Path) -> DiffStat:
        """What the branch changed since it forked from ``origin/<base>`` (committed changes only)."""
        res = await self.git(
            "diff", "--numstat", "--no-renames", "-z", f"refs/remotes/origin/{self.base}...HEAD", cwd=worktree
        )
        files: list[str] = []
        insertions = deletions = 0
        for entry in res.out.split("\0"):
            parts = entry.split("\t", 2)
            if len(parts) != 3:
                continue
            added, removed, name = parts
            files.append(name)
            insertions += int(added) if added.isdigit() else 0
            deletions += int(removed) if removed.isdigit() else 0
        return DiffStat(len(files), insertions, deletions, tuple(files))

    async def save_patch(self, worktree: Path, path: Path, *, since: str | None = None) -> bool:
        """Write uncommitted and untracked changes (relative to ``since``, default HEAD) as a patch.

        The worktree is not touched (a temporary index is used). Returns False, writing nothing,
        when there is nothing to save. Apply later with ``git apply --index <patch>``.
        """
        admin = admin_dir(worktree)
        if admin is None:
            raise WorkspaceError(f"{worktree} is not a worktree of {self.clone_path}")
        index, tmp_index, tmp_out = admin / "index", admin / "agentos-patch.index", admin / "agentos-patch.diff"
        try:
            if index.is_file():
                await asyncio.to_thread(shutil.copyfile, index, tmp_index)
            env = {"GIT_INDEX_FILE": str(tmp_index)}
            await self.git("add", "-A", cwd=worktree, env=env)
            await self.git(
                "diff",
                "--cached",
                "--binary",
                "--no-color",
                f"--output={tmp_out}",
                since or "HEAD",
                cwd=worktree,
                env=env,
            )
            data = await asyncio.to_thread(tmp_out.read_bytes)
        finally:
            tmp_index.unlink(missing_ok=True)
            tmp_out.unlink(missing_ok=True)
        if not data:
            return False
        await asyncio.to_thread(atomic_write_bytes, path, data)
        log.info("patch_saved", repo=self.repo.name, worktree=str(worktree), path=str(path), bytes=len(data))
        return True

    async def reset(self, worktree: Path, *, to: str | None = None, ignored: bool = False) -> None:
        """Hard reset to the branch tip (or ``to``) and remove untracked files.

        An unfinished rebase or merge is aborted. Ignored files (installed dependencies, build output)
        are kept unless ``ignored``, so ``after_create`` need not run again; the result file goes.
        """
        admin = admin_dir(worktree)
        if admin is not None and ((admin / "rebase-merge").exists() or (admin / "rebase-apply").exists()):
            await self.git("rebase", "--abort", cwd=worktree, check=False)
        await self.git("reset", "-q", "--hard", to or "HEAD", cwd=worktree)
        await self.git("clean", "-ffdq", *(["-x"] if ignored else []), cwd=worktree)
        (worktree / RESULT_FILE).unlink(missing_ok=True)

    async def push(self, worktree: Path, branch: str, *, expected: str | None = None, sha: str | None = None) -> str:
        """Push the worktree's HEAD (``sha`` when the caller knows it, else asked) to ``origin/<branch>`` with a
        lease; the pushed sha.

        The lease expects the remote branch where this worktree last saw it: where it was when the
        worktree was created, or where our last push put it (else where the last fetch saw it), or at
        ``expected`` when given ("" = absent). If it moved, the push is retried only when nothing on
        the remote would be lost (the remote tip is already in HEAD: an earlier push of ours); otherwise
        :class:`PushRejected`, and nothing is overwritten. Never a bare ``--force``.
        """
        tracking = f"refs/remotes/origin/{branch}"
        async with self.lock:
            sha = sha or await self.head_sha(worktree)
            lease = expected if expected is not None else read_mark(worktree, LEASE_MARK)
            if lease is None:
                lease = await self.rev(tracking) or ""
            res = await self._push_with_lease(branch, sha, lease)
            if push_rejected(res) and expected is None:
                await self.fetch_held()
                remote = await self.rev(tracking) or ""
                if remote == sha:
                    res = GitResult(0, "", "")
                elif not remote or await self.is_ancestor(remote, sha):
                    res = await self._push_with_lease(branch, sha, remote)
                lease = remote
            if res.ok:
                await asyncio.to_thread(write_mark, worktree, LEASE_MARK, sha)
        if push_rejected(res):
            raise PushRejected(
                f"push of {branch} refused: the remote branch moved from {lease[:12] or '(absent)'} "
                "to commits this worktree does not have"
            )
        if not res.ok:
            raise GitError(("push", "origin", branch), res.code, res.err or res.out)
        log.info("branch_pushed", repo=self.repo.name, branch=branch, sha=sha)
        return sha

    async def _push_with_lease(self, branch: str, sha: str, lease: str) -> GitResult:
        return await self.git(
            "push",
            "--porcelain",
            f"--force-with-lease=refs/heads/{branch}:{lease}",
            "origin",
            f"{sha}:refs/heads/{branch}",
            check=False,
            timeout=600,
        )

    async def rebase_onto_base(self, worktree: Path) -> RebaseResult:
        """Fetch, then rebase the branch onto ``origin/<base>``; on conflict abort and name the files."""
        await self.fetch()
        dirty = await self.git("status", "--porcelain", "--untracked-files=no", cwd=worktree)
        if dirty.out.strip():
            return RebaseResult(False, [], "the worktree has uncommitted changes", await self.head_sha(worktree))
        base_ref = f"refs/remotes/origin/{self.base}"
        if await self.is_ancestor(base_ref, "HEAD", cwd=worktree):
            return RebaseResult(True, [], f"already on top of origin/{self.base}", await self.head_sha(worktree))
        res = await self.git("rebase", "--no-autostash", base_ref, cwd=worktree, check=False, timeout=600)
        if res.ok:
            head = await self.head_sha(worktree)
            log.info("branch_rebased", repo=self.repo.name, worktree=str(worktree), head=head)
            return RebaseResult(True, [], f"rebased onto origin/{self.base}", head)
        unmerged = await self.git("diff", "--name-only", "--diff-filter=U", "-z", cwd=worktree, check=False)
        conflicts = sorted({name for name in unmerged.out.split("\0") if name})
        await self.git("rebase", "--abort", cwd=worktree, check=False)
        detail = " ".join((res.out + res.err).strip().splitlines()[-3:])[-300:]
        log.info("rebase_conflict", repo=self.repo.name, worktree=str(worktree), conflicts=conflicts)
        return RebaseResult(False, conflicts, detail, await self.head_sha(worktree))

    async def remove(self, branch: str, *, keep_branch: bool = False) -> None:
        """Run ``before_remove`` (a failure is logged), remove the worktree and the local branch.

        ``keep_branch`` keeps the local branch (an escalated task's unpushed work, for a retry).
        """
        path = self.worktree_for(branch)
        if path.is_dir() and self.repo.hooks.before_remove:
            await self.run_hook("before_remove", path)
        async with self.lock:
            await self.ensure_clone_held()
            if path.exists() or path in await self.worktree_entries():
                await self.drop_worktree(path)
            if not keep_branch:
                await self.git("branch", "-D", branch, check=False)
        log.info("worktree_removed", repo=self.repo.name, branch=branch, branch_kept=keep_branch)

    async def repair(self, keep: set[str]) -> list[Path]:
        """After a crash: prune, clear stale git locks, remove worktrees of branches not in ``keep``.

        Call it at start-up, before other operations: a lock file is assumed stale because no git
        process of ours runs. Scratch worktrees in use in this process are left alone. Returns the
        removed directories.
        """
        removed: list[Path] = []
        async with self.lock:
            if not self.clone_path.exists():
                # no clone: whatever is here is orphaned; a kept branch's directory is rebuilt by prepare
                if self.worktrees_dir.is_dir():
                    for path in sorted(self.worktrees_dir.iterdir()):
                        if path not in {self.worktree_for(b) for b in keep}:
                            await asyncio.to_thread(rmtree, path)
                            removed.append(path)
                return removed
            await self.ensure_clone_held()
            await self.git("worktree", "prune")
            await asyncio.to_thread(self.remove_stale_locks)
            keep_dirs = {self.worktree_for(b) for b in keep}
            entries = await self.worktree_entries()
            candidates = set(entries) | (set(self.worktrees_dir.iterdir()) if self.worktrees_dir.is_dir() else set())
            scratch = self.worktrees_dir / ".scratch"
            if scratch.is_dir():
                candidates |= set(scratch.iterdir())
            for path in sorted(candidates):
                if path == scratch or path in keep_dirs or path in self.scratch_in_use:
                    continue
                if path.parent not in (self.worktrees_dir, scratch):
                    continue  # registered elsewhere: not ours to remove
                await self.drop_worktree(path)
                removed.append(path)
        if removed:
            log.info("worktrees_repaired", repo=self.repo.name, removed=[str(p) for p in removed])
        return removed

    async def restore_branch(self, worktree: Path, branch: str, sha: str) -> None:
        """Put ``worktree`` back on ``branch`` at ``sha``, clean (after an agent rewrote or left the branch)."""
        await self.git("checkout", "-q", "-f", "-B", branch, sha, cwd=worktree)
        await self.git("clean", "-ffdq", cwd=worktree)
        (worktree / RESULT_FILE).unlink(missing_ok=True)

    # ------------------------------------------------------------ commands in a worktree

    async def run_hook(self, name: HookName, worktree: Path) -> HookResult:
        """:func:`~agentos._worktree_commands.run_repo_hook`: one of the repo's hooks, in ``worktree``."""
        return await run_repo_hook(self.repo, name, worktree, root=self.root, sandbox=self.sandbox, egress=self.egress)

    async def run_tests(
        self, worktree: Path, env: Mapping[str, str] | None = None, *, proxy_socket: Path | None = None
    ) -> CommandResult:
        """:func:`~agentos._worktree_commands.run_repo_tests`: the repo's ``test_command``, in ``worktree``."""
        return await run_repo_tests(
            self.repo, worktree, env, root=self.root, sandbox=self.sandbox, proxy_socket=proxy_socket
        )

    # ------------------------------------------------------------ the guard and the budget (collaborators)

    async def guard(self, worktree: Path) -> Guard:
        """:meth:`AttemptGuard.snapshot`: take it right before the agent starts."""
        return await self.attempt_guard.snapshot(worktree)

    async def check_guard(self, worktree: Path, guard: Guard, *, branch: str, since: str) -> list[Breach]:
        """:meth:`AttemptGuard.check`: right after the agent ran, before agentos runs git there."""
        return await self.attempt_guard.check(worktree, guard, branch=branch, since=since)

    async def find_secrets(self, worktree: Path, find: Callable[[str], list[str]]) -> tuple[list[str], str | None]:
        """:meth:`AttemptGuard.find_secrets`: the secrets a push of ``worktree``'s HEAD would publish."""
        return await self.attempt_guard.find_secrets(worktree, find)

    @property
    def budgeted(self) -> bool:
        return self.budget.budgeted

    def has_room(self, branch: str | None, *, starting: int = 0) -> bool:
        """:meth:`WorktreeBudget.has_room`: may a task on ``branch`` start beside ``starting`` others."""
        return self.budget.has_room(branch, starting=starting)

    async def enforce_budget(self, finished: Mapping[str, Finished]) -> BudgetReport:
        """:meth:`WorktreeBudget.enforce`: remove the oldest finished worktrees until a new one fits."""
        return await self.budget.enforce(finished)

    async def disk_usage(self) -> int:
        """Bytes under this repo's worktrees dir (apparent sizes, symlinks not followed)."""
        return await self.budget.disk_usage()
