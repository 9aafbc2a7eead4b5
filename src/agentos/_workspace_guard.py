"""What an attempt may not change, checked around every agent run: :class:`AttemptGuard`, built over a
:class:`~agentos.clone.Clone` (a :class:`~agentos.workspace.Workspace` has one and delegates to it).

Before the agent starts, :meth:`AttemptGuard.snapshot` records what it can reach but must not change: its
worktree's ``.git`` link, agentos's clone (config, hooks, info files; :data:`SHARED_FILES`, :data:`SHARED_DIRS`)
and the refs of a local remote. Right after it ran, :meth:`AttemptGuard.check` puts the link and the clone back
and reports each :class:`Breach`. :meth:`AttemptGuard.find_secrets` scans what a push would publish.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import structlog

from agentos._worktree import admin_dir
from agentos.clone import Clone
from agentos.gitutil import local_git_dir, read_refs

__all__ = ["SHARED_DIRS", "SHARED_FILES", "AttemptGuard", "Breach", "Guard"]

log = structlog.get_logger("agentos.workspace")


SHARED_FILES = ("config", "objects/info/alternates")
SHARED_DIRS = ("hooks", "info")
"""What of the clone an attempt's worktree can reach and agentos's own git reads: config (filters, remote URL,
``core.hooksPath``…), hooks, ``info/attributes`` and ``info/exclude``, alternates, and ``config.worktree``."""


@dataclass(frozen=True)
class Guard:
    """What an attempt must leave as it found it (:meth:`AttemptGuard.snapshot`, :meth:`AttemptGuard.check`)."""

    link: bytes | None
    """The worktree's ``.git`` file."""
    shared: dict[str, tuple[bytes, int]]
    """Clone files (path relative to the clone → content and mode), see :data:`SHARED_FILES`."""
    remote_refs: dict[str, str] | None
    """The refs of the remote when it is a local repository (the local forge's user repository), else None."""


@dataclass(frozen=True)
class Breach:
    """Something an attempt changed that is not its worktree's files or its branch's new commits.

    ``link``: ``.git`` deleted or replaced (restored). ``shared``: agentos's clone changed (restored). ``history``:
    HEAD no longer descends from where the attempt started (an agent that only switched branches or detached
    HEAD is put back on the task branch, its commits kept). ``remote``: the attempt's commits reached a ref of
    the (local) remote other than the task branch (not undone).
    """

    kind: Literal["link", "shared", "history", "remote"]
    detail: str


def _read_link(worktree: Path) -> bytes | None:
    """The worktree's ``.git`` when it is a regular file (not a symlink, not a directory), else None."""
    path = worktree / ".git"
    try:
        if not path.is_symlink() and path.is_file():
            return path.read_bytes()
    except OSError:
        pass
    return None


def _restore_link(worktree: Path, link: bytes) -> None:
    path = worktree / ".git"
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    path.write_bytes(link)


def _shared_files(clone: Path, worktree: Path) -> dict[str, tuple[bytes, int]]:
    found: dict[str, tuple[bytes, int]] = {}
    paths = [clone / name for name in SHARED_FILES]
    for folder in SHARED_DIRS:
        if (clone / folder).is_dir():
            paths += sorted((clone / folder).rglob("*"))
    admin = admin_dir(worktree)
    if admin is not None:
        paths.append(admin / "config.worktree")
    for path in paths:
        try:
            info = path.lstat()
            if path.is_symlink():
                data = b"symlink:" + os.readlink(path).encode()
            elif path.is_file():
                data = path.read_bytes()
            else:
                continue
        except OSError:
            continue
        found[os.path.relpath(path, clone)] = (data, info.st_mode & 0o7777)
    return found


def _restore_shared(clone: Path, before: dict[str, tuple[bytes, int]], changed: list[str]) -> None:
    for rel in changed:
        path = clone / rel
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(path)
        if rel in before:
            data, mode = before[rel]
            path.parent.mkdir(parents=True, exist_ok=True)
            if data.startswith(b"symlink:"):
                os.symlink(data.removeprefix(b"symlink:").decode(), path)
            else:
                path.write_bytes(data)
                os.chmod(path, mode)


