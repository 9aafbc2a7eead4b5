"""The agent contract: parsing ``.agent_result.md`` (docs/agents.md).

An agent ends every run by writing ``.agent_result.md`` in the worktree root::

    STATUS: complete | partial | blocked
    BLOCKER_CODE: none | missing_context | ...
    SUMMARY: ...
    ...

Parsing rules:

* A field starts on a line that begins (column 0) with a known field name and a colon. Names are
  case-insensitive; markdown decoration is tolerated: a list bullet (``- ``, ``* ``, ``+ ``), a heading
  (``## ``) and bold (``**STATUS:**``, ``**STATUS**:``, ``__STATUS__:``). An indented or quoted line
  (``  STATUS: x``, ``> STATUS: x``) never starts a field.
* A field's value runs from its colon to the next line that starts a field, in any order, and is
  stripped of surrounding whitespace. Text before the first field is ignored, as is a code fence
  wrapped around the whole file.
* A duplicate field, a missing ``STATUS``, an unknown ``STATUS`` or ``BLOCKER_CODE``, a non-complete
  ``STATUS`` without a ``BLOCKER_CODE`` (``none`` does not count), or any value that is still a
  ``<...>`` template placeholder is a :class:`ContractError`. A ``complete`` result without a code
  gets ``none``.

Every failure of the file, whatever its cause, surfaces as :class:`ContractError`, whose
:attr:`~ContractError.blocker_code` is ``invalid_result_contract``.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from agentos.errors import AgentosError

__all__ = [
    "AGENT_BLOCKER_CODES",
    "BLOCKER_CODES",
    "CONTRACT_TEMPLATE",
    "FIELD_NAMES",
    "PERMANENT_CODES",
    "RESULT_FILE",
    "ContractError",
    "ResultContract",
    "Status",
    "field_at",
    "parse_contract",
    "read_contract",
    "read_result_bytes",
    "render_contract",
]

RESULT_FILE = ".agent_result.md"

Status = Literal["complete", "partial", "blocked"]
_STATUSES: dict[str, Status] = {"complete": "complete", "partial": "partial", "blocked": "blocked"}

AGENT_BLOCKER_CODES: tuple[str, ...] = (
    "none",
    "missing_context",
    "missing_credentials",
    "environment_failure",
    "dependency_blocked",
    "quota_limited",
    "runner_failure",
    "timeout",
    "test_failure",
    "manual_intervention_required",
    "fallback_exhausted",
    "invalid_result_contract",
)
"""The codes an agent may write, in the order the template lists them."""

BLOCKER_CODES: frozenset[str] = frozenset(
    {*AGENT_BLOCKER_CODES, "no_diff_produced", "prompt_too_large", "resource_limit"}
)
"""Every known code: the agent's codes plus those only agentos assigns."""

PERMANENT_CODES: frozenset[str] = frozenset({"manual_intervention_required", "prompt_too_large"})
"""Codes that end a task at once: no fallback agent, escalate."""

FIELD_NAMES: tuple[str, ...] = (
    "STATUS",
    "BLOCKER_CODE",
    "SUMMARY",
    "DONE",
    "BLOCKERS",
    "NEXT_STEP",
    "FILES_CHANGED",
    "TESTS_RUN",
    "DECISIONS",
    "RISKS",
    "ATTEMPTED_APPROACHES",
    "MANUAL_STEPS",
)
"""The fields of the file, in the order :func:`render_contract` writes them."""

_NAMES = "|".join(sorted(FIELD_NAMES, key=len, reverse=True))
_FIELD_START = re.compile(
    r"(?:[-*+][ \t]+|\#{1,6}[ \t]+)?"  # a list bullet or a heading
    r"(?:\*\*|__)?"  # bold opens
    rf"(?P<name>{_NAMES})"
    r"(?:\*\*|__)?[ \t]*:(?:\*\*|__)?",  # bold may close before or after the colon
    re.IGNORECASE | re.ASCII,  # ASCII: "ſTATUS" or "rıSKS" must not name a field
)
_PLACEHOLDER = re.compile(r"<[^<>\n]*>")
_FENCE_OPEN = re.compile(r"(?:```+|~~~+)[\w+-]*[ \t]*")
_FENCE_CLOSE = re.compile(r"(?:```+|~~~+)[ \t]*")
_TOKEN_DECORATION = " \t*_`'\"."

