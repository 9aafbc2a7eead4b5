"""The embedded forge: issues are Markdown files, pull requests are JSON records over real branches.

Layout under the state dir, readable with ``ls`` and ``cat``::

    local-forge/<repo>/issues/<n>.md     YAML front matter, the body, then the comments
    local-forge/<repo>/pulls/<n>.json    head, base, state, head sha, merge record, checks cache
    local-forge/<repo>/counter.json      the last number and comment id handed out
    local-forge/<repo>/.lock             flock: the daemon and ``agentos issue …`` share these files

An issue file::

    ---
    number: 3
    title: Add a --verbose flag
    state: open
    labels:
    - agentos:ready
    author: alice
    created: '2025-01-02T03:04:05Z'
    updated: '2025-01-02T03:04:05Z'
    ---

    The body, as written.

    ---
    ### comment 7 · agentos · 2025-01-02T03:10:00Z

    The comment, ending with its hidden key marker.
    <!-- agentos:key=attempt-1 -->

Issues and PRs share one number space, as on GitHub. Every change is a load-modify-save under the
lock with an atomic replace. The "remote" of a repo is the user's repository at ``RepoConfig.path``:
task branches are pushed there, ``checks`` runs the repo's test command on the merge result in a
scratch worktree of agentos's clone, and ``merge_pr`` pushes a squash commit to its base branch.

This module keeps the files (issues, PRs, the counter, the lock); the file formats are in
:mod:`agentos.forge._local_files`, the checks runner and the merge in :mod:`agentos.forge._local_checks`
(mixed into :class:`LocalForge`).
"""

from __future__ import annotations

import asyncio
import fcntl
import getpass
import json
import os
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

import structlog
from pydantic import ValidationError

from agentos.config import RepoConfig
from agentos.forge._local_checks import LocalChecks
from agentos.forge._local_files import (
    SCHEMA,
    _one_line,
    _PullRecord,
    _utcnow,
    closing_issues,
    parse_issue_file,
    render_issue_file,
)
from agentos.forge.base import (
    BLOCKED_LABEL,
    READY_LABEL,
    RUNNING_LABEL,
    BoardStatus,
    Comment,
    ForgeError,
    Issue,
    NotFound,
    PullRequest,
    marker,
)
from agentos.fsutil import atomic_write_text
from agentos.gitutil import git, local_git_dir, read_refs
from agentos.workspace import Workspace

__all__ = ["LocalForge", "closing_issues", "parse_issue_file", "render_issue_file"]

log = structlog.get_logger(__name__)

T = TypeVar("T")


