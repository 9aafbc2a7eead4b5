"""Start-up, shutdown, signals, sd_notify and the wiring of the parts.

    load config → lock + load state (snapshot it if it was rebuilt) → prune old events → recover →
    control socket → scheduler → READY=1 → … (WATCHDOG=1 every WATCHDOG_USEC/2; SIGHUP reloads) … →
    SIGTERM/SIGINT → STOPPING=1 → stop taking work → grace for running attempts → snapshot → exit 0

Only this module owns signals, the loop and process-wide set-up; every part exposes start/stop.

Exit codes of ``agentos run`` (systemd's ``RestartPreventExitStatus=78 2`` keeps it from looping on the
two that a restart cannot fix):

    0   stopped by SIGTERM/SIGINT, state saved
    1   crashed (a bug; the traceback is in the journal) or the final snapshot failed
    2   another daemon holds the state directory's lock, or answers on the control socket
    3   the state directory is corrupt or too new: fix or move it, nothing was changed
    78  the config file is invalid (EX_CONFIG)
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from agentos import __version__
from agentos import logging as alog
from agentos.assembly import Core, build_core
from agentos.config import Config, ConfigError, load_config
from agentos.control.socket import ControlServer, SocketInUse, default_socket_path
from agentos.daemon_parts import (
    build_controller,
    build_notifier,
    github_webhook,
    job_configs,
    say,
    start_github_webhook,
    start_status_page,
    start_telegram,
    status_page,
    telegram_bot,
    telegram_sender,
)
from agentos.executor import Executor
from agentos.forge.base import Forge
from agentos.jobs import loop_jobs
from agentos.runners.attempt_egress import egress_proxy
from agentos.runners.egress import EgressProxy
from agentos.runners.policy import announce
from agentos.runtime import Runtime
from agentos.scheduler import DEFAULT_TRIGGERS, Scheduler
from agentos.store import AlreadyRunning, DaemonState, StateError, Store
from agentos.systemd import STATUS_EVERY_S, notify_loop, sd_notify, watchdog_interval
from agentos.task_graph import TaskGraph
from agentos.workspace_registry import WorkspaceRegistry

if TYPE_CHECKING:
    from agentos.ops.github_webhook import GitHubWebhook

__all__ = [  # job_configs, sd_notify, watchdog_interval, STATUS_EVERY_S: re-exported from their new homes
    "EXIT_ALREADY_RUNNING",
    "EXIT_BAD_STATE",
    "EXIT_CONFIG",
    "EXIT_CRASHED",
    "EXIT_OK",
    "RESTART_ONLY",
    "STATUS_EVERY_S",
    "Daemon",
    "build_forge",
    "job_configs",
    "run_daemon",
    "sd_notify",
    "watchdog_interval",
]

log = alog.get_logger("agentos.daemon")


EXIT_OK, EXIT_CRASHED, EXIT_ALREADY_RUNNING, EXIT_BAD_STATE, EXIT_CONFIG = 0, 1, 2, 3, 78
RESTART_ONLY = ("state_dir", "forge", "github", "status_page")
"""Config keys a reload cannot change under a running daemon; a file that changes them is refused."""


def _projects(config: Config) -> dict[str, object]:
    return {r.name: r.project for r in config.repos}


def _config_invalid(exc: ConfigError) -> int:
    log.critical("config_invalid", problems=exc.problems)
    for problem in exc.problems:
        say(problem)
    return EXIT_CONFIG


def build_forge(config: Config, *, egress: EgressProxy | None = None) -> tuple[Forge, WorkspaceRegistry]:
    """The forge the config names, and the one workspace registry its parts share (see forge/factory.py)."""
    from agentos.forge.factory import build_forge as build

    return build(config, egress=egress)


class Daemon:
    """One running agentos: owns the loop's signals, the state lock and the parts' lifetimes."""

    def __init__(
        self,
        config: Config,
        config_path: Path | None,
        *,
        socket_path: Path | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.socket_path = socket_path or default_socket_path()
        self.clock = clock
        self._stop = asyncio.Event()
        self.ready = asyncio.Event()
        self._group: asyncio.TaskGroup | None = None  # while serving: pings, Telegram, SIGHUP reloads
        self._reload_lock = asyncio.Lock()
        self.rt: Runtime | None = None
        self.core: Core | None = None
        """The running core (with :attr:`rt`, set once the parts are built; reload and tests use them)."""
        self.webhook: GitHubWebhook | None = None
        """GitHub's webhook receiver while it is configured (its URL and delivery counts)."""
        self.reloads = 0

    def __repr__(self) -> str:
        return f"<Daemon {self._status_line()} reloads={self.reloads}>"

    def request_stop(self) -> None:
        self._stop.set()

    # ------------------------------------------------------------ reload

    async def reload(self) -> None:
        """Re-read the config file and apply it; a bad file raises :class:`ConfigError` and changes nothing.

        A file that changes a key in :data:`RESTART_ONLY` is refused as a whole (those need a restart).
        Job triggers are rescheduled (every crontab when ``timezone`` changed), the local forge learns the new
        repos, and dispatch runs at once (a higher ``max_parallel_workers`` takes effect without waiting a minute).
        """
        async with self._reload_lock:
            rt = self.rt
            if rt is None:
                raise ConfigError(["the daemon is still starting; reload once it is ready"])
            if self.config_path is None:
                raise ConfigError(["the daemon runs without a config file; there is nothing to reload"])
            new, _ = await asyncio.to_thread(load_config, self.config_path)
            old = self.config
            changed = [key for key in RESTART_ONLY if getattr(new, key) != getattr(old, key)]
            if new.forge == "github" and _projects(new) != _projects(old):
                changed.append("repos[].project")  # GitHubForge reads the boards once, when it is built
            if changed:
                raise ConfigError([f"{self.config_path}: {key}: changed; that needs a restart" for key in changed])
            if rt.scheduler is not None:
                # checks every trigger before changing anything; a new `timezone` re-schedules the crons
                rt.scheduler.reconfigure(job_configs(new), tz=new.zone)
            rt.replace_config(new)
            self.config = new
            rt.forge.reconfigure(new.repos)
            if self.core is not None:
                await self.core.guard.check()  # a new or moved repo path is refused (or taken back) now
            if new.log_level != old.log_level:
                alog.configure(new.log_level)
            self.reloads += 1
            log.info(
                "config_reloaded",
                path=str(self.config_path),
                repos=[r.name for r in new.repos],
                max_parallel_workers=new.max_parallel_workers,
                timezone=new.timezone,
            )
            if rt.scheduler is not None and rt.scheduler.has_job("dispatch"):
                rt.scheduler.poke("dispatch")

    def _reload_on_sighup(self) -> None:
        if self._group is None:
            log.warning("config_reload_deferred", reason="the daemon is not serving yet; send SIGHUP again")
            return
        self._group.create_task(self._reload_on_signal())

    async def _reload_on_signal(self) -> None:
        try:
            await self.reload()
        except ConfigError as exc:
            log.error("config_reload_rejected", path=str(self.config_path), problems=exc.problems)

    # ------------------------------------------------------------ run

    def _status_line(self) -> str:
        rt = self.rt
        if rt is None:
            return "starting"
        if rt.stopping:
            return "stopping"
        mode = "paused" if rt.state.paused else "dispatching"
        line = (
            f"{mode}, {len(rt.running)}/{rt.config.max_parallel_workers} agents running, "
            f"{rt.graph.counts()['queued']} queued"
        )
        now = rt.now()
        if paused := sum(1 for until in rt.state.paused_agents.values() if until > now):
            line += f", {paused} agent{'s' if paused > 1 else ''} paused"
        if rt.write_failure is not None:
            line += ", STATE WRITES HELD (" + ("disk full" if rt.write_failure.disk_full else "write failed") + ")"
        return line

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT; return the process exit code (see the module's table)."""
        loop = asyncio.get_running_loop()
        # Before anything slow: a SIGTERM during start-up then stops us cleanly instead of killing us.
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self._reload_on_sighup)
        try:
            return await self._run()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)

    async def _run(self) -> int:
        state_dir = self.config.state_path
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        store = Store(state_dir)
        try:
            store.lock()
        except AlreadyRunning as exc:
            log.error("already_running", error=str(exc))
            say(str(exc))
            return EXIT_ALREADY_RUNNING
        try:
            return await self._run_locked(store)
        finally:
            store.close()

    async def _run_locked(self, store: Store) -> int:
        try:
            graph, state = store.load()
            if store.needs_snapshot:  # migrated, or rebuilt from the .bak and events/: make it the new base
                store.snapshot(graph, state)
                log.warning("state_resnapshotted_after_recovery", path=str(store.graph_path))
        except StateError as exc:
            log.critical("state_unreadable", error=str(exc))
            say(f"{exc} (the daemon will not start on a state it cannot read; fix or move the file)")
            return EXIT_BAD_STATE
        self._prune_events(store)
        egress = egress_proxy()  # one per daemon: every sandboxed attempt's and test's way out
        try:
            try:
                forge, workspaces = build_forge(self.config, egress=egress)
            except ConfigError as exc:
                return _config_invalid(exc)
            try:
                return await self._serve(store, graph, state, forge, workspaces, egress)
            finally:
                await forge.aclose()
        finally:
            await egress.aclose()
            shutil.rmtree(egress.socket_dir, ignore_errors=True)

    def _prune_events(self, store: Store) -> None:
        """Drop rotated history older than ``limits.event_retention_days`` (once per start)."""
        cutoff = self.clock() - timedelta(days=self.config.limits.event_retention_days)
        try:
            store.prune_events(cutoff)
        except OSError as exc:
            log.warning("events_prune_failed", error=str(exc))

    async def _serve(
        self,
        store: Store,
        graph: TaskGraph,
        state: DaemonState,
        forge: Forge,
        workspaces: WorkspaceRegistry,
        egress: EgressProxy,
    ) -> int:
        scheduler = Scheduler(  # first: the parts wake its jobs (registered once the parts exist)
            state,
            configs=job_configs(self.config),
            on_change=lambda: rt.save_job_state(),
            on_failure=self._job_failed,
            clock=self.clock,
            held=lambda: rt.held,
            tz=self.config.zone,
        )
        # The notifier first (before recover(): an escalation it finishes is announced, not dropped): its sender
        # needs only the Bot and the chats; the command bot comes last, over the controller.
        sender = telegram_sender(self.config.telegram)
        notifier = build_notifier(  # the runtime it journals through is built next, before any notice
            sender,
            state,
            save=lambda: rt.save_state(),
            journal=lambda data: rt.record("notification_sent", None, **data),
        )
        self.rt = rt = Runtime(
            self.config,
            self.config_path,
            store,
            graph,
            state,
            forge,
            workspaces.remote_for,
            clock=self.clock,
            notifier=notifier,
            scheduler=scheduler,
            workspace_registry=workspaces,
        )
        self.core = core = build_core(rt, egress=egress)
        controller = build_controller(
            rt,
            core,
            on_reload=self.reload,
            approvals=core.monitor,
            status_page_url=lambda: page.url if page else None,
        )
        try:
            self.webhook = hook = github_webhook(rt)
            page = status_page(controller, self.config.status_page, webhook=hook)
        except ConfigError as exc:
            return _config_invalid(exc)  # nothing to close yet: no notice sent, the Bot connects on first use
        bot = telegram_bot(sender, controller, self.config.telegram) if sender is not None else None
        try:
            if problem := announce(self.config.sandbox):  # the start-up log says how attempts will run
                rt.notify(1, "sandbox_unavailable", f"No agent attempt can start: {problem}")
            await core.executor.recover()
            await core.guard.check()  # a repo whose path is gone is refused from the start, with one notice

            try:
                scheduler.register("dispatch", core.dispatcher.tick)
                scheduler.register("pr_monitor", core.monitor.tick)
                scheduler.register("acceptance_check", core.acceptance.tick)
                scheduler.register("stall_watchdog", core.watchdog.tick, runs_when_paused=True, runs_when_held=True)
                for name, job in loop_jobs(
                    settings=rt,
                    journal=rt,
                    clock=rt.now,
                    graph=rt.graph,
                    forge=rt.forge,
                    notify=rt,
                    store=store,
                    stopping=lambda: rt.stopping,
                    wake=rt.wake,
                    workspaces=rt,
                ).items():
                    scheduler.register(name, job)
            except ConfigError as exc:
                return _config_invalid(exc)
            if unknown := sorted(set(self.config.jobs) - set(DEFAULT_TRIGGERS)):
                log.warning("config_unknown_jobs", jobs=unknown, known=sorted(DEFAULT_TRIGGERS))

            server = ControlServer(controller, self.socket_path)
            try:
                await server.start()
            except SocketInUse as exc:
                log.error("already_running", error=str(exc))
                say(str(exc))
                return EXIT_ALREADY_RUNNING
            scheduler.start()
            if page is not None:
                await start_status_page(page)
            if hook is not None:
                await start_github_webhook(hook)

            sd_notify("READY=1", f"STATUS={self._status_line()}")
            log.info(
                "daemon_started",
                pid=os.getpid(),
                version=__version__,
                state_dir=str(store.state_dir),
                socket=str(self.socket_path),
                config=str(self.config_path) if self.config_path else None,
                forge=self.config.forge,
                repos=[r.name for r in self.config.repos],
                tasks=len(graph),
                paused=state.paused,
                max_parallel_workers=self.config.max_parallel_workers,
            )
            self.ready.set()
            async with asyncio.TaskGroup() as group:  # the parts that run beside the scheduler's jobs
                self._group = group
                beside: list[asyncio.Task[None]] = []
                if os.environ.get("NOTIFY_SOCKET"):
                    beside.append(group.create_task(notify_loop(self._status_line, watchdog_interval())))
                if bot is not None:
                    beside.append(group.create_task(start_telegram(bot)))
                beside.append(group.create_task(egress.run()))
                if scheduler.has_job("dispatch"):
                    scheduler.poke("dispatch")
                await self._stop.wait()
                code = await self._shutdown(store, graph, state, scheduler, core.executor, server)
                self._group = None
                for task in beside:
                    task.cancel()
            if page is not None:
                await page.stop()
            if hook is not None:
                await hook.stop()
            return code
        finally:  # the notifier before the bot: the bot closes the session the sender uses
            await notifier.aclose()
            if bot is not None:
                await bot.stop()

    def _job_failed(self, job: str, error: str) -> None:
        """A job's failure reaches the operator once per job and error text per hour (sev2 dedup window)."""
        if self.rt is not None:
            first = error.splitlines()[0] if error else "unknown error"
            self.rt.notify(2, f"job_failed:{job}:{first[:80]}", f"Job {job} failed: {first}")
            self.rt.record("job_failed", job=job, error=first[:300])

    async def _shutdown(
        self,
        store: Store,
        graph: TaskGraph,
        state: DaemonState,
        scheduler: Scheduler,
        executor: Executor,
        server: ControlServer,
    ) -> int:
        """Stop taking work, give running jobs and attempts the grace period together, then save."""
        assert self.rt is not None
        grace = self.config.limits.shutdown_grace_s
        sd_notify("STOPPING=1", "STATUS=stopping")
        log.info("daemon_stopping", running=len(self.rt.running), grace_s=grace)
        self.rt.stopping = True
        await asyncio.gather(scheduler.shutdown(timeout=grace), executor.drain(grace))
        await server.stop()
        try:
            store.snapshot(graph, state)
        except StateError as exc:
            log.critical("final_snapshot_failed", error=str(exc))
            return EXIT_CRASHED  # the journal still holds every acknowledged change
        log.info("daemon_stopped")
        return EXIT_OK


def run_daemon(config_path: str | None = None) -> int:
    """The body of ``agentos run``: configure logging, load the config, run until signalled."""
    try:
        config, path = load_config(config_path)
    except ConfigError as exc:
        alog.configure()
        log.critical("config_invalid", problems=exc.problems)
        for problem in exc.problems:
            print(problem, file=sys.stderr, flush=True)
        return EXIT_CONFIG  # systemd's RestartPreventExitStatus=78 keeps it from looping on a broken file
    alog.configure(config.log_level)
    daemon = Daemon(config, path.resolve() if path is not None else None)
    try:
        return asyncio.run(daemon.run())
    except KeyboardInterrupt:  # a second Ctrl-C before the handlers are in place
        return EXIT_OK
    except Exception as exc:
        log.critical("daemon_crashed", error=f"{type(exc).__name__}: {exc}", exc_info=True)
        say(f"crashed: {type(exc).__name__}: {exc}")
        return EXIT_CRASHED
