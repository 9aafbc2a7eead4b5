"""The sandbox side of the egress allowlist: ``127.0.0.1:PORT`` inside the sandbox → the proxy's unix socket.

Run as a file, in front of the agent's argv (:func:`bridge_argv`)::

    python3 -I -S .../agentos/runners/bridge.py /run/egress.sock 3128 -- claude -p ...

It binds ``127.0.0.1:PORT`` (the sandbox's own loopback: it has no other network), starts the forwarder, points
the agent's proxy variables at it (``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY`` in both cases, ``NO_PROXY``
removed), and then **execs the agent**: the agent keeps the pid the runner started and waits on, and its exit
status is the attempt's.

The forwarder accepts each connection the agent makes and hands it over to the proxy: it sends the socket's
descriptor through the unix socket (``SCM_RIGHTS``, with one ``\\0`` byte) and closes its own copy. The proxy
then reads and writes the agent's connection directly, so no byte of the traffic passes through the forwarder
(a copying bridge would be a second Python process on the data path; see ``bench/egress.py``).

The forwarder is a grandchild (fork, fork again, the middle process exits), so it is not the agent's child:
a shell agent's ``wait`` does not wait for it and no zombie of it is left to the agent. It stays in the
agent's process group (no ``setsid``), so the runner's kill policy (SIGTERM to the group, then SIGKILL) reaches
it like any other process of the attempt. It holds none of the agent's stdio (they point at ``/dev/null``), so
the runner sees EOF on the agent's output as soon as the agent is done, and it exits by itself when the agent
does: it watches the agent through a pidfd (Linux ≥ 5.3), or by polling where there is none.

The listening socket is bound before the fork and handed down, so a connection the agent makes at once waits
in the backlog instead of being refused.

Standard library only, no ``agentos`` import: it runs inside the sandbox with whatever ``python3`` is there.
"""

from __future__ import annotations

import array
import os
import select
import socket
import sys
from collections.abc import Sequence

__all__ = ["BRIDGE_PATH", "HANDOFF", "PROXY_VARIABLES", "bridge_argv", "main", "proxy_env"]

PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "all_proxy")
_NO_PROXY = ("NO_PROXY", "no_proxy")
_SYSTEM_PYTHON = "/usr/bin/python3"
BRIDGE_PATH = os.path.abspath(__file__)
"""This file, which the sandbox must show (read-only) for :func:`bridge_argv` to run it."""
HANDOFF = b"\0"  # what carries a connection's descriptor to the proxy (as agentos.runners._egress_io expects)
_POLL_S = 0.5  # how often the forwarder looks for the agent where there is no pidfd


def bridge_argv(socket_inside: str, port: int, python: str | None = None) -> list[str]:
    """The argv prefix that runs the bridge and then the agent: append the agent's argv to it.

    ``socket_inside`` is the proxy's unix socket as the sandbox sees it; ``port`` the loopback port to listen
    on (0: any free one; the proxy variables name the one picked). ``python`` is an interpreter visible inside
    the sandbox: by default the system's ``/usr/bin/python3`` (the sandbox shows ``/usr`` read-only), else the
    one running this with symlinks resolved. :data:`BRIDGE_PATH` must be visible too (bind it read-only).
    """
    return [python or _default_python(), "-I", "-S", BRIDGE_PATH, socket_inside, str(port), "--"]


def _default_python() -> str:
    if os.access(_SYSTEM_PYTHON, os.X_OK):
        return _SYSTEM_PYTHON
    return os.path.realpath(sys.executable) if sys.executable else "python3"


def proxy_env(port: int, env: dict[str, str]) -> dict[str, str]:
    """``env`` with every proxy variable pointing at the bridge and the no-proxy list removed."""
    out = {k: v for k, v in env.items() if k not in _NO_PROXY}
    out.update(dict.fromkeys(PROXY_VARIABLES, f"http://127.0.0.1:{port}"))
    return out


# ── the forwarder (the grandchild) ───────────────────────────────────────────────────────────────────


def _hand_over(client: socket.socket, socket_path: str) -> None:
    """Send the agent's connection to the proxy: one ``\\0`` byte carrying its descriptor. The proxy then serves
    that socket itself; no byte of the traffic passes through this process."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as up:
        up.connect(socket_path)
        up.sendmsg([HANDOFF], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [client.fileno()]))])


def _forward(listener: socket.socket, socket_path: str, agent_pid: int, pidfd: int | None) -> None:
    """Hand every connection over until the agent is gone (its pidfd readable, or no such process)."""
    watched: list[int] = [listener.fileno(), *([pidfd] if pidfd is not None else [])]
    while True:
        ready, _, _ = select.select(watched, [], [], None if pidfd is not None else _POLL_S)
        if (pidfd is not None and pidfd in ready) or (pidfd is None and not _alive(agent_pid)):
            return
        if listener.fileno() not in ready:
            continue
        try:
            client, _ = listener.accept()
        except OSError:
            continue
        try:
            _hand_over(client, socket_path)
        except OSError:
            pass  # the proxy is gone (the attempt is ending): the agent sees its connection closed
        finally:
            client.close()


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
        _forward(listener, socket_path, agent_pid, pidfd)
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
