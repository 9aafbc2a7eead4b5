"""Telegram control plane: commands and buttons from allowed chats, each a call to the Controller.

::

    Bot API ──getUpdates──► Dispatcher (one task on the daemon's loop)
                              ├─ outer middleware: chat not allowed → dropped, logged once, never answered
                              ├─ message  → parse_command(text) → execute(command, controller) → reply
                              └─ button   → ActionCallback(action, ref) → the table's retry/cancel/approve/reject

The bot is a thin adapter (docs/telegram.md): it parses, calls :class:`ControllerPort`, formats the answer as
short plain text (no parse mode, so task titles cannot inject markup) and sends it through ``redact()``,
split at Telegram's length limit, with 429s waited out. :func:`parse_command`, :func:`execute` and the
reply formatting live in :mod:`agentos.control.telegram_commands` (no aiogram there) and are re-exported
here; :class:`TelegramSender` (in :mod:`agentos.control.telegram_sender`, re-exported) adapts a
:class:`~agentos.ops.notify.Notifier` to the Bot API.

Importing this module imports aiogram (about 2 s): keep it off the ``agentos ctl`` path.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TypeVar

from aiogram import Bot, Dispatcher, F, Router
from aiogram.client.session.base import BaseSession
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramUnauthorizedError,
)
from aiogram.filters.callback_data import CallbackData
from aiogram.types import (
    BotCommand,
    CallbackQuery,
)
from aiogram.types import Message as TgMessage
from aiogram.utils.backoff import BackoffConfig

from agentos import logging as alog
from agentos.caller import calling
from agentos.control.arguments import run
from agentos.control.commands import TABLE
from agentos.control.replies import duration, format_issue, one_line
from agentos.control.telegram_commands import (
    Command,
    ControllerPort,
    NotACommand,
    ParseError,
    chat_heads,
    execute,
    help_text,
    parse_command,
)
from agentos.control.telegram_middleware import AllowedChats, InFlight
from agentos.control.telegram_sender import TelegramSender, bot_api, keyboard, telegram_client
from agentos.errors import AgentosError, ControlError
from agentos.ops.notify import (
    CALLBACK_PREFIX,
    TELEGRAM_TEXT_LIMIT,
    ActionKind,
    TransientSendError,
    retry_send,
    split_text,
    text_units,
)
from agentos.redact import redact

__all__ = [
    "ActionCallback",
    "Command",
    "ControllerPort",
    "ParseError",
    "TelegramBot",
    "TelegramSender",
    "bot_commands",
    "execute",
    "help_text",
    "keyboard",
    "parse_command",
]

log = alog.get_logger("agentos.telegram")

T = TypeVar("T")
JSON = Mapping[str, object]
Sleep = Callable[[float], Awaitable[None]]


def bot_commands() -> list[BotCommand]:
    """The command menu registered with ``setMyCommands``."""
    return [BotCommand(command=head, description=text[:256]) for head, text in chat_heads().items()]


# ---------------------------------------------------------------- buttons


class ActionCallback(CallbackData, prefix=CALLBACK_PREFIX):
    """A button press: ``act:<action>:<ref>`` (built by :func:`agentos.ops.notify.action_button`)."""

    action: ActionKind
    ref: str


_ACTION_DONE = {
    "retry": "re-queued",
    "cancel": "cancelled",
    "approve": "approved",
    "reject": "rejected",
    "accept": "accepted",
    "plan_approve": "sprint plan approved",
    "plan_skip": "sprint plan skipped",
    "issue_make_ready": "made ready",
    "issue_dismiss": "dismissed",
    "wontfix": "closed as won't fix",
}
_ACTION_COMMAND: dict[str, tuple[str, dict[str, object]]] = {"wontfix": ("close", {"wontfix": True})}
"""A button whose action is not a command's name: the command and the arguments it fixes."""


# ---------------------------------------------------------------- the bot

# Delay between failed getUpdates calls (aiogram's own default); tests pass a faster one.
DEFAULT_BACKOFF = BackoffConfig(min_delay=1.0, max_delay=5.0, factor=1.3, jitter=0.1)


