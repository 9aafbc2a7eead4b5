"""Throughput: N trivial issues across 5 repositories with ``max_parallel_workers: 8``.

All N issues (round-robin over the repos, each agent run adds one new file, so no two tasks conflict)
are filed ready before the in-process daemon starts; the clock runs from the daemon's start to the last
merge. Every other setting is the default (``max_parallel_per_repo: 2``, dispatch every 60 s and the PR
monitor every 5 min, both also poked on events), so stalls that only a timer would end show up.

Baseline (same run): the same git work per task by ``baseline.sh`` with 8 parallel jobs, clone
operations serialised per clone and merges per repo (flock), as agentos serialises them.
"""

from __future__ import annotations

import asyncio
import resource
import subprocess
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench._common import (
    BenchResult,
    Context,
    Figure,
    LagSampler,
    at_most,
    baseline_env,
    configure_logging,
    make_bare_clone,
    make_user_repo,
    stat_figures,
    write_agent,
    write_baseline_script,
    write_config,
)
from bench._daemon import start_daemon, stop_daemon

NAME = "throughput"
TITLE = "throughput: trivial issues over 5 repos, max_parallel_workers 8"

REPOS = 5
WORKERS = 8


def run(ctx: Context) -> BenchResult:
    res = BenchResult(NAME, TITLE)
    n = 50 if ctx.quick else 500
    deadline, stall_s = (300.0, 20.0) if ctx.quick else (1800.0, 120.0)
    root = ctx.scratch(NAME)
    res.params = {"issues": n, "repos": REPOS, "max_parallel_workers": WORKERS, "stall_s": stall_s}
    configure_logging(ctx.log_dir / f"{NAME}.log")

    ch0 = _cpu_children()
    base_wall = _baseline(root / "baseline", n)
    base_cpu = _cpu_children() - ch0
    outcome = asyncio.run(_agentos(root / "agentos", n, deadline, stall_s))

    merged = outcome["merged"]
    wall = outcome["wall"]
    rate = merged / wall * 60 if wall > 0 else 0.0
    base_rate = n / base_wall * 60
    res.add(
        Figure(
            "tasks merged per minute",
            "tasks/min",
            [rate],
            [base_rate],
            f"baseline.sh ×{WORKERS} jobs",
            single=True,
            note="ratio = agentos / baseline (higher is better)",
        )
    )
    res.add(Figure("wall time (all merged, or stopped)", "s", [wall], [base_wall], "baseline.sh", single=True))
    res.add(Figure("tasks merged", "count", [float(merged)], [float(n)], "filed", single=True))
    res.add(
        Figure(
            "CPU per task: agentos process",
            "ms",
            [outcome["cpu_self"] / max(merged, 1) * 1000],
            single=True,
        )
    )
    res.add(
        Figure(
            "CPU per task: child processes",
            "ms",
            [outcome["cpu_children"] / max(merged, 1) * 1000],
            [base_cpu / n * 1000],
            "baseline children",
            single=True,
        )
    )
    for fig in stat_figures("event-loop lag during the run", "ms", outcome["lag"], targets={"p99": at_most(20)}):
        res.add(fig)
    res.add(Figure("longest wait for the next merge", "s", [outcome["max_gap"]], single=True))
    if outcome["statuses"]:
        res.notes.append("task statuses at the end: " + ", ".join(f"{k} {v}" for k, v in outcome["statuses"].items()))
    if outcome["stalled"]:
        res.notes.append(f"STALLED: no task finished for {stall_s:g}s; stopped with {merged} of {n} merged")
    elif merged < n:
        res.notes.append(f"only {merged} of {n} tasks merged before the deadline of {deadline:g}s")
    res.extra["merges_per_10s"] = outcome["buckets"]
    res.extra["spawns_per_task"] = outcome["spawns"]
    return res


def _cpu_children() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _cpu_self() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _baseline(root: Path, n: int) -> float:
    clones = []
    for k in range(REPOS):
        user = make_user_repo(root / f"repo{k}")
        clones.append(make_bare_clone(user, root / f"clone{k}"))
    script = write_baseline_script(root / "baseline.sh")
    env = baseline_env()

    def one(i: int) -> None:
        clone = clones[i % REPOS]
        subprocess.run(
            [str(script), str(clone), str(root / f"wt{i % REPOS}"), f"b{i}", "1"],
            env=env,
            check=True,
            capture_output=True,
        )

    started = time.perf_counter()
    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(one, range(n)))
    return time.perf_counter() - started


async def _agentos(root: Path, n: int, deadline: float, stall_s: float) -> dict[str, Any]:
    from agentos.config import load_config
    from agentos.forge.base import READY_LABEL
    from agentos.forge.local import LocalForge

    repos = [(f"r{k}", make_user_repo(root / f"repo{k}", f"r{k}")) for k in range(REPOS)]
    times = root / "agent-times"
    agent = write_agent(root / "agent.sh", times)
    config = write_config(
        root / "agentos.yaml",
        state_dir=root / "state",
        repos=repos,
        agent_argv=["/bin/sh", str(agent), "{task_id}"],
        max_parallel_workers=WORKERS,
    )
    cfg, _ = load_config(config)
    forge = LocalForge(cfg.state_path, {r.name: r for r in cfg.repos})
    for i in range(n):
        await forge.new_issue(f"r{i % REPOS}", f"Bench change {i}", "Make a one-line change.", [READY_LABEL])

    cpu0, ch0 = _cpu_self(), _cpu_children()
    t0 = time.perf_counter()
    daemon, runner, probe = await start_daemon(config, root / "agentos.sock")
    lag = LagSampler()
    lag.start()
    try:
        with probe.installed():
            end = time.monotonic() + deadline
            graph = daemon.rt.graph
            done, progress_at, stalled = 0, time.monotonic(), False
            while done < n and time.monotonic() < end and not runner.done():
                await asyncio.sleep(0.05)
                now_done = sum(1 for t in graph if t.is_terminal)
                if now_done > done:
                    done, progress_at = now_done, time.monotonic()
                elif time.monotonic() - progress_at > stall_s:
                    stalled = True
                    break
            t_end = time.perf_counter()
            cpu_self, cpu_children = _cpu_self() - cpu0, _cpu_children() - ch0
            spawns = probe.spawns_between(t0, t_end)
    finally:
        samples = await lag.stop()
        statuses = Counter(t.status.value for t in daemon.rt.graph)
        await stop_daemon(daemon, runner)

    merged_at = sorted(t["merged"] for t in probe.times.values() if "merged" in t)
    wall = (merged_at[-1] - t0) if merged_at and len(merged_at) == n else (t_end - t0)
    gaps = [b - a for a, b in zip([t0, *merged_at], [*merged_at, t_end], strict=False)]
    if len(merged_at) == n:
        gaps.pop()  # all merged: the time after the last merge is not a wait
    buckets: Counter[int] = Counter(int((m - t0) // 10) for m in merged_at)
    return {
        "merged": len(merged_at),
        "stalled": stalled,
        "wall": wall,
        "cpu_self": cpu_self,
        "cpu_children": cpu_children,
        "lag": samples,
        "max_gap": max(gaps, default=0.0),
        "statuses": dict(statuses),
        "buckets": [buckets.get(i, 0) for i in range(max(buckets, default=-1) + 1)],
        "spawns": {k: round(v / max(len(merged_at), 1), 1) for k, v in spawns.most_common()},
    }
