"""The files of the embedded forge: the Markdown issue file (:func:`render_issue_file`,
:func:`parse_issue_file`), the JSON record of a pull request (:class:`PullRecord`, with its :class:`CheckCache`),
and :class:`ForgeFiles`, which reads and changes them under the locks (the forge and its checks both use it).

The layout and an example issue file are in :mod:`agentos.forge.local`, which re-exports the public names.
"""

from __future__ import annotations

import asyncio
import fcntl
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
from agentos.forge.base import Checks, Comment, ForgeError, Issue, NotFound, ReviewState
from agentos.fsutil import atomic_write_text

__all__ = [
    "CheckCache",
    "ForgeFiles",
    "PullRecord",
    "ReviewRecord",
    "closing_issues",
    "one_line",
    "parse_issue_file",
    "render_issue_file",
    "utcnow",
]

log = structlog.get_logger("agentos.forge.local")

T = TypeVar("T")

SCHEMA = 1
HEADER_RE = re.compile(r"^### comment (\d+) · (.*) · (\S+)$")
ESCAPE_RE = re.compile(r"^\\*### comment ")
UNESCAPE_RE = re.compile(r"^\\+### comment ")
CLOSES_RE = re.compile(r"(?i)\b(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?)\s+#(\d+)\b")


def utcnow() -> datetime:
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


def one_line(text: str) -> str:
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
        "title": one_line(issue.title),
        "state": issue.state,
        "labels": list(issue.labels),
        "author": one_line(issue.author),
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
        header = f"### comment {c.id} · {one_line(c.author) or '-'} · {_ts(c.created_at)}"
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


class CheckCache(BaseModel):
    head_sha: str
    base_sha: str
    mergeable: bool
    checks: Checks
    tree: str | None = None
    """The tree of the merge result the checks ran on: the squash of the same (head, base) is that tree."""


class ReviewRecord(BaseModel):
    """One review of a PR (``agentos pr review``); with a path, also a comment on that line."""

    id: int
    author: str = ""
    state: ReviewState = "commented"
    body: str = ""
    path: str = ""
    line: int | None = None
    created: datetime


class PullRecord(BaseModel):
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
    checks: CheckCache | None = None
    comments: list[Comment] = Field(default_factory=list)
    reviews: list[ReviewRecord] = Field(default_factory=list)


