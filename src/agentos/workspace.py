"""Git worktrees for attempts: one clone per repo kept by agentos, one worktree per task branch.

Layout under the state dir::

    clones/<repo>/                       bare clone, origin = the repo's remote (local forge: its path)
    worktrees/<repo>/<branch-slug>/      the worktree of one task branch, reused across attempts
    worktrees/<repo>/.scratch/<id>/      short-lived detached worktrees (checks, merges)

Operations on the shared clone (fetch, worktree add/remove, push) hold a per-clone
:class:`asyncio.Lock`; operations inside one worktree (commit, diff, reset) do not. Hooks and tests
run with :func:`agentos.proc.scrubbed_env` (the one allowlist every child gets) plus the repo's ``pass_env``,
so a repo's scripts never see a token they were not given.

A repo may have a worktree budget (``max_worktrees``, ``max_worktree_disk_mb``): :meth:`Workspace.has_room`
says whether a new worktree fits, :meth:`Workspace.enforce_budget` removes the oldest worktrees of finished
tasks (their uncommitted work saved as a patch first) until one does. That half lives in
:mod:`agentos._worktree_budget`; the guard around an agent's run (:meth:`Workspace.guard`,
:meth:`Workspace.check_guard`) and the secret scan (:meth:`Workspace.find_secrets`) in
:mod:`agentos._workspace_guard`. Both are mixed into :class:`Workspace` and their names re-exported here.

A worktree is *ready* once it was created and its ``after_create`` hook passed; the mark lives in the
worktree's private git dir. :meth:`Workspace.prepare` recreates a worktree that is not ready (a crash
or a failed hook half-way), so it is idempotent.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import time
import unicodedata
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import structlog

from agentos._workspace_guard import Breach, Guard, WorkspaceGuard, _admin_dir
from agentos._worktree_budget import BudgetReport, Finished, WorktreeBudget
from agentos.agents.contract import RESULT_FILE
from agentos.config import RepoConfig
from agentos.fsutil import atomic_write_bytes, atomic_write_text
from agentos.gitutil import GitError, GitResult, WorkspaceError, git, local_git_dir, read_refs
from agentos.proc import CommandResult, run_shell, scrubbed_env

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

HookName = Literal["after_create", "before_run", "after_run", "before_remove"]
READY_MARK = "agentos-ready"
LEASE_MARK = "agentos-lease"
SLUG_MAX = 40
OID_RE = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")
CREDENTIALS_TTL_S = 300.0  # a GitHub App token lives an hour; ask the forge again every 5 minutes

# Returns the remote URL and the git environment that authenticates to it (never written to disk).
Credentials = Callable[[], Awaitable[tuple[str, dict[str, str]]]]


class PushRejected(WorkspaceError):
    """The remote branch is not where we last saw it: someone else pushed. Nothing was overwritten."""


@dataclass(frozen=True)
class HookResult:
    name: str
    command: str | None
    code: int = 0
    output_tail: str = ""
    timed_out: bool = False
    duration_s: float = 0.0

    @property
    def ran(self) -> bool:
        return self.command is not None

    @property
    def ok(self) -> bool:
        return self.code == 0 and not self.timed_out

    @property
    def detail(self) -> str:
        """One line: how the hook ended and the last lines of its output."""
        if not self.ran:
            return f"{self.name} hook: not configured"
        if self.timed_out:
            how = f"{self.name} hook timed out after {self.duration_s:.1f}s"
        else:
            how = f"{self.name} hook exited {self.code} after {self.duration_s:.1f}s"
        last = " ".join(self.output_tail.strip().splitlines()[-2:])[-200:]
        return f"{how}: {last}" if last else how


class HookFailed(WorkspaceError):
    """A hook that must pass (``after_create``, ``before_run``) failed: an ``environment_failure``."""

    def __init__(self, result: HookResult) -> None:
        self.result = result
        super().__init__(result.detail)


@dataclass(frozen=True)
class DiffStat:
    """Committed changes on the branch since it forked from ``origin/<base>``: counts and paths."""

    files: int = 0
    insertions: int = 0
    deletions: int = 0
    paths: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return self.files == 0


@dataclass(frozen=True)
class RebaseResult:
    ok: bool
    conflicts: list[str] = field(default_factory=list)
    detail: str = ""
    head: str = ""


def branch_name(issue: int, title: str) -> str:
    """``agentos/<issue>-<slug>``: lowercase ascii words joined by hyphens, at most 40 characters."""
    text = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode("ascii").lower()
    slug = ""
    for word in re.findall(r"[a-z0-9]+", text):
        candidate = f"{slug}-{word}" if slug else word
        if len(candidate) > SLUG_MAX:
            slug = slug or word[:SLUG_MAX]
            break
        slug = candidate
    return f"agentos/{issue}-{slug}" if slug else f"agentos/{issue}"


def _dir_name(branch: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", branch.replace("/", "-")).strip("-.")
    return name or "branch"


def _loose_head(worktree: Path) -> str | None:
    """The commit HEAD of a worktree of ours names, as ``rev-parse HEAD`` would say, read from the files git keeps
    it in: the worktree's own ``HEAD`` (detached), or the loose ref of its branch in the clone (a loose ref wins
    over ``packed-refs``, and ``git commit`` writes one). None whenever that does not settle it (a packed or
    unborn branch, a ref format other than files, anything unexpected): then git is asked."""
    admin = _admin_dir(worktree)
    if admin is None:
        return None
    try:
        head = (admin / "HEAD").read_text(encoding="ascii").strip()
        if head.startswith("ref: "):
            ref = head.removeprefix("ref: ")
            if not ref.startswith("refs/heads/") or ".." in ref or "/." in ref or ref.endswith(".lock"):
                return None
            common = admin / (admin / "commondir").read_text(encoding="utf-8").strip()
            head = (common / ref).read_text(encoding="ascii").strip()
    except (OSError, ValueError):
        return None
    return head if OID_RE.fullmatch(head) else None


def _read_mark(worktree: Path, name: str) -> str | None:
    admin = _admin_dir(worktree)
    try:
        return (admin / name).read_text(encoding="utf-8").strip() if admin else None
    except FileNotFoundError:
        return None


def _write_mark(worktree: Path, name: str, value: str) -> None:
    admin = _admin_dir(worktree)
    if admin is None:
        raise WorkspaceError(f"{worktree} lost its .git file")
    atomic_write_text(admin / name, value + "\n")


def _rejected(res: GitResult) -> bool:
    text = f"{res.out}\n{res.err}"
    return not res.ok and ("[rejected]" in text or "stale info" in text)


def _rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _fetch_changes_nothing(theirs: Mapping[str, str], ours: Mapping[str, str]) -> bool:
    """Would ``git fetch --prune origin`` leave the clone's refs (``ours``) as they are, the remote's branches and
    tags being ``theirs``? Every branch at its tracking ref, no tracking ref without its branch, every tag here
    (one that is not may be one a fetch brings)."""
    branches: dict[str, str] = {}
    for ref, sha in theirs.items():
        if ref.startswith("refs/heads/"):
            branches[ref.removeprefix("refs/heads/")] = sha
        elif ours.get(ref) != sha:
            return False
    prefix = "refs/remotes/origin/"
    tracking = {
        ref.removeprefix(prefix): sha for ref, sha in ours.items() if ref.startswith(prefix) and ref != f"{prefix}HEAD"
    }
    return branches == tracking


class Workspace(WorkspaceGuard, WorktreeBudget):
    """The clone and worktrees agentos keeps for one repository."""

    _locks: ClassVar[weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]]] = (
        weakref.WeakKeyDictionary()
    )
    _scratch_in_use: ClassVar[set[Path]] = set()

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
        self._measured_size: int | None = None  # bytes under the task worktrees at the last budget pass

    def __repr__(self) -> str:
        return f"Workspace(repo={self.repo.name!r}, clone={str(self.clone_path)!r}, remote={self.remote_url!r})"

    @property
    def base(self) -> str:
        return self.repo.base_branch

    @property
    def lock(self) -> asyncio.Lock:
        """The lock for the shared clone, one per clone and event loop, shared by every instance."""
        locks = self._locks.setdefault(asyncio.get_running_loop(), {})
        return locks.setdefault(str(self.clone_path), asyncio.Lock())

    def worktree_for(self, branch: str) -> Path:
        return self.worktrees_dir / _dir_name(branch)

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
            await self._ensure_clone()

    async def fetch(self) -> None:
        async with self.lock:
            await self._ensure_clone()
            await self._fetch()

    async def fetch_refs(self, *names: str) -> dict[str, str]:
        """:meth:`fetch`, then :meth:`refs` of ``names`` as the fetch left them, read under the same lock (and not
        read again when the fetch was skipped: its check read them)."""
        async with self.lock:
            await self._ensure_clone()
            ours = await self._fetch()
            if ours is None:
                return await self.refs(*names)
        return {name: ours[name] for name in names if name in ours}

    async def _ensure_clone(self) -> None:
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
                await asyncio.to_thread(self._write_exclude)
                self._clone_ok = True
                return
            log.warning("clone_broken_recreating", repo=self.repo.name, path=str(self.clone_path))
            await asyncio.to_thread(_rmtree, self.clone_path)
        self.clone_path.parent.mkdir(parents=True, exist_ok=True)
        # clone_path.name, not repo.name: a GitHub repo name ("owner/name") is two path components
        for stale in self.clone_path.parent.glob(f".{self.clone_path.name}.tmp-*"):
            await asyncio.to_thread(_rmtree, stale)
        tmp = self.clone_path.with_name(f".{self.clone_path.name}.tmp-{uuid.uuid4().hex[:8]}")
        await self.git("init", "--bare", "-q", f"--initial-branch={self.base}", str(tmp), cwd=self.clone_path.parent)
        await self.git("remote", "add", "origin", self.remote_url, cwd=tmp)
        os.replace(tmp, self.clone_path)
        await asyncio.to_thread(self._write_exclude)
        self._clone_ok = True
        log.info("clone_created", repo=self.repo.name, path=str(self.clone_path))

    def _write_exclude(self) -> None:
        """``.agent_result.md`` in the clone's ``info/exclude``, which every worktree of it reads."""
        exclude = self.clone_path / "info" / "exclude"
        text = exclude.read_text(encoding="utf-8") if exclude.is_file() else ""
        if f"/{RESULT_FILE}" in text.splitlines():
            return
        if text and not text.endswith("\n"):
            text += "\n"
        atomic_write_text(exclude, f"{text}/{RESULT_FILE}\n", mode=0o644)

    async def _fetch(self) -> dict[str, str] | None:
        """``git fetch --prune origin``; the clone's refs when the fetch was skipped because it would change nothing.

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
                if _fetch_changes_nothing(theirs, ours):
                    return ours
        await self.git("fetch", "--prune", "--quiet", "origin", timeout=600)
        return None

    async def _worktree_entries(self) -> dict[Path, str | None]:
        """Registered worktrees: path → ``refs/heads/<branch>`` (None when detached)."""
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

    async def _drop_worktree(self, path: Path) -> None:
        """Unregister and delete a worktree; ``worktree prune`` only when ``worktree remove`` failed (a directory
        gone or broken), since a successful remove leaves nothing to prune."""
        res = await self.git("worktree", "remove", "--force", "--force", str(path), check=False)
        if path.exists():
            await asyncio.to_thread(_rmtree, path)
        if not res.ok:
            await self.git("worktree", "prune")

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
            await self._ensure_clone()
            fetched = await self._fetch()
            path, made = await self._ensure_worktree(branch, fetched)
            if made is not None:  # the lease: where origin/<branch> was when the worktree was made ("" = absent)
                await asyncio.to_thread(_write_mark, path, LEASE_MARK, made[0])
        (path / RESULT_FILE).unlink(missing_ok=True)
        if made is None:
            return path, None
        result = await self.run_hook("after_create", path)
        if not result.ok:
            raise HookFailed(result)
        await asyncio.to_thread(_write_mark, path, READY_MARK, branch)
        return path, None if result.ran else made[1]

    def _is_ready(self, path: Path) -> bool:
        return _read_mark(path, READY_MARK) is not None

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
        entries = await self._worktree_entries()
        if entries.get(path) == ref and path.is_dir() and self._is_ready(path):
            return path, None
        for other, other_ref in entries.items():
            if other_ref == ref or other == path:
                log.warning("worktree_repairing", repo=self.repo.name, branch=branch, path=str(other))
                await self._drop_worktree(other)
        if path.exists():
            log.warning("worktree_dir_stale", repo=self.repo.name, branch=branch, path=str(path))
            await self._drop_worktree(path)
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
        await asyncio.to_thread(self._write_exclude)
        await self.git("add", "-A", cwd=worktree)
        if os.path.lexists(worktree / RESULT_FILE):  # excluded, so staged only when tracked; absent, never staged
            await self.git("rm", "--cached", "-q", "--ignore-unmatch", "--", RESULT_FILE, cwd=worktree)
        admin = _admin_dir(worktree)
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
        return _loose_head(worktree) or (await self.git("rev-parse", "HEAD", cwd=worktree)).out.strip()

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
        admin = _admin_dir(worktree)
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
        admin = _admin_dir(worktree)
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
            lease = expected if expected is not None else _read_mark(worktree, LEASE_MARK)
            if lease is None:
                lease = await self.rev(tracking) or ""
            res = await self._push_with_lease(branch, sha, lease)
            if _rejected(res) and expected is None:
                await self._fetch()
                remote = await self.rev(tracking) or ""
                if remote == sha:
                    res = GitResult(0, "", "")
                elif not remote or await self.is_ancestor(remote, sha):
                    res = await self._push_with_lease(branch, sha, remote)
                lease = remote
            if res.ok:
                await asyncio.to_thread(_write_mark, worktree, LEASE_MARK, sha)
        if _rejected(res):
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
            await self._ensure_clone()
            if path.exists() or path in await self._worktree_entries():
                await self._drop_worktree(path)
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
                            await asyncio.to_thread(_rmtree, path)
                            removed.append(path)
                return removed
            await self._ensure_clone()
            await self.git("worktree", "prune")
            await asyncio.to_thread(self._remove_stale_locks)
            keep_dirs = {self.worktree_for(b) for b in keep}
            entries = await self._worktree_entries()
            candidates = set(entries) | (set(self.worktrees_dir.iterdir()) if self.worktrees_dir.is_dir() else set())
            scratch = self.worktrees_dir / ".scratch"
            if scratch.is_dir():
                candidates |= set(scratch.iterdir())
            for path in sorted(candidates):
                if path == scratch or path in keep_dirs or path in self._scratch_in_use:
                    continue
                if path.parent not in (self.worktrees_dir, scratch):
                    continue  # registered elsewhere: not ours to remove
                await self._drop_worktree(path)
                removed.append(path)
        if removed:
            log.info("worktrees_repaired", repo=self.repo.name, removed=[str(p) for p in removed])
        return removed

    def _remove_stale_locks(self) -> None:
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
            await self._ensure_clone()
            path.parent.mkdir(parents=True, exist_ok=True)
            await self.git("worktree", "add", "-q", "--detach", str(path), ref)
        self._scratch_in_use.add(path)
        try:
            yield path
        finally:
            self._scratch_in_use.discard(path)
            async with self.lock:
                await self._drop_worktree(path)

    async def restore_branch(self, worktree: Path, branch: str, sha: str) -> None:
        """Put ``worktree`` back on ``branch`` at ``sha``, clean (after an agent rewrote or left the branch)."""
        await self.git("checkout", "-q", "-f", "-B", branch, sha, cwd=worktree)
        await self.git("clean", "-ffdq", cwd=worktree)
        (worktree / RESULT_FILE).unlink(missing_ok=True)

    # ------------------------------------------------------------ commands in a worktree

    async def run_hook(self, name: HookName, worktree: Path) -> HookResult:
        """Run one of the repo's hooks in ``worktree`` with its time limit and a scrubbed environment."""
        command: str | None = getattr(self.repo.hooks, name)
        if not command:
            return HookResult(name, None)
        env = scrubbed_env(self.repo.pass_env)
        res = await run_shell(command, cwd=worktree, env=env, timeout=self.repo.hooks.timeout_s)
        result = HookResult(name, command, res.code, res.output_tail, res.timed_out, res.duration_s)
        if result.ok:
            log.info("hook_ran", repo=self.repo.name, hook=name, duration_s=res.duration_s)
        else:
            log.warning(
                "hook_failed",
                repo=self.repo.name,
                hook=name,
                code=res.code,
                timed_out=res.timed_out,
                tail=res.output_tail[-500:],
            )
        return result

    async def run_tests(self, worktree: Path, env: Mapping[str, str] | None = None) -> CommandResult:
        """The repo's ``test_command`` in ``worktree``, limited to ``test_timeout_s``.

        The environment is :func:`agentos.proc.scrubbed_env` with the repo's ``pass_env``, plus ``env``.
        """
        res = await run_shell(
            self.repo.test_command,
            cwd=worktree,
            env=scrubbed_env(self.repo.pass_env, env),
            timeout=self.repo.test_timeout_s,
        )
        log.info(
            "tests_ran",
            repo=self.repo.name,
            worktree=str(worktree),
            code=res.code,
            timed_out=res.timed_out,
            duration_s=res.duration_s,
        )
        return res
