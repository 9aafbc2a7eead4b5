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

__all__ = ["HANDOFF", "Tunnel", "read_head", "receive_first", "reply"]

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


async def read_head(conn: socket.socket, initial: bytes, limit: int) -> tuple[bytes, bytes]:
    """Read from ``conn`` (after ``initial``) up to the end of the request head: ``(head, what came after it)``.
    ``head`` is empty when the client closed first or sent more than ``limit`` bytes without ending its head."""
    loop = asyncio.get_running_loop()
    buf = bytearray(initial)
    while (end := buf.find(b"\r\n\r\n")) < 0:
        if len(buf) > limit:
            return b"", b""
        data = await loop.sock_recv(conn, 65536)
        if not data:
            return b"", b""
        buf += data
    return bytes(buf[: end + 4]), bytes(buf[end + 4 :])


async def reply(conn: socket.socket, status: int, reason: str, body: str) -> None:
    """A short plain-text answer, and the connection is done."""
    data = body.encode()
    head = f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {len(data)}\r\n"
    with contextlib.suppress(OSError):
        await asyncio.get_running_loop().sock_sendall(conn, (head + "Connection: close\r\n\r\n").encode() + data)


class _Half(asyncio.Protocol):
    """One side of a tunnel: what it receives goes to the other side's transport."""

    def __init__(self, tunnel: Tunnel) -> None:
        self.tunnel = tunnel
        self.transport: asyncio.Transport | None = None
        self.peer: _Half | None = None
        self.held: list[bytes] = []  # received before the tunnel started (the first bytes each way go first)
        self.eof = False
        self.closed: asyncio.Future[None] = tunnel.loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.tunnel.last = self.tunnel.loop.time()
        out = self.peer.transport if self.peer is not None and self.tunnel.started else None
        if out is None:
            self.held.append(data)
        else:
            out.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        out = self.peer.transport if self.peer is not None and self.tunnel.started else None
        if out is not None and out.can_write_eof():
            out.write_eof()
        self.tunnel.check_done()
        return True  # stay open: the other direction may still be talking

    def pause_writing(self) -> None:  # our outgoing buffer is full: stop reading what fills it
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        self.tunnel.end()


class Tunnel:
    """A client connection and an upstream connection joined: bytes copied both ways by the event loop's
    transports, with back-pressure (a side whose outgoing buffer is full pauses reading from the other),
    half-close (one side's EOF is passed on while the other side still talks), and an idle timeout."""

    def __init__(self, idle_s: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.idle_s = idle_s
        self.last = self.loop.time()
        self.client = _Half(self)
        self.upstream = _Half(self)
        self.client.peer, self.upstream.peer = self.upstream, self.client
        self.started = False
        self._done: asyncio.Future[None] = self.loop.create_future()

    async def connect(self, host: str, port: int, client: socket.socket) -> None:
        """Connect to ``host:port`` (resolving the name now), then take over the ``client`` socket."""
        await self.loop.create_connection(lambda: self.upstream, host, port)
        await self.loop.connect_accepted_socket(lambda: self.client, client)

    def check_done(self) -> None:
        if self.client.eof and self.upstream.eof:
            self.end()

    def end(self) -> None:
        if not self._done.done():
            self._done.set_result(None)

    async def run(self, *, to_upstream: bytes = b"", to_client: bytes = b"") -> bool:
        """Send the first bytes each way, then carry the traffic until it ends; close both sides (what is still
        buffered is sent first, within the idle timeout). False when it went idle. Cancelled: both cut at once."""
        idle = False
        try:
            for half, first in ((self.upstream, to_upstream), (self.client, to_client)):
                assert half.transport is not None and half.peer is not None
                for data in [first, *half.peer.held]:
                    if data:
                        half.transport.write(data)
                half.peer.held.clear()
            self.started = True
            for half in (self.client, self.upstream):
                if half.eof:
                    half.eof_received()
            while not self._done.done():
                left = self.last + self.idle_s - self.loop.time()
                if left <= 0:
                    idle = True
                    break
                await asyncio.wait([self._done], timeout=left)
            open_halves = [h for h in (self.client, self.upstream) if h.transport is not None]
            for half in open_halves:
                assert half.transport is not None
                half.transport.close()
            await asyncio.wait([h.closed for h in open_halves], timeout=self.idle_s)
        finally:
            self.abort()
        return not idle

    def abort(self) -> None:
        """Cut both connections now (a no-op for one already closed)."""
        for half in (self.client, self.upstream):
            if half.transport is not None:
                half.transport.abort()
