"""``agentos ctl …``: talk to the running daemon over its control socket (stdlib socket, fast start).

Every subcommand is generated from the command table (:data:`agentos.control.commands.TABLE`): one per
``ctl`` form of a command, with the command's help, an argument or ``--option`` per argument, ``--json``
and ``--socket``. The command line is argparse, not typer: typer 0.29 builds a pydantic adapter for every
parameter of the command it runs, which would add ~50 ms to every ``agentos ctl``.

Exit codes: 0 done, 1 the daemon refused or failed the command (its message on stderr), 2 a bad command
line, 3 no daemon is running (one line: ``agentos is not running (no daemon at PATH)``) or it could not be reached.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agentos.cli._common import fail, kv, print_json, table
from agentos.control.command_spec import CommandSpec, Form
from agentos.control.commands import GROUPS, TABLE
from agentos.control.replies import KeyValues, Table, View, when, when_at
from agentos.errors import ControlError

__all__ = ["EXIT_FAILED", "EXIT_NOT_RUNNING", "HELP", "call", "main", "parser", "socket_path", "when", "when_at"]

HELP = "Steer the running daemon."
EXIT_FAILED = 1
EXIT_NOT_RUNNING = 3


def socket_path(explicit: str | None) -> Path:
    from agentos.control.socket import client_socket_path

    return Path(explicit) if explicit else client_socket_path()


def call(cmd: str, args: dict[str, Any] | None = None, sock: str | None = None, *, timeout: float = 30.0) -> Any:
    """Send one command to the daemon and return its result; every failure exits with one line."""
    from agentos.control.socket import NotRunning, request

    path = socket_path(sock or os.environ.get("AGENTOS_SOCKET"))
    try:
        return request(path, cmd, args, timeout=timeout)
    except NotRunning as exc:
        fail(str(exc), EXIT_NOT_RUNNING, prefix=False)
    except ControlError as exc:
        fail(str(exc), EXIT_FAILED)
    except TimeoutError:
        fail(f"the daemon at {path} did not answer {cmd} within {timeout:g}s", EXIT_NOT_RUNNING)
    except OSError as exc:
        fail(f"cannot talk to the daemon at {path}: {exc}", EXIT_NOT_RUNNING)


def show(spec: CommandSpec, result: Any, as_json: bool) -> None:
    """The answer as the command's terminal view; JSON with ``--json`` or when it has none."""
    if as_json:
        print_json(result)
        return
    views: list[View]
    if spec.terminal is not None:
        views = spec.terminal(result)
    elif isinstance(result, dict):
        views = [KeyValues(result)]
    else:
        print_json(result)
        return
    for view in views:
        if isinstance(view, Table):
            table(view.rows, view.columns, title=view.title)
        else:
            kv(view.data)


def parser() -> argparse.ArgumentParser:
    """``agentos ctl``'s command line, generated from the table: a subcommand per ctl form, help included."""
    top = argparse.ArgumentParser(prog="agentos ctl", description=HELP)
    subs = top.add_subparsers(dest="command", metavar="COMMAND", required=True)
    groups: dict[str, argparse._SubParsersAction[argparse.ArgumentParser]] = {}
    for spec in TABLE.values():
        for form in spec.ctl:
            where = subs
            if len(form.words) > 1:
                head = form.words[0]
                if head not in groups:
                    group = subs.add_parser(head, help=GROUPS[head], description=GROUPS[head])
                    groups[head] = group.add_subparsers(dest="verb", metavar="VERB", required=True)
                where = groups[head]
            text = form.help or spec.help
            sub = where.add_parser(form.words[-1], help=text, description=text)
            _arguments(sub, spec, form)
            sub.set_defaults(spec=spec, form=form)
    return top


def _arguments(sub: argparse.ArgumentParser, spec: CommandSpec, form: Form) -> None:
    for arg in spec.positional(form):
        sub.add_argument(
            arg.name, type=_TYPES.get(arg.type, str), help=arg.help, metavar=arg.metavar or arg.name.upper()
        )
    for arg in spec.args:
        if arg.option and arg.name not in form.fixed and arg.type == "bool":
            sub.add_argument(f"--{arg.name}", action="store_true", help=arg.help)
        elif arg.option and arg.name not in form.fixed:
            sub.add_argument(f"--{arg.name}", type=_TYPES.get(arg.type, str), help=arg.help, default=arg.default)
    sub.add_argument("--json", dest="as_json", action="store_true", help="Print JSON instead of a table.")
    sub.add_argument("--socket", dest="sock", metavar="PATH", help="Control socket path (default: $AGENTOS_SOCKET).")


_TYPES: dict[str, Callable[[str], Any]] = {"int": int, "issue_number": int}


def main(argv: Sequence[str]) -> None:
    """Run ``agentos ctl ARGV`` (argparse: typer would load pydantic for every command, ~50 ms)."""
    ns = parser().parse_args(list(argv))
    spec, form = ns.spec, ns.form
    given = {a.name: getattr(ns, a.name) for a in spec.args if a.name not in form.fixed}
    show(spec, call(spec.name, {**form.fixed, **given}, ns.sock, timeout=spec.timeout_s), ns.as_json)
