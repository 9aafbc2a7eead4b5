"""``agentos ctl …``: talk to the running daemon over its control socket (stdlib socket, fast start).

Every subcommand is generated from the command table (:data:`agentos.control.commands.TABLE`): one per
``ctl`` form of a command, with the command's help, an argument or ``--option`` per argument, ``--json``
and ``--socket``. Exit codes: 0 done, 1 the daemon refused or failed the command (its message on stderr),
3 no daemon is running (one line: ``agentos is not running (no daemon at PATH)``) or it could not be reached.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from agentos.cli._common import JsonOption, fail, kv, print_json, table
from agentos.control.commands import GROUPS, TABLE, Arg, CommandSpec, Form
from agentos.control.replies import KeyValues, Table, View, when, when_at
from agentos.errors import ControlError

__all__ = ["EXIT_FAILED", "EXIT_NOT_RUNNING", "app", "call", "socket_path", "when", "when_at"]

app = typer.Typer(help="Steer the running daemon.", no_args_is_help=True)

SocketOption = typer.Option(None, "--socket", envvar="AGENTOS_SOCKET", help="Control socket path.")
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


_TYPES: dict[str, type] = {"int": int, "issue_number": int}


def _parameter(arg: Arg) -> inspect.Parameter:
    kind: Any = _TYPES.get(arg.type, str)
    if arg.option:
        default: Any = typer.Option(arg.default, f"--{arg.name}", help=arg.help)
        kind = kind | None
    elif arg.required:
        default = typer.Argument(..., help=arg.help, show_default=False)
    else:
        default = typer.Argument(arg.default, help=arg.help)
    return inspect.Parameter(arg.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=kind)


def _command(spec: CommandSpec, form: Form) -> Callable[..., None]:
    """A typer command for one ctl form of ``spec``: its arguments, ``--json`` and ``--socket``."""
    args = spec.positional(form) + [a for a in spec.args if a.option and a.name not in form.fixed]
    params = [_parameter(a) for a in args]
    params.append(inspect.Parameter("as_json", inspect.Parameter.KEYWORD_ONLY, default=JsonOption, annotation=bool))
    params.append(
        inspect.Parameter("sock", inspect.Parameter.KEYWORD_ONLY, default=SocketOption, annotation=str | None)
    )

    def command(**given: Any) -> None:
        as_json, sock = given.pop("as_json"), given.pop("sock")
        show(spec, call(spec.name, {**form.fixed, **given}, sock, timeout=spec.timeout_s), as_json)

    command.__signature__ = inspect.Signature(params, return_annotation=None)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__name__ = "_".join(form.words)
    command.__doc__ = form.help or spec.help
    return command


def _build() -> None:
    groups: dict[str, typer.Typer] = {}
    for spec in TABLE.values():
        for form in spec.ctl:
            target = app
            if len(form.words) > 1:
                head = form.words[0]
                if head not in groups:
                    groups[head] = typer.Typer(help=GROUPS[head], no_args_is_help=True)
                    app.add_typer(groups[head], name=head)
                target = groups[head]
            target.command(form.words[-1])(_command(spec, form))


_build()
