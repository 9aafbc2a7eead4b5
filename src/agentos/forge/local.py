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
"""

from __future__ import annotations

import asyncio
import fcntl
import getpass
import io
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from agentos.config import RepoConfig
from agentos.forge.base import (
    BLOCKED_LABEL,
    READY_LABEL,
    RUNNING_LABEL,
    BoardStatus,
    CheckRun,
    Checks,
    Comment,
    ForgeError,
    Issue,
    MergeResult,
    NotFound,
    PullRequest,
    marker,
)
from agentos.fsutil import atomic_write_text
from agentos.gitutil import git, local_git_dir, read_refs
from agentos.workspace import Workspace

log = structlog.get_logger(__name__)

T = TypeVar("T")
SCHEMA = 1
HEADER_RE = re.compile(r"^### comment (\d+) · (.*) · (\S+)$")
ESCAPE_RE = re.compile(r"^\\*### comment ")
UNESCAPE_RE = re.compile(r"^\\+### comment ")
CLOSES_RE = re.compile(r"(?i)\b(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?)\s+#(\d+)\b")
DIRTY_HINTS = ("unstaged changes", "staged changes", "not clean", "would be overwritten")


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _ts(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_ts(value: object) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        parsed = datetime.fromisoformat(value.strip())
    else:
        raise ValueError(f"not a timestamp: {value!r}")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _escape(text: str) -> str:
    """Make sure no line of a body can pass for a comment header (one more backslash; reversible)."""
    return "\n".join("\\" + line if ESCAPE_RE.match(line) else line for line in text.split("\n"))


def _unescape(text: str) -> str:
    return "\n".join(line[1:] if UNESCAPE_RE.match(line) else line for line in text.split("\n"))


def _one_line(text: str) -> str:
    return " ".join(text.replace("·", "-").split())


def closing_issues(text: str) -> list[int]:
    """Issue numbers a PR body closes (``Closes #N``, ``Fixes #N``, ``Resolves #N``), in order."""
    seen: list[int] = []
    for match in CLOSES_RE.finditer(text):
        number = int(match.group(1))
        if number not in seen:
            seen.append(number)
    return seen


def render_issue_file(issue: Issue, comments: Iterable[Comment]) -> str:
    """The Markdown text of an issue file (see the module docstring)."""
    meta = {
        "number": issue.number,
        "title": _one_line(issue.title),
        "state": issue.state,
        "labels": list(issue.labels),
        "author": _one_line(issue.author),
        "created": _ts(issue.created_at),
        "updated": _ts(issue.updated_at),
    }
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False  # type: ignore[assignment]  # keep number, title first
    yaml.width = 4096
    yaml.allow_unicode = True
    buf = io.StringIO()
    yaml.dump(meta, buf)
    parts = ["---\n", buf.getvalue(), "---\n"]
    if issue.body.strip("\n"):
        parts.append("\n" + _escape(issue.body.strip("\n")) + "\n")
    for c in comments:
        header = f"### comment {c.id} · {_one_line(c.author) or '-'} · {_ts(c.created_at)}"
        parts.append(f"\n---\n{header}\n\n{_escape(c.body.strip(chr(10)))}\n")
    return "".join(parts)


def parse_issue_file(text: str, repo: str, path: Path) -> tuple[Issue, list[Comment]]:
    """Read an issue file; a file that does not parse is a :class:`ForgeError` naming it, never skipped."""
    lines = text.split("\n")
    try:
        if lines[0].strip() != "---":
            raise ValueError("the file must start with a '---' line (YAML front matter)")
        end = next((i for i in range(1, len(lines)) if lines[i].strip() == "---"), None)
        if end is None:
            raise ValueError("the front matter has no closing '---' line")
        meta = YAML(typ="safe", pure=True).load("\n".join(lines[1:end]))
        if not isinstance(meta, dict):
            raise ValueError("the front matter is not a mapping")
        rest = lines[end + 1 :]
        starts = [i for i in range(len(rest) - 1) if rest[i].strip() == "---" and HEADER_RE.match(rest[i + 1])]
        comments = []
        for k, i in enumerate(starts):
            header = HEADER_RE.match(rest[i + 1])
            assert header is not None
            stop = starts[k + 1] if k + 1 < len(starts) else len(rest)
            comments.append(
                Comment(
                    id=int(header.group(1)),
                    author="" if header.group(2) == "-" else header.group(2),
                    body=_unescape("\n".join(rest[i + 2 : stop])).strip("\n"),
                    created_at=_parse_ts(header.group(3)),
                )
            )
        body = "\n".join(rest[: starts[0] if starts else len(rest)])
        issue = Issue(
            repo=repo,
            number=int(meta["number"]),
            title=str(meta["title"]),
            body=_unescape(body).strip("\n"),
            state=meta.get("state", "open"),
            labels=[str(label) for label in meta.get("labels") or []],
            author=str(meta.get("author") or ""),
            created_at=_parse_ts(meta["created"]),
            updated_at=_parse_ts(meta.get("updated") or meta["created"]),
            url=path.as_uri(),
        )
    except (ValueError, KeyError, TypeError, YAMLError, ValidationError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ForgeError(f"{path}: corrupt issue file: {first}") from None
    if path.stem.isdigit() and int(path.stem) != issue.number:
        raise ForgeError(f"{path}: corrupt issue file: number {issue.number} does not match the file name")
    return issue, comments


class _CheckCache(BaseModel):
    head_sha: str
    base_sha: str
    mergeable: bool
    checks: Checks
    tree: str | None = None
    """The tree of the merge result the checks ran on: the squash of the same (head, base) is that tree."""


class _PullRecord(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    schema_: int = Field(default=SCHEMA, alias="schema")
    number: int
    title: str
    body: str = ""
    head: str
    base: str
    state: Literal["open", "closed", "merged"] = "open"
    head_sha: str = ""
    labels: list[str] = Field(default_factory=list)
    created: datetime
    updated: datetime
    merge_intent: str = ""
    merged_sha: str = ""
    merged_at: datetime | None = None
    cleaned_up: bool = False
    checks: _CheckCache | None = None
    comments: list[Comment] = Field(default_factory=list)


class LocalForge:
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

    # ------------------------------------------------------------ checks

    async def checks(self, repo: str, number: int) -> Checks:
        """The test command on the merge result of head into the current base, cached per (head, base)."""
        lock = self._check_locks.setdefault((repo, number), asyncio.Lock())
        async with lock:
            record = await asyncio.to_thread(self._read_pull, repo, number)
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
            cache = _CheckCache(head_sha=head_sha, base_sha=base_sha, mergeable=mergeable, checks=checks, tree=tree)
            await self._save_pull(repo, number, checks=cache)
            log.info("checks_ran", repo=repo, number=number, head=head_sha, base=base_sha, state=checks.state)
            return checks

    async def _run_checks(
        self, ws: Workspace, record: _PullRecord, head_sha: str, base_sha: str
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
            result = await ws.run_tests(tree)
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
            record = await asyncio.to_thread(self._read_pull, repo, number)
            if record.state == "merged":
                await self._finish_merge(repo, record)
                return MergeResult(merged=True, sha=record.merged_sha, message="already merged")
            if record.state == "closed":
                return MergeResult(merged=False, message=f"pull request #{number} is closed")
            ws = self.workspace(repo)
            head_sha, base_sha = await _tips(ws, record)
            if base_sha is None:
                return MergeResult(merged=False, message=f"base branch {record.base} is not in the repository")
            intent = record.merge_intent and await ws.rev(record.merge_intent)
            if intent and await ws.is_ancestor(intent, base_sha):
                return await self._landed(repo, record, record.merge_intent, sha, "already merged")
            if head_sha is None:
                return MergeResult(merged=False, message=f"head branch {record.head} is not in the repository")
            if head_sha != sha:
                return MergeResult(merged=False, message=f"head moved: expected {sha[:12]}, it is at {head_sha[:12]}")
            if await ws.is_ancestor(head_sha, base_sha):
                return await self._landed(repo, record, base_sha, sha, f"already contained in {record.base}")
            subject = _one_line(title or record.title)
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
                        return MergeResult(merged=False, message=f"conflicts with {record.base}: {detail}")
                    args = ["-c", "commit.gpgsign=false", "commit", "-q", "--no-verify", "--cleanup=whitespace"]
                    await ws.git(*args, "-m", subject, *(["-m", message_body] if message_body else []), cwd=tree)
                    new_sha = await ws.head_sha(tree)
            await self._save_pull(repo, number, merge_intent=new_sha)
            refused = await self._push_base(repo, ws, new_sha, record.base)
            if refused:
                return MergeResult(merged=False, message=refused)
            return await self._landed(repo, record, new_sha, sha, f"squashed into {record.base}")

    @staticmethod
    async def _squash_checked(
        ws: Workspace, record: _PullRecord, head_sha: str, base_sha: str, subject: str, body: str
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
        self, repo: str, record: _PullRecord, merged_sha: str, head_sha: str, message: str
    ) -> MergeResult:
        record = await self._save_pull(
            repo, record.number, state="merged", merged_sha=merged_sha, merged_at=self.clock(), head_sha=head_sha
        )
        log.info("pr_merged", repo=repo, number=record.number, sha=merged_sha)
        await self._finish_merge(repo, record)
        return MergeResult(merged=True, sha=merged_sha, message=message)

    async def _push_base(self, repo: str, ws: Workspace, sha: str, base: str) -> str | None:
        """Fast-forward the user's base branch to ``sha``; why it was refused, or None."""
        user_repo = Path(self.remote_url(repo))
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

    async def _finish_merge(self, repo: str, record: _PullRecord) -> None:
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
                await self._update_issue(repo, issue, state="closed")
                await self._relabel(repo, issue, add=[], remove=[RUNNING_LABEL])
            except NotFound:
                log.warning("closed_issue_missing", repo=repo, pr=record.number, issue=issue)
        await self._save_pull(repo, record.number, cleaned_up=True)

    async def aclose(self) -> None:
        return None


async def _tips(ws: Workspace, record: _PullRecord) -> tuple[str | None, str | None]:
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


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "local"
