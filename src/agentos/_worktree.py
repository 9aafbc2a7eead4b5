"""The values a :class:`~agentos.workspace.Workspace` returns, and what it reads of one worktree from git's files.

Pure (or nearly: a few small file reads): branch names and directories, the worktree's private git dir
(:func:`admin_dir`) and the marks agentos keeps there, HEAD read without a git process (:func:`loose_head`), and
whether a fetch would change nothing. :mod:`agentos.workspace` re-exports the public types.
"""

from __future__ import annotations

import re
import shutil
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from agentos.fsutil import atomic_write_text
from agentos.gitutil import GitResult, WorkspaceError

__all__ = [
    "LEASE_MARK",
    "READY_MARK",
    "DiffStat",
    "HookFailed",
    "HookName",
    "HookResult",
    "PushRejected",
    "RebaseResult",
    "admin_dir",
    "branch_name",
    "dir_name",
    "fetch_changes_nothing",
    "loose_head",
    "push_rejected",
    "read_mark",
    "rmtree",
    "write_mark",
]

HookName = Literal["after_create", "before_run", "after_run", "before_remove"]
READY_MARK = "agentos-ready"
LEASE_MARK = "agentos-lease"
SLUG_MAX = 40
OID_RE = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")


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


def dir_name(branch: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", branch.replace("/", "-")).strip("-.")
    return name or "branch"


def admin_dir(worktree: Path) -> Path | None:
    """The worktree's private git dir (``<clone>/worktrees/<id>``), read from its ``.git`` file."""
    try:
        text = (worktree / ".git").read_text(encoding="utf-8")
    except OSError:
        return None
    if not text.startswith("gitdir:"):
        return None
    admin = Path(text.removeprefix("gitdir:").strip())
    return admin if admin.is_absolute() else (worktree / admin).resolve()


def loose_head(worktree: Path) -> str | None:
    """The commit HEAD of a worktree of ours names, as ``rev-parse HEAD`` would say, read from the files git keeps
    it in: the worktree's own ``HEAD`` (detached), or the loose ref of its branch in the clone (a loose ref wins
    over ``packed-refs``, and ``git commit`` writes one). None whenever that does not settle it (a packed or
    unborn branch, a ref format other than files, anything unexpected): then git is asked."""
    admin = admin_dir(worktree)
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


def ref_from_files(git_dir: Path, ref: str) -> str | None:
    """The commit a branch ref (``refs/remotes/origin/main``) of the clone at ``git_dir`` names, read from git's
    files: its loose ref, which wins, else its line in ``packed-refs``. None whenever that does not settle it."""
    if not ref.startswith("refs/") or ".." in ref or "/." in ref or ref.endswith(".lock"):
        return None
    try:
        sha = (git_dir / ref).read_text(encoding="ascii").strip()
    except FileNotFoundError:
        sha = ""
        try:
            packed = (git_dir / "packed-refs").read_text(encoding="ascii")
        except (OSError, ValueError):
            return None
        for line in packed.splitlines():
            oid, _, name = line.partition(" ")
            if name == ref:
                sha = oid
                break
    except (OSError, ValueError):
        return None
    return sha if OID_RE.fullmatch(sha) else None


def read_mark(worktree: Path, name: str) -> str | None:
    admin = admin_dir(worktree)
    try:
        return (admin / name).read_text(encoding="utf-8").strip() if admin else None
    except FileNotFoundError:
        return None


def write_mark(worktree: Path, name: str, value: str) -> None:
    admin = admin_dir(worktree)
    if admin is None:
        raise WorkspaceError(f"{worktree} lost its .git file")
    atomic_write_text(admin / name, value + "\n")


def push_rejected(res: GitResult) -> bool:
    text = f"{res.out}\n{res.err}"
    return not res.ok and ("[rejected]" in text or "stale info" in text)


def rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def fetch_changes_nothing(theirs: Mapping[str, str], ours: Mapping[str, str]) -> bool:
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
