"""The job table: named jobs on APScheduler 3.x, with pause, per-job disable, run-now and durable job state.

Every job coalesces, never overlaps itself (a per-job lock shared by scheduled runs and run-now), runs
however late it is (``misfire_grace_time=None``) and logs its own failure without stopping the daemon.
A paused daemon runs only the jobs registered with ``runs_when_paused`` (the stall watchdog). Pause,
disabled jobs and each job's last run, last success and last error live in :class:`DaemonState`, which
the daemon journals through ``on_change``, so they survive a restart.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import uuid4

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from agentos import logging as alog
from agentos.config import JobConfig
from agentos.errors import ControlError
from agentos.store import DaemonState, JobRun

log = alog.get_logger("agentos.scheduler")

JobFunc = Callable[[], Awaitable[None]]
JOB_DEFAULTS = {"coalesce": True, "max_instances": 1, "misfire_grace_time": None}

# name → (cron expression | interval seconds); DESIGN.md §7.
DEFAULT_TRIGGERS: dict[str, str | float] = {
    "dispatch": 60.0,
    "pr_monitor": "*/5 * * * *",
    "incident_scan": "17 */6 * * *",
    "log_analysis": "0 7 * * mon",
    "agent_scoring": "30 6 * * mon",
    "backlog_groom": "0 * * * *",
    "sprint_plan": "5 * * * *",
    "daily_digest": "0 8 * * *",
    "stall_watchdog": 60.0,
}


def make_trigger(spec: str | float) -> CronTrigger | IntervalTrigger:
    if isinstance(spec, str):
        return CronTrigger.from_crontab(spec, timezone=UTC)
    return IntervalTrigger(seconds=spec, timezone=UTC)


@dataclass
class _Job:
    name: str
    func: JobFunc
    spec: str | float
    runs_when_paused: bool
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


RunResult = Literal["ok", "failed", "skipped_busy", "skipped_paused", "skipped_disabled"]


class Scheduler:
    """The daemon's job table. Start it from inside the running loop."""

    def __init__(
        self,
        state: DaemonState,
        *,
        configs: dict[str, JobConfig] | None = None,
        on_change: Callable[[], None] = lambda: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._state = state
        self._configs = configs or {}
        self._on_change = on_change
        self._clock = clock
        self._jobs: dict[str, _Job] = {}
        self._aps = AsyncIOScheduler(timezone=UTC, job_defaults=JOB_DEFAULTS)
        self._started = False

    def __repr__(self) -> str:
        return f"<Scheduler jobs={len(self._jobs)} paused={self._state.paused} busy={self.busy()}>"

    @property
    def names(self) -> list[str]:
        return list(self._jobs)

    def busy(self) -> list[str]:
        return [name for name, job in self._jobs.items() if job.lock.locked()]

    def register(self, name: str, func: JobFunc, *, runs_when_paused: bool = False) -> None:
        """Add a job under its DESIGN.md name; the trigger comes from config, else the default table."""
        cfg = self._configs.get(name, JobConfig())
        spec: str | float = cfg.cron or cfg.interval_s or DEFAULT_TRIGGERS.get(name, 3600.0)
        job = _Job(name, func, spec, runs_when_paused)
        self._jobs[name] = job
        if not cfg.enabled and name not in self._state.disabled_jobs:
            self._state.disabled_jobs.append(name)
        if self._started:
            self._add(job)

    def _add(self, job: _Job) -> None:
        async def scheduled() -> None:
            await self._run(job, manual=False)

        self._aps.add_job(scheduled, make_trigger(job.spec), id=job.name, name=job.name, replace_existing=True)

    def start(self) -> None:
        for job in self._jobs.values():
            self._add(job)
        self._aps.start()
        self._started = True

    async def shutdown(self, timeout: float = 10.0) -> None:
        """Stop firing jobs and wait (bounded) for running ones to finish."""
        if self._started:
            self._aps.pause()
        deadline = time.monotonic() + timeout
        while self.busy() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self._started:
            self._aps.shutdown(wait=False)
            await asyncio.sleep(0)
            self._started = False

    def _job(self, name: str) -> _Job:
        try:
            return self._jobs[name]
        except KeyError:
            raise ControlError(f"no job named {name!r}; jobs: {', '.join(sorted(self._jobs))}") from None

    def set_enabled(self, name: str, enabled: bool) -> None:
        self._job(name)
        disabled = self._state.disabled_jobs
        if enabled and name in disabled:
            disabled.remove(name)
        elif not enabled and name not in disabled:
            disabled.append(name)
        self._on_change()

    def is_enabled(self, name: str) -> bool:
        return name not in self._state.disabled_jobs

    async def run_now(self, name: str) -> RunResult:
        """Run a job at once and wait for it (an operator's ``ctl run``); disabled jobs run too."""
        return await self._run(self._job(name), manual=True)

    def poke(self, name: str) -> None:
        """Ask for a run soon without waiting for it (a new ready issue pokes dispatch)."""
        job = self._job(name)
        if self._started:
            self._aps.modify_job(job.name, next_run_time=self._clock())
        else:
            asyncio.get_running_loop().create_task(self._run(job, manual=False))

    async def _run(self, job: _Job, *, manual: bool) -> RunResult:
        if self._state.paused and not job.runs_when_paused:
            return "skipped_paused"
        if not manual and not self.is_enabled(job.name):
            return "skipped_disabled"
        if job.lock.locked():
            return "skipped_busy"
        async with job.lock:
            alog.clear()
            alog.bind(job=job.name, run_id=uuid4().hex[:8])
            record = self._state.job_runs.setdefault(job.name, JobRun())
            started = time.monotonic()
            record.last_run = self._clock()
            record.runs += 1
            try:
                await job.func()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a job's failure is logged and counted, never fatal
                record.failures += 1
                record.last_error = f"{type(exc).__name__}: {exc}"[:500]
                log.error("job_failed", error=record.last_error, exc_info=True)
                result: RunResult = "failed"
            else:
                record.last_success = self._clock()
                record.last_error = None
                result = "ok"
            finally:
                alog.clear()
            log.debug("job_ran", job=job.name, result=result, ms=round((time.monotonic() - started) * 1000, 1))
            self._on_change()
            return result

    def next_run(self, name: str) -> datetime | None:
        if not self._started:
            return None
        aps_job = self._aps.get_job(name)
        return aps_job.next_run_time if aps_job is not None else None

    def table(self) -> list[dict[str, Any]]:
        rows = []
        for name, job in self._jobs.items():
            record = self._state.job_runs.get(name, JobRun())
            nxt = self.next_run(name) if self.is_enabled(name) else None
            rows.append(
                {
                    "name": name,
                    "enabled": self.is_enabled(name),
                    "trigger": str(job.spec) if isinstance(job.spec, str) else f"every {job.spec:g}s",
                    "running": job.lock.locked(),
                    "next_run": nxt.isoformat() if nxt else None,
                    "last_run": record.last_run.isoformat() if record.last_run else None,
                    "last_success": record.last_success.isoformat() if record.last_success else None,
                    "last_error": record.last_error,
                    "runs": record.runs,
                    "failures": record.failures,
                }
            )
        return rows
