"""Issue #21, problem 9: `-h` on every command, `--version`, and no `<bool>` beside a flag in help."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from agentos import __version__
from agentos.cli.main import app
from tests.cli_tree import paths


@pytest.fixture(scope="module")
def helps() -> dict[str, str]:
    runner = CliRunner()
    out = {}
    for path in paths():
        result = runner.invoke(app, [*path, "-h"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, (path, result.output)  # argparse's -h exits 0 too
        out[" ".join(["agentos", *path])] = result.output
    return out


def test_every_command_takes_dash_h(helps: dict[str, str]) -> None:
    assert len(helps) > 30
    assert [name for name, text in helps.items() if "usage:" not in text.lower()] == []


def test_no_flag_shows_a_bool_type(helps: dict[str, str]) -> None:
    assert [name for name, text in helps.items() if "<bool>" in text] == []


def test_version_flag() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"agentos {__version__}"


def test_every_typer_command_and_option_says_what_it_does() -> None:
    """Walking the command tree: every command and every option has a help text (ctl's are checked against the
    command table in test_commands.py)."""
    import click
    import typer

    missing: list[str] = []

    def walk(command: click.Command, path: list[str]) -> None:
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                walk(sub, [*path, name])
        if path and not (command.help or "").strip():
            missing.append(" ".join(path))
        for param in command.params:
            if isinstance(param, click.Option) and not (param.help or "").strip():
                missing.append(f"{' '.join(path)} {'/'.join(param.opts)}")

    walk(typer.main.get_command(app), [])
    assert missing == []
