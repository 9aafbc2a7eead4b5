"""Who asked for the command being run: ``ctl``, ``telegram:<chat id>``, or ``operator`` when no surface said.

The surfaces (the control socket, the Telegram bot) run each operator command inside :func:`calling`, and the
audit records (``pr_approved``, ``operator_retry``, ``operator_cancel``, ``operator_close``) read :func:`current`.
A context variable, so the command table and the controller's signatures stay as they are; it follows the
command's own task only.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["calling", "current"]

_CALLER: ContextVar[str] = ContextVar("agentos_caller", default="operator")


@contextmanager
def calling(who: str) -> Iterator[None]:
    """Run the block as ``who``."""
    token = _CALLER.set(who)
    try:
        yield
    finally:
        _CALLER.reset(token)


def current() -> str:
    """Who runs the current command."""
    return _CALLER.get()
