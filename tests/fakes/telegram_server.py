"""A fake Telegram Bot API on 127.0.0.1: real HTTP, so the real aiogram ``Bot`` and ``Dispatcher`` run against it.

Point aiogram at it with ``fake.session()`` (an ``AiohttpSession`` on ``TelegramAPIServer.from_base(fake.url)``
whose ``close()`` skips aiogram's 0.25 s grace sleep) or with ``api_base=fake.url``.

Served: ``POST /bot<token>/<method>`` for getMe, getUpdates (long polling: ``offset`` confirms, ``timeout``
is honoured, a queued update answers at once), sendMessage, editMessageText, editMessageReplyMarkup,
answerCallbackQuery, setMyCommands, deleteWebhook, close. Requests arrive as aiogram sends them: form
fields, nested objects as JSON strings. Everything is recorded; tests inject updates with
:meth:`FakeTelegram.inject_message` / :meth:`FakeTelegram.inject_callback` and make the next calls fail with
:meth:`FakeTelegram.fail_next` (a 429 with ``retry_after``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest_asyncio
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiohttp import web

__all__ = ["Call", "FakeTelegram", "FastAiohttpSession", "SentMessage", "fake_telegram"]

TOKEN = "123456789:AAH" + "fake" * 8 + "0"  # the real shape: redact() must catch it
BOT_ID = 123456789
JSON_FIELDS = frozenset({"reply_markup", "allowed_updates", "commands", "scope", "link_preview_options"})


@dataclass
class Call:
    """One request the fake received: the method name as sent and its decoded parameters."""

    method: str
    params: dict[str, Any]


@dataclass
class SentMessage:
    """A message the bot sent (``sendMessage``), updated in place by later edits."""

    message_id: int
    chat_id: int
    text: str
    reply_markup: dict[str, Any] | None = None
    edits: int = 0

    @property
    def buttons(self) -> list[tuple[str, str]]:
        """``(label, callback_data or url)`` for every inline button, row by row."""
        rows = (self.reply_markup or {}).get("inline_keyboard", [])
        return [(b["text"], b.get("callback_data") or b.get("url", "")) for row in rows for b in row]


@dataclass
class _Failures:
    remaining: int = 0
    methods: frozenset[str] | None = None
    retry_after: int = 1
    chat_id: int | None = None
    served: list[str] = field(default_factory=list)


class FastAiohttpSession(AiohttpSession):
    """aiogram's session without the 0.25 s sleep in ``close()`` (meant for TLS teardown; we are on loopback)."""

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()


