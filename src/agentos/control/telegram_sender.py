"""Sending to Telegram: notifications to every allowed chat, their buttons, and Bot API errors sorted.

:class:`TelegramSender` is the :class:`~agentos.ops.notify.Notifier`'s transport; :func:`keyboard`
renders a notification's buttons (the one place that does); :func:`bot_api` turns network and 5xx
failures into :class:`~agentos.ops.notify.TransientSendError`, which the callers retry. The command
bot (:mod:`agentos.control.telegram`) sends its replies through the same :func:`bot_api`.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TypeVar

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramNetworkError, TelegramServerError
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup

from agentos import logging as alog
from agentos.ops.notify import Message, TransientSendError
from agentos.redact import redact

__all__ = ["TelegramSender", "bot_api", "keyboard"]

log = alog.get_logger("agentos.telegram")

T = TypeVar("T")


def keyboard(buttons: Sequence[tuple[str, str]], *, per_row: int = 3) -> InlineKeyboardMarkup | None:
    """An inline keyboard from ``(label, callback_data)`` pairs; an ``http(s)://`` value makes a URL button."""
    if not buttons:
        return None
    row: list[InlineKeyboardButton] = []
    rows: list[list[InlineKeyboardButton]] = []
    for label, data in buttons:
        if data.startswith(("https://", "http://")):
            row.append(InlineKeyboardButton(text=label, url=data))
        else:
            row.append(InlineKeyboardButton(text=label, callback_data=data))
        if len(row) == per_row:
            rows.append(row)
            row = []
    if row:
        rows.append(row)
    return InlineKeyboardMarkup(inline_keyboard=rows)


async def bot_api(call: Callable[[], Awaitable[T]]) -> T:
    """Await a Bot API call, turning network and 5xx failures into :class:`TransientSendError`."""
    try:
        return await call()
    except (TelegramNetworkError, TelegramServerError) as exc:
        raise TransientSendError(redact(str(exc))) from exc


class TelegramSender:
    """Delivers a :class:`~agentos.ops.notify.Message` to every allowed chat (the ``Notifier``'s ``send``).

    A 429 or a network error propagates so the Notifier retries; chats already reached for that message
    (by ``Message.seq``) are skipped on the retry. A permanent error for one chat (bot blocked, chat
    gone) is logged and that chat skipped, so one bad chat does not hold back the others.
    """

    def __init__(self, bot: Bot, chat_ids: Iterable[int]) -> None:
        self._bot = bot
        self._chat_ids = tuple(sorted(set(chat_ids)))
        self._reached: dict[int, set[int]] = {}
        self.sent = 0

    def __repr__(self) -> str:
        return f"<TelegramSender chats={len(self._chat_ids)} sent={self.sent}>"

    async def __call__(self, message: Message) -> None:
        markup = keyboard(message.buttons)
        reached = self._reached.setdefault(message.seq, set()) if message.seq else set()
        for chat_id in self._chat_ids:
            if chat_id in reached:
                continue
            try:
                await bot_api(functools.partial(self._bot.send_message, chat_id, message.text, reply_markup=markup))
                self.sent += 1
            except TelegramAPIError as exc:
                if getattr(exc, "retry_after", None) is not None:
                    raise
                log.error("telegram_send_failed", chat_id=chat_id, key=message.key, error=redact(str(exc)))
            reached.add(chat_id)
        self._reached.pop(message.seq, None)
        while len(self._reached) > 256:  # give-ups leave entries behind; keep the newest
            self._reached.pop(next(iter(self._reached)))