CONTRACT_TEMPLATE = (
    "Write these fields, each starting at the beginning of a line with its name and a colon. A value may\n"
    "span several lines; it ends where the next field starts. Replace every <...> placeholder.\n"
    "BLOCKER_CODE is required unless STATUS is complete (then write none).\n"
    "\n"
    "STATUS: <complete|partial|blocked>\n"
    f"BLOCKER_CODE: <{'|'.join(AGENT_BLOCKER_CODES)}>\n"
    "SUMMARY: <what you did, in a few sentences>\n"
    "DONE: <what is finished>\n"
    "BLOCKERS: <what stopped you, or none>\n"
    "NEXT_STEP: <what should happen next>\n"
    "FILES_CHANGED: <the files you changed>\n"
    "TESTS_RUN: <the test commands you ran and their results>\n"
    "DECISIONS: <design decisions you made and why>\n"
    "RISKS: <what might break>\n"
    "ATTEMPTED_APPROACHES: <approaches you tried, including those that failed>\n"
    "MANUAL_STEPS: <steps a human must take, or none>\n"
)
"""The contract as shown to agents in the prompt. It does not parse: its placeholders are rejected."""


class ContractError(AgentosError):
    """``.agent_result.md`` is missing, unreadable or breaks the contract.

    The message is one line naming what is wrong; ``line`` is the 1-based line it is about, if any.
    """

    blocker_code = "invalid_result_contract"

    def __init__(self, problem: str, *, line: int | None = None, file: str = RESULT_FILE) -> None:
        where = f"{file}: line {line}: " if line is not None else f"{file}: "
        super().__init__(where + problem)
        self.line = line


