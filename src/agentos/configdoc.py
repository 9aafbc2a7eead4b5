"""The key tables of ``docs/configuration.md``, generated from the pydantic models in :mod:`agentos.config`.

The page is prose written by hand around blocks that belong to this module, one per config section::

    ### 2.3 `routing`

    <!-- generated: routing -->
    | key | default | meaning |
    |---|---|---|
    | `max_attempts` | `4` | Attempts before a task is escalated … |
    <!-- /generated -->

A section is a dotted key path (``repos``, ``repos.hooks``, ``loops``); the top level is ``top-level``.
Each row comes from one field: its name, its default, and its ``Field(description=…)``. A field
without a description, a section without a block and a block naming no section are errors, so the
page cannot drift from the models. ``agentos config docs`` rewrites the blocks, ``--check`` only
compares.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, get_args

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from agentos.errors import AgentosError

TOP = "top-level"
END = "<!-- /generated -->"
_OPEN = re.compile(r"^<!-- generated: ([\w.-]+) -->$")
_HEADING = re.compile(r"^#{1,6} (\d+(?:\.\d+)*)\.? ")

# Defaults the model cannot show: the effective value of a field that defaults to None.
SHOWN_DEFAULTS: dict[str, str] = {
    "agents.binary": "the kind's name",
    "agents.prompt_via": "`stdin`",
}


class ConfigDocError(AgentosError):
    """The models and the page cannot be matched: a key without description, a missing or unknown block."""


@dataclass(frozen=True)
class Row:
    key: str
    default: str
    meaning: str


@dataclass(frozen=True)
class _Block:
    name: str
    start: int  # index of the first line inside the block
    end: int  # index of the closing marker
    number: str  # the number of the heading above the block ("2.1"), "" when it has none


def _nested(info: FieldInfo) -> type[BaseModel] | None:
    """The model a field holds directly, in a list, in a dict's values or as an optional."""
    for arg in (info.annotation, *get_args(info.annotation)):
        for inner in (arg, *get_args(arg)):
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                return inner
    return None


def _walk(model: type[BaseModel], section: str) -> Iterator[tuple[str, str, FieldInfo]]:
    """``(section, key, field)`` for every field, a section's own keys before its nested sections."""
    nested = []
    for key, info in model.model_fields.items():
        yield section, key, info
        if (inner := _nested(info)) is not None:
            nested.append((inner, key if section == TOP else f"{section}.{key}"))
    for inner, path in nested:
        yield from _walk(inner, path)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_value(k)}: {_value(v)}" for k, v in value.items()) + "}"
    if value == "":
        return '""'
    return str(value)


def _default(info: FieldInfo, ref: str) -> str:
    if info.is_required():
        return "required"
    value = info.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return ref
    if value is None:
        return "none"
    return f"`{_value(value)}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def rows(
    model: type[BaseModel], refs: Mapping[str, str] | None = None, shown_defaults: Mapping[str, str] | None = None
) -> dict[str, list[Row]]:
    """The rows of every section of ``model``, keyed by section, in the models' order.

    ``refs`` gives the default cell of a field holding a nested model (``see §2.3``, ``see below``),
    keyed by the nested section; ``shown_defaults`` overrides the default cell of ``section.key``.
    """
    refs = refs or {}
    shown = dict(shown_defaults or {})
    out: dict[str, list[Row]] = {}
    for section, key, info in _walk(model, TOP):
        path = key if section == TOP else f"{section}.{key}"
        if not (info.description or "").strip():
            raise ConfigDocError(f"config key {path} has no description (add Field(description=...) in its model)")
        default = shown.pop(path, None) or _default(info, refs.get(path, "see below"))
        out.setdefault(section, []).append(Row(key, default, _cell(info.description or "")))
    if shown:
        raise ConfigDocError(f"shown default for {', '.join(sorted(shown))}: no such config key")
    return out


def table(section_rows: list[Row]) -> str:
    """A Markdown table: key, default, meaning."""
    lines = ["| key | default | meaning |", "|---|---|---|"]
    lines += [f"| `{r.key}` | {_cell(r.default)} | {r.meaning} |" for r in section_rows]
    return "\n".join(lines)


def reference(model: type[BaseModel], *, shown_defaults: Mapping[str, str] | None = None) -> str:
    """Every section's table under its own heading: the key reference without the page's prose (what
    ``agentos config docs`` prints where there is no ``docs/configuration.md``, as after a wheel install)."""
    sections = rows(model, {}, shown_defaults)
    parts = ["# agentos configuration keys", ""]
    for name, section_rows in sections.items():
        parts += [f"## `{name}`", "", table(section_rows), ""]
    return "\n".join(parts)


def _blocks(lines: list[str], where: str) -> dict[str, _Block]:
    found: dict[str, _Block] = {}
    number, opened = "", None
    for i, line in enumerate(lines):
        if opened is not None:
            if line.strip() == END:
                found[opened[0]] = _Block(opened[0], opened[1], i, number)
                opened = None
            elif _OPEN.match(line.strip()):
                raise ConfigDocError(f"{where}:{i + 1}: block {opened[0]!r} is not closed with {END}")
            continue
        if heading := _HEADING.match(line):
            number = heading.group(1)
        elif match := _OPEN.match(line.strip()):
            if match.group(1) in found:
                raise ConfigDocError(f"{where}:{i + 1}: a second block for {match.group(1)!r}")
            opened = (match.group(1), i + 1)
    if opened is not None:
        raise ConfigDocError(f"{where}: block {opened[0]!r} is not closed with {END}")
    return found


def _refs(blocks: Mapping[str, _Block]) -> dict[str, str]:
    """``see §2.3`` for a section under its own heading, ``see below`` for one under its parent's."""
    out = {}
    for name, block in blocks.items():
        parent = blocks.get(name.rpartition(".")[0] if "." in name else TOP)
        same = parent is not None and parent.number == block.number
        out[name] = "see below" if same or not block.number else f"see §{block.number}"
    return out


def render(
    text: str, model: type[BaseModel], *, shown_defaults: Mapping[str, str] | None = None, where: str = "the page"
) -> str:
    """``text`` with every generated block replaced by the current table of its section; prose untouched."""
    lines = text.split("\n")
    blocks = _blocks(lines, where)
    sections = rows(model, _refs(blocks), shown_defaults)
    missing = [s for s in sections if s not in blocks]
    if missing:
        raise ConfigDocError(f"{where}: config section {missing[0]} has no block <!-- generated: {missing[0]} -->")
    unknown = sorted(set(blocks) - set(sections))
    if unknown:
        raise ConfigDocError(f"{where}: block <!-- generated: {unknown[0]} --> names no config section")
    for block in sorted(blocks.values(), key=lambda b: b.start, reverse=True):
        lines[block.start : block.end] = table(sections[block.name]).split("\n")
    return "\n".join(lines)


def stale_sections(
    text: str, model: type[BaseModel], *, shown_defaults: Mapping[str, str] | None = None, where: str = "the page"
) -> list[str]:
    """The sections whose block differs from what :func:`render` would write, in page order."""
    old_lines = text.split("\n")
    old = _blocks(old_lines, where)
    new_lines = render(text, model, shown_defaults=shown_defaults, where=where).split("\n")
    new = _blocks(new_lines, where)
    return [
        name
        for name, block in sorted(old.items(), key=lambda item: item[1].start)
        if old_lines[block.start : block.end] != new_lines[new[name].start : new[name].end]
    ]
