"""What every CLI command shares: loading the config, printing tables and errors, the socket path."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from agentos.config import Config

console = Console()
err_console = Console(stderr=True)

ConfigOption = typer.Option(None, "--config", "-c", help="Config file (default: $AGENTOS_CONFIG, ./agentos.yaml, …)")
JsonOption = typer.Option(False, "--json", help="Print JSON instead of a table.")


def count(n: int, noun: str, plural: str | None = None) -> str:
    """``1 repo``, ``2 repos``, ``0 repos`` (``plural`` for a noun that does not just take an s)."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def fail(message: str, code: int = 1, *, prefix: bool = True) -> NoReturn:
    """Print one line to stderr (never wrapped, whatever the width) and exit with ``code``."""
    head = "[red]agentos:[/red] " if prefix else ""
    err_console.print(head + escape(message), highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code)


def load(config: str | None) -> tuple[Config, Path | None]:
    """The config for a command that needs one; a bad file prints its problems and exits 78."""
    from agentos.config import ConfigError, load_config  # pydantic is heavy: not for `agentos ctl`

    try:
        return load_config(config)
    except ConfigError as exc:
        for problem in exc.problems:
            err_console.print(problem, highlight=False, markup=False)
        raise typer.Exit(78) from None


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def table(rows: list[dict[str, Any]], columns: list[str], *, title: str | None = None) -> None:
    if not rows:
        console.print("(none)")
        return
    t = Table(title=title, show_edge=False, header_style="bold")
    for col in columns:
        t.add_column(col)
    for row in rows:
        t.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
    console.print(t)


def kv(data: dict[str, Any]) -> None:
    width = max((len(k) for k in data), default=0)
    for key, value in data.items():
        shown = json.dumps(value, default=str) if isinstance(value, (dict, list)) else value
        console.print(f"{key:<{width}}  {shown}", highlight=False, markup=False, soft_wrap=True)
