"""The job table: triggers as data, run-now and scheduled runs, pause, disable, overlap, durable job state.

Time is injected: the scheduler's clock is a :class:`SettableClock`, trigger maths is checked with explicit
datetimes, and the only test that goes through APScheduler itself pokes a job (due "now") and waits for
it on an event, never for a wall-clock interval.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import structlog
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from structlog.testing import capture_logs

from agentos.config import ConfigError, JobConfig
from agentos.errors import ControlError
from agentos.scheduler import DEFAULT_TRIGGERS, Scheduler, make_trigger, next_due
from agentos.store import DaemonState, JobRun, Store
from agentos.testing import SettableClock

T0 = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)  # a Monday
BERLIN = ZoneInfo("Europe/Berlin")  # CET (+1) in winter, CEST (+2) from 29 March to 25 October 2026


class Calls:
    """A job body that counts its calls, optionally fails, optionally waits on a gate.

    ``order`` notes each body's ``start`` and ``end`` (a test may add its own entries), ``most_at_once`` how
    many bodies ever ran at the same time.
    """

    def __init__(self, *, fail: BaseException | None = None) -> None:
        self.count = 0
        self.fail = fail
        self.started = asyncio.Event()
        self.gate: asyncio.Event | None = None
        self.context: dict[str, object] = {}
        self.order: list[str] = []
        self.running = 0
        self.most_at_once = 0

    async def __call__(self) -> None:
        self.count += 1
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        self.order.append("start")
        self.context = structlog.contextvars.get_contextvars()
        self.started.set()
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.fail is not None:
                raise self.fail
        finally:
            self.running -= 1
            self.order.append("end")


@pytest.fixture(autouse=True)
def _clean_log_context() -> None:
    structlog.contextvars.clear_contextvars()


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock(T0)


@pytest.fixture
def state() -> DaemonState:
    return DaemonState()


def make(
    state: DaemonState,
    clock: SettableClock,
    jobs: dict[str, Callable[[], Awaitable[None]]] | None = None,
    *,
    configs: dict[str, JobConfig] | None = None,
    changes: list[int] | None = None,
    recorded: asyncio.Event | None = None,
    tz: ZoneInfo | None = None,
) -> Scheduler:
    """A scheduler with ``jobs`` registered (stall_watchdog runs when paused, as in the daemon).

    Each change it would journal appends to ``changes`` and sets ``recorded``.
    """

    def on_change() -> None:
        if changes is not None:
            changes.append(1)
        if recorded is not None:
            recorded.set()

    sched = Scheduler(state, configs=configs, clock=clock, on_change=on_change, tz=tz or UTC)
    for name, func in (jobs or {}).items():
        sched.register(name, func, runs_when_paused=name == "stall_watchdog")
    return sched


async def stop(sched: Scheduler) -> None:
    await sched.shutdown(timeout=1)


class TestJobTable:
    async def test_every_job_coalesces_never_overlaps_and_runs_however_late(
        self, state: DaemonState, clock: SettableClock
    ) -> None:
        """APScheduler holds each job with coalesce, max_instances=1 and misfire_grace_time=None."""
        sched = make(state, clock, {name: Calls() for name in ("dispatch", "pr_monitor", "stall_watchdog")})
        sched.start(paused=True)
        try:
            for name in ("dispatch", "pr_monitor", "stall_watchdog"):
                job = sched.apscheduler.get_job(name)
                assert job is not None
                assert job.coalesce is True
                assert job.max_instances == 1
                assert job.misfire_grace_time is None
        finally:
            await stop(sched)

    @pytest.mark.parametrize(
        ("name", "now", "expected"),
        [
            pytest.param("pr_monitor", datetime(2026, 1, 1, 0, 1, tzinfo=UTC), datetime(2026, 1, 1, 0, 5, tzinfo=UTC)),
            pytest.param(
                "incident_scan", datetime(2026, 1, 1, 0, 20, tzinfo=UTC), datetime(2026, 1, 1, 6, 17, tzinfo=UTC)
            ),
            pytest.param("log_analysis", datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 5, 7, tzinfo=UTC)),
            pytest.param(
                "agent_scoring", datetime(2026, 1, 5, 7, tzinfo=UTC), datetime(2026, 1, 12, 6, 30, tzinfo=UTC)
            ),
            pytest.param("daily_digest", datetime(2026, 1, 1, 9, tzinfo=UTC), datetime(2026, 1, 2, 8, tzinfo=UTC)),
            pytest.param("backlog_groom", datetime(2026, 1, 1, 9, 1, tzinfo=UTC), datetime(2026, 1, 1, 10, tzinfo=UTC)),
        ],
    )
    def test_default_cron_triggers_follow_the_design_table(self, name: str, now: datetime, expected: datetime) -> None:
        """DESIGN.md §7's defaults, as UTC crontabs, fire when the table says."""
        assert make_trigger(DEFAULT_TRIGGERS[name]).get_next_fire_time(None, now) == expected

    def test_interval_jobs_and_their_table_rows(self, state: DaemonState, clock: SettableClock) -> None:
        """dispatch and stall_watchdog run every minute by default; the table shows the trigger."""
        sched = make(state, clock, {"dispatch": Calls(), "stall_watchdog": Calls()})
        rows = {row["name"]: row for row in sched.table()}
        assert rows["dispatch"]["trigger"] == "every 60s"
        assert rows["stall_watchdog"]["trigger"] == "every 60s"
        assert rows["stall_watchdog"]["runs_when_paused"] is True
        assert rows["dispatch"]["runs_when_paused"] is False
        assert rows["dispatch"]["next_run"] is None  # not started

    async def test_config_triggers_replace_the_defaults(self, state: DaemonState, clock: SettableClock) -> None:
        """`jobs.NAME.cron` and `jobs.NAME.interval_s` choose the trigger."""
        configs = {"dispatch": JobConfig(cron="*/2 * * * *"), "pr_monitor": JobConfig(interval_s=30)}
        sched = make(state, clock, {"dispatch": Calls(), "pr_monitor": Calls()}, configs=configs)
        sched.start(paused=True)
        try:
            dispatch, monitor = sched.apscheduler.get_job("dispatch"), sched.apscheduler.get_job("pr_monitor")
            assert isinstance(dispatch.trigger, CronTrigger)
            assert isinstance(monitor.trigger, IntervalTrigger)
            assert monitor.trigger.interval == timedelta(seconds=30)
            rows = {row["name"]: row for row in sched.table()}
            assert rows["dispatch"]["trigger"] == "*/2 * * * *"
            assert rows["pr_monitor"]["trigger"] == "every 30s"
            assert rows["dispatch"]["next_run"] is not None
        finally:
            await stop(sched)

    def test_an_invalid_crontab_is_a_config_error_naming_the_job(
        self, state: DaemonState, clock: SettableClock
    ) -> None:
        """A crontab APScheduler refuses is reported as `jobs.NAME.cron: …`, not as a traceback."""
        sched = make(state, clock, configs={"dispatch": JobConfig(cron="99 * * * *")})
        with pytest.raises(ConfigError) as info:
            sched.register("dispatch", Calls())
        assert info.value.problems[0].startswith("jobs.dispatch.cron: '99 * * * *'")

    def test_a_job_disabled_in_the_config_starts_disabled(self, state: DaemonState, clock: SettableClock) -> None:
        """`jobs.pr_monitor.enabled: false` puts it in the disabled list."""
        make(state, clock, {"pr_monitor": Calls()}, configs={"pr_monitor": JobConfig(enabled=False)})
        assert state.disabled_jobs == ["pr_monitor"]


