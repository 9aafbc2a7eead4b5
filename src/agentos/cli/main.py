"""The ``agentos`` command. Heavy modules (the daemon, aiogram, httpx) are imported inside commands.

``agentos ctl …`` and ``agentos issue …`` run often and must start fast: the console script
(:mod:`agentos.cli.entry`) hands them straight to their argparse command lines without importing this
module, since typer 0.29 builds a pydantic adapter for every parameter it parses (~50 ms) and this module
loads every command. Everything else is the typer ``app``, which also lists ``ctl`` and ``issue`` and
passes their arguments through untouched.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import typer

from agentos import __version__
from agentos.cli import ctl, doctor, init, issue, pr, stats, views
from agentos.cli._common import ConfigOption, console, count, err_console, fail
from agentos.cli.help import CONTEXT_SETTINGS, VersionOption, hide_flag_types

hide_flag_types()

app = typer.Typer(
    help="agentos: turns a backlog of issues into merged pull requests with coding agents.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings=CONTEXT_SETTINGS,
)
config_app = typer.Typer(help="Validate and edit the config file.", no_args_is_help=True)
app.add_typer(config_app, name="config")
PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}
"""A command that hands every argument, ``--help`` included, to its own argparse command line."""


@app.command("ctl", context_settings=PASS_THROUGH, add_help_option=False)
def ctl_command(ctx: typer.Context) -> None:
    """Steer the running daemon (`agentos ctl --help` lists its commands)."""
    ctl.main(ctx.args)


@app.command("issue", context_settings=PASS_THROUGH, add_help_option=False)
def issue_command(ctx: typer.Context) -> None:
    """The local forge's issues (`agentos issue --help` lists its commands)."""
    issue.main(ctx.args)


@app.command("pr", context_settings=PASS_THROUGH, add_help_option=False)
def pr_command(ctx: typer.Context) -> None:
    """Review the local forge's PRs (`agentos pr --help` lists its commands)."""
    pr.main(ctx.args)


@app.callback()
def root(version: bool = VersionOption) -> None:
    """agentos: turns a backlog of issues into merged pull requests with coding agents."""


@app.command()
def version() -> None:
    """Print the version."""
    console.print(__version__)


@app.command()
def run(
    config: str | None = ConfigOption,
    once: bool = typer.Option(False, "--once", help="Work through what is ready now with a progress view, then exit"),
    timeout: float = typer.Option(3600, "--timeout", min=1, help="With --once: give up after this many seconds"),
) -> None:
    """Run the daemon in the foreground (systemd runs exactly this)."""
    if once:
        from agentos.cli.once import run_once

        raise typer.Exit(run_once(config, timeout))
    from agentos.daemon import run_daemon

    raise typer.Exit(run_daemon(config))


@app.command()
def demo(
    workdir: str | None = typer.Option(None, "--dir", help="Where to build the demo (default: a temp dir)"),
    keep: bool = typer.Option(False, "--keep", help="Keep the demo directory afterwards"),
) -> None:
    """Run the whole loop on a throwaway repository with a stand-in agent, no tokens needed."""
    from agentos.demo import run_demo

    raise typer.Exit(run_demo(Path(workdir) if workdir else None, keep=keep))


@config_app.command("validate")
def config_validate(file: str | None = typer.Argument(None, help="Config file (default: the usual places)")) -> None:
    """Check a config file and that each repo's path is a git repository; prints one line per problem."""
    from agentos.config import ConfigError, find_config, load_config

    path = find_config(file)
    if path is None:
        console.print("no config file found; the daemon would run on the local forge with no repos")
        return
    try:
        cfg, _ = load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            err_console.print(problem, markup=False, highlight=False)
        raise typer.Exit(1) from None
    from agentos.repopath import repo_problems

    if problems := repo_problems([(r.name, r.path) for r in cfg.repos]):
        for problem in problems:
            err_console.print(f"{path}: {problem}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    summary = f"{count(len(cfg.repos), 'repo')}, {count(len(cfg.agents), 'agent')}, forge {cfg.forge}"
    console.print(f"{path}: ok ({summary})", markup=False)


@config_app.command("set")
def config_set(
    key: str = typer.Argument(..., help="Dotted key, e.g. repos.calc.automation_mode or max_parallel_workers"),
    value: str = typer.Argument(..., help="The value, read as YAML: 3, true, [a, b], a text"),
    more: list[str] | None = typer.Argument(
        None, metavar="[KEY VALUE]...", help="More pairs, applied and checked together (e.g. a new agent's keys)"
    ),
    config: str | None = ConfigOption,
) -> None:
    """Set values, keeping every comment and the key order; a missing key is added. One line per problem."""
    from agentos.config import ConfigError, find_config, set_values

    rest = list(more or [])
    if len(rest) % 2:
        fail(f"{rest[-1]}: a key needs a value (KEY VALUE [KEY VALUE]...)")
    edits = [(key, value), *zip(rest[::2], rest[1::2], strict=True)]
    path = find_config(config)
    if path is None:
        fail("no config file found; pass --config FILE")
    try:
        set_values(path, edits)
    except ConfigError as exc:
        for problem in exc.problems:
            err_console.print(problem, markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    for k, v in edits:
        console.print(f"{path}: {k} = {v}", markup=False, highlight=False)


@config_app.command("docs")
def config_docs(
    check: bool = typer.Option(False, "--check", help="Change nothing; exit 1 when a table is stale"),
    file: str | None = typer.Option(
        None, "--file", help="The page to regenerate (default: docs/configuration.md when it is here)"
    ),
) -> None:
    """Regenerate the key tables of docs/configuration.md from the config models (prose is kept).

    Without --file and outside a checkout (no docs/configuration.md here) it prints every key instead."""
    from agentos.config import Config
    from agentos.configdoc import SHOWN_DEFAULTS, ConfigDocError, reference, render, stale_sections
    from agentos.fsutil import atomic_write_text

    path = Path(file or "docs/configuration.md")
    if file is None and not path.is_file() and not check:
        try:
            console.print(reference(Config, shown_defaults=SHOWN_DEFAULTS), markup=False, highlight=False)
        except ConfigDocError as exc:
            fail(str(exc))
        return
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        fail(f"{path}: cannot read ({exc.strerror}); run from the repository root or pass --file")
    try:
        stale = stale_sections(text, Config, shown_defaults=SHOWN_DEFAULTS, where=str(path))
        new = render(text, Config, shown_defaults=SHOWN_DEFAULTS, where=str(path))
    except ConfigDocError as exc:
        fail(str(exc))
    if not stale:
        console.print(f"{path}: up to date", markup=False)
        return
    if check:
        fail(f"{path} is stale in {', '.join(stale)}: run `agentos config docs`")
    atomic_write_text(path, new, mode=path.stat().st_mode & 0o777)
    console.print(f"{path}: regenerated {', '.join(stale)}", markup=False)


app.command("init")(init.init_command)
app.command("doctor")(doctor.doctor)
app.command("tasks")(views.tasks)
app.add_typer(views.task_app, name="task")
app.command("logs")(views.logs)
app.command("stats")(stats.stats_command)

def main(argv: Sequence[str] | None = None) -> None:
    """``python -m agentos.cli.main``: the same as the console script (:func:`agentos.cli.entry.main`)."""
    from agentos.cli.entry import main as entry

    entry(argv)


if __name__ == "__main__":
    main()
