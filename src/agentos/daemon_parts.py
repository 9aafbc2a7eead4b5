"""The daemon's parts outside the core, built in the order they depend on each other.

::

    TelegramSender ─► Notifier ─► Runtime ─► Core (assembly.build_core) ─► Controller ─► TelegramBot · StatusPage

The sender needs only an aiogram ``Bot`` and the chat ids, so the notifier exists before the runtime and
the core that notify through it; the bot's command dispatcher comes last, over the controller. aiogram and
aiohttp are imported only when Telegram or the status page is configured (``test_daemon_imports``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from agentos.assembly import Core, build_core
from agentos.control.controller import Approvals, Controller
from agentos.runtime import Runtime

__all__ = ["build_controller"]


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
    return Controller(
        settings=rt,
        journal=rt,
        clock=rt.now,
        graph=rt.graph,
        state=rt.state,
        forge=rt.forge,
        running=core.running,
        lifecycle=core.lifecycle,
        pool=core.pool,
        scheduler=rt.scheduler,
        events=rt.store.iter_events,
        started_at=rt.started_at,
        on_reload=on_reload,
        approvals=approvals,
        status_page_url=status_page_url,
    )
