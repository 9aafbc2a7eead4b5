"""Scale of state: RSS, journal append, snapshot, restart and ``ctl status`` with 1k, 10k (and 100k) tasks.

For each size a realistic graph (``bench._tasks``: a year of tasks, most merged, one or two attempts each)
is written through the real :class:`~agentos.store.Store`:

- **snapshot**: ``Store.snapshot`` (what compaction does every 1,000 journal lines, inside
  ``Runtime.commit``, on the event loop); baseline: stdlib ``json.dumps`` of the same data + write + fsync;
- **append**: ``Store.append`` of one transition event carrying its task (fsynced), as ``Runtime.commit``
  journals every change; baseline: ``os.write`` + ``fsync`` of the same number of bytes to a plain file;
- **restart**: a fresh process (``bench._state_worker``) takes the lock and loads snapshot + journal;
  baseline: ``json.loads`` of the same snapshot in that process;
- **RSS**: that process after the load; baseline: the same process before it (the daemon's imports);
- **ctl status**: requests on that process's real control socket; baseline: the same with 0 tasks.

Growth is fitted over the sizes: slope per 1,000 tasks and the log-log exponent (1 = linear).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench._common import (
    BENCH_DIR,
    BenchResult,
    Context,
    Figure,
    at_most,
    configure_logging,
    fit_line,
    growth_exponent,
    stat,
)

NAME = "state_scale"
TITLE = "scale of state: RSS, journal append, snapshot, restart, `ctl status` vs tasks in the graph"

TARGETS_AT_10K = {"rss": at_most(150), "append": at_most(1000), "restart": at_most(2000)}


def run(ctx: Context) -> BenchResult:
    from agentos.control.socket import request

    res = BenchResult(NAME, TITLE)
    sizes = [1_000, 10_000] if ctx.quick else [1_000, 10_000, 100_000]
    snaps, appends, restarts, statuses = (3, 100, 3, 20) if ctx.quick else (3, 200, 3, 40)
    res.params = {"sizes": sizes, "snapshots": snaps, "appends": appends, "restarts": restarts, "status": statuses}
    root = ctx.scratch(NAME)
    configure_logging(ctx.log_dir / f"{NAME}.log")

    empty = _restart(root / "empty", root / "empty.sock", statuses, request)
    per_size: dict[int, dict[str, Any]] = {}
    for n in sizes:
        per_size[n] = _one_size(root / f"n{n}", n, snaps, appends, restarts, statuses, request)

    metrics = [
        ("rss", "RSS after restart", "MB", "rss", "rss_base", "same process before the load"),
        ("append", "journal append (fsync)", "µs", "append", "append_base", "write+fsync same bytes"),
        ("snapshot", "snapshot", "ms", "snapshot", "snapshot_base", "json.dumps+write+fsync"),
        ("restart", "restart: lock + load + replay", "ms", "restart", "restart_base", "json.loads of snapshot"),
        ("status", "`ctl status` via socket", "ms", "status", None, "0 tasks"),
        ("dispatchable", "graph.dispatchable() scan", "ms", "dispatchable", None, ""),
        ("latest", "graph.latest_for_issue()", "µs", "latest", None, ""),
    ]
    for key, label, unit, field, base_field, base_name in metrics:
        for n in sizes:
            data = per_size[n]
            if base_field:
                baseline = data[base_field]
            elif key == "status":
                baseline = empty["status"]
            else:
                baseline = None
            targets = [TARGETS_AT_10K[key]] if n == 10_000 and key in TARGETS_AT_10K else []
            res.add(
                Figure(
                    f"{label} @ {n:,}",
                    unit,
                    data[field],
                    baseline,
                    base_name if baseline is not None else "",
                    targets,
                    group=key,
                )
            )
        xs = [float(n) for n in sizes]
        ys = [stat(per_size[n][field], "median") for n in sizes]
        if key == "rss":  # the graph's share: without the constant of the interpreter and imports
            ys = [y - stat(per_size[n]["rss_base"], "median") for y, n in zip(ys, sizes, strict=True)]
        slope, _ = fit_line(xs, ys)
        res.add(
            Figure(
                f"{label}: slope per 1k tasks",
                f"{unit}/1k",
                [slope * 1000],
                single=True,
                group=key,
            )
        )
        res.add(
            Figure(
                f"{label}: growth exponent" + (" (above the import base)" if key == "rss" else ""),
                "k",
                [growth_exponent(xs, ys)],
                single=True,
                targets=[at_most(1.2, label="≤ 1.2 (linear or better)")],
                group=key,
            )
        )
    res.extra["per_size"] = {
        str(n): {k: v for k, v in d.items() if k in ("snapshot_bytes", "journal_lines")} for n, d in per_size.items()
    }
    res.notes.append(
        "compaction runs Store.snapshot inside Runtime.commit every 1,000 journal lines, on the event loop: "
        "the snapshot time is also how long the loop stalls then"
    )
    return res


def _one_size(
    state_dir: Path, n: int, snaps: int, appends: int, restarts: int, statuses: int, request: Any
) -> dict[str, Any]:
    from agentos.graph import Event
    from agentos.store import DaemonState, Store
    from agentos.task_graph import TaskGraph
    from bench._tasks import make_tasks

    tasks = make_tasks(n)
    graph = TaskGraph(tasks)
    state = DaemonState()
    store = Store(state_dir)
    store.lock()
    store.load()
    out: dict[str, Any] = {"snapshot": [], "snapshot_base": [], "append": [], "append_base": []}
    for _ in range(snaps):
        t = time.perf_counter()
        store.snapshot(graph, state)
        out["snapshot"].append((time.perf_counter() - t) * 1000)
    dicts = [task.model_dump(mode="json") for task in tasks]
    for _ in range(snaps):
        t = time.perf_counter()
        data = json.dumps({"schema": 1, "seq": 0, "tasks": dicts, "daemon": {}}, separators=(",", ":")).encode()
        _atomic_write(state_dir / "plain-snapshot.json", data)
        out["snapshot_base"].append((time.perf_counter() - t) * 1000)
    del dicts
    rnd = random.Random(n)
    plain = os.open(state_dir / "plain-journal.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        for _ in range(appends):
            task = tasks[rnd.randrange(n)]
            now = datetime.now(UTC)
            task.updated_at = now
            event = Event(type="transition", task=task.id, ts=now, data={"from": "pr_open", "to": "merged"})
            before = store.journal_path.stat().st_size if store.journal_path.exists() else 0
            t = time.perf_counter()
            store.append([event], [task])
            out["append"].append((time.perf_counter() - t) * 1e6)
            line = b"x" * (store.journal_path.stat().st_size - before - 1) + b"\n"
            t = time.perf_counter()
            os.write(plain, line)
            os.fsync(plain)
            out["append_base"].append((time.perf_counter() - t) * 1e6)
    finally:
        os.close(plain)
    out["snapshot_bytes"] = store.graph_path.stat().st_size
    store.close()
    del graph, tasks

    out.update({"rss": [], "rss_base": [], "restart": [], "restart_base": [], "status": []})
    out.update({"dispatchable": [], "latest": []})
    for _ in range(restarts):
        r = _restart(state_dir, state_dir.parent / f"n{n}.sock", statuses, request)
        for key in out:
            if key in r:
                out[key] += r[key]
        out["journal_lines"] = r["journal_lines"]
    return out


def _restart(state_dir: Path, sock: Path, statuses: int, request: Any) -> dict[str, Any]:
    state_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench._state_worker", str(state_dir), str(sock)],
        cwd=BENCH_DIR.parent,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the state worker for {state_dir} exited with {proc.wait()} before reporting")
        report = json.loads(line)
        request(sock, "status")  # warm-up
        status = []
        for _ in range(statuses):
            t = time.perf_counter()
            request(sock, "status")
            status.append((time.perf_counter() - t) * 1000)
        proc.stdin.close()
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return {
        "rss": [report["rss_loaded_mb"]],
        "rss_base": [report["rss_base_mb"]],
        "restart": [report["load_s"] * 1000],
        "restart_base": [report["json_parse_s"] * 1000],
        "status": status,
        "dispatchable": [report["dispatchable_s"] * 1000],
        "latest": [report["latest_for_issue_s"] * 1e6],
        "journal_lines": report["journal_lines"],
    }


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
