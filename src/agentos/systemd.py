"""Talking to systemd: ``sd_notify`` lines (READY, STATUS, WATCHDOG, STOPPING) and the watchdog's ping loop.

All of it is a no-op outside a ``Type=notify`` unit (no ``$NOTIFY_SOCKET``).
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable

from agentos import logging as alog

__all__ = ["STATUS_EVERY_S", "notify_loop", "sd_notify", "watchdog_interval"]

log = alog.get_logger("agentos.daemon")

STATUS_EVERY_S = 30.0
"""Without a watchdog, how often ``STATUS=`` is refreshed for ``systemctl status``."""


def sd_notify(*lines: str) -> bool:
    """Tell systemd about our state (``READY=1``, ``STATUS=…``); a no-op outside ``Type=notify``."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr[0] == "@":
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(addr)
            s.sendall("\n".join(lines).encode())
    except OSError as exc:
        log.warning("sd_notify_failed", error=str(exc))
        return False
    return True


def watchdog_interval() -> float | None:
    """Half of ``$WATCHDOG_USEC`` in seconds, when systemd's watchdog is on for this process."""
    usec, pid = os.environ.get("WATCHDOG_USEC", ""), os.environ.get("WATCHDOG_PID", "")
    try:
        if not usec or int(usec) <= 0 or (pid and int(pid) != os.getpid()):
            return None
        return int(usec) / 2_000_000
    except ValueError:
        log.warning("watchdog_env_invalid", watchdog_usec=usec, watchdog_pid=pid)
        return None


async def notify_loop(status: Callable[[], str], watchdog: float | None) -> None:
    """Ping systemd from the loop itself, so a wedged loop stops the pings and gets us restarted.

    With the watchdog on, ``WATCHDOG=1`` goes out every half ``WATCHDOG_USEC``; either way the
    ``STATUS=`` line (``status()``) is refreshed for ``systemctl status``.
    """
    while True:
        if watchdog is not None:
            sd_notify("WATCHDOG=1", f"STATUS={status()}")
        else:
            sd_notify(f"STATUS={status()}")
        await asyncio.sleep(watchdog if watchdog is not None else STATUS_EVERY_S)
