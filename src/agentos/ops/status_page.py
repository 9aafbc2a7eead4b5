"""The read-only status page, JSON API and Prometheus metrics, served by the daemon on its own loop.

    GET /             HTML: running tasks, queue, recent merges and escalations, per-agent success, jobs
    GET /api/status   the same figures as JSON
    GET /metrics      Prometheus text format 0.0.4

Nothing here changes state. It reads :meth:`Controller.snapshot` (status, jobs, tasks, and the event
history through :mod:`agentos.ops.metrics`, read in a thread and cached here for a few seconds so a
scrape every 15 s costs one read). Every text that came from outside (issue titles, errors) passes the redactor.

Bound to ``127.0.0.1`` by default. Any other address needs a bearer token (the daemon refuses to start
without one, exit 78); a configured token is required on every request, loopback or not.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from agentos import logging as alog
from agentos.config import ConfigError, StatusPageConfig
from agentos.control.controller import Controller, Snapshot
from agentos.graph import ACTIVE, DISPATCHABLE, FINISHED, PRIORITY_RANK, Task, TaskStatus
from agentos.ops.metrics import GroupStats, History, group_stats
from agentos.ops.prometheus import CONTENT_TYPE, render_metrics
from agentos.ops.status_render import render_html
from agentos.redact import redact

__all__ = ["LOCAL_HOSTS", "LagProbe", "StatusPage", "needs_token"]

log = alog.get_logger("agentos.status_page")

LOCAL_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
"""Binds that need no token; any other address (even 127.0.0.2 or 0.0.0.0) does."""
CACHE_S = 5.0
"""How long one read of the event history serves the page and the metrics."""
RECENT = 10
HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "Referrer-Policy": "no-referrer",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def needs_token(host: str) -> bool:
    """Whether a bind to ``host`` must have a bearer token (everything but the loopback defaults)."""
    return host.strip().lower().strip("[]") not in LOCAL_HOSTS


class LagProbe:
    """How late the event loop wakes up: a 1 s sleep that took 1.2 s is 0.2 s of lag."""

    def __init__(self, interval_s: float = 1.0) -> None:
        self.interval_s = interval_s
        self.last_s: float | None = None
        self.max_s = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(self.interval_s)
            self.last_s = max(0.0, loop.time() - start - self.interval_s)
            self.max_s = max(self.max_s, self.last_s)


class StatusPage:
    """The HTTP side: ``start()`` binds, ``stop()`` closes; requests only read."""

    def __init__(
        self,
        controller: Controller,
        cfg: StatusPageConfig,
        *,
        token: str | None,
        webhook_counts: Callable[[], Mapping[str, int]] | None = None,
    ) -> None:
        if token is None and needs_token(cfg.host):
            env = cfg.token_credential.upper()
            raise ConfigError(
                [
                    f"status_page.host: {cfg.host} is reachable from other machines, so the page needs a token: "
                    f"set ${env} or the credential {cfg.token_credential}, or bind 127.0.0.1"
                ]
            )
        self.controller = controller
        self.cfg = cfg
        self._token = token
        self._webhook_counts = webhook_counts
        self.lag = LagProbe()
        self.url: str | None = None
        self.requests = 0
        self._runner: web.AppRunner | None = None
        self._history_lock = asyncio.Lock()
        self._cache: tuple[float, History, list[GroupStats]] | None = None

    def __repr__(self) -> str:
        return f"<StatusPage {self.url or 'stopped'} requests={self.requests} token_required={self.token_required}>"

    @property
    def token_required(self) -> bool:
        return self._token is not None

    # ------------------------------------------------------------ lifetime

    async def start(self) -> str:
        """Bind and serve; returns the URL. Raises OSError when the address cannot be bound."""
        app = web.Application(middlewares=[self._guard])
        app.router.add_get("/", self._page)
        app.router.add_get("/api/status", self._api)
        app.router.add_get("/metrics", self._metrics)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.cfg.host, self.cfg.port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.lag.start()
        host, port = runner.addresses[0][:2]
        self.url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/"
        return self.url

    async def stop(self) -> None:
        await self.lag.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ------------------------------------------------------------ HTTP

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.requests += 1
        if self.token_required and not self._authorized(request.headers.get("Authorization", "")):
            return web.Response(
                status=401,
                text="401: this status page needs the header Authorization: Bearer <token>\n",
                headers={"WWW-Authenticate": 'Bearer realm="agentos"', **HEADERS},
            )
        response = await handler(request)
        response.headers.update(HEADERS)
        return response

    def _authorized(self, header: str) -> bool:
        assert self._token is not None
        scheme, _, given = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self._token.encode())

    async def _page(self, request: web.Request) -> web.Response:
        return web.Response(text=render_html(await self.snapshot()), content_type="text/html", charset="utf-8")

    async def _api(self, request: web.Request) -> web.Response:
        return web.json_response(await self.snapshot())

    async def _metrics(self, request: web.Request) -> web.Response:
        body = render_metrics(await self.snapshot())
        return web.Response(body=body.encode(), headers={"Content-Type": CONTENT_TYPE})

    # ------------------------------------------------------------ data

    async def _read(self) -> tuple[Snapshot, History, list[GroupStats]]:
        """The controller's snapshot, with the window's history and per-agent figures cached for :data:`CACHE_S`."""
        async with self._history_lock:
            if self._cache is not None and time.monotonic() - self._cache[0] < CACHE_S:
                return await self.controller.snapshot(), self._cache[1], self._cache[2]
            snap = await self.controller.snapshot(history_days=self.cfg.window_days)
            history = snap.history
            assert history is not None
            agents = await asyncio.to_thread(group_stats, history, lambda row: row.agent)
            self._cache = (time.monotonic(), history, agents)
            return snap, history, agents

    async def snapshot(self) -> dict[str, Any]:
        """Everything the page, the API and the metrics show, as JSON-able data."""
        snap, history, agents = await self._read()
        now, status, jobs, tasks = snap.at, snap.status, snap.jobs, snap.tasks
        for job in jobs:
            if job.get("last_error"):
                job["last_error"] = redact(str(job["last_error"]))
        by_id = {t.id: t for t in tasks}
        running, queue, attempts = [], [], Counter[tuple[str, str]]()
        for task in tasks:
            for attempt in task.attempts:
                attempts[(attempt.agent, attempt.outcome)] += 1
            current = task.current_attempt
            if task.status in ACTIVE:
                started = current.started_at if current else task.updated_at
                running.append(
                    {
                        "id": task.id,
                        "title": redact(task.title),
                        "status": task.status.value,
                        "agent": current.agent if current else task.agent,
                        "attempt": current.number if current else 0,
                        "node": current.node[:12] if current and current.node else "here",
                        "started_at": started.isoformat(),
                        "elapsed_s": round((now - started).total_seconds(), 1),
                    }
                )
            elif task.status in DISPATCHABLE:
                queue.append(
                    {
                        "id": task.id,
                        "title": redact(task.title),
                        "status": task.status.value,
                        "priority": task.priority,
                        "attempts": len(task.attempts),
                        "not_before": task.not_before.isoformat() if task.not_before else None,
                        "depends_on": [d for d in task.depends_on if _unmerged(by_id.get(d))],
                        "blocker": task.last_blocker,
                        "created_at": task.created_at,
                    }
                )
        queue.sort(key=lambda q: (PRIORITY_RANK.get(str(q["priority"]), 1), q.pop("created_at")))
        running.sort(key=lambda r: str(r["started_at"]))
        titles = {t.id: t.title for t in tasks}
        finishes = sorted(history.finishes, key=lambda f: f.ts, reverse=True)

        def finish(kind: str) -> list[dict[str, Any]]:
            return [
                {
                    "task": f.task,
                    "title": redact(titles.get(f.task, "")),
                    "agent": f.agent,
                    "at": f.ts.isoformat(),
                    "attempts": f.attempts,
                    "blocker": f.blocker,
                    "hours": None if f.hours is None else round(f.hours, 2),
                }
                for f in finishes
                if f.kind == kind
            ][:RECENT]

        return {
            "generated_at": now.isoformat(),
            "window_days": self.cfg.window_days,
            "daemon": status,
            "running": running,
            "queue": queue,
            "recent": {
                "merges": finish("merged"),
                "escalations": finish("escalated"),
                "merged_in_window": sum(1 for f in finishes if f.kind == "merged"),
                "escalated_in_window": sum(1 for f in finishes if f.kind == "escalated"),
            },
            "agents": [g.as_dict() for g in agents],
            "health": [
                {k: h[k] for k in ("agent", "type", "week", "day", "gated", "gate", "reason")}
                for row in await self.controller.agents()
                for h in row.get("health") or []
            ],
            "attempts": [{"agent": a, "outcome": o, "count": n} for (a, o), n in sorted(attempts.items())],
            "jobs": jobs,
            "loop": {"lag_s": self.lag.last_s, "max_lag_s": self.lag.max_s} if self.lag.last_s is not None else None,
            "statuses": [s.value for s in TaskStatus],
            "github_webhook": dict(self._webhook_counts()) if self._webhook_counts is not None else None,
        }


def _unmerged(task: Task | None) -> bool:
    return task is None or task.status not in FINISHED
