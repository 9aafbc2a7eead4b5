#!/usr/bin/env python3
"""A worker that answers without changing anything (``kind: command``): ``answer_agent.py PROMPT_FILE [LOG]``.

Appends the prompt it got to LOG (when given), writes a ``complete`` ``.agent_result.md`` whose SUMMARY, DONE
and DECISIONS are the answer, and edits no file: what a research or architecture task's agent does.
"""

from __future__ import annotations

import sys
from pathlib import Path

ANSWER = """STATUS: complete
BLOCKER_CODE: none
SUMMARY: SQLite is enough: one writer, a few reads a second, no server to run.
DONE: compared SQLite and Postgres on the project's load
BLOCKERS: none
NEXT_STEP: none
FILES_CHANGED: none
TESTS_RUN: none
DECISIONS: keep SQLite until there is more than one writer
RISKS: none
ATTEMPTED_APPROACHES: read the code
MANUAL_STEPS: none
"""


def main(argv: list[str]) -> int:
    prompt = Path(argv[0]).read_text(encoding="utf-8")
    if len(argv) > 1:
        with open(argv[1], "a", encoding="utf-8") as log:
            log.write(prompt + "\n=====\n")
    Path(".agent_result.md").write_text(ANSWER, encoding="utf-8")
    print("Compared the two; no change needed.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
