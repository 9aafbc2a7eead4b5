"""An issue's acceptance checks: what must hold on the base branch after its PR merges (issue #18).

An issue may carry a ``## Acceptance`` section. Its items, one per list item or line::

    ## Acceptance
    - command: make smoke          (exits 0 in a fresh worktree of the base branch after the merge)
    - file: docs/guide.md          (exists there)
    - url: https://status.example.com/health
      json: /status                (optional: a JSON pointer into the answer …)
      equals: ok                   (… and the value it must equal; without json: the answer must be 200)
    - human: the dashboard shows the new chart   (an operator signs off: ``agentos ctl accept repo#N``)

or the same as a fenced YAML list under the heading (```` ```yaml ````), each item a mapping with one of
``command``, ``file``, ``url`` (plus ``json`` and ``equals``) or ``human``. A value in backticks loses them.

:func:`parse_acceptance` is tolerant like the rest of :mod:`agentos.issue_text`: it never raises. A section it
cannot read gives no checks and a :attr:`Acceptance.problem` naming the line, which the acceptance job posts
once on the issue (the task then runs without checks). A ``human`` item is also how an issue asks for its
manual steps to be confirmed: the task waits in ``merged`` until an operator accepts it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

__all__ = ["KINDS", "Acceptance", "AcceptanceCheck", "AcceptanceState", "CheckKind", "parse_acceptance"]

CheckKind = Literal["command", "file", "url", "human"]
KINDS: tuple[str, ...] = ("command", "file", "url", "human")
_EXTRA = ("json", "equals")
_MARKER = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+(?:\[[ xX]\]\s*)?")
_FIELD = re.compile(r"^([A-Za-z_]+)\s*:\s*(.*)$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})[ \t]*([A-Za-z]*)[^\n]*$")
_MAX_CHECKS = 20
_MAX_VALUE = 2000


class AcceptanceCheck(BaseModel):
    """One check: ``kind`` and its ``value`` (a command line, a path, a URL, the operator's question)."""

    kind: CheckKind
    value: str
    json_pointer: str | None = None
    equals: str | None = None

    def describe(self) -> str:
        extra = f" {self.json_pointer} == {self.equals!r}" if self.json_pointer is not None else ""
        return f"{self.kind}: {self.value}{extra}"


class AcceptanceState(BaseModel):
    """A task's acceptance: its issue's checks, the generations a failed check sent back before it (``fixes``),
    and when its machine checks passed on the merged base (``passed_at``; a ``human`` item then still waits)."""

    checks: list[AcceptanceCheck] = Field(default_factory=list)
    fixes: int = 0
    passed_at: datetime | None = None

    @property
    def needs_human(self) -> bool:
        return any(c.kind == "human" for c in self.checks)


@dataclass
class Acceptance:
    """The checks read from an issue; ``problem`` says why a section present could not be read (then no checks)."""

    checks: list[AcceptanceCheck] = field(default_factory=list)
    problem: str | None = None

    @property
    def needs_human(self) -> bool:
        return any(c.kind == "human" for c in self.checks)


class _Malformed(ValueError):
    pass


def _clean(value: Any) -> str:
    text = str(value).strip()
    if len(text) >= 2 and text[0] == text[-1] == "`":
        text = text.strip("`").strip()
    return text


def _check(fields: dict[str, Any], where: str) -> AcceptanceCheck:
    kinds = [k for k in KINDS if k in fields]
    unknown = [k for k in fields if k not in KINDS and k not in _EXTRA]
    if unknown:
        raise _Malformed(f"{where}: unknown key `{unknown[0]}` (use command, file, url, human; json and equals)")
    if len(kinds) != 1:
        raise _Malformed(f"{where}: give exactly one of command, file, url or human")
    kind = kinds[0]
    value = _clean(fields[kind])
    if not value:
        raise _Malformed(f"{where}: `{kind}` has no value")
    if len(value) > _MAX_VALUE:
        raise _Malformed(f"{where}: `{kind}` is longer than {_MAX_VALUE} characters")
    pointer = _clean(fields["json"]) if "json" in fields else None
    equals = _clean(fields["equals"]) if "equals" in fields else None
    if kind != "url" and (pointer is not None or equals is not None):
        raise _Malformed(f"{where}: json and equals belong to a url check")
    if kind == "url" and not re.match(r"https?://[^/\s]+", value):
        raise _Malformed(f"{where}: `{value}` is not an http(s) URL")
    if pointer is not None and not pointer.startswith("/"):
        raise _Malformed(f"{where}: the JSON pointer `{pointer}` must start with /")
    if equals is not None and pointer is None:
        raise _Malformed(f"{where}: equals needs a json pointer")
    if kind == "file" and (value.startswith("/") or ".." in value.split("/")):
        raise _Malformed(f"{where}: the file `{value}` must be a path inside the repository")
    return AcceptanceCheck(kind=kind, value=value, json_pointer=pointer, equals=equals)


def _from_lines(lines: list[str]) -> list[AcceptanceCheck]:
    items: list[tuple[int, dict[str, str]]] = []
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        text = _MARKER.sub("", raw).strip()
        match = _FIELD.match(text)
        if match is None:
            raise _Malformed(f"line {number} (`{text[:80]}`): not `kind: value` (command, file, url or human)")
        key, value = match.group(1).lower(), match.group(2)
        last = items[-1][1] if items else {}
        if key in _EXTRA and last and key not in last:
            last[key] = value  # json:/equals: continue the url item above them
        else:
            items.append((number, {key: value}))
    return [_check(fields, f"line {number}") for number, fields in items]


def _from_yaml(text: str) -> list[AcceptanceCheck]:
    try:
        data = YAML(typ="safe", pure=True).load(text)
    except YAMLError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _Malformed(f"the YAML block does not parse: {first}") from None
    if isinstance(data, dict):
        data = data.get("checks", [data]) if set(data) <= {"checks"} else [data]
    if not isinstance(data, list):
        raise _Malformed("the YAML block must be a list of checks (- command: …)")
    checks = []
    for i, item in enumerate(data, 1):
        if not isinstance(item, dict):
            raise _Malformed(f"YAML item {i}: a check is a mapping such as `command: make test`")
        checks.append(_check({str(k).lower(): "" if v is None else v for k, v in item.items()}, f"YAML item {i}"))
    return checks


def _fenced(section: str) -> str | None:
    """The first fenced block's text when the section holds one (```yaml, ``` or ~~~), else None."""
    lines = section.split("\n")
    for i, line in enumerate(lines):
        opened = _FENCE.match(line)
        if opened is None:
            continue
        bar = opened.group(1)
        body = []
        for inner in lines[i + 1 :]:
            if inner.strip().startswith(bar[0] * len(bar)) and not inner.strip().strip(bar[0]):
                break
            body.append(inner)
        return "\n".join(body)
    return None


def parse_acceptance(section: str | None) -> Acceptance:
    """The checks of an ``## Acceptance`` section's text (None or empty: no section, no checks); never raises."""
    if section is None or not section.strip():
        return Acceptance()
    try:
        block = _fenced(section)
        checks = _from_yaml(block) if block is not None else _from_lines(section.split("\n"))
    except _Malformed as exc:
        return Acceptance(problem=str(exc))
    except Exception as exc:  # the boundary of an untrusted text: a parser bug must not stop the dispatcher
        return Acceptance(problem=f"the section could not be read ({type(exc).__name__})")
    if not checks:
        return Acceptance(problem="the section names no check")
    if len(checks) > _MAX_CHECKS:
        return Acceptance(problem=f"{len(checks)} checks; at most {_MAX_CHECKS}")
    return Acceptance(checks=checks)
