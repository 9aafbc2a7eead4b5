"""What the fake agent CLIs do, shared by ``claude``, ``codex``, ``gemini`` and ``command_agent.py``.

Each script parses its command line like the real CLI (rejecting unknown flags the way it does), reads the
prompt, and calls :func:`main` with what its permission flags allow. :func:`main` looks the mode up in
:data:`MODES` and runs its steps in order.

``FAKE_AGENT_MODE`` (default ``complete``)

================  ======================================================================================
``complete``      append a line to ``$FAKE_AGENT_FILE`` (default ``agent_output.txt``) and commit it (unless
                  ``FAKE_AGENT_COMMIT=0``), write a valid ``.agent_result.md``, print a success report
``partial``       the same edit, STATUS partial (blocker ``test_failure``)
``blocked``       no edit, STATUS blocked (blocker ``missing_context``)
``noresult``      the edit, no result file
``garbage``       the edit, an unparsable result file
``chatty``        print ``$FAKE_AGENT_MB`` MB (default 3) first, then as ``complete``
``slow``          print a progress line every 0.1 s for ``$FAKE_AGENT_SLOW_S`` seconds (default 3), then print
                  nothing for ``$FAKE_AGENT_SLOW_S`` seconds (default 2), then as ``complete``
``hang``          print nothing and sleep forever; ``FAKE_AGENT_FORK=1`` also forks a child that ignores
                  SIGTERM, ``FAKE_AGENT_IGNORE_TERM=1`` makes the agent itself ignore SIGTERM
``busy``          print a line every 50 ms forever (never idle: only the wall-clock limit stops it)
``crash``         a stack trace on stderr, exit 1
``quota``         the CLI's real usage-limit error, non-zero exit
``auth``          the CLI's real login error, non-zero exit
``plan``          the mode comes from the prompt (one agent config serves many issues), see :func:`plan_step`
================  ======================================================================================

Hostile agents, for tests/reliability (each edits and commits like ``complete`` unless said otherwise):

================  ======================================================================================
``escape``        no edit: silent, deaf to SIGTERM, a child in its group ignoring SIGTERM and a grandchild
                  out of it (``setsid()``: only a sweep by more than the process group finds it)
``rewrite``       first rewrites the branch as ``FAKE_AGENT_REWRITE`` says: ``amend`` (default: the commit the
                  attempt started on), ``squash`` (to one commit on the fork point with ``origin/main``) or
                  ``detach`` (commits on a detached HEAD)
``secret``        also commits ``settings.py`` holding ``$FAKE_AGENT_SECRET`` (a ``ghp_`` token by default)
``rmgit``         then ``rm .git`` (``FAKE_AGENT_RMGIT=reinit``: then ``git init``)
``outside``       then writes outside the worktree: a hook and ``core.hooksPath`` in agentos's clone (the hook
                  writes ``$FAKE_AGENT_PWNED`` if agentos ever runs it), a push of its branch to
                  ``agent-shortcut`` in the remote, and ``$FAKE_AGENT_OUTSIDE_FILE``
``bigresult``     a result file of ``$FAKE_AGENT_RESULT_MB`` MB (default 10)
``fiforesult``    a FIFO as the result file
``symresult``     the result file is a symlink to ``$FAKE_AGENT_LINK_TARGET`` (default ``/etc/hostname``)
================  ======================================================================================

Started without its permission-bypass flag (``can_edit`` False) the real CLI cannot write files, so the fake
reports that it was denied where the mode would first touch the worktree.

Other variables: ``FAKE_AGENT_PROMPT_LOG`` (append each prompt, followed by :data:`PROMPT_SEPARATOR`),
``FAKE_AGENT_ENV_LOG`` (write the environment the agent saw as JSON), ``FAKE_AGENT_PID_FILE`` (append the
pid of the agent and of the children it forks, one per line), ``FAKE_AGENT_SUMMARY`` (the SUMMARY line of
every result file it writes: plants text, such as a token, in what the daemon stores and shows the operator).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

PROMPT_SEPARATOR = "\n=== end of prompt ===\n"
RESULT_FILE = ".agent_result.md"
FAKE_SECRET = "ghp_" + "Z9y8X7w6V5u4T3s2R1q0" + "PpOoNnMmLlKkJjIiHh"

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


# ---- the command-line side, used by the scripts ------------------------------------------------------


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


def session_id() -> str:
    return str(uuid.uuid4())


def reset_epoch(hours: float = 2.0) -> int:
    """An hour boundary ``hours`` from now, as Claude states its usage-limit reset."""
    return (int(time.time() + hours * 3600) // 3600) * 3600


# ---- one run -----------------------------------------------------------------------------------------


@dataclass
class Run:
    """One start of the fake: the CLI's callbacks, and what the steps so far did."""

    mode: str
    success: Callable[[str, bool], None]
    failure: Callable[[str], int]
    can_edit: bool
    crash_text: str
    edited: str | None = None  # the file the edit went to
    wrote_result: bool = False


