"""How ``agentos`` shows help: ``-h`` beside ``--help`` on every command, ``--version``, and flags without
a type column (typer 0.29 shows ``<bool>`` beside every ``--flag``, which reads as if it took a value).
"""

from __future__ import annotations

from typing import Any

import typer

from agentos import __version__

CONTEXT_SETTINGS: dict[str, Any] = {"help_option_names": ["-h", "--help"]}
"""The root's settings; every subcommand's context inherits ``-h``."""


def hide_flag_types() -> bool:
    """Show no type beside a flag (``--ready``, ``--json/--no-json``); False when this typer has no such hook."""
    from typer import core

    option: Any = getattr(core, "TyperOption", None)
    original = getattr(option, "display_type_rich", None)
    if original is None or getattr(option, "_agentos_flag_types_hidden", False):
        return original is not None

    def display_type_rich(self: Any, ctx: Any) -> str | None:
        if getattr(self, "is_flag", False) and self.metavar is None:
            return None
        result: str | None = original(self, ctx)
        return result

    option.display_type_rich = display_type_rich
    option._agentos_flag_types_hidden = True
    return True


def print_version(value: bool) -> None:
    """The eager ``--version`` option's callback."""
    if value:
        typer.echo(f"agentos {__version__}")
        raise typer.Exit()


VersionOption: Any = typer.Option(
    False, "--version", is_eager=True, callback=print_version, help="Print the version and exit."
)
