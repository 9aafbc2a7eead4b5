"""The context layer: what a repository says about its product, for every worker prompt, the planner and the groomer.

Per repo, ``loops.context_files`` names the documents (default: the README's goal section, ``NORTH_STAR.md``,
``STRATEGY.md``, ``PLANNING_PRINCIPLES.md``, ``OBJECTIVES.md``, ``objectives.yaml``), read from the base branch
(:func:`git_reader`: ``git show origin/<base>:<name>``) or a checkout (:func:`directory_reader`). Each is cut to
``loops.context_file_chars`` and all of them together to ``loops.context_max_chars``; a missing file is skipped.

Of a README (any file named ``README*``) only its goal is kept: the first section whose heading reads like one
(``Goal``, ``Why``, ``Vision``, ``Mission``, ``Purpose``, ``Objectives``, ``Motivation``), else the paragraphs
before its first section. Whatever the documents say is untrusted text: :mod:`agentos.agents.prompt` strips,
quotes and fences it like an issue's text (:func:`agentos.agents.prompt.context_section`).

``objectives.yaml`` is also validated (:class:`Objectives`): a primary outcome and metrics, each with a weight, a
direction and one way to read it (a ``command`` printing a number in the repo, a ``file`` with an optional JSON
pointer, or an HTTPS ``url`` on an allow-listed host with an optional JSON pointer); a ``kind: prose`` metric reads
text instead of a number, judged before/after by ``loops.llm_agent`` against its ``description``. A bad file is one
line naming the file and line (``objectives.yaml:4: metrics[0].direction: …``) in :attr:`ProductContext.problems`,
never an exception; the reading of the metrics is not done here.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import urlsplit

from markdown_it import MarkdownIt
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from agentos import logging as alog
from agentos._worktree import ref_from_files
from agentos.errors import AgentosError
from agentos.gitutil import GitResult

if TYPE_CHECKING:
    from agentos.config import LoopsConfig

__all__ = [
    "DEFAULT_CONTEXT_FILES",
    "OBJECTIVES_FILE",
    "ContextDoc",
    "Metric",
    "Objectives",
    "ObjectivesInvalid",
    "ProductContext",
    "Reader",
    "directory_reader",
    "git_reader",
    "parse_objectives",
    "read_context",
    "readme_goal",
]

log = alog.get_logger("agentos.context")

DEFAULT_CONTEXT_FILES = (
    "README.md",
    "NORTH_STAR.md",
    "STRATEGY.md",
    "PLANNING_PRINCIPLES.md",
    "OBJECTIVES.md",
    "objectives.yaml",
)
OBJECTIVES_FILE = "objectives.yaml"
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
MAX_FILE_BYTES = 1024 * 1024
"""A context file larger than this is not read at all (its note says so)."""

Reader = Callable[[str], Awaitable[str | None]]
"""Reads one context file by its path in the repo: its text, or None when there is no such regular file."""

_GOAL_HEADING = re.compile(
    r"(?:the\s+|our\s+|project\s+)?(?:goals?|why\b.*|vision|mission|purpose|objectives?|motivation)\W*", re.IGNORECASE
)


# ---------------------------------------------------------------- objectives.yaml


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Metric(_Strict):
    """One metric of ``objectives.yaml``: what to move, which way, how much it counts and how to read it."""

    name: str = Field(min_length=1, max_length=100)
    weight: float = Field(default=1.0, gt=0)
    direction: Literal["up", "down"]
    kind: Literal["number", "prose"] = "number"
    description: str | None = Field(default=None, min_length=1, max_length=1000)
    command: str | None = Field(default=None, min_length=1)
    file: str | None = Field(default=None, min_length=1)
    url: str | None = Field(default=None, min_length=1)
    pointer: str | None = None

    @field_validator("file")
    @classmethod
    def _inside_repo(cls, value: str | None) -> str | None:
        if value is not None:
            path = PurePosixPath(value)
            if path.is_absolute() or ".." in path.parts:
                raise ValueError("a metric's file is a path inside the repo (relative, no '..')")
        return value

    @field_validator("pointer")
    @classmethod
    def _json_pointer(cls, value: str | None) -> str | None:
        if value is not None and value and not value.startswith("/"):
            raise ValueError("a JSON pointer starts with '/' (RFC 6901), e.g. /coverage/total")
        return value

    @field_validator("url")
    @classmethod
    def _allowed_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value)
        hosts = {h.lower() for h in (info.context or {}).get("url_hosts", ())}
        loopback = parts.scheme == "http" and (parts.hostname or "") in _LOOPBACK and parts.hostname in hosts
        if not (parts.scheme == "https" or loopback) or not parts.hostname:
            raise ValueError("a metric's url must be an https:// URL (http:// only for an allowed loopback host)")
        if parts.hostname.lower() not in hosts:
            allowed = ", ".join(sorted(hosts)) or "none"
            raise ValueError(f"host {parts.hostname} is not in loops.objective_url_hosts (allowed: {allowed})")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> Metric:
        sources = [k for k in ("command", "file", "url") if getattr(self, k) is not None]
        if len(sources) != 1:
            raise ValueError("a metric is read by exactly one of command, file or url")
        if self.pointer is not None and self.command is not None:
            raise ValueError("pointer goes with file or url, not command (a command prints the number)")
        return self

    @property
    def source(self) -> str:
        """How the metric is read, in words (``command `pytest --cov | tail -1```, ``file cov.json#/total``)."""
        pointer = f"#{self.pointer}" if self.pointer else ""
        if self.command is not None:
            return f"command `{self.command}`"
        return f"file {self.file}{pointer}" if self.file is not None else f"url {self.url}{pointer}"


class Objectives(_Strict):
    """``objectives.yaml``: the primary outcome the product is after and the metrics that show progress."""

    primary_outcome: str = Field(min_length=1, max_length=2000)
    metrics: list[Metric] = Field(default_factory=list, max_length=20)

    @model_validator(mode="after")
    def _unique_names(self) -> Objectives:
        names = [m.name for m in self.metrics]
        if len(names) != len(set(names)):
            raise ValueError("metric names must be unique")
        return self

    def describe(self) -> str:
        """The objectives in a few lines (what the prompts show next to the file)."""
        lines = [f"Primary outcome: {self.primary_outcome}"]
        for m in self.metrics:
            prose = f", prose: {m.description or 'judged by the LLM'}" if m.kind == "prose" else ""
            lines.append(f"- {m.name}: {m.direction} (weight {m.weight:g}), read by {m.source}{prose}")
        return "\n".join(lines)


class ObjectivesInvalid(ValueError):
    """``objectives.yaml`` is not valid; the message is one line naming the file and the line."""


def _line_of(doc: Any, loc: Sequence[int | str]) -> int | None:
    """The 1-based line of the deepest node on ``loc`` the YAML document knows."""
    node, line = doc, (1 if isinstance(doc, CommentedMap) else None)
    for key in loc:
        try:
            if isinstance(node, CommentedMap) and key in node:
                line = int(node.lc.key(key)[0]) + 1
            elif isinstance(node, CommentedSeq) and isinstance(key, int) and 0 <= key < len(node):
                line = int(node.lc.item(key)[0]) + 1
            else:
                break
        except (KeyError, IndexError, TypeError):
            break
        node = node[key]
    return line


def _key_path(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def parse_objectives(text: str, *, name: str = OBJECTIVES_FILE, url_hosts: Sequence[str] = ()) -> Objectives:
    """Validate ``objectives.yaml``; raises :class:`ObjectivesInvalid` with one line (the first problem)."""
    try:
        doc = YAML(typ="rt", pure=True).load(text)
    except Exception as exc:  # ruamel raises YAMLError, and KeyError or RecursionError on odd input
        mark = getattr(exc, "problem_mark", None)
        where = f"{name}:{mark.line + 1}" if mark is not None else name
        problem = getattr(exc, "problem", None) or (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ObjectivesInvalid(f"{where}: invalid YAML: {problem}"[:300]) from None
    if not isinstance(doc, dict):
        raise ObjectivesInvalid(f"{name}:1: the file must be a mapping with primary_outcome and metrics")
    try:
        return Objectives.model_validate(doc, context={"url_hosts": tuple(url_hosts)})
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith(("function-", "literal[")))]
        line = _line_of(doc, loc[:-1] if err["type"] == "missing" else loc)
        where = f"{name}:{line}" if line else name
        msg = "field required" if err["type"] == "missing" else str(err["msg"]).removeprefix("Value error, ")
        more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ObjectivesInvalid(f"{where}: {_key_path(loc)}: {msg}{more}"[:300]) from None


# ---------------------------------------------------------------- README's goal


@functools.cache
def _markdown() -> MarkdownIt:
    return MarkdownIt("commonmark").disable("inline")


def readme_goal(text: str, *, max_paragraphs: int = 3) -> str:
    """The goal of a README: its first goal-like section, else the paragraphs before its first ``##`` section."""
    lines = text.split("\n")
    tokens = _markdown().parse(text)
    headings = [
        (int(tok.tag[1]), tokens[i + 1].content.strip(), tok.map)
        for i, tok in enumerate(tokens)
        if tok.type == "heading_open" and tok.level == 0 and tok.map
    ]
    for n, (level, title, where) in enumerate(headings):
        if level >= 2 and len(title) <= 100 and _GOAL_HEADING.fullmatch(title) and where is not None:
            end = next((w[0] for lv, _, w in headings[n + 1 :] if lv <= level and w is not None), len(lines))
            return "\n".join(lines[where[0] : end]).strip()
    paragraphs: list[str] = []
    for tok in tokens:
        if tok.type == "heading_open" and tok.tag != "h1":
            break
        if tok.level == 0 and tok.map and tok.type in ("paragraph_open", "bullet_list_open", "ordered_list_open"):
            paragraphs.append("\n".join(lines[tok.map[0] : tok.map[1]]).strip())
            if len(paragraphs) >= max_paragraphs:
                break
    return "\n\n".join(paragraphs)


# ---------------------------------------------------------------- reading


@dataclass(frozen=True)
class ContextDoc:
    """One document of the context: its path in the repo, its (cut) text, and a note on what was left out."""

    name: str
    text: str
    note: str = ""


@dataclass(frozen=True)
class ProductContext:
    """A repo's product context: its documents (in ``loops.context_files`` order), its validated objectives, and
    one line per problem (an invalid ``objectives.yaml``)."""

    repo: str
    docs: tuple[ContextDoc, ...] = ()
    objectives: Objectives | None = None
    problems: tuple[str, ...] = field(default=())

    def __bool__(self) -> bool:
        return bool(self.docs or self.problems)

    @property
    def size(self) -> int:
        return sum(len(d.text) for d in self.docs)


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    at = text.rfind("\n", 0, limit)
    return text[:at] if at > limit // 2 else text[:limit]


def _is_readme(name: str) -> bool:
    return PurePosixPath(name).name.lower().startswith("readme")


async def read_context(
    repo: str,
    read: Reader,
    files: Sequence[str] = DEFAULT_CONTEXT_FILES,
    *,
    file_chars: int = 6000,
    max_chars: int = 20000,
    url_hosts: Sequence[str] = (),
) -> ProductContext:
    """Read ``files`` through ``read`` into a :class:`ProductContext`, each cut to ``file_chars`` characters and
    all together to ``max_chars`` (the later files are cut, or left out with a note, first). Never raises for
    what a file holds; a file ``read`` cannot read counts as missing."""
    docs: list[ContextDoc] = []
    problems: list[str] = []
    objectives: Objectives | None = None
    left = max_chars
    for name in dict.fromkeys(files):
        try:
            text = await read(name)
        except (OSError, UnicodeError, AgentosError) as exc:  # a git failure too: the context is never a blocker
            log.warning("context_file_unreadable", repo=repo, file=name, error=str(exc))
            text = None
        if text is None or not text.strip():
            continue
        if PurePosixPath(name).name == OBJECTIVES_FILE:
            try:
                objectives = parse_objectives(text, name=name, url_hosts=url_hosts)
            except ObjectivesInvalid as exc:
                problems.append(str(exc))
                log.warning("objectives_invalid", repo=repo, problem=str(exc))
        shown = readme_goal(text) if _is_readme(name) else text.strip()
        if not shown:
            continue
        notes = ["only its goal section"] if _is_readme(name) and shown != text.strip() else []
        budget = min(file_chars, left)
        if budget <= 0:
            docs.append(ContextDoc(name, "", "left out: the context is over loops.context_max_chars"))
            continue
        cut = _cut(shown, budget)
        if len(cut) < len(shown):
            notes.append(f"cut to {len(cut)} of {len(shown)} characters; the rest is in the repo")
        left -= len(cut)
        docs.append(ContextDoc(name, cut, "; ".join(notes)))
    return ProductContext(repo, tuple(docs), objectives, tuple(problems))


def directory_reader(root: Path) -> Reader:
    """Reads context files from a checkout at ``root``: regular files inside it only (a symlink out of it, a FIFO
    or a file over 1 MiB counts as missing)."""
    base = root.expanduser().resolve()

    async def read(name: str) -> str | None:
        path = (base / name).resolve()
        if not path.is_relative_to(base) or not path.is_file():
            return None
        if path.stat().st_size > MAX_FILE_BYTES:
            log.info("context_file_too_large", file=name, bytes=path.stat().st_size)
            return None
        return path.read_text(encoding="utf-8", errors="replace")

    return read


class GitRunner(Protocol):
    """What :func:`git_reader` needs of a workspace: its git."""

    async def git(self, *args: str, cwd: Path | None = None, check: bool = True, timeout: float = 120) -> GitResult: ...


def git_reader(ws: GitRunner, ref: str) -> Reader:
    """Reads context files as committed on ``ref`` (``refs/remotes/origin/main``) in the workspace's clone: one
    ``ls-tree -l`` per folder the files live in (the top level, usually: one for all of them), then a
    ``cat-file blob`` for each file that is there."""
    folders: dict[str, dict[str, list[str]]] = {}

    async def listing(folder: str) -> dict[str, list[str]]:
        """``path → [mode, type, object, size]`` of the entries of ``folder`` ("" for the top level) on ``ref``."""
        if folder not in folders:
            where = ("--", f"{folder}/") if folder else ()
            listed = await ws.git("ls-tree", "-z", "-l", ref, *where, check=False)
            entries: dict[str, list[str]] = {}
            for record in listed.out.split("\0") if listed.ok else ():
                meta, _, path = record.partition("\t")
                if len(fields := meta.split()) == 4:
                    entries[path] = fields
            folders[folder] = entries
        return folders[folder]

    async def read(name: str) -> str | None:
        path = PurePosixPath(name)
        if path.is_absolute() or ".." in path.parts:
            return None
        folder = "" if str(path.parent) == "." else str(path.parent)
        fields = (await listing(folder)).get(str(path))
        if fields is None or fields[1] != "blob":
            return None  # missing, a directory or a submodule
        if fields[0] == "120000" or not fields[3].isdigit() or int(fields[3]) > MAX_FILE_BYTES:
            return None  # a symlink, or too large to read
        shown = await ws.git("cat-file", "blob", fields[2], check=False)
        return shown.out if shown.ok else None

    return read


class BaseClone(GitRunner, Protocol):
    """What :class:`ContextCache` needs of a workspace: its git, its clone and its base branch."""

    @property
    def clone_path(self) -> Path: ...

    @property
    def base(self) -> str: ...


class ContextCache:
    """Each repo's product context as committed on its base branch, read again only when the base moved (or the
    context settings changed): most attempts start on a base that the last one already read."""

    def __init__(self) -> None:
        self._read: dict[str, tuple[tuple[object, ...], ProductContext]] = {}
        """repo → (the base commit and the context settings it was read with, its product context)."""

    async def read(self, repo: str, ws: BaseClone, loops: LoopsConfig) -> ProductContext:
        ref = f"refs/remotes/origin/{ws.base}"
        key = (
            ref_from_files(ws.clone_path, ref),
            tuple(loops.context_files),
            loops.context_file_chars,
            loops.context_max_chars,
            tuple(loops.objective_url_hosts),
        )
        cached = self._read.get(repo)
        if key[0] is not None and cached is not None and cached[0] == key:
            return cached[1]
        context = await read_context(
            repo,
            git_reader(ws, ref),
            loops.context_files,
            file_chars=loops.context_file_chars,
            max_chars=loops.context_max_chars,
            url_hosts=loops.objective_url_hosts,
        )
        if key[0] is not None:
            self._read[repo] = (key, context)
        return context