class ResultContract(BaseModel):
    """A parsed ``.agent_result.md``. Field values are the text the agent wrote, stripped."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    status: Status
    blocker_code: str = "none"
    summary: str = ""
    done: str = ""
    blockers: str = ""
    next_step: str = ""
    files_changed: str = ""
    tests_run: str = ""
    decisions: str = ""
    risks: str = ""
    attempted_approaches: str = ""
    manual_steps: str = ""

    @field_validator("blocker_code")
    @classmethod
    def _known_code(cls, code: str) -> str:
        if code not in BLOCKER_CODES:
            raise ValueError(f"unknown BLOCKER_CODE {code!r}")
        return code

    @model_validator(mode="after")
    def _code_unless_complete(self) -> ResultContract:
        if self.status != "complete" and self.blocker_code == "none":
            raise ValueError(f"STATUS {self.status} needs a BLOCKER_CODE other than none")
        return self

    @property
    def is_permanent(self) -> bool:
        """True when the blocker ends the task at once (no fallback agent)."""
        return self.blocker_code in PERMANENT_CODES


@dataclass(frozen=True)
class _Field:
    name: str
    line: int
    value: str


def field_at(line: str) -> tuple[str, str] | None:
    """``(NAME, rest of line)`` when ``line`` starts a contract field, else None."""
    match = _FIELD_START.match(line)
    if match is None:
        return None
    return match["name"].upper(), line[match.end() :]


def _show(value: str, limit: int = 60) -> str:
    """A one-line, bounded repr of a value for an error message (bounded after escaping: one astral or control
    character can take ten characters to show)."""
    shown = repr(value)
    return shown if len(shown) <= limit else shown[: limit - 4] + "...'"


def _unfenced(lines: list[str]) -> list[str]:
    """Blank out a code fence wrapped around the whole file (line numbers stay the same)."""
    filled = [i for i, line in enumerate(lines) if line.strip()]
    if len(filled) >= 2:
        first, last = filled[0], filled[-1]
        if _FENCE_OPEN.fullmatch(lines[first].strip()) and _FENCE_CLOSE.fullmatch(lines[last].strip()):
            lines = list(lines)
            lines[first] = lines[last] = ""
    return lines


def _split_fields(text: str) -> dict[str, _Field]:
    """Cut the text into fields; a duplicate is an error."""
    lines = _unfenced(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    fields: dict[str, _Field] = {}
    current: tuple[str, int, list[str]] | None = None

    def close() -> None:
        if current is not None:
            name, line_no, body = current
            fields[name] = _Field(name, line_no, "\n".join(body).strip())

    for number, line in enumerate(lines, start=1):
        start = field_at(line)
        if start is None:
            if current is not None:
                current[2].append(line)
            continue
        name, rest = start
        close()
        if name in fields:
            raise ContractError(f"duplicate field {name} (first on line {fields[name].line})", line=number)
        current = (name, number, [rest])
    close()
    return fields


def _token(value: str) -> str:
    """A one-word value (STATUS, BLOCKER_CODE) without markdown decoration, lower-cased."""
    return value.strip(_TOKEN_DECORATION).lower()


def parse_contract(text: str) -> ResultContract:
    """Parse the text of ``.agent_result.md``; raise :class:`ContractError` naming the first problem."""
    fields = _split_fields(text)
    for field in sorted(fields.values(), key=lambda f: f.line):
        if _PLACEHOLDER.fullmatch(field.value):
            raise ContractError(f"{field.name} is a template placeholder {_show(field.value)}", line=field.line)

    status_field = fields.get("STATUS")
    if status_field is None:
        raise ContractError("no STATUS field")
    status = _STATUSES.get(_token(status_field.value))
    if status is None:
        raise ContractError(
            f"STATUS must be complete, partial or blocked, not {_show(status_field.value)}", line=status_field.line
        )

    code_field = fields.get("BLOCKER_CODE")
    code = ""
    if code_field is not None:
        code = _token(code_field.value)
        if code and code not in BLOCKER_CODES:
            raise ContractError(f"unknown BLOCKER_CODE {_show(code_field.value)}", line=code_field.line)
    if status != "complete" and code in ("", "none"):
        line = code_field.line if code_field is not None else status_field.line
        raise ContractError(f"STATUS {status} needs a BLOCKER_CODE other than none", line=line)

    values = {name.lower(): field.value for name, field in fields.items() if name not in ("STATUS", "BLOCKER_CODE")}
    try:
        return ResultContract(status=status, blocker_code=code or "none", **values)
    except ValidationError as exc:  # unreachable when the checks above are complete; kept as a guard
        raise ContractError(f"invalid contract: {exc.errors()[0]['msg']}") from None


def read_contract(path: Path, max_bytes: int = 256 * 1024) -> ResultContract:
    """Read and parse the result file at ``path``.

    A missing file, a symlink, anything but a regular file, a file over ``max_bytes`` or one that is
    not UTF-8 is a :class:`ContractError`. Symlinks are refused so that a repository cannot point the
    file at a secret outside the worktree; FIFOs are refused so that reading never blocks.
    """
    data = read_result_bytes(path, max_bytes)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ContractError(f"not UTF-8 (byte {exc.start})", file=path.name) from None
    return parse_contract(text)


def read_result_bytes(path: Path, max_bytes: int = 256 * 1024, *, truncate: bool = False) -> bytes:
    """The bytes of the result file at ``path``, read as :func:`read_contract` does (never through a symlink,
    never from a FIFO or device, never more than ``max_bytes``); ``truncate`` gives the first ``max_bytes``
    of a larger file instead of refusing it. Anything else is a :class:`ContractError`.
    """
    name = path.name
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise ContractError("missing (the agent wrote no result file)", file=name) from None
    except OSError as exc:
        raise ContractError(f"cannot open ({exc.strerror or exc})", file=name) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ContractError("not a regular file", file=name)
        if info.st_size > max_bytes and not truncate:
            raise ContractError(f"too large ({info.st_size} bytes, limit {max_bytes})", file=name)
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise ContractError(f"cannot read ({exc.strerror or exc})", file=name) from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        if truncate:
            return data[:max_bytes]
        raise ContractError(f"too large (over {max_bytes} bytes)", file=name)
    return data


def render_contract(contract: ResultContract) -> str:
    """Write ``contract`` in the file format, fields in :data:`FIELD_NAMES` order.

    :func:`parse_contract` reads the result back unchanged when every value is stripped, has no
    carriage return and no line (after the first) that starts a field. Such a line is indented by two
    spaces so that it cannot start a field; the value then reads back with that indent.
    """
    out: list[str] = []
    for name in FIELD_NAMES:
        value: str = getattr(contract, name.lower())
        first, *rest = value.split("\n")
        rest = ["  " + line if field_at(line) else line for line in rest]
        out.append("\n".join([f"{name}: {first}" if first else f"{name}:", *rest]))
    return "\n".join(out) + "\n"
