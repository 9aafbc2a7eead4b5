"""Operator notifications: severities, dedup, digest, redaction, splitting and retried delivery.

::

    notifier.notify(1, "escalated:calc#12", text, [Action("retry", "calc#12", "Retry")])
        │  redact(text) ─ sev1: once per key, ever (SeenStore) ─ sev2: once per key per window ─ sev3: digest
        ▼
    queue ──► one worker task ──► send(Message) per ≤4096-unit chunk, 429 and network errors retried

:class:`Notifier` never blocks its caller on the network: :meth:`Notifier.notify` is a plain function that
queues, and one background task delivers in order (so a split message keeps its order, and a 429 holds
back everything behind it, which is what flood control asks for). It knows nothing about aiogram: the
``send`` callable is the seam (``TelegramSender`` in ``control/telegram.py`` in the daemon, a list in tests).
``send`` signals "try again later" by raising an exception with a numeric ``retry_after`` attribute (as
aiogram's ``TelegramRetryAfter`` does) or :class:`TransientSendError` (network, 5xx); anything else is
permanent and the message is dropped with an error log.

A sev1 key is recorded in the :class:`SeenStore` *before* the message is handed to the worker: a crash
between the two loses the message rather than sending it twice (the journal still has the event).

Every notification accepted (not suppressed by dedup) is handed to the optional ``journal`` callable as
one :func:`notification_event` (kind, severity, key, channel, redacted and truncated text); the daemon
writes it to the event journal as ``notification_sent`` (docs/events.md).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar, get_args

from agentos import logging as alog
from agentos.errors import AgentosError
from agentos.ports import Action, ActionKind
from agentos.redact import redact

__all__ = [
    "CALLBACK_PREFIX",
    "TELEGRAM_TEXT_LIMIT",
    "Action",
    "ActionKind",
    "MemorySeenStore",
    "Message",
    "Notifier",
    "SeenStore",
    "Severity",
    "TransientSendError",
    "action_button",
    "backoff_delay",
    "buttons",
    "issue_button",
    "notification_event",
    "retry_delay",
    "retry_send",
    "split_text",
    "text_units",
]

log = alog.get_logger("agentos.notify")

T = TypeVar("T")
Severity = Literal[1, 2, 3]
Sleep = Callable[[float], Awaitable[None]]
Channel = Literal["telegram", "digest", "none"]
Journal = Callable[[dict[str, str | int]], None]

TELEGRAM_TEXT_LIMIT = 4096
"""Telegram's limit for one message's text, in UTF-16 code units (what Telegram counts)."""
CALLBACK_PREFIX = "act"
"""Prefix of button callback data; ``ActionCallback`` in ``control/telegram.py`` unpacks the same format."""
_CALLBACK_LIMIT = 64  # bytes, Telegram's limit for callback_data
_JOURNAL_TEXT_CHARS = 500  # of a notification's text kept in its journal event
_ACTIONS: frozenset[str] = frozenset(get_args(ActionKind))


class TransientSendError(AgentosError):
    """A send that failed for a reason worth retrying (network error, timeout, server error)."""


@dataclass(frozen=True, slots=True)
class Message:
    """One outbound notification (or one chunk of a long one).

    ``actions`` are the domain actions the operator may take (:class:`agentos.ports.Action`); the Telegram
    sender renders them as buttons (:func:`buttons`). ``seq`` is unique per :class:`Notifier` for every chunk
    it sends (0 for messages built elsewhere) so a sender can skip chats it already reached when retried.
    """

    text: str
    severity: Severity
    key: str
    actions: tuple[Action, ...] = ()
    seq: int = 0

    @property
    def buttons(self) -> list[tuple[str, str]]:
        """The actions as ``(label, callback_data or URL)`` pairs (:func:`buttons`)."""
        return buttons(self.actions)


class SeenStore(Protocol):
    """Keys of sev1 notifications already sent; the daemon backs it with its state file."""

    def has(self, key: str) -> bool: ...

    def add(self, key: str) -> None: ...


class MemorySeenStore:
    """A :class:`SeenStore` in memory (tests, and a daemon that runs without a state file)."""

    def __init__(self, keys: Sequence[str] = ()) -> None:
        self.keys: set[str] = set(keys)

    def __repr__(self) -> str:
        return f"<MemorySeenStore keys={len(self.keys)}>"

    def has(self, key: str) -> bool:
        return key in self.keys

    def add(self, key: str) -> None:
        self.keys.add(key)


# ---------------------------------------------------------------- pure policy


def text_units(text: str) -> int:
    """The length of ``text`` as Telegram counts it: UTF-16 code units (an emoji may count 2)."""
    return len(text.encode("utf-16-le")) // 2


def _cut(line: str, limit: int) -> int:
    """The largest ``i`` with ``text_units(line[:i]) <= limit``, preferring a cut after a space."""
    units = 0
    cut = len(line)
    for i, ch in enumerate(line):
        units += 2 if ord(ch) > 0xFFFF else 1
        if units > limit:
            cut = i
            break
    space = line.rfind(" ", 0, cut)
    if space >= cut // 2:
        return space + 1
    return max(cut, 1)


def split_text(text: str, limit: int = TELEGRAM_TEXT_LIMIT) -> list[str]:
    """Split ``text`` into chunks of at most ``limit`` UTF-16 units, on line boundaries when possible.

    A line longer than ``limit`` is cut at its last space in the window (or hard, mid-word). Nothing is
    dropped except chunks that are only whitespace, which Telegram would reject as empty.
    """
    if limit < 2:
        raise ValueError("limit must be at least 2 (a character may take 2 UTF-16 units)")
    pieces: list[str] = []
    for line in text.splitlines(keepends=True):
        while text_units(line) > limit:
            at = _cut(line, limit)
            pieces.append(line[:at])
            line = line[at:]
        pieces.append(line)
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    for piece in pieces:
        units = text_units(piece)
        if current and size + units > limit:
            chunks.append("".join(current))
            current, size = [], 0
        current.append(piece)
        size += units
    if current:
        chunks.append("".join(current))
    return [chunk for chunk in chunks if chunk.strip()]


def notification_event(message: Message, channel: Channel) -> dict[str, str | int]:
    """The ``data`` of the ``notification_sent`` journal event for ``message`` (its text already redacted).

    ``kind`` is the key up to its first ``:`` (``escalated``, ``review``, ``digest``, ``merged`` …); the text
    is cut to 500 characters; ``channel`` is ``telegram``, ``digest`` (sev3, batched) or ``none`` (no transport).
    """
    text = message.text if len(message.text) <= _JOURNAL_TEXT_CHARS else message.text[: _JOURNAL_TEXT_CHARS - 1] + "…"
    return {
        "kind": message.key.split(":", 1)[0],
        "severity": message.severity,
        "key": message.key,
        "channel": channel,
        "text": text,
    }


def backoff_delay(attempt: int, *, base: float = 1.0, cap: float = 60.0) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based): ``base · 2^(attempt-1)``, capped."""
    if attempt < 1:
        raise ValueError("attempt is 1-based")
    return float(min(cap, base * 2 ** min(attempt - 1, 32)))


