"""A control-socket client for the benchmarks: ``status`` at a fixed rate until its stdin closes.

    python -m bench._status_client SOCKET RATE_PER_S

Each request is a fresh connection, as ``agentos ctl status`` makes one. Prints one JSON object on exit:
``{"latencies_ms": [...], "sent_at": [...], "errors": N, "late": N}``: each request's latency and its
``time.time()`` when sent (so the caller can split the samples by phase); ``late``: sent behind schedule.
"""

from __future__ import annotations

import json
import os
import select
import socket
import sys
import time


def ask(path: str) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(path)
        s.sendall(b'{"cmd": "status"}\n')
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("closed without an answer")
            buf += chunk
    if not json.loads(buf).get("ok"):
        raise RuntimeError(buf[:200])


def main(argv: list[str]) -> int:
    path, rate = argv[1], float(argv[2])
    period = 1.0 / rate
    latencies: list[float] = []
    sent_at: list[float] = []
    errors = late = 0
    due = time.perf_counter()
    while True:
        wait = max(0.0, due - time.perf_counter())
        readable, _, _ = select.select([sys.stdin], [], [], wait)
        if readable and not os.read(sys.stdin.fileno(), 4096):
            break
        if time.perf_counter() < due:
            continue
        t = time.perf_counter()
        if t - due > period:  # behind schedule (the answers are slow): skip the missed slots
            late += 1
            due = t
        wall = time.time()
        try:
            ask(path)
            latencies.append((time.perf_counter() - t) * 1000)
            sent_at.append(wall)
        except (OSError, ValueError, RuntimeError):
            errors += 1
        due += period
    print(json.dumps({"latencies_ms": latencies, "sent_at": sent_at, "errors": errors, "late": late}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
