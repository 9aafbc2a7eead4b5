"""Workspace over real git: a user's repository in tmp_path as the remote, agentos's clone and worktrees."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from agentos.config import Hooks, RepoConfig
from agentos.gitutil import GitError, git
from agentos.workspace import RESULT_FILE, HookFailed, PushRejected, Workspace, branch_name

GIT_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}


async def run(*args: str, cwd: Path) -> str:
    return (await git(*args, cwd=cwd, env=GIT_ENV)).out.strip()


async def commit_file(repo: Path, name: str, text: str, message: str = "change") -> str:
    (repo / name).write_text(text)
    await run("add", "-A", cwd=repo)
    await run("commit", "-q", "-m", message, cwd=repo)
    return await run("rev-parse", "HEAD", cwd=repo)


@pytest.fixture
async def origin(tmp_path: Path) -> Path:
    """The user's (non-bare) repository with one commit on main."""
    repo = tmp_path / "user"
    repo.mkdir()
    await run("-c", "init.defaultBranch=main", "init", "-q", cwd=repo)
    await commit_file(repo, "app.py", "x = 1\ny = 2\n", "initial")
    return repo


def make_ws(tmp_path: Path, origin: Path, *, hooks: Hooks | None = None, test_command: str = "true") -> Workspace:
    repo = RepoConfig(name="calc", path=str(origin), test_command=test_command, hooks=hooks or Hooks())
    return Workspace(tmp_path / "state", repo, remote_url=str(origin), git_env=GIT_ENV)


@pytest.fixture
def ws(tmp_path: Path, origin: Path) -> Workspace:
    return make_ws(tmp_path, origin)


async def status(worktree: Path) -> str:
    return await run("status", "--porcelain", "--untracked-files=all", cwd=worktree)


class TestPrepare:
    async def test_new_branch_starts_from_latest_base(self, ws: Workspace, origin: Path) -> None:
        """A new task branch is checked out in its own worktree at the tip of origin/main."""
        tip = await commit_file(origin, "app.py", "x = 10\ny = 2\n", "newer base")
        branch = branch_name(7, "Add a flag")
        path = await ws.prepare(branch)
        assert path == ws.worktree_for(branch)
        assert path.parent == ws.root / "worktrees" / "calc"
        assert await run("rev-parse", "HEAD", cwd=path) == tip
        assert await run("symbolic-ref", "HEAD", cwd=path) == f"refs/heads/{branch}"
        assert (ws.clone_path / "HEAD").is_file()

    async def test_branch_on_origin_starts_from_its_tip(self, ws: Workspace, origin: Path) -> None:
        """A branch already pushed (an earlier attempt) is continued, not restarted from base."""
        await run("checkout", "-q", "-b", "agentos/3-x", cwd=origin)
        tip = await commit_file(origin, "work.txt", "partial\n", "partial work")
        await run("checkout", "-q", "main", cwd=origin)
        path = await ws.prepare("agentos/3-x")
        assert await run("rev-parse", "HEAD", cwd=path) == tip
        assert (path / "work.txt").read_text() == "partial\n"

    async def test_reuse_keeps_work_and_deletes_stale_result(self, ws: Workspace) -> None:
        """Preparing again reuses the worktree and its commits, and removes the old result file."""
        path = await ws.prepare("agentos/1-a")
        (path / "new.txt").write_text("n\n")
        sha = await ws.commit_all(path, "partial")
        (path / RESULT_FILE).write_text("STATUS: partial\n")
        again = await ws.prepare("agentos/1-a")
        assert again == path
        assert await ws.head_sha(path) == sha
        assert not (path / RESULT_FILE).exists()

    async def test_half_made_worktree_is_repaired(self, tmp_path: Path, origin: Path) -> None:
        """A worktree whose creation never finished (crash, failed hook) is rebuilt and after_create re-runs."""
        counter = tmp_path / "created.log"
        ws = make_ws(tmp_path, origin, hooks=Hooks(after_create=f"echo x >> {counter}"))
        path = await ws.prepare("agentos/2-b")
        admin = Path((path / ".git").read_text().split(":", 1)[1].strip())
        (admin / "agentos-ready").unlink()  # as if the daemon died before the end of prepare
        (path / "junk.txt").write_text("half-made\n")
        again = await ws.prepare("agentos/2-b")
        assert again == path
        assert not (path / "junk.txt").exists()
        assert counter.read_text().count("x") == 2
        assert await status(path) == ""

    async def test_unregistered_directory_is_replaced(self, ws: Workspace) -> None:
        """A directory left where the worktree should be, unknown to git, does not stop prepare."""
        stale = ws.worktree_for("agentos/4-c")
        stale.mkdir(parents=True)
        (stale / "leftover").write_text("?")
        path = await ws.prepare("agentos/4-c")
        assert not (path / "leftover").exists()
        assert (path / "app.py").is_file()

    async def test_failed_after_create_raises_and_is_retried(self, tmp_path: Path, origin: Path) -> None:
        """A failing after_create hook raises HookFailed; the next prepare runs it again."""
        flag = tmp_path / "flag"
        ws = make_ws(tmp_path, origin, hooks=Hooks(after_create=f"echo installing; test -f {flag} || exit 3"))
        with pytest.raises(HookFailed) as info:
            await ws.prepare("agentos/5-d")
        assert info.value.result.code == 3
        assert "installing" in str(info.value)
        flag.write_text("")
        path = await ws.prepare("agentos/5-d")
        assert (path / "app.py").is_file()

    async def test_parallel_prepares_share_the_clone(self, ws: Workspace, tmp_path: Path, origin: Path) -> None:
        """Two tasks of one repo prepare at once (two Workspace objects, one clone) without tripping git."""
        other = make_ws(tmp_path, origin)
        paths = await asyncio.gather(ws.prepare("agentos/10-a"), other.prepare("agentos/11-b"))
        assert len(set(paths)) == 2
        assert all((p / "app.py").is_file() for p in paths)

    async def test_broken_clone_is_recreated(self, ws: Workspace) -> None:
        """A clone directory that is not a git repository (a crash while cloning) is rebuilt."""
        ws.clone_path.mkdir(parents=True)
        (ws.clone_path / "garbage").write_text("?")
        path = await ws.prepare("agentos/1-a")
        assert (path / "app.py").is_file()
        assert not (ws.clone_path / "garbage").exists()

    async def test_missing_base_is_a_clear_error(self, tmp_path: Path, origin: Path) -> None:
        """A repo whose base branch does not exist says so."""
        repo = RepoConfig(name="calc", path=str(origin), test_command="true", base_branch="trunk")
        ws = Workspace(tmp_path / "state", repo, remote_url=str(origin), git_env=GIT_ENV)
        with pytest.raises(Exception, match="no branch 'trunk'"):
            await ws.prepare("agentos/1-x")


