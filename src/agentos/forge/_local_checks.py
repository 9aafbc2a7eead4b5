"""Checks and merges of the embedded forge: :class:`LocalChecks`, a collaborator of
:class:`~agentos.forge.local.LocalForge` over the same :class:`~agentos.forge._local_files.ForgeFiles` and the
daemon's one workspace registry.

``checks`` runs the repo's test command on the merge result of a PR's head into its base in a scratch worktree
of agentos's clone, cached per (head, base) in the PR's record; ``merge_pr`` pushes a squash commit to the base
branch of the user's repository, then deletes the head branch and closes the issues the PR closes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import structlog

from agentos.config import RepoConfig
from agentos.forge._local_files import CheckCache, ForgeFiles, PullRecord, closing_issues, one_line
from agentos.forge.base import RUNNING_LABEL, CheckRun, Checks, ForgeError, MergeResult, NotFound
from agentos.gitutil import git
from agentos.ports import Workspaces
from agentos.runners.attempt_egress import sandboxed_tests
from agentos.runners.egress import EgressProxy
from agentos.workspace import Workspace

__all__ = ["LocalChecks", "user_repository"]

log = structlog.get_logger("agentos.forge.local")

DIRTY_HINTS = ("unstaged changes", "staged changes", "not clean", "would be overwritten")


def user_repository(config: RepoConfig) -> str:
    """The repository that stands for the remote: ``remote`` if set, else the user's ``path`` (resolved); the
    same the daemon's workspaces use, so both speak of one clone and one remote."""
    where = config.remote or config.path
    if not where:
        raise ForgeError(f"repo {config.name!r}: the local forge needs a path")
    if "://" in where:
        return where
    return str(Path(where).expanduser().resolve())


