"""The pure parts of the workspace: branch names, directories, result types."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentos.config import RepoConfig
from agentos.gitutil import GitError
from agentos.workspace import DiffStat, HookFailed, HookResult, Workspace, branch_name

# what git check-ref-format allows, narrowed to what we promise: lowercase words and hyphens
SAFE_BRANCH = re.compile(r"^agentos/\d+(-[a-z0-9]+)*$")


class TestBranchName:
    @pytest.mark.parametrize(
        ("issue", "title", "expected"),
        [
            pytest.param(12, "Fix the bug!", "agentos/12-fix-the-bug", id="punctuation"),
            pytest.param(3, "Café crème: Ünïcode", "agentos/3-cafe-creme-unicode", id="accents"),
            pytest.param(4, "!!!", "agentos/4", id="nothing-left"),
            pytest.param(5, "", "agentos/5", id="empty"),
            pytest.param(6, "refs/heads/../x.lock", "agentos/6-refs-heads-x-lock", id="ref-syntax"),
            pytest.param(7, "日本語のタイトル", "agentos/7", id="no-ascii"),
            pytest.param(
                8,
                "Make the parser accept trailing commas in nested lists please",
                "agentos/8-make-the-parser-accept-trailing-commas",
                id="long",
            ),
        ],
    )
    def test_examples(self, issue: int, title: str, expected: str) -> None:
        """Titles become lowercase hyphenated ascii slugs of at most 40 characters."""
        assert branch_name(issue, title) == expected

    @given(issue=st.integers(min_value=1, max_value=10**6), title=st.text())
    def test_always_a_safe_ref(self, issue: int, title: str) -> None:
        """Whatever the title, the branch is a valid, short git ref of lowercase words."""
        name = branch_name(issue, title)
        assert SAFE_BRANCH.match(name), name
        slug = name.removeprefix(f"agentos/{issue}").removeprefix("-")
        assert len(slug) <= 40

    def test_long_single_word_is_cut(self) -> None:
        """A single word longer than the limit is truncated rather than dropped."""
        assert branch_name(1, "a" * 100) == "agentos/1-" + "a" * 40


class TestWorkspacePaths:
    def test_layout(self, tmp_path: Path) -> None:
        """One clone per repo under clones/, worktrees under worktrees/<repo>/<branch-slug>."""
        repo = RepoConfig(name="calc", path="/srv/calc", test_command="true")
        ws = Workspace(tmp_path, repo, remote_url="/srv/calc")
        assert ws.clone_path == tmp_path.resolve() / "clones" / "calc"
        assert ws.worktree_for("agentos/12-fix") == tmp_path.resolve() / "worktrees" / "calc" / "agentos-12-fix"
        assert "calc" in repr(ws)


class TestResults:
    def test_hook_result(self) -> None:
        """A hook is ok when it exited 0 within its time; an unconfigured hook is ok and did not run."""
        assert HookResult("before_run", None).ok and not HookResult("before_run", None).ran
        failed = HookResult("after_create", "make deps", code=2, output_tail="a\nb\nno rule to make deps\n")
        assert not failed.ok and failed.detail == "after_create hook exited 2 after 0.0s: b no rule to make deps"
        slow = HookResult("after_create", "sleep 9", code=-1, timed_out=True, duration_s=1.25)
        assert not slow.ok and slow.detail == "after_create hook timed out after 1.2s"
        assert str(HookFailed(failed)) == failed.detail

    def test_diff_stat(self) -> None:
        """An empty diff is one with no files."""
        assert DiffStat().empty
        assert not DiffStat(1, 2, 0, ("a.py",)).empty

    def test_git_error_message(self) -> None:
        """A GitError is one line: the command, the code and the end of stderr."""
        err = GitError(("push", "origin", "x"), 1, "To /r\n ! [rejected] x -> x (stale info)\nerror: failed to push\n")
        assert str(err) == "git push origin x failed (1): To /r ! [rejected] x -> x (stale info) error: failed to push"
        assert "\n" not in str(err)
