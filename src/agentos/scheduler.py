"""The job table: named jobs on APScheduler 3.x, with pause, per-job disable, run-now and durable job state.

Every job coalesces, never overlaps itself (a per-job lock shared by scheduled runs and run-now), runs
however late it is (``misfire_grace_time=None``) and logs its own failure without stopping the daemon.
A paused daemon runs only the jobs registered with ``runs_when_paused`` (the stall watchdog). While the
state cannot be written (``held`` names why: a full disk, see :attr:`agentos.runtime.Runtime.write_failure`)
only the jobs registered with ``runs_when_held`` run (the stall watchdog, which retries the write); the
others are skipped (``skipped_held``, logged once per job and hold) instead of failing on their first write.
Pause, disabled jobs and each job's last run, last success and last error live in :class:`DaemonState`, which
the daemon journals through ``on_change``, so they survive a restart; so does the next run, which
:func:`next_due` derives from the last run (a run missed while the daemon was down happens at start-up).

Crontabs are read in one zone, the config's ``timezone`` (``tz``): ``0 8 * * *`` fires at 08:00 there, 23 or
25 hours apart across a DST change. A wall-clock time the spring change skips fires an hour later that
day (02:30 in Europe/Berlin runs at 03:30); one the autumn change repeats fires at both instants.
A reload that changes the zone re-schedules every cron job (:meth:`Scheduler.reconfigure`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Literal
from uuid import uuid4

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from agentos import logging as alog
from agentos.config import ConfigError, JobConfig
from agentos.errors import ControlError
from agentos.store import DaemonState, JobRun

log = alog.get_logger("agentos.scheduler")

JobFunc = Callable[[], Awaitable[None]]
TriggerSpec = str | float
"""A crontab expression (``"*/5 * * * *"``, in the scheduler's zone) or an interval in seconds."""

JOB_DEFAULTS: dict[str, Any] = {"coalesce": True, "max_instances": 1, "misfire_grace_time": None}

# name → (cron expression | interval seconds).
DEFAULT_TRIGGERS: dict[str, TriggerSpec] = {
    "dispatch": 60.0,
    "pr_monitor": "*/5 * * * *",
    "incident_scan": "17 */6 * * *",
    "log_analysis": "0 7 * * mon",
    "agent_scoring": "30 6 * * mon",
    "backlog_groom": "0 * * * *",
    "sprint_plan": "5 * * * *",
    "daily_digest": "0 8 * * *",
    "housekeeping": "43 3 * * *",  # rotated journals past limits.event_retention_days (jobs/housekeeping.py)
    "stall_watchdog": 60.0,  # the design said 5 min; a minute ends a dead attempt sooner and costs nothing
    "acceptance_check": "*/10 * * * *",  # also poked after each merge of a task with acceptance checks
    "outcome_check": "23 * * * *",  # also poked after each merge: its baseline, then the reading after the window
}

RunResult = Literal["ok", "failed", "skipped_busy", "skipped_paused", "skipped_disabled", "skipped_held"]


def make_trigger(spec: TriggerSpec, tz: tzinfo = UTC) -> CronTrigger | IntervalTrigger:
    """The APScheduler trigger of a spec, a crontab read in ``tz``; a bad crontab raises ``ValueError``."""
    if isinstance(spec, str):
        return CronTrigger.from_crontab(spec, timezone=tz)
    return IntervalTrigger(seconds=spec, timezone=tz)


def spec_for(name: str, cfg: JobConfig | None) -> TriggerSpec:
    """A job's trigger: the config's ``cron`` or ``interval_s``, else the default table, else hourly."""
    cfg = cfg or JobConfig()
    return cfg.cron or cfg.interval_s or DEFAULT_TRIGGERS.get(name, 3600.0)


def check_configs(configs: Mapping[str, JobConfig]) -> list[str]:
    """One ``jobs.NAME.cron: …`` problem per trigger APScheduler would refuse (config validation checks shape only)."""
    problems = []
    for name, cfg in configs.items():
        if cfg.cron:
            try:
                make_trigger(cfg.cron)
            except ValueError as exc:
                problems.append(f"jobs.{name}.cron: {cfg.cron!r} is not a valid crontab: {exc}")
    return problems


def next_due(spec: TriggerSpec, last_run: datetime | None, now: datetime, tz: tzinfo = UTC) -> datetime | None:
    """When a job should next run, given its last run: ``now`` when a run was missed, None when it never ran.

    An interval job is due ``interval`` after its last run; a cron job at the first slot after its last
    run. A due time already past means the daemon was down (or busy) when it came: coalesced into one
    run now. With no last run, None lets the trigger pick the first time as usual. A crontab is read in ``tz``.
    """
    if last_run is None:
        return None
    if isinstance(spec, str):
        trigger = make_trigger(spec, tz)
        fire: datetime | None = trigger.get_next_fire_time(None, last_run + timedelta(microseconds=1))
        due = fire
    else:
        due = last_run + timedelta(seconds=spec)
    if due is None:
        return None
    return max(due, now)


@dataclass
class _Job:
    name: str
    func: JobFunc
    spec: TriggerSpec
    runs_when_paused: bool
    runs_when_held: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    skipped: int = 0
    held_logged: bool = False  # this hold's skip is logged; reset by the next run
    pending: bool = False  # poked while it ran: run once more right after


class Scheduler:
    """The daemon's job table. Start it from inside the running loop."""

    def __init__(
        self,
        state: DaemonState,
        *,
        configs: Mapping[str, JobConfig] | None = None,
        on_change: Callable[[], None] = lambda: None,
        on_failure: Callable[[str, str], None] = lambda job, error: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        held: Callable[[], str | None] = lambda: None,
        tz: tzinfo = UTC,
    ) -> None:
        self._state = state
        self._tz = tz
        self._held = held
        self._configs: dict[str, JobConfig] = dict(configs or {})
        self._on_change = on_change
        self._on_failure = on_failure
        self._clock = clock
        self._jobs: dict[str, _Job] = {}
        self._aps = AsyncIOScheduler(timezone=tz, job_defaults=JOB_DEFAULTS)
        self._aps.add_listener(self._on_aps_event, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED)
        self._started = False
        self._bg: set[asyncio.Task[RunResult]] = set()

    def __repr__(self) -> str:
        return f"<Scheduler jobs={len(self._jobs)} paused={self._state.paused} busy={self.busy()}>"

    @property
    def names(self) -> list[str]:
        return list(self._jobs)

    @property
    def tz(self) -> tzinfo:
        """The zone crontabs are read in (the config's ``timezone``)."""
        return self._tz

    @property
    def apscheduler(self) -> AsyncIOScheduler:
        """The APScheduler underneath, for inspection (tests read its job table as data)."""
        return self._aps

    def has_job(self, name: str) -> bool:
        return name in self._jobs

    def busy(self) -> list[str]:
        return [name for name, job in self._jobs.items() if job.lock.locked()]

    def register(
        self, name: str, func: JobFunc, *, runs_when_paused: bool = False, runs_when_held: bool = False
    ) -> None:
        """Add a job under its job-table name; the trigger comes from config, else the default table.

        Raises :class:`ConfigError` when the configured crontab is not valid.
        """
        cfg = self._configs.get(name)
        spec = spec_for(name, cfg)
        self._check_spec(name, spec)
        job = _Job(name, func, spec, runs_when_paused, runs_when_held)
        self._jobs[name] = job
        if cfg is not None and not cfg.enabled and name not in self._state.disabled_jobs:
            self._state.disabled_jobs.append(name)
        if self._started:
            self._add(job)

    @staticmethod
    def _check_spec(name: str, spec: TriggerSpec) -> None:
        try:
            make_trigger(spec)
        except ValueError as exc:
            raise ConfigError([f"jobs.{name}.cron: {spec!r} is not a valid crontab: {exc}"]) from None

    def reconfigure(self, configs: Mapping[str, JobConfig], *, tz: tzinfo | None = None) -> list[str]:
        """Apply a reloaded ``jobs:`` section: new triggers, and ``enabled`` values that changed in the file.

        An ``enabled`` the file did not change leaves the operator's ``ctl job on|off`` alone. A new ``tz``
        (the config's ``timezone``) re-schedules every cron job in it. Checks every trigger before changing
        anything (raises :class:`ConfigError`); returns the jobs changed.
        """
        problems = check_configs(configs)
        if problems:
            raise ConfigError(problems)
        rezoned = tz is not None and str(tz) != str(self._tz)
        if tz is not None:
            self._tz = tz
        changed = []
        for name, job in self._jobs.items():
            old_cfg, new_cfg = self._configs.get(name) or JobConfig(), configs.get(name) or JobConfig()
            spec = spec_for(name, new_cfg)
            if spec != job.spec or (rezoned and isinstance(spec, str)):
                job.spec = spec
                if self._started:
                    self._add(job)
                changed.append(name)
            if new_cfg.enabled != old_cfg.enabled and new_cfg.enabled != self.is_enabled(name):
                self._set_disabled(name, not new_cfg.enabled)
                changed.append(name)
        self._configs = dict(configs)
        if changed:
            self._on_change()
        return sorted(set(changed))

    def _add(self, job: _Job) -> None:
        async def scheduled() -> None:  # must be `async def`: APScheduler runs a plain def in a thread
            await self.run_scheduled(job.name)

        record = self._state.job_runs.get(job.name)
        due = next_due(job.spec, record.last_run if record else None, self._clock(), self._tz)
        options: dict[str, Any] = {} if due is None else {"next_run_time": due}
        self._aps.add_job(
            scheduled, make_trigger(job.spec, self._tz), id=job.name, name=job.name, replace_existing=True, **options
        )

    def start(self, *, paused: bool = False) -> None:
        """Put every registered job on the loop's APScheduler and start it (call inside the running loop).

        ``paused`` starts APScheduler without firing anything (tests inspect the table that way).
        """
        for job in self._jobs.values():
            self._add(job)
        self._aps.start(paused=paused)
        self._started = True

    async def shutdown(self, timeout: float = 10.0) -> None:
        """Stop firing jobs and wait (bounded) for running ones to finish; then stop APScheduler."""
        if self._started:
            self._aps.pause()
        try:
            async with asyncio.timeout(timeout):
                for job in self._jobs.values():
                    async with job.lock:
                        pass
        except TimeoutError:
            log.warning("jobs_still_running_at_shutdown", jobs=self.busy())
        if self._started:
            self._aps.shutdown(wait=False)  # cancels coroutine jobs still running
            await asyncio.sleep(0)
            self._started = False

    def _job(self, name: str) -> _Job:
        try:
            return self._jobs[name]
        except KeyError:
            raise ControlError(f"no job named {name!r}; jobs: {', '.join(sorted(self._jobs))}") from None

    def _set_disabled(self, name: str, disabled: bool) -> None:
        names = self._state.disabled_jobs
        if not disabled and name in names:
            names.remove(name)
        elif disabled and name not in names:
            names.append(name)

    def set_enabled(self, name: str, enabled: bool) -> None:
        """``ctl job on|off NAME``: a disabled job is skipped by its schedule (run-now still runs it)."""
        self._job(name)
        self._set_disabled(name, not enabled)
        self._on_change()
        log.info("job_enabled" if enabled else "job_disabled", job=name)

    def is_enabled(self, name: str) -> bool:
        return name not in self._state.disabled_jobs

    async def run_now(self, name: str) -> RunResult:
        """Run a job at once and wait for it (an operator's ``ctl run``); disabled jobs run too.

        While the job is running on its own schedule, this waits for that run to end and then runs it once
        more: the operator asked for a run that starts after the command, not for the one already under way."""
        job = self._job(name)
        result = await self._run(job, manual=True)
        if job.pending:  # poked while it ran: let the trigger run it once more
            job.pending = False
            self.poke(name)
        return result

    async def run_scheduled(self, name: str) -> RunResult:
        """What the trigger does when a job is due: like :meth:`run_now`, but a disabled job is skipped.

        A poke that came while the job ran is honoured now (see :meth:`poke`)."""
        job = self._job(name)
        result = await self._run(job, manual=False)
        while job.pending and result != "skipped_busy":
            job.pending = False
            result = await self._run(job, manual=False)
        return result

    def poke(self, name: str) -> None:
        """Ask for a run soon without waiting for it (a new ready issue pokes dispatch).

        A job that is running now runs once more when it ends: the poke may be about something its
        current run has already passed (an issue filed, a slot freed, a PR opened meanwhile)."""
        job = self._job(name)
        if job.lock.locked():
            job.pending = True
            return
        if self._started:
            self._aps.modify_job(job.name, next_run_time=datetime.now(UTC))
        else:
            task = asyncio.get_running_loop().create_task(self.run_scheduled(job.name))
            self._bg.add(task)
            task.add_done_callback(self._bg.discard)

    async def _run(self, job: _Job, *, manual: bool) -> RunResult:
        if self._state.paused and not job.runs_when_paused:
            log.debug("job_skipped", job=job.name, reason="paused")
            return "skipped_paused"
        if not manual and not self.is_enabled(job.name):
            log.debug("job_skipped", job=job.name, reason="disabled")
            return "skipped_disabled"
        if job.lock.locked() and not manual:
            job.skipped += 1
            log.info("job_skipped", job=job.name, reason="busy")
            return "skipped_busy"
        if not job.runs_when_held and (why := self._held()) is not None:
            if not job.held_logged:
                job.held_logged = True
                log.warning("job_skipped", job=job.name, reason="state_writes_held", detail=why)
            else:
                log.debug("job_skipped", job=job.name, reason="state_writes_held")
            return "skipped_held"
        job.held_logged = False
        async with job.lock:
            alog.clear()  # a run-now carries the caller's context; a job starts from a clean one
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
                self._on_failure(job.name, record.last_error)
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

    def _on_aps_event(self, event: JobEvent) -> None:
        """APScheduler listener (sync, on the loop thread): keep it tiny."""
        if event.code == EVENT_JOB_MAX_INSTANCES:
            job = self._jobs.get(event.job_id)
            if job is not None:
                job.skipped += 1
            log.info("job_skipped", job=event.job_id, reason="busy")
        else:
            log.warning("job_missed", job=event.job_id, scheduled=str(event.scheduled_run_time))

    def next_run(self, name: str) -> datetime | None:
        """The job's next scheduled run, in the scheduler's zone (its offset says which)."""
        if not self._started:
            return None
        aps_job = self._aps.get_job(name)
        nxt: datetime | None = aps_job.next_run_time if aps_job is not None else None
        return nxt.astimezone(self._tz) if nxt is not None else None

    def table(self) -> list[dict[str, Any]]:
        """One row per job, for ``ctl jobs`` and ``/jobs``."""
        rows = []
        for name, job in self._jobs.items():
            record = self._state.job_runs.get(name, JobRun())
            nxt = self.next_run(name) if self.is_enabled(name) else None
            rows.append(
                {
                    "name": name,
                    "enabled": self.is_enabled(name),
                    "trigger": str(job.spec) if isinstance(job.spec, str) else f"every {job.spec:g}s",
                    "runs_when_paused": job.runs_when_paused,
                    "running": job.lock.locked(),
                    "next_run": nxt.isoformat() if nxt else None,
                    "last_run": record.last_run.isoformat() if record.last_run else None,
                    "last_success": record.last_success.isoformat() if record.last_success else None,
                    "last_error": record.last_error,
                    "runs": record.runs,
                    "failures": record.failures,
                    "skipped": job.skipped,
                }
            )
        return rows
