"""The egress allowlist: the only way out of an attempt's sandbox is this HTTP proxy, which lets through only
listed ``host:port`` pairs.

The sandbox has a network namespace of its own (only ``lo``). Inside it, :mod:`agentos.runners.bridge` listens on
``127.0.0.1:PORT`` and hands every connection over (its descriptor, ``SCM_RIGHTS``) through a unix socket bound in
from outside; the agent's environment points ``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY`` at that port. The
daemon's :class:`EgressProxy` serves one unix socket per attempt (:meth:`EgressProxy.session`), takes plain
clients on it as well as handed-over connections, and speaks just enough HTTP/1.1 proxying for the agent CLIs:

* ``CONNECT host:port`` (what every HTTPS client sends): when allowed, a blind byte tunnel both ways, with
  back-pressure, half-close (one side's EOF is passed on while the other side still talks) and an idle timeout;
* an absolute-URI plain HTTP request (``GET http://host:port/path``): when allowed, the request goes to the
  server in origin form with ``Connection: close`` and the response streams back;
* anything else (a host not listed, an ``https://`` URI without CONNECT, an origin-form request, garbage):
  ``403`` with a one-line body, and the denial is counted in :attr:`EgressSession.denied` and reported through
  the ``on_denied(attempt_id, host_port)`` callback (the daemon journals ``egress_denied``).

The allow check runs on the host name as the client gave it, and only then does the proxy resolve and connect
to that name: no address is resolved ahead of the check, so a name cannot be swapped for an address the rules
never named. An IP literal is allowed only when that literal is listed.

Allow rules (:class:`Allowlist`): ``host:port`` exactly, ``*.example.com:443`` for any subdomain (not the bare
``example.com``), ``[::1]:8080`` for IPv6; names compare case-insensitively, a trailing dot is ignored.
:func:`default_allow` gives each agent kind the API host its CLI needs (see :data:`KIND_HOSTS`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import os
import re
import socket
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import structlog

from agentos.runners._egress_io import Tunnel, read_head, receive_first, reply

__all__ = [
    "BASE_URL_ENV",
    "KIND_HOSTS",
    "MAX_DISTINCT_DENIALS",
    "OTHER_HOSTS",
    "Allowlist",
    "DeniedCallback",
    "EgressProxy",
    "EgressSession",
    "default_allow",
    "host_port",
    "parse_host_port",
]

log = structlog.get_logger(__name__)

DeniedCallback = Callable[[str, str], None]
"""``on_denied(attempt_id, host_port)``: called on the event loop the first time an attempt is denied a
``host:port`` (so a looping agent cannot flood the journal; the counts are in :attr:`EgressSession.denied`);
must not block."""

MAX_DISTINCT_DENIALS = 50
"""Distinct ``host:port`` keys counted per attempt; denials of further ones count under :data:`OTHER_HOSTS`."""
OTHER_HOSTS = "other hosts"

KIND_HOSTS: Mapping[str, tuple[str, ...]] = {
    # Claude Code's model API. Its telemetry (statsig), error reports (sentry) and update checks are not needed
    # to work: they are denied (set CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 so the CLI does not try).
    "claude": ("api.anthropic.com:443",),
    # Codex: the API with an API key; chatgpt.com's backend and auth.openai.com's token refresh with a ChatGPT
    # plan login.
    "codex": ("api.openai.com:443", "chatgpt.com:443", "auth.openai.com:443"),
    # Gemini CLI: the API with an API key; Code Assist and Google's token endpoint with a Google login.
    "gemini": (
        "generativelanguage.googleapis.com:443",
        "cloudcode-pa.googleapis.com:443",
        "oauth2.googleapis.com:443",
    ),
    "command": (),
}
"""What each agent kind's CLI needs to reach by default (replaced by a base URL, see :func:`default_allow`)."""

BASE_URL_ENV: Mapping[str, tuple[str, ...]] = {
    "claude": ("ANTHROPIC_BASE_URL",),
    "codex": ("OPENAI_BASE_URL",),
    "gemini": ("GOOGLE_GEMINI_BASE_URL", "GOOGLE_VERTEX_BASE_URL"),
    "command": (),
}
"""The environment variables that point a CLI at another model server."""

