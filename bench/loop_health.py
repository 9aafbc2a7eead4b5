"""Event-loop health: loop lag while fake agents stream output and a client asks ``status`` 20×/s.

In this process: a :class:`~agentos.runtime.Runtime` over a real store holding 1,000 tasks, a
:class:`~agentos.control.controller.Controller` served by a real
:class:`~agentos.control.socket.ControlServer`, and a lag sampler (a 10 ms sleep, how late it wakes).
A separate process (``bench._status_client``) asks ``status`` over the socket 20 times per second.

Rounds alternate two phases, the client asking throughout. Baseline phase: N producers
(``yes … | head -c``) write their output to files by themselves, so the machine carries the same CPU load
while the loop only samples. Measured phase: N fake agents produce the same output and it streams through
:func:`agentos.agents.runner.run_process` (agents start 5 ms apart). On a small machine the producers
compete with the loop for CPU, and the baseline phase shows how much lag that alone causes. An idle
phase (no producers) is reported in a note.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench._common import (
    BENCH_DIR,
    BenchResult,
    Context,
    Figure,
    LagSampler,
    at_most,
    configure_logging,
    percentile,
    stat_figures,
)

NAME = "loop_health"
TITLE = "event-loop health: agents streaming output + `status` 20×/s on the socket"

LINE = '{"type":"assistant","message":{"content":[{"type":"text","text":"working on the upload retry"}]}}'
TARGET_P99_MS = 20.0
STATUS_RATE = 20.0
STAGGER_S = 0.005
"""Agents start 5 ms apart, as the executor's worktree preparation spreads them; a burst of spawns in one
loop iteration would measure fork/exec (synchronous in asyncio), not output streaming."""


def run(ctx: Context) -> BenchResult:
    res = BenchResult(NAME, TITLE)
    asyncio.run(_run(ctx, res))
    return res


def _agent_cmd(nbytes: int) -> str:
    return f"yes '{LINE}' | head -c {nbytes}"


async def _client(sock: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench._status_client",
        str(sock),
        str(STATUS_RATE),
        cwd=BENCH_DIR.parent,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )


async def _finish(client: asyncio.subprocess.Process) -> dict[str, Any]:
    assert client.stdin is not None
    client.stdin.close()
    out, _ = await client.communicate()
    result: dict[str, Any] = json.loads(out)
    return result


async def _run(ctx: Context, res: BenchResult) -> None:
    from agentos.agents.runner import RunSpec, run_process
    from agentos.config import Config
    from agentos.control.socket import ControlServer
    from agentos.daemon_parts import build_controller
    from agentos.forge.local import LocalForge
    from agentos.runtime import Runtime
    from agentos.store import Store
    from bench._tasks import make_tasks

    agents, mb, rounds = (10, 1, 10) if ctx.quick else (50, 5, 3)
    idle_s = 3.0 if ctx.quick else 5.0
    nbytes = mb * 1024 * 1024
    root = ctx.scratch(NAME)
    configure_logging(ctx.log_dir / f"{NAME}.log")
    res.params = {
        "agents": agents,
        "mb_each": mb,
        "rounds": rounds,
        "stagger_ms": STAGGER_S * 1000,
        "status_per_s": STATUS_RATE,
        "graph_tasks": 1000,
    }

    config = Config.model_validate({"state_dir": str(root / "state")})
    store = Store(config.state_path)
    store.lock()
    graph, state = store.load()
    for task in make_tasks(1000):
        graph.put(task)
    rt = Runtime(config, None, store, graph, state, LocalForge(config.state_path, {}), lambda r: ("", {}))
    server = ControlServer(build_controller(rt), root / "agentos.sock")
    await server.start()
    lag = LagSampler()
    lag.start()
    phases: dict[str, list[tuple[float, float]]] = {"idle": [], "floor": [], "load": []}
    lags: dict[str, list[float]] = {"idle": [], "floor": [], "load": []}
    walls: list[float] = []
    floors: list[float] = []
    outcomes = []
    logs = root / "logs"
    try:
        client = await _client(server.path)
        await asyncio.sleep(0.5)

        async def phase(name: str, work: Any) -> float:
            lag.take()
            start, t0 = time.time(), time.perf_counter()
            await work
            elapsed = time.perf_counter() - t0
            phases[name].append((start, time.time()))
            lags[name] += lag.take()
            return elapsed

        await phase("idle", asyncio.sleep(idle_s))
        for r in range(rounds):
            # the same producers writing to files by themselves: the machine's CPU contention, no draining
            floors.append(await phase("floor", asyncio.to_thread(_floor, root / "floor", agents, nbytes)))
            specs = [
                RunSpec(
                    argv=["/bin/sh", "-c", _agent_cmd(nbytes)],
                    cwd=root,
                    env={"PATH": os.environ.get("PATH", os.defpath)},
                    stdin=None,
                    log_path=logs / f"agent-{r}-{i}.log",
                    idle_timeout_s=120,
                    max_runtime_s=600,
                    kill_grace_s=2,
                    max_log_bytes=20 * 1024 * 1024,
                )
                for i in range(agents)
            ]
            runs = [_staggered(run_process, spec, i * STAGGER_S) for i, spec in enumerate(specs)]
            results: list[Any] = []
            walls.append(await phase("load", _collect(results, runs)))
            outcomes += results
            await asyncio.to_thread(_rm_logs, logs)
        status = await _finish(client)
    finally:
        await lag.stop()
        await server.stop()
        store.close()

    short = [o for o in outcomes if o.log_bytes != nbytes or o.exit_code != 0]
    if short:
        res.notes.append(f"{len(short)} agents ended early or short: {short[0]}")
    total_mb = agents * mb
    lat = {name: _within(status, windows) for name, windows in phases.items()}

    base = "same producers, loop not reading"
    for fig in stat_figures(
        "loop lag", "ms", lags["load"], lags["floor"], base, targets={"p99": at_most(TARGET_P99_MS)}
    ):
        res.add(fig)
    for fig in stat_figures(
        "`status` latency", "ms", lat["load"], lat["floor"], base, stats=(("p50", "median"), ("p99", "p99"))
    ):
        res.add(fig)
    load_time = sum(b - a for a, b in phases["load"])
    floor_time = sum(b - a for a, b in phases["floor"])
    res.add(
        Figure(
            "`status` answered per second",
            "req/s",
            [len(lat["load"]) / load_time],
            [len(lat["floor"]) / floor_time],
            base,
            single=True,
            note=f"asked {STATUS_RATE:g}/s; errors {status['errors']}, late {status['late']} (whole run)",
        )
    )
    res.add(
        Figure(
            "agent output drained",
            "MB/s",
            [total_mb / w for w in walls],
            [total_mb / f for f in floors],
            "shell writing the same to files",
            note="ratio = agentos / floor (higher is better)",
        )
    )
    res.add(Figure("wall time, one round of agents", "s", walls, floors, "shell to files"))
    idle_lag, idle_lat = lags["idle"], lat["idle"]
    res.notes.append(
        f"idle loop (no agents): lag p50 {percentile(idle_lag, 50):.2f} / p99 {percentile(idle_lag, 99):.2f} ms, "
        f"status p50 {percentile(idle_lat, 50):.2f} / p99 {percentile(idle_lat, 99):.2f} ms"
    )
    res.extra["lag_ms"] = {k: [round(v, 3) for v in vs] for k, vs in lags.items()}


async def _collect(out: list[Any], runs: list[Any]) -> None:
    out += await asyncio.gather(*runs)


def _within(status: dict[str, Any], windows: list[tuple[float, float]]) -> list[float]:
    """The client's latencies for requests sent inside the given time windows."""
    return [
        ms
        for ms, at in zip(status["latencies_ms"], status["sent_at"], strict=True)
        if any(a <= at <= b for a, b in windows)
    ]


async def _staggered(run: Any, spec: Any, delay: float) -> Any:
    await asyncio.sleep(delay)
    return await run(spec)


def _rm_logs(logs: Path) -> None:
    for path in logs.glob("*.log"):
        path.unlink()


def _floor(root: Path, agents: int, nbytes: int) -> float:
    """The same output generated and written to files by the shell, all at once: the I/O floor."""
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    procs = []
    for i in range(agents):
        procs.append(subprocess.Popen(["/bin/sh", "-c", f"{_agent_cmd(nbytes)} > {root / f'out-{i}.log'}"]))
        time.sleep(STAGGER_S)
    for p in procs:
        p.wait()
    elapsed = time.perf_counter() - t0
    _rm_logs(root)
    return elapsed
