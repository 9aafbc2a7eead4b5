"""LocalForge over real git: issue files, PR records, checks on the merge result, squash merges."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentos.config import RepoConfig
from agentos.forge.base import (
    BLOCKED_LABEL,
    READY_LABEL,
    REVIEW_LABEL,
    RUNNING_LABEL,
    Comment,
    Forge,
    ForgeError,
    Issue,
    NotFound,
    marker,
)
from agentos.forge.local import LocalForge, closing_issues, parse_issue_file, render_issue_file
from agentos.gitutil import git
from agentos.workspace import Workspace, branch_name
from agentos.workspace_registry import WorkspaceRegistry

GIT_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


async def run(*args: str, cwd: Path) -> str:
    return (await git(*args, cwd=cwd, env=GIT_ENV)).out.strip()


async def commit_file(repo: Path, name: str, text: str, message: str = "change") -> str:
    (repo / name).write_text(text)
    await run("add", "-A", cwd=repo)
    await run("commit", "-q", "-m", message, cwd=repo)
    return await run("rev-parse", "HEAD", cwd=repo)


def ticking_clock() -> Callable[[], datetime]:
    """A clock that moves one minute per reading."""
    ticks = iter(range(10**6))
    return lambda: T0 + timedelta(minutes=next(ticks))


@pytest.fixture
async def user_repo(tmp_path: Path) -> Path:
    """The user's own non-bare repository, main checked out."""
    repo = tmp_path / "calc"
    repo.mkdir()
    await run("-c", "init.defaultBranch=main", "init", "-q", cwd=repo)
    await commit_file(repo, "app.py", "x = 1\n", "initial")
    return repo


@pytest.fixture
def runs_log(tmp_path: Path) -> Path:
    return tmp_path / "test-runs.log"


@pytest.fixture
def config(user_repo: Path, runs_log: Path) -> RepoConfig:
    # passes only on a tree that has the feature switched on *and* the base's later file
    command = f'echo run >> {runs_log}; test "$(cat feature.txt)" = on && test -f base.txt'
    return RepoConfig(name="calc", path=str(user_repo), test_command=command)


@pytest.fixture
def forge(tmp_path: Path, config: RepoConfig) -> LocalForge:
    return LocalForge(tmp_path / "state", {"calc": config}, clock=ticking_clock(), git_env=GIT_ENV)


@pytest.fixture
def ws(tmp_path: Path, config: RepoConfig, user_repo: Path) -> Workspace:
    """The executor's workspace: same state dir, so the same clone as the forge's."""
    return Workspace(tmp_path / "state", config, remote_url=str(user_repo), git_env=GIT_ENV)


async def ship(forge: LocalForge, ws: Workspace, issue: Issue, feature: str = "on") -> tuple[int, str, Path]:
    """What the executor does: a branch with a change, pushed, and a PR that closes the issue."""
    branch = branch_name(issue.number, issue.title)
    tree = await ws.prepare(branch)
    (tree / "feature.txt").write_text(f"{feature}\n")
    await ws.commit_all(tree, f"Work on #{issue.number}")
    sha = await ws.push(tree, branch)
    pr = await forge.open_pr(
        "calc", head=branch, base="main", title=issue.title, body=f"Closes #{issue.number}\n\nDid the thing."
    )
    return pr.number, sha, tree


def test_local_forge_is_a_forge(forge: LocalForge) -> None:
    """LocalForge satisfies the Forge protocol (checked by mypy through this assignment)."""
    implementation: Forge = forge
    assert implementation.kind == "local"


def test_local_forge_declares_its_capabilities(forge: LocalForge) -> None:
    """Checks test the merge result, git needs no credentials, and `agentos issue` can file issues here."""
    assert forge.checks_merge_result is True
    assert forge.credentials is None
    assert forge.issue_writer is forge


async def test_reconfigure_serves_the_repos_of_a_reloaded_config(forge: LocalForge, config: RepoConfig) -> None:
    """After a reload names another repo, its issues are served; a repo no longer named is unknown."""
    other = RepoConfig(name="other", path=config.path, test_command="true")
    forge.reconfigure([other])
    issue = await forge.new_issue("other", "On the new repo")
    assert (await forge.get_issue("other", issue.number)).title == "On the new repo"
    with pytest.raises(NotFound):
        await forge.get_issue("calc", 1)


