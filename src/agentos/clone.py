"""agentos's clone of one repository, shared by every worktree of it: :class:`Clone`.

Layout under the state dir::

    clones/<repo>/                       bare clone, origin = the repo's remote (local forge: its path)
    worktrees/<repo>/.scratch/<id>/      short-lived detached worktrees (checks, merges)

Operations on the clone (fetch, worktree add/remove, push) hold a per-clone :class:`asyncio.Lock`
(:attr:`Clone.lock`); the ``…_held`` methods are for a caller that already holds it. The task worktrees and
what is done in them are :class:`agentos.workspace.Workspace`'s, which builds on this class.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import ClassVar

import structlog

from agentos._worktree import fetch_changes_nothing, rmtree
from agentos.agents.contract import RESULT_FILE
from agentos.config import RepoConfig
from agentos.fsutil import atomic_write_text
from agentos.gitutil import GitError, GitResult, git, local_git_dir, read_refs

__all__ = ["CREDENTIALS_TTL_S", "Clone", "Credentials"]

log = structlog.get_logger("agentos.workspace")

CREDENTIALS_TTL_S = 300.0  # a GitHub App token lives an hour; ask the forge again every 5 minutes

Credentials = Callable[[], Awaitable[tuple[str, dict[str, str]]]]
"""Returns the remote URL and the git environment that authenticates to it (never written to disk)."""


class Clone:
    """agentos's bare clone of one repository: git in it, its lock, fetches, and the registry of its worktrees."""

    _locks: ClassVar[weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]]] = (
        weakref.WeakKeyDictionary()
    )
    scratch_in_use: ClassVar[set[Path]] = set()
    """Scratch worktrees in use in this process (a repair leaves them alone)."""

    def __init__(
        self,
        root: Path,
        repo: RepoConfig,
        *,
        remote_url: str,
        git_env: Mapping[str, str] | None = None,
        credentials: Credentials | None = None,
    ) -> None:
        self.root = Path(root).expanduser().resolve()
        self.repo = repo
        self.remote_url = remote_url
        self.git_env = dict(git_env or {})
        self.credentials = credentials
        self._credentials_at = -CREDENTIALS_TTL_S
        self.clone_path = self.root / "clones" / repo.name
        self.worktrees_dir = self.root / "worktrees" / repo.name
        self._clone_ok = False

    @property
    def base(self) -> str:
        return self.repo.base_branch

    @property
    def lock(self) -> asyncio.Lock:
        """The lock for the shared clone, one per clone and event loop, shared by every instance."""
        locks = self._locks.setdefault(asyncio.get_running_loop(), {})
        return locks.setdefault(str(self.clone_path), asyncio.Lock())

    async def git(
        self,
        *args: str,
        cwd: Path | None = None,
        check: bool = True,
        timeout: float = 120,
        env: Mapping[str, str] | None = None,
    ) -> GitResult:
        """Run git in the clone (or ``cwd``) with this workspace's git environment."""
        if self.credentials is not None and time.monotonic() - self._credentials_at > CREDENTIALS_TTL_S:
            self.remote_url, fresh = await self.credentials()
            self.git_env = dict(fresh)
            self._credentials_at = time.monotonic()
        merged = {**self.git_env, **(env or {})}
        return await git(*args, cwd=cwd or self.clone_path, env=merged, check=check, timeout=timeout)

    async def rev(self, ref: str, *, cwd: Path | None = None) -> str | None:
        """The commit ``ref`` names, or None when it does not exist."""
        res = await self.git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", cwd=cwd, check=False)
        return res.out.strip() if res.ok else None

    async def refs(self, *names: str) -> dict[str, str]:
        """Full ref name → commit for those of ``names`` that exist (every ref of the clone when none is named), in
        one ``git for-each-ref`` (not one ``rev-parse`` each). Only for branch refs (``refs/heads/…``,
        ``refs/remotes/…``), which name commits."""
        res = await self.git("for-each-ref", "--format=%(objectname) %(refname)", *names)
        wanted = set(names)
        found: dict[str, str] = {}
        for line in res.out.splitlines():
            sha, _, ref = line.partition(" ")
            if ref in wanted or not names:  # a pattern also matches the refs below it (refs/heads/a: refs/heads/a/b)
                found[ref] = sha
        return found

    async def is_ancestor(self, ancestor: str, descendant: str, *, cwd: Path | None = None) -> bool:
        res = await self.git("merge-base", "--is-ancestor", ancestor, descendant, cwd=cwd, check=False)
        if res.code not in (0, 1):
            raise GitError(("merge-base", "--is-ancestor", ancestor, descendant), res.code, res.err)
        return res.code == 0

    # ------------------------------------------------------------ the shared clone

    async def ensure_clone(self) -> None:
        async with self.lock:
            await self.ensure_clone_held()

    async def fetch(self) -> None:
        async with self.lock:
            await self.ensure_clone_held()
            await self.fetch_held()

    async def fetch_refs(self, *names: str) -> dict[str, str]:
        """:meth:`fetch`, then :meth:`refs` of ``names`` as the fetch left them, read under the same lock (and not
        read again when the fetch was skipped: its check read them)."""
        async with self.lock:
            await self.ensure_clone_held()
            ours = await self.fetch_held()
            if ours is None:
                return await self.refs(*names)
        return {name: ours[name] for name in names if name in ours}

    async def ensure_clone_held(self) -> None:
        """:meth:`ensure_clone` for a caller that holds :attr:`lock`."""
        if self._clone_ok and (self.clone_path / "HEAD").is_file():
            return
        if self.clone_path.exists():
            res = await self.git("rev-parse", "--is-bare-repository", "--git-dir", check=False)
            if res.ok and res.out.split() == ["true", "."]:
                url = await self.git("config", "--get", "remote.origin.url", check=False)
                if not url.ok:
                    await self.git("remote", "add", "origin", self.remote_url)
                elif url.out.strip() != self.remote_url:
                    await self.git("remote", "set-url", "origin", self.remote_url)
                await asyncio.to_thread(self.write_exclude)
                self._clone_ok = True
                return
            log.warning("clone_broken_recreating", repo=self.repo.name, path=str(self.clone_path))
            await asyncio.to_thread(rmtree, self.clone_path)
        self.clone_path.parent.mkdir(parents=True, exist_ok=True)
        # clone_path.name, not repo.name: a GitHub repo name ("owner/name") is two path components
        for stale in self.clone_path.parent.glob(f".{self.clone_path.name}.tmp-*"):
            await asyncio.to_thread(rmtree, stale)
        tmp = self.clone_path.with_name(f".{self.clone_path.name}.tmp-{uuid.uuid4().hex[:8]}")
        await self.git("init", "--bare", "-q", f"--initial-branch={self.base}", str(tmp), cwd=self.clone_path.parent)
        await self.git("remote", "add", "origin", self.remote_url, cwd=tmp)
        os.replace(tmp, self.clone_path)
        await asyncio.to_thread(self.write_exclude)
        self._clone_ok = True
        log.info("clone_created", repo=self.repo.name, path=str(self.clone_path))

    def write_exclude(self) -> None:
        """``.agent_result.md`` in the clone's ``info/exclude``, which every worktree of it reads."""
        exclude = self.clone_path / "info" / "exclude"
        text = exclude.read_text(encoding="utf-8") if exclude.is_file() else ""
        if f"/{RESULT_FILE}" in text.splitlines():
            return
        if text and not text.endswith("\n"):
            text += "\n"
        atomic_write_text(exclude, f"{text}/{RESULT_FILE}\n", mode=0o644)

    async def fetch_held(self) -> dict[str, str] | None:
        """``git fetch --prune origin`` (call with :attr:`lock` held); the clone's refs when the fetch was skipped
        because it would change nothing.

        When the remote is a local repository (the local forge's user repository), its branches and tags are read
        first, one ``for-each-ref`` there and one in the clone, cheaper than a fetch and its ``upload-pack``. When
        every branch is already at its ``refs/remotes/origin/…``, no tracking ref is left over and every tag is
        here, the fetch does not run. Our own pushes keep the tracking refs current, so that is the usual case.
        The remote is read at every call: what a call sees is the remote as it is then.
        """
        git_dir = local_git_dir(self.remote_url)
        if git_dir is not None:
            theirs = await read_refs(git_dir, "refs/heads", "refs/tags", env=self.git_env)
            if theirs is not None:
                ours = await self.refs()
                if fetch_changes_nothing(theirs, ours):
                    return ours
        await self.git("fetch", "--prune", "--quiet", "origin", timeout=600)
        return None

    async def worktree_entries(self) -> dict[Path, str | None]:
        """Registered worktrees (call with :attr:`lock` held): path → ``refs/heads/<branch>`` (None when detached)."""
        res = await self.git("worktree", "list", "--porcelain")
        entries: dict[Path, str | None] = {}
        current: Path | None = None
        for line in res.out.splitlines():
            if line.startswith("worktree "):
                current = Path(line.removeprefix("worktree "))
                entries[current] = None
            elif line.startswith("branch ") and current is not None:
                entries[current] = line.removeprefix("branch ")
        entries.pop(self.clone_path, None)
        return entries

    async def drop_worktree(self, path: Path) -> None:
        """Unregister and delete a worktree (call with :attr:`lock` held); ``worktree prune`` only when
        ``worktree remove`` failed (a directory gone or broken), since a successful remove leaves nothing to prune."""
        res = await self.git("worktree", "remove", "--force", "--force", str(path), check=False)
        if path.exists():
            await asyncio.to_thread(rmtree, path)
        if not res.ok:
            await self.git("worktree", "prune")

    def remove_stale_locks(self) -> None:
        names = ("index.lock", "HEAD.lock", "config.lock", "packed-refs.lock", "shallow.lock", "ORIG_HEAD.lock")
        dirs = [self.clone_path]
        admin_root = self.clone_path / "worktrees"
        if admin_root.is_dir():
            dirs += [d for d in admin_root.iterdir() if d.is_dir()]
        stale = [d / n for d in dirs for n in names if (d / n).exists()]
        refs = self.clone_path / "refs"
        if refs.is_dir():
            stale += list(refs.rglob("*.lock"))
        for lock in stale:
            lock.unlink(missing_ok=True)
            log.warning("git_lock_removed", repo=self.repo.name, path=str(lock))

    @asynccontextmanager
    async def scratch(self, ref: str) -> AsyncIterator[Path]:
        """A detached worktree at ``ref`` (fetch first), removed on exit whatever happens."""
        path = self.worktrees_dir / ".scratch" / uuid.uuid4().hex[:12]
        async with self.lock:
            await self.ensure_clone_held()
            path.parent.mkdir(parents=True, exist_ok=True)
            await self.git("worktree", "add", "-q", "--detach", str(path), ref)
        self.scratch_in_use.add(path)
        try:
            yield path
        finally:
            self.scratch_in_use.discard(path)
            async with self.lock:
                await self.drop_worktree(path)