class TestReadingRefs:
    """What agentos reads of the remote and of HEAD without a fetch or a ``rev-parse`` says what git would say."""

    async def test_every_call_sees_the_remote_as_it_is_then(self, ws: Workspace, origin: Path) -> None:
        """A commit on main, a new branch, a tag and a deleted branch in the user's repository are all seen by
        the next call, and the clone is left as a real ``git fetch --prune`` would leave it."""
        await ws.prepare("agentos/1-a")
        await run("branch", "old", cwd=origin)
        refs = await ws.fetch_refs("refs/remotes/origin/main", "refs/remotes/origin/old")
        assert set(refs) == {"refs/remotes/origin/main", "refs/remotes/origin/old"}
        tip = await commit_file(origin, "app.py", "x = 2\ny = 2\n", "newer base")
        await run("branch", "feature", cwd=origin)
        await run("branch", "-D", "old", cwd=origin)
        await run("tag", "-a", "-m", "first", "v1", cwd=origin)
        main, feature, old = "refs/remotes/origin/main", "refs/remotes/origin/feature", "refs/remotes/origin/old"
        assert await ws.fetch_refs(main, feature, old) == {main: tip, feature: tip}
        assert await ws.rev("refs/tags/v1") == tip
        before = await run("for-each-ref", cwd=ws.clone_path)
        await run("fetch", "--prune", "origin", cwd=ws.clone_path)
        assert await run("for-each-ref", cwd=ws.clone_path) == before  # nothing was left for a fetch to do

    async def test_head_after_a_commit_a_detach_and_packed_refs(self, ws: Workspace) -> None:
        """head_sha is rev-parse HEAD whether the branch is a loose ref, packed, or HEAD is detached."""
        path = await ws.prepare("agentos/1-a")
        (path / "app.py").write_text("x = 1\ny = 3\n")
        sha = await ws.commit_all(path, "change")
        assert sha is not None and sha == await run("rev-parse", "HEAD", cwd=path)
        await run("pack-refs", "--all", cwd=ws.clone_path)
        assert await ws.head_sha(path) == sha
        await run("checkout", "-q", "--detach", "HEAD~1", cwd=path)
        assert await ws.head_sha(path) == await run("rev-parse", "HEAD", cwd=path) != sha

    async def test_prepare_head_is_where_the_worktree_is(self, tmp_path: Path, origin: Path) -> None:
        """The HEAD prepare_head reports is the worktree's: created at the base, at a pushed branch, reused, and
        after an after_create hook that committed."""
        ws = make_ws(tmp_path, origin)
        path, head = await ws.prepare_head("agentos/1-a")
        assert head == await run("rev-parse", "HEAD", cwd=path) == await run("rev-parse", "main", cwd=origin)
        (path / "app.py").write_text("x = 1\ny = 3\n")
        pushed = await ws.push(path, "agentos/1-a", sha=await ws.commit_all(path, "mine"))
        assert await ws.prepare_head("agentos/1-a") == (path, pushed)  # reused
        await ws.remove("agentos/1-a")
        assert (await ws.prepare_head("agentos/1-a"))[1] == pushed  # recreated from origin/agentos/1-a
        setup = "git -c user.name=t -c user.email=t@t commit -q --allow-empty -m setup"
        hooked = make_ws(tmp_path / "h", origin, hooks=Hooks(after_create=setup))
        path, head = await hooked.prepare_head("agentos/2-b")
        assert head == await run("rev-parse", "HEAD", cwd=path) != await run("rev-parse", "main", cwd=origin)

    async def test_secret_scan_names_the_commit_it_read(self, ws: Workspace) -> None:
        """find_secrets returns the commit it scanned as HEAD (what a push should publish); None with no commit."""
        path = await ws.prepare("agentos/1-a")
        assert await ws.find_secrets(path, lambda line: []) == ([], None)
        (path / "app.py").write_text("x = 1\ny = 3\n")
        sha = await ws.commit_all(path, "change")
        assert await ws.find_secrets(path, lambda line: ["shape"] if "y = 3" in line else []) == (
            [f"app.py ({sha[:12] if sha else ''}): shape"],
            sha,
        )


