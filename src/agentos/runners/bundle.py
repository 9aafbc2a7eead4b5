"""An attempt's repo across machines, as git bundles: out to the node, and the agent's work back.

* :func:`pack_branch` (daemon): the task branch with its whole history, for the node to clone.
* :func:`pack_thin` (daemon): only what a node lacks: the branch without the history of the commits its cache of
  the repo already holds (:func:`cached_tips`); ``b""`` when it holds the branch's commit itself.
* :func:`clone_cached` (node): the bundle fetched into the node's cache of the repo (one bare repository per repo,
  locked while it changes), then a private clone of it on the task branch.
* :func:`pack_work` (node): what the agent did since ``start``: its commits as a bundle (``None`` when it made
  none) and its uncommitted changes as a binary patch (``b""`` when there are none); the result file not in it.
* :func:`unpack_work` (daemon): the commits fetched into the worktree (its branch moved to them), then the patch
  applied to its files: the worktree as if the agent had run there.

Blocking (git processes); the daemon calls them in a thread.
"""

from __future__ import annotations

import fcntl
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from agentos.agents.contract import RESULT_FILE
from agentos.errors import AgentosError

__all__ = [
    "BundleError",
    "cached_tips",
    "clone_cached",
    "pack_branch",
    "pack_thin",
    "pack_work",
    "unpack_work",
]

_TIMEOUT_S = 600
_TIPS = 20


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


def pack_thin(worktree: Path, branch: str, have: list[str]) -> bytes:
    """The bundle of ``branch`` less the history of ``have`` (commits a node holds; those unknown here are left
    out): ``b""`` when the node holds the branch's commit already, the full bundle when it holds none of ours."""
    ref = f"refs/heads/{branch}"
    known: list[str] = []
    if have:
        batch = "".join(f"{sha}^{{commit}}\n" for sha in have).encode()
        found = _git(worktree, "cat-file", "--batch-check=%(objectname)", stdin=batch).decode().split()
        known = [sha for sha in found if len(sha) == 40]
    if known and _git(worktree, "rev-list", "--count", ref, *(f"^{sha}" for sha in known)).strip() == b"0":
        return b""
    with tempfile.TemporaryDirectory(prefix="agentos-bundle-") as tmp:
        path = Path(tmp) / "repo.bundle"
        _git(worktree, "bundle", "create", "--quiet", str(path), ref, *(f"^{sha}" for sha in known))
        return path.read_bytes()


@contextmanager
def _locked(cache: Path) -> Iterator[None]:
    """One attempt at a time changes a node's cache of a repo (attempts of other daemons and repos go on)."""
    cache.parent.mkdir(parents=True, exist_ok=True)
    with open(cache.with_name(cache.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def cached_tips(cache: Path) -> list[str]:
    """The newest branch tips of the node's cache (at most 20; none when there is no cache yet)."""
    if not (cache / "HEAD").exists():
        return []
    with _locked(cache):
        out = _git(cache, "for-each-ref", "--sort=-committerdate", f"--count={_TIPS}", "--format=%(objectname)")
    return out.decode().split()


def clone_cached(cache: Path, bundle: bytes, branch: str, head: str, dest: Path) -> str:
    """Fetch ``bundle`` (``b""``: the cache holds ``head`` already) into ``cache`` as ``branch``, then clone that
    into ``dest``; the commit it is on. A bundle whose prerequisites the cache lacks is a :class:`BundleError`."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _locked(cache):
        if not (cache / "HEAD").exists():
            _git(cache.parent, "init", "--quiet", "--bare", str(cache))
        if bundle:
            path = dest.parent / "repo.bundle"
            path.write_bytes(bundle)
            _git(cache, "fetch", "--quiet", "--no-tags", str(path), f"+refs/heads/{branch}:refs/heads/{branch}")
            path.unlink()
        else:
            _git(cache, "update-ref", f"refs/heads/{branch}", head)
        # Copies, not hard links: nothing the agent does to its clone's objects reaches the cache.
        _git(dest.parent, "clone", "--quiet", "--no-hardlinks", "--branch", branch, str(cache), str(dest))
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