class ForgeFiles:
    """The issue files, PR records and counter of each repository under ``root/local-forge``, and the locks that
    make every change a load-modify-save: an :class:`asyncio.Lock` per repo in this process and an ``flock`` on
    ``<repo>/.lock`` across processes (the daemon and ``agentos issue …`` share the files)."""

    def __init__(
        self, root: Path, repos: Mapping[str, RepoConfig], *, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.base_dir = Path(root).expanduser().resolve() / "local-forge"
        self.repos = dict(repos)
        self.clock = clock
        self._locks: dict[str, asyncio.Lock] = {}
        self._parsed: dict[Path, tuple[tuple[int, int, int], tuple[Issue, list[Comment]]]] = {}

    def config(self, repo: str) -> RepoConfig:
        """The repository's config; :class:`NotFound` for a repo the config does not name."""
        try:
            return self.repos[repo]
        except KeyError:
            raise NotFound(f"unknown repo {repo!r} (known: {', '.join(sorted(self.repos)) or 'none'})") from None

    def folder(self, repo: str) -> Path:
        self.config(repo)
        return self.base_dir / repo

    def issue_path(self, repo: str, number: int) -> Path:
        return self.folder(repo) / "issues" / f"{number}.md"

    def pull_path(self, repo: str, number: int) -> Path:
        return self.folder(repo) / "pulls" / f"{number}.json"

    def numbers(self, repo: str, kind: Literal["issues", "pulls"]) -> list[int]:
        folder = self.folder(repo) / kind
        if not folder.is_dir():
            return []
        return sorted(int(p.stem) for p in folder.iterdir() if p.stem.isdigit() and p.suffix in (".md", ".json"))

    def is_issue(self, repo: str, number: int) -> bool:
        """True for an issue, False for a pull request; NotFound for neither."""
        if self.issue_path(repo, number).is_file():
            return True
        if self.pull_path(repo, number).is_file():
            return False
        raise NotFound(f"{repo}: no issue or pull request #{number}")

    # ------------------------------------------------------------ reading and writing (blocking: call in a thread)

    def read_issue(self, repo: str, number: int) -> tuple[Issue, list[Comment]]:
        """The issue file, parsed; a file unchanged since the last read (same inode, mtime and size: every
        write is an atomic replace) is not parsed again, so a dispatch pass costs O(changed issues)."""
        path = self.issue_path(repo, number)
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

    def write_issue(self, issue: Issue, comments: list[Comment]) -> None:
        atomic_write_text(self.issue_path(issue.repo, issue.number), render_issue_file(issue, comments))

    def read_pull(self, repo: str, number: int) -> PullRecord:
        path = self.pull_path(repo, number)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise NotFound(f"{repo}: no pull request #{number}") from None
        try:
            return PullRecord.model_validate_json(text)
        except ValidationError as exc:
            raise ForgeError(f"{path}: corrupt pull request record: {exc.errors()[0]['msg']}") from None

    def write_pull(self, repo: str, record: PullRecord) -> None:
        text = record.model_dump_json(by_alias=True, indent=2) + "\n"
        atomic_write_text(self.pull_path(repo, record.number), text)

    def records(self, repo: str) -> list[PullRecord]:
        return [self.read_pull(repo, n) for n in self.numbers(repo, "pulls")]

    def allocate(self, repo: str, what: Literal["number", "comment"]) -> int:
        """The next issue/PR number or comment id; call with the repo's file lock held (:meth:`mutate`)."""
        path = self.folder(repo) / "counter.json"
        try:
            counter = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            counter = {"schema": SCHEMA, "number": 0, "comment": self._max_comment_id(repo)}
        except ValueError as exc:
            raise ForgeError(f"{path}: corrupt counter file: {exc}") from None
        floor = max([0, *self.numbers(repo, "issues"), *self.numbers(repo, "pulls")])
        counter["number"] = max(int(counter.get("number", 0)), floor)
        counter[what] = int(counter.get(what, 0)) + 1
        atomic_write_text(path, json.dumps(counter, indent=2) + "\n")
        return int(counter[what])

    def _max_comment_id(self, repo: str) -> int:
        ids = [c.id for n in self.numbers(repo, "issues") for c in self.read_issue(repo, n)[1]]
        ids += [c.id for n in self.numbers(repo, "pulls") for c in self.read_pull(repo, n).comments]
        return max(ids, default=0)

    # ------------------------------------------------------------ changes (async, under the locks)

    def _flocked(self, repo: str, fn: Callable[[], T]) -> T:
        folder = self.folder(repo)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(folder / ".lock", "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                return fn()
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    async def mutate(self, repo: str, fn: Callable[[], T]) -> T:
        """Run a load-modify-save in a thread, under this process's lock and the cross-process flock."""
        self.config(repo)
        lock = self._locks.setdefault(repo, asyncio.Lock())
        async with lock:
            return await asyncio.to_thread(self._flocked, repo, fn)

    async def save_pull(self, repo: str, number: int, **changes: Any) -> PullRecord:
        """Change fields of a PR record (and its ``updated`` time); the record as saved."""

        def op() -> PullRecord:
            record = self.read_pull(repo, number).model_copy(update={**changes, "updated": self.clock()})
            self.write_pull(repo, record)
            return record

        return await self.mutate(repo, op)

    async def update_issue(self, repo: str, number: int, **changes: Any) -> Issue:
        """Change fields of an issue (and its ``updated`` time) unless they already have those values."""

        def op() -> Issue:
            issue, comments = self.read_issue(repo, number)
            if all(getattr(issue, k) == v for k, v in changes.items()):
                return issue
            issue = issue.model_copy(update={**changes, "updated_at": self.clock()})
            self.write_issue(issue, comments)
            log.info("issue_updated", repo=repo, number=number, **changes)
            return issue

        return await self.mutate(repo, op)

    async def relabel(self, repo: str, number: int, *, add: list[str], remove: list[str]) -> list[str]:
        """Add and remove labels of an issue or PR in one change; the labels it ends with."""

        def change(labels: list[str]) -> list[str]:
            kept = [label for label in labels if label not in remove]
            return kept + [label for label in dict.fromkeys(add) if label not in kept]

        def op() -> list[str]:
            if not self.is_issue(repo, number):
                record = self.read_pull(repo, number)
                labels = change(record.labels)
                if labels != record.labels:
                    record.labels, record.updated = labels, self.clock()
                    self.write_pull(repo, record)
                return labels
            issue, comments = self.read_issue(repo, number)
            labels = change(issue.labels)
            if labels != issue.labels:
                self.write_issue(issue.model_copy(update={"labels": labels, "updated_at": self.clock()}), comments)
            return labels

        return await self.mutate(repo, op)
