"""Telegram control plane: commands and buttons from allowed chats, each a call to the Controller.

::

    Bot API ──getUpdates──► Dispatcher (one task on the daemon's loop)
                              ├─ outer middleware: chat not allowed → dropped, logged once, never answered
                              ├─ message  → parse_command(text) → execute(command, controller) → reply
                              └─ button   → ActionCallback(action, ref) → controller.retry/cancel/approve/reject

The bot is a thin adapter (DESIGN §8): it parses, calls :class:`ControllerPort`, formats the answer as
short plain text (no parse mode, so task titles cannot inject markup) and sends it through ``redact()``,
split at Telegram's length limit, with 429s waited out. :func:`parse_command` and :func:`execute` are
usable without aiogram's network side; :class:`TelegramSender` adapts a :class:`~agentos.control.notify.Notifier`
to the Bot API.

Importing this module imports aiogram (about 2 s): keep it off the ``agentos ctl`` path.
"""

from __future__ import annotations

import asyncio
import functools
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar, assert_never, cast

from aiogram import BaseMiddleware, Bot, Dispatcher, F, Router
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.session.base import BaseSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramNetworkError,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.filters.callback_data import CallbackData
from aiogram.types import (
    BotCommand,
    CallbackQuery,
    Chat,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    TelegramObject,
    User,
)
from aiogram.types import Message as TgMessage
from aiogram.utils.backoff import BackoffConfig
from aiogram.utils.token import TokenValidationError

from agentos import logging as alog
from agentos.control.notify import (
    CALLBACK_PREFIX,
    TELEGRAM_TEXT_LIMIT,
    Action,
    Message,
    TransientSendError,
    retry_send,
    split_text,
    text_units,
)
from agentos.errors import AgentosError, ControlError
from agentos.graph import TaskStatus
from agentos.redact import redact

