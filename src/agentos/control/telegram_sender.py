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
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.session.base import BaseSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramAPIError, TelegramNetworkError, TelegramServerError
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from aiogram.utils.token import TokenValidationError

from agentos import logging as alog
from agentos.errors import ControlError
from agentos.ops.notify import Message, TransientSendError
from agentos.redact import redact

__all__ = ["TelegramSender", "bot_api", "keyboard", "telegram_client"]

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


def telegram_client(token: str, *, api_base: str | None = None, session: BaseSession | None = None) -> Bot:
    """An aiogram ``Bot`` for ``token`` (on ``api_base``: a local ``telegram-bot-api`` or a test fake), over
    ``session`` or a new aiohttp one; a malformed token raises :class:`ControlError`. No request is made."""
    if session is None:
        session = AiohttpSession()
    if api_base:
        session.api = TelegramAPIServer.from_base(api_base)
    try:
        return Bot(token, session=session, default=DefaultBotProperties(link_preview_is_disabled=True))
    except TokenValidationError:
        raise ControlError("telegram: the bot token is malformed (expected 123456789:AA…)") from None


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

    @property
    def bot(self) -> Bot:
        """The aiogram ``Bot`` it sends through (the command bot polls through the same one)."""
        return self._bot

    @property
    def chat_ids(self) -> tuple[int, ...]:
        """The chats it sends to: the allowed ones."""
        return self._chat_ids

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
