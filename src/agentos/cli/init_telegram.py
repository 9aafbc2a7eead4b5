"""``agentos init``, Telegram: pair a chat by reading the ``/start`` sent to the bot (``getUpdates``)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.markup import escape

from agentos.cli._common import console
from agentos.cli.init_plan import Asker, InitError, Plan

if TYPE_CHECKING:
    from agentos.config import Config


def pair_telegram(api_base: str | None, token: str, timeout_s: float) -> tuple[int, str]:
    """Wait for a ``/start`` sent to the bot and return ``(chat id, bot username)``."""
    import httpx

    from agentos.cli.doctor import telegram_call

    try:
        me = telegram_call(api_base, token, "getMe")
    except httpx.HTTPError as exc:
        raise InitError(f"cannot reach the Telegram Bot API: {exc}") from None
    if not me.get("ok"):
        raise InitError(f"Telegram rejects the bot token: {me.get('description', 'unknown error')}")
    username = str((me.get("result") or {}).get("username", "your bot"))
    console.print(
        f"Send /start to @{username} from the chat that should control agentos (waiting {timeout_s:.0f} s)…",
        markup=False,
    )
    deadline = time.monotonic() + timeout_s
    offset: int | None = None
    while (left := deadline - time.monotonic()) > 0:
        poll = max(1, min(10, int(left)))
        params: dict[str, Any] = {"timeout": poll, "allowed_updates": ["message"]}
        if offset is not None:
            params["offset"] = offset
        try:
            answer = telegram_call(api_base, token, "getUpdates", params, timeout=poll + 10)
        except httpx.HTTPError as exc:
            raise InitError(f"Telegram getUpdates failed: {exc}") from None
        if not answer.get("ok"):
            if answer.get("error_code") == 409:
                raise InitError(
                    "another process reads this bot's updates (a running agentos daemon, or a webhook); "
                    "stop it, or give the chat id with --telegram-chat-id"
                )
            raise InitError(f"Telegram getUpdates: {answer.get('description', 'failed')}")
        for update in answer.get("result") or []:
            offset = int(update["update_id"]) + 1
            message = update.get("message") or {}
            words = str(message.get("text") or "").split()
            if words and words[0].split("@")[0] == "/start" and "chat" in message:
                chat_id = int(message["chat"]["id"])
                telegram_call(api_base, token, "getUpdates", {"offset": offset, "timeout": 0})  # consume it
                text = "agentos is paired with this chat. Try /status and /help."
                telegram_call(api_base, token, "sendMessage", {"chat_id": chat_id, "text": text})
                return chat_id, username
    raise InitError(
        f"no /start reached @{username} within {timeout_s:.0f} s; run init again, or give --telegram-chat-id"
    )


def ask_telegram(
    ask: Asker,
    plan: Plan,
    existing: Config | None,
    token: str | None,
    timeout: float,
    secrets: dict[str, str],
    creds: Path,
) -> None:
    from agentos.cli.doctor import find_secret

    had = bool(existing and existing.telegram.enabled and existing.telegram.allowed_chat_ids)
    if token is None and not plan.telegram_chat_ids:
        if not ask.interactive or not ask.confirm("Set up Telegram (notifications and control)?", default=False):
            return
        found, source = find_secret("telegram_bot_token", "TELEGRAM_BOT_TOKEN", os.environ, [creds])
        if found and ask.confirm(f"Use the bot token from {source}?", default=True):
            token = found
        else:
            token = ask.text("Bot token from @BotFather (input hidden)", None, flag="--telegram-token", hide=True)
    if token is None:
        return  # chat ids given, token kept where it is
    secrets["telegram_bot_token"] = token
    api_base = plan.telegram_api_base or (existing.telegram.api_base if existing else None)
    if plan.telegram_chat_ids:
        return
    if had and not ask.confirm("Pair another chat?", default=False):
        return
    try:
        chat_id, bot = pair_telegram(api_base, token, timeout)
    except InitError as exc:
        if not ask.interactive:
            raise
        console.print(f"[yellow]{escape(str(exc))}[/yellow]")
        entered = ask.integer("Chat id (empty: skip Telegram for now)", None, flag="--telegram-chat-id", empty=True)
        if entered is None:
            secrets.pop("telegram_bot_token", None)
            return
        chat_id, bot = entered, "the bot"
    console.print(f"Telegram: paired chat {chat_id} with @{bot}", markup=False)
    plan.telegram_chat_ids.append(chat_id)