class TestTimezone:
    @pytest.mark.parametrize(
        ("after", "expected"),
        [
            pytest.param(
                datetime(2026, 3, 28, 8, 0, 1, tzinfo=BERLIN),
                datetime(2026, 3, 29, 6, tzinfo=UTC),
                id="spring-forward-08:00-CEST-is-06:00-UTC-23h-later",
            ),
            pytest.param(
                datetime(2026, 3, 27, 8, 0, 1, tzinfo=BERLIN),
                datetime(2026, 3, 28, 7, tzinfo=UTC),
                id="the-day-before-spring-08:00-CET-is-07:00-UTC",
            ),
            pytest.param(
                datetime(2026, 10, 24, 8, 0, 1, tzinfo=BERLIN),
                datetime(2026, 10, 25, 7, tzinfo=UTC),
                id="fall-back-08:00-CET-is-07:00-UTC-25h-later",
            ),
            pytest.param(
                datetime(2026, 10, 23, 8, 0, 1, tzinfo=BERLIN),
                datetime(2026, 10, 24, 6, tzinfo=UTC),
                id="the-day-before-fall-08:00-CEST-is-06:00-UTC",
            ),
        ],
    )
    def test_eight_oclock_is_local_across_dst(self, after: datetime, expected: datetime) -> None:
        """`0 8 * * *` in Europe/Berlin fires at 08:00 Berlin time on both sides of each DST change."""
        fire = make_trigger("0 8 * * *", BERLIN).get_next_fire_time(None, after)
        assert fire == expected
        assert fire is not None and fire.astimezone(BERLIN).hour == 8

    def test_a_skipped_and_a_repeated_wall_clock_time(self) -> None:
        """02:30 does not exist on 29 March (it runs at 03:30 CEST) and happens twice on 25 October.

        APScheduler returns these as wall-clock times in the gap or the fold, which never compare equal
        across zones (PEP 495), so the instants are compared in UTC."""
        trigger = make_trigger("30 2 * * *", BERLIN)
        spring = trigger.get_next_fire_time(None, datetime(2026, 3, 28, 12, tzinfo=UTC))
        assert spring is not None and spring.astimezone(UTC) == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
        assert spring.astimezone(UTC).astimezone(BERLIN).hour == 3
        first = trigger.get_next_fire_time(None, datetime(2026, 10, 24, 12, tzinfo=UTC))
        assert first is not None and first.astimezone(UTC) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
        second = trigger.get_next_fire_time(first, first + timedelta(microseconds=1))
        assert second is not None and second.astimezone(UTC) == datetime(2026, 10, 25, 1, 30, tzinfo=UTC)

    def test_a_missed_local_run_is_caught_up_from_the_last_run_in_the_zone(self) -> None:
        """After a run at 08:00 CET on 28 March, the next slot is 08:00 CEST on 29 March (23 h later)."""
        last = datetime(2026, 3, 28, 7, tzinfo=UTC)
        due = next_due("0 8 * * *", last, datetime(2026, 3, 28, 12, tzinfo=UTC), BERLIN)
        assert due == datetime(2026, 3, 29, 6, tzinfo=UTC)

    async def test_the_job_table_shows_next_runs_with_the_zones_offset(
        self, state: DaemonState, clock: SettableClock
    ) -> None:
        """Started in Europe/Berlin in March, the digest's next run reads 08:00+01:00 before the switch and
        08:00+02:00 after it; interval jobs show the same offset."""
        clock.now = datetime(2026, 3, 28, 9, tzinfo=UTC)
        state.job_runs["daily_digest"] = JobRun(last_run=datetime(2026, 3, 28, 7, tzinfo=UTC))
        sched = make(state, clock, {"daily_digest": Calls(), "dispatch": Calls()}, tz=BERLIN)
        sched.start(paused=True)
        try:
            rows = {row["name"]: row for row in sched.table()}
            assert rows["daily_digest"]["next_run"] == "2026-03-29T08:00:00+02:00"
            assert rows["dispatch"]["next_run"].endswith("+01:00")
            assert sched.next_run("daily_digest") == datetime(2026, 3, 29, 6, tzinfo=UTC)
        finally:
            await stop(sched)

    async def test_a_reload_with_a_new_zone_reschedules_every_cron_job(
        self, state: DaemonState, clock: SettableClock
    ) -> None:
        """UTC → Europe/Berlin moves 08:00 UTC to 08:00 Berlin; interval jobs are left alone."""
        clock.now = datetime(2026, 1, 10, 5, tzinfo=UTC)
        state.job_runs["daily_digest"] = JobRun(last_run=datetime(2026, 1, 9, 8, tzinfo=UTC))
        changes: list[int] = []
        sched = make(state, clock, {"daily_digest": Calls(), "dispatch": Calls()}, changes=changes)
        sched.start(paused=True)
        try:
            assert sched.next_run("daily_digest") == datetime(2026, 1, 10, 8, tzinfo=UTC)
            changed = sched.reconfigure({}, tz=BERLIN)
            assert changed == ["daily_digest"] and changes == [1]
            assert sched.next_run("daily_digest") == datetime(2026, 1, 10, 7, tzinfo=UTC)
            assert {row["name"]: row for row in sched.table()}["daily_digest"]["next_run"] == (
                "2026-01-10T08:00:00+01:00"
            )
            assert sched.reconfigure({}, tz=ZoneInfo("Europe/Berlin")) == []  # the same zone again: no change
        finally:
            await stop(sched)