class TestCommit:
    async def test_commit_excludes_the_result_file(self, ws: Workspace) -> None:
        """Everything the agent changed is committed except .agent_result.md, which stays untracked."""
        path = await ws.prepare("agentos/1-a")
        (path / "app.py").write_text("x = 1\ny = 3\n")
        (path / "new.py").write_text("z = 0\n")
        (path / RESULT_FILE).write_text("STATUS: complete\n")
        sha = await ws.commit_all(path, "Change y\n\n## Notes\nkept # lines")
        assert sha == await ws.head_sha(path)
        files = await run("show", "--name-only", "--format=", "HEAD", cwd=path)
        assert sorted(files.split()) == ["app.py", "new.py"]
        assert await run("log", "-1", "--format=%B", cwd=path) == "Change y\n\n## Notes\nkept # lines"
        assert await run("log", "-1", "--format=%an <%ae>", cwd=path) == "agentos <agentos@localhost>"
        assert await status(path) == ""

    async def test_nothing_to_commit_is_none(self, ws: Workspace) -> None:
        """With no change (a result file alone is no change) commit_all returns None."""
        path = await ws.prepare("agentos/1-a")
        (path / RESULT_FILE).write_text("STATUS: complete\n")
        assert await ws.commit_all(path, "nothing") is None

    async def test_merge_in_progress_with_no_change_records_nothing(self, ws: Workspace, origin: Path) -> None:
        """A merge left in progress that changes nothing is not concluded by commit_all (no merge commit)."""
        path = await ws.prepare("agentos/1-a")
        await commit_file(origin, "other.txt", "base moved\n")
        await ws.fetch()
        await run("merge", "--no-commit", "-s", "ours", "refs/remotes/origin/main", cwd=path)
        head = await ws.head_sha(path)
        assert await ws.commit_all(path, "nothing") is None
        assert await ws.head_sha(path) == head

    async def test_diff_stat_against_base(self, ws: Workspace, origin: Path) -> None:
        """diff_stat counts the branch's own committed changes, not later changes on base."""
        path = await ws.prepare("agentos/1-a")
        assert (await ws.diff_stat(path)).empty
        (path / "app.py").write_text("x = 1\ny = 3\nz = 4\n")
        await ws.commit_all(path, "c")
        await commit_file(origin, "other.txt", "base moved\n")
        await ws.fetch()
        stat = await ws.diff_stat(path)
        assert (stat.files, stat.insertions, stat.deletions, stat.paths) == (1, 2, 1, ("app.py",))


