"""A sandboxed run's private view of the shared clone: it can commit on its own branch and nothing else.

A task's worktree is a linked worktree of agentos's shared clone: its ``.git`` file points at the clone's
``worktrees/<name>``, and a commit there writes the clone's ``objects/``, ``refs/`` and ``logs/``, which every
other task's branch lives in too. Bound read-write, an agent could ``git update-ref`` another task's branch,
push to the clone, or delete the objects other branches need. So a sandbox sees (:meth:`GitView.binds`):

* the clone read-only, its own admin folder read-write (``HEAD``, the index) but for the files that say where the
  clone and the worktree are (:data:`PINNED`);
* ``refs/`` and ``logs/``: a private copy (:func:`open_view`), so whatever it does to refs, only the copy moves;
* ``objects/``: a private, empty object folder whose ``info/alternates`` names the clone's real objects, bound
  read-only elsewhere in the sandbox: git reads every object it had and writes new ones into the private folder.

After the run (:func:`close_view`) the daemon takes back only what belongs to the run's branch: each new loose
object is checked (its content must hash to its name) and copied into the clone where it is missing, each new
pack goes through ``git unpack-objects`` (git checks it), then the branch the worktree had checked out at the
start moves to its new tip in the copy (``git update-ref`` from the old tip; only a commit the clone now has).
Every other ref the run wrote, and the copy, are thrown away.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import structlog

__all__ = ["GitView", "close_view", "open_view"]

log = structlog.get_logger(__name__)

_SHA = re.compile(r"^[0-9a-f]{40}$")
PINNED = ("commondir", "gitdir")
"""The admin folder's files that say where the clone and the worktree are: read-only in the sandbox, or an agent
could point the daemon's own git (and the next sandbox's binds) at any repository or folder on the host."""
_CHUNK = 1 << 20
_GIT = ("git", "-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false")


@dataclass(frozen=True)
class GitView:
    """One run's private refs and objects over the shared clone ``common``."""

    common: Path
    """The shared clone's git folder."""
    admin: Path
    """The worktree's admin folder in it (read-write in the sandbox but for its :data:`PINNED` files)."""
    folder: Path
    """The private copy: ``objects/`` (new objects), ``refs/``, ``logs/``, and ``base``, where the clone's real
    objects are seen read-only."""
    branch: str | None
    """The ref the worktree had checked out at the start (``refs/heads/…``); the only one taken back."""
    start: str | None
    """Its tip then."""

    def binds(self) -> list[str]:
        """The bwrap arguments that lay the view over the (read-only) clone, in this order."""
        return [
            "--ro-bind", str(self.common / "objects"), str(self.folder / "base"),
            "--bind", str(self.folder / "objects"), str(self.common / "objects"),
            "--bind", str(self.folder / "refs"), str(self.common / "refs"),
            "--bind", str(self.folder / "logs"), str(self.common / "logs"),
            *(arg for name in PINNED if (self.admin / name).is_file()
              for arg in ("--ro-bind", str(self.admin / name), str(self.admin / name))),
        ]  # fmt: skip


def _common_dir(worktree: Path) -> tuple[Path, Path] | None:
    """``(admin folder, shared git folder)`` of a linked worktree, else None."""
    dotgit = worktree / ".git"
    try:
        text = dotgit.read_text(encoding="utf-8").strip() if dotgit.is_file() else ""
    except OSError:
        return None
    if not text.startswith("gitdir:"):
        return None
    admin = Path(text.removeprefix("gitdir:").strip())
    admin = admin if admin.is_absolute() else worktree / admin
    try:
        common_rel = (admin / "commondir").read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return admin, Path(os.path.normpath(admin / common_rel))


def _read_ref(common: Path, ref: str, refs_folder: Path | None = None) -> str | None:
    """A ref's sha: its loose file (never through a symlink, at most 100 bytes), else ``packed-refs``."""
    path = (refs_folder or common / "refs") / ref.removeprefix("refs/")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as f:
            text = f.read(100).decode("ascii", "replace").strip()
        return text if _SHA.match(text) else None
    except OSError:
        pass
    if refs_folder is not None:  # the copy's packed refs are the clone's: nothing the run wrote
        return None
    with contextlib.suppress(OSError):
        for line in (common / "packed-refs").read_text(encoding="utf-8").splitlines():
            sha, _, name = line.partition(" ")
            if name == ref and _SHA.match(sha):
                return sha
    return None


