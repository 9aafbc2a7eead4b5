"""``agentos pr …``: review an agentos PR on the local forge, as a colleague would on GitHub.

``agentos pr review repo#PR --request-changes --body …`` (optionally ``--file F --line N``) and
``agentos pr comment repo#PR --body …`` write into the PR's record under the state dir; the daemon's PR monitor
sends the PR back to an agent with the feedback (see :mod:`agentos.jobs.reviews`). A comment counts when it
mentions ``@agentos`` or starts with ``/agentos``; a review that requests changes always does. The running
daemon is woken so it notices at once.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

from agentos.cli._common import console, fail, load, print_json
from agentos.cli.issue import CONFIG_HELP
from agentos.errors import AgentosError

if TYPE_CHECKING:
    from agentos.config import Config
    from agentos.forge.base import ReviewState
    from agentos.forge.local import LocalForge

T = TypeVar("T")
HELP = "Review the local forge's pull requests: comments and reviews reach the agent."


def _run(coro: Coroutine[Any, Any, T]) -> T:
    import asyncio

    return asyncio.run(coro)


def _forge(config: Config) -> LocalForge:
    from agentos.cli.views import quiet_logs
    from agentos.forge.local import LocalForge

    quiet_logs()  # stdout is the command's output; log lines go to stderr
    if config.forge != "local":
        fail("`agentos pr` works on the local forge; on GitHub, review the PR there")
    return LocalForge(config.state_path, {r.name: r for r in config.repos})


def _ref(config: Config, ref: str) -> tuple[str, int]:
    """``repo#N``, or ``N`` with one repo."""
    name, _, number = ref.rpartition("#")
    names = [r.name for r in config.repos]
    if not number.isdigit() or int(number) < 1:
        fail(f"a PR is named repo#N or N, not {ref!r}")
    if not name:
        if len(names) != 1:
            fail(f"more than one repo: name the PR as repo#N (repos: {', '.join(names)})")
        name = names[0]
    elif name not in names:
        fail(f"no repo named {name!r} (repos: {', '.join(names) or 'none configured'})")
    return name, int(number)


def _author() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "operator"


def _poke() -> None:
    """Wake a running daemon's PR monitor; silent when none is running."""
    from agentos.control.socket import client_socket_path, request

    with contextlib.suppress(AgentosError, OSError):
        request(client_socket_path(), "poke", {"job": "pr_monitor"}, timeout=2)


def comment(ref: str, body: str, config: str | None, as_json: bool) -> None:
    """Comment on a PR (mention @agentos or start with /agentos to send it back to an agent)."""
    cfg, _ = load(config)
    name, number = _ref(cfg, ref)
    try:
        made = _run(_forge(cfg).reviews.comment(name, number, body=body, author=_author()))
    except AgentosError as exc:
        fail(str(exc))
    _poke()
    if as_json:
        print_json({"repo": name, "pr": number, "comment": made.id})
    else:
        console.print(f"commented on {name}#{number}", markup=False)


def review(
    ref: str,
    body: str,
    state: str,
    file: str | None,
    line: int | None,
    config: str | None,
    as_json: bool,
) -> None:
    """Review a PR: --request-changes sends it back to an agent with the review."""
    if line is not None and not file:
        fail("--line needs --file")
    cfg, _ = load(config)
    name, number = _ref(cfg, ref)
    try:
        made = _run(
            _forge(cfg).reviews.review(
                name, number, state=cast("ReviewState", state), body=body, author=_author(), path=file or "", line=line
            )
        )
    except AgentosError as exc:
        fail(str(exc))
    _poke()
    if as_json:
        print_json({"repo": name, "pr": number, "review": made.id, "state": state})
    else:
        console.print(f"reviewed {name}#{number}: {state.replace('_', ' ')}", markup=False)


def parser() -> argparse.ArgumentParser:
    """``agentos pr``'s command line."""
    top = argparse.ArgumentParser(prog="agentos pr", description=HELP)
    subs = top.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def sub(name: str, run: Any) -> argparse.ArgumentParser:
        doc = (run.__doc__ or "").strip().splitlines()[0]
        cmd = subs.add_parser(name, help=doc, description=doc)
        cmd.add_argument("ref", metavar="PR", help="The PR, repo#N (or N with one repo).")
        cmd.add_argument("--body", "-b", required=True, help="The text.")
        cmd.add_argument("--config", "-c", help=CONFIG_HELP)
        cmd.add_argument("--json", dest="as_json", action="store_true", help="Print JSON.")
        cmd.set_defaults(run=run)
        return cmd

    sub("comment", comment)
    cmd = sub("review", review)
    state = cmd.add_mutually_exclusive_group(required=True)
    state.add_argument(
        "--request-changes", dest="state", action="store_const", const="changes_requested", help="Ask for changes."
    )
    state.add_argument("--approve", dest="state", action="store_const", const="approved", help="Approve.")
    state.add_argument("--comment", dest="state", action="store_const", const="commented", help="Comment only.")
    cmd.add_argument("--file", help="The file the review is about (a comment on a line with --line).")
    cmd.add_argument("--line", type=int, help="The line of --file.")
    return top


def main(argv: Sequence[str]) -> None:
    """Run ``agentos pr ARGV``."""
    given = vars(parser().parse_args(list(argv)))
    given.pop("command")
    given.pop("run")(**given)
