"""`agentos` starts without the daemon's stack: what its command-line parsing imports, counted, not timed."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

# Each of these costs 15-45 ms of start-up on a 2-core machine (python -X importtime); commands that need one
# import it themselves.
HEAVY = ("structlog", "pydantic", "asyncio", "httpx", "aiogram", "agentos.config", "agentos.forge.local")

PROBE = """
import json, sys
import agentos.cli.main
print(json.dumps(sorted({m for m in sys.modules if m in HEAVY or m.split(".")[0] in HEAVY})))
"""


def test_importing_the_cli_loads_none_of_the_daemon_stack() -> None:
    """`agentos version`, `agentos ctl …` and `--help` parse their command line without the daemon's modules."""
    code = f"HEAVY = {HEAVY!r}\n{PROBE}"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert json.loads(out.stdout) == []


RUN = """
import json, sys
sys.argv = ["agentos", *json.loads(sys.argv[1])]
from agentos.cli.main import app
try:
    app()
except SystemExit as exc:
    code = exc.code
sys.stderr.write("\\nLOADED " + json.dumps(sorted({m for m in sys.modules if m in HEAVY or m.split(".")[0] in HEAVY})))
"""


def run_cli(args: list[str], env: dict[str, str] | None = None) -> tuple[str, list[str]]:
    """Run ``agentos ARGS`` in a fresh interpreter: its stdout, and the heavy modules loaded by the end."""
    code = f"HEAVY = {HEAVY!r}\n{RUN}"
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(args)], capture_output=True, text=True, timeout=60, env=env, check=True
    )
    loaded = out.stderr.rpartition("\nLOADED ")[2]
    return out.stdout, json.loads(loaded)


def test_a_command_runs_without_pydantic() -> None:
    """Running `agentos version` (not only importing the CLI) leaves pydantic out: typer's adapters wait."""
    stdout, loaded = run_cli(["version"])
    assert stdout.strip() and loaded == []


def test_issue_new_through_a_daemon_needs_none_of_the_daemon_stack(tmp_path: Path) -> None:
    """With a daemon answering, `issue new` sends the issue with the config's absolute path and a fresh key,
    prints the daemon's answer, and loads neither pydantic, the config models nor the forge."""
    config = tmp_path / "agentos.yaml"
    config.write_text("repos: []\n")
    sock_dir = Path(tempfile.mkdtemp(prefix="aos-cli-", dir="/tmp"))
    path = sock_dir / "agentos.sock"
    seen: list[dict[str, Any]] = []
    issue = {"repo": "calc", "number": 4, "title": "Add a greeting", "labels": ["agentos:ready"]}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        server.listen(1)

        def answer() -> None:
            conn, _ = server.accept()
            with conn, conn.makefile("rwb") as stream:
                seen.append(json.loads(stream.readline()))
                stream.write(json.dumps({"ok": True, "result": issue}).encode() + b"\n")

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        env = {**os.environ, "AGENTOS_SOCKET": str(path)}
        args = ["issue", "new", "-t", "Add a greeting", "-l", "x", "--ready", "--json", "-c", str(config)]
        stdout, loaded = run_cli(args, env)
        thread.join(10)
    path.unlink()
    sock_dir.rmdir()
    assert json.loads(stdout) == issue and loaded == []
    [req] = seen
    assert req["cmd"] == "issue_new"
    assert req["args"]["key"].startswith("cli:") and len(req["args"]["key"]) == 36
    assert {k: v for k, v in req["args"].items() if k != "key"} == {
        "repo": None,
        "title": "Add a greeting",
        "body": "",
        "labels": ["x"],
        "ready": True,
        "config": str(config.resolve()),
    }


class TestDeferredTyperAdapters:
    """Commands receive what typer itself would give them, adapters deferred or not."""

    @staticmethod
    def app() -> typer.Typer:
        app = typer.Typer()

        @app.command()
        def show(
            name: str = typer.Option("", "--name"),
            tags: list[str] = typer.Option([], "--tag"),
            count: int = typer.Option(1, "--count", min=1),
            where: Path | None = typer.Option(None, "--where"),
            flag: bool = typer.Option(False, "--flag"),
            upper: str = typer.Option("", "--upper", parser=str.upper),
        ) -> None:
            print(json.dumps([name, tags, count, str(where) if where else None, flag, upper, type(tags).__name__]))

        return app

    @pytest.mark.parametrize(
        ("args", "expected"),
        [
            pytest.param([], ["", [], 1, None, False, "", "list"], id="defaults"),
            pytest.param(
                ["--name", "é x", "--tag", "a", "--tag", "b", "--count", "3", "--where", "d/f", "--flag"],
                ["é x", ["a", "b"], 3, "d/f", True, "", "list"],
                id="values",
            ),
            pytest.param(["--upper", "abc"], ["", [], 1, None, False, "ABC", "list"], id="parser"),
        ],
    )
    def test_values_are_typers(self, args: list[str], expected: list[Any]) -> None:
        """Strings, lists of strings, numbers, paths, flags and custom parsers arrive as typer makes them."""
        import agentos.cli.main  # noqa: F401  # installs the deferral

        result = CliRunner().invoke(self.app(), args)
        assert result.exit_code == 0, result.output
        assert json.loads(result.output) == expected

    def test_a_bad_value_is_still_refused(self) -> None:
        """A value below an option's minimum gets typer's own error: its adapter is built when needed."""
        import agentos.cli.main  # noqa: F401

        result = CliRunner().invoke(self.app(), ["--count", "0"])
        assert result.exit_code == 2 and "--count" in result.output