def open_view(worktree: Path) -> GitView | None:
    """The private view of a linked ``worktree``'s shared clone (``None`` for any other folder)."""
    found = _common_dir(worktree)
    if found is None:
        return None
    admin, common = found
    try:
        head = (admin / "HEAD").read_text(encoding="utf-8").strip()
    except OSError:
        head = ""
    branch = head.removeprefix("ref:").strip() if head.startswith("ref:") else None
    (common / "logs").mkdir(exist_ok=True)  # a mount point must exist in the read-only clone
    folder = Path(tempfile.mkdtemp(prefix="agentos-gitview-"))
    try:
        shutil.copytree(common / "refs", folder / "refs", symlinks=True)
        shutil.copytree(common / "logs", folder / "logs", symlinks=True)
        for name in ("base", "objects/info", "objects/pack"):
            (folder / name).mkdir(parents=True)
        (folder / "objects" / "info" / "alternates").write_text(f"{folder / 'base'}\n", encoding="utf-8")
    except OSError:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return GitView(common, admin, folder, branch, _read_ref(common, branch) if branch else None)


def _loose_ok(path: Path, sha: str) -> bool:
    """Whether a loose object file (a regular file, not a link) decompresses to content hashing to ``sha``; read
    and inflated a chunk at a time, so a planted decompression bomb costs time, never the daemon's memory."""
    digest, inflate = hashlib.sha1(usedforsecurity=False), zlib.decompressobj()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as f:
            while chunk := f.read(_CHUNK):
                while chunk:
                    digest.update(inflate.decompress(chunk, _CHUNK))
                    chunk = inflate.unconsumed_tail
            digest.update(inflate.flush())
    except (OSError, zlib.error):
        return False
    return inflate.eof and digest.hexdigest() == sha


def _git(view: GitView, *args: str, stdin: int | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", os.defpath), "LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0"}
    return subprocess.run(
        [*_GIT, *args], cwd=view.common, env=env, stdin=stdin, capture_output=True, text=True, timeout=300
    )


def _import_objects(view: GitView) -> int:
    """Copy the run's new objects into the clone (checked: a planted object under a wrong name is dropped)."""
    objects, imported = view.folder / "objects", 0
    for sub in objects.iterdir():
        if not re.fullmatch(r"[0-9a-f]{2}", sub.name) or not sub.is_dir() or sub.is_symlink():
            continue
        for path in sub.iterdir():
            sha = sub.name + path.name
            target = view.common / "objects" / sub.name / path.name
            if not _SHA.match(sha) or target.exists() or not _loose_ok(path, sha):
                continue
            target.parent.mkdir(exist_ok=True)
            tmp = target.parent / f"tmp_obj_{path.name}"
            shutil.copyfile(path, tmp, follow_symlinks=False)
            os.chmod(tmp, 0o444)
            os.replace(tmp, target)
            imported += 1
    for pack in (objects / "pack").glob("*.pack"):
        if pack.is_symlink() or not pack.is_file():
            continue
        with open(pack, "rb") as f:
            done = _git(view, "unpack-objects", "-q", stdin=f.fileno())
        if done.returncode != 0:
            log.warning("sandbox_pack_refused", pack=pack.name, error=done.stderr.strip()[-300:])
    return imported


def close_view(view: GitView) -> str | None:
    """Take back the run's branch (see the module doc) and remove the copy; the branch's new tip, if it moved.
    Never raises: what could not be taken back is logged (``sandbox_branch_not_taken``) and left in no ref."""
    try:
        return _take_back(view)
    except (OSError, subprocess.SubprocessError, UnicodeError) as exc:
        log.warning("sandbox_branch_not_taken", branch=view.branch, reason=f"{type(exc).__name__}: {exc}")
        return None
    finally:
        shutil.rmtree(view.folder, ignore_errors=True)


def _take_back(view: GitView) -> str | None:
    """:func:`close_view` without the clean-up: the objects, then the branch."""
    _import_objects(view)  # also what was staged and not committed: the index names it
    if view.branch is None:
        return None
    tip = _read_ref(view.common, view.branch, view.folder / "refs")
    if tip is None or tip == view.start:
        return None
    complete = ["rev-list", "--quiet", "--objects", tip, *([f"^{view.start}"] if view.start else [])]
    if _git(view, "cat-file", "-e", f"{tip}^{{commit}}").returncode or _git(view, *complete).returncode:
        log.warning("sandbox_branch_not_taken", branch=view.branch, tip=tip, reason="not a complete commit")
        return None
    moved = _git(view, "update-ref", "-m", "agentos: a sandboxed run", view.branch, tip, view.start or "")
    if moved.returncode != 0:
        log.warning("sandbox_branch_not_taken", branch=view.branch, tip=tip, reason=moved.stderr.strip()[-300:])
        return None
    return tip