def retry_delay(exc: BaseException, attempt: int, *, base: float = 1.0, cap: float = 60.0) -> float | None:
    """How long to wait before retrying after ``exc``, or ``None`` when it is not worth retrying.

    An exception carrying a numeric ``retry_after`` (aiogram's ``TelegramRetryAfter``, a 429) waits exactly
    that; :class:`TransientSendError`, ``OSError`` and ``TimeoutError`` back off exponentially.
    """
    retry_after = getattr(exc, "retry_after", None)
    if isinstance(retry_after, int | float) and not isinstance(retry_after, bool) and retry_after >= 0:
        return float(retry_after)
    if isinstance(exc, TransientSendError | OSError | TimeoutError):
        return backoff_delay(attempt, base=base, cap=cap)
    return None


async def retry_send(
    call: Callable[[], Awaitable[T]],
    *,
    sleep: Sleep = asyncio.sleep,
    max_attempts: int = 6,
    base_delay: float = 1.0,
    max_delay: float = 60.0,
) -> T:
    """Await ``call()``, retrying per :func:`retry_delay` up to ``max_attempts`` calls; re-raise the last error."""
    attempt = 1
    while True:
        try:
            return await call()
        except Exception as exc:
            delay = retry_delay(exc, attempt, base=base_delay, cap=max_delay)
            if delay is None or attempt >= max_attempts:
                raise
            log.warning("send_retrying", attempt=attempt, delay_s=delay, error=type(exc).__name__)
            await sleep(delay)
            attempt += 1


