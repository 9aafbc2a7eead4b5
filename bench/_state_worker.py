"""A daemon-like process for the state benchmark: restart from a state dir, report, serve ``status``.

    python -m bench._state_worker STATE_DIR SOCKET

Imports what the daemon imports, measures RSS, loads the store (snapshot + journal replay, with the lock
held, as ``agentos run`` does), measures RSS again and a few graph scans, then serves the control socket
with a real Controller over a Runtime. Prints one JSON line when ready and exits when stdin closes.
"""

from __future__ import annotations

import asyncio
import gc
import json
import random
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import agentos.daemon  # noqa: F401  # the daemon's import set, so the RSS baseline is a daemon's
from agentos.config import Config
from agentos.control.socket import ControlServer
from agentos.daemon_parts import build_controller
from agentos.forge.local import LocalForge
from agentos.runtime import Runtime
from agentos.store import Store
from bench._common import rss_mb


def measure(state_dir: Path) -> tuple[dict[str, Any], Store, Any, Any]:
    gc.collect()
    rss_base = rss_mb()
    store = Store(state_dir)
    t = time.perf_counter()
    store.lock()
    graph, state = store.load()
    load_s = time.perf_counter() - t
    gc.collect()
    rss_loaded = rss_mb()
    now = datetime.now(UTC)
    t = time.perf_counter()
    graph.dispatchable(now)
    dispatchable_s = time.perf_counter() - t
    tasks = list(graph)
    sample = random.Random(1).sample(tasks, min(50, len(tasks)))
    t = time.perf_counter()
    for task in sample:
        graph.latest_for_issue(task.repo, task.issue)
    latest_s = (time.perf_counter() - t) / max(len(sample), 1)
    parse_s = 0.0
    if store.graph_path.is_file():
        data = store.graph_path.read_bytes()
        t = time.perf_counter()
        json.loads(data)
        parse_s = time.perf_counter() - t
        del data
    report = {
        "tasks": len(graph),
        "rss_base_mb": rss_base,
        "rss_loaded_mb": rss_loaded,
        "load_s": load_s,
        "json_parse_s": parse_s,
        "dispatchable_s": dispatchable_s,
        "latest_for_issue_s": latest_s,
        "snapshot_bytes": store.graph_path.stat().st_size if store.graph_path.is_file() else 0,
        "journal_lines": store.journal_lines,
    }
    return report, store, graph, state


async def serve(state_dir: Path, socket: Path) -> None:
    report, store, graph, state = measure(state_dir)
    config = Config.model_validate({"state_dir": str(state_dir)})
    rt = Runtime(config, None, store, graph, state, LocalForge(state_dir, {}), lambda r: ("", {}))
    server = ControlServer(build_controller(rt), socket)
    await server.start()
    print(json.dumps(report), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes our stdin
    await server.stop()
    store.close()


if __name__ == "__main__":
    from agentos import logging as alog

    alog.configure("warning", stream=sys.stderr, json=True)  # stdout carries the report
    asyncio.run(serve(Path(sys.argv[1]), Path(sys.argv[2])))