__all__ = [
    "PROTECTED_JOB",
    "ActionCallback",
    "Command",
    "CommandName",
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

PROTECTED_JOB = "telegram"
"""The job that ``/job off`` refuses to disable: the operator would lock themselves out of the chat."""


class ControllerPort(Protocol):
    """The Controller's command surface as the bot uses it; every method raises ``ControlError`` on bad input."""

    async def status(self) -> JSON: ...
    async def pause(self) -> JSON: ...
    async def resume(self) -> JSON: ...
    async def jobs(self) -> Sequence[JSON]: ...
    async def set_job(self, name: str, enabled: bool) -> JSON: ...
    async def run_job(self, name: str) -> JSON: ...
    async def repos(self) -> Sequence[JSON]: ...
    async def set_repo(self, name: str, enabled: bool) -> JSON: ...
    async def set_repo_mode(self, name: str, mode: str) -> JSON: ...
    async def set_repo_cadence(self, name: str, days: int) -> JSON: ...
    async def tasks(self, repo: str | None = None, status: str | None = None) -> Sequence[JSON]: ...
    async def task(self, task_id: str) -> JSON: ...
    async def issue(self, task_id: str) -> JSON: ...
    async def retry(self, task_id: str) -> JSON: ...
    async def cancel(self, task_id: str) -> JSON: ...
    async def approve(self, ref: str) -> JSON: ...
    async def reject(self, ref: str) -> JSON: ...


# ---------------------------------------------------------------- commands: parsing

CommandName = Literal[
    "status", "on", "off", "jobs", "job", "run", "repos", "repo",
    "tasks", "task", "retry", "cancel", "approve", "reject", "help",
]  # fmt: skip

# name → (usage, description for setMyCommands); the order is the /help order.
_SPECS: dict[str, tuple[str, str]] = {
    "status": ("/status", "Daemon state, counts, uptime"),
    "on": ("/on", "Resume: start new work again"),
    "off": ("/off", "Pause: start no new work"),
    "jobs": ("/jobs", "The job table"),
    "job": ("/job on|off NAME", "Enable or disable a job"),
    "run": ("/run JOB", "Run a job now"),
    "repos": ("/repos", "Watched repositories"),
    "repo": (
        "/repo on|off NAME · /repo mode NAME full|dispatcher · /repo cadence NAME DAYS",
        "Enable a repo, set its mode or grooming cadence",
    ),
    "tasks": ("/tasks [REPO] [STATUS]", "List tasks"),
    "task": ("/task ID", "One task in full"),
    "retry": ("/retry ID", "Re-queue a task"),
    "cancel": ("/cancel ID", "Cancel a task"),
    "approve": ("/approve PR", "Approve a waiting high-risk PR (repo#12 or 12)"),
    "reject": ("/reject PR", "Reject a waiting high-risk PR"),
    "help": ("/help", "This list"),
}
_ALIASES = {"start": "help", "pause": "off", "resume": "on"}
_NO_ARGS = frozenset({"status", "on", "off", "jobs", "repos"})
_ONE_ID = frozenset({"run", "task", "retry", "cancel", "approve", "reject"})
_STATUSES = frozenset(s.value for s in TaskStatus)
_MODES = {"full": "full", "dispatcher": "dispatcher_only", "dispatcher_only": "dispatcher_only"}
_DAYS = re.compile(r"[0-9]{1,4}")
_MAX_TOKEN = 200


class ParseError(ControlError):
    """Text that is not a valid command; ``str(error)`` is the one-line reply (usually the usage)."""


class NotACommand(ParseError):
    """Text that does not start with ``/``; answered in private chats only."""


@dataclass(frozen=True, slots=True)
class Command:
    """A validated command: canonical ``name``, normalised ``args``, and the ``@bot`` it was addressed to."""

    name: CommandName
    args: tuple[str, ...] = ()
    mention: str | None = None


def _usage(name: str) -> ParseError:
    return ParseError(f"usage: {_SPECS[name][0]}")


def _token(value: str) -> bool:
    return 0 < len(value) <= _MAX_TOKEN and value.isprintable()


def _task_filters(args: Sequence[str]) -> tuple[str | None, str | None]:
    """``/tasks`` arguments → ``(repo, status)``: a word that is a task status is the status filter."""
    repo: str | None = None
    status: str | None = None
    for arg in args:
        if arg.lower() in _STATUSES and status is None:
            status = arg.lower()
        elif repo is None:
            repo = arg
        else:
            raise ValueError(arg)
    return repo, status


def _check_args(name: str, args: tuple[str, ...]) -> tuple[str, ...]:
    """Validate and normalise ``args`` for command ``name``; raise the usage as :class:`ParseError`."""
    if name == "help":
        return ()
    if not all(_token(a) for a in args):
        raise _usage(name)
    if name in _NO_ARGS:
        if args:
            raise _usage(name)
        return ()
    if name in _ONE_ID:
        if len(args) != 1:
            raise _usage(name)
        return args
    if name == "job":
        if len(args) != 2 or args[0].lower() not in ("on", "off"):
            raise _usage(name)
        return (args[0].lower(), args[1])
    if name == "tasks":
        if len(args) > 2:
            raise _usage(name)
        try:
            _task_filters(args)
        except ValueError:
            raise _usage(name) from None
        return args
    if name == "repo":
        verb = args[0].lower() if args else ""
        if verb in ("on", "off") and len(args) == 2:
            return (verb, args[1])
        if verb == "mode" and len(args) == 3 and args[2].lower() in _MODES:
            return (verb, args[1], _MODES[args[2].lower()])
        if verb == "cadence" and len(args) == 3 and _DAYS.fullmatch(args[2]) and int(args[2]) > 0:
            return (verb, args[1], str(int(args[2])))
        raise _usage(name)
    raise _usage(name)  # pragma: no cover - every name in _SPECS is handled above


def parse_command(text: str) -> Command:
    """Parse a chat message into a :class:`Command`; any other outcome is a :class:`ParseError`.

    ``/Job@agentos_bot off dispatch`` → ``Command("job", ("off", "dispatch"), mention="agentos_bot")``.
    Pure and total: for every string it returns a ``Command`` or raises ``ParseError``.
    """
    words = text.split()
    if not words or not words[0].startswith("/"):
        raise NotACommand("Not a command. Send /help for the list.")
    head, *rest = words
    name, _, mention = head[1:].partition("@")
    name = name.lower()
    name = _ALIASES.get(name, name)
    if name not in _SPECS:
        raise ParseError("Unknown command. Send /help for the list.")
    args = _check_args(name, tuple(rest))
    return Command(cast(CommandName, name), args, mention or None)


def help_text() -> str:
    """The ``/help`` reply: every command with its usage."""
    lines = ["agentos commands:"]
    for usage, description in _SPECS.values():
        lines.append(f"{usage} — {description}")
    return "\n".join(lines)


def bot_commands() -> list[BotCommand]:
    """The command menu registered with ``setMyCommands``."""
    return [BotCommand(command=name, description=spec[1]) for name, spec in _SPECS.items()]


# ---------------------------------------------------------------- commands: execution and replies


def _text(value: object, default: str = "-", limit: int = 300) -> str:
    """``value`` as one line of at most ``limit`` characters, redacted *before* it is cut.

    A cut first could keep the head of a token too short to still look like one: ``ghp_`` and 15 of its
    characters would then reach the chat, as redacting the whole reply later no longer catches them.
    """
    if value is None or value == "":
        return default
    if isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, list | tuple):
        text = ", ".join(_text(v, default, limit) for v in value) or default
    elif isinstance(value, Mapping):
        text = ", ".join(f"{k}={_text(v, default, limit)}" for k, v in value.items()) or default
    else:
        text = str(value)
    text = redact(text)
    text = " ".join(text.split()) if "\n" in text else text
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _when(value: object) -> str:
    """An ISO timestamp shortened to minutes (``2026-11-25 08:00``); anything else as text."""
    text = _text(value)
    match = re.match(r"(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d)", text)
    return f"{match.group(1)} {match.group(2)}" if match else text


