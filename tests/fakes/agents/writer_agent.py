#!/usr/bin/env python3
"""A ``kind: command`` fake agent that writes given content: ``writer_agent.py [PROMPT_FILE]``.

``FAKE_WRITE_PATH`` is the file to write (created with its directories), ``FAKE_WRITE_TEXT`` its content. The
agent commits it, writes a complete ``.agent_result.md`` and prints one line: a change whose content a test
chooses (a stub, a skip marker, a TODO) for the verifier to read.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

RESULT = """STATUS: complete
BLOCKER_CODE: none
SUMMARY: Wrote {path}.
DONE: the requested change
BLOCKERS: none
NEXT_STEP: none
FILES_CHANGED: {path}
TESTS_RUN: none
DECISIONS: none
RISKS: none
ATTEMPTED_APPROACHES: write
MANUAL_STEPS: none
"""


def main() -> int:
    path = Path(os.environ["FAKE_WRITE_PATH"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(os.environ["FAKE_WRITE_TEXT"], encoding="utf-8")
    for cmd in (["git", "add", "--", str(path)], ["git", "commit", "-q", "-m", f"writer agent: write {path}"]):
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            sys.stderr.write(f"writer agent: {' '.join(cmd)} failed: {done.stderr.strip()}\n")
            return 1
    Path(".agent_result.md").write_text(RESULT.format(path=path), encoding="utf-8")
    print(f"writer agent: wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