class TestRunNow:
    async def test_run_now_runs_and_records_the_run(self, state: DaemonState, clock: SettableClock) -> None:
        """A run sets last_run and last_success from the clock, counts it, and reports the change."""
        job, changes = Calls(), []
        sched = make(state, clock, {"dispatch": job}, changes=changes)
        assert await sched.run_now("dispatch") == "ok"
        record = state.job_runs["dispatch"]
        assert job.count == 1
        assert (record.last_run, record.last_success, record.last_error) == (T0, T0, None)
        assert (record.runs, record.failures) == (1, 0)
        assert changes == [1]

    async def test_a_failing_job_is_logged_and_counted_and_does_not_raise(
        self, state: DaemonState, clock: SettableClock
    ) -> None:
        """An exception in a job becomes last_error and a failure count, and a `job_failed` error line."""
        sched = make(state, clock, {"dispatch": Calls(fail=RuntimeError("forge down"))})
        with capture_logs() as logs:
            assert await sched.run_now("dispatch") == "failed"
        record = state.job_runs["dispatch"]
        assert record.last_error == "RuntimeError: forge down"
        assert (record.runs, record.failures, record.last_success) == (1, 1, None)
        failed = [entry for entry in logs if entry["event"] == "job_failed"]
        assert failed and failed[0]["log_level"] == "error"
        assert failed[0]["error"] == "RuntimeError: forge down"

    async def test_a_failure_is_reported_to_the_operator_hook(self, state: DaemonState, clock: SettableClock) -> None:
        """The daemon's on_failure hook (a sev2 notification) hears the job's name and error."""
        heard: list[tuple[str, str]] = []
        sched = Scheduler(state, clock=clock, on_failure=lambda job, error: heard.append((job, error)))
        sched.register("pr_monitor", Calls(fail=RuntimeError("forge down")))
        sched.register("dispatch", Calls())
        await sched.run_now("pr_monitor")
        await sched.run_now("dispatch")
        assert heard == [("pr_monitor", "RuntimeError: forge down")]

    async def test_a_success_after_a_failure_clears_the_error(self, state: DaemonState, clock: SettableClock) -> None:
        """last_error describes the latest run only; the failure count stays."""
        job = Calls(fail=ValueError("x"))
        sched = make(state, clock, {"dispatch": job})
        await sched.run_now("dispatch")
        job.fail = None
        clock.advance(minutes=1)
        assert await sched.run_now("dispatch") == "ok"
        record = state.job_runs["dispatch"]
        assert (record.last_error, record.failures, record.runs) == (None, 1, 2)
        assert record.last_success == T0 + timedelta(minutes=1)

    async def test_a_cancelled_job_is_not_swallowed(self, state: DaemonState, clock: SettableClock) -> None:
        """Cancellation (shutdown) propagates instead of being counted as a failure."""
        sched = make(state, clock, {"dispatch": Calls(fail=asyncio.CancelledError())})
        with pytest.raises(asyncio.CancelledError):
            await sched.run_now("dispatch")
        assert state.job_runs["dispatch"].failures == 0

    async def test_a_job_runs_in_a_fresh_log_context(self, state: DaemonState, clock: SettableClock) -> None:
        """The caller's bound context (a Telegram handler's task) does not leak into the job's lines."""
        job = Calls()
        sched = make(state, clock, {"dispatch": job})
        structlog.contextvars.bind_contextvars(task="T-7")
        await sched.run_now("dispatch")
        assert job.context.get("job") == "dispatch"
        assert "task" not in job.context
        assert "run_id" in job.context

    async def test_an_unknown_job_is_a_control_error_listing_the_jobs(
        self, state: DaemonState, clock: SettableClock
    ) -> None:
        """`ctl run nosuch` gets a one-line answer naming the real jobs."""
        sched = make(state, clock, {"dispatch": Calls(), "pr_monitor": Calls()})
        with pytest.raises(ControlError, match=r"no job named 'nosuch'; jobs: dispatch, pr_monitor"):
            await sched.run_now("nosuch")