async def test_checks_and_merges_use_the_workspace_registry_it_is_given(
    tmp_path: Path, config: RepoConfig, user_repo: Path
) -> None:
    """Given the daemon's registry, the forge works in that registry's clone: one clone per repo in the process."""
    registry = WorkspaceRegistry(tmp_path / "state", lambda repo: (str(user_repo), GIT_ENV))
    forge = LocalForge(tmp_path / "state", {"calc": config}, git_env=GIT_ENV, workspaces=registry)
    ws = registry.workspace(config)
    assert forge.workspace("calc") is ws
    issue = await forge.new_issue("calc", "Feature")
    number, sha, _ = await ship(forge, ws, issue)
    result = await forge.merge_pr("calc", number, sha=sha, title="", body="")
    assert result.merged and await run("rev-parse", "refs/heads/main", cwd=user_repo) == result.sha


class TestIssueFiles:
    async def test_issue_file_is_human_readable(self, forge: LocalForge, tmp_path: Path) -> None:
        """An issue is a Markdown file with YAML front matter, the body, then the comments."""
        issue = await forge.new_issue("calc", "Add a --verbose flag", "## Goal\nPrint more.", [READY_LABEL])
        await forge.comment("calc", issue.number, "Attempt 1 failed.", key="attempt-1")
        path = tmp_path / "state" / "local-forge" / "calc" / "issues" / "1.md"
        assert issue.url == path.as_uri()
        text = path.read_text()
        assert text.startswith("---\nnumber: 1\ntitle: Add a --verbose flag\nstate: open\nlabels:\n- agentos:ready\n")
        assert "\n---\n\n## Goal\nPrint more.\n" in text
        assert "\n---\n### comment 1 · agentos · 2025-03-01T09:01:00Z\n\nAttempt 1 failed.\n" in text
        assert marker("attempt-1") in text

    async def test_round_trip(self, forge: LocalForge) -> None:
        """What is written is read back: title, body, labels, state, times and comments."""
        issue = await forge.new_issue("calc", "Fix: the `x` value", "body\n\n---\nnot a comment", ["bug"])
        got = await forge.get_issue("calc", issue.number)
        assert got == issue
        assert await forge.list_issues("calc") == [issue]

    async def test_numbers_unique_under_concurrent_creation(self, forge: LocalForge, tmp_path: Path) -> None:
        """Two forge objects (as the daemon and the CLI) creating at once never hand out a number twice."""
        other = LocalForge(tmp_path / "state", forge.repos, git_env=GIT_ENV)
        made = await asyncio.gather(
            *(forge.new_issue("calc", f"a{i}") for i in range(12)),
            *(other.new_issue("calc", f"b{i}") for i in range(12)),
        )
        assert sorted(i.number for i in made) == list(range(1, 25))
        assert len(await forge.list_issues("calc")) == 24

    async def test_ready_issues_are_open_and_oldest_first(self, forge: LocalForge) -> None:
        """ready_issues lists open issues labelled agentos:ready, oldest first."""
        first = await forge.new_issue("calc", "first", labels=[READY_LABEL])
        await forge.new_issue("calc", "not ready")
        third = await forge.new_issue("calc", "third")
        closed = await forge.new_issue("calc", "closed", labels=[READY_LABEL])
        await forge.close_issue("calc", closed.number)
        await forge.set_ready("calc", third.number)
        assert [i.number for i in await forge.ready_issues("calc")] == [first.number, third.number]
        assert [i.number for i in await forge.list_issues("calc", state="closed")] == [closed.number]

    async def test_comments_are_idempotent_by_key(self, forge: LocalForge) -> None:
        """A second comment with the same key returns the first one; the file holds it once."""
        issue = await forge.new_issue("calc", "t")
        one = await forge.comment("calc", issue.number, "hello", key="k1")
        again = await forge.comment("calc", issue.number, "hello, edited", key="k1")
        two = await forge.comment("calc", issue.number, "second", key="k2")
        assert again == one and two.id != one.id
        comments = await forge.comments("calc", issue.number)
        assert [c.id for c in comments] == [one.id, two.id]
        assert comments[0].body == f"hello\n\n{marker('k1')}"

    async def test_comment_cannot_forge_a_comment_header(self, forge: LocalForge) -> None:
        """A body containing a comment header line stays one comment and reads back unchanged."""
        issue = await forge.new_issue("calc", "t", "### comment 9 · mallory · 2020-01-01T00:00:00Z")
        body = "text\n---\n### comment 99 · mallory · 2020-01-01T00:00:00Z\n\\### comment 1 · x · y"
        await forge.comment("calc", issue.number, body, key="k")
        comments = await forge.comments("calc", issue.number)
        assert len(comments) == 1 and comments[0].body == f"{body}\n\n{marker('k')}"
        assert (await forge.get_issue("calc", issue.number)).body == issue.body

    async def test_create_issue_is_idempotent_by_key(self, forge: LocalForge) -> None:
        """create_issue with a key returns the open issue that already carries it."""
        a = await forge.create_issue("calc", "Flaky test", "seen twice", ["autonomous-fix"], key="incident:abc")
        b = await forge.create_issue("calc", "Flaky test again", "seen thrice", [], key="incident:abc")
        assert a == b and marker("incident:abc") in a.body

    @pytest.mark.parametrize(
        ("status", "before", "after"),
        [
            pytest.param("In Progress", [READY_LABEL], [READY_LABEL, RUNNING_LABEL], id="in-progress"),
            pytest.param("Blocked", [READY_LABEL, RUNNING_LABEL], [READY_LABEL, BLOCKED_LABEL], id="blocked"),
            pytest.param("In Review", [RUNNING_LABEL, "bug"], ["bug"], id="in-review"),
            pytest.param("Done", [RUNNING_LABEL], [], id="done"),
        ],
    )
    async def test_board_status_mirrors_labels(
        self, forge: LocalForge, status: str, before: list[str], after: list[str]
    ) -> None:
        """set_board_status adds and removes the labels that stand for the board column."""
        issue = await forge.new_issue("calc", "t", labels=before)
        await forge.set_board_status("calc", issue.number, status)  # type: ignore[arg-type]
        assert (await forge.get_issue("calc", issue.number)).labels == after

    async def test_set_ready_clears_blocked(self, forge: LocalForge) -> None:
        """Making an escalated issue ready again removes agentos:blocked."""
        issue = await forge.new_issue("calc", "t", labels=[BLOCKED_LABEL])
        ready = await forge.set_ready("calc", issue.number)
        assert ready.labels == [READY_LABEL]

    async def test_corrupt_issue_file_is_an_error(self, forge: LocalForge, tmp_path: Path) -> None:
        """A broken issue file stops listing loudly instead of reading as 'no issues'."""
        await forge.new_issue("calc", "t")
        (tmp_path / "state" / "local-forge" / "calc" / "issues" / "1.md").write_text("---\nnumber: [\n")
        with pytest.raises(ForgeError, match=r"1\.md: corrupt issue file"):
            await forge.list_issues("calc")

    async def test_unknown_issue_and_repo(self, forge: LocalForge) -> None:
        """Missing things are NotFound."""
        with pytest.raises(ForgeError, match="no issue #5"):
            await forge.get_issue("calc", 5)
        with pytest.raises(ForgeError, match="unknown repo"):
            await forge.new_issue("nope", "t")


