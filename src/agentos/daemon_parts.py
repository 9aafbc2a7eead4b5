"""The daemon's parts outside the core, built in the order they depend on each other.

::

    TelegramSender ─► Notifier ─► Runtime ─► Core (assembly.build_core) ─► Controller ─► TelegramBot · StatusPage
                                    └─► GitHubWebhook (pokes the runtime's jobs; its counts are on the status page)

The sender needs only an aiogram ``Bot`` and the chat ids, so the notifier exists before the runtime and
the core that notify through it; the bot's command dispatcher comes last, over the controller and the
sender's ``Bot``. aiogram and aiohttp are imported only when Telegram, the status page or the webhook is configured
(``tests/unit/test_daemon_imports.py``).
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

from agentos import logging as alog
from agentos.assembly import Core, build_core
from agentos.config import Config, JobConfig, StatusPageConfig, TelegramConfig, secret
from agentos.control.controller import Approvals, Controller
from agentos.errors import ControlError
from agentos.ops.notify import Notifier
from agentos.runtime import Runtime, StateSeenStore
from agentos.store import DaemonState

if TYPE_CHECKING:
    from agentos.control.telegram import TelegramBot
    from agentos.control.telegram_sender import TelegramSender
    from agentos.ops.github_webhook import GitHubWebhook
    from agentos.ops.status_page import StatusPage

__all__ = [
    "build_controller",
    "build_notifier",
    "github_webhook",
    "job_configs",
    "say",
    "start_github_webhook",
    "start_status_page",
    "start_telegram",
    "status_page",
    "telegram_bot",
    "telegram_sender",
]

log = alog.get_logger("agentos.daemon")


def say(message: str) -> None:
    """One plain line on stderr for whoever started us by hand (the journal has the JSON line too)."""
    print(f"agentos: {message}", file=sys.stderr, flush=True)


def job_configs(config: Config) -> dict[str, JobConfig]:
    """The job table's settings: the ``jobs:`` section over triggers other sections imply.

    ``daily_digest`` runs at ``telegram.digest_hour`` (in ``timezone``, like every crontab); on the GitHub
    forge ``dispatch`` (the readiness poll) runs every ``github.poll_interval_s``. A ``jobs.NAME`` entry with
    its own ``cron`` or ``interval_s`` wins; one that only sets ``enabled`` keeps the implied trigger.
    """
    implied = {"daily_digest": JobConfig(cron=f"0 {config.telegram.digest_hour} * * *")}
    if config.forge == "github" and config.github is not None:
        implied["dispatch"] = JobConfig(interval_s=config.github.poll_interval_s)
    merged = dict(config.jobs)
    for name, job in implied.items():
        own = merged.get(name)
        if own is None or not (own.cron or own.interval_s):
            merged[name] = job.model_copy(update={"enabled": own.enabled if own is not None else True})
    return merged


# ------------------------------------------------------------ notices


def telegram_sender(cfg: TelegramConfig) -> TelegramSender | None:
    """The notifier's transport when Telegram is enabled and a token is configured (its absence is logged,
    not fatal); a malformed token raises :class:`ControlError`."""
    if not cfg.enabled:
        return None
    token = secret("telegram_bot_token")
    if token is None:
        log.error("telegram_token_missing", fix="set TELEGRAM_BOT_TOKEN or the telegram_bot_token credential")
        return None
    if not cfg.allowed_chat_ids:
        log.warning("telegram_no_allowed_chats", fix="add telegram.allowed_chat_ids; nobody will be answered")
    from agentos.control.telegram_sender import TelegramSender, telegram_client  # aiogram: only when used

    return TelegramSender(telegram_client(token, api_base=cfg.api_base), cfg.allowed_chat_ids)


def build_notifier(
    sender: TelegramSender | None,
    state: DaemonState,
    *,
    save: Callable[[], None],
    journal: Callable[[dict[str, str | int]], None],
) -> Notifier:
    """The daemon's notifier: sends through ``sender`` (None: logged and dropped), remembers sev1 keys in
    ``state`` (journalled by ``save``) and hands each notice to ``journal`` (``notification_sent``)."""
    return Notifier(sender, seen=StateSeenStore(state, save), journal=journal)


# ------------------------------------------------------------ the operator's surfaces


def build_controller(
    rt: Runtime,
    core: Core | None = None,
    *,
    on_reload: Callable[[], Awaitable[None]] | None = None,
    approvals: Approvals | None = None,
    status_page_url: Callable[[], str | None] = lambda: None,
) -> Controller:
    """The controller over ``rt``'s ports and ``core``'s parts (built over ``rt`` when not given)."""
    if core is None:
        core = build_core(rt)
    from agentos.jobs.auto_ready import AutoReady
    from agentos.jobs.incident_book import IncidentBook
    from agentos.jobs.sprint_plan import SprintPlans

    plans = SprintPlans(
        settings=rt, journal=rt, clock=rt.now, graph=rt.graph, forge=rt.forge, store=rt.store, notify=rt, wake=rt.wake
    )
    offers = AutoReady(settings=rt, journal=rt, clock=rt.now, forge=rt.forge, store=rt.store, notify=rt, wake=rt.wake)
    return Controller(
        settings=rt,
        journal=rt,
        clock=rt.now,
        graph=rt.graph,
        state=rt.state,
        forge=rt.forge,
        lifecycle=core.lifecycle,
        pool=core.pool,
        scheduler=rt.scheduler,
        events=rt.store.iter_events,
        started_at=rt.started_at,
        guard=core.guard,
        acceptance=core.acceptance.fate,
        on_reload=on_reload,
        approvals=approvals,
        status_page_url=status_page_url,
        plans=plans,
        offers=offers,
        incidents=IncidentBook(journal=rt, clock=rt.now, forge=rt.forge, store=rt.store),
    )


def telegram_bot(sender: TelegramSender, controller: Controller, cfg: TelegramConfig) -> TelegramBot:
    """The command bot over ``controller``, polling through the sender's ``Bot`` (its session is the bot's)."""
    from agentos.control.telegram import TelegramBot  # aiogram costs a second to import; only when used

    return TelegramBot(sender.bot, controller, cfg.allowed_chat_ids)


def status_page(
    controller: Controller, cfg: StatusPageConfig, *, webhook: GitHubWebhook | None = None
) -> StatusPage | None:
    """The read-only status page when enabled; a non-loopback bind with no token is a config error.
    ``webhook``: its delivery counts go on ``/metrics``."""
    if not cfg.enabled:
        return None
    from agentos.ops.status_page import StatusPage  # aiohttp only when used

    counts: Callable[[], Mapping[str, int]] | None = (lambda: webhook.counts) if webhook is not None else None
    return StatusPage(controller, cfg, token=secret(cfg.token_credential), webhook_counts=counts)


def github_webhook(rt: Runtime) -> GitHubWebhook | None:
    """The webhook receiver when ``github.webhook.enabled`` on the GitHub forge; no secret is a config error."""
    gh = rt.config.github
    if rt.config.forge != "github" or gh is None or not gh.webhook.enabled:
        return None
    from agentos.ops.github_webhook import GitHubWebhook  # aiohttp only when used

    cfg = gh.webhook
    return GitHubWebhook(
        cfg, secret=secret(cfg.secret_credential), wake=rt.wake, repos=lambda: {r.name for r in rt.config.repos}
    )


async def start_github_webhook(hook: GitHubWebhook) -> None:
    """Bind the webhook; a busy port is logged and said, and the daemon works on by polling alone."""
    try:
        url = await hook.start()
    except OSError as exc:
        log.error("github_webhook_start_failed", host=hook.cfg.host, port=hook.cfg.port, error=str(exc))
        say(f"GitHub webhook not started (polling only): {hook.cfg.host}:{hook.cfg.port}: {exc.strerror or exc}")
    else:
        log.info("github_webhook_started", url=url)


async def start_status_page(page: StatusPage) -> None:
    """Bind the page; a busy port is logged and said, and the daemon works on without it."""
    try:
        url = await page.start()
    except OSError as exc:
        log.error("status_page_start_failed", host=page.cfg.host, port=page.cfg.port, error=str(exc))
        say(f"status page not started: {page.cfg.host}:{page.cfg.port}: {exc.strerror or exc}")
    else:
        log.info("status_page_started", url=url, token_required=page.token_required)


async def start_telegram(bot: TelegramBot) -> None:
    """Start polling in the background: the daemon never waits for Telegram to be reachable."""
    try:
        await bot.start()
    except Exception as exc:  # a boundary: the daemon works on without its bot
        log.error("telegram_start_failed", error=str(exc), exc_info=not isinstance(exc, ControlError))
    else:
        log.info("telegram_started")
