"""The control socket: newline-delimited JSON over a Unix socket, one request and one answer per line.

    {"cmd": "pause"}                         → {"ok": true, "result": {...}}
    {"cmd": "job", "args": {"name": "x"}}    → {"ok": false, "error": "no job named 'x'; jobs: …"}

The socket is created mode 0600 (umask around the bind, no chmod window) and every caller's uid is
checked with SO_PEERCRED: only root and the daemon's own uid are served. A request may carry an
``"id"``, echoed in its answer. :func:`handle_request` answers anything (bad JSON, a wrong type, an
unknown command, an argument its model refuses, a controller that raised) with ``{"ok": false, "error": …}``;
it never raises. The commands and their arguments are :data:`agentos.control.commands.TABLE`.

Where the daemon binds it (:func:`default_socket_path`): ``$AGENTOS_SOCKET``, else
``$RUNTIME_DIRECTORY/agentos.sock`` (systemd's ``RuntimeDirectory=agentos``), else
``$XDG_RUNTIME_DIR/agentos.sock``, else ``/tmp/agentos-<uid>/agentos.sock``. ``agentos ctl`` runs outside
the unit, without ``$RUNTIME_DIRECTORY``, so :func:`client_socket_path` also looks where the system
and user units put it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentos.caller import calling
from agentos.control.arguments import run
from agentos.control.commands import TABLE
from agentos.errors import ControlError

if TYPE_CHECKING:  # `agentos ctl` imports this module: keep the daemon's parts (asyncio too) out of its start-up
    import asyncio

    import structlog

    from agentos.control.controller import Controller


def _log() -> structlog.stdlib.BoundLogger:
    """The server's logger; imported on first use, so a client (`agentos ctl`) never loads structlog."""
    from agentos import logging as alog

    return alog.get_logger("agentos.socket")


MAX_LINE = 64 * 1024
REFUSE_READ_S = 1.0
"""How long a refused client gets to finish sending its request before it is answered and closed."""


class SocketInUse(ControlError):
    """Another live daemon answers on the socket path (a different state dir, the same socket)."""


def default_socket_path() -> Path:
    """The control socket of this environment; the daemon and ``agentos ctl`` agree on it."""
    if explicit := os.environ.get("AGENTOS_SOCKET"):
        return Path(explicit)
    base = os.environ.get("RUNTIME_DIRECTORY") or os.environ.get("XDG_RUNTIME_DIR")
    if base:
        return Path(base.split(":")[0]) / "agentos.sock"
    return Path(f"/tmp/agentos-{os.getuid()}") / "agentos.sock"


SYSTEM_SOCKET = Path("/run/agentos/agentos.sock")
"""Where ``deploy/systemd/agentos.service`` (``RuntimeDirectory=agentos``) puts the socket."""


def client_socket_path(*, system: Path = SYSTEM_SOCKET) -> Path:
    """The socket ``agentos ctl`` talks to: the daemon's default when it exists, else a unit's socket.

    ``$AGENTOS_SOCKET`` and ``$RUNTIME_DIRECTORY`` are taken as given. Otherwise the first existing of
    ``$XDG_RUNTIME_DIR/agentos.sock`` (a daemon started by hand), ``$XDG_RUNTIME_DIR/agentos/agentos.sock``
    (the user unit) and ``/run/agentos/agentos.sock`` (the system unit); with none, the daemon default
    (so that "not running" names the path a hand-started daemon would use).
    """
    if os.environ.get("AGENTOS_SOCKET") or os.environ.get("RUNTIME_DIRECTORY"):
        return default_socket_path()
    candidates = [default_socket_path()]
    if xdg := os.environ.get("XDG_RUNTIME_DIR"):
        candidates.append(Path(xdg) / "agentos" / "agentos.sock")
    candidates.append(system)
    for path in candidates:
        try:
            if path.is_socket():
                return path
        except PermissionError:  # /run/agentos is 0750: connecting will say "permission denied" clearly
            return path
    return candidates[0]


COMMANDS = TABLE
"""Every command the socket serves, by wire name (:data:`agentos.control.commands.TABLE`)."""


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def handle_request(controller: Controller, line: bytes) -> dict[str, Any]:
    """Answer one request line; never raises."""
    try:
        req = json.loads(line)
    except json.JSONDecodeError as exc:
        return {"ok": False, "error": f"request is not valid JSON: {exc.msg} at column {exc.colno}"}
    except (ValueError, RecursionError) as exc:  # not UTF-8; a 5000-digit number; nesting too deep
        return {"ok": False, "error": f"request is not valid JSON: {type(exc).__name__}"}
    if not isinstance(req, dict):
        return {"ok": False, "error": 'request must be a JSON object like {"cmd": "status"}'}
    answer = await _answer(controller, req)
    if "id" in req and isinstance(req["id"], str | int) and not isinstance(req["id"], bool):
        answer = {"id": req["id"], **answer}
    return answer