def action_button(label: str, action: ActionKind, ref: str) -> tuple[str, str]:
    """A ``(label, callback_data)`` button that makes the bot call ``controller.<action>(ref)`` when pressed.

    Raises ``ValueError`` when ``ref`` contains ``:`` or the data would exceed Telegram's 64 bytes.
    """
    if action not in _ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    if ":" in ref or not ref:
        raise ValueError(f"ref {ref!r} must be non-empty and contain no ':'")
    data = f"{CALLBACK_PREFIX}:{action}:{ref}"
    if len(data.encode()) > _CALLBACK_LIMIT:
        raise ValueError(f"callback data {data!r} exceeds {_CALLBACK_LIMIT} bytes")
    return (label, data)


def issue_button(url: str, task_id: str, label: str = "Open issue") -> tuple[str, str]:
    """A button that opens the task's issue: a URL button for a web forge (GitHub), otherwise a ``show`` action
    that makes the bot reply with the issue's text (the local forge's issues are files on the daemon's disk)."""
    if url.startswith(("https://", "http://")):
        return (label, url)
    return action_button(label, "show", task_id)


def buttons(actions: Sequence[Action]) -> list[tuple[str, str]]:
    """Domain actions as ``(label, data)`` button pairs: ``act:<kind>:<ref>`` callback data, or the issue's URL.

    A ref too long for Telegram's 64-byte callback data drops the callback buttons (``/retry ID`` still
    works); a URL button survives.
    """
    try:
        return [
            issue_button(a.url, a.ref, a.label or "Open issue")
            if a.kind == "show"
            else action_button(a.label or a.kind.capitalize(), a.kind, a.ref)
            for a in actions
        ]
    except ValueError:
        return [(a.label or "Open issue", a.url) for a in actions if a.url.startswith(("https://", "http://"))]


# ---------------------------------------------------------------- the notifier