_HEAD_LIMIT = 64 * 1024  # a request line and headers longer than this are refused
_HOST_RE = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*$")
_MAX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux, with its NUL


# ── allow rules ──────────────────────────────────────────────────────────────────────────────────────


def _normal_host(host: str) -> str:
    """A host name lower-cased without a trailing dot, or an IP literal in its canonical form; ValueError if
    neither (no wildcards here)."""
    host = host.strip().lower().removesuffix(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if not _HOST_RE.match(host) or len(host) > 253:
        raise ValueError(f"not a host name: {host!r}")
    return host


def parse_host_port(text: str) -> tuple[str, int]:
    """``"Example.COM:443"`` → ``("example.com", 443)``; ``"[::1]:80"`` → ``("::1", 80)``. ValueError when the
    text is not ``host:port`` with a port in 1–65535."""
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"not host:port: {text!r}")
    if ":" in host and not host.startswith("["):
        raise ValueError(f"an IPv6 address needs brackets: {text!r}")
    return _normal_host(host), int(port_text)


def host_port(host: str, port: int) -> str:
    """The ``host:port`` key a denial is counted under (IPv6 in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True)
class _Rule:
    host: str  # for a wildcard: the suffix after "*." (e.g. "example.com")
    port: int
    wildcard: bool

    def matches(self, host: str, port: int) -> bool:
        if port != self.port:
            return False
        if self.wildcard:
            return host.endswith("." + self.host)
        return host == self.host


class Allowlist:
    """The ``host:port`` pairs one attempt may reach. A malformed entry is a ValueError naming it."""

    def __init__(self, entries: Sequence[str]) -> None:
        rules: list[_Rule] = []
        for entry in entries:
            text = entry.strip().lower()
            wildcard = text.startswith("*.")
            host, port = parse_host_port(text[2:] if wildcard else text)
            if wildcard and _is_ip(host):
                raise ValueError(f"a wildcard needs a domain, not an address: {entry!r}")
            rules.append(_Rule(host, port, wildcard))
        self._rules = tuple(rules)

    def allows(self, host: str, port: int) -> bool:
        """Whether ``host:port`` (as the client named it) is listed; an unparsable host is never allowed."""
        try:
            name = _normal_host(host)
        except ValueError:
            return False
        return any(rule.matches(name, port) for rule in self._rules)

    def __repr__(self) -> str:
        shown = (("*." if r.wildcard else "") + host_port(r.host, r.port) for r in self._rules)
        return "Allowlist([" + ", ".join(shown) + "])"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def default_allow(kind: str, env: Mapping[str, str]) -> list[str]:
    """The hosts an agent of ``kind`` needs, given the environment it runs with: a base-URL variable
    (``ANTHROPIC_BASE_URL=http://127.0.0.1:8080``) replaces the kind's default hosts with the server it names."""
    named: list[str] = []
    for var in BASE_URL_ENV.get(kind, ()):
        value = env.get(var, "").strip()
        if value:
            named.append(_url_host_port(value))
    return named if named else list(KIND_HOSTS.get(kind, ()))


def _url_host_port(url: str) -> str:
    parts = urlsplit(url if "://" in url else f"https://{url}")
    if not parts.hostname:
        raise ValueError(f"no host in base URL {url!r}")
    port = parts.port or (80 if parts.scheme == "http" else 443)
    return host_port(_normal_host(parts.hostname), port)


# ── sessions and the proxy ───────────────────────────────────────────────────────────────────────────


class EgressSession:
    """One attempt's door out: a unix socket at :attr:`socket_path` (bind it into the sandbox and run the
    bridge on it) and the denials counted so far. Made by :meth:`EgressProxy.session`; :meth:`close` when the
    attempt ends."""

    def __init__(
        self,
        attempt_id: str,
        socket_path: Path,
        allow: Allowlist,
        proxy: EgressProxy,
        on_denied: DeniedCallback | None = None,
    ) -> None:
        self.attempt_id = attempt_id
        self.socket_path = socket_path
        self.allow = allow
        self.denied: Counter[str] = Counter()
        self.connections = 0  # requests let through
        self._proxy = proxy
        self._on_denied = on_denied if on_denied is not None else proxy.on_denied
        self._listener: socket.socket | None = None
        self._acceptor: asyncio.Task[None] | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    def summary(self, limit: int = 5) -> str:
        """``"blocked: evil.example:443 ×3, 10.0.0.1:22 ×1"`` (most often denied first, at most ``limit``
        hosts named, then ``"and N more"``), or ``""`` when nothing was denied."""
        if not self.denied:
            return ""
        ranked = self.denied.most_common()
        text = "blocked: " + ", ".join(f"{hp} ×{n}" for hp, n in ranked[:limit])
        return text + (f", and {len(ranked) - limit} more" if len(ranked) > limit else "")

    async def _start(self) -> None:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(str(self.socket_path))
            os.chmod(self.socket_path, 0o600)
            listener.listen(128)
            listener.setblocking(False)
        except OSError:
            listener.close()
            raise
        self._listener = listener
        self._acceptor = asyncio.create_task(self._accept(listener), name=f"egress-{self.attempt_id}")

    async def close(self) -> None:
        """Stop accepting, cut every open tunnel, remove the socket. Idempotent."""
        if self._acceptor is not None:
            self._acceptor.cancel()
            await asyncio.gather(self._acceptor, return_exceptions=True)
            self._acceptor = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for task in list(self._handlers):
            task.cancel()
        if self._handlers:
            await asyncio.gather(*self._handlers, return_exceptions=True)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        self._proxy._forget(self)

    async def _accept(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _ = await loop.sock_accept(listener)
            except OSError as exc:  # out of descriptors, most likely: wait for some to be freed
                log.warning("egress_accept_failed", attempt=self.attempt_id, error=str(exc))
                await asyncio.sleep(0.5)
                continue
            task = asyncio.create_task(self._handle(conn))
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)

    async def _handle(self, conn: socket.socket) -> None:
        """One client: a plain one on the unix socket, or the agent's TCP connection the bridge handed over."""
        cfg = self._proxy
        try:
            async with asyncio.timeout(cfg.head_timeout_s):
                first, handed = await receive_first(conn, _HEAD_LIMIT, cfg.head_timeout_s)
                if handed is not None:
                    conn.close()
                    conn = handed
                    conn.setblocking(False)
                elif not first:
                    return
                head, rest = await read_head(conn, first, _HEAD_LIMIT)
            if head:
                await self._serve(conn, head, rest)
        except (OSError, TimeoutError):
            pass  # the client went away or was too slow to say anything: nothing to report
        finally:
            conn.close()

    async def _serve(self, conn: socket.socket, head: bytes, rest: bytes) -> None:
        cfg = self._proxy
        request_line, _, headers = head[:-4].partition(b"\r\n")
        parts = request_line.decode("latin-1").split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            await self._deny(conn, "malformed-request")
            return
        method, target, _version = parts
        if method.upper() == "CONNECT":
            try:
                host, port = parse_host_port(target)
            except ValueError:
                await self._deny(conn, _printable(target))
                return
            to_upstream, to_client = rest, b"HTTP/1.1 200 Connection Established\r\n\r\n"
        else:
            split = _absolute_http(target)
            if split is None:
                await self._deny(conn, _printable(target))
                return
            host, port, path = split
            to_upstream, to_client = _origin_request(method, path, headers) + rest, b""
        if not self.allow.allows(host, port):
            await self._deny(conn, host_port(host, port))
            return
        tunnel = Tunnel(cfg.idle_timeout_s)
        try:
            async with asyncio.timeout(cfg.connect_timeout_s):
                await tunnel.connect(host, port, conn)
        except (OSError, TimeoutError) as exc:
            log.info("egress_connect_failed", attempt=self.attempt_id, target=host_port(host, port), error=str(exc))
            await reply(conn, 502, "Bad Gateway", f"agentos egress: cannot reach {host_port(host, port)}\n")
            tunnel.abort()  # what did connect
            return
        self.connections += 1
        if not await tunnel.run(to_upstream=to_upstream, to_client=to_client):
            log.info("egress_tunnel_idle", attempt=self.attempt_id, target=host_port(host, port))

    async def _deny(self, conn: socket.socket, what: str) -> None:
        key = what if what in self.denied or len(self.denied) < MAX_DISTINCT_DENIALS else OTHER_HOSTS
        first = key not in self.denied
        self.denied[key] += 1
        log.info("egress_denied", attempt=self.attempt_id, target=what, first=first)
        if first and self._on_denied is not None:
            try:
                self._on_denied(self.attempt_id, what)
            except Exception:  # the daemon's callback failing must not take the proxy down with it
                log.exception("egress_denied_callback_failed", attempt=self.attempt_id)
        await reply(conn, 403, "Forbidden", f"agentos egress: {what} is not on this attempt's allowlist\n")


class EgressProxy:
    """The daemon's egress proxy: one unix socket per attempt under ``socket_dir`` (kept at 0700).

    ``idle_timeout_s``: a tunnel with no byte either way for this long is cut. ``connect_timeout_s``: how long
    resolving and connecting to an allowed server may take (then 502). ``head_timeout_s``: how long a client may
    take to send its request head. :meth:`run` in the daemon's TaskGroup closes every session when cancelled.
    """

    def __init__(
        self,
        socket_dir: Path,
        *,
        on_denied: DeniedCallback | None = None,
        idle_timeout_s: float = 600.0,
        connect_timeout_s: float = 30.0,
        head_timeout_s: float = 30.0,
    ) -> None:
        self.socket_dir = socket_dir
        self.on_denied = on_denied
        self.idle_timeout_s = idle_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.head_timeout_s = head_timeout_s
        self._sessions: dict[str, EgressSession] = {}

    async def session(
        self, attempt_id: str, allow: Sequence[str], *, on_denied: DeniedCallback | None = None
    ) -> EgressSession:
        """Open ``attempt_id``'s socket allowing ``allow`` (``host:port`` entries; ValueError on a bad one);
        ``on_denied``: this session's denials go there instead of to the proxy's ``on_denied``."""
        if attempt_id in self._sessions:
            raise ValueError(f"attempt {attempt_id!r} already has an egress session")
        rules = Allowlist(allow)
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.socket_dir, 0o700)
        path = self.socket_dir / _socket_name(attempt_id)
        if len(os.fsencode(path)) > _MAX_SOCKET_PATH:
            raise ValueError(f"egress socket path too long for a unix socket ({len(str(path))} bytes): {path}")
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # left by a crashed daemon
        session = EgressSession(attempt_id, path, rules, self, on_denied)
        await session._start()
        self._sessions[attempt_id] = session
        log.info("egress_session_opened", attempt=attempt_id, allow=repr(rules))
        return session

    def _forget(self, session: EgressSession) -> None:
        if self._sessions.get(session.attempt_id) is session:
            del self._sessions[session.attempt_id]

    async def aclose(self) -> None:
        """Close every open session."""
        for session in list(self._sessions.values()):
            await session.close()

    async def run(self) -> None:
        """Wait until cancelled (the daemon's TaskGroup ending), then close every session."""
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.shield(self.aclose())


