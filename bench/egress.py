"""Egress proxy: what the allowlist proxy adds to an agent's model traffic.

A model server stand-in (a separate process) streams 5 MB of server-sent events, as fast as it can, to a
``curl`` client (a separate process) two ways, alternating round by round:

* **direct**: curl → server (the baseline);
* **via bridge + proxy**: curl → the bridge on ``127.0.0.1:PORT`` (as inside a sandbox) → the proxy's unix
  socket → server, in a ``CONNECT`` tunnel (``curl -p``): the whole path an attempt's HTTPS traffic takes.

The proxy runs in this process's event loop, as in the daemon. The time is curl's ``time_total``. A real model
streams far slower than loopback, so this is the worst case: the proxy's cost per byte with nothing else to
hide it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys

from agentos.runners.bridge import bridge_argv
from agentos.runners.egress import EgressProxy
from bench._common import BenchResult, Context, Figure, ratio_at_most

NAME = "egress"
TITLE = "egress proxy: 5 MB of streamed model output through the allowlist proxy vs direct"

STREAM_BYTES = 5 * 1024 * 1024
EVENT_BYTES = 1024  # one server-sent event: a model's streamed delta with its JSON envelope
TARGET_RATIO = 1.05

_SERVER = r"""
import asyncio, sys
HEAD = b'data: {"type":"content_block_delta","delta":{"type":"text_delta","text":"'
EVENT = HEAD + b"x" * (EVENT_BYTES - len(HEAD) - 5) + b'"}}' + b"\n\n"
async def handle(reader, writer):
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n")
    sent = 0
    while sent < STREAM_BYTES:
        writer.write(EVENT)
        sent += len(EVENT)
        await writer.drain()
    writer.close()
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()
asyncio.run(main())
"""


def run(ctx: Context) -> BenchResult:
    res = BenchResult(NAME, TITLE)
    asyncio.run(_run(ctx, res))
    return res


async def _run(ctx: Context, res: BenchResult) -> None:
    rounds = 7 if ctx.quick else 21
    res.params = {"stream_mb": STREAM_BYTES / 2**20, "event_bytes": EVENT_BYTES, "rounds": rounds}
    code = f"EVENT_BYTES = {EVENT_BYTES}\nSTREAM_BYTES = {STREAM_BYTES}\n{_SERVER}"
    server = await asyncio.create_subprocess_exec(sys.executable, "-c", code, stdout=subprocess.PIPE)
    assert server.stdout is not None
    port = int(await server.stdout.readline())
    url = f"http://127.0.0.1:{port}/v1/messages"
    proxy = EgressProxy(ctx.scratch("egress") / "sockets")
    session = await proxy.session("bench", [f"127.0.0.1:{port}"])
    bridge_port = _free_port()
    bridge = await asyncio.create_subprocess_exec(
        *bridge_argv(str(session.socket_path), bridge_port), "sleep", "3600", start_new_session=True
    )
    try:
        await _wait_listening(bridge_port)
        ways = {
            "direct": ["curl", url],
            "via bridge + proxy": ["curl", "-p", "-x", f"http://127.0.0.1:{bridge_port}", url],
        }
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in ways}
        for _ in range(rounds + 1):  # the first round warms up and is dropped
            for name, argv in ways.items():
                times[name].append(await _curl(argv))
    finally:
        os.killpg(bridge.pid, signal.SIGKILL)
        await bridge.wait()
        server.kill()
        await server.wait()
        await proxy.aclose()
    direct = times["direct"][1:]
    proxied = times["via bridge + proxy"][1:]
    base = "direct (curl → server)"
    target = [ratio_at_most(TARGET_RATIO, label=f"≤ {TARGET_RATIO:g}× direct")]
    rows = [
        ("stream: first byte → last", lambda t: t[0] - t[1], target, ""),
        ("whole request", lambda t: t[0], [], "breakdown"),
        ("set-up: request → first byte", lambda t: t[1], [], "breakdown"),
    ]
    for label, pick, targets, group in rows:
        res.add(
            Figure(
                f"5 MB via bridge + proxy, {label}",
                "ms",
                [pick(t) * 1000 for t in proxied],
                [pick(t) * 1000 for t in direct],
                base,
                targets,
                group=group,
            )
        )
    res.notes.append(
        f"{STREAM_BYTES >> 20} MB as {EVENT_BYTES}-byte server-sent events at loopback speed, timed by curl "
        "(time_starttransfer, time_total); rounds alternate the two paths. Set-up through the proxy is the "
        "CONNECT exchange: the bridge hands the connection over, the proxy checks the host and connects. A "
        "model streams far slower than loopback, so the share added in a real attempt is smaller."
    )


async def _curl(argv: list[str]) -> tuple[float, float]:
    """curl's ``(time_total, time_starttransfer)`` in seconds; an error unless all the bytes came."""
    proc = await asyncio.create_subprocess_exec(
        argv[0],
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{time_total} %{time_starttransfer} %{size_download}",
        *argv[1:],
        stdout=subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    total, first, size = out.decode().split()
    if proc.returncode != 0 or int(size) < STREAM_BYTES:
        raise RuntimeError(f"{' '.join(argv)}: exit {proc.returncode}, {size} bytes")
    return float(total), float(first)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def _wait_listening(port: int) -> None:
    async with asyncio.timeout(30):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.02)
                continue
            writer.close()
            return