class LocalForge(LocalChecks):
    """The :class:`~agentos.forge.base.Forge` of files in the state dir over the user's repositories."""

    kind = "local"
    checks_merge_result = True  # checks test the merge result itself: a PR behind its base needs no rebase first

    def __init__(
        self,
        root: Path,
        repos: Mapping[str, RepoConfig],
        *,
        clock: Callable[[], datetime] = _utcnow,
        git_env: Mapping[str, str] | None = None,
    ) -> None:
        self.root = Path(root).expanduser().resolve()
        self.base_dir = self.root / "local-forge"
        self.repos = dict(repos)
        self.clock = clock
        self.git_env = dict(git_env or {})
        self._locks: dict[str, asyncio.Lock] = {}
        self._merge_locks: dict[str, asyncio.Lock] = {}
        self._check_locks: dict[tuple[str, int], asyncio.Lock] = {}
        self._workspaces: dict[str, Workspace] = {}
        self._receive_set: set[str] = set()  # user repos seen with receive.denyCurrentBranch set (asked once)
        self._parsed: dict[Path, tuple[tuple[int, int, int], tuple[Issue, list[Comment]]]] = {}

    def __repr__(self) -> str:
        return f"LocalForge(root={str(self.base_dir)!r}, repos={sorted(self.repos)})"

    # ------------------------------------------------------------ files

    def _config(self, repo: str) -> RepoConfig:
        try:
            return self.repos[repo]
        except KeyError:
            raise NotFound(f"unknown repo {repo!r} (known: {', '.join(sorted(self.repos)) or 'none'})") from None

    def remote_url(self, repo: str) -> str:
        """The repository that stands for the remote: ``remote`` if set, else the user's ``path``.

        The same resolution as the daemon's workspaces use, so both speak of one clone and one remote.
        """
        config = self._config(repo)
        where = config.remote or config.path
        if not where:
            raise ForgeError(f"repo {repo!r}: the local forge needs a path")
        if "://" in where:
            return where
        return str(Path(where).expanduser().resolve())

    def workspace(self, repo: str) -> Workspace:
        if repo not in self._workspaces:
            self._workspaces[repo] = Workspace(
                self.root, self._config(repo), remote_url=self.remote_url(repo), git_env=self.git_env
            )
        return self._workspaces[repo]

    def _dir(self, repo: str) -> Path:
        self._config(repo)
        return self.base_dir / repo

    def _issue_path(self, repo: str, number: int) -> Path:
        return self._dir(repo) / "issues" / f"{number}.md"

    def _pull_path(self, repo: str, number: int) -> Path:
        return self._dir(repo) / "pulls" / f"{number}.json"

    def _numbers(self, repo: str, kind: Literal["issues", "pulls"]) -> list[int]:
        folder = self._dir(repo) / kind
        if not folder.is_dir():
            return []
        return sorted(int(p.stem) for p in folder.iterdir() if p.stem.isdigit() and p.suffix in (".md", ".json"))

    def _is_issue(self, repo: str, number: int) -> bool:
        """True for an issue, False for a pull request; NotFound for neither."""
        if self._issue_path(repo, number).is_file():
            return True
        if self._pull_path(repo, number).is_file():
            return False
        raise NotFound(f"{repo}: no issue or pull request #{number}")

    def _read_issue(self, repo: str, number: int) -> tuple[Issue, list[Comment]]:
        """The issue file, parsed; a file unchanged since the last read (same inode, mtime and size: every
        write is an atomic replace) is not parsed again, so a dispatch pass costs O(changed issues)."""
        path = self._issue_path(repo, number)
        try:
            with open(path, "rb") as f:
                st = os.fstat(f.fileno())
                key = (st.st_ino, st.st_mtime_ns, st.st_size)
                hit = self._parsed.get(path)
                if hit is not None and hit[0] == key:
                    issue, comments = hit[1]
                    return issue.model_copy(), list(comments)
                text = f.read().decode("utf-8")
        except FileNotFoundError:
            raise NotFound(f"{repo}: no issue #{number}") from None
        parsed = parse_issue_file(text, repo, path)
        self._parsed[path] = (key, parsed)
        return parsed[0].model_copy(), list(parsed[1])

    def _write_issue(self, issue: Issue, comments: list[Comment]) -> None:
        atomic_write_text(self._issue_path(issue.repo, issue.number), render_issue_file(issue, comments))

    def _read_pull(self, repo: str, number: int) -> _PullRecord:
        path = self._pull_path(repo, number)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise NotFound(f"{repo}: no pull request #{number}") from None
        try:
            return _PullRecord.model_validate_json(text)
        except ValidationError as exc:
            raise ForgeError(f"{path}: corrupt pull request record: {exc.errors()[0]['msg']}") from None

    def _write_pull(self, repo: str, record: _PullRecord) -> None:
        text = record.model_dump_json(by_alias=True, indent=2) + "\n"
        atomic_write_text(self._pull_path(repo, record.number), text)

    def _allocate(self, repo: str, what: Literal["number", "comment"]) -> int:
        """The next issue/PR number or comment id; call with the repo's file lock held."""
        path = self._dir(repo) / "counter.json"
        try:
            counter = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            counter = {"schema": SCHEMA, "number": 0, "comment": self._max_comment_id(repo)}
        except ValueError as exc:
            raise ForgeError(f"{path}: corrupt counter file: {exc}") from None
        floor = max([0, *self._numbers(repo, "issues"), *self._numbers(repo, "pulls")])
        counter["number"] = max(int(counter.get("number", 0)), floor)
        counter[what] = int(counter.get(what, 0)) + 1
        atomic_write_text(path, json.dumps(counter, indent=2) + "\n")
        return int(counter[what])

    def _max_comment_id(self, repo: str) -> int:
        ids = [c.id for n in self._numbers(repo, "issues") for c in self._read_issue(repo, n)[1]]
        ids += [c.id for n in self._numbers(repo, "pulls") for c in self._read_pull(repo, n).comments]
        return max(ids, default=0)

    def _flocked(self, repo: str, fn: Callable[[], T]) -> T:
        folder = self._dir(repo)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(folder / ".lock", "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                return fn()
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    async def _mutate(self, repo: str, fn: Callable[[], T]) -> T:
        """Run a load-modify-save in a thread, under this process's lock and the cross-process flock."""
        self._config(repo)
        lock = self._locks.setdefault(repo, asyncio.Lock())
        async with lock:
            return await asyncio.to_thread(self._flocked, repo, fn)

    # ------------------------------------------------------------ issues

    async def new_issue(
        self,
        repo: str,
        title: str,
        body: str = "",
        labels: Iterable[str] = (),
        *,
        author: str | None = None,
        key: str | None = None,
    ) -> Issue:
        """Open an issue (the ``agentos issue new`` command). With ``key``, an issue (open or closed) already
        carrying it is returned instead: a retried command files one issue, whichever process ran it first."""
        tag = marker(key) if key else None

        def op() -> Issue:
            if tag is None:
                return self._create(repo, title, body, list(labels), author or _user())
            for number in self._numbers(repo, "issues"):
                issue = self._read_issue(repo, number)[0]
                if tag in issue.body:
                    return issue
            full = f"{body.rstrip()}\n\n{tag}".lstrip("\n")
            return self._create(repo, title, full, list(labels), author or _user())

        return await self._mutate(repo, op)

    def _create(self, repo: str, title: str, body: str, labels: list[str], author: str) -> Issue:
        number = self._allocate(repo, "number")
        now = self.clock()
        issue = Issue(
            repo=repo,
            number=number,
            title=_one_line(title),
            body=body.strip("\n"),
            labels=list(dict.fromkeys(labels)),
            author=author,
            created_at=now,
            updated_at=now,
            url=self._issue_path(repo, number).as_uri(),
        )
        self._write_issue(issue, [])
        log.info("issue_created", repo=repo, number=number, title=issue.title)
        return issue

    async def set_ready(self, repo: str, number: int) -> Issue:
        """Label the issue ``agentos:ready`` (and no longer blocked): the dispatcher will pick it up."""
        await self._relabel(repo, number, add=[READY_LABEL], remove=[BLOCKED_LABEL])
        return await self.get_issue(repo, number)

    async def ready_issues(self, repo: str) -> list[Issue]:
        issues = [i for i in await self.list_issues(repo) if READY_LABEL in i.labels]
        return sorted(issues, key=lambda i: (i.created_at, i.number))

    async def get_issue(self, repo: str, number: int) -> Issue:
        return (await asyncio.to_thread(self._read_issue, repo, number))[0]

    async def list_issues(self, repo: str, *, state: Literal["open", "closed", "all"] = "open") -> list[Issue]:
        def read() -> list[Issue]:
            issues = [self._read_issue(repo, n)[0] for n in self._numbers(repo, "issues")]
            return [i for i in issues if state == "all" or i.state == state]

        return await asyncio.to_thread(read)

    async def create_issue(self, repo: str, title: str, body: str, labels: list[str], *, key: str) -> Issue:
        tag = marker(key)

        def op() -> Issue:
            for number in self._numbers(repo, "issues"):
                issue = self._read_issue(repo, number)[0]
                if issue.state == "open" and tag in issue.body:
                    return issue
            full = body if tag in body else f"{body.rstrip()}\n\n{tag}".lstrip("\n")
            return self._create(repo, title, full, labels, "agentos")

        return await self._mutate(repo, op)

    async def comment(self, repo: str, number: int, body: str, *, key: str) -> Comment:
        tag = marker(key)
        full = body if tag in body else f"{body.rstrip()}\n\n{tag}".lstrip("\n")

        def op() -> Comment:
            if self._is_issue(repo, number):
                issue, comments = self._read_issue(repo, number)
                found = next((c for c in comments if tag in c.body), None)
                if found is not None:
                    return found
                new = Comment(id=self._allocate(repo, "comment"), author="agentos", body=full, created_at=self.clock())
                self._write_issue(issue.model_copy(update={"updated_at": new.created_at}), [*comments, new])
                return new
            record = self._read_pull(repo, number)
            found = next((c for c in record.comments if tag in c.body), None)
            if found is not None:
                return found
            new = Comment(id=self._allocate(repo, "comment"), author="agentos", body=full, created_at=self.clock())
            record.comments.append(new)
            record.updated = new.created_at
            self._write_pull(repo, record)
            return new

        return await self._mutate(repo, op)

    async def comments(self, repo: str, number: int) -> list[Comment]:
        def read() -> list[Comment]:
            if self._is_issue(repo, number):
                return self._read_issue(repo, number)[1]
            return self._read_pull(repo, number).comments

        return await asyncio.to_thread(read)

    async def add_labels(self, repo: str, number: int, labels: list[str]) -> None:
        await self._relabel(repo, number, add=labels, remove=[])

    async def remove_label(self, repo: str, number: int, label: str) -> None:
        await self._relabel(repo, number, add=[], remove=[label])

    async def close_issue(self, repo: str, number: int) -> None:
        await self._update_issue(repo, number, state="closed")

    async def set_board_status(self, repo: str, issue: int, status: BoardStatus) -> None:
        """No board here: the labels that mirror it are the status."""
        add, remove = {
            "Ready": ([READY_LABEL], []),
            "In Progress": ([RUNNING_LABEL], []),
            "Blocked": ([BLOCKED_LABEL], [RUNNING_LABEL]),
            "In Review": ([], [RUNNING_LABEL]),
            "Done": ([], [RUNNING_LABEL]),
        }[status]
        await self._relabel(repo, issue, add=add, remove=remove)

    async def _relabel(self, repo: str, number: int, *, add: list[str], remove: list[str]) -> list[str]:
        """Add and remove labels of an issue or PR in one change; the labels it ends with."""

        def change(labels: list[str]) -> list[str]:
            kept = [label for label in labels if label not in remove]
            return kept + [label for label in dict.fromkeys(add) if label not in kept]

        def op() -> list[str]:
            if not self._is_issue(repo, number):
                record = self._read_pull(repo, number)
                labels = change(record.labels)
                if labels != record.labels:
                    record.labels, record.updated = labels, self.clock()
                    self._write_pull(repo, record)
                return labels
            issue, comments = self._read_issue(repo, number)
            labels = change(issue.labels)
            if labels != issue.labels:
                self._write_issue(issue.model_copy(update={"labels": labels, "updated_at": self.clock()}), comments)
            return labels

        return await self._mutate(repo, op)

    async def _update_issue(self, repo: str, number: int, **changes: Any) -> Issue:
        def op() -> Issue:
            issue, comments = self._read_issue(repo, number)
            if all(getattr(issue, k) == v for k, v in changes.items()):
                return issue
            issue = issue.model_copy(update={**changes, "updated_at": self.clock()})
            self._write_issue(issue, comments)
            log.info("issue_updated", repo=repo, number=number, **changes)
            return issue

        return await self._mutate(repo, op)

    # ------------------------------------------------------------ pull requests

    async def _remote_heads(self, repo: str) -> dict[str, str]:
        """Branch → sha in the user's repository: one ``for-each-ref`` there when it is a local path, else (a URL,
        or git refused to read it that way) ``ls-remote``, which also runs ``upload-pack``."""
        remote = self.remote_url(repo)
        git_dir = local_git_dir(remote)
        if git_dir is not None and (refs := await read_refs(git_dir, "refs/heads", env=self.git_env)) is not None:
            return {ref.removeprefix("refs/heads/"): sha for ref, sha in refs.items()}
        self.base_dir.mkdir(parents=True, exist_ok=True)
        res = await git("ls-remote", "--heads", remote, cwd=self.base_dir, env=self.git_env, check=False)
        if not res.ok:
            raise ForgeError(f"cannot read the branches of {remote}: {res.err.strip()[-200:]}")
        heads = {}
        for line in res.out.splitlines():
            sha, _, ref = line.partition("\t")
            if ref.startswith("refs/heads/"):
                heads[ref.removeprefix("refs/heads/")] = sha
        return heads

    def _to_pr(self, repo: str, record: _PullRecord, heads: Mapping[str, str] | None = None) -> PullRequest:
        head_sha = record.head_sha
        if heads is not None and record.state == "open":
            head_sha = heads.get(record.head, head_sha)
        mergeable = None
        cache = record.checks
        if (
            cache is not None
            and cache.head_sha == head_sha
            and (heads is None or heads.get(record.base) == cache.base_sha)
        ):
            mergeable = cache.mergeable
        return PullRequest(
            repo=repo,
            number=record.number,
            title=record.title,
            body=record.body,
            head=record.head,
            base=record.base,
            state=record.state,
            head_sha=head_sha,
            mergeable=mergeable,
            created_at=record.created,
            url=self._pull_path(repo, record.number).as_uri(),
            labels=list(record.labels),
        )

    def _records(self, repo: str) -> list[_PullRecord]:
        return [self._read_pull(repo, n) for n in self._numbers(repo, "pulls")]

    async def find_pr(self, repo: str, head: str) -> PullRequest | None:
        records = [r for r in await asyncio.to_thread(self._records, repo) if r.head == head and r.state != "closed"]
        if not records:
            return None
        best = max(records, key=lambda r: (r.state == "open", r.number))
        return self._to_pr(repo, best, await self._remote_heads(repo) if best.state == "open" else None)

    async def open_pr(self, repo: str, *, head: str, base: str, title: str, body: str) -> PullRequest:
        heads = await self._remote_heads(repo)
        if head not in heads:
            raise ForgeError(f"branch {head!r} is not in {self.remote_url(repo)}: push it first")
        if base not in heads:
            raise ForgeError(f"base branch {base!r} is not in {self.remote_url(repo)}")

        def op() -> _PullRecord:
            for record in self._records(repo):
                if record.head == head and record.state == "open":
                    return record
            now = self.clock()
            record = _PullRecord(
                number=self._allocate(repo, "number"),
                title=_one_line(title),
                body=body,
                head=head,
                base=base,
                head_sha=heads[head],
                created=now,
                updated=now,
            )
            self._write_pull(repo, record)
            log.info("pr_opened", repo=repo, number=record.number, head=head, base=base)
            return record

        return self._to_pr(repo, await self._mutate(repo, op), heads)

    async def get_pr(self, repo: str, number: int) -> PullRequest:
        record = await asyncio.to_thread(self._read_pull, repo, number)
        return self._to_pr(repo, record, await self._remote_heads(repo) if record.state == "open" else None)

    async def open_prs(self, repo: str) -> list[PullRequest]:
        records = [r for r in await asyncio.to_thread(self._records, repo) if r.state == "open"]
        if not records:
            return []
        heads = await self._remote_heads(repo)
        return [self._to_pr(repo, r, heads) for r in records]

    async def close_pr(self, repo: str, number: int, *, comment: str = "") -> None:
        if comment:
            await self.comment(repo, number, comment, key=f"close-pr-{number}")

        def op() -> None:
            record = self._read_pull(repo, number)
            if record.state == "open":
                record.state, record.updated = "closed", self.clock()
                self._write_pull(repo, record)
                log.info("pr_closed", repo=repo, number=number)

        await self._mutate(repo, op)

    async def _save_pull(self, repo: str, number: int, **changes: Any) -> _PullRecord:
        def op() -> _PullRecord:
            record = self._read_pull(repo, number).model_copy(update={**changes, "updated": self.clock()})
            self._write_pull(repo, record)
            return record

        return await self._mutate(repo, op)

    async def aclose(self) -> None:
        return None


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "local"
