"""The demo's stand-in for an AI agent: it applies the patch written in the issue, nothing more.

Run as ``python -m agentos.demo_agent PROMPT_FILE`` in a worktree (an agent of kind ``command``). It finds
the first fenced ``diff`` block in the prompt's task section, applies it with ``git apply``, commits,
and writes ``.agent_result.md``. With no patch in the issue it reports ``blocked`` with
``missing_context``, which is how one of the demo's issues ends up escalated.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from agentos.agents.contract import RESULT_FILE as RESULT

DIFF = re.compile(r"```+diff\n(.*?)\n```", re.DOTALL)


def write_result(status: str, code: str, summary: str, **fields: str) -> None:
    lines = [f"STATUS: {status}", f"BLOCKER_CODE: {code}", f"SUMMARY: {summary}"]
    lines += [f"{name.upper()}: {value}" for name, value in fields.items()]
    Path(RESULT).write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str]) -> int:
    prompt = Path(argv[1]).read_text(encoding="utf-8") if len(argv) > 1 else sys.stdin.read()
    task = prompt.split("# Repository memory", 1)[0]
    match = DIFF.search(task)
    print("demo agent: reading the issue", flush=True)
    if match is None:
        write_result(
            "blocked",
            "missing_context",
            "The issue gives no patch and the demo agent cannot invent one.",
            blockers="No ```diff block in the issue body.",
            next_step="Add the change as a ```diff block to the issue, or give it to a real agent.",
            attempted_approaches="Looked for a fenced diff in the task section.",
        )
        print("demo agent: no patch in the issue; reporting blocked", flush=True)
        return 0
    patch = match.group(1).replace("\n> ", "\n") + "\n"
    applied = subprocess.run(["git", "apply", "--whitespace=nowarn", "-"], input=patch, text=True, capture_output=True)
    if applied.returncode != 0:
        write_result("blocked", "test_failure", "The patch in the issue does not apply.", blockers=applied.stderr)
        print(f"demo agent: patch failed: {applied.stderr.strip()}", flush=True)
        return 0
    files = subprocess.run(["git", "status", "--porcelain"], text=True, capture_output=True).stdout
    changed = ", ".join(line[3:] for line in files.splitlines() if not line[3:].startswith(RESULT))
    subprocess.run(["git", "add", "-A"], check=True)
    subprocess.run(
        [
            "git",
            "-c",
            "user.name=demo agent",
            "-c",
            "user.email=demo@agentos.invalid",
            "commit",
            "-qm",
            "Apply the patch from the issue",
        ],
        check=True,
    )
    write_result(
        "complete",
        "none",
        "Applied the patch from the issue.",
        done="The change in the issue's diff block.",
        files_changed=changed,
        tests_run="agentos runs the repository's test command after this.",
        decisions="Took the issue's patch as written.",
        risks="None beyond the patch itself.",
    )
    print(f"demo agent: applied the patch ({changed})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
