"""Dispatch latency: from ``agentos issue new --ready`` to the agent process running its first line.

The daemon runs as a subprocess (``agentos run --config …``) with ``jobs.dispatch.interval_s: 3600``, so
only the poke can explain a fast start. The CLI hands the issue to the daemon over the control socket
(``issue_new``); the daemon files it and pokes dispatch itself. Each iteration:

    t0 = time.time(); spawn `agentos issue new --ready --json`  →  the agent's first statement writes
    time.time()  (a Python script run with -S -I, so interpreter start-up is small and counted)

then waits until the task is merged and the daemon idle before the next one. Breakdown from the
daemon's journal (``task_created`` and ``agent_started`` timestamps, wall clock on the same machine).

Baseline (same run): the mechanical floor of the same two process starts without agentos: a Python
process that writes an issue file, then the same agent script started directly.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench._common import BenchResult, Context, Figure, at_most, configure_logging, make_user_repo, write_config

NAME = "dispatch"
TITLE = "dispatch latency: `agentos issue new --ready` → agent's first line (daemon subprocess)"

TARGET_MS = 200.0

AGENT_PY = """import time; t = time.time()
import sys
safe = "".join(c if c.isalnum() else "_" for c in sys.argv[1])
with open("@TIMES@/" + safe, "w") as f:
    f.write(repr(t))
with open("bench-" + safe + ".txt", "w") as f:
    f.write("change\\n")
with open(".agent_result.md", "w") as f:
    f.write("STATUS: complete\\nBLOCKER_CODE: none\\nSUMMARY: one-line change\\n")
"""

WRITE_ISSUE_PY = """import sys
with open(sys.argv[1], "w") as f:
    f.write("---\\nnumber: 1\\ntitle: t\\nstate: open\\nlabels: [agentos:ready]\\n---\\n\\nbody\\n")
