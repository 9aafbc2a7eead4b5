"""The `agentos` command tree as the user sees it, for tests that walk every command.

Most commands are typer's; a command that hands its arguments to an argparse command line of its own
(``allow_extra_args`` and ``ignore_unknown_options``, with a ``parser()`` in ``agentos.cli.<name>``) is
read from that parser, so the walk covers its subcommands and options too.
"""

from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass, field
from typing import Any

import typer

from agentos.cli.main import app


@dataclass
class Node:
    """One command: its options and its subcommands."""

    name: str
    options: set[str] = field(default_factory=set)
    children: dict[str, Node] = field(default_factory=dict)


def _from_argparse(name: str, parser: argparse.ArgumentParser) -> Node:
    node = Node(name)
    for action in parser._actions:
        node.options |= set(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for sub, subparser in action.choices.items():
                node.children[sub] = _from_argparse(sub, subparser)
    return node


def _from_typer(name: str, command: Any) -> Node:
    settings = getattr(command, "context_settings", None) or {}
    if settings.get("ignore_unknown_options") and settings.get("allow_extra_args"):
        module = importlib.import_module(f"agentos.cli.{name}")
        make = getattr(module, "parser", None)
        if make is not None:
            return _from_argparse(name, make())
    node = Node(name, {"-h", "--help"})
    for param in getattr(command, "params", []):
        node.options |= {*param.opts, *getattr(param, "secondary_opts", [])}
    for sub, child in (getattr(command, "commands", None) or {}).items():
        node.children[sub] = _from_typer(sub, child)
    return node


def tree() -> Node:
    """The whole `agentos` tree."""
    return _from_typer("agentos", typer.main.get_command(app))


def paths(node: Node | None = None, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and group, as the words after `agentos` that name it."""
    node = node or tree()
    found = [prefix]
    for name, child in sorted(node.children.items()):
        found += paths(child, (*prefix, name))
    return found
