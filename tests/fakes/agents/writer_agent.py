#!/usr/bin/env python3
"""A ``kind: command`` fake agent that writes given content: ``writer_agent.py [PROMPT_FILE]``.

``FAKE_WRITE_PATH`` is the file to write (created with its directories), ``FAKE_WRITE_TEXT`` its content;
``FAKE_WRITE_TEXT_ON_FEEDBACK`` its content instead when the prompt reports a failed acceptance check, and
``FAKE_MANUAL_STEPS`` the result's MANUAL_STEPS (default none). The
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
MANUAL_STEPS: {manual}
"""
FEEDBACK = "An acceptance check failed after the merge"


def main() -> int:
    path = Path(os.environ["FAKE_WRITE_PATH"])
    path.parent.mkdir(parents=True, exist_ok=True)
    prompt = Path(sys.argv[1]).read_text(encoding="utf-8") if len(sys.argv) > 1 else ""
    text = os.environ["FAKE_WRITE_TEXT"]
    if FEEDBACK in prompt and "FAKE_WRITE_TEXT_ON_FEEDBACK" in os.environ:
        text = os.environ["FAKE_WRITE_TEXT_ON_FEEDBACK"]
    path.write_text(text, encoding="utf-8")
    for cmd in (["git", "add", "--", str(path)], ["git", "commit", "-q", "-m", f"writer agent: write {path}"]):
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            sys.stderr.write(f"writer agent: {' '.join(cmd)} failed: {done.stderr.strip()}\n")
            return 1
    manual = os.environ.get("FAKE_MANUAL_STEPS", "none")
    Path(".agent_result.md").write_text(RESULT.format(path=path, manual=manual), encoding="utf-8")
    print(f"writer agent: wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