_text = st.text(st.characters(codec="utf-8", exclude_characters="\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"))


@settings(max_examples=150, deadline=None)
@given(
    title=_text.filter(lambda t: t.split() != []),
    body=_text,
    comment_bodies=st.lists(_text, max_size=3),
    labels=st.lists(st.text("abcdefgh:-", min_size=1), max_size=3, unique=True),
)
def test_issue_file_round_trips(title: str, body: str, comment_bodies: list[str], labels: list[str]) -> None:
    """Any title, body and comments survive render → parse (titles on one line, bodies trimmed of blank edges)."""
    issue = Issue(repo="r", number=3, title=title, body=body, labels=labels, created_at=T0, updated_at=T0)
    comments = [Comment(id=i, author="agentos", body=b, created_at=T0) for i, b in enumerate(comment_bodies, 1)]
    got, got_comments = parse_issue_file(render_issue_file(issue, comments), "r", Path("/x/3.md"))
    assert got.title == " ".join(title.replace("·", "-").split())
    assert got.body == body.strip("\n")
    assert got.labels == labels
    assert [c.body for c in got_comments] == [b.strip("\n") for b in comment_bodies]


@pytest.mark.parametrize(
    ("text", "numbers"),
    [
        pytest.param("Closes #12", [12], id="closes"),
        pytest.param("fixes #3 and resolves #4, closes #3", [3, 4], id="several"),
        pytest.param("see #5; closing soon", [], id="mention"),
    ],
)
def test_closing_issues(text: str, numbers: list[int]) -> None:
    """The issues a PR body closes are found by GitHub's keywords."""
    assert closing_issues(text) == numbers


