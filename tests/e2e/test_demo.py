"""`agentos demo`: the whole loop on a throwaway repository ends with the timeline and exit code 0."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from .conftest import AGENTOS, DROPPED_ENV


def test_demo_merges_two_issues_and_escalates_one(tmp_path: Path) -> None:
    """Two issues merge (the dependent one after its dependency) and the vague one escalates; exit 0."""
    env = {k: v for k, v in os.environ.items() if k not in DROPPED_ENV and k != "AGENTOS_DEMO_AGENT"}
    env["RUNTIME_DIRECTORY"] = str(tmp_path / "run")
    done = subprocess.run(
        [str(AGENTOS), "demo", "--dir", str(tmp_path / "demo")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "2 merged, 1 escalated." in out
    assert "calc#3     running → blocked" in out
    assert "{" not in out.split("The repository's history now:")[0], "log lines in the timeline"
    history = out.split("The repository's history now:")[1]
    assert history.index("Add multiply() (#5)") < history.index("Fix add() returning the wrong sum (#4)")
