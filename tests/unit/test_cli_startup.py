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
from agentos.cli.entry import main
try:
    main()
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


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["ctl", "--help"], id="ctl-help"),
        pytest.param(["ctl", "task", "retry", "--help"], id="ctl-subcommand-help"),
        pytest.param(["ctl", "status"], id="ctl-status-no-daemon"),
        pytest.param(["issue", "--help"], id="issue-help"),
        pytest.param(["version"], id="version"),
    ],
)
def test_ctl_and_issue_run_without_pydantic(args: list[str], tmp_path: Path) -> None:
    """`agentos ctl …`, `agentos issue …` and `agentos version` run (not only import) without the daemon's stack
    or pydantic."""
    env = {**os.environ, "AGENTOS_SOCKET": str(tmp_path / "none.sock")}
    _, loaded = run_cli(args, env)
    assert loaded == []


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