async def _answer(controller: Controller, req: dict[str, Any]) -> dict[str, Any]:
    cmd, args = req.get("cmd"), req.get("args")
    if args is None:
        args = {}
    if not isinstance(args, dict):
        return {"ok": False, "error": "args must be a JSON object"}
    spec = COMMANDS.get(cmd) if isinstance(cmd, str) else None
    if spec is None:
        return {"ok": False, "error": f"unknown command {_short(cmd)}; commands: {', '.join(sorted(COMMANDS))}"}
    try:
        with calling("ctl"):
            result = await run(spec, controller, args)
    except ControlError as exc:
        return {"ok": False, "error": str(exc)}
    except Exception as exc:  # the socket must answer, whatever the controller did
        _log().error("control_command_failed", cmd=cmd, exc_info=True)
        return {"ok": False, "error": f"{cmd} failed: {type(exc).__name__}: {exc}"}
    return {"ok": True, "result": result}


def peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


class ControlServer:
    """Serves the controller on a Unix socket."""

    def __init__(self, controller: Controller, path: Path, *, allowed_uids: set[int] | None = None) -> None:
        self.controller = controller
        self.path = path
        self.allowed_uids = allowed_uids if allowed_uids is not None else {0, os.getuid()}
        self._server: asyncio.Server | None = None
        self.requests = 0

    def __repr__(self) -> str:
        return f"<ControlServer {self.path} requests={self.requests}>"

    async def start(self) -> None:
        """Bind the socket (mode 0600). Raises :class:`SocketInUse` when a live daemon already answers there."""
        import asyncio

        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if _answers(self.path):
            # The state lock does not cover this: two state dirs may share one socket path, and
            # start_unix_server would silently steal the live daemon's socket.
            raise SocketInUse(f"another agentos daemon is serving {self.path}; stop it or set AGENTOS_SOCKET")
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # nobody answers: a dead daemon's socket
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=str(self.path), limit=MAX_LINE)
        finally:
            os.umask(old)

    async def stop(self) -> None:
        import asyncio

        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        import asyncio

        sock = writer.get_extra_info("socket")
        try:
            uid = peer_uid(sock)
            if uid not in self.allowed_uids:
                _log().warning("control_client_refused", uid=uid)
                # Read the request first: closing with unread data would reset the client's connection.
                with contextlib.suppress(ValueError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
                    await asyncio.wait_for(reader.readline(), REFUSE_READ_S)
                await self._send(writer, {"ok": False, "error": f"uid {uid} may not control this daemon"})
                return
            while True:
                try:
                    line = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    await self._send(writer, {"ok": False, "error": f"request longer than {MAX_LINE} bytes"})
                    return
                if not line:
                    return
                if not line.strip():
                    continue
                self.requests += 1
                answer = await handle_request(self.controller, line)
                await self._send(writer, answer)
        except (ConnectionError, BrokenPipeError):
            return
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, answer: dict[str, Any]) -> None:
        writer.write(json.dumps(answer, default=str).encode() + b"\n")
        await writer.drain()


def _answers(path: Path) -> bool:
    """Whether something accepts connections on the Unix socket ``path`` (a live daemon)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


class NotRunning(ControlError):
    """No daemon answers on the socket."""


def request(path: Path, cmd: str, args: dict[str, Any] | None = None, *, timeout: float = 30.0) -> Any:
    """Send one request with the stdlib socket (fast CLI start) and return its result or raise.

    Raises :class:`NotRunning` when no daemon listens at ``path``, :class:`ControlError` with the
    daemon's message when it answers ``ok: false``, and ``OSError`` (``TimeoutError``…) otherwise.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            raise NotRunning(f"agentos is not running (no daemon at {path})") from None
        except PermissionError:
            raise ControlError(f"permission denied on {path}: run as the daemon's user or root") from None
        try:
            s.sendall(json.dumps({"cmd": cmd, "args": args or {}}).encode() + b"\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the daemon answered and closed before reading (a refusal): read what it said
        try:
            data = s.makefile("rb").readline()
        except ConnectionResetError:
            data = b""
    if not data:
        raise ControlError("the daemon closed the connection without answering")
    try:
        answer = json.loads(data)
    except ValueError:
        raise ControlError(f"the daemon's answer is not JSON: {data[:200]!r}") from None
    if not isinstance(answer, dict):
        raise ControlError(f"the daemon's answer is not a JSON object: {data[:200]!r}")
    if not answer.get("ok"):
        raise ControlError(str(answer.get("error", "unknown error")))
    return answer.get("result")