class TestPatchAndReset:
    async def test_save_patch_then_reset(self, ws: Workspace, tmp_path: Path) -> None:
        """Uncommitted and untracked changes go to a patch that applies again; reset leaves the branch tip."""
        path = await ws.prepare("agentos/1-a")
        tip = await ws.head_sha(path)
        (path / "app.py").write_text("x = 99\ny = 2\n")
        (path / "untracked.txt").write_text("new file\n")
        (path / RESULT_FILE).write_text("STATUS: blocked\n")
        patch = tmp_path / "runs" / "1" / "changes.patch"
        assert await ws.save_patch(path, patch)
        text = patch.read_text()
        assert "untracked.txt" in text and "x = 99" in text and RESULT_FILE not in text
        assert "untracked.txt" in await status(path)  # saving did not touch the worktree
        await ws.reset(path)
        assert await status(path) == ""
        assert not (path / RESULT_FILE).exists()
        assert await ws.head_sha(path) == tip
        await run("apply", "--index", str(patch), cwd=path)
        assert (path / "untracked.txt").read_text() == "new file\n"

    async def test_clean_worktree_saves_no_patch(self, ws: Workspace, tmp_path: Path) -> None:
        """Nothing to save: False, and no file."""
        path = await ws.prepare("agentos/1-a")
        patch = tmp_path / "p.patch"
        assert not await ws.save_patch(path, patch)
        assert not patch.exists()

    async def test_reset_to_drops_commits_and_aborts_rebase(self, ws: Workspace, origin: Path) -> None:
        """reset(to=sha) moves the branch back, ending a rebase the agent left half-way."""
        path = await ws.prepare("agentos/1-a")
        start = await ws.head_sha(path)
        (path / "app.py").write_text("x = 1\ny = 20\n")
        await ws.commit_all(path, "mine")
        await commit_file(origin, "app.py", "x = 1\ny = 30\n", "theirs")
        await ws.fetch()
        res = await git("rebase", "refs/remotes/origin/main", cwd=path, env=GIT_ENV, check=False)
        assert not res.ok
        await ws.reset(path, to=start)
        assert await ws.head_sha(path) == start
        assert await status(path) == ""
        assert await run("symbolic-ref", "HEAD", cwd=path) == "refs/heads/agentos/1-a"