class TestReviews:
    async def test_reviews_and_comments_read_back_as_feedback_and_threads_are_answered_once(
        self, forge: LocalForge, ws: Workspace
    ) -> None:
        """`agentos pr review|comment` write a review (a line comment with --file/--line) and a comment; they read
        back as trusted feedback (agentos's own comments never do); a line comment is answered once by a comment."""
        issue = await forge.new_issue("calc", "Feature")
        number, _, _ = await ship(forge, ws, issue)
        review = await forge.reviews.review(
            "calc", number, state="changes_requested", body="Guard zero", author="me", path="app.py", line=1
        )
        await forge.reviews.comment("calc", number, body="/agentos also the docs", author="me")
        await forge.comment("calc", number, "attempt 1 is done", key="attempt:x")
        items = await forge.reviews.feedback("calc", number)
        assert [(i.kind, i.state, i.path, i.line, i.author) for i in items] == [
            ("review", "changes_requested", "", None, "me"),
            ("line", "changes_requested", "app.py", 1, "me"),
            ("comment", "commented", "", None, "me"),
        ]
        assert items[1].review == f"review:{review.id}" and all(i.trusted for i in items)
        for _ in range(2):
            await forge.reviews.answer("calc", number, items[1], "Addressed.", key="review-answer:x")
        answers = [c.body for c in await forge.comments("calc", number) if "Addressed." in c.body]
        assert len(answers) == 1 and "`app.py` line 1" in answers[0]

    async def test_a_review_of_a_missing_pr_is_refused(self, forge: LocalForge) -> None:
        with pytest.raises(ForgeError, match="no pull request #7"):
            await forge.reviews.review("calc", 7, state="commented", body="x", author="me")


class TestPullRequests:
    async def test_pr_is_idempotent_by_head(self, forge: LocalForge, ws: Workspace) -> None:
        """Opening a PR for a head that has one returns it; issues and PRs share numbers."""
        issue = await forge.new_issue("calc", "Feature", labels=[READY_LABEL])
        number, sha, _ = await ship(forge, ws, issue)
        assert number == 2
        again = await forge.open_pr("calc", head="agentos/1-feature", base="main", title="other", body="")
        assert again.number == number and again.head_sha == sha
        found = await forge.find_pr("calc", "agentos/1-feature")
        assert found is not None and found.number == number
        assert [p.number for p in await forge.open_prs("calc")] == [number]
        record = json.loads((forge.base_dir / "calc" / "pulls" / "2.json").read_text())
        assert record["schema"] == 1 and record["head"] == "agentos/1-feature" and record["state"] == "open"

    async def test_pr_needs_a_pushed_head(self, forge: LocalForge) -> None:
        """A PR over a branch the repository does not have is refused."""
        with pytest.raises(ForgeError, match="push it first"):
            await forge.open_pr("calc", head="agentos/9-x", base="main", title="t", body="")

    async def test_get_pr_follows_the_head(self, forge: LocalForge, ws: Workspace) -> None:
        """A new push to the head shows in the PR's head_sha."""
        issue = await forge.new_issue("calc", "Feature")
        number, _, tree = await ship(forge, ws, issue)
        (tree / "more.txt").write_text("more\n")
        await ws.commit_all(tree, "more")
        new = await ws.push(tree, "agentos/1-feature")
        assert (await forge.get_pr("calc", number)).head_sha == new

    async def test_pr_comments_and_close(self, forge: LocalForge, ws: Workspace) -> None:
        """Comments and labels on a PR live in its record; close_pr closes it and find_pr no longer sees it."""
        issue = await forge.new_issue("calc", "Feature")
        number, _, _ = await ship(forge, ws, issue)
        await forge.add_labels("calc", number, [REVIEW_LABEL])
        assert (await forge.get_pr("calc", number)).labels == [REVIEW_LABEL]
        await forge.close_pr("calc", number, comment="Rejected.")
        assert (await forge.get_pr("calc", number)).state == "closed"
        assert [c.body.splitlines()[0] for c in await forge.comments("calc", number)] == ["Rejected."]
        assert await forge.find_pr("calc", "agentos/1-feature") is None