class FakeTelegram:
    """The fake Bot API server and everything it recorded."""

    def __init__(
        self, token: str = TOKEN, *, username: str = "agentos_test_bot", clock: Callable[[], float] = time.time
    ) -> None:
        self.token = token
        self.username = username
        self.clock = clock
        self.calls: list[Call] = []
        self.sent: list[SentMessage] = []
        self.edits: list[dict[str, Any]] = []
        self.answers: list[dict[str, Any]] = []
        self.commands: list[list[dict[str, Any]]] = []
        self.updates: list[dict[str, Any]] = []  # pending (not yet confirmed by an offset)
        self.injected: list[dict[str, Any]] = []
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(1)
        self._callback_ids = itertools.count(1)
        self._failures = _Failures()
        self._changed = asyncio.Event()
        self._closing = False
        self._runner: web.AppRunner | None = None
        self._sessions: list[FastAiohttpSession] = []
        self.url = ""

    def __repr__(self) -> str:
        return f"<FakeTelegram {self.url} calls={len(self.calls)} sent={len(self.sent)} pending={len(self.updates)}>"

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Listen on an ephemeral port of 127.0.0.1; :attr:`url` is the API base."""
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def close(self) -> None:
        """Release long polls, close sessions made by :meth:`session`, stop the server."""
        self._closing = True
        self._signal()
        for session in self._sessions:
            await session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def session(self) -> FastAiohttpSession:
        """An aiogram session pointed at this server (closed by :meth:`close`)."""
        session = FastAiohttpSession(api=TelegramAPIServer.from_base(self.url))
        self._sessions.append(session)
        return session

    # ------------------------------------------------------------ test controls

    def fail_next(
        self, n: int, *, methods: Iterable[str] | None = None, retry_after: int = 1, chat_id: int | None = None
    ) -> None:
        """Answer the next ``n`` calls with a 429 ``retry_after``.

        Only calls of ``methods`` (case-insensitive; default all) and, if given, for ``chat_id`` count.
        """
        names = frozenset(m.lower() for m in methods) if methods is not None else None
        self._failures = _Failures(remaining=n, methods=names, retry_after=retry_after, chat_id=chat_id)

    @property
    def rejected(self) -> list[str]:
        """Methods answered with a 429 by :meth:`fail_next`, in order."""
        return self._failures.served

    def inject_message(
        self,
        chat_id: int,
        text: str,
        *,
        user_id: int | None = None,
        date: float | None = None,
        chat_type: str = "private",
    ) -> int:
        """Queue a text message from ``user_id`` (default: ``chat_id``) in ``chat_id``; returns its update_id."""
        message: dict[str, Any] = {
            "message_id": next(self._message_ids),
            "date": int(self.clock() if date is None else date),
            "chat": self._chat(chat_id, chat_type),
            "from": self._user(user_id if user_id is not None else chat_id),
            "text": text,
        }
        if text.startswith("/"):
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
        return self._push({"message": message})

    def inject_callback(
        self, chat_id: int, data: str, *, user_id: int | None = None, message_id: int | None = None
    ) -> str:
        """Queue a button press with ``data`` on ``message_id`` (default: the bot's last message to the chat).

        Returns the callback query id, to find its answer in :attr:`answers`.
        """
        sent = [m for m in self.sent if m.chat_id == chat_id and (message_id is None or m.message_id == message_id)]
        target = sent[-1] if sent else None
        callback_id = str(next(self._callback_ids))
        query: dict[str, Any] = {
            "id": callback_id,
            "from": self._user(user_id if user_id is not None else chat_id),
            "chat_instance": f"ci-{chat_id}",
            "data": data,
            "message": {
                "message_id": target.message_id if target else (message_id or next(self._message_ids)),
                "date": int(self.clock()),
                "chat": self._chat(chat_id, "private"),
                "from": {"id": BOT_ID, "is_bot": True, "first_name": "agentos", "username": self.username},
                "text": target.text if target else "(message)",
            },
        }
        if target is not None and target.reply_markup:
            query["message"]["reply_markup"] = target.reply_markup
        self._push({"callback_query": query})
        return callback_id

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 3.0) -> None:
        """Wait until ``predicate()`` holds (checked on every request the fake serves, and every 10 ms)."""
        async with asyncio.timeout(timeout):
            while not predicate():
                try:  # woken by every request; re-checked every 10 ms for predicates on other state
                    async with asyncio.timeout(0.01):
                        await self._changed.wait()
                except TimeoutError:
                    pass

    async def wait_sent(self, count: int, *, chat_id: int | None = None, timeout: float = 3.0) -> list[SentMessage]:
        """Wait until at least ``count`` messages were sent (to ``chat_id`` if given); return those."""

        def matching() -> list[SentMessage]:
            return [m for m in self.sent if chat_id is None or m.chat_id == chat_id]

        await self.wait_for(lambda: len(matching()) >= count, timeout)
        return matching()

    def called(self, method: str) -> list[Call]:
        """The recorded calls of ``method`` (case-insensitive)."""
        return [c for c in self.calls if c.method.lower() == method.lower()]

    # ------------------------------------------------------------ internals

    def _chat(self, chat_id: int, chat_type: str) -> dict[str, Any]:
        chat: dict[str, Any] = {"id": chat_id, "type": chat_type}
        if chat_type == "private":
            chat["first_name"] = f"user{chat_id}"
        else:
            chat["title"] = f"group{chat_id}"
        return chat

    def _user(self, user_id: int) -> dict[str, Any]:
        return {"id": user_id, "is_bot": False, "first_name": f"Op{user_id}", "username": f"op{user_id}"}

    def _push(self, payload: dict[str, Any]) -> int:
        update = {"update_id": next(self._update_ids), **payload}
        self.updates.append(update)
        self.injected.append(update)
        self._signal()
        return int(update["update_id"])

    def _signal(self) -> None:
        """Wake every waiter; each re-checks its condition and waits on the fresh event."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await self._params(request)
        self.calls.append(Call(method, params))
        self._signal()
        try:
            if request.match_info["token"] != self.token:
                return self._error(401, "Unauthorized")
            failures = self._failures
            if (
                failures.remaining > 0
                and (failures.methods is None or method.lower() in failures.methods)
                and (failures.chat_id is None or str(params.get("chat_id")) == str(failures.chat_id))
            ):
                failures.remaining -= 1
                failures.served.append(method)
                return web.json_response(
                    {
                        "ok": False,
                        "error_code": 429,
                        "description": f"Too Many Requests: retry after {failures.retry_after}",
                        "parameters": {"retry_after": failures.retry_after},
                    },
                    status=429,
                )
            handler = getattr(self, f"_m_{method.lower()}", None)
            if handler is None:
                return self._error(404, "Not Found: method not found")
            result = await handler(params)
            if isinstance(result, web.Response):
                return result
            return web.json_response({"ok": True, "result": result})
        finally:
            self._signal()

    @staticmethod
    async def _params(request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        if request.content_type == "application/json":
            params.update(await request.json())
        elif request.can_read_body:
            form = await request.post()
            params.update({k: v for k, v in form.items() if isinstance(v, str)})
        for key in JSON_FIELDS & params.keys():
            if isinstance(params[key], str):
                params[key] = json.loads(params[key])
        return params

    @staticmethod
    def _error(code: int, description: str) -> web.Response:
        return web.json_response({"ok": False, "error_code": code, "description": description}, status=code)

    def _message_json(self, message: SentMessage) -> dict[str, Any]:
        body: dict[str, Any] = {
            "message_id": message.message_id,
            "date": int(self.clock()),
            "chat": self._chat(message.chat_id, "private" if message.chat_id > 0 else "group"),
            "from": {"id": BOT_ID, "is_bot": True, "first_name": "agentos", "username": self.username},
            "text": message.text,
        }
        if message.reply_markup:
            body["reply_markup"] = message.reply_markup
        return body

    def _find(self, params: dict[str, Any]) -> SentMessage | None:
        chat_id, message_id = int(params.get("chat_id", 0)), int(params.get("message_id", 0))
        for message in self.sent:
            if message.chat_id == chat_id and message.message_id == message_id:
                return message
        return None

    # ------------------------------------------------------------ Bot API methods

    async def _m_getme(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"id": BOT_ID, "is_bot": True, "first_name": "agentos", "username": self.username}

    async def _m_getupdates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        offset = int(params.get("offset") or 0)
        timeout = float(params.get("timeout") or 0)
        limit = int(params.get("limit") or 100)
        if offset > 0:
            self.updates = [u for u in self.updates if u["update_id"] >= offset]
        if not self.updates and timeout > 0 and not self._closing:
            try:
                await self.wait_for(lambda: bool(self.updates) or self._closing, timeout)
            except TimeoutError:
                pass
        return self.updates[:limit]

    async def _m_sendmessage(self, params: dict[str, Any]) -> dict[str, Any] | web.Response:
        text = str(params.get("text", ""))
        if not text.strip():
            return self._error(400, "Bad Request: message text is empty")
        if len(text.encode("utf-16-le")) // 2 > 4096:
            return self._error(400, "Bad Request: message is too long")
        message = SentMessage(next(self._message_ids), int(params["chat_id"]), text, params.get("reply_markup"))
        self.sent.append(message)
        return self._message_json(message)

    async def _m_editmessagetext(self, params: dict[str, Any]) -> dict[str, Any] | web.Response:
        self.edits.append(params)
        message = self._find(params)
        if message is None:
            return self._error(400, "Bad Request: message to edit not found")
        message.text = str(params.get("text", ""))
        message.reply_markup = params.get("reply_markup")
        message.edits += 1
        return self._message_json(message)

    async def _m_editmessagereplymarkup(self, params: dict[str, Any]) -> dict[str, Any] | web.Response:
        self.edits.append(params)
        message = self._find(params)
        if message is None:
            return self._error(400, "Bad Request: message to edit not found")
        message.reply_markup = params.get("reply_markup")
        message.edits += 1
        return self._message_json(message)

    async def _m_answercallbackquery(self, params: dict[str, Any]) -> bool:
        self.answers.append(params)
        return True

    async def _m_setmycommands(self, params: dict[str, Any]) -> bool:
        self.commands.append(list(params.get("commands", [])))
        return True

    async def _m_deletewebhook(self, params: dict[str, Any]) -> bool:
        return True

    async def _m_close(self, params: dict[str, Any]) -> bool:
        return True


@pytest_asyncio.fixture
async def fake_telegram() -> AsyncIterator[FakeTelegram]:
    """A started :class:`FakeTelegram`, closed after the test."""
    fake = FakeTelegram()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.close()