class TestPauseAndDisable:
    async def test_paused_only_runs_when_paused_jobs_run(self, state: DaemonState, clock: SettableClock) -> None:
        """With the kill switch on, dispatch is skipped (scheduled or run-now) but the stall watchdog runs."""
        dispatch, watchdog = Calls(), Calls()
        sched = make(state, clock, {"dispatch": dispatch, "stall_watchdog": watchdog})
        state.paused = True
        assert await sched.run_now("dispatch") == "skipped_paused"
        assert await sched.run_scheduled("dispatch") == "skipped_paused"
        assert await sched.run_scheduled("stall_watchdog") == "ok"
        assert await sched.run_now("stall_watchdog") == "ok"
        assert (dispatch.count, watchdog.count) == (0, 2)
        assert "dispatch" not in state.job_runs

    async def test_a_disabled_job_is_skipped_by_its_schedule_but_runs_now(
        self, state: DaemonState, clock: SettableClock
    ) -> None:
        """`job off` stops scheduled runs; an operator's `run` still runs it; `job on` restores it."""
        job, changes = Calls(), []
        sched = make(state, clock, {"dispatch": job}, changes=changes)
        sched.set_enabled("dispatch", False)
        assert state.disabled_jobs == ["dispatch"]
        assert changes == [1]
        assert await sched.run_scheduled("dispatch") == "skipped_disabled"
        assert job.count == 0
        assert await sched.run_now("dispatch") == "ok"
        assert job.count == 1
        sched.set_enabled("dispatch", True)
        assert state.disabled_jobs == []
        assert await sched.run_scheduled("dispatch") == "ok"

    async def test_held_state_writes_skip_every_job_but_the_watchdog_logging_once(
        self, state: DaemonState, clock: SettableClock
    ) -> None:
        """While ``held`` names a reason (a full disk) the PR monitor and loop jobs are skipped, not failed: no
        failure is counted or reported, one warning per job and hold; the watchdog runs; afterwards all run."""
        held: list[str] = []
        failures: list[tuple[str, str]] = []
        sched = Scheduler(
            state, clock=clock, held=lambda: held[0] if held else None, on_failure=lambda j, e: failures.append((j, e))
        )
        pr, groom, watchdog = Calls(), Calls(), Calls()
        sched.register("pr_monitor", pr)
        sched.register("backlog_groom", groom)
        sched.register("stall_watchdog", watchdog, runs_when_paused=True, runs_when_held=True)
        held.append("the disk is full: /var/lib/agentos on / has 0.0 KiB free")
        with capture_logs() as logs:
            for _ in range(3):
                assert await sched.run_scheduled("pr_monitor") == "skipped_held"
                assert await sched.run_now("backlog_groom") == "skipped_held"
                assert await sched.run_scheduled("stall_watchdog") == "ok"
        assert (pr.count, groom.count, watchdog.count) == (0, 0, 3)
        warned = [(e["job"], e["detail"]) for e in logs if e["event"] == "job_skipped" and e["log_level"] == "warning"]
        assert warned == [("pr_monitor", held[0]), ("backlog_groom", held[0])]
        assert failures == [] and "pr_monitor" not in state.job_runs

        held.clear()
        assert await sched.run_scheduled("pr_monitor") == "ok" and pr.count == 1
        held.append("a write failed")
        with capture_logs() as logs:
            assert await sched.run_scheduled("pr_monitor") == "skipped_held"
        assert [e["detail"] for e in logs if e["log_level"] == "warning"] == ["a write failed"]  # a new hold: said

    def test_disabling_an_unknown_job_is_a_control_error(self, state: DaemonState, clock: SettableClock) -> None:
        """Nothing is written for a typo."""
        sched = make(state, clock, {"dispatch": Calls()})
        with pytest.raises(ControlError):
            sched.set_enabled("dispach", False)
        assert state.disabled_jobs == []