class TestPush:
    async def test_push_creates_and_updates_the_branch(self, ws: Workspace, origin: Path) -> None:
        """The branch appears on the remote at the worktree's HEAD, and a later push moves it."""
        path = await ws.prepare("agentos/1-a")
        (path / "a.txt").write_text("1\n")
        first = await ws.commit_all(path, "one")
        assert await ws.push(path, "agentos/1-a") == first
        assert await run("rev-parse", "refs/heads/agentos/1-a", cwd=origin) == first
        (path / "a.txt").write_text("2\n")
        second = await ws.commit_all(path, "two")
        await ws.push(path, "agentos/1-a")
        assert await run("rev-parse", "refs/heads/agentos/1-a", cwd=origin) == second

    async def test_lease_refuses_when_the_remote_moved(self, ws: Workspace, origin: Path) -> None:
        """Someone else's commit on the branch is never overwritten, even after a fetch saw it."""
        path = await ws.prepare("agentos/1-a")
        (path / "a.txt").write_text("ours\n")
        await ws.commit_all(path, "ours")
        await ws.push(path, "agentos/1-a")
        await run("checkout", "-q", "agentos/1-a", cwd=origin)
        theirs = await commit_file(origin, "b.txt", "theirs\n", "theirs")
        await run("checkout", "-q", "main", cwd=origin)
        (path / "a.txt").write_text("ours again\n")
        await ws.commit_all(path, "ours again")
        await ws.fetch()  # another task's fetch updates origin/agentos/1-a: the lease must not follow it
        with pytest.raises(PushRejected):
            await ws.push(path, "agentos/1-a")
        assert await run("rev-parse", "refs/heads/agentos/1-a", cwd=origin) == theirs

    async def test_rebased_branch_is_pushed_with_lease(self, ws: Workspace, origin: Path) -> None:
        """A rebase rewrites the branch; the push replaces the old tip because it is the one we knew."""
        path = await ws.prepare("agentos/1-a")
        (path / "a.txt").write_text("1\n")
        await ws.commit_all(path, "one")
        await ws.push(path, "agentos/1-a")
        await commit_file(origin, "base.txt", "b\n", "base moves")
        result = await ws.rebase_onto_base(path)
        assert result.ok, result.detail
        assert await ws.push(path, "agentos/1-a") == result.head
        assert await run("rev-parse", "refs/heads/agentos/1-a", cwd=origin) == result.head

    async def test_push_after_a_lost_record_is_not_refused(self, ws: Workspace, origin: Path) -> None:
        """If our own earlier push was not recorded (a crash), pushing more commits on top still works."""
        path = await ws.prepare("agentos/1-a")
        (path / "a.txt").write_text("1\n")
        await ws.commit_all(path, "one")
        await ws.push(path, "agentos/1-a")
        admin = Path((path / ".git").read_text().split(":", 1)[1].strip())
        (admin / "agentos-lease").write_text("\n")  # as before the push
        (path / "a.txt").write_text("2\n")
        second = await ws.commit_all(path, "two")
        assert await ws.push(path, "agentos/1-a") == second


class TestRebase:
    async def test_rebase_onto_moved_base(self, ws: Workspace, origin: Path) -> None:
        """Non-conflicting base changes: the branch is replayed on top of the new base."""
        path = await ws.prepare("agentos/1-a")
        (path / "feature.txt").write_text("f\n")
        await ws.commit_all(path, "feature")
        base = await commit_file(origin, "base.txt", "b\n", "base moves")
        result = await ws.rebase_onto_base(path)
        assert result.ok and result.conflicts == []
        assert (await git("merge-base", "--is-ancestor", base, "HEAD", cwd=path, env=GIT_ENV, check=False)).ok
        assert (path / "base.txt").is_file() and (path / "feature.txt").is_file()

    async def test_conflict_is_aborted_and_reported(self, ws: Workspace, origin: Path) -> None:
        """A conflicting rebase is aborted, leaving the branch as it was, and names the files."""
        path = await ws.prepare("agentos/1-a")
        (path / "app.py").write_text("x = 1\ny = 20\n")
        before = await ws.commit_all(path, "mine")
        await commit_file(origin, "app.py", "x = 1\ny = 30\n", "theirs")
        result = await ws.rebase_onto_base(path)
        assert not result.ok
        assert result.conflicts == ["app.py"]
        assert await ws.head_sha(path) == before
        assert await status(path) == ""

    async def test_uncommitted_changes_are_not_rebased(self, ws: Workspace) -> None:
        """A dirty worktree is reported, not rebased."""
        path = await ws.prepare("agentos/1-a")
        (path / "app.py").write_text("dirty\n")
        result = await ws.rebase_onto_base(path)
        assert not result.ok and "uncommitted" in result.detail


