"""`agentos` starts without the daemon's stack: what its command-line parsing imports, counted, not timed."""

from __future__ import annotations

import json
import subprocess
import sys

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