class Notifier:
    """Routes notifications by severity, deduplicates them and delivers them in the background.

    ``send`` is called once per chunk from a single worker task; ``None`` means no transport (Telegram
    disabled): messages are logged and dropped, deduplication still applies. ``clock`` and ``sleep`` are
    injected so tests need no real time. ``journal`` receives one :func:`notification_event` per accepted
    notification (the daemon journals it). Call :meth:`notify` on the daemon's event loop.
    """

    def __init__(
        self,
        send: Callable[[Message], Awaitable[None]] | None,
        *,
        seen: SeenStore,
        clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
        dedup_window_s: float = 3600.0,
        max_attempts: int = 6,
        base_delay_s: float = 1.0,
        max_delay_s: float = 60.0,
        limit: int = TELEGRAM_TEXT_LIMIT,
        journal: Journal | None = None,
    ) -> None:
        self._send = send
        self._journal = journal
        self._seen = seen
        self._clock = clock
        self._sleep = sleep
        self._window = dedup_window_s
        self._max_attempts = max_attempts
        self._base_delay = base_delay_s
        self._max_delay = max_delay_s
        self._limit = limit
        self._queue: asyncio.Queue[Message] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._last_sent: dict[str, float] = {}
        self._digest: dict[str, Message] = {}
        self._seq = 0
        self._closed = False
        self.sent = 0
        self.failed = 0
        self.suppressed = 0

    def __repr__(self) -> str:
        return (
            f"<Notifier sent={self.sent} failed={self.failed} suppressed={self.suppressed} "
            f"queued={self._queue.qsize()} digest={len(self._digest)}>"
        )

    @property
    def pending(self) -> int:
        """Chunks waiting for the worker (not counting one being sent)."""
        return self._queue.qsize()

    def notify(self, severity: Severity, key: str, text: str, actions: Sequence[Action] = ()) -> bool:
        """Accept a notification; ``False`` when deduplication suppressed it (or the notifier is closed).

        sev1: sent at once, and never again for the same ``key``. sev2: sent at once, then suppressed for
        ``dedup_window_s`` per ``key``. sev3: kept for :meth:`drain_digest` (first text per key wins).
        """
        if severity not in (1, 2, 3):
            raise ValueError(f"severity must be 1, 2 or 3, not {severity!r}")
        if not text.strip():
            raise ValueError("a notification needs text")
        if self._closed:
            log.warning("notify_after_close", key=key, severity=severity)
            return False
        safe_text = redact(text)
        safe_actions = tuple(Action(a.kind, a.ref, redact(a.label), a.url) for a in actions)
        if severity == 1:
            if self._seen.has(key):
                return self._suppress(key, severity)
            self._seen.add(key)
        elif severity == 2:
            now = self._clock()
            last = self._last_sent.get(key)
            if last is not None and now - last < self._window:
                return self._suppress(key, severity)
            self._last_sent[key] = now
            self._prune(now)
        else:
            if key in self._digest:
                return self._suppress(key, severity)
            self._digest[key] = Message(safe_text, severity, key, safe_actions)
            self._record(self._digest[key], "digest")
            return True
        message = Message(safe_text, severity, key, safe_actions)
        self._record(message, "none" if self._send is None else "telegram")
        self._enqueue(message)
        return True

    def drain_digest(self) -> list[Message]:
        """The sev3 messages gathered since the last call, oldest first; the digest starts empty again."""
        messages = list(self._digest.values())
        self._digest.clear()
        return messages

    async def aclose(self, timeout: float | None = 10.0) -> None:
        """Stop accepting notifications, deliver what is queued (up to ``timeout`` s), stop the worker."""
        self._closed = True
        worker = self._worker
        if worker is None:
            return
        if not worker.done():
            try:
                async with asyncio.timeout(timeout):
                    await self._queue.join()
            except TimeoutError:
                log.warning("notify_flush_timed_out", dropped=self._queue.qsize())
            worker.cancel()
            await asyncio.wait({worker})
        self._worker = None

    # ------------------------------------------------------------ internals

    def _record(self, message: Message, channel: Channel) -> None:
        if self._journal is None:
            return
        try:
            self._journal(notification_event(message, channel))
        except (OSError, AgentosError) as exc:  # a journal that cannot be written must not stop the message
            log.error("notify_journal_failed", key=message.key, error=redact(str(exc)))

    def _suppress(self, key: str, severity: Severity) -> bool:
        self.suppressed += 1
        log.debug("notify_suppressed", key=key, severity=severity)
        return False

    def _prune(self, now: float) -> None:
        if len(self._last_sent) > 1024:
            self._last_sent = {k: t for k, t in self._last_sent.items() if now - t < self._window}

    def _enqueue(self, message: Message) -> None:
        if self._send is None:
            log.info("notify_unsent", key=message.key, severity=message.severity, reason="no transport")
            return
        chunks = split_text(message.text, self._limit)
        for i, chunk in enumerate(chunks):
            self._seq += 1
            last = i == len(chunks) - 1
            self._queue.put_nowait(
                Message(chunk, message.severity, message.key, message.actions if last else (), self._seq)
            )
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._run(self._send), name="notifier")

    async def _run(self, send: Callable[[Message], Awaitable[None]]) -> None:
        while True:
            message = await self._queue.get()
            try:
                await retry_send(
                    functools.partial(send, message),
                    sleep=self._sleep,
                    max_attempts=self._max_attempts,
                    base_delay=self._base_delay,
                    max_delay=self._max_delay,
                )
                self.sent += 1
            except Exception as exc:  # the worker's boundary: one bad message must not stop the others
                self.failed += 1
                log.error(
                    "notify_failed",
                    key=message.key,
                    severity=message.severity,
                    error_type=type(exc).__name__,
                    error=redact(str(exc)),
                )
            finally:
                self._queue.task_done()