class TestOverlap:
    async def test_an_overlapping_scheduled_run_is_skipped_busy(self, state: DaemonState, clock: SettableClock) -> None:
        """While a run is in progress, a scheduled run is skipped, not queued."""
        job = Calls()
        job.gate = asyncio.Event()
        sched = make(state, clock, {"dispatch": job})
        first = asyncio.create_task(sched.run_now("dispatch"))
        await asyncio.wait_for(job.started.wait(), 1)
        assert sched.busy() == ["dispatch"]
        assert await sched.run_scheduled("dispatch") == "skipped_busy"
        job.gate.set()
        assert await first == "ok"
        assert job.count == 1
        row = sched.table()[0]
        assert (row["runs"], row["skipped"], row["running"]) == (1, 1, False)

    async def test_a_run_now_during_a_run_waits_and_runs_once_more(
        self, state: DaemonState, clock: SettableClock
    ) -> None:
        """An operator's run-now while the job runs on its own waits for that run, then runs it again."""
        job = Calls()
        job.gate = asyncio.Event()
        sched = make(state, clock, {"dispatch": job})
        first = asyncio.create_task(sched.run_scheduled("dispatch"))
        await asyncio.wait_for(job.started.wait(), 1)
        second = asyncio.create_task(sched.run_now("dispatch"))  # asks before the gated body can go on
        job.gate.set()
        assert await first == "ok"
        assert await asyncio.wait_for(second, 1) == "ok"
        assert job.count == 2 and job.most_at_once == 1
        assert job.order == ["start", "end", "start", "end"]

    async def test_shutdown_waits_for_a_running_job(self, state: DaemonState, clock: SettableClock) -> None:
        """shutdown() lets a running job finish (within its timeout) instead of cancelling it."""
        job = Calls()
        job.gate = asyncio.Event()
        sched = make(state, clock, {"dispatch": job})
        sched.start(paused=True)
        run = asyncio.create_task(sched.run_now("dispatch"))
        await asyncio.wait_for(job.started.wait(), 1)

        async def close() -> None:
            await sched.shutdown(timeout=5)
            job.order.append("shut down")

        closing = asyncio.create_task(close())  # begins before the gated body can go on
        job.gate.set()
        await asyncio.wait_for(closing, 1)
        assert await run == "ok"
        assert job.order == ["start", "end", "shut down"]

    async def test_shutdown_waits_no_longer_than_its_timeout(self, state: DaemonState, clock: SettableClock) -> None:
        """A job still running when shutdown()'s timeout ends is named in a warning, and is not cancelled."""
        job = Calls()
        job.gate = asyncio.Event()
        sched = make(state, clock, {"dispatch": job})
        sched.start(paused=True)
        run = asyncio.create_task(sched.run_now("dispatch"))
        await asyncio.wait_for(job.started.wait(), 1)
        with capture_logs() as logs:
            await asyncio.wait_for(sched.shutdown(timeout=0.1), 10)
        assert [e["jobs"] for e in logs if e["event"] == "jobs_still_running_at_shutdown"] == [["dispatch"]]
        assert job.order == ["start"]
        job.gate.set()
        assert await run == "ok"
        assert job.order == ["start", "end"]