def _duration(seconds: object) -> str:
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds != seconds:
        return "?"
    total = int(max(0.0, min(float(seconds), 1e9)))
    days, rem = divmod(total, 86400)
    hours, rem = divmod(rem, 3600)
    minutes = rem // 60
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m"


def _format_status(status: JSON) -> str:
    paused = status.get("paused") is True
    head = "⏸ Paused: no new work starts (/on resumes)" if paused else "▶ Running"
    lines = [
        f"{head} · {_int(status.get('running'))} running · {_int(status.get('queued'))} queued"
        f" · up {_duration(status.get('uptime_s'))}"
    ]
    counts = status.get("counts")
    if isinstance(counts, Mapping) and counts:
        lines.append("tasks: " + ", ".join(f"{k} {_text(v)}" for k, v in counts.items()))
    agents = status.get("paused_agents")
    if isinstance(agents, Mapping) and agents:
        lines.append("paused agents: " + ", ".join(f"{k} until {_when(v)}" for k, v in agents.items()))
    return "\n".join(lines)


def _format_jobs(jobs: Sequence[JSON]) -> str:
    if not jobs:
        return "No jobs."
    lines = []
    for job in jobs:
        mark = "✓" if job.get("enabled") is not False else "✗"
        line = (
            f"{mark} {_text(job.get('name'), '?')} · next {_when(job.get('next_run'))}"
            f" · runs {_int(job.get('runs'))} · failures {_int(job.get('failures'))}"
        )
        if job.get("last_error"):
            line += f"\n    last error: {_text(job.get('last_error'), limit=160)}"
        lines.append(line)
    return "\n".join(lines)


def _format_repos(repos: Sequence[JSON]) -> str:
    if not repos:
        return "No repos."
    lines = []
    for repo in repos:
        mark = "✓" if repo.get("enabled") is not False else "✗"
        cadence = repo.get("cadence_days")
        grooming = f"groom every {_text(cadence)}d" if cadence else "no grooming cadence"
        lines.append(f"{mark} {_text(repo.get('name'), '?')} · {_text(repo.get('mode'))} · {grooming}")
    return "\n".join(lines)


_MAX_TASK_LINES = 30


def _format_tasks(tasks: Sequence[JSON]) -> str:
    if not tasks:
        return "No tasks."
    lines = []
    for task in tasks[:_MAX_TASK_LINES]:
        line = (
            f"{_text(task.get('id'), '?')} · {_text(task.get('status'))} · {_text(task.get('agent'))}"
            f" · try {_int(task.get('attempts'))} · {_text(task.get('title'), '', 60)}"
        )
        if task.get("pr"):
            line += f" · PR {_text(task.get('pr'))}"
        lines.append(line)
    if len(tasks) > _MAX_TASK_LINES:
        lines.append(f"… and {len(tasks) - _MAX_TASK_LINES} more (narrow with /tasks REPO STATUS)")
    return "\n".join(lines)


