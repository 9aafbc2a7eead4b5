"""``agentos issue …``: the local forge's backlog from the command line (files under the state dir).

The command line is argparse (:func:`parser`), not typer: typer 0.29 builds a pydantic adapter for every
parameter of the command it runs, and ``issue new`` through a running daemon needs no pydantic at all.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
import uuid
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from agentos.cli._common import console, err_console, fail, load, print_json, table
from agentos.cli.views import quiet_logs
from agentos.errors import AgentosError

if TYPE_CHECKING:  # the forge (pydantic, structlog, git helpers) is imported by the commands that use it
    from agentos.config import Config
    from agentos.forge.local import LocalForge

HELP = "The local forge's issues."
T = TypeVar("T")


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run``, imported here: `agentos` starts without asyncio for the commands that do not need it."""
    import asyncio

    return asyncio.run(coro)


def _forge(config: Config) -> LocalForge:
    """The local forge in the state directory the daemon for this config reads (:attr:`Config.state_path`)."""
    from agentos.forge.local import LocalForge

    quiet_logs()  # stdout is the command's output (a table or JSON); log lines go to stderr
    if config.forge != "local":
        fail("`agentos issue` works on the local forge; this config uses GitHub (use GitHub's issues)")
    return LocalForge(config.state_path, {r.name: r for r in config.repos})


def _repo(config: Config, name: str | None) -> str:
    names = [r.name for r in config.repos]
    if name is None:
        if len(names) != 1:
            fail(f"name the repo with --repo (repos: {', '.join(names) or 'none configured'})")
        return names[0]
    if name not in names:
        fail(f"no repo named {name!r} (repos: {', '.join(names) or 'none configured'})")
    return name


_MARKER = re.compile(r"[ \t]*<!--\s*agentos:[^>]*?-->[ \t]*\n?")


def readable(text: str) -> str:
    """``text`` without agentos's hidden ``<!-- agentos:key=… -->`` markers (what a forge's page shows)."""
    return _MARKER.sub("", text).strip()


DAEMON_TIMEOUT_S = 5.0
"""How long `issue new|ready` waits for a running daemon before doing the work itself (with the same key)."""


def _poke() -> None:
    """Tell a running daemon to dispatch now; silent when none is running."""
    from agentos.control.socket import client_socket_path, request

    with contextlib.suppress(AgentosError, OSError):
        request(client_socket_path(), "poke", {"job": "dispatch"}, timeout=2)


def _via_daemon(cmd: str, args: dict[str, Any], config: str | None) -> Any | None:
    """The running daemon's answer to ``cmd``, or None when this process must do the work itself.

    A daemon that serves this config has it and the forge loaded already, so the command needs neither
    pydantic nor the forge here. None when no daemon answers, it serves another config file, it refuses
    (the direct path then gives the same one-line error from the config on disk) or it does not answer in
    :data:`DAEMON_TIMEOUT_S`.
    """
    from agentos.configpath import find_config
    from agentos.control.socket import MAX_LINE, client_socket_path, request

    path = find_config(config)
    args = {**args, "config": str(path.resolve()) if path is not None else None}
    if len(json.dumps({"cmd": cmd, "args": args})) >= MAX_LINE:  # the daemon would refuse the line
        return None
    try:
        return request(client_socket_path(), cmd, args, timeout=DAEMON_TIMEOUT_S)
    except (AgentosError, OSError):
        return None


def new(
    title: str,
    repo: str | None,
    body_file: str | None,
    body: str,
    label: list[str],
    ready: bool,
    config: str | None,
    as_json: bool,
) -> None:
    """Create an issue (through the running daemon when there is one, so it starts at once)."""
    from agentos.control.commands import issue_problem

    if body_file == "-":
        body = sys.stdin.read()
    elif body_file:
        try:
            body = Path(body_file).read_text(encoding="utf-8")
        except OSError as exc:
            fail(f"cannot read --body-file {body_file}: {exc.strerror}")
    if problem := issue_problem(title, body, list(label)):
        fail(problem)
    key = f"cli:{uuid.uuid4().hex}"  # a retry, here or in the daemon, finds the issue instead of filing another
    args = {"repo": repo, "title": title, "body": body, "labels": list(label), "ready": ready, "key": key}
    issue = _via_daemon("issue_new", args, config)
    paused = None
    if issue is None:
        issue, paused = _new_here(config, repo, title, body, list(label), ready, key)
    elif ready:
        paused = _daemon_paused()
    if as_json:
        print_json(issue)
    else:
        console.print(
            f"{issue['repo']}#{issue['number']} {issue['title']}" + ("  [ready]" if ready else ""), markup=False
        )
    if ready and paused:
        err_console.print(PAUSED_HINT, markup=False, highlight=False, soft_wrap=True)


PAUSED_HINT = "agentos is paused: nothing starts until `agentos ctl resume`"


def _daemon_paused() -> bool | None:
    """Whether the running daemon is paused (None: no answer)."""
    from agentos.control.socket import client_socket_path, request

    try:
        status = request(client_socket_path(), "status", {}, timeout=DAEMON_TIMEOUT_S)
    except (AgentosError, OSError):
        return None
    return bool(status.get("paused")) if isinstance(status, dict) else None


def _saved_paused(state_dir: Path) -> bool:
    """Whether the state in ``state_dir`` says paused (a stopped daemon starts paused again). Never writes."""
    from agentos.store import StateError, Store

    if not state_dir.is_dir():
        return False
    try:
        _, daemon = Store(state_dir, fsync=False).load()
    except (StateError, OSError):
        return False
    return daemon.paused