"""


def run(ctx: Context) -> BenchResult:
    res = BenchResult(NAME, TITLE)
    configure_logging(ctx.log_dir / f"{NAME}.log")  # this process files issues through the local forge too
    reps = 6 if ctx.quick else 25
    root = ctx.scratch(NAME)
    repo = make_user_repo(root / "repo")
    times = root / "agent-times"
    times.mkdir()
    agent = root / "agent.py"
    agent.write_text(AGENT_PY.replace("@TIMES@", str(times)))
    py = sys.executable
    state = root / "state"
    config = write_config(
        root / "agentos.yaml",
        state_dir=state,
        repos=[("bench", repo)],
        agent_argv=[py, "-S", "-I", str(agent), "{task_id}"],
        jobs={"dispatch": "{interval_s: 3600}"},
    )
    sock = root / "agentos.sock"
    env = {**os.environ, "AGENTOS_SOCKET": str(sock), "RUNTIME_DIRECTORY": str(root)}
    env.pop("AGENTOS_CONFIG", None)
    # Start-up as installed: bytecode cached (a pip install compiles it; an editable one on first run). With
    # PYTHONDONTWRITEBYTECODE set (as in some CI shells) every agentos module was compiled at each start, about
    # 40 ms more per command. The warm-up iteration fills the cache.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(root / "pycache")
    cli = str(Path(py).with_name("agentos"))
    res.params = {
        "iterations": reps,
        "dispatch_interval_s": 3600,
        "agent": "python -S -I script",
        "bytecode": "cached",
    }

    log = open(ctx.log_dir / f"{NAME}-daemon.log", "ab")  # noqa: SIM115
    daemon = subprocess.Popen([cli, "run", "--config", str(config)], env=env, stdout=log, stderr=log)
    rows: list[dict[str, float]] = []
    floor: list[float] = []
    try:
        _wait_ready(sock, daemon)
        for i in range(reps + 1):  # the first is a warm-up (clone creation)
            t0 = time.time()
            p0 = time.perf_counter()
            done = subprocess.run(
                [cli, "issue", "new", "--config", str(config), "--title", f"Bench change {i}", "--ready", "--json"],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            cli_s = time.perf_counter() - p0
            if done.returncode != 0:
                raise RuntimeError(f"agentos issue new exited {done.returncode}: {done.stderr.strip()[-500:]}")
            number = _issue_number(done.stdout)
            tid = f"bench#{number}"
            first = _wait_file(times / tid.replace("#", "_"), 30)
            _wait_merged(sock, tid, 60)
            version_s = _timed([cli, "version"], env)
            floor_s = _floor(py, agent, root / "floor", i)
            if i == 0:
                continue
            direct = _direct(config, sock, times)
            _wait_merged(sock, direct[0], 60)
            rows.append(
                {
                    "direct": (direct[2] - direct[1]) * 1000,
                    "latency": (first - t0) * 1000,
                    "cli": cli_s * 1000,
                    "cli_floor": version_s * 1000,
                    "tid": float(number),
                    "t0": t0,
                    "first": first,
                }
            )
            floor.append(floor_s * 1000)
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            daemon.kill()
        log.close()

    journal = _journal(state)
    created, after_created, after_started = [], [], []
    for r in rows:
        ev = journal.get(f"bench#{int(r['tid'])}", {})
        if "task_created" in ev and "agent_started" in ev:
            created.append((ev["task_created"] - r["t0"]) * 1000)
            after_created.append((ev["agent_started"] - ev["task_created"]) * 1000)
            after_started.append((r["first"] - ev["agent_started"]) * 1000)
    res.add(
        Figure(
            "issue new --ready → agent first line",
            "ms",
            [r["latency"] for r in rows],
            floor,
            "2 bare python starts",
            [at_most(TARGET_MS)],
        )
    )
    res.add(
        Figure(
            "issue filed + poke (no CLI start-up) → agent first line",
            "ms",
            [r["direct"] for r in rows],
            floor,
            "2 bare python starts",
            [at_most(TARGET_MS)],
            note="the daemon's share: the issue written by this process, then `poke` sent on the socket",
        )
    )
    g = "breakdown"
    res.add(Figure("CLI `agentos issue new` spawn → exit", "ms", [r["cli"] for r in rows], group=g))
    res.add(Figure("CLI floor `agentos version` spawn → exit", "ms", [r["cli_floor"] for r in rows], group=g))
    res.add(Figure("t0 → task_created (CLI, poke, dispatch pass)", "ms", created, group=g))
    res.add(Figure("task_created → agent_started (worktree, spawn)", "ms", after_created, group=g))
    res.add(Figure("agent_started → agent's first line (interpreter)", "ms", after_started, group=g))
    res.notes.append("GitHub polling latency (label → agent, ≤ the poll interval): see the github_idle benchmark")
    return res


def _issue_number(stdout: str) -> int:
    """The number in ``issue new --json`` output (skipping a log line the CLI may print before the JSON)."""
    start = 0 if stdout.startswith("{") else stdout.index("\n{") + 1
    return int(json.loads(stdout[start:])["number"])


def _request(sock: Path, cmd: str, args: dict[str, Any] | None = None) -> Any:
    from agentos.control.socket import request

    return request(sock, cmd, args, timeout=10)


def _wait_ready(sock: Path, daemon: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if daemon.poll() is not None:
            raise RuntimeError(f"the daemon exited with {daemon.returncode} during start-up (see the log)")
        try:
            _request(sock, "status")
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _wait_file(path: Path, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while True:
        try:
            text = path.read_text()
            if text:
                return float(text)
        except (OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"the agent did not start within {timeout:g}s ({path} missing)")
        time.sleep(0.002)


def _wait_merged(sock: Path, tid: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        task = _request(sock, "task", {"id": tid})
        if task["status"] == "merged":
            jobs = _request(sock, "jobs")
            if not any(j.get("running") for j in jobs) and _request(sock, "status")["running"] == 0:
                return
        elif task["status"] in ("blocked", "failed", "cancelled", "retrying"):
            raise RuntimeError(f"{tid} ended {task['status']}: {task.get('last_blocker')}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{tid} not merged within {timeout:g}s (status {task['status']})")
        time.sleep(0.05)


def _direct(config: Path, sock: Path, times: Path) -> tuple[str, float, float]:
    """File a ready issue from this process and poke dispatch: ``(task id, t0, agent's first line)``."""
    import asyncio

    from agentos.config import load_config
    from agentos.forge.base import READY_LABEL
    from agentos.forge.local import LocalForge

    cfg, _ = load_config(config)
    forge = LocalForge(cfg.state_path, {r.name: r for r in cfg.repos})
    t0 = time.time()
    issue = asyncio.run(forge.new_issue("bench", "Bench change (direct)", "", [READY_LABEL]))
    _request(sock, "poke", {"job": "dispatch"})
    tid = f"bench#{issue.number}"
    return tid, t0, _wait_file(times / tid.replace("#", "_"), 30)


def _timed(argv: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    subprocess.run(argv, env=env, capture_output=True, check=True)
    return time.perf_counter() - t


def _floor(py: str, agent: Path, workdir: Path, i: int) -> float:
    """Write an issue file from one Python process, then start the agent: the same two starts, no agentos."""
    workdir.mkdir(exist_ok=True)
    times = workdir / "times"
    times.mkdir(exist_ok=True)
    script = workdir / "agent.py"
    if not script.exists():
        script.write_text(agent.read_text().replace(str(agent.parent / "agent-times"), str(times)))
    t0 = time.time()
    subprocess.run([py, "-S", "-I", "-c", WRITE_ISSUE_PY, str(workdir / f"{i}.md")], check=True)
    subprocess.run([py, "-S", "-I", str(script), f"f#{i}"], cwd=workdir, check=True)
    return float((times / f"f_{i}").read_text()) - t0


def _journal(state: Path) -> dict[str, dict[str, float]]:
    """First ``task_created`` / ``agent_started`` time per task, from the journal and rotated history."""
    out: dict[str, dict[str, float]] = {}
    files = [*sorted((state / "events").glob("events-*.jsonl")), state / "journal.jsonl"]
    for path in files:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("type") in ("task_created", "agent_started") and rec.get("task"):
                ts = datetime.fromisoformat(rec["ts"]).timestamp()
                out.setdefault(rec["task"], {}).setdefault(rec["type"], ts)
    return out