_ATTEMPT_KEYS = ("number", "agent", "outcome", "blocker_code", "duration_s")


def _format_attempt(attempt: JSON) -> str:
    head = " · ".join(_text(attempt.get(k)) for k in _ATTEMPT_KEYS if attempt.get(k) not in (None, ""))
    detail = attempt.get("summary") or attempt.get("error")
    return f"  - {head}" + (f": {_text(detail, limit=120)}" if detail else "")


def _format_task(task: JSON) -> str:
    lines = []
    for key, value in task.items():
        if value in (None, "", [], {}, 0) and key != "issue":
            continue
        if isinstance(value, list) and all(isinstance(v, Mapping) for v in value):
            lines.append(f"{key}: {len(value)}")
            lines.extend(_format_attempt(cast(JSON, v)) for v in value[-5:])
        elif key.endswith("_at"):
            lines.append(f"{key}: {_when(value)}")
        else:
            lines.append(f"{key}: {_text(value)}")
    return "\n".join(lines) or "Empty task record."


def format_issue(issue: JSON) -> str:
    """The reply to "Open issue": title, state and labels, then the body (the split at the limit is the sender's)."""
    head = f"{_text(issue.get('issue'))}: {_text(issue.get('title'))}"
    labels = issue.get("labels")
    facts = [f"state: {_text(issue.get('state'))}", f"task: {_text(issue.get('status'))}"]
    if issue.get("blocker"):
        facts.append(f"blocker: {_text(issue.get('blocker'))}")
    if isinstance(labels, Sequence) and not isinstance(labels, str) and labels:
        facts.append("labels: " + ", ".join(str(label) for label in labels))
    body = str(issue.get("body") or "").strip() or "(no description)"
    return "\n".join([head, " · ".join(facts), "", body])


async def execute(command: Command, controller: ControllerPort) -> str:
    """Run ``command`` against ``controller`` and return the reply text (``ControlError`` propagates)."""
    args = command.args
    match command.name:
        case "status":
            return _format_status(await controller.status())
        case "on":
            await controller.resume()
            return "▶ Resumed: new work starts again."
        case "off":
            await controller.pause()
            return "⏸ Paused: no new work starts. /on resumes."
        case "jobs":
            return _format_jobs(await controller.jobs())
        case "job":
            switch, name = args
            if switch == "off" and name.lower() == PROTECTED_JOB:
                raise ControlError(f"Refused: disabling the {PROTECTED_JOB} job would lock you out of this chat.")
            await controller.set_job(name, switch == "on")
            return f"Job {name} {'enabled' if switch == 'on' else 'disabled'}."
        case "run":
            await controller.run_job(args[0])
            return f"Job {args[0]} started."
        case "repos":
            return _format_repos(await controller.repos())
        case "repo":
            verb, name, *rest = args
            if verb in ("on", "off"):
                await controller.set_repo(name, verb == "on")
                return f"Repo {name} {'enabled' if verb == 'on' else 'disabled'}."
            if verb == "mode":
                await controller.set_repo_mode(name, rest[0])
                return f"Repo {name}: mode {rest[0]}."
            await controller.set_repo_cadence(name, int(rest[0]))
            return f"Repo {name}: grooming every {rest[0]} days."
        case "tasks":
            repo, status = _task_filters(args)
            return _format_tasks(await controller.tasks(repo=repo, status=status))
        case "task":
            return _format_task(await controller.task(args[0]))
        case "retry":
            done = await controller.retry(args[0])
            budget = done.get("budget") if isinstance(done, dict) else None
            return f"Task {args[0]} re-queued." + (f"\n{budget}" if budget else "")
        case "cancel":
            await controller.cancel(args[0])
            return f"Task {args[0]} cancelled."
        case "approve":
            await controller.approve(args[0])
            return f"PR {args[0]} approved."
        case "reject":
            await controller.reject(args[0])
            return f"PR {args[0]} rejected."
        case "help":
            return help_text()
        case _:  # pragma: no cover
            assert_never(command.name)


# ---------------------------------------------------------------- buttons


class ActionCallback(CallbackData, prefix=CALLBACK_PREFIX):
    """A button press: ``act:<action>:<ref>`` (built by :func:`agentos.control.notify.action_button`)."""

    action: Action
    ref: str


