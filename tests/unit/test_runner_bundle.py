"""Shipping an attempt as git bundles: what an agent did on a node lands in the daemon's worktree unchanged."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from agentos.agents.contract import RESULT_FILE
from agentos.runners.bundle import (
    BundleError,
    cached_tips,
    clone_cached,
    pack_branch,
    pack_thin,
    pack_work,
    unpack_work,
)

ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}


def git(cwd: Path, *args: str) -> str:
    import os

    done = subprocess.run(
        ["git", *args], cwd=cwd, env={**os.environ, **ENV}, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


@pytest.fixture
def worktree(tmp_path: Path) -> Path:
    repo = tmp_path / "daemon"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "a.txt").write_text("a\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "base")
    git(repo, "checkout", "-qb", "agentos/1-task")
    return repo


def test_commits_and_uncommitted_changes_come_back(worktree: Path, tmp_path: Path) -> None:
    """A commit, an edit left uncommitted, a new binary file and the result file: all in the worktree after."""
    start = git(worktree, "rev-parse", "HEAD")
    node = tmp_path / "node" / "repo"
    assert clone(worktree, tmp_path / "cache.git", node) == start
    (node / "a.txt").write_text("a\nb\n")
    git(node, "commit", "-qam", "agent: b")
    (node / "a.txt").write_text("a\nb\nc\n")
    (node / "blob.bin").write_bytes(bytes(range(256)))
    (node / RESULT_FILE).write_text("STATUS: complete\n")
    commits, patch = pack_work(node, start)
    assert commits is not None and RESULT_FILE.encode() not in patch
    unpack_work(worktree, start, commits, patch)
    unpack_work(worktree, start, commits, patch)  # again, as a restarted daemon does: the same worktree
    assert git(worktree, "log", "-1", "--format=%s") == "agent: b"
    assert git(worktree, "rev-parse", "HEAD") == git(node, "rev-parse", "HEAD")
    assert (worktree / "a.txt").read_text() == "a\nb\nc\n"
    assert (worktree / "blob.bin").read_bytes() == bytes(range(256))
    assert not (worktree / RESULT_FILE).exists()  # the runner writes it from the result, never through the patch


def test_an_agent_that_did_nothing_brings_nothing(worktree: Path, tmp_path: Path) -> None:
    start = git(worktree, "rev-parse", "HEAD")
    node = tmp_path / "node" / "repo"
    clone(worktree, tmp_path / "cache.git", node)
    assert pack_work(node, start) == (None, b"")
    unpack_work(worktree, start, None, b"")
    assert git(worktree, "rev-parse", "HEAD") == start and git(worktree, "status", "--porcelain") == ""


def clone(worktree: Path, cache: Path, dest: Path, branch: str = "agentos/1-task") -> str:
    """What a node does with what the daemon sends it: a bundle of what its cache lacks, cloned through it."""
    head = git(worktree, "rev-parse", branch)
    return clone_cached(cache, pack_thin(worktree, branch, cached_tips(cache)), branch, head, dest)


def test_a_bad_bundle_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match=r"^git fetch in .*"):
        clone_cached(tmp_path / "cache.git", b"not a bundle", "main", "0" * 40, tmp_path / "node" / "repo")


def test_a_node_that_has_the_history_gets_only_the_new_commits(worktree: Path, tmp_path: Path) -> None:
    """The first attempt on a node ships the whole branch; the next ones only what the node's cache lacks (or
    nothing, when it holds the commit already); each clone holds the branch's full history."""
    for i in range(30):
        (worktree / "a.txt").write_text(f"history {i}\n" * 200)
        git(worktree, "commit", "-qam", f"history {i}")
    cache = tmp_path / "cache.git"
    full = pack_branch(worktree, "agentos/1-task")
    assert pack_thin(worktree, "agentos/1-task", cached_tips(cache)) == full  # a node with no cache: everything
    clone(worktree, cache, tmp_path / "n1" / "repo")
    (worktree / "a.txt").write_text("the task's own change\n")
    git(worktree, "commit", "-qam", "task")
    thin = pack_thin(worktree, "agentos/1-task", cached_tips(cache))
    assert 0 < len(thin) < len(full) / 4, (len(thin), len(full))
    second = tmp_path / "n2" / "repo"
    assert clone(worktree, cache, second) == git(worktree, "rev-parse", "HEAD")
    assert git(second, "rev-list", "--count", "HEAD") == "32"
    assert pack_thin(worktree, "agentos/1-task", cached_tips(cache)) == b""  # nothing new since: nothing shipped
    assert clone(worktree, cache, tmp_path / "n3" / "repo") == git(worktree, "rev-parse", "HEAD")
    assert pack_thin(worktree, "agentos/1-task", ["f" * 40, "not a sha"]) == pack_branch(worktree, "agentos/1-task")


def test_a_thin_bundle_the_cache_cannot_take_is_refused(worktree: Path, tmp_path: Path) -> None:
    """The node's cache went away between `have` and `start`: the thin bundle is refused (the daemon then sends
    the whole branch, which a fresh cache takes)."""
    clone(worktree, tmp_path / "old.git", tmp_path / "n1" / "repo")
    (worktree / "a.txt").write_text("new\n")
    git(worktree, "commit", "-qam", "new")
    thin = pack_thin(worktree, "agentos/1-task", cached_tips(tmp_path / "old.git"))
    head = git(worktree, "rev-parse", "HEAD")
    with pytest.raises(BundleError, match="git fetch"):
        clone_cached(tmp_path / "new.git", thin, "agentos/1-task", head, tmp_path / "n2" / "repo")
    full = pack_branch(worktree, "agentos/1-task")
    assert clone_cached(tmp_path / "new.git", full, "agentos/1-task", head, tmp_path / "n3" / "repo") == head
