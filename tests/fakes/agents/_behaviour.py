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
    ``crash``: a stack trace on stderr, exit 1. ``quota`` / ``auth``: the CLI's real usage-limit or
    login error, non-zero exit. ``chatty``: print ``$FAKE_AGENT_MB`` MB (default 3) first, then complete.
    ``slow``: print a progress line every 0.1 s for ``$FAKE_AGENT_SLOW_S`` seconds (default 3), stay silent as
    long again (default 2), then complete.
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
    """Sleep forever. With FAKE_AGENT_IGNORE_TERM or FAKE_AGENT_FORK, say so on stderr once SIGTERM is ignored
    where asked (and the child is in place): the runner's idle limit counts from that line, so a test's short
    limit never lands before the agent is set up, however slowly it started on a loaded machine."""
    ignore_term = os.environ.get("FAKE_AGENT_IGNORE_TERM") == "1"
    if ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    fork = os.environ.get("FAKE_AGENT_FORK") == "1"
    if fork:
        ready_r, ready_w = os.pipe()
        child = os.fork()
        if child == 0:  # keeps the inherited stdout pipe open, like a stuck tool the agent started
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            os.write(ready_w, b"1")
            while True:
                time.sleep(3600)
        os.read(ready_r, 1)
        _pid(child)
    if ignore_term or fork:
        sys.stderr.write("fake agent: waiting (SIGTERM ignored where asked)\n")
        sys.stderr.flush()
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


# ---- appended: reliability modes (tests/reliability) -----------------------------------------------
# ``plan``: the behaviour is read from the prompt, so one agent config serves many issues. The issue body has
#     a line ``soak-plan: <file> <step>,<step>,…``; the n-th *counted* attempt (prior attempts in the prompt
#     that were not ``interrupted`` by a daemon restart) runs step n (the last step once they run out), and
#     once an earlier attempt was ``complete`` (a PR sent back for a conflict) every attempt completes. A step
#     is any mode above (``complete``, ``partial``, ``crash``, ``noresult``, ``hang``…); the edit goes to
#     ``<file>``. A line is printed first, and one every 0.5 s while a step other than ``hang`` works (a git
#     commit on a loaded machine can be slower than the soak's idle limit), so only ``hang`` ever looks idle.
#     ``FAKE_PLAN_FORK=1``: ``hang`` steps fork a child too (kills must reach it across daemon restarts).
# ``escape``: silent and deaf to SIGTERM, with a child in its group that ignores SIGTERM and a grandchild
#     that leaves the group with ``setsid()`` (only a sweep by more than the process group finds it).
# ``rmgit``: the usual edit and commit, then ``rm .git`` (``FAKE_AGENT_RMGIT=reinit``: then ``git init``).
# ``outside``: the usual edit and commit, then writes outside the worktree: a hook and ``core.hooksPath`` in
#     agentos's clone (the hook writes ``$FAKE_AGENT_PWNED`` if agentos ever runs it), a push of its branch to
#     ``agent-shortcut`` in the remote, and ``$FAKE_AGENT_OUTSIDE_FILE``.
# ``bigresult`` (``$FAKE_AGENT_RESULT_MB``, default 10), ``fiforesult``, ``symresult`` (a symlink to
#     ``$FAKE_AGENT_LINK_TARGET``): the usual edit and commit, and a hostile ``.agent_result.md``.
# ``secret``: commits ``settings.py`` holding ``$FAKE_AGENT_SECRET`` (a ``ghp_`` token by default), reports complete.
# ``rewrite``: rewrites the branch, then edits, commits and reports complete. ``FAKE_AGENT_REWRITE``: ``amend``
#     (default: amends the commit the attempt started on), ``squash`` (soft reset to the fork point with
#     ``origin/main`` and one new commit) or ``detach`` (commits on a detached HEAD).

import re as _re  # noqa: E402  (appended section)
import threading as _threading  # noqa: E402

_PLAN = _re.compile(r"soak-plan:[ \t]*(\S+)[ \t]+([\w,]+)")
_PRIOR = _re.compile(r"^## Attempt \d+ by \S+: (\w+)", _re.MULTILINE)
_OWN_MODES = {"escape", "rmgit", "outside", "bigresult", "fiforesult", "symresult", "secret", "rewrite"}
FAKE_SECRET = "ghp_" + "Z9y8X7w6V5u4T3s2R1q0" + "PpOoNnMmLlKkJjIiHh"


def _plan_step(prompt: str) -> str:
    match = _PLAN.search(prompt)
    if match is None:
        die("fake agent: FAKE_AGENT_MODE=plan needs a 'soak-plan: <file> <steps>' line in the issue", 2)
    file, steps = match.group(1), [s for s in match.group(2).split(",") if s]
    os.environ["FAKE_AGENT_FILE"] = file
    prior = _PRIOR.findall(prompt)
    if "complete" in prior:
        return "complete"
    counted = len([outcome for outcome in prior if outcome != "interrupted"])
    step = steps[min(counted, len(steps) - 1)]
    if step == "hang" and os.environ.get("FAKE_PLAN_FORK") == "1":
        os.environ["FAKE_AGENT_FORK"] = "1"
    return step