Step = Callable[[Run], int | None]
"""One step of a mode; a number ends the run with that exit code."""


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


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], capture_output=True, text=True)
    if done.returncode != 0:
        die(f"fake agent: git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def _sleep_forever() -> NoReturn:
    while True:
        time.sleep(3600)


# ---- steps (a mode's table row lists them in order) ----------------------------------------------------


def chatter(run: Run) -> None:
    """Print ``$FAKE_AGENT_MB`` MB of tool output."""
    total = int(float(os.environ.get("FAKE_AGENT_MB", "3")) * 1024 * 1024)
    line = ("tool output: " + "x" * 100 + "\n").encode()
    out = sys.stdout.buffer
    written = 0
    while written < total:
        out.write(line * 512)
        written += len(line) * 512
    out.flush()


def think(run: Run) -> None:
    """Work for a while, visibly (never idle): a progress line every 0.1 s."""
    deadline = time.monotonic() + float(os.environ.get("FAKE_AGENT_SLOW_S", "3"))
    n = 0
    while time.monotonic() < deadline:
        n += 1
        print(f"thinking… step {n}", flush=True)
        time.sleep(0.1)


def stay_quiet(run: Run) -> None:
    time.sleep(float(os.environ.get("FAKE_AGENT_SLOW_S", "2")))


def may_edit(run: Run) -> int | None:
    """Without the permission-bypass flag the CLI may not write: it says so and stops."""
    if run.can_edit:
        return None
    run.success("I need permission to edit files in this directory, and it was denied.", False)
    return 0


def edit(run: Run) -> None:
    """Append a line to ``$FAKE_AGENT_FILE`` and commit it (unless ``FAKE_AGENT_COMMIT=0``)."""
    name = os.environ.get("FAKE_AGENT_FILE", "agent_output.txt")
    with open(name, "a", encoding="utf-8") as f:
        f.write(f"edited by the fake agent at {time.time():.3f}\n")
    if os.environ.get("FAKE_AGENT_COMMIT", "1") != "0":
        for cmd in (["git", "add", "--", name], ["git", "commit", "-q", "-m", f"fake agent: update {name}"]):
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                die(f"fake agent: {' '.join(cmd)} failed: {done.stderr.strip()}")
    run.edited = name


def rewrite(run: Run) -> None:
    how = os.environ.get("FAKE_AGENT_REWRITE", "amend")
    if how == "amend":
        _git("commit", "-q", "--amend", "-m", "rewritten by the fake agent")
    elif how == "squash":
        fork = _git("merge-base", "HEAD", "refs/remotes/origin/main")
        _git("reset", "-q", "--soft", fork)
        _git("commit", "-q", "--allow-empty", "-m", "everything, squashed by the fake agent")
    elif how == "detach":
        _git("checkout", "-q", "--detach")
    else:
        die(f"fake agent: unknown FAKE_AGENT_REWRITE={how!r}", 2)


def plant_secret(run: Run) -> None:
    token = os.environ.get("FAKE_AGENT_SECRET", FAKE_SECRET)
    Path("settings.py").write_text(f'API_TOKEN = "{token}"\n', encoding="utf-8")
    _git("add", "settings.py")


def remove_git(run: Run) -> None:
    Path(".git").unlink()
    if os.environ.get("FAKE_AGENT_RMGIT") == "reinit":
        _git("init", "-q")


def write_outside(run: Run) -> None:
    common = Path(_git("rev-parse", "--git-common-dir")).resolve()
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
    _git("config", "core.hooksPath", str(own))
    if target := os.environ.get("FAKE_AGENT_OUTSIDE_FILE"):
        with open(target, "a", encoding="utf-8") as f:
            f.write("written by the fake agent from its worktree\n")


def _planted(result: str) -> str:
    """``result`` with the SUMMARY line ``$FAKE_AGENT_SUMMARY`` says, when set."""
    summary = os.environ.get("FAKE_AGENT_SUMMARY")
    if summary is None:
        return result
    line = "SUMMARY: " + " ".join(summary.split()).replace("{", "{{").replace("}", "}}")
    return "".join(line + "\n" if old.startswith("SUMMARY:") else old for old in result.splitlines(keepends=True))


def result(template: str) -> Step:
    """Write ``template`` (naming the edited file) as the result file."""

    def write(run: Run) -> None:
        text = _planted(template).format(file=run.edited or "nothing")
        Path(RESULT_FILE).write_text(text, encoding="utf-8")
        run.wrote_result = True

    return write


def big_result(run: Run) -> None:
    size = int(float(os.environ.get("FAKE_AGENT_RESULT_MB", "10")) * 1024 * 1024)
    with Path(RESULT_FILE).open("w", encoding="utf-8") as f:
        f.write(_planted(COMPLETE).format(file=run.edited))
        f.write(("padding " * 16 + "\n") * (size // 129 + 1))
    run.wrote_result = True


def fifo_result(run: Run) -> None:
    os.mkfifo(RESULT_FILE)
    run.wrote_result = True


def symlink_result(run: Run) -> None:
    Path(RESULT_FILE).symlink_to(os.environ.get("FAKE_AGENT_LINK_TARGET", "/etc/hostname"))
    run.wrote_result = True


def report(run: Run) -> None:
    """The CLI's success report."""
    wrote = f" and wrote {RESULT_FILE}" if run.wrote_result else ""
    if run.edited is not None:
        run.success(f"Done: appended a line to {run.edited}{wrote}.", True)
    else:
        run.success(f"Stopped ({run.mode}){wrote}.", False)


def crash(run: Run) -> NoReturn:
    die(run.crash_text)


def fail_with(kind: str) -> Step:
    """The CLI's own ``quota`` or ``auth`` error, and its exit code."""
    return lambda run: run.failure(kind)


def hang(run: Run) -> NoReturn:
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
            _sleep_forever()
        os.read(ready_r, 1)
        _pid(child)
    if ignore_term or fork:
        sys.stderr.write("fake agent: waiting (SIGTERM ignored where asked)\n")
        sys.stderr.flush()
    _sleep_forever()


def busy(run: Run) -> NoReturn:
    n = 0
    while True:
        n += 1
        print(f"working… step {n}", flush=True)
        time.sleep(0.05)


def escape(run: Run) -> NoReturn:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = os.fork()
    if child == 0:  # stays in the group, deaf to SIGTERM, holds the output pipe
        _sleep_forever()
    _pid(child)
    runaway = os.fork()
    if runaway == 0:
        os.setsid()  # out of the agent's process group and session
        grandchild = os.fork()
        if grandchild == 0:
            for fd in (0, 1, 2):  # lets go of the pipe, like a daemonised dev server
                os.close(fd)
            _sleep_forever()
        _pid(grandchild)
        os._exit(0)
    os.waitpid(runaway, 0)
    _sleep_forever()


# ---- the modes -----------------------------------------------------------------------------------------

MODES: dict[str, tuple[Step, ...]] = {
    "complete": (may_edit, edit, result(COMPLETE), report),
    "partial": (may_edit, edit, result(PARTIAL), report),
    "blocked": (may_edit, result(BLOCKED), report),
    "noresult": (may_edit, edit, report),
    "garbage": (may_edit, edit, result(GARBAGE), report),
    "chatty": (chatter, may_edit, edit, result(COMPLETE), report),
    "slow": (think, stay_quiet, may_edit, edit, result(COMPLETE), report),
    "hang": (hang,),
    "busy": (busy,),
    "crash": (crash,),
    "quota": (fail_with("quota"),),
    "auth": (fail_with("auth"),),
    # hostile agents (tests/reliability)
    "escape": (may_edit, escape),
    "rewrite": (may_edit, rewrite, edit, result(COMPLETE), report),
    "secret": (may_edit, plant_secret, edit, result(COMPLETE), report),
    "rmgit": (may_edit, edit, remove_git, result(COMPLETE), report),
    "outside": (may_edit, edit, write_outside, result(COMPLETE), report),
    "bigresult": (may_edit, edit, big_result, report),
    "fiforesult": (may_edit, edit, fifo_result, report),
    "symresult": (may_edit, edit, symlink_result, report),
}


_PLAN = re.compile(r"soak-plan:[ \t]*(\S+)[ \t]+([\w,]+)")
_PRIOR = re.compile(r"^## Attempt \d+ by \S+: (\w+)", re.MULTILINE)


def plan_step(prompt: str) -> str:
    """The mode of ``plan``: the issue body has a line ``soak-plan: <file> <step>,<step>,…``.

    The n-th *counted* attempt (prior attempts in the prompt that were not ``interrupted`` by a daemon restart)
    runs step n (the last step once they run out), and once an earlier attempt was ``complete`` (a PR sent back
    for a conflict) every attempt completes. A step is any mode of :data:`MODES`; the edit goes to ``<file>``.
    ``FAKE_PLAN_FORK=1``: ``hang`` steps fork a child too (kills must reach it across daemon restarts).
    """
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


def _heartbeat(
    success: Callable[[str, bool], None], failure: Callable[[str], int]
) -> tuple[Callable[[str, bool], None], Callable[[str], int]]:
    """Print a line every 0.5 s until the final report (a git commit on a loaded machine can be slower than the
    soak's idle limit, so only ``hang`` ever looks idle); the wrapped callbacks stop it before they print, so
    nothing follows the report (the CLI's JSON stays the last thing it prints)."""
    lock, done = threading.Lock(), threading.Event()

    def beat() -> None:
        while not done.wait(0.5):
            with lock:
                if not done.is_set():
                    print("working…", flush=True)

    threading.Thread(target=beat, daemon=True).start()

    def last_success(message: str, edited: bool) -> None:
        with lock:
            done.set()
        success(message, edited)

    def last_failure(kind: str) -> int:
        with lock:
            done.set()
        return failure(kind)

    return last_success, last_failure


def main(
    prompt: str,
    *,
    success: Callable[[str, bool], None],
    failure: Callable[[str], int],
    can_edit: bool = True,
    crash_text: str = "Error: something broke\n    at main (cli.js:1:1)",
) -> int:
    """Run the steps of the mode ``FAKE_AGENT_MODE`` names.

    ``success(message, edited)`` prints the CLI's success report; ``failure(kind)`` prints its ``quota`` or
    ``auth`` error and returns the exit code. ``can_edit`` is False when the CLI was started without its
    permission-bypass flag.
    """
    mode = os.environ.get("FAKE_AGENT_MODE", "complete")
    if mode == "plan":
        mode = plan_step(prompt)
        print(f"plan step: {mode}", flush=True)
        if mode != "hang":
            success, failure = _heartbeat(success, failure)
    _record(prompt)
    steps = MODES.get(mode)
    if steps is None:
        die(f"fake agent: unknown FAKE_AGENT_MODE={mode!r}", 2)
    run = Run(mode, success, failure, can_edit, crash_text)
    for step in steps:
        if (code := step(run)) is not None:
            return code
    return 0