class TestChecks:
    async def test_checks_run_on_the_merge_result_and_are_cached(
        self, forge: LocalForge, ws: Workspace, user_repo: Path, runs_log: Path
    ) -> None:
        """The test command sees head merged into the current base; the result is reused until either moves."""
        issue = await forge.new_issue("calc", "Feature")
        number, sha, _ = await ship(forge, ws, issue)
        await commit_file(user_repo, "base.txt", "later on main\n", "base moves")  # only the merge has both
        checks = await forge.checks("calc", number)
        assert (checks.state, checks.sha) == ("success", sha)
        assert checks.runs[0].name == "tests" and "exit 0" in checks.runs[0].summary
        assert (await forge.checks("calc", number)) == checks
        assert runs_log.read_text().count("run") == 1
        assert (await forge.get_pr("calc", number)).mergeable is True
        await commit_file(user_repo, "other.txt", "more\n", "base moves again")
        await forge.checks("calc", number)
        assert runs_log.read_text().count("run") == 2
        assert not list((ws.worktrees_dir / ".scratch").iterdir())

    async def test_failing_tests_fail_the_checks(self, forge: LocalForge, ws: Workspace, user_repo: Path) -> None:
        """A red test command is a failed check carrying its output tail."""
        await commit_file(user_repo, "base.txt", "b\n", "base")
        issue = await forge.new_issue("calc", "Feature")
        number, _, _ = await ship(forge, ws, issue, feature="off")
        checks = await forge.checks("calc", number)
        assert checks.state == "failure" and [r.name for r in checks.failing] == ["tests"]
        assert "exit 1" in checks.runs[0].summary

    async def test_conflict_fails_checks_and_is_not_mergeable(
        self, forge: LocalForge, ws: Workspace, user_repo: Path
    ) -> None:
        """A head that conflicts with the base fails the merge check and reads as not mergeable."""
        issue = await forge.new_issue("calc", "Feature")
        number, _, _ = await ship(forge, ws, issue)
        await commit_file(user_repo, "feature.txt", "base version\n", "conflicting base")
        checks = await forge.checks("calc", number)
        assert checks.state == "failure" and checks.runs[0].name == "merge"
        assert "feature.txt" in checks.runs[0].summary
        assert (await forge.get_pr("calc", number)).mergeable is False