class TestDurableState:
    async def test_job_state_survives_a_daemon_state_round_trip(self, state: DaemonState, clock: SettableClock) -> None:
        """Pause, disabled jobs, last run, last success, last error and counts are plain DaemonState data."""
        sched = make(state, clock, {"dispatch": Calls(), "pr_monitor": Calls(fail=OSError("no route"))})
        await sched.run_now("dispatch")
        await sched.run_now("pr_monitor")
        sched.set_enabled("pr_monitor", False)
        state.paused = True

        restored = DaemonState.model_validate_json(state.model_dump_json())
        assert restored == state
        again = make(restored, SettableClock(T0 + timedelta(hours=1)), {"dispatch": Calls(), "pr_monitor": Calls()})
        assert again.table() == sched.table()

    async def test_job_runs_are_journaled_through_on_change(self, tmp_path: Path, clock: SettableClock) -> None:
        """With the daemon's on_change (a journal append), a run is on disk when it returns."""
        store = Store(tmp_path, fsync=False)
        store.lock()
        _graph, state = store.load()
        sched = Scheduler(state, clock=clock, on_change=lambda: store.append([], [], daemon=state))
        sched.register("stall_watchdog", Calls(), runs_when_paused=True)
        await sched.run_now("stall_watchdog")
        sched.set_enabled("stall_watchdog", False)
        store.close()

        _graph, loaded = Store(tmp_path).load()
        assert loaded.job_runs["stall_watchdog"].last_run == T0
        assert loaded.job_runs["stall_watchdog"].runs == 1
        assert loaded.disabled_jobs == ["stall_watchdog"]

    async def test_the_next_run_after_a_restart_comes_from_the_last_run(
        self, state: DaemonState, clock: SettableClock
    ) -> None:
        """A job that ran 20 s before a restart runs again 60 s after that run, not 60 s after the start."""
        sched = make(state, clock, {"stall_watchdog": Calls()})
        await sched.run_now("stall_watchdog")
        clock.advance(seconds=20)
        again = make(state, clock, {"stall_watchdog": Calls()})
        again.start(paused=True)
        try:
            assert again.next_run("stall_watchdog") == T0 + timedelta(seconds=60)
        finally:
            await stop(again)