class LocalChecks:
    """The checks runner and the merge of the local forge, over its files and the workspaces of its repos."""

    def __init__(
        self,
        files: ForgeFiles,
        workspaces: Workspaces,
        *,
        git_env: Mapping[str, str] | None = None,
        egress: EgressProxy | None = None,
    ) -> None:
        self.files = files
        self.egress = egress  # the daemon's egress proxy: sandboxed tests reach repos[].test_allow_hosts through it
        self.workspaces = workspaces
        self.git_env = dict(git_env or {})
        self._merge_locks: dict[str, asyncio.Lock] = {}
        self._check_locks: dict[tuple[str, int], asyncio.Lock] = {}
        self._receive_set: set[str] = set()  # user repos seen with receive.denyCurrentBranch set (asked once)

    def workspace(self, repo: str) -> Workspace:
        return self.workspaces.workspace(self.files.config(repo))

    # ------------------------------------------------------------ checks

    async def checks(self, repo: str, number: int) -> Checks:
        """The test command on the merge result of head into the current base, cached per (head, base)."""
        lock = self._check_locks.setdefault((repo, number), asyncio.Lock())
        async with lock:
            record = await asyncio.to_thread(self.files.read_pull, repo, number)
            if record.state != "open":
                if record.checks is not None:
                    return record.checks.checks
                state: Literal["success", "failure"] = "success" if record.state == "merged" else "failure"
                return Checks(
                    sha=record.head_sha,
                    state=state,
                    runs=[CheckRun(name="merge", state=state, summary=f"the pull request is {record.state}")],
                )
            ws = self.workspace(repo)
            head_sha, base_sha = await _tips(ws, record)
            if head_sha is None or base_sha is None:
                gone = record.head if head_sha is None else record.base
                run = CheckRun(name="merge", state="failure", summary=f"branch {gone} is not in the repository")
                return Checks(sha=head_sha or record.head_sha, state="failure", runs=[run])
            cache = record.checks
            if cache is not None and (cache.head_sha, cache.base_sha) == (head_sha, base_sha):
                return cache.checks
            checks, mergeable, tree = await self._run_checks(ws, record, head_sha, base_sha)
            cache = CheckCache(head_sha=head_sha, base_sha=base_sha, mergeable=mergeable, checks=checks, tree=tree)
            await self.files.save_pull(repo, number, checks=cache)
            log.info("checks_ran", repo=repo, number=number, head=head_sha, base=base_sha, state=checks.state)
            return checks

    async def _run_checks(
        self, ws: Workspace, record: PullRecord, head_sha: str, base_sha: str
    ) -> tuple[Checks, bool, str | None]:
        async with ws.scratch(base_sha) as tree:
            merge = await ws.git(
                "-c",
                "commit.gpgsign=false",
                "merge",
                "--no-ff",
                "--no-edit",
                "-q",
                "-m",
                f"checks of #{record.number}",
                head_sha,
                cwd=tree,
                check=False,
            )
            if not merge.ok:
                conflicts = await self._conflicts(ws, tree)
                summary = f"conflicts with {record.base}: {', '.join(conflicts) or merge.err.strip()[-200:]}"
                run = CheckRun(name="merge", state="failure", summary=summary)
                return Checks(sha=head_sha, state="failure", runs=[run]), False, None
            merged_tree = (await ws.git("rev-parse", "HEAD^{tree}", cwd=tree)).out.strip()
            result, _ = await sandboxed_tests(ws, tree, self.egress, f"checks/{ws.repo.name}#{record.number}")
        if result.timed_out:
            summary = f"timed out after {result.duration_s:.0f}s: {ws.repo.test_command}"
        else:
            summary = f"exit {result.code} in {result.duration_s:.1f}s: {ws.repo.test_command}"
        state: Literal["success", "failure"] = "success" if result.ok else "failure"
        run = CheckRun(name="tests", state=state, summary=summary, log_tail=result.output_tail[-4000:])
        return Checks(sha=head_sha, state=state, runs=[run]), True, merged_tree

    @staticmethod
    async def _conflicts(ws: Workspace, tree: Path) -> list[str]:
        res = await ws.git("diff", "--name-only", "--diff-filter=U", "-z", cwd=tree, check=False)
        return sorted({name for name in res.out.split("\0") if name})

    # ------------------------------------------------------------ merging

    async def merge_pr(self, repo: str, number: int, *, sha: str, title: str, body: str) -> MergeResult:
        """Squash the head onto the base in the user's repository if the head is still ``sha``.

        The commit is ``<title> (#<pr>)`` with a body that closes the PR's issues. The squash sha is
        recorded before the push, so a merge interrupted by a crash is recognised, never made twice.
        """
        lock = self._merge_locks.setdefault(repo, asyncio.Lock())
        async with lock:
            record = await asyncio.to_thread(self.files.read_pull, repo, number)
            if record.state == "merged":
                await self._finish_merge(repo, record)
                return MergeResult(merged=True, reason="merged", sha=record.merged_sha, message="already merged")
            if record.state == "closed":
                return MergeResult(merged=False, reason="refused", message=f"pull request #{number} is closed")
            ws = self.workspace(repo)
            head_sha, base_sha = await _tips(ws, record)
            if base_sha is None:
                gone = f"base branch {record.base} is not in the repository"
                return MergeResult(merged=False, reason="refused", message=gone)
            intent = record.merge_intent and await ws.rev(record.merge_intent)
            if intent and await ws.is_ancestor(intent, base_sha):
                return await self._landed(repo, record, record.merge_intent, sha, "already merged")
            if head_sha is None:
                gone = f"head branch {record.head} is not in the repository"
                return MergeResult(merged=False, reason="refused", message=gone)
            if head_sha != sha:
                moved = f"head moved: expected {sha[:12]}, it is at {head_sha[:12]}"
                return MergeResult(merged=False, reason="head_moved", message=moved)
            if await ws.is_ancestor(head_sha, base_sha):
                return await self._landed(repo, record, base_sha, sha, f"already contained in {record.base}")
            subject = one_line(title or record.title)
            if not subject.endswith(f"(#{number})"):
                subject = f"{subject} (#{number})"
            message_body = body or record.body
            missing = [n for n in closing_issues(record.body) if n not in closing_issues(message_body)]
            message_body = "\n".join([*(f"Closes #{n}" for n in missing), message_body]).strip()
            new_sha = await self._squash_checked(ws, record, head_sha, base_sha, subject, message_body)
            if new_sha is None:
                async with ws.scratch(base_sha) as tree:
                    squash = await ws.git("merge", "--squash", "-q", head_sha, cwd=tree, check=False)
                    if not squash.ok:
                        conflicts = await self._conflicts(ws, tree)
                        detail = ", ".join(conflicts) or squash.err.strip()[-200:]
                        conflict = f"conflicts with {record.base}: {detail}"
                        return MergeResult(merged=False, reason="conflict", message=conflict)
                    args = ["-c", "commit.gpgsign=false", "commit", "-q", "--no-verify", "--cleanup=whitespace"]
                    await ws.git(*args, "-m", subject, *(["-m", message_body] if message_body else []), cwd=tree)
                    new_sha = await ws.head_sha(tree)
            await self.files.save_pull(repo, number, merge_intent=new_sha)
            refused = await self._push_base(repo, ws, new_sha, record.base)
            if refused:
                return MergeResult(merged=False, reason="refused", message=refused)
            return await self._landed(repo, record, new_sha, sha, f"squashed into {record.base}")

    @staticmethod
    async def _squash_checked(
        ws: Workspace, record: PullRecord, head_sha: str, base_sha: str, subject: str, body: str
    ) -> str | None:
        """The squash commit made from the tree the checks merged and tested for this very (head, base), with
        ``commit-tree`` (one git process, no scratch worktree, no second merge); None when there is no such tree
        (no checks of this head on this base, or the tree is gone from the clone): then merge in a worktree."""
        cache = record.checks
        if cache is None or cache.tree is None or (cache.head_sha, cache.base_sha) != (head_sha, base_sha):
            return None
        message = _cleanup_message(subject, body)
        res = await ws.git("commit-tree", "--no-gpg-sign", cache.tree, "-p", base_sha, "-m", message, check=False)
        return res.out.strip() if res.ok and res.out.strip() else None

    async def _landed(
        self, repo: str, record: PullRecord, merged_sha: str, head_sha: str, message: str
    ) -> MergeResult:
        record = await self.files.save_pull(
            repo, record.number, state="merged", merged_sha=merged_sha, merged_at=self.files.clock(), head_sha=head_sha
        )
        log.info("pr_merged", repo=repo, number=record.number, sha=merged_sha)
        await self._finish_merge(repo, record)
        return MergeResult(merged=True, reason="merged", sha=merged_sha, message=message)

    async def _push_base(self, repo: str, ws: Workspace, sha: str, base: str) -> str | None:
        """Fast-forward the user's base branch to ``sha``; why it was refused, or None."""
        user_repo = Path(user_repository(self.files.config(repo)))
        checked_out = await self._checked_out_base(user_repo, base)
        if checked_out and repo not in self._receive_set:
            setting = await git(
                "config", "--get", "receive.denyCurrentBranch", cwd=user_repo, env=self.git_env, check=False
            )
            if not setting.ok:
                await git("config", "receive.denyCurrentBranch", "updateInstead", cwd=user_repo, env=self.git_env)
                log.info("user_repo_configured", repo=repo, path=str(user_repo), key="receive.denyCurrentBranch")
            self._receive_set.add(repo)
        async with ws.lock:
            res = await ws.git("push", "--porcelain", "origin", f"{sha}:refs/heads/{base}", check=False, timeout=600)
        if res.ok:
            return None
        self._receive_set.discard(repo)  # the user may have changed the setting: ask again next time
        text = f"{res.out}\n{res.err}"
        if checked_out:
            status = await git(
                "status", "--porcelain", "--untracked-files=no", cwd=user_repo, env=self.git_env, check=False
            )
            if status.out.strip() or any(hint in text for hint in DIRTY_HINTS):
                return f"{user_repo} has uncommitted changes on {base}; commit or stash them and merge again"
        if "[rejected]" in text:
            return f"{base} moved in {user_repo} while merging; merge again"
        tail = " ".join(text.strip().splitlines()[-2:])[-300:]
        log.warning("merge_push_failed", repo=repo, detail=tail)
        return f"push to {base} failed: {tail}"

    async def _checked_out_base(self, user_repo: Path, base: str) -> bool:
        """Is ``user_repo`` a non-bare repository with ``base`` checked out?"""
        if not user_repo.is_dir():
            return False
        # one process for both questions; it fails on an unborn HEAD, then they are asked one by one
        args = ("rev-parse", "--is-bare-repository", "--symbolic-full-name", "HEAD")
        both = await git(*args, cwd=user_repo, env=self.git_env, check=False)
        if both.ok and len(both.out.split()) == 2:
            bare_out, head_out = both.out.split()
            return bare_out == "false" and head_out == f"refs/heads/{base}"
        bare = await git("rev-parse", "--is-bare-repository", cwd=user_repo, env=self.git_env, check=False)
        if not bare.ok or bare.out.strip() == "true":
            return False
        head = await git("symbolic-ref", "-q", "HEAD", cwd=user_repo, env=self.git_env, check=False)
        return head.out.strip() == f"refs/heads/{base}"

    async def _finish_merge(self, repo: str, record: PullRecord) -> None:
        """After a merge: delete the head branch (if still at the merged head), close the issues."""
        if record.cleaned_up:
            return
        ws = self.workspace(repo)
        async with ws.lock:
            res = await ws.git(
                "push",
                "--porcelain",
                f"--force-with-lease=refs/heads/{record.head}:{record.head_sha}",
                "origin",
                f":refs/heads/{record.head}",
                check=False,
            )
        if not res.ok and "does not exist" not in res.err + res.out:
            log.warning("head_branch_not_deleted", repo=repo, branch=record.head, detail=res.err.strip()[-200:])
        for issue in closing_issues(record.body):
            try:
                await self.files.update_issue(repo, issue, state="closed")
                await self.files.relabel(repo, issue, add=[], remove=[RUNNING_LABEL])
            except NotFound:
                log.warning("closed_issue_missing", repo=repo, pr=record.number, issue=issue)
        await self.files.save_pull(repo, record.number, cleaned_up=True)


async def _tips(ws: Workspace, record: PullRecord) -> tuple[str | None, str | None]:
    """Fetch, then the tips of the PR's head and base branches (None when gone), as the remote has them now."""
    head_ref, base_ref = f"refs/remotes/origin/{record.head}", f"refs/remotes/origin/{record.base}"
    found = await ws.fetch_refs(head_ref, base_ref)
    return found.get(head_ref), found.get(base_ref)


def _cleanup_message(*paragraphs: str) -> str:
    """What ``git commit --cleanup=whitespace -m p1 -m p2…`` records (without the final newline): paragraphs
    joined by a blank line, trailing whitespace stripped, runs of blank lines collapsed, blank ends dropped."""
    lines: list[str] = []
    for line in "\n\n".join(p for p in paragraphs if p).splitlines():
        line = line.rstrip(" \t\v\f\r")
        if line or (lines and lines[-1]):
            lines.append(line)
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)
