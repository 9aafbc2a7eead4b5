"""The files of the embedded forge: the Markdown issue file (:func:`render_issue_file`,
:func:`parse_issue_file`) and the JSON record of a pull request (:class:`_PullRecord`, with its checks cache).

The layout and an example issue file are in :mod:`agentos.forge.local`, which reads and writes these files
under its lock and re-exports the public names.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from agentos.forge.base import Checks, Comment, ForgeError, Issue

__all__ = ["closing_issues", "parse_issue_file", "render_issue_file"]

SCHEMA = 1
HEADER_RE = re.compile(r"^### comment (\d+) · (.*) · (\S+)$")
ESCAPE_RE = re.compile(r"^\\*### comment ")
UNESCAPE_RE = re.compile(r"^\\+### comment ")
CLOSES_RE = re.compile(r"(?i)\b(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?)\s+#(\d+)\b")


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