class TestNextDue:
    @pytest.mark.parametrize(
        ("spec", "last_run", "now", "expected"),
        [
            pytest.param(60.0, None, T0, None, id="never-ran"),
            pytest.param(60.0, T0, T0 + timedelta(seconds=30), T0 + timedelta(seconds=60), id="interval-not-due"),
            pytest.param(60.0, T0, T0 + timedelta(hours=2), T0 + timedelta(hours=2), id="interval-missed"),
            pytest.param(
                "0 7 * * mon",
                datetime(2026, 1, 5, 7, tzinfo=UTC),
                datetime(2026, 1, 7, tzinfo=UTC),
                datetime(2026, 1, 12, 7, tzinfo=UTC),
                id="weekly-not-due",
            ),
            pytest.param(
                "0 7 * * mon",
                datetime(2026, 1, 5, 7, tzinfo=UTC),
                datetime(2026, 1, 20, 12, tzinfo=UTC),
                datetime(2026, 1, 20, 12, tzinfo=UTC),
                id="weekly-missed-two-coalesced",
            ),
            pytest.param(
                "*/5 * * * *",
                datetime(2026, 1, 5, 9, 5, 0, 300, tzinfo=UTC),
                datetime(2026, 1, 5, 9, 6, tzinfo=UTC),
                datetime(2026, 1, 5, 9, 10, tzinfo=UTC),
                id="cron-slot-just-after-last-run",
            ),
        ],
    )
    def test_next_due(
        self, spec: str | float, last_run: datetime | None, now: datetime, expected: datetime | None
    ) -> None:
        """A missed run is due now (one run however many were missed); otherwise the slot after the last run."""
        assert next_due(spec, last_run, now) == expected


