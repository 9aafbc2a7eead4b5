"""An attempt's repo across machines, as git bundles: out to the node, and the agent's work back.

* :func:`pack_branch` (daemon): the task branch with its whole history, for the node to clone.
* :func:`clone_branch` (node): a private clone of that bundle, on the task branch.
* :func:`pack_work` (node): what the agent did since ``start``: its commits as a bundle (``None`` when it made
  none) and its uncommitted changes as a binary patch (``b""`` when there are none); the result file not in it.
* :func:`unpack_work` (daemon): the commits fetched into the worktree (its branch moved to them), then the patch
  applied to its files: the worktree as if the agent had run there.

Blocking (git processes); the daemon calls them in a thread.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from agentos.agents.contract import RESULT_FILE
from agentos.errors import AgentosError

__all__ = ["BundleError", "clone_branch", "pack_branch", "pack_work", "unpack_work"]

_TIMEOUT_S = 600


class BundleError(AgentosError):
    """A git step of shipping an attempt failed (the line says which and why)."""


def _git(cwd: Path, *args: str, stdin: bytes | None = None) -> bytes:
    done = subprocess.run(["git", *args], cwd=cwd, input=stdin, capture_output=True, timeout=_TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise BundleError(f"git {args[0]} in {cwd}: {done.stderr.decode(errors='replace').strip()[-500:]}")
    return done.stdout


def pack_branch(worktree: Path, branch: str) -> bytes:
    """The bundle of ``branch`` (checked out in ``worktree``) and all its history."""
    with tempfile.TemporaryDirectory(prefix="agentos-bundle-") as tmp:
        path = Path(tmp) / "repo.bundle"
        _git(worktree, "bundle", "create", "--quiet", str(path), f"refs/heads/{branch}")
        return path.read_bytes()


def clone_branch(bundle: bytes, branch: str, dest: Path) -> str:
    """Clone ``bundle`` into ``dest`` on ``branch``; the commit it is on."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    path = dest.parent / "repo.bundle"
    path.write_bytes(bundle)
    _git(dest.parent, "clone", "--quiet", "--branch", branch, str(path), str(dest))
    return _git(dest, "rev-parse", "HEAD").decode().strip()


def pack_work(repo: Path, start: str) -> tuple[bytes | None, bytes]:
    """``(commits, patch)``: the commits on HEAD since ``start`` as a bundle, the rest as a binary patch."""
    head = _git(repo, "rev-parse", "HEAD").decode().strip()
    commits = None
    if head != start:
        with tempfile.TemporaryDirectory(prefix="agentos-bundle-") as tmp:
            path = Path(tmp) / "work.bundle"
            _git(repo, "bundle", "create", "--quiet", str(path), f"^{start}", "HEAD")
            commits = path.read_bytes()
    _git(repo, "add", "-A", "--", ".", f":(exclude){RESULT_FILE}")
    patch = _git(repo, "diff", "--cached", "--binary", "HEAD")
    return commits, patch


def unpack_work(worktree: Path, start: str, commits: bytes | None, patch: bytes) -> None:
    """Bring the agent's commits and uncommitted changes into ``worktree`` (see the module doc). The worktree goes
    back to ``start`` first, so a second unpack (a daemon killed halfway through the first) gives the same result."""
    _git(worktree, "reset", "--quiet", "--hard", start)
    _git(worktree, "clean", "-fdq")
    if commits is not None:
        with tempfile.TemporaryDirectory(prefix="agentos-bundle-") as tmp:
            path = Path(tmp) / "work.bundle"
            path.write_bytes(commits)
            _git(worktree, "fetch", "--quiet", "--no-tags", str(path), "HEAD")
        _git(worktree, "reset", "--quiet", "--hard", "FETCH_HEAD")
    if patch:
        _git(worktree, "apply", "--binary", "--whitespace=nowarn", "-", stdin=patch)