def _socket_name(attempt_id: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", attempt_id)[:40]
    digest = hashlib.sha256(attempt_id.encode()).hexdigest()[:8]
    return f"{safe}-{digest}.sock"


def _absolute_http(target: str) -> tuple[str, int, str] | None:
    """``http://host:port/path?q`` → ``(host, port, "/path?q")``; None for anything else (https, origin form)."""
    if not target.lower().startswith("http://"):
        return None
    try:
        parts = urlsplit(target)
        port = parts.port or 80
        host = _normal_host(parts.hostname or "")
    except ValueError:
        return None
    if parts.username or parts.password:
        return None
    path = parts.path or "/"
    return host, port, path + (f"?{parts.query}" if parts.query else "")


_HOP_HEADERS = frozenset({b"connection", b"proxy-connection", b"proxy-authorization", b"keep-alive"})


def _origin_request(method: str, path: str, headers: bytes) -> bytes:
    """The request the server gets: origin form, hop-by-hop and proxy headers dropped, ``Connection: close``
    (one request per connection, so a second request on it cannot reach a host that was never checked)."""
    kept = [
        line for line in headers.split(b"\r\n") if line and line.split(b":", 1)[0].strip().lower() not in _HOP_HEADERS
    ]
    return b"\r\n".join([f"{method} {path} HTTP/1.1".encode("latin-1"), *kept, b"Connection: close", b"", b""])


def _printable(text: str) -> str:
    return re.sub(r"[^\x21-\x7e]", "?", text)[:120] or "?"
