"""The sandbox side of the egress allowlist: ``127.0.0.1:PORT`` inside the sandbox → the proxy's unix socket.

Run as a file, in front of the agent's argv (:func:`bridge_argv`)::

    python3 -I -S .../agentos/runners/bridge.py /run/egress.sock 3128 -- claude -p ...

It binds ``127.0.0.1:PORT`` (the sandbox's own loopback: it has no other network), starts the forwarder, points
the agent's proxy variables at it (``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY`` in both cases, ``NO_PROXY``
removed), and then **execs the agent**: the agent keeps the pid the runner started and waits on, and its exit
status is the attempt's.

The forwarder is a grandchild (fork, fork again, the middle process exits), so it is not the agent's child:
a shell agent's ``wait`` does not wait for it and no zombie of it is left to the agent. It stays in the
agent's process group (no ``setsid``), so the runner's kill policy (SIGTERM to the group, then SIGKILL) reaches
it like any other process of the attempt. It holds none of the agent's stdio (they point at ``/dev/null``), so
the runner sees EOF on the agent's output as soon as the agent is done, and it exits by itself when the agent
does: it watches the agent through a pidfd (Linux ≥ 5.3), or by polling where there is none.

The listening socket is bound before the fork and handed down, so a connection the agent makes at once waits
in the backlog instead of being refused. Each connection is copied both ways with back-pressure and half-close.

Standard library only, no ``agentos`` import: it runs inside the sandbox with whatever ``python3`` is there.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import Sequence

__all__ = ["PROXY_VARIABLES", "bridge_argv", "main", "proxy_env"]

PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "all_proxy")
_NO_PROXY = ("NO_PROXY", "no_proxy")
_CHUNK = 256 * 1024
_POLL_S = 0.5  # how often the forwarder looks for the agent where there is no pidfd


def bridge_argv(socket_inside: str, port: int, python: str | None = None) -> list[str]:
    """The argv prefix that runs the bridge and then the agent: append the agent's argv to it.

    ``socket_inside`` is the proxy's unix socket as the sandbox sees it; ``port`` the loopback port to listen
    on; ``python`` an interpreter visible inside the sandbox (default: the one running this, symlinks resolved,
    so a venv's ``bin/python`` becomes the system interpreter behind it). This file must be visible too.
    """
    interpreter = python or (os.path.realpath(sys.executable) if sys.executable else "python3")
    return [interpreter, "-I", "-S", os.path.abspath(__file__), socket_inside, str(port), "--"]


def proxy_env(port: int, env: dict[str, str]) -> dict[str, str]:
    """``env`` with every proxy variable pointing at the bridge and the no-proxy list removed."""
    out = {k: v for k, v in env.items() if k not in _NO_PROXY}
    out.update(dict.fromkeys(PROXY_VARIABLES, f"http://127.0.0.1:{port}"))
    return out


# ── the forwarder (the grandchild) ───────────────────────────────────────────────────────────────────


async def _copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await src.read(_CHUNK)
            if not data:
                break
            dst.write(data)
            await dst.drain()
        if dst.can_write_eof():
            dst.write_eof()
    except OSError:
        dst.close()


async def _forward(socket_path: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        up_reader, up_writer = await asyncio.open_unix_connection(socket_path, limit=_CHUNK)
    except OSError:
        writer.close()
        return
    try:
        await asyncio.gather(_copy(reader, up_writer), _copy(up_reader, writer))
    finally:
        writer.close()
        up_writer.close()


async def _serve(listener: socket.socket, socket_path: str, agent_pid: int, pidfd: int | None) -> None:
    loop = asyncio.get_running_loop()
    agent_gone = asyncio.Event()
    if pidfd is not None:
        loop.add_reader(pidfd, agent_gone.set)
    server = await asyncio.start_server(lambda r, w: _forward(socket_path, r, w), sock=listener, limit=_CHUNK)
    async with server:
        if pidfd is not None:
            await agent_gone.wait()
        else:
            while _alive(agent_pid):
                await asyncio.sleep(_POLL_S)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _become_forwarder(listener: socket.socket, socket_path: str, agent_pid: int) -> None:
    """In the middle process: watch the agent, fork the forwarder, and leave."""
    pidfd: int | None = None
    pidfd_open = getattr(os, "pidfd_open", None)
    if pidfd_open is not None:
        try:
            pidfd = pidfd_open(agent_pid)
        except OSError:
            pidfd = None
    if os.fork() != 0:
        os._exit(0)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    keep = sorted({0, 1, 2, listener.fileno(), *([pidfd] if pidfd is not None else [])})
    _close_others(keep)
    try:
        asyncio.run(_serve(listener, socket_path, agent_pid, pidfd))
    finally:
        os._exit(0)


def _close_others(keep: Sequence[int]) -> None:
    """Close every inherited descriptor but ``keep`` (the agent's pipes must not stay open in the forwarder)."""
    start = 0
    for fd in [*keep, 1 << 20]:
        if fd > start:
            os.closerange(start, min(fd, os.sysconf("SC_OPEN_MAX")))
        start = fd + 1


def main(argv: Sequence[str]) -> int:
    """``bridge.py SOCKET PORT -- AGENT ARGV...``: start the forwarder, then exec the agent (no return then)."""
    args = list(argv)
    if len(args) < 4 or args[2] != "--" or not args[1].isdigit():
        print("usage: bridge.py SOCKET PORT -- COMMAND [ARG...]", file=sys.stderr)
        return 2
    socket_path, port, command = args[0], int(args[1]), args[3:]
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("127.0.0.1", port))
    except OSError as exc:
        print(f"agentos egress bridge: cannot listen on 127.0.0.1:{port}: {exc}", file=sys.stderr)
        return 125
    listener.listen(128)
    port = listener.getsockname()[1]  # the port picked, when asked for 0
    listener.set_inheritable(False)
    agent_pid = os.getpid()
    sys.stdout.flush()
    sys.stderr.flush()
    middle = os.fork()
    if middle == 0:
        try:
            _become_forwarder(listener, socket_path, agent_pid)
        finally:
            os._exit(0)
    os.waitpid(middle, 0)
    listener.close()
    env = proxy_env(port, dict(os.environ))
    try:
        os.execvpe(command[0], command, env)
    except OSError as exc:
        print(f"agentos egress bridge: cannot run {command[0]}: {exc}", file=sys.stderr)
        return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
