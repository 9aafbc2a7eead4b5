"""The egress allowlist proxy, on loopback only: what an attempt can reach through its unix socket, what it
cannot, and what is reported about the attempts that failed."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from agentos.runners.egress import (
    MAX_DISTINCT_DENIALS,
    OTHER_HOSTS,
    Allowlist,
    EgressProxy,
    EgressSession,
    default_allow,
    parse_host_port,
)


@dataclass
class EchoServer:
    """A TLS-less TCP server on 127.0.0.1 that echoes what it reads and closes after the client's EOF; it counts
    the connections it accepts."""

    accepts: int = 0
    port: int = 0
    server: asyncio.Server | None = None
    received: bytearray = field(default_factory=bytearray)

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._echo, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _echo(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepts += 1
        while data := await reader.read(65536):
            self.received += data
            writer.write(data)
            await writer.drain()
        writer.close()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


@pytest.fixture
async def echo() -> AsyncIterator[EchoServer]:
    server = EchoServer()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def other() -> AsyncIterator[EchoServer]:
    """A second server on 127.0.0.1 that no test allows."""
    server = EchoServer()
    await server.start()
    yield server
    await server.stop()


@dataclass
class Denials:
    calls: list[tuple[str, str]] = field(default_factory=list)

    def __call__(self, attempt_id: str, host_port: str) -> None:
        self.calls.append((attempt_id, host_port))


@pytest.fixture
def denials() -> Denials:
    return Denials()


@pytest.fixture
async def proxy(tmp_path: Path, denials: Denials) -> AsyncIterator[EgressProxy]:
    egress = EgressProxy(tmp_path / "egress", on_denied=denials, idle_timeout_s=60)
    yield egress
    await egress.aclose()


async def connect(session: EgressSession, target: str) -> tuple[bytes, asyncio.StreamReader, asyncio.StreamWriter]:
    """Send ``CONNECT target`` on the session's socket; the response head and the open stream."""
    reader, writer = await asyncio.open_unix_connection(str(session.socket_path))
    writer.write(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    return head, reader, writer


class TestConnect:
    async def test_an_allowed_connect_tunnels_bytes_both_ways(self, proxy: EgressProxy, echo: EchoServer) -> None:
        """A CONNECT to a listed host:port answers 200, then every byte goes through both ways; the client's EOF
        reaches the server (half-close) and the server's answer still comes back after it."""
        session = await proxy.session("task-1/1", [f"127.0.0.1:{echo.port}"])
        head, reader, writer = await connect(session, f"127.0.0.1:{echo.port}")
        assert head.startswith(b"HTTP/1.1 200")
        payload = bytes(range(256)) * 4096  # 1 MiB: more than any buffer, so back-pressure is exercised
        writer.write(payload)
        writer.write_eof()
        assert await reader.read() == payload
        assert bytes(echo.received) == payload
        assert session.denied == {}
        writer.close()

    async def test_bytes_sent_right_after_connect_arrive_after_the_answer(
        self, proxy: EgressProxy, echo: EchoServer
    ) -> None:
        """A client that does not wait for ``200`` (its first bytes in the same packet as ``CONNECT``) loses
        nothing: the server gets them, and the client reads the answer head before the echo."""
        session = await proxy.session("a", [f"127.0.0.1:{echo.port}"])
        reader, writer = await asyncio.open_unix_connection(str(session.socket_path))
        writer.write(f"CONNECT 127.0.0.1:{echo.port} HTTP/1.1\r\n\r\nearly bytes".encode())
        writer.write_eof()
        answer = await reader.read()
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"\r\n\r\nearly bytes")
        writer.close()

    async def test_a_client_that_stops_reading_slows_the_server_down(self, proxy: EgressProxy) -> None:
        """Back-pressure: while the client reads nothing, the server cannot push its 64 MB into the proxy's
        memory; once the client reads, every byte arrives."""
        total = 64 << 20
        finished = asyncio.Event()

        async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            block = b"x" * (1 << 20)
            for _ in range(total // len(block)):
                writer.write(block)
                await writer.drain()
            finished.set()
            writer.close()

        server = await asyncio.start_server(flood, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            session = await proxy.session("a", [f"127.0.0.1:{port}"])
            head, reader, writer = await connect(session, f"127.0.0.1:{port}")
            assert head.startswith(b"HTTP/1.1 200")
            with pytest.raises(TimeoutError):  # on a slow machine this passes trivially; it never flakes
                await asyncio.wait_for(finished.wait(), timeout=2)
            received = 0
            while data := await reader.read(1 << 20):
                received += len(data)
            assert received == total and finished.is_set()
            writer.close()
        finally:
            server.close()

    async def test_a_host_not_listed_is_refused_and_never_contacted(
        self, proxy: EgressProxy, echo: EchoServer, other: EchoServer, denials: Denials
    ) -> None:
        """A CONNECT to a server that is not on the list gets 403; that server sees no connection at all."""
        session = await proxy.session("task-1/1", [f"127.0.0.1:{echo.port}"])
        head, reader, writer = await connect(session, f"127.0.0.1:{other.port}")
        assert head.startswith(b"HTTP/1.1 403")
        assert b"not on this attempt's allowlist" in await reader.read()
        writer.close()
        assert other.accepts == 0
        assert denials.calls == [("task-1/1", f"127.0.0.1:{other.port}")]

    async def test_denials_are_counted_per_attempt_and_summarised(
        self, proxy: EgressProxy, echo: EchoServer, other: EchoServer, denials: Denials
    ) -> None:
        """The first denial of a host is reported through the callback (the journal's ``egress_denied``), every
        one is counted, and the attempt's summary reads ``blocked: host:port ×N`` for the PR body and the
        escalation note."""
        session = await proxy.session("task-7/2", [f"127.0.0.1:{echo.port}"])
        assert session.summary() == ""
        for _ in range(2):
            head, _, writer = await connect(session, f"127.0.0.1:{other.port}")
            assert head.startswith(b"HTTP/1.1 403")
            writer.close()
        assert session.summary() == f"blocked: 127.0.0.1:{other.port} ×2"
        assert session.denied == {f"127.0.0.1:{other.port}": 2}
        assert denials.calls == [("task-7/2", f"127.0.0.1:{other.port}")]

    async def test_a_name_does_not_unlock_its_address(self, proxy: EgressProxy, echo: EchoServer) -> None:
        """``localhost`` on the list does not allow ``127.0.0.1``: an IP literal passes only when it is listed."""
        session = await proxy.session("a", [f"localhost:{echo.port}"])
        head, _, writer = await connect(session, f"127.0.0.1:{echo.port}")
        assert head.startswith(b"HTTP/1.1 403")
        writer.close()
        assert echo.accepts == 0

    async def test_an_allowed_server_that_is_down_gives_502_not_a_denial(self, proxy: EgressProxy) -> None:
        """Reaching a listed host that does not answer is a gateway error, not a blocked attempt."""
        session = await proxy.session("a", ["127.0.0.1:1"])
        head, _, writer = await connect(session, "127.0.0.1:1")
        assert head.startswith(b"HTTP/1.1 502")
        writer.close()
        assert session.summary() == ""

    async def test_an_idle_tunnel_is_cut(self, tmp_path: Path, echo: EchoServer) -> None:
        """A tunnel where no byte moves for the idle timeout is closed (the client reads EOF)."""
        egress = EgressProxy(tmp_path / "egress", idle_timeout_s=0.2)
        session = await egress.session("a", [f"127.0.0.1:{echo.port}"])
        head, reader, writer = await connect(session, f"127.0.0.1:{echo.port}")
        assert head.startswith(b"HTTP/1.1 200")
        assert await reader.read() == b""
        writer.close()
        await egress.aclose()

    async def test_closing_the_session_cuts_open_tunnels_and_removes_the_socket(
        self, proxy: EgressProxy, echo: EchoServer
    ) -> None:
        """When the attempt ends, its tunnels end with it and its socket is gone."""
        session = await proxy.session("a", [f"127.0.0.1:{echo.port}"])
        _, reader, writer = await connect(session, f"127.0.0.1:{echo.port}")
        await session.close()
        assert await reader.read() == b""
        assert not session.socket_path.exists()
        writer.close()
        with pytest.raises(OSError):
            await asyncio.open_unix_connection(str(session.socket_path))


class TestPlainHttp:
    @pytest.fixture
    async def web_server(self) -> AsyncIterator[tuple[int, list[str]]]:
        seen: list[str] = []

        async def hello(request: web.Request) -> web.Response:
            seen.append(request.path_qs)
            return web.Response(text="hello through the proxy")

        app = web.Application()
        app.router.add_get("/{tail:.*}", hello)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        yield port, seen
        await runner.cleanup()

    async def get(self, session: EgressSession, target: str) -> bytes:
        reader, writer = await asyncio.open_unix_connection(str(session.socket_path))
        writer.write(f"GET {target} HTTP/1.1\r\nHost: x\r\nProxy-Connection: keep-alive\r\n\r\n".encode())
        response = await reader.read()
        writer.close()
        return response

    async def test_an_absolute_uri_get_to_an_allowed_server_works(
        self, proxy: EgressProxy, web_server: tuple[int, list[str]]
    ) -> None:
        """``GET http://host:port/path`` reaches the server in origin form and its answer streams back."""
        port, seen = web_server
        session = await proxy.session("a", [f"127.0.0.1:{port}"])
        response = await self.get(session, f"http://127.0.0.1:{port}/v1/models?x=1")
        assert response.startswith(b"HTTP/1.1 200")
        assert response.endswith(b"hello through the proxy")
        assert seen == ["/v1/models?x=1"]

    @pytest.mark.parametrize(
        "target",
        [
            pytest.param("http://127.0.0.1:{port}/", id="host-not-listed"),
            pytest.param("https://127.0.0.1:{port}/", id="https-without-connect"),
            pytest.param("/v1/models", id="origin-form"),
        ],
    )
    async def test_other_requests_are_refused(
        self, proxy: EgressProxy, web_server: tuple[int, list[str]], target: str
    ) -> None:
        """A request the proxy will not carry gets 403 and is counted as blocked."""
        port, seen = web_server
        session = await proxy.session("a", ["127.0.0.1:1"])
        response = await self.get(session, target.format(port=port))
        assert response.startswith(b"HTTP/1.1 403")
        assert seen == []
        assert sum(session.denied.values()) == 1


class TestAllowlist:
    @pytest.mark.parametrize(
        ("rules", "host", "port", "allowed"),
        [
            (["api.anthropic.com:443"], "API.Anthropic.COM", 443, True),
            (["api.anthropic.com:443"], "api.anthropic.com.", 443, True),
            (["api.anthropic.com:443"], "api.anthropic.com", 80, False),
            (["api.anthropic.com:443"], "evil.api.anthropic.com", 443, False),
            (["*.example.com:443"], "a.b.example.com", 443, True),
            (["*.example.com:443"], "example.com", 443, False),
            (["*.example.com:443"], "badexample.com", 443, False),
            (["127.0.0.1:8080"], "127.0.0.1", 8080, True),
            (["localhost:8080"], "127.0.0.1", 8080, False),
            (["[::1]:8080"], "::1", 8080, True),
            ([], "api.anthropic.com", 443, False),
            (["example.com:443"], "exa mple.com", 443, False),
        ],
    )
    def test_rules(self, rules: list[str], host: str, port: int, allowed: bool) -> None:
        assert Allowlist(rules).allows(host, port) is allowed

    @pytest.mark.parametrize("entry", ["example.com", "example.com:0", "example.com:http", "::1:80", "*.1.2.3.4:80"])
    def test_a_malformed_entry_is_an_error_naming_it(self, entry: str) -> None:
        with pytest.raises(ValueError, match=r"1\.2\.3\.4|example|::1"):
            Allowlist([entry])

    def test_parse_host_port(self) -> None:
        assert parse_host_port("Example.COM:443") == ("example.com", 443)
        assert parse_host_port("[::1]:80") == ("::1", 80)


class TestDefaultAllow:
    def test_each_kind_gets_its_api_host(self) -> None:
        assert default_allow("claude", {}) == ["api.anthropic.com:443"]
        assert "api.openai.com:443" in default_allow("codex", {})
        assert "generativelanguage.googleapis.com:443" in default_allow("gemini", {})
        assert default_allow("command", {}) == []

    def test_a_base_url_replaces_the_default_host(self) -> None:
        assert default_allow("claude", {"ANTHROPIC_BASE_URL": "http://127.0.0.1:8080"}) == ["127.0.0.1:8080"]
        assert default_allow("codex", {"OPENAI_BASE_URL": "https://proxy.corp.example/v1"}) == [
            "proxy.corp.example:443"
        ]
        assert default_allow("gemini", {"GOOGLE_GEMINI_BASE_URL": "http://LOCALHOST:9000/"}) == ["localhost:9000"]


async def test_one_session_per_attempt(proxy: EgressProxy) -> None:
    """An attempt id can hold one open session; after it closes the id can open another."""
    session = await proxy.session("a", [])
    with pytest.raises(ValueError, match="already"):
        await proxy.session("a", [])
    await session.close()
    await (await proxy.session("a", [])).close()


async def test_a_bogus_hand_over_is_dropped_and_the_proxy_keeps_serving(proxy: EgressProxy, echo: EchoServer) -> None:
    """Something in the sandbox sending descriptors that are not one stream socket (a pipe, two of them) gets
    its connection closed; the next client is served as usual."""
    session = await proxy.session("a", [f"127.0.0.1:{echo.port}"])
    read_end, write_end = os.pipe()
    try:
        for fds in ([read_end], [read_end, write_end]):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.connect(str(session.socket_path))
                socket.send_fds(sock, [b"\0"], fds)
                sock.settimeout(30)
                assert await asyncio.to_thread(sock.recv, 100) == b""
    finally:
        os.close(read_end)
        os.close(write_end)
    head, _, writer = await connect(session, f"127.0.0.1:{echo.port}")
    assert head.startswith(b"HTTP/1.1 200")
    writer.close()


async def test_an_agent_trying_many_hosts_cannot_flood_the_report(proxy: EgressProxy, denials: Denials) -> None:
    """Denied hosts beyond a bound are counted together; the callback fires once per counted host, and the
    summary names the top five and how many more there were."""
    session = await proxy.session("a", [])
    for i in range(MAX_DISTINCT_DENIALS + 10):
        head, _, writer = await connect(session, f"h{i}.evil.example:443")
        assert head.startswith(b"HTTP/1.1 403")
        writer.close()
    assert len(session.denied) == MAX_DISTINCT_DENIALS + 1
    assert session.denied[OTHER_HOSTS] == 10
    assert len(denials.calls) == MAX_DISTINCT_DENIALS + 1
    assert session.summary().startswith("blocked: other hosts ×10, h0.evil.example:443 ×1")
    assert session.summary().endswith(f", and {MAX_DISTINCT_DENIALS + 1 - 5} more")