_ACTION_DONE = {"retry": "re-queued", "cancel": "cancelled", "approve": "approved", "reject": "rejected"}


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


# ---------------------------------------------------------------- sending


async def _api(call: Callable[[], Awaitable[T]]) -> T:
    """Await a Bot API call, turning network and 5xx failures into :class:`TransientSendError`."""
    try:
        return await call()
    except (TelegramNetworkError, TelegramServerError) as exc:
        raise TransientSendError(redact(str(exc))) from exc


class TelegramSender:
    """Delivers a :class:`~agentos.control.notify.Message` to every allowed chat (the ``Notifier``'s ``send``).

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
                await _api(functools.partial(self._bot.send_message, chat_id, message.text, reply_markup=markup))
                self.sent += 1
            except TelegramAPIError as exc:
                if getattr(exc, "retry_after", None) is not None:
                    raise
                log.error("telegram_send_failed", chat_id=chat_id, key=message.key, error=redact(str(exc)))
            reached.add(chat_id)
        self._reached.pop(message.seq, None)
        while len(self._reached) > 256:  # give-ups leave entries behind; keep the newest
            self._reached.pop(next(iter(self._reached)))


# ---------------------------------------------------------------- middlewares

Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]


class _AllowedChats(BaseMiddleware):
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


class _InFlight(BaseMiddleware):
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


# ---------------------------------------------------------------- the bot

# Delay between failed getUpdates calls (aiogram's own default); tests pass a faster one.
DEFAULT_BACKOFF = BackoffConfig(min_delay=1.0, max_delay=5.0, factor=1.3, jitter=0.1)


class TelegramBot:
    """The Telegram control plane: aiogram polling as one task on the running loop.

    ``api_base`` points aiogram at another Bot API server (a local ``telegram-bot-api`` or a test fake).
    A ``session`` passed in is the caller's to close; one created here is closed by :meth:`stop`.
    ``clock`` and ``sleep`` are injected (stale-command check, 429 waits); ``backoff`` is aiogram's delay
    between failed ``getUpdates`` calls.
    """

    def __init__(
        self,
        token: str,
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
        self._owns_session = session is None
        if session is None:
            session = AiohttpSession()
        if api_base:
            session.api = TelegramAPIServer.from_base(api_base)
        try:
            self._bot = Bot(token, session=session, default=DefaultBotProperties(link_preview_is_disabled=True))
        except TokenValidationError:
            raise ControlError("telegram: the bot token is malformed (expected 123456789:AA…)") from None
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
        self._gate = _AllowedChats(self._allowed)
        self._inflight = _InFlight()
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
            await self._reply(chat_id, f"Ignored /{command.name}: sent {_duration(age)} ago. Send it again if meant.")
            return
        user = message.from_user
        log.info("telegram_command", command=command.name, chat_id=chat_id, user_id=user.id if user else None)
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

            async def act() -> str:
                nonlocal done
                calls = {
                    "retry": self._controller.retry,
                    "cancel": self._controller.cancel,
                    "approve": self._controller.approve,
                    "reject": self._controller.reject,
                }
                await calls[action](ref)
                done = True
                return f"{ref} {_ACTION_DONE[action]}."

            toast = await self._guarded(action, act)
            await self._answer(query, toast)
            if done:
                await self._mark_done(query, f"{toast} (by {query.from_user.full_name})")
        finally:
            self._busy_actions.discard((action, ref))

    async def _show_issue(self, query: CallbackQuery, task_id: str) -> None:
        """"Open issue" on a forge without web pages: the issue's text as a reply; the buttons stay."""
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
                    functools.partial(_api, functools.partial(self._bot.send_message, chat_id, chunk)),
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
                    _api, functools.partial(self._bot.answer_callback_query, query.id, text=redact(text)[:200])
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
                await _api(
                    functools.partial(self._bot.edit_message_text, text=text, chat_id=chat_id, message_id=message_id)
                )
            else:
                await _api(
                    functools.partial(
                        self._bot.edit_message_reply_markup, chat_id=chat_id, message_id=message_id, reply_markup=None
                    )
                )
        except (TelegramBadRequest, TransientSendError) as exc:
            log.warning("telegram_edit_failed", error=redact(str(exc)))
