"""The one way a test waits for something it cannot be told about: ask again until it holds, or fail saying what.

::

    task = wait_until(lambda: loop.task(tid) if loop.task(tid)["status"] == "merged" else None,
                      what=f"{tid} to be merged", timeout=60, retry=(ControlError, OSError), context=loop.debug)

A check answers "not yet" by returning something falsy, by raising :class:`NotYet`, or by raising one of the
exceptions named in ``retry`` (a daemon still starting refuses the socket). Anything else it raises fails the
wait at once: a bug in a check is a failure, not a timeout. On the deadline the failure names what was awaited,
the last "not yet" exception (if any) and ``context()`` (a daemon's log tail, say).

Prefer an event when the code under test can give one (``asyncio.Event``, a fake server's waiter); this is for
processes and files the test can only look at.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["POLL_S", "NotYet", "wait_until", "wait_until_async"]

T = TypeVar("T")

POLL_S = 0.05
"""How long to wait between two checks."""


class NotYet(Exception):
    """Raised by a check: the awaited thing does not hold yet (ask again)."""


def _timed_out(what: str, timeout: float, last: BaseException | None, context: str) -> AssertionError:
    message = f"timed out after {timeout:g}s waiting for {what}"
    if last is not None:
        message += f" (last answer: {type(last).__name__}: {last})"
    return AssertionError(f"{message}\n{context}" if context else message)


def wait_until(
    check: Callable[[], T | None],
    *,
    what: str,
    timeout: float,
    poll: float = POLL_S,
    retry: tuple[type[BaseException], ...] = (),
    context: Callable[[], str] | None = None,
) -> T:
    """Call ``check`` every ``poll`` seconds until it returns something truthy, and return that."""
    retried: tuple[type[BaseException], ...] = (NotYet, *retry)
    deadline = time.monotonic() + timeout
    while True:
        last: BaseException | None = None
        try:
            value = check()
        except retried as exc:
            value, last = None, exc
        if value:
            return value
        if time.monotonic() >= deadline:
            raise _timed_out(what, timeout, last, context() if context is not None else "")
        time.sleep(poll)


async def wait_until_async(
    check: Callable[[], Awaitable[T | None] | T | None],
    *,
    what: str,
    timeout: float,
    poll: float = POLL_S,
    retry: tuple[type[BaseException], ...] = (),
    context: Callable[[], Awaitable[str] | str] | None = None,
) -> T:
    """:func:`wait_until` on the event loop: ``check`` (and ``context``) may be coroutine functions."""
    retried: tuple[type[BaseException], ...] = (NotYet, *retry)
    deadline = time.monotonic() + timeout
    while True:
        last: BaseException | None = None
        try:
            answer = check()
            value = await answer if inspect.isawaitable(answer) else answer
        except retried as exc:
            value, last = None, exc
        if value:
            return value
        if time.monotonic() >= deadline:
            said = context() if context is not None else ""
            raise _timed_out(what, timeout, last, await said if inspect.isawaitable(said) else said)
        await asyncio.sleep(poll)
