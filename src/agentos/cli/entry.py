"""The ``agentos`` console script: ``ctl``, ``issue`` and ``version`` start without loading the rest of the CLI.

``agentos ctl …`` and ``agentos issue …`` run often (scripts, the README's dispatch path) and must start fast:
they go straight to their argparse command lines; importing :mod:`agentos.cli.main` (typer's app with every
command: doctor, init, stats, views) would cost them about 30 ms more. Everything else is the typer app.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args in (["version"], ["--version"]):
        from agentos import __version__

        print(__version__ if args == ["version"] else f"agentos {__version__}")
        return
    run: Callable[[list[str]], None]
    if args and args[0] == "ctl":
        from agentos.cli.ctl import main as run
    elif args and args[0] == "issue":
        from agentos.cli.issue import main as run
    elif args and args[0] == "pr":
        from agentos.cli.pr import main as run
    else:
        from agentos.cli.main import app

        app(args)
        return
    import typer

    try:
        run(args[1:])
    except typer.Exit as exc:
        raise SystemExit(exc.exit_code) from None


if __name__ == "__main__":
    main()