def _git_out(*args: str) -> str:
    done = subprocess.run(["git", *args], capture_output=True, text=True)
    if done.returncode != 0:
        die(f"fake agent: git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def _escape() -> NoReturn:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = os.fork()
    if child == 0:  # stays in the group, deaf to SIGTERM, holds the output pipe
        while True:
            time.sleep(3600)
    _pid(child)
    runaway = os.fork()
    if runaway == 0:
        os.setsid()  # out of the agent's process group and session
        grandchild = os.fork()
        if grandchild == 0:
            for fd in (0, 1, 2):  # lets go of the pipe, like a daemonised dev server
                os.close(fd)
            while True:
                time.sleep(3600)
        _pid(grandchild)
        os._exit(0)
    os.waitpid(runaway, 0)
    while True:
        time.sleep(3600)


def _outside() -> None:
    common = Path(_git_out("rev-parse", "--git-common-dir")).resolve()
    subprocess.run(["git", "push", "-q", "origin", "HEAD:refs/heads/agent-shortcut"], capture_output=True)
    pwned = os.environ.get("FAKE_AGENT_PWNED", "/nonexistent/pwned")
    # Run by a git of the agent's own, the hook stays quiet (the agent's processes carry AGENTOS_ATTEMPT).
    script = f"#!/bin/sh\n[ -n \"$AGENTOS_ATTEMPT\" ] || env > '{pwned}'\n"
    hooks = [common / "hooks" / name for name in ("post-commit", "pre-push", "post-checkout", "reference-transaction")]
    own = Path.cwd().parent / "agent-hooks"  # outside the worktree, next to it
    own.mkdir(exist_ok=True)
    hooks += [own / path.name for path in hooks]
    for hook in hooks:
        hook.parent.mkdir(parents=True, exist_ok=True)
        hook.write_text(script, encoding="utf-8")
        hook.chmod(0o755)
    _git_out("config", "core.hooksPath", str(own))
    if target := os.environ.get("FAKE_AGENT_OUTSIDE_FILE"):
        with open(target, "a", encoding="utf-8") as f:
            f.write("written by the fake agent from its worktree\n")


def _rewrite() -> None:
    how = os.environ.get("FAKE_AGENT_REWRITE", "amend")
    if how == "amend":
        _git_out("commit", "-q", "--amend", "-m", "rewritten by the fake agent")
    elif how == "squash":
        fork = _git_out("merge-base", "HEAD", "refs/remotes/origin/main")
        _git_out("reset", "-q", "--soft", fork)
        _git_out("commit", "-q", "--allow-empty", "-m", "everything, squashed by the fake agent")
    elif how == "detach":
        _git_out("checkout", "-q", "--detach")
    else:
        die(f"fake agent: unknown FAKE_AGENT_REWRITE={how!r}", 2)


def _own_mode(mode: str, success: Callable[[str, bool], None]) -> int:
    if mode == "escape":
        _escape()
    if mode == "rewrite":
        _rewrite()
    if mode == "secret":
        token = os.environ.get("FAKE_AGENT_SECRET", FAKE_SECRET)
        Path("settings.py").write_text(f'API_TOKEN = "{token}"\n', encoding="utf-8")
        _git_out("add", "settings.py")
    _edit()
    if mode == "rmgit":
        Path(".git").unlink()
        if os.environ.get("FAKE_AGENT_RMGIT") == "reinit":
            _git_out("init", "-q")
    if mode == "outside":
        _outside()
    result = Path(RESULT_FILE)
    if mode == "bigresult":
        size = int(float(os.environ.get("FAKE_AGENT_RESULT_MB", "10")) * 1024 * 1024)
        with result.open("w", encoding="utf-8") as f:
            f.write(COMPLETE.format(file="agent_output.txt"))
            f.write(("padding " * 16 + "\n") * (size // 129 + 1))
    elif mode == "fiforesult":
        os.mkfifo(RESULT_FILE)
    elif mode == "symresult":
        result.symlink_to(os.environ.get("FAKE_AGENT_LINK_TARGET", "/etc/hostname"))
    else:
        result.write_text(COMPLETE.format(file="agent_output.txt"), encoding="utf-8")
    success(f"Done ({mode}).", True)
    return 0


def _heartbeat(
    success: Callable[[str, bool], None], failure: Callable[[str], int]
) -> tuple[Callable[[str, bool], None], Callable[[str], int]]:
    """Print a line every 0.5 s until the final report; the wrapped callbacks stop it before they print, so
    nothing follows the report (the CLI's JSON stays the last thing it prints)."""
    lock, done = _threading.Lock(), _threading.Event()

    def beat() -> None:
        while not done.wait(0.5):
            with lock:
                if not done.is_set():
                    print("working…", flush=True)

    _threading.Thread(target=beat, daemon=True).start()

    def last_success(message: str, edited: bool) -> None:
        with lock:
            done.set()
        success(message, edited)

    def last_failure(kind: str) -> int:
        with lock:
            done.set()
        return failure(kind)

    return last_success, last_failure


_main_before_reliability = main


def main(  # type: ignore[no-redef]  # appended: wraps the original to add the modes above
    prompt: str,
    *,
    success: Callable[[str, bool], None],
    failure: Callable[[str], int],
    can_edit: bool = True,
    crash_text: str = "Error: something broke\n    at main (cli.js:1:1)",
) -> int:
    mode = os.environ.get("FAKE_AGENT_MODE", "complete")
    if mode == "plan":
        mode = os.environ["FAKE_AGENT_MODE"] = _plan_step(prompt)
        print(f"plan step: {mode}", flush=True)
        if mode != "hang":
            success, failure = _heartbeat(success, failure)
    if mode in _OWN_MODES and can_edit:
        _record(prompt)
        return _own_mode(mode, success)
    return _main_before_reliability(prompt, success=success, failure=failure, can_edit=can_edit, crash_text=crash_text)
