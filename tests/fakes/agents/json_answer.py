#!/usr/bin/env python3
"""A one-shot "LLM" for ``llm.py`` tests (``kind: command``): ``json_answer.py PROMPT_FILE ANSWER_FILE [LOG]``.

Appends the prompt it got to LOG (when given), then prints the text of ANSWER_FILE as its answer, after a
line of chatter, as a real CLI would. ANSWER_FILE may hold any text: JSON, garbage, or ``exit N`` to
fail with that exit code.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    prompt = Path(argv[0]).read_text(encoding="utf-8")
    answer = Path(argv[1]).read_text(encoding="utf-8")
    if len(argv) > 2:
        with open(argv[2], "a", encoding="utf-8") as log:
            log.write(prompt + "\n=====\n")
    if answer.startswith("exit "):
        return int(answer.split()[1])
    print("thinking about it...")
    print(answer)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