class TestReconfigure:
    async def test_a_reload_changes_triggers_and_file_level_enabled(
        self, state: DaemonState, clock: SettableClock
    ) -> None:
        """New triggers are rescheduled; `enabled` applies only where the file changed it."""
        changes: list[int] = []
        sched = make(state, clock, {"dispatch": Calls(), "pr_monitor": Calls()}, changes=changes)
        sched.start(paused=True)
        try:
            sched.set_enabled("dispatch", False)  # the operator's choice; the file does not mention it
            changed = sched.reconfigure({"pr_monitor": JobConfig(enabled=False, interval_s=120)})
            assert changed == ["pr_monitor"]
            rows = {row["name"]: row for row in sched.table()}
            assert rows["pr_monitor"]["trigger"] == "every 120s"
            assert rows["pr_monitor"]["enabled"] is False
            assert rows["dispatch"]["enabled"] is False
            assert isinstance(sched.apscheduler.get_job("pr_monitor").trigger, IntervalTrigger)
            assert changes[-1] == 1
        finally:
            await stop(sched)

    def test_a_bad_crontab_in_a_reload_changes_nothing(self, state: DaemonState, clock: SettableClock) -> None:
        """Every trigger is checked before any is applied."""
        sched = make(state, clock, {"dispatch": Calls(), "pr_monitor": Calls()})
        with pytest.raises(ConfigError, match=r"jobs\.pr_monitor\.cron"):
            sched.reconfigure({"dispatch": JobConfig(interval_s=5), "pr_monitor": JobConfig(cron="0 25 * * *")})
        assert {row["name"]: row["trigger"] for row in sched.table()} == {
            "dispatch": "every 60s",
            "pr_monitor": "*/5 * * * *",
        }


class TestThroughAPScheduler:
    async def test_a_poked_job_runs_on_the_loop_through_apscheduler(
        self, state: DaemonState, clock: SettableClock
    ) -> None:
        """poke() makes the job due now; APScheduler runs the async job on this loop and the run is recorded."""
        job = Calls()
        recorded = asyncio.Event()
        sched = make(state, clock, {"dispatch": job}, recorded=recorded)
        sched.start()
        try:
            sched.poke("dispatch")
            await asyncio.wait_for(recorded.wait(), 10)  # the run is recorded after its body returns
            assert job.count == 1
            assert state.job_runs["dispatch"].last_success == T0
        finally:
            await stop(sched)

    async def test_poke_before_start_runs_the_job_in_the_background(
        self, state: DaemonState, clock: SettableClock
    ) -> None:
        """Before the scheduler starts, a poke still runs the job once."""
        job = Calls()
        sched = make(state, clock, {"dispatch": job})
        sched.poke("dispatch")
        await asyncio.wait_for(job.started.wait(), 1)
        assert job.count == 1


class TestPokeWhileRunning:
    async def test_a_poke_during_a_run_runs_the_job_once_more(self, state: DaemonState, clock: SettableClock) -> None:
        """A new issue filed while dispatch runs is not left for the next timer: dispatch runs again at once."""
        job = Calls()
        job.gate = asyncio.Event()
        sched = make(state, clock, {"dispatch": job})
        run = asyncio.create_task(sched.run_scheduled("dispatch"))
        await job.started.wait()
        sched.poke("dispatch")
        sched.poke("dispatch")  # several pokes while busy collapse into one more run
        job.gate.set()
        await run
        assert job.count == 2
