"""What the fake agent CLIs do, shared by ``claude``, ``codex``, ``gemini`` and ``command_agent.py``.

Each script parses its command line like the real CLI (rejecting unknown flags the way it does), reads the
prompt, and calls :func:`main` with what its permission flags allow. The behaviour comes from the environment:

``FAKE_AGENT_MODE``
    ``complete`` (default): append a line to ``$FAKE_AGENT_FILE`` (``agent_output.txt``), commit it unless
    ``FAKE_AGENT_COMMIT=0``, write a valid ``.agent_result.md``, print a success report.
    ``partial`` / ``blocked``: the same edit (none for blocked) with that STATUS.
    ``noresult``: edit, no result file. ``garbage``: edit, an unparsable result file.
    ``hang``: print nothing and sleep forever; ``FAKE_AGENT_FORK=1`` also forks a child that ignores
    SIGTERM; ``FAKE_AGENT_IGNORE_TERM=1`` makes the agent itself ignore SIGTERM.
    ``busy``: print a line every 50 ms forever (never idle, only the wall-clock limit stops it).
    ``slow``: work silently for ``$FAKE_AGENT_SLOW_S`` seconds (default 2), then complete.
    ``crash``: a stack trace on stderr, exit 1. ``quota`` / ``auth``: the CLI's real usage-limit or
    login error, non-zero exit. ``chatty``: print ``$FAKE_AGENT_MB`` MB (default 3) first, then complete.
    ``slow``: print a progress line every 0.1 s for ``$FAKE_AGENT_SLOW_S`` seconds (default 3), then complete.
``FAKE_AGENT_PROMPT_LOG``
    append the prompt received, followed by :data:`PROMPT_SEPARATOR`.
``FAKE_AGENT_ENV_LOG``
    write the environment the agent saw as JSON.
``FAKE_AGENT_PID_FILE``
    append the pid of the agent (and of its forked child) one per line.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

PROMPT_SEPARATOR = "\n=== end of prompt ===\n"
RESULT_FILE = ".agent_result.md"

COMPLETE = """STATUS: complete
BLOCKER_CODE: none
SUMMARY: Appended a line to {file}.
DONE: the requested change
BLOCKERS: none
NEXT_STEP: none
FILES_CHANGED: {file}
TESTS_RUN: none
DECISIONS: none
RISKS: none
ATTEMPTED_APPROACHES: append
MANUAL_STEPS: none
"""
PARTIAL = (
    COMPLETE.replace("STATUS: complete", "STATUS: partial")
    .replace("BLOCKER_CODE: none", "BLOCKER_CODE: test_failure")
    .replace("NEXT_STEP: none", "NEXT_STEP: finish the remaining half")
)
BLOCKED = """STATUS: blocked
BLOCKER_CODE: missing_context
SUMMARY: The issue does not say which file to change.
BLOCKERS: which file?
NEXT_STEP: name the file in the issue
"""
GARBAGE = "I did some stuff!!\n<<<<<<< not a result file\nSTATUS maybe\n\x00\x01 binary junk\n"

EDIT_MODES = {"complete", "partial", "noresult", "garbage", "chatty", "slow"}
RESULTS = {
    "complete": COMPLETE,
    "chatty": COMPLETE,
    "slow": COMPLETE,
    "partial": PARTIAL,
    "blocked": BLOCKED,
    "garbage": GARBAGE,
}


class CliParser(argparse.ArgumentParser):
    """argparse that fails the way the real CLI does: ``fail(message)`` prints and exits."""

    def __init__(self, prog: str, fail: Callable[[str], NoReturn]) -> None:
        super().__init__(prog=prog, add_help=False, allow_abbrev=False)
        self._fail = fail

    def error(self, message: str) -> NoReturn:
        self._fail(message)


def die(message: str, code: int = 1) -> NoReturn:
    sys.stderr.write(message.rstrip("\n") + "\n")
    sys.stderr.flush()
    sys.exit(code)


def read_stdin() -> str:
    return "" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.read()


def _record(prompt: str) -> None:
    if path := os.environ.get("FAKE_AGENT_PROMPT_LOG"):
        with open(path, "a", encoding="utf-8") as f:
            f.write(prompt + PROMPT_SEPARATOR)
    if path := os.environ.get("FAKE_AGENT_ENV_LOG"):
        Path(path).write_text(json.dumps(dict(os.environ), sort_keys=True), encoding="utf-8")
    _pid(os.getpid())


def _pid(pid: int) -> None:
    if path := os.environ.get("FAKE_AGENT_PID_FILE"):
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"{pid}\n")


def _hang() -> NoReturn:
    if os.environ.get("FAKE_AGENT_IGNORE_TERM") == "1":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if os.environ.get("FAKE_AGENT_FORK") == "1":
        child = os.fork()
        if child == 0:  # keeps the inherited stdout pipe open, like a stuck tool the agent started
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            while True:
                time.sleep(3600)
        _pid(child)
    while True:
        time.sleep(3600)


def _busy() -> NoReturn:
    n = 0
    while True:
        n += 1
        print(f"working… step {n}", flush=True)
        time.sleep(0.05)


def _chatter() -> None:
    total = int(float(os.environ.get("FAKE_AGENT_MB", "3")) * 1024 * 1024)
    line = ("tool output: " + "x" * 100 + "\n").encode()
    out = sys.stdout.buffer
    written = 0
    while written < total:
        out.write(line * 512)
        written += len(line) * 512
    out.flush()


def _edit() -> str:
    name = os.environ.get("FAKE_AGENT_FILE", "agent_output.txt")
    with open(name, "a", encoding="utf-8") as f:
        f.write(f"edited by the fake agent at {time.time():.3f}\n")
    if os.environ.get("FAKE_AGENT_COMMIT", "1") != "0":
        for cmd in (["git", "add", "--", name], ["git", "commit", "-q", "-m", f"fake agent: update {name}"]):
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                die(f"fake agent: {' '.join(cmd)} failed: {done.stderr.strip()}")
    return name


def main(
    prompt: str,
    *,
    success: Callable[[str, bool], None],
    failure: Callable[[str], int],
    can_edit: bool = True,
    crash_text: str = "Error: something broke\n    at main (cli.js:1:1)",
) -> int:
    """Run the mode chosen by ``FAKE_AGENT_MODE``.

    ``success(message, edited)`` prints the CLI's success report; ``failure(kind)`` prints its ``quota`` or
    ``auth`` error and returns the exit code. ``can_edit`` is False when the CLI was started without its
    permission-bypass flag: the real CLI could not write files then, so neither does the fake.
    """
    _record(prompt)
    mode = os.environ.get("FAKE_AGENT_MODE", "complete")
    if mode == "hang":
        _hang()
    if mode == "busy":
        _busy()
    if mode == "slow":
        _slow()
    if mode == "crash":
        die(crash_text)
    if mode in ("quota", "auth"):
        return failure(mode)
    if mode not in RESULTS and mode not in EDIT_MODES:
        die(f"fake agent: unknown FAKE_AGENT_MODE={mode!r}", 2)
    if mode == "chatty":
        _chatter()
    if mode == "slow":
        time.sleep(float(os.environ.get("FAKE_AGENT_SLOW_S", "2")))
    if not can_edit:
        success("I need permission to edit files in this directory, and it was denied.", False)
        return 0
    name = _edit() if mode in EDIT_MODES else "nothing"
    if mode in RESULTS:
        Path(RESULT_FILE).write_text(RESULTS[mode].format(file=name), encoding="utf-8")
    edited = mode in EDIT_MODES
    wrote = f" and wrote {RESULT_FILE}" if mode in RESULTS else ""
    success(f"Done: appended a line to {name}{wrote}." if edited else f"Stopped ({mode}){wrote}.", edited)
    return 0


def session_id() -> str:
    return str(uuid.uuid4())


def reset_epoch(hours: float = 2.0) -> int:
    """An hour boundary ``hours`` from now, as Claude states its usage-limit reset."""
    return (int(time.time() + hours * 3600) // 3600) * 3600


# ---- appended modes -------------------------------------------------------------------------------

EDIT_MODES.add("slow")
RESULTS["slow"] = COMPLETE


def _slow() -> None:
    """Work for a while, visibly (never idle), then go on as ``complete``."""
    deadline = time.monotonic() + float(os.environ.get("FAKE_AGENT_SLOW_S", "3"))
    n = 0
    while time.monotonic() < deadline:
        n += 1
        print(f"thinking… step {n}", flush=True)
        time.sleep(0.1)


# ---- appended: FAKE_AGENT_SUMMARY ------------------------------------------------------------------
# ``FAKE_AGENT_SUMMARY``: the SUMMARY line of every result file the agent writes, in any mode (plants text,
# such as a token, in what the daemon stores and shows the operator).


def _with_summary(result: str, summary: str) -> str:
    line = "SUMMARY: " + " ".join(summary.split()).replace("{", "{{").replace("}", "}}")
    return "".join(line + "\n" if old.startswith("SUMMARY:") else old for old in result.splitlines(keepends=True))


if (_planted_summary := os.environ.get("FAKE_AGENT_SUMMARY")) is not None:
    for _mode, _result in list(RESULTS.items()):
        RESULTS[_mode] = _with_summary(_result, _planted_summary)
