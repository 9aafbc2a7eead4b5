"""The bot's two outer ``update`` middlewares: which chats may speak, and which handlers are in flight."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import Chat, TelegramObject, User

from agentos import logging as alog

__all__ = ["AllowedChats", "InFlight"]

log = alog.get_logger("agentos.telegram")

Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]


class AllowedChats(BaseMiddleware):
    """Outer ``update`` middleware: drop updates from chats not in the allowlist; log each such chat once."""

    def __init__(self, allowed: frozenset[int]) -> None:
        self._allowed = allowed
        self._logged: set[int | None] = set()
        self.dropped = 0

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        chat = data.get("event_chat")
        chat_id = chat.id if isinstance(chat, Chat) else None
        if chat_id is not None and chat_id in self._allowed:
            return await handler(event, data)
        self.dropped += 1
        if chat_id not in self._logged and len(self._logged) < 10_000:
            self._logged.add(chat_id)
            user = data.get("event_from_user")
            log.warning(
                "telegram_stranger_dropped",
                chat_id=chat_id,
                user_id=user.id if isinstance(user, User) else None,
                username=user.username if isinstance(user, User) else None,
            )
        return None


class InFlight(BaseMiddleware):
    """Outer ``update`` middleware counting handlers in progress, so :meth:`TelegramBot.stop` can drain them."""

    def __init__(self) -> None:
        self.count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        self.count += 1
        self._idle.clear()
        try:
            return await handler(event, data)
        finally:
            self.count -= 1
            if self.count == 0:
                self._idle.set()

    async def wait_idle(self) -> None:
        await self._idle.wait()