class TestMerge:
    async def test_merge_squashes_into_the_users_checkout(
        self, forge: LocalForge, ws: Workspace, user_repo: Path
    ) -> None:
        """One squash commit `<title> (#pr)` closing the issue lands on main; the user's files update."""
        before = await run("rev-parse", "HEAD", cwd=user_repo)
        issue = await forge.new_issue("calc", "Switch the feature on", labels=[READY_LABEL, RUNNING_LABEL])
        number, sha, tree = await ship(forge, ws, issue)
        (tree / "second.txt").write_text("2\n")
        await ws.commit_all(tree, "second commit")
        sha = await ws.push(tree, "agentos/1-switch-the-feature-on")
        result = await forge.merge_pr("calc", number, sha=sha, title="", body="")
        assert result.merged, result.message
        assert await run("rev-parse", "HEAD", cwd=user_repo) == result.sha
        assert await run("rev-parse", "HEAD^", cwd=user_repo) == before
        message = await run("log", "-1", "--format=%B", cwd=user_repo)
        assert message.splitlines()[0] == f"Switch the feature on (#{number})"
        assert f"Closes #{issue.number}" in message
        assert (user_repo / "feature.txt").read_text() == "on\n"  # the working tree followed
        assert await run("status", "--porcelain", cwd=user_repo) == ""
        assert await run("branch", "--list", "agentos/*", cwd=user_repo) == ""
        closed = await forge.get_issue("calc", issue.number)
        assert closed.state == "closed" and RUNNING_LABEL not in closed.labels
        pr = await forge.get_pr("calc", number)
        assert pr.state == "merged"
        assert await run("config", "receive.denyCurrentBranch", cwd=user_repo) == "updateInstead"

    async def test_merge_after_checks_lands_the_tested_tree(
        self, forge: LocalForge, ws: Workspace, user_repo: Path, tmp_path: Path
    ) -> None:
        """After green checks on (head, base), the squash is the very tree the checks tested, with the message
        `git commit --cleanup=whitespace` would write (trailing spaces and extra blank lines go)."""
        issue = await forge.new_issue("calc", "Feature")
        number, sha, _ = await ship(forge, ws, issue)
        base = await commit_file(user_repo, "base.txt", "later on main\n", "base moves")
        assert (await forge.checks("calc", number)).state == "success"
        record = json.loads(next((tmp_path / "state").rglob(f"pulls/{number}.*")).read_text())
        tested_tree = record["checks"]["tree"]
        body = f"Closes #{issue.number}  \n\n\n\nDid the thing.\t\n\n"
        result = await forge.merge_pr("calc", number, sha=sha, title="Feature  ", body=body)
        assert result.merged, result.message
        assert await run("rev-parse", "HEAD^{tree}", cwd=user_repo) == tested_tree
        assert await run("rev-parse", "HEAD^", cwd=user_repo) == base
        assert (user_repo / "feature.txt").read_text() == "on\n" and (user_repo / "base.txt").is_file()
        scratch = tmp_path / "msg"
        await run("init", "-q", str(scratch), cwd=tmp_path)
        args = ("-c", "commit.gpgsign=false", "commit", "-q", "--allow-empty", "--cleanup=whitespace")
        await run(*args, "-m", f"Feature (#{number})", "-m", body, cwd=scratch)
        expected = await run("log", "-1", "--format=%B", cwd=scratch)
        assert await run("log", "-1", "--format=%B", cwd=user_repo) == expected

    async def test_title_with_number_is_not_doubled(self, forge: LocalForge, ws: Workspace, user_repo: Path) -> None:
        """A title that already ends with (#pr), as the PR monitor passes it, is used as it is."""
        issue = await forge.new_issue("calc", "Feature")
        number, sha, _ = await ship(forge, ws, issue)
        body = f"Closes #{issue.number}\n\n## Summary\nDone."
        result = await forge.merge_pr("calc", number, sha=sha, title=f"Feature (#{number})", body=body)
        assert result.merged
        assert await run("log", "-1", "--format=%B", cwd=user_repo) == f"Feature (#{number})\n\n{body}"

    async def test_merge_refused_when_head_moved(self, forge: LocalForge, ws: Workspace, user_repo: Path) -> None:
        """A merge for a sha that is no longer the head does nothing."""
        base = await run("rev-parse", "HEAD", cwd=user_repo)
        issue = await forge.new_issue("calc", "Feature")
        number, old, tree = await ship(forge, ws, issue)
        (tree / "late.txt").write_text("late\n")
        await ws.commit_all(tree, "late")
        await ws.push(tree, "agentos/1-feature")
        result = await forge.merge_pr("calc", number, sha=old, title="", body="")
        assert not result.merged and result.reason == "head_moved" and "head moved" in result.message
        assert await run("rev-parse", "HEAD", cwd=user_repo) == base
        assert (await forge.get_pr("calc", number)).state == "open"

    async def test_already_merged_is_success(self, forge: LocalForge, ws: Workspace, user_repo: Path) -> None:
        """Merging again returns the first merge and lands nothing new."""
        issue = await forge.new_issue("calc", "Feature")
        number, sha, _ = await ship(forge, ws, issue)
        first = await forge.merge_pr("calc", number, sha=sha, title="", body="")
        second = await forge.merge_pr("calc", number, sha=sha, title="", body="")
        assert first.reason == second.reason == "merged"
        assert second.merged and second.sha == first.sha
        assert await run("rev-list", "--count", "HEAD", cwd=user_repo) == "2"

    async def test_merge_interrupted_after_push_is_not_repeated(
        self, forge: LocalForge, ws: Workspace, user_repo: Path
    ) -> None:
        """A crash after the push but before the record said merged: the retry finds the landed commit."""
        issue = await forge.new_issue("calc", "Feature")
        number, sha, _ = await ship(forge, ws, issue)
        first = await forge.merge_pr("calc", number, sha=sha, title="", body="")
        path = forge.base_dir / "calc" / "pulls" / f"{number}.json"
        record = json.loads(path.read_text())
        record.update(state="open", merged_sha="", cleaned_up=False)  # the record as the crash left it
        path.write_text(json.dumps(record))
        again = await forge.merge_pr("calc", number, sha=sha, title="", body="")
        assert again.merged and again.sha == first.sha
        assert await run("rev-list", "--count", "HEAD", cwd=user_repo) == "2"

    async def test_dirty_checkout_refuses_the_merge(self, forge: LocalForge, ws: Workspace, user_repo: Path) -> None:
        """Uncommitted changes in the user's checkout of main stop the merge and say so; later it goes through."""
        issue = await forge.new_issue("calc", "Feature")
        number, sha, _ = await ship(forge, ws, issue)
        (user_repo / "app.py").write_text("x = 'editing'\n")
        result = await forge.merge_pr("calc", number, sha=sha, title="", body="")
        assert not result.merged and result.reason == "refused" and "has uncommitted changes" in result.message
        assert (user_repo / "app.py").read_text() == "x = 'editing'\n"
        assert (await forge.get_issue("calc", issue.number)).state == "open"
        await run("checkout", "--", "app.py", cwd=user_repo)
        assert (await forge.merge_pr("calc", number, sha=sha, title="", body="")).merged
        assert (user_repo / "feature.txt").is_file()

    async def test_merge_conflict_is_reported(self, forge: LocalForge, ws: Workspace, user_repo: Path) -> None:
        """A head that conflicts with the base is not merged; the message says conflicts."""
        issue = await forge.new_issue("calc", "Feature")
        number, sha, _ = await ship(forge, ws, issue)
        await commit_file(user_repo, "feature.txt", "base version\n", "conflicting base")
        result = await forge.merge_pr("calc", number, sha=sha, title="", body="")
        assert not result.merged and result.reason == "conflict"
        assert "conflicts" in result.message and "feature.txt" in result.message

    async def test_merge_into_a_bare_repository(self, tmp_path: Path, user_repo: Path) -> None:
        """A bare repository works as the remote too."""
        bare = tmp_path / "calc.git"
        await run("clone", "-q", "--bare", str(user_repo), str(bare), cwd=tmp_path)
        config = RepoConfig(name="calc", path=str(bare), test_command="true")
        forge = LocalForge(tmp_path / "state2", {"calc": config}, git_env=GIT_ENV)
        ws = Workspace(tmp_path / "state2", config, remote_url=str(bare), git_env=GIT_ENV)
        issue = await forge.new_issue("calc", "Feature")
        number, sha, _ = await ship(forge, ws, issue)
        assert (await forge.checks("calc", number)).state == "success"
        result = await forge.merge_pr("calc", number, sha=sha, title="", body="")
        assert result.merged
        assert await run("rev-parse", "refs/heads/main", cwd=bare) == result.sha

    async def test_a_repository_named_by_a_file_url(self, tmp_path: Path, user_repo: Path) -> None:
        """A remote given as a file:// URL (read with ls-remote and fetched, not read in place) works the same,
        and a commit made on its base just before the checks is in the checked merge."""
        bare = tmp_path / "calc.git"
        await run("clone", "-q", "--bare", str(user_repo), str(bare), cwd=tmp_path)
        config = RepoConfig(name="calc", path=str(user_repo), remote=bare.as_uri(), test_command="test -f base.txt")
        forge = LocalForge(tmp_path / "state2", {"calc": config}, git_env=GIT_ENV)
        ws = Workspace(tmp_path / "state2", config, remote_url=forge.remote_url("calc"), git_env=GIT_ENV)
        issue = await forge.new_issue("calc", "Feature")
        number, sha, _ = await ship(forge, ws, issue)
        assert (await forge.get_pr("calc", number)).head_sha == sha
        await commit_file(user_repo, "base.txt", "later\n", "base moves")
        await run("push", "-q", str(bare), "main", cwd=user_repo)
        assert (await forge.checks("calc", number)).state == "success"
        result = await forge.merge_pr("calc", number, sha=sha, title="", body="")
        assert result.merged and await run("rev-parse", "refs/heads/main", cwd=bare) == result.sha