def _new_here(
    config: str | None, repo: str | None, title: str, body: str, labels: list[str], ready: bool, key: str
) -> tuple[dict[str, Any], bool]:
    """``issue new`` without a daemon: the config and the forge in this process, then a poke.

    Returns the issue and whether the saved state is paused.
    """
    from agentos.forge.base import READY_LABEL

    cfg, _ = load(config)
    name = _repo(cfg, repo)
    wanted = labels + ([READY_LABEL] if ready and READY_LABEL not in labels else [])
    try:
        issue = _run(_forge(cfg).new_issue(name, title, body, wanted, key=key))
    except AgentosError as exc:
        fail(f"issue not filed: {exc}")
    if ready:
        _poke()
    dumped: dict[str, Any] = issue.model_dump(mode="json")
    return dumped, ready and _saved_paused(cfg.state_path)


def list_(repo: str | None, state: str, config: str | None, as_json: bool) -> None:
    """List issues."""
    cfg, _ = load(config)
    if state not in ("open", "closed", "all"):
        fail(f"--state must be open, closed or all, not {state!r}")
    forge = _forge(cfg)
    names = [_repo(cfg, repo)] if repo or len(cfg.repos) == 1 else [r.name for r in cfg.repos]
    rows = []
    for name in names:
        for issue in _run(forge.list_issues(name, state=state)):  # type: ignore[arg-type]
            rows.append(
                {
                    "repo": name,
                    "n": issue.number,
                    "state": issue.state,
                    "labels": ",".join(issue.labels),
                    "title": issue.title,
                }
            )
    if as_json:
        print_json(rows)
    else:
        table(rows, ["repo", "n", "state", "labels", "title"])


def show(number: int, repo: str | None, config: str | None, as_json: bool) -> None:
    """Show one issue with its comments."""
    cfg, _ = load(config)
    name = _repo(cfg, repo)
    forge = _forge(cfg)
    try:
        issue = _run(forge.get_issue(name, number))
        comments = _run(forge.comments(name, number))
    except AgentosError as exc:
        fail(str(exc))
    if as_json:
        print_json({**issue.model_dump(mode="json"), "comments": [c.model_dump(mode="json") for c in comments]})
        return
    console.print(f"[bold]{name}#{issue.number} {issue.title}[/bold]  ({issue.state}; {', '.join(issue.labels)})")
    console.print(readable(issue.body) or "(no body)", markup=False)
    for c in comments:
        console.print(f"\n[dim]— {c.author} at {c.created_at:%Y-%m-%d %H:%M}[/dim]")
        console.print(readable(c.body), markup=False)


def ready(number: int, repo: str | None, config: str | None) -> None:
    """Make an issue ready for agentos (through the running daemon when there is one)."""
    done = _via_daemon("issue_ready", {"repo": repo, "number": number}, config)
    if done is not None:
        console.print(f"{done['repo']}#{number} is ready", markup=False)
        if _daemon_paused():
            err_console.print(PAUSED_HINT, markup=False, highlight=False, soft_wrap=True)
        return
    from agentos.forge.base import READY_LABEL

    cfg, _ = load(config)
    name = _repo(cfg, repo)
    try:
        _run(_forge(cfg).add_labels(name, number, [READY_LABEL]))
    except AgentosError as exc:
        fail(str(exc))
    _poke()
    console.print(f"{name}#{number} is ready", markup=False)
    if _saved_paused(cfg.state_path):
        err_console.print(PAUSED_HINT, markup=False, highlight=False, soft_wrap=True)


def comment(number: int, body: str, repo: str | None, config: str | None) -> None:
    """Add a comment to an issue."""
    cfg, _ = load(config)
    name = _repo(cfg, repo)
    try:
        _run(_forge(cfg).comment(name, number, body, key=f"cli:{uuid.uuid4().hex}"))
    except AgentosError as exc:
        fail(str(exc))
    console.print(f"commented on {name}#{number}", markup=False)


CONFIG_HELP = "Config file (default: $AGENTOS_CONFIG, ./agentos.yaml, …)"


def parser() -> argparse.ArgumentParser:
    """``agentos issue``'s command line."""
    top = argparse.ArgumentParser(prog="agentos issue", description=HELP)
    subs = top.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def sub(name: str, run: Any, *, number: bool = False, as_json: bool = True) -> argparse.ArgumentParser:
        doc = (run.__doc__ or "").strip().splitlines()[0]
        cmd = subs.add_parser(name, help=doc, description=doc)
        if number:
            cmd.add_argument("number", type=int, metavar="NUMBER", help="The issue number.")
        cmd.add_argument("--repo", "-r", help="The repository (optional with one repo).")
        cmd.add_argument("--config", "-c", help=CONFIG_HELP)
        if as_json:
            cmd.add_argument("--json", dest="as_json", action="store_true", help="Print JSON instead of a table.")
        cmd.set_defaults(run=run)
        return cmd

    cmd = sub("new", new)
    cmd.add_argument("--title", "-t", required=True, help="The title.")
    cmd.add_argument("--body-file", "-F", help="File with the body, or - for stdin")
    cmd.add_argument("--body", "-b", default="", help="The body.")
    cmd.add_argument("--label", "-l", action="append", default=[], help="A label (repeat for more).")
    cmd.add_argument("--ready", action="store_true", help="Make it ready for agentos at once")
    cmd = sub("list", list_)
    cmd.add_argument("--state", default="open", help="open, closed or all")
    sub("show", show, number=True)
    sub("ready", ready, number=True, as_json=False)
    cmd = sub("comment", comment, number=True, as_json=False)
    cmd.add_argument("--body", "-b", required=True, help="The comment.")
    return top


def main(argv: Sequence[str]) -> None:
    """Run ``agentos issue ARGV``."""
    given = vars(parser().parse_args(list(argv)))
    given.pop("command")
    given.pop("run")(**given)
