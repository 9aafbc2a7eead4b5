"""Shipping an attempt as git bundles: what an agent did on a node lands in the daemon's worktree unchanged."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from agentos.agents.contract import RESULT_FILE
from agentos.runners.bundle import BundleError, clone_branch, pack_branch, pack_work, unpack_work

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
    assert clone_branch(pack_branch(worktree, "agentos/1-task"), "agentos/1-task", node) == start
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
    clone_branch(pack_branch(worktree, "agentos/1-task"), "agentos/1-task", node)
    assert pack_work(node, start) == (None, b"")
    unpack_work(worktree, start, None, b"")
    assert git(worktree, "rev-parse", "HEAD") == start and git(worktree, "status", "--porcelain") == ""


def test_a_bad_bundle_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match=r"^git clone in .*"):
        clone_branch(b"not a bundle", "main", tmp_path / "node" / "repo")