class TestRemoveAndRepair:
    async def test_remove_runs_hook_and_deletes_worktree_and_branch(self, tmp_path: Path, origin: Path) -> None:
        """remove() runs before_remove, removes the worktree and the local branch."""
        log_file = tmp_path / "removed.log"
        ws = make_ws(tmp_path, origin, hooks=Hooks(before_remove=f"pwd >> {log_file}"))
        path = await ws.prepare("agentos/1-a")
        await ws.remove("agentos/1-a")
        assert not path.exists()
        assert log_file.read_text().strip() == str(path)
        assert await ws.rev("refs/heads/agentos/1-a") is None
        await ws.remove("agentos/1-a")  # again: nothing to do, no error

    async def test_repair_removes_stale_worktrees_and_locks(self, ws: Workspace) -> None:
        """repair() prunes, clears stale index.lock files and removes worktrees not kept."""
        kept = await ws.prepare("agentos/1-keep")
        gone = await ws.prepare("agentos/2-gone")
        stray = ws.worktrees_dir / "stray-dir"
        stray.mkdir()
        admin = Path((kept / ".git").read_text().split(":", 1)[1].strip())
        (admin / "index.lock").write_text("")
        (kept / "a.txt").write_text("x\n")
        removed = await ws.repair({"agentos/1-keep"})
        assert sorted(removed) == sorted([gone, stray])
        assert not gone.exists() and not stray.exists()
        assert not (admin / "index.lock").exists()
        assert await ws.commit_all(kept, "works again") is not None
        assert await ws.prepare("agentos/2-gone") == gone  # the branch itself was kept

    async def test_repair_without_a_clone_clears_orphans(self, ws: Workspace) -> None:
        """With the clone gone, leftover worktree directories are orphans and go."""
        orphan = ws.worktrees_dir / "agentos-3-x"
        orphan.mkdir(parents=True)
        assert await ws.repair(set()) == [orphan]
        assert not orphan.exists()

    async def test_disk_usage_counts_worktrees(self, ws: Workspace) -> None:
        """disk_usage() is the size of the repo's worktrees."""
        assert await ws.disk_usage() == 0
        path = await ws.prepare("agentos/1-a")
        (path / "big.bin").write_bytes(b"0" * 100_000)
        assert await ws.disk_usage() >= 100_000


class TestHooksAndTests:
    async def test_hook_failure_is_reported(self, tmp_path: Path, origin: Path) -> None:
        """A failing hook returns its exit code and output; it does not raise."""
        ws = make_ws(tmp_path, origin, hooks=Hooks(before_run="echo boom >&2; exit 4"))
        path = await ws.prepare("agentos/1-a")
        result = await ws.run_hook("before_run", path)
        assert (result.ran, result.ok, result.code, result.timed_out) == (True, False, 4, False)
        assert "boom" in result.output_tail and "exited 4" in result.detail

    async def test_hook_timeout_is_reported(self, tmp_path: Path, origin: Path) -> None:
        """A hook past its timeout is killed and reported as timed out."""
        ws = make_ws(tmp_path, origin, hooks=Hooks(after_run="sleep 30", timeout_s=0.3))
        path = await ws.prepare("agentos/1-a")
        started = time.monotonic()
        result = await ws.run_hook("after_run", path)
        assert result.timed_out and not result.ok
        assert time.monotonic() - started < 10
        assert "timed out" in result.detail

    async def test_hooks_get_no_tokens(self, tmp_path: Path, origin: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Hooks see the allowlist only (PATH, HOME, locale…): no GITHUB_TOKEN or any other daemon secret."""
        monkeypatch.setenv("GITHUB_TOKEN", "ghp_secret")
        monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123:abc")
        dump = tmp_path / "env.txt"
        ws = make_ws(tmp_path, origin, hooks=Hooks(before_run=f"env > {dump}"))
        path = await ws.prepare("agentos/1-a")
        assert (await ws.run_hook("before_run", path)).ok
        names = {line.split("=", 1)[0] for line in dump.read_text().splitlines() if "=" in line}
        assert "GITHUB_TOKEN" not in names and "TELEGRAM_BOT_TOKEN" not in names
        assert "ghp_secret" not in dump.read_text()
        assert "PATH" in names

    async def test_unconfigured_hook_passes(self, ws: Workspace) -> None:
        """A hook that is not configured does not run and counts as passed."""
        path = await ws.prepare("agentos/1-a")
        result = await ws.run_hook("after_create", path)
        assert not result.ran and result.ok

    async def test_run_tests_uses_the_repo_command(self, tmp_path: Path, origin: Path) -> None:
        """run_tests runs test_command in the worktree with the scrubbed env plus what the caller adds."""
        ws = make_ws(tmp_path, origin, test_command='test -f app.py && echo "mode=$MODE"; exit 1')
        path = await ws.prepare("agentos/1-a")
        result = await ws.run_tests(path, {"MODE": "ci"})
        assert result.code == 1 and not result.ok
        assert "mode=ci" in result.output_tail


class TestSubprocesses:
    async def test_git_error_is_one_line(self, tmp_path: Path) -> None:
        """A failed git command raises GitError naming the command and the end of stderr."""
        with pytest.raises(GitError) as info:
            await git("rev-parse", "--verify", "nope", cwd=tmp_path, env=GIT_ENV)
        assert "\n" not in str(info.value) and "git rev-parse --verify nope" in str(info.value)
