"""Start-up, shutdown, signals, sd_notify and the wiring of the parts.

    load config → lock + load state → recover → control socket → scheduler → READY=1 → … →
    SIGTERM → STOPPING=1 → stop taking work → grace for running attempts → snapshot → exit 0

Only this module owns signals, the loop and process-wide set-up; every part exposes start/stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from agentos import logging as alog
from agentos.config import Config, ConfigError, RepoConfig, load_config
from agentos.control.controller import Controller
from agentos.control.socket import ControlServer, default_socket_path
from agentos.executor import Executor
from agentos.forge.base import Forge
from agentos.forge.local import LocalForge
from agentos.jobs.dispatch import Dispatcher
from agentos.jobs.pr_monitor import PRMonitor
from agentos.jobs.watchdog import StallWatchdog
from agentos.runtime import Runtime
from agentos.scheduler import Scheduler
from agentos.store import AlreadyRunning, StateError, Store

log = alog.get_logger("agentos.daemon")


def sd_notify(*lines: str) -> bool:
    """Tell systemd about our state (``READY=1``, ``STATUS=…``); a no-op outside ``Type=notify``."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr[0] == "@":
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(addr)
            s.sendall("\n".join(lines).encode())
    except OSError as exc:
        log.warning("sd_notify_failed", error=str(exc))
        return False
    return True


def watchdog_interval() -> float | None:
    usec, pid = os.environ.get("WATCHDOG_USEC"), os.environ.get("WATCHDOG_PID")
    if not usec or (pid and int(pid) != os.getpid()):
        return None
    return int(usec) / 2_000_000


def build_forge(config: Config) -> tuple[Forge, Callable[[RepoConfig], tuple[str, dict[str, str]]]]:
    """The forge the config names, and how to reach each repo's git remote."""
    repos = {r.name: r for r in config.repos}
    if config.forge == "github":
        raise ConfigError(["forge: github is not wired into the daemon yet; use forge: local"])
    forge = LocalForge(config.state_path, repos)

    def remote(repo: RepoConfig) -> tuple[str, dict[str, str]]:
        return str(Path(repo.remote or repo.path or "").expanduser().resolve()), {}

    return forge, remote


class Daemon:
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
        self._bg: set[asyncio.Task[None]] = set()
        self.rt: Runtime | None = None

    def request_stop(self) -> None:
        self._stop.set()

    async def reload(self) -> None:
        """Re-read the config file; a bad file keeps the last good config and says why."""
        if self.config_path is None or self.rt is None:
            return
        try:
            new, _ = load_config(self.config_path)
        except ConfigError as exc:
            log.error("config_reload_rejected", problems=exc.problems)
            return
        self.rt.config = new
        self.config = new
        log.info("config_reloaded", path=str(self.config_path), repos=[r.name for r in new.repos])

    def _status_line(self) -> str:
        rt = self.rt
        if rt is None:
            return "starting"
        mode = "paused" if rt.state.paused else "dispatching"
        return f"{mode}, {len(rt.running)} agents running, {rt.graph.counts()['queued']} queued"

    async def run(self) -> int:
        state_dir = self.config.state_path
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        store = Store(state_dir)
        try:
            store.lock()
        except AlreadyRunning as exc:
            log.error("already_running", error=str(exc))
            print(f"agentos: {exc}", flush=True)
            return 2
        try:
            graph, state = store.load()
        except StateError as exc:
            log.critical("state_unreadable", error=str(exc))
            print(f"agentos: {exc}", flush=True)
            return 3
        forge, remote = build_forge(self.config)
        rt = Runtime(self.config, self.config_path, store, graph, state, forge, remote, clock=self.clock)
        self.rt = rt
        executor = Executor(rt)
        await executor.recover()

        scheduler = Scheduler(state, configs=self.config.jobs, on_change=rt.save_state, clock=self.clock)
        rt.scheduler = scheduler
        monitor = PRMonitor(rt, executor)
        dispatcher = Dispatcher(rt, executor)
        watchdog = StallWatchdog(rt, executor)
        executor.on_pr_opened = lambda: scheduler.poke("pr_monitor")
        executor.on_slot_free = lambda: scheduler.poke("dispatch")
        scheduler.register("dispatch", dispatcher.tick)
        scheduler.register("pr_monitor", monitor.tick)
        scheduler.register("stall_watchdog", watchdog.tick, runs_when_paused=True)

        controller = Controller(rt, on_reload=self.reload)
        controller.approver = monitor.approve
        server = ControlServer(controller, self.socket_path)
        await server.start()
        scheduler.start()

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, lambda: self._spawn(self.reload()))

        sd_notify("READY=1", f"STATUS={self._status_line()}")
        log.info(
            "daemon_started",
            pid=os.getpid(),
            state_dir=str(state_dir),
            socket=str(self.socket_path),
            forge=self.config.forge,
            repos=[r.name for r in self.config.repos],
            tasks=len(graph),
        )
        self.ready.set()
        if (interval := watchdog_interval()) is not None:
            self._spawn(self._watchdog(interval))
        scheduler.poke("dispatch")

        await self._stop.wait()
        sd_notify("STOPPING=1", "STATUS=stopping")
        log.info("daemon_stopping", running=len(rt.running))
        rt.stopping = True
        await scheduler.shutdown(timeout=5)
        await executor.drain(self.config.limits.shutdown_grace_s)
        await server.stop()
        for task in list(self._bg):
            task.cancel()
        await asyncio.gather(*self._bg, return_exceptions=True)
        store.snapshot(graph, state)
        await forge.aclose()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        store.close()
        log.info("daemon_stopped")
        return 0

    def _spawn(self, coro: object) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)

    async def _watchdog(self, interval: float) -> None:
        """Ping systemd from the loop itself, so a wedged loop stops the pings and gets us restarted."""
        while True:
            sd_notify("WATCHDOG=1", f"STATUS={self._status_line()}")
            await asyncio.sleep(interval)


def run_daemon(config_path: str | None = None) -> int:
    """The body of ``agentos run``: configure logging, load the config, run until signalled."""
    try:
        config, path = load_config(config_path)
    except ConfigError as exc:
        alog.configure()
        for problem in exc.problems:
            print(problem, flush=True)
        return 78  # EX_CONFIG: systemd's Restart=on-failure will not loop on a broken file forever
    alog.configure(config.log_level)
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(Daemon(config, path).run())
    return 0
