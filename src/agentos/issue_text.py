"""An issue's text as a reader sees it, and the task fields read from it (docs/architecture.md).

:func:`strip_hidden` drops what the rendered issue does not show: HTML comments (``<!-- ... -->``, also
unterminated or closed by ``--!>``), markdown comment lines (``[//]: # (...)``), invisible format characters
(zero-width, bidi controls, Unicode tag characters: category Cf) and control characters other than newline
and tab. The prompt (:mod:`agentos.agents.prompt`) and :func:`parse_issue` both read through it, so hidden text
can neither reach an agent nor pick the agent, the type, the priority or a dependency.

:func:`parse_issue` reads the markdown with markdown-it-py (CommonMark, linear-time tokens) rather than
regexes over the raw text: a ``## Goal`` inside a fenced code block is code, not a section; a section runs from
its heading to the next section heading (``##``/``###`` with a name of words, an optional colon); its list
items (task-list boxes dropped) are the criteria. The regex version took minutes on a heading padded with a
few thousand spaces (a ReDoS).

The task type, first to last: a ``type:<t>`` label, a ``Type:`` line, then :func:`infer_type` (labels such as
``bug`` or ``documentation``, then the first keyword of the title, else of the goal: :data:`TYPE_KEYWORDS`),
else ``implementation``. The agent: an ``agent:<name>`` label, else an ``Agent:`` line. A label wins over a
line, as ``prio:`` labels do over ``Priority:`` lines; :attr:`ParsedIssue.type_from` says where the type
came from.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

from markdown_it import MarkdownIt
from markdown_it.token import Token

from agentos.acceptance import Acceptance, parse_acceptance
from agentos.graph import PRIORITY_RANK, TASK_TYPES

__all__ = ["LABEL_TYPES", "TYPE_KEYWORDS", "ParsedIssue", "infer_type", "parse_issue", "strip_hidden"]

_HTML_COMMENT = re.compile(r"<!--(?:-?>|[\s\S]*?(?:--!?>|\Z))")
# Also inside a list item or a block quote ("- [//]: # (…)" renders as an empty bullet: hidden all the same).
_MD_COMMENT = re.compile(
    r"^(?:[ \t]*(?:[-*+>]|\d{1,9}[.)])[ \t]{1,4}| {0,3})\[[^\]\n]*\]:[ \t]*(?:#|<>)(?:[ \t][^\n]*)?$\n?", re.MULTILINE
)
_LINE_BREAKS = re.compile("\r\n|[\r\u2028\u2029]")

_SECTION_NAME = re.compile(r"[A-Za-z]+(?: +[A-Za-z]+)*")
_SECTION_LEVELS = ("h2", "h3")
DEPENDS = re.compile(r"\bdepends\s+on\s*:?\s*((?:#\d+[\s,and]*)+)", re.IGNORECASE)
LINE_FIELD = re.compile(r"^[ \t]*(agent|type|priority)[ \t]*:[ \t]*(\S+)[ \t]*$", re.IGNORECASE | re.MULTILINE)
_MARKER = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+(?:\[[ xX]\]\s*)?")
_CHECKBOX = re.compile(r"^\[[ xX]\][ \t]*")
ALIASES = {
    "acceptance criteria": "success criteria",
    "done when": "success criteria",
    "success criterion": "success criteria",
    "constraint": "constraints",
}


TYPE_KEYWORDS: dict[str, str] = {
    "debugging": "bug bugs buggy fix fixes crash crashes crashed crashing error errors exception traceback "
    "regression broken fails failing failure flaky hang hangs debug panic segfault",
    "docs": "doc docs documentation document documenting readme changelog docstring docstrings tutorial guide howto",
    "research": "research investigate investigation evaluate evaluation compare comparison explore spike survey "
    "feasibility assess",
    "architecture": "design architecture architectural rfc adr redesign",
    "browser_automation": "browser scrape scraping playwright selenium puppeteer",
    "content": "blog article newsletter announcement copywriting",
}
"""Keywords (whole words, any case; space-separated) that infer a task type; the first one in the text decides."""
_KEYWORD_TYPE = {word: kind for kind, words in TYPE_KEYWORDS.items() for word in words.split()}
LABEL_TYPES: dict[str, str] = {
    "bug": "debugging",
    "documentation": "docs",
    "docs": "docs",
    "research": "research",
    "question": "research",
    "architecture": "architecture",
    "design": "architecture",
    "rfc": "architecture",
}
"""Plain labels (GitHub's defaults among them) that infer a task type."""
_WORD = re.compile(r"[a-z]+")
_INFER_CHARS = 2000


def infer_type(title: str, goal: str = "", labels: Sequence[str] = ()) -> str | None:
    """The task type an issue reads as (None: no clue): a plain label (:data:`LABEL_TYPES`), else the first
    keyword (:data:`TYPE_KEYWORDS`) of the title, else of the goal's beginning."""
    for label in labels:
        if (kind := LABEL_TYPES.get(label.strip().lower())) is not None:
            return kind
    for text in (title, goal[:_INFER_CHARS]):
        for word in _WORD.findall(text.lower()):
            if (kind := _KEYWORD_TYPE.get(word)) is not None:
                return kind
    return None


def _visible(char: str) -> bool:
    category = unicodedata.category(char)
    if category == "Cc":
        return char in "\n\t"
    return category != "Cf"


def strip_hidden(text: str) -> str:
    """``text`` as a reader sees it: plain line breaks, no HTML or markdown comment, no invisible character.

    The dispatcher reads an issue's fields from this too, so hidden text cannot pick the agent, the type, the
    priority or a dependency.
    """
    text = _LINE_BREAKS.sub("\n", text)
    text = "".join(char for char in text if _visible(char))
    text = _HTML_COMMENT.sub("", text)
    return _MD_COMMENT.sub("", text)


@dataclass
class ParsedIssue:
    goal: str
    success_criteria: list[str] = field(default_factory=list)
    constraints: list[str] = field(default_factory=list)
    agent: str | None = None
    type: str = "implementation"
    type_from: str = "default"
    """Where :attr:`type` came from: ``label``, ``line``, ``inferred`` or ``default``."""
    priority: str = "normal"
    depends_on: list[int] = field(default_factory=list)
    acceptance: Acceptance = field(default_factory=Acceptance)
    """The ``## Acceptance`` checks (:mod:`agentos.acceptance`); a section it could not read has a problem."""


@functools.cache
def _markdown() -> MarkdownIt:
    """CommonMark blocks only: the parser reads headings, lists and their raw text, never inline markup."""
    return MarkdownIt("commonmark").disable("inline")


def _section_name(heading: str) -> str | None:
    """``success criteria`` from ``Success Criteria:``; None when the heading is not a section's name."""
    name = heading.rstrip(" \t")
    if name.endswith(":"):
        name = name[:-1].rstrip(" \t")
    if _SECTION_NAME.fullmatch(name) is None:
        return None
    name = name.lower()
    return ALIASES.get(name, name)


def _sections(tokens: Sequence[Token]) -> list[tuple[str, int, int]]:
    """``(name, first line of the heading, first line after it)`` of each top-level section heading."""
    out = []
    for i, token in enumerate(tokens):
        if token.type != "heading_open" or token.level != 0 or token.tag not in _SECTION_LEVELS or not token.map:
            continue
        name = _section_name(tokens[i + 1].content)
        if name is not None:
            out.append((name, token.map[0], token.map[1]))
    return out


def _items(text: str) -> list[str]:
    """The items of a criteria section: each list item (its task-list box dropped), each other line."""
    out: list[str] = []
    item_opens = False  # the next paragraph is the first of a list item: one item, whatever its line breaks
    for token in _markdown().parse(text):
        if token.type == "list_item_open":
            item_opens = True
        elif token.type == "inline" and item_opens:
            item_opens = False
            item = _CHECKBOX.sub("", " ".join(line.strip() for line in token.content.splitlines())).strip()
            if item:
                out.append(item)
        elif token.type != "paragraph_open":
            item_opens = False
            if token.type in ("inline", "fence", "code_block", "html_block"):
                out.extend(item for line in token.content.splitlines() if (item := _MARKER.sub("", line).strip()))
    return out


def parse_issue(title: str, body: str, labels: list[str]) -> ParsedIssue:
    """Read goal, criteria, constraints and the optional lines from an issue; a one-liner still works.

    Only what a reader of the issue sees counts: HTML comments and invisible characters are dropped first.
    """
    title, body = strip_hidden(title), strip_hidden(body)
    lines = body.split("\n")
    headings = _sections(_markdown().parse(body))
    sections: dict[str, str] = {}
    for i, (name, _, after) in enumerate(headings):
        end = headings[i + 1][1] if i + 1 < len(headings) else len(lines)
        sections.setdefault(name, "\n".join(lines[after:end]).strip())
    preamble = "\n".join(lines[: headings[0][1]]) if headings else body
    fields = {m.group(1).lower(): m.group(2).strip().lower() for m in LINE_FIELD.finditer(body)}
    goal = sections.get("goal") or LINE_FIELD.sub("", preamble).strip() or title
    parsed = ParsedIssue(
        goal=goal,
        success_criteria=_items(sections.get("success criteria", "")),
        constraints=_items(sections.get("constraints", "")),
        agent=fields.get("agent"),
        acceptance=parse_acceptance(sections.get("acceptance")),
    )
    for label in labels:
        name, _, value = label.partition(":")
        if name.strip().lower() == "agent" and value.strip():
            parsed.agent = value.strip().lower()
    labelled = [label.split(":", 1)[1].strip().lower() for label in labels if label.lower().startswith("type:")]
    if chosen := next((t for t in labelled if t in TASK_TYPES), None):
        parsed.type, parsed.type_from = chosen, "label"
    elif fields.get("type") in TASK_TYPES:
        parsed.type, parsed.type_from = fields["type"], "line"
    elif inferred := infer_type(title, goal, labels):
        parsed.type, parsed.type_from = inferred, "inferred"
    priority = fields.get("priority")
    for label in labels:
        if label.lower().startswith("prio:"):
            priority = label.split(":", 1)[1].lower()
    if priority in PRIORITY_RANK:
        parsed.priority = priority
    for m in DEPENDS.finditer(body):
        for n in re.findall(r"#(\d+)", m.group(1)):
            if int(n) not in parsed.depends_on:
                parsed.depends_on.append(int(n))
    return parsed