class AttemptGuard:
    """The guard around an agent's run and the secret scan before a push, over one repository's clone."""

    def __init__(self, clone: Clone) -> None:
        self.clone = clone

    async def snapshot(self, worktree: Path) -> Guard:
        """Snapshot what an agent in ``worktree`` can reach but must not change: its ``.git`` link, the clone's
        config, hooks and info files, and the refs of a local remote. Take it right before the agent starts."""
        link = await asyncio.to_thread(_read_link, worktree)
        shared = await asyncio.to_thread(_shared_files, self.clone.clone_path, worktree)
        return Guard(link, shared, await self._local_remote_refs())

    async def check(self, worktree: Path, guard: Guard, *, branch: str, since: str) -> list[Breach]:
        """What the agent changed that it must not have, right after it ran and before agentos runs git there.

        A replaced ``.git`` link and changed clone files are put back as they were (so no git command of ours
        runs through them); history and remote breaches are only reported (the caller saves the work and resets
        the branch). A push to a ref of the remote is seen when that ref now holds one of the attempt's commits.
        """
        breaches: list[Breach] = []
        if guard.link is not None and await asyncio.to_thread(_read_link, worktree) != guard.link:
            await asyncio.to_thread(_restore_link, worktree, guard.link)
            breaches.append(Breach("link", "the agent deleted or replaced the worktree's .git; agentos restored it"))
        now = await asyncio.to_thread(_shared_files, self.clone.clone_path, worktree)
        changed = sorted(k for k in set(now) | set(guard.shared) if now.get(k) != guard.shared.get(k))
        if changed:
            await asyncio.to_thread(_restore_shared, self.clone.clone_path, guard.shared, changed)
            shown = ", ".join(changed[:8]) + (f" (+{len(changed) - 8} more)" if len(changed) > 8 else "")
            breaches.append(Breach("shared", f"the agent changed agentos's clone of the repo ({shown}); restored"))
        head, tip = await self._head_ref(worktree)
        if tip is None or (tip != since and not await self.clone.is_ancestor(since, tip)):
            breaches.append(
                Breach("history", f"{branch} was rewritten: it no longer descends from {since[:12]}, its start")
            )
        elif head != f"refs/heads/{branch}":  # work on another branch or a detached HEAD: it is still the task's
            await self.clone.git("checkout", "-q", "-B", branch, cwd=worktree)
            log.info("worktree_reattached", repo=self.clone.repo.name, branch=branch, left_for=head or "detached HEAD")
        if guard.remote_refs is not None:
            pushed = await self._pushed_elsewhere(worktree, guard.remote_refs, branch=branch, since=since)
            if pushed:
                breaches.append(
                    Breach("remote", f"the agent pushed its commits to {', '.join(pushed)} in {self.clone.remote_url}")
                )
        if breaches:
            details = [b.detail for b in breaches]
            log.warning("attempt_breaches", repo=self.clone.repo.name, branch=branch, breaches=details)
        return breaches

    async def _head_ref(self, worktree: Path) -> tuple[str, str | None]:
        """The branch HEAD is on (``refs/heads/…``, "" when detached) and its commit (None when unborn or broken),
        in one git process when HEAD names a commit."""
        args = ("rev-parse", "HEAD^{commit}", "--symbolic-full-name", "HEAD")
        res = await self.clone.git(*args, cwd=worktree, check=False)
        lines = res.out.split()
        if res.ok and len(lines) == 2:
            return ("" if lines[1] == "HEAD" else lines[1]), lines[0]
        head = (await self.clone.git("symbolic-ref", "-q", "HEAD", cwd=worktree, check=False)).out.strip()
        return head, await self.clone.rev("HEAD", cwd=worktree)

    async def _local_remote_refs(self) -> dict[str, str] | None:
        if "://" in self.clone.remote_url and not self.clone.remote_url.startswith("file://"):
            return None  # a network remote: the agent has no credentials for it (and a query costs a request)
        git_dir = local_git_dir(self.clone.remote_url)
        if git_dir is not None and (found := await read_refs(git_dir, env=self.clone.git_env)) is not None:
            return found  # one for-each-ref there; ls-remote (a file:// URL, or git refused) runs upload-pack too
        res = await self.clone.git("ls-remote", self.clone.remote_url, check=False)
        if not res.ok:
            return None
        refs = {}
        for line in res.out.splitlines():
            sha, _, ref = line.partition("\t")
            if ref and not ref.endswith("^{}"):
                refs[ref] = sha
        return refs

    async def _pushed_elsewhere(self, worktree: Path, before: dict[str, str], *, branch: str, since: str) -> list[str]:
        after = await self._local_remote_refs() or {}
        moved = [r for r, sha in after.items() if r != f"refs/heads/{branch}" and before.get(r) != sha]
        if not moved:
            return []
        ours = await self.clone.git(
            "rev-list", "--max-count=200", "HEAD", f"refs/heads/{branch}", "--not", since, cwd=worktree, check=False
        )
        commits = ours.out.split() if ours.ok else []
        pushed = []
        for ref in moved:
            sha = after[ref]
            if await self.clone.rev(sha) is None:
                continue  # not in our clone: no commit of this worktree's
            for commit in commits:
                if await self.clone.is_ancestor(commit, sha):
                    pushed.append(ref)
                    break
        return pushed

    async def find_secrets(self, worktree: Path, find: Callable[[str], list[str]]) -> tuple[list[str], str | None]:
        """Secrets in what a push of ``worktree``'s HEAD would publish: the added lines of every commit since
        ``origin/<base>``. ``find`` names the secrets in one line (:func:`agentos.redact.find_secrets`).
        Returns ``"<path> (<commit>): <what>"`` for each line with one, never the secret itself, and the commit
        scanned as HEAD (the first the log shows; None when no commit is ahead of the base): push that one
        (:meth:`push` ``sha=``) and what is published is what was scanned."""
        res = await self.clone.git(
            "log",
            "-p",
            "--no-color",
            "--no-ext-diff",
            "--no-textconv",
            "-U0",
            "--format=commit %H",
            f"refs/remotes/origin/{self.clone.base}..HEAD",
            cwd=worktree,
            timeout=600,
        )
        found: list[str] = []
        head: str | None = None
        commit = path = ""
        for line in res.out.splitlines():
            if line.startswith("commit "):
                commit = line.removeprefix("commit ")
                head = head or commit
            elif line.startswith("+++ "):
                path = line.removeprefix("+++ ").removeprefix("b/")
            elif line.startswith("+") and (kinds := find(line[1:])):
                found.append(f"{path} ({commit[:12]}): {', '.join(kinds)}")
        return found, head
