"""The chat side of the command table: ``/words args`` into a validated :class:`Command`, run, reply.

:func:`parse_command` turns a message into a :class:`Command` of :data:`agentos.control.commands.TABLE`
(its arguments checked by the command's model) or a :class:`ParseError` whose text is the reply, usually
the usage line; :func:`execute` runs it against the controller and returns short plain text. The chat
words of each command are its ``chat`` forms in the table (``/job on|off NAME``, ``/retry ID``). Nothing
here touches the network or imports aiogram, so tests and the hostile-input suite drive it directly;
:mod:`agentos.control.telegram` is the bot around it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agentos.control.arguments import validate
from agentos.control.command_spec import CommandSpec, ControllerPort, Form
from agentos.control.commands import GROUPS, TABLE
from agentos.control.replies import format_issue
from agentos.errors import ControlError

__all__ = [
    "Command",
    "ControllerPort",
    "NotACommand",
    "ParseError",
    "chat_heads",
    "execute",
    "format_issue",
    "help_text",
    "parse_command",
]

HELP = "help"
_HELP_TEXT = "This list"
_ALIASES = {"start": HELP, "pause": "off", "resume": "on"}
_MAX_TOKEN = 200
_NUMBER = re.compile(r"[0-9]{1,9}")


class ParseError(ControlError):
    """Text that is not a valid command; ``str(error)`` is the one-line reply (usually the usage)."""


class NotACommand(ParseError):
    """Text that does not start with ``/``; answered in private chats only."""


@dataclass(frozen=True, slots=True)
class Command:
    """A validated command: its ``name`` in the table (or ``help``), its checked ``args``, the ``@bot`` it named."""

    name: str
    args: Mapping[str, Any] = field(default_factory=dict)
    mention: str | None = None


def _forms() -> dict[str, list[tuple[CommandSpec, Form]]]:
    """Every chat form by its first word, in the table's order."""
    heads: dict[str, list[tuple[CommandSpec, Form]]] = {}
    for spec in TABLE.values():
        for form in spec.chat:
            heads.setdefault(form.words[0], []).append((spec, form))
    return heads


_HEADS = _forms()


def chat_heads() -> dict[str, str]:
    """Each chat command word with its one-line description, in the /help order (``help`` last)."""
    heads = {}
    for head, forms in _HEADS.items():
        specs = list(dict.fromkeys(spec.name for spec, _ in forms))
        heads[head] = TABLE[specs[0]].help if len(specs) == 1 else GROUPS[head]
    heads[HELP] = _HELP_TEXT
    return heads


def _usage_of(head: str) -> str:
    """``/job on|off NAME``; several commands under one word are joined with `` · ``."""
    if head == HELP:
        return "/help"
    parts: list[str] = []
    seen: set[str] = set()
    for spec, form in _HEADS[head]:
        if spec.name in seen:
            continue
        seen.add(spec.name)
        forms = [f for s, f in _HEADS[head] if s is spec]
        words = list(form.words)
        if len(forms) > 1:
            words[-1] = "|".join(f.words[-1] for f in forms)
        parts.append(" ".join(["/" + " ".join(words), *(a.word for a in spec.positional(form, options=True))]))
    return " · ".join(parts)


def _token(value: str) -> bool:
    return 0 < len(value) <= _MAX_TOKEN and value.isprintable()


def _bind(spec: CommandSpec, form: Form, words: list[str]) -> dict[str, Any] | None:
    """The form's arguments from the words after it, or None when they do not fit."""
    given = [w.lower() for w in words[: len(form.words) - 1]]
    if given != list(form.words[1:]):
        return None
    values: dict[str, Any] = dict(form.fixed)
    free = spec.positional(form, options=True)
    for word in words[len(form.words) - 1 :]:
        picked = next(((a, v) for a in free if a.pick is not None and (v := a.pick(word)) is not None), None)
        if picked is None:
            arg = next((a for a in free if a.pick is None), None)
            if arg is None:
                return None
            picked = (arg, word)
        arg, value = picked
        free.remove(arg)
        if arg.type == "int":
            if not _NUMBER.fullmatch(value):
                return None
            values[arg.name] = int(value)
        else:
            values[arg.name] = value.lower() if arg.choices is not None else value
    if any(a.required for a in free):
        return None
    try:
        return validate(spec, values)
    except ControlError:
        return None


def parse_command(text: str) -> Command:
    """Parse a chat message into a :class:`Command`; any other outcome is a :class:`ParseError`.

    ``/Job@agentos_bot off dispatch`` → ``Command("job", {"name": "dispatch", "enabled": False},
    mention="agentos_bot")``. Pure and total: for every string it returns a ``Command`` or raises ``ParseError``.
    """
    words = text.split()
    if not words or not words[0].startswith("/"):
        raise NotACommand("Not a command. Send /help for the list.")
    head, *rest = words
    name, _, mention = head[1:].partition("@")
    name = name.lower()
    name = _ALIASES.get(name, name)
    if name == HELP:
        return Command(HELP, mention=mention or None)
    if name not in _HEADS:
        raise ParseError("Unknown command. Send /help for the list.")
    if all(_token(w) for w in rest):
        for spec, form in _HEADS[name]:
            args = _bind(spec, form, rest)
            if args is not None:
                return Command(spec.name, args, mention or None)
    raise ParseError(f"usage: {_usage_of(name)}")


def help_text() -> str:
    """The ``/help`` reply: every command with its usage."""
    lines = ["agentos commands:"]
    for head, description in chat_heads().items():
        lines.append(f"{_usage_of(head)} — {description}")
    return "\n".join(lines)


async def execute(command: Command, controller: ControllerPort) -> str:
    """Run ``command`` against ``controller`` and return the reply text (``ControlError`` propagates)."""
    if command.name == HELP:
        return help_text()
    spec = TABLE[command.name]
    result = await spec.call(controller, command.args)
    assert spec.chat_reply is not None, f"{spec.name} has chat forms but no chat reply"
    return spec.chat_reply(command.args, result)