class TelegramBot:
    """The Telegram control plane: aiogram polling as one task on the running loop.

    ``api_base`` points aiogram at another Bot API server (a local ``telegram-bot-api`` or a test fake).
    ``token`` may be an aiogram ``Bot`` already built (:func:`telegram_client`; its session is then closed by
    :meth:`stop`). A ``session`` passed in is the caller's to close; one created here is closed by :meth:`stop`.
    ``clock`` and ``sleep`` are injected (stale-command check, 429 waits); ``backoff`` is aiogram's delay
    between failed ``getUpdates`` calls.
    """

    def __init__(
        self,
        token: str | Bot,
        controller: ControllerPort,
        allowed_chat_ids: Iterable[int],
        *,
        api_base: str | None = None,
        session: BaseSession | None = None,
        polling_timeout: int = 25,
        backoff: BackoffConfig = DEFAULT_BACKOFF,
        clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
        max_command_age_s: float = 600.0,
        command_timeout_s: float = 60.0,
    ) -> None:
        if isinstance(token, Bot):  # the daemon's, built first for the notifier's sender: handed over
            self._owns_session = True
            self._bot = token
        else:
            self._owns_session = session is None
            self._bot = telegram_client(token, api_base=api_base, session=session)
        self._controller = controller
        self._allowed = frozenset(allowed_chat_ids)
        self._polling_timeout = polling_timeout
        self._backoff = backoff
        self._clock = clock
        self._sleep = sleep
        self._max_age = max_command_age_s
        self._command_timeout = command_timeout_s
        self._username: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._started = asyncio.Event()
        self._busy_actions: set[tuple[str, str]] = set()
        self._gate = AllowedChats(self._allowed)
        self._inflight = InFlight()
        self.handled = 0
        self.failed = 0
        self._dp = self._build_dispatcher()

    def __repr__(self) -> str:
        state = "polling" if self.running else "stopped"
        return (
            f"<TelegramBot {state} chats={len(self._allowed)} handled={self.handled} "
            f"dropped={self._gate.dropped} failed={self.failed} inflight={self._inflight.count}>"
        )

    @property
    def running(self) -> bool:
        """Whether the polling task is alive (it logs ``telegram_polling_crashed`` if it dies)."""
        return self._task is not None and not self._task.done()

    @property
    def dropped(self) -> int:
        """Updates dropped because their chat is not allowed."""
        return self._gate.dropped

    @property
    def bot(self) -> Bot:
        """The aiogram ``Bot`` (for :class:`TelegramSender` and the digest)."""
        return self._bot

    @property
    def dispatcher(self) -> Dispatcher:
        """The aiogram ``Dispatcher`` (tests feed updates through it directly)."""
        return self._dp

    def sender(self) -> TelegramSender:
        """A ``Notifier`` transport that sends to every allowed chat through this bot."""
        return TelegramSender(self._bot, self._allowed)

    def _build_dispatcher(self) -> Dispatcher:
        dp = Dispatcher(disable_fsm=True, name="agentos")
        dp.update.outer_middleware(self._gate)
        dp.update.outer_middleware(self._inflight)
        router = Router(name="agentos-control")
        router.message.register(self._on_message, F.text)
        router.callback_query.register(self._on_action, ActionCallback.filter())
        router.callback_query.register(self._on_unknown_button)
        dp.include_router(router)
        dp.startup.register(self._on_startup)
        return dp

    async def _on_startup(self) -> None:
        self._started.set()

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Check the token, drop any webhook, register the command menu, then start polling as a task.

        Returns once the dispatcher is running. Raises ``ControlError`` when the Bot API rejects the token
        or cannot be reached; the daemon may then run on without Telegram.
        """
        if self._task is not None:
            raise ControlError("telegram: the bot is already started")
        try:
            me = await self._bot.me()
            await self._bot.delete_webhook()
            await self._bot.set_my_commands(bot_commands())
        except TelegramUnauthorizedError:
            raise ControlError("telegram: the Bot API rejected the token (401 Unauthorized)") from None
        except TelegramAPIError as exc:
            raise ControlError(redact(f"telegram: Bot API not usable: {type(exc).__name__}: {exc.message}")) from None
        self._username = me.username
        if not self._allowed:
            log.warning("telegram_no_allowed_chats", hint="set telegram.allowed_chat_ids; every chat is ignored")
        self._started.clear()
        task = asyncio.get_running_loop().create_task(
            self._dp.start_polling(
                self._bot,
                polling_timeout=self._polling_timeout,
                backoff_config=self._backoff,
                allowed_updates=["message", "callback_query"],
                handle_signals=False,
                close_bot_session=False,
            ),
            name="telegram-polling",
        )
        task.add_done_callback(self._polling_done)
        self._task = task
        started = asyncio.ensure_future(self._started.wait())
        try:
            await asyncio.wait({task, started}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            started.cancel()
        if task.done():
            self._task = None
            task.result()  # re-raise what stopped polling before it began
        log.info("telegram_polling_started", bot=self._username, chats=len(self._allowed))

    def _polling_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("telegram_polling_crashed", error_type=type(exc).__name__, error=redact(str(exc)))

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop polling, wait (up to ``timeout`` s) for handlers in flight, close a session we opened."""
        task, self._task = self._task, None
        try:
            if task is not None:
                if not task.done():
                    try:
                        await self._dp.stop_polling()
                    except RuntimeError:  # polling had not taken its lock yet
                        task.cancel()
                await asyncio.wait({task}, timeout=timeout)
            try:
                async with asyncio.timeout(timeout):
                    await self._inflight.wait_idle()
            except TimeoutError:
                log.warning("telegram_stop_abandoned_handlers", count=self._inflight.count)
        finally:
            if self._owns_session:
                await self._bot.session.close()
        log.info("telegram_polling_stopped", handled=self.handled, dropped=self._gate.dropped)

    # ------------------------------------------------------------ handlers

    async def _on_message(self, message: TgMessage) -> None:
        chat_id = message.chat.id
        text = message.text or ""
        if self._addressed_elsewhere(text):
            return  # "/status@other_bot" in a group with several bots
        try:
            command = parse_command(text)
        except NotACommand as exc:
            if message.chat.type == "private":
                await self._reply(chat_id, str(exc))
            return
        except ParseError as exc:
            await self._reply(chat_id, str(exc))
            return
        age = self._clock() - message.date.timestamp()
        if age > self._max_age:
            log.info("telegram_stale_command", command=command.name, age_s=round(age))
            typed = text.split()[0].partition("@")[0]
            await self._reply(chat_id, f"Ignored {typed}: sent {duration(age)} ago. Send it again if meant.")
            return
        user = message.from_user
        log.info("telegram_command", command=command.name, chat_id=chat_id, user_id=user.id if user else None)
        with calling(f"telegram:{chat_id}"):
            reply = await self._guarded(command.name, functools.partial(execute, command, self._controller))
        await self._reply(chat_id, reply)

    def _addressed_elsewhere(self, text: str) -> bool:
        words = text.split(maxsplit=1)
        _, at, mention = (words[0] if words else "").partition("@")
        return bool(at and self._username and mention.lower() != self._username.lower())

    async def _guarded(self, what: str, call: Callable[[], Awaitable[str]]) -> str:
        """Run a controller call at the handler boundary: every outcome becomes a one-line reply."""
        try:
            async with asyncio.timeout(self._command_timeout):
                reply = await call()
            self.handled += 1
            return reply
        except AgentosError as exc:
            self.handled += 1
            return (str(exc).splitlines() or ["Failed."])[0]
        except TimeoutError:
            self.failed += 1
            log.error("telegram_command_timed_out", command=what)
            return "Timed out waiting for the daemon."
        except Exception:
            self.failed += 1
            log.exception("telegram_command_failed", command=what)
            return "Internal error; see the daemon log."

    async def _on_action(self, query: CallbackQuery, callback_data: ActionCallback) -> None:
        action, ref = callback_data.action, callback_data.ref
        if action == "show":
            await self._show_issue(query, ref)
            return
        if (action, ref) in self._busy_actions:
            await self._answer(query, "Already in progress.")
            return
        self._busy_actions.add((action, ref))
        try:
            log.info("telegram_button", action=action, ref=ref, user_id=query.from_user.id)
            done = False
            note = ""  # what /retry adds: the issue is over its budget, this retry runs one attempt

            async def act() -> str:
                nonlocal done, note
                name, fixed = _ACTION_COMMAND.get(action, (action, {}))
                spec = TABLE[name]  # retry, cancel, approve, reject, accept, plan_…, issue_…, close: the ref first
                chat = query.message.chat.id if query.message is not None else query.from_user.id
                with calling(f"telegram:{chat}"):
                    result = await run(spec, self._controller, {spec.args[0].name: ref, **fixed})
                done = True
                budget = result.get("budget") if isinstance(result, Mapping) else None
                note = f"\n{one_line(budget)}" if budget else ""
                return f"{ref} {_ACTION_DONE[action]}."

            toast = await self._guarded(action, act)
            await self._answer(query, toast + note)
            if done:
                await self._mark_done(query, f"{toast} (by {query.from_user.full_name}){note}")
        finally:
            self._busy_actions.discard((action, ref))

    async def _show_issue(self, query: CallbackQuery, task_id: str) -> None:
        """ "Open issue" on a forge without web pages: the issue's text as a reply; the buttons stay."""
        log.info("telegram_button", action="show", ref=task_id, user_id=query.from_user.id)
        text = ""

        async def show() -> str:
            nonlocal text
            text = format_issue(await self._controller.issue(task_id))
            return "Issue sent below."

        await self._answer(query, await self._guarded("show", show))
        chat = query.message.chat.id if query.message is not None else None
        if text and chat is not None:
            await self._reply(chat, text)

    async def _on_unknown_button(self, query: CallbackQuery) -> None:
        await self._answer(query, "This button is not understood (any more).")

    # ------------------------------------------------------------ replies

    async def _reply(self, chat_id: int, text: str) -> None:
        """Send ``text`` to ``chat_id``: redacted, split at the length limit, 429s and network errors retried."""
        for chunk in split_text(redact(text)):
            try:
                await retry_send(
                    functools.partial(bot_api, functools.partial(self._bot.send_message, chat_id, chunk)),
                    sleep=self._sleep,
                    max_attempts=4,
                )
            except Exception as exc:  # handler boundary: aiogram would only log it less clearly
                self.failed += 1
                log.error("telegram_reply_failed", chat_id=chat_id, error=redact(str(exc)))
                return

    async def _answer(self, query: CallbackQuery, text: str) -> None:
        try:
            await retry_send(
                functools.partial(
                    bot_api, functools.partial(self._bot.answer_callback_query, query.id, text=redact(text)[:200])
                ),
                sleep=self._sleep,
                max_attempts=3,
            )
        except Exception as exc:  # the toast is cosmetic; the action already happened
            log.warning("telegram_answer_failed", error=redact(str(exc)))

    async def _mark_done(self, query: CallbackQuery, note: str) -> None:
        """Show the outcome under the notification and remove its buttons, so nobody presses twice."""
        message = query.message
        if not isinstance(message, TgMessage):
            return  # too old to edit (InaccessibleMessage)
        text = redact(f"{message.text or ''}\n\n✓ {note}")
        chat_id, message_id = message.chat.id, message.message_id
        try:
            if message.text and text_units(text) <= TELEGRAM_TEXT_LIMIT:
                await bot_api(
                    functools.partial(self._bot.edit_message_text, text=text, chat_id=chat_id, message_id=message_id)
                )
            else:
                await bot_api(
                    functools.partial(
                        self._bot.edit_message_reply_markup, chat_id=chat_id, message_id=message_id, reply_markup=None
                    )
                )
        except (TelegramBadRequest, TransientSendError) as exc:
            log.warning("telegram_edit_failed", error=redact(str(exc)))
