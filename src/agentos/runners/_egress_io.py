"""The egress proxy's socket plumbing: accepting on its unix socket (a plain client, or a TCP connection handed
over by the bridge with ``SCM_RIGHTS``), and copying a tunnel's bytes both ways.

Why a handed-over socket: the bridge inside the sandbox could copy every byte between the agent's TCP
connection and the unix socket, but that is a second Python process on the data path. Instead it accepts the
agent's connection and sends its descriptor over the unix socket (one ``\\0`` byte carrying the descriptor); the
proxy then reads and writes the agent's socket itself. A descriptor works across network namespaces: the
sandbox gains no network by it, the proxy just serves the connection the agent opened to its own loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

import structlog

__all__ = ["HANDOFF", "open_streams", "pipe_both_ways", "receive_first"]

log = structlog.get_logger(__name__)

HANDOFF = b"\0"
"""What the bridge sends with the descriptor of the agent's connection (an HTTP request never starts so)."""


async def receive_first(conn: socket.socket, limit: int, timeout_s: float) -> tuple[bytes, socket.socket | None]:
    """Wait for the first message on a new unix connection: its bytes and, when it is the bridge's hand-over,
    the agent's TCP socket (``conn`` is then done with). A hand-over that is not exactly one stream socket is
    refused (every descriptor received is closed); it reads as a client that sent nothing."""
    loop = asyncio.get_running_loop()
    readable = loop.create_future()

    def ready() -> None:
        if not readable.done():
            readable.set_result(None)

    loop.add_reader(conn.fileno(), ready)
    try:
        async with asyncio.timeout(timeout_s):
            await readable
    finally:
        loop.remove_reader(conn.fileno())
    data, fds, _flags, _addr = socket.recv_fds(conn, limit, 4)
    if not fds:
        return data, None
    handed: socket.socket | None = None
    if data == HANDOFF and len(fds) == 1:
        with contextlib.suppress(OSError):
            handed = socket.socket(fileno=fds[0])
            if handed.type != socket.SOCK_STREAM:
                handed.close()
                handed = None
            fds = fds[1:]
    for fd in fds:
        with contextlib.suppress(OSError):
            socket.close(fd)
    return b"", handed


async def open_streams(
    sock: socket.socket, initial: bytes, limit: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """asyncio streams over an accepted ``sock``, with ``initial`` (bytes already read from it) first."""
    loop = asyncio.get_running_loop()
    sock.setblocking(False)
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    if initial:
        reader.feed_data(initial)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    transport, _ = await loop.connect_accepted_socket(lambda: protocol, sock)
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


async def pipe_both_ways(
    client_r: asyncio.StreamReader,
    client_w: asyncio.StreamWriter,
    up_r: asyncio.StreamReader,
    up_w: asyncio.StreamWriter,
    *,
    idle_s: float,
    chunk: int,
) -> None:
    """Copy bytes both ways until both sides have sent EOF, or no byte moved either way for ``idle_s``.

    One side's EOF is passed on as a half-close (``write_eof``) while the other direction keeps going. Each
    write waits for the transport to drain, so a slow reader slows its writer down instead of filling memory.
    """
    loop = asyncio.get_running_loop()
    last = loop.time()

    async def one_way(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        nonlocal last
        while data := await src.read(chunk):
            last = loop.time()
            dst.write(data)
            await dst.drain()
        if dst.can_write_eof():
            dst.write_eof()

    async def idle_watch() -> None:
        while (left := last + idle_s - loop.time()) > 0:
            await asyncio.sleep(left)

    copies = {asyncio.create_task(one_way(client_r, up_w)), asyncio.create_task(one_way(up_r, client_w))}
    watch = asyncio.create_task(idle_watch())
    pending: set[asyncio.Task[None]] = {*copies, watch}
    try:
        while copies & pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if watch in done:
                log.info("egress_tunnel_idle", idle_s=idle_s)
                return
            for task in done:
                task.result()  # a copy that failed (reset, broken pipe) ends the tunnel
    finally:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
