#!/usr/bin/env python3
"""A generic agent for ``kind: command``: ``command_agent.py [PROMPT_FILE] [--task-id ID]``.

Reads the prompt from PROMPT_FILE (stdin when absent or ``-``), prints plain text like aider or a script
would, and behaves as ``FAKE_AGENT_MODE`` says (see ``_behaviour.py``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
import _behaviour as fake

QUOTA = "litellm.RateLimitError: AnthropicException - rate limit reached for requests. Please try again in 20m."
AUTH = "litellm.AuthenticationError: AnthropicException - invalid x-api-key"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="command_agent.py")
    parser.add_argument("prompt_file", nargs="?", default="-")
    parser.add_argument("--task-id")
    args = parser.parse_args(argv)
    prompt = fake.read_stdin() if args.prompt_file == "-" else Path(args.prompt_file).read_text(encoding="utf-8")
    if args.task_id:
        print(f"command agent: task {args.task_id} in {os.getcwd()}")

    def success(message: str, edited: bool) -> None:
        print(message)

    def failure(kind: str) -> int:
        text = (os.environ.get("FAKE_AGENT_QUOTA_TEXT") or QUOTA) if kind == "quota" else AUTH
        sys.stderr.write(text + "\n")
        return 1

    return fake.main(prompt, success=success, failure=failure)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
