"""The controller: the one command surface behind the socket and the bot, on a real store and scheduler."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agentos.agents.contract import RESULT_FILE
from agentos.agents.pool import AgentPool
from agentos.assembly import build_core
from agentos.config import Config, ConfigError, RepoConfig, parse_config
from agentos.control import replies
from agentos.control.controller import Controller
from agentos.daemon import Daemon
from agentos.daemon_parts import build_controller
from agentos.errors import ControlError
from agentos.forge.base import READY_LABEL
from agentos.forge.local import LocalForge
from agentos.graph import Attempt, Task, TaskStatus
from agentos.runners.policy import OFF_LINE
from agentos.runtime import Runtime, StateWriteFailure
from agentos.scheduler import Scheduler
from agentos.store import Store
from tests.unit.test_budget import NOW as BUDGET_NOW
from tests.unit.test_budget import Clock as BudgetClock
from tests.unit.test_budget import runtime as budget_runtime
from tests.unit.test_budget import spend

NOW = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
CONFIG = """\
# the controller test's config
state_dir: {state}
max_parallel_workers: 3   # kept
repos:
  - name: calc            # the only repo
    path: {repo}
    test_command: "true"
"""


def build_runtime(tmp: Path, *, with_file: bool = True) -> Runtime:
    """A Runtime on a real, locked store in ``tmp`` with one local repo and the daemon's three jobs."""
    state = tmp / "state"
    path = tmp / "agentos.yaml"
    path.write_text(CONFIG.format(state=state, repo=tmp / "calc"), encoding="utf-8")
    config = parse_config(path.read_text(), str(path))
    store = Store(state, fsync=False)
    store.lock()
    graph, daemon = store.load()
    forge = LocalForge(state, {r.name: r for r in config.repos})

    def remote(repo: RepoConfig) -> tuple[str, dict[str, str]]:
        return str(repo.path), {}

    rt = Runtime(config, path if with_file else None, store, graph, daemon, forge, remote, clock=lambda: NOW)
    rt.started_at = NOW
    sched = Scheduler(daemon, clock=lambda: NOW, on_change=rt.save_state)
    rt.scheduler = sched
    return rt


class Job:
    def __init__(self) -> None:
        self.runs = 0
        self.fail: Exception | None = None
        self.gate: asyncio.Event | None = None
        self.started = asyncio.Event()

    async def __call__(self) -> None:
        self.runs += 1
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[Runtime]:
    runtime = build_runtime(tmp_path)
    yield runtime
    runtime.store.close()


@pytest.fixture
def jobs(rt: Runtime) -> dict[str, Job]:
    made = {name: Job() for name in ("dispatch", "pr_monitor", "stall_watchdog")}
    assert rt.scheduler is not None
    for name, job in made.items():
        rt.scheduler.register(name, job, runs_when_paused=name == "stall_watchdog")
    return made


@pytest.fixture
def ctl(rt: Runtime, jobs: dict[str, Job]) -> Controller:
    return build_controller(rt)


def add_task(rt: Runtime, issue: int, status: TaskStatus = TaskStatus.QUEUED) -> Task:
    task = Task(
        id=Task.make_id("calc", issue),
        repo="calc",
        issue=issue,
        title=f"issue {issue}",
        status=status,
        created_at=NOW,
        updated_at=NOW,
    )
    rt.commit([rt.event("task_created", task.id)], [task])
    return task


def read_only(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the config file read-only to the daemon (as root, mode bits do not stop writes: say so directly)."""
    from agentos import repo_overrides

    path.chmod(0o444)
    if os.geteuid() == 0:
        monkeypatch.setattr(repo_overrides, "file_writable", lambda p: False)


def reloaded(rt: Runtime) -> Store:
    """A read-only view of what is on disk now."""
    return Store(rt.store.state_dir)


class TestStatus:
    async def test_status_reports_the_daemon(self, ctl: Controller, rt: Runtime) -> None:
        """Status carries the pid, pause, limits, counts, repos and config path."""
        add_task(rt, 1)
        status = await ctl.status()
        assert status["paused"] is False
        assert status["max_parallel_workers"] == 3
        assert status["queued"] == 1 and status["tasks"] == 1 and status["running"] == 0
        assert status["repos"] == ["calc"]
        assert status["config"] == str(rt.config_path)
        assert status["jobs_running"] == []
        assert isinstance(status["pid"], int)

    async def test_status_follows_a_new_config(self, ctl: Controller, rt: Runtime) -> None:
        """After a reload swaps rt.config, status shows the new max_parallel_workers."""
        rt.config = rt.config.model_copy(update={"max_parallel_workers": 7})
        assert (await ctl.status())["max_parallel_workers"] == 7


class TestPause:
    async def test_pause_and_resume_are_journaled(self, ctl: Controller, rt: Runtime) -> None:
        """The kill switch is on disk when pause returns, and off again after resume."""
        assert await ctl.pause() == {"paused": True}
        assert reloaded(rt).load()[1].paused is True
        assert await ctl.resume() == {"paused": False}
        assert reloaded(rt).load()[1].paused is False


class TestJobs:
    async def test_run_job_runs_it(self, ctl: Controller, jobs: dict[str, Job]) -> None:
        """`run` waits for the job and answers its result."""
        assert await ctl.run_job("stall_watchdog") == {"job": "stall_watchdog", "result": "ok"}
        assert jobs["stall_watchdog"].runs == 1

    async def test_a_failed_run_is_an_error_with_the_reason(self, ctl: Controller, jobs: dict[str, Job]) -> None:
        """The operator sees why the job failed, and `ctl run` exits non-zero."""
        jobs["pr_monitor"].fail = RuntimeError("forge down")
        with pytest.raises(ControlError, match="pr_monitor failed: RuntimeError: forge down"):
            await ctl.run_job("pr_monitor")

    async def test_running_a_busy_job_waits_and_a_paused_one_is_refused(
        self, ctl: Controller, jobs: dict[str, Job]
    ) -> None:
        """Busy: the second run waits for the first and then runs. Paused: dispatch needs a resume first."""
        jobs["dispatch"].gate = asyncio.Event()
        first = asyncio.create_task(ctl.run_job("dispatch"))
        await asyncio.wait_for(jobs["dispatch"].started.wait(), 1)
        second = asyncio.create_task(ctl.run_job("dispatch"))
        await asyncio.sleep(0)
        assert (await ctl.status())["jobs_running"] == ["dispatch"]
        assert not second.done() and jobs["dispatch"].runs == 1
        jobs["dispatch"].gate.set()
        assert (await first)["result"] == "ok"
        assert (await asyncio.wait_for(second, 5))["result"] == "ok"
        assert jobs["dispatch"].runs == 2

        await ctl.pause()
        with pytest.raises(ControlError, match="paused; `resume` first"):
            await ctl.run_job("dispatch")
        assert jobs["dispatch"].runs == 2

    async def test_job_off_is_shown_in_jobs_and_persisted(self, ctl: Controller, rt: Runtime) -> None:
        """`job off` flips the row and is in the journal."""
        assert await ctl.set_job("dispatch", False) == {"job": "dispatch", "enabled": False}
        rows = {row["name"]: row for row in await ctl.jobs()}
        assert rows["dispatch"]["enabled"] is False
        assert reloaded(rt).load()[1].disabled_jobs == ["dispatch"]

    async def test_unknown_jobs_are_errors(self, ctl: Controller) -> None:
        """A typo in a job name is a one-line error for set_job, run_job and poke alike."""
        for call in (ctl.set_job("nosuch", False), ctl.run_job("nosuch"), ctl.poke("nosuch")):
            with pytest.raises(ControlError, match="no job named 'nosuch'"):
                await call

    async def test_without_a_scheduler_job_commands_say_so(self, tmp_path: Path) -> None:
        """During start-up (no scheduler yet) job commands answer instead of crashing."""
        rt = build_runtime(tmp_path)
        rt.scheduler = None
        try:
            with pytest.raises(ControlError, match="scheduler is not running"):
                await build_controller(rt).jobs()
        finally:
            rt.store.close()


class TestReload:
    async def test_a_rejected_reload_is_an_error_with_the_problems(self, rt: Runtime) -> None:
        """The daemon's reload raises ConfigError; the operator gets every problem on one line."""

        async def bad_reload() -> None:
            raise ConfigError(["agentos.yaml:3: max_parallel_workers: must be ≥ 1", "agentos.yaml:9: x: unknown key"])

        ctl = build_controller(rt, on_reload=bad_reload)
        with pytest.raises(ControlError) as info:
            await ctl.reload()
        message = str(info.value)
        assert message.startswith("config not reloaded, the last good one stays: ")
        assert "max_parallel_workers" in message and "unknown key" in message
        assert "\n" not in message

    async def test_reload_without_a_hook_is_an_error(self, ctl: Controller) -> None:
        """A controller not wired to a daemon cannot reload."""
        with pytest.raises(ControlError, match="not available"):
            await ctl.reload()


class TestRepos:
    async def test_repo_off_is_persisted_and_leaves_status(self, ctl: Controller, rt: Runtime) -> None:
        """A disabled repo drops out of status and stays disabled on disk."""
        await ctl.set_repo("calc", False)
        assert (await ctl.status())["repos"] == []
        assert reloaded(rt).load()[1].disabled_repos == ["calc"]
        with pytest.raises(ControlError, match="no repo named 'nope'; repos: calc"):
            await ctl.set_repo("nope", True)

    async def test_repo_mode_edits_the_config_file_keeping_comments(self, ctl: Controller, rt: Runtime) -> None:
        """`repo mode calc dispatcher` writes the file (comments intact) and the running config."""
        assert rt.config_path is not None
        assert await ctl.set_repo_mode("calc", "dispatcher") == {"repo": "calc", "mode": "dispatcher_only"}
        text = rt.config_path.read_text()
        assert "automation_mode: dispatcher_only" in text
        assert "# the only repo" in text and "# kept" in text
        assert rt.config.repo("calc").automation_mode == "dispatcher_only"
        with pytest.raises(ControlError, match="mode must be full or dispatcher"):
            await ctl.set_repo_mode("calc", "yolo")

    async def test_a_read_only_config_file_holds_the_edit_in_the_state(
        self, ctl: Controller, rt: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Under the system unit /etc is read-only: `repo mode` and `repo cadence` still work, the file is
        unchanged, `repos` says which keys the state holds, and a restart keeps them."""
        from agentos import repo_overrides

        assert rt.config_path is not None
        read_only(rt.config_path, monkeypatch)
        before = rt.config_path.read_text()
        assert await ctl.set_repo_mode("calc", "dispatcher") == {"repo": "calc", "mode": "dispatcher_only"}
        await ctl.set_repo_cadence("calc", 3)
        assert rt.config_path.read_text() == before
        assert rt.config.repo("calc").automation_mode == "dispatcher_only"
        [row] = await ctl.repos()
        assert (row["mode"], row["cadence_days"], row["held"]) == (
            "dispatcher_only",
            3,
            "automation_mode, groom_cadence_days",
        )
        assert "held over the config file: automation_mode, groom_cadence_days" in replies.chat_repos([row])
        on_disk = reloaded(rt).load()[1]
        config = parse_config(before, str(rt.config_path))
        assert repo_overrides.overlay(config, on_disk.repo_overrides).repo("calc").groom_cadence_days == 3

        await ctl.set_repo_mode("calc", "full")  # back to the file's value: nothing held for the mode
        [row] = await ctl.repos()
        assert (row["mode"], row["held"]) == ("full", "groom_cadence_days")

    async def test_editing_the_file_wins_over_a_held_edit(
        self, ctl: Controller, rt: Runtime, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A reload of the unchanged file keeps the held edit; once the YAML itself changes that key, the file wins."""
        assert rt.config_path is not None
        read_only(rt.config_path, monkeypatch)
        await ctl.set_repo_cadence("calc", 3)
        text = rt.config_path.read_text()
        rt.replace_config(parse_config(text, str(rt.config_path)))
        assert rt.config.repo("calc").groom_cadence_days == 3
        edited = text.replace('test_command: "true"', 'test_command: "true"\n    groom_cadence_days: 9')
        rt.replace_config(parse_config(edited, str(rt.config_path)))
        assert rt.config.repo("calc").groom_cadence_days == 9
        [row] = await ctl.repos()
        assert row["held"] is None

    async def test_config_edits_need_a_config_file(self, tmp_path: Path) -> None:
        """A daemon started without a file has nothing to edit and says so."""
        rt = build_runtime(tmp_path, with_file=False)
        try:
            with pytest.raises(ControlError, match="without a config file"):
                await build_controller(rt).set_repo_cadence("calc", 3)
        finally:
            rt.store.close()


class TestTasks:
    async def test_tasks_filter_and_show(self, ctl: Controller, rt: Runtime) -> None:
        """Tasks are listed, filtered by status, and shown whole; bad filters and ids are errors."""
        add_task(rt, 1)
        add_task(rt, 2, TaskStatus.BLOCKED)
        assert {row["id"] for row in await ctl.tasks()} == {"calc#1", "calc#2"}
        assert [row["id"] for row in await ctl.tasks(status="blocked")] == ["calc#2"]
        assert (await ctl.task("calc#1"))["title"] == "issue 1"
        with pytest.raises(ControlError, match="unknown status 'stuck'"):
            await ctl.tasks(status="stuck")
        with pytest.raises(ControlError, match="no task 'calc#9'"):
            await ctl.task("calc#9")

    async def test_retry_and_cancel_are_journaled(self, ctl: Controller, rt: Runtime) -> None:
        """Retry re-queues a blocked task; cancel ends a queued one; both are on disk; repeats are refused."""
        add_task(rt, 1, TaskStatus.BLOCKED)
        assert await ctl.retry("calc#1") == {"task": "calc#1", "status": "queued"}
        with pytest.raises(ControlError, match="already queued"):
            await ctl.retry("calc#1")
        assert await ctl.cancel("calc#1") == {"task": "calc#1", "status": "cancelled"}
        with pytest.raises(ControlError, match="already cancelled"):
            await ctl.cancel("calc#1")
        graph, _ = reloaded(rt).load()
        found = graph.find("calc#1")
        assert found is not None and found.status is TaskStatus.CANCELLED

    async def test_cancel_takes_the_issue_out_of_the_ready_queue(self, ctl: Controller, rt: Runtime) -> None:
        """A cancelled task's issue loses its ready label, so the next dispatch does not start it again."""
        forge = rt.forge
        assert isinstance(forge, LocalForge)
        issue = await forge.new_issue("calc", "issue 1", "", [READY_LABEL])
        add_task(rt, issue.number)
        await ctl.cancel(f"calc#{issue.number}")
        assert READY_LABEL not in (await forge.get_issue("calc", issue.number)).labels
        assert await forge.ready_issues("calc") == []

    async def test_an_unknown_agent_is_refused_and_wont_fix_closes(self, ctl: Controller, rt: Runtime) -> None:
        """Reroute to an unknown agent is refused naming the agents; a won't-fix close ends the task
        (cancelled, blocker wontfix), closes its issue with the reason, and is on disk."""
        forge = rt.forge
        assert isinstance(forge, LocalForge)
        issue = await forge.new_issue("calc", "issue 1", "", [READY_LABEL])
        add_task(rt, issue.number, TaskStatus.BLOCKED)
        ref = f"calc#{issue.number}"
        with pytest.raises(ControlError, match="no agent named 'nobody'; agents: none"):
            await ctl.retry(ref, "nobody")
        closed = await ctl.close(ref, wontfix=True, reason="not worth it")
        assert closed == {"task": ref, "status": "cancelled", "blocker": "wontfix"}
        shown = await forge.get_issue("calc", issue.number)
        assert shown.state == "closed" and READY_LABEL not in shown.labels
        assert any("not worth it" in c.body for c in await forge.comments("calc", issue.number))
        graph, _ = reloaded(rt).load()
        found = graph.find(ref)
        assert found is not None and found.last_blocker == "wontfix" and found.status is TaskStatus.CANCELLED

    async def test_show_gives_the_manual_steps_of_the_agents_result(
        self, ctl: Controller, rt: Runtime, tmp_path: Path
    ) -> None:
        """`task show` of a finished task shows what its agent said a human must do."""
        run = tmp_path / "run1"
        run.mkdir()
        (run / RESULT_FILE).write_text(
            "STATUS: complete\nSUMMARY: added the flag\nMANUAL_STEPS: set FLAG=1 in production\n", encoding="utf-8"
        )
        task = add_task(rt, 1)
        task.attempts.append(Attempt(number=1, agent="claude", started_at=NOW, outcome="complete", run_dir=str(run)))
        assert (await ctl.task("calc#1"))["manual_steps"] == "set FLAG=1 in production"
        (run / RESULT_FILE).write_text("STATUS: complete\nSUMMARY: x\nMANUAL_STEPS: none\n", encoding="utf-8")
        assert "manual_steps" not in await ctl.task("calc#1")

    async def test_approve_of_a_pr_no_task_owns_is_an_error(self, ctl: Controller) -> None:
        """Approving a PR that no agentos task opened answers with why instead of crashing."""
        with pytest.raises(ControlError, match="no agentos task owns PR calc#3"):
            await ctl.approve("calc#3")


def test_config_fixture_is_valid(tmp_path: Path) -> None:
    """The test config parses (guards the fixture itself)."""
    cfg = parse_config(CONFIG.format(state=tmp_path, repo=tmp_path), "x.yaml")
    assert isinstance(cfg, Config) and cfg.max_parallel_workers == 3


class TestAgents:
    """``agents`` and ``agent resume``: what is paused, why, the month's spend, and lifting a pause by hand."""

    @pytest.fixture
    def brt(self, tmp_path: Path) -> Iterator[Runtime]:
        """A runtime whose claude has monthly limits (warn $5, max $10, Europe/Berlin) and a backup agent."""
        runtime = budget_runtime(tmp_path, BudgetClock(BUDGET_NOW))
        yield runtime
        runtime.store.close()

    async def test_agents_shows_each_pause_its_cause_and_the_month(self, brt: Runtime) -> None:
        """A budget pause names the limit and the spend; a usage-limit pause says so; limits read as configured."""
        spend(brt, 11.0, BUDGET_NOW, 1)
        AgentPool.from_runtime(brt).enforce_budgets()
        brt.state.paused_agents["backup"] = BUDGET_NOW + timedelta(hours=2)
        rows = {row["agent"]: row for row in await build_controller(brt).agents()}
        claude, backup = rows["claude"], rows["backup"]
        assert claude["paused_until"] == "2025-03-31T22:00:00+00:00"
        assert claude["paused_until_local"] == "2025-04-01 00:00 Europe/Berlin"
        assert claude["why"] == "monthly budget: spent 1,000 tokens / $11.00 over 1 attempt in 2025-03; limit $10.00"
        assert claude["month"] == "2025-03" and claude["month_cost_usd"] == 11.0 and claude["month_attempts"] == 1
        assert claude["limits"] == "month: warn $5.00, max $10.00"
        assert backup["why"].startswith("usage limit") and backup["limits"] == "none"
        assert backup["month_spend"] == "0 tokens / $0.00 over 0 attempts"
        status = await build_controller(brt).status()
        assert status["agents_paused"] == 2 and set(status["paused_agents"]) == {"claude", "backup"}

    async def test_resume_lifts_the_pause_journals_it_and_it_holds(self, brt: Runtime) -> None:
        """`agent resume` ends a budget pause at once (journalled, on disk), says it is still over budget, and
        the next budget check leaves it running; the row then shows the lift."""
        spend(brt, 11.0, BUDGET_NOW, 1)
        AgentPool.from_runtime(brt).enforce_budgets()
        ctl = build_controller(brt)
        done = await ctl.resume_agent("claude")
        assert done["resumed"] is True and done["was_paused_until"] == "2025-03-31T22:00:00+00:00"
        assert done["budget"].startswith("still over budget for 2025-03: the pause stays lifted")
        assert reloaded(brt).load()[1].paused_agents == {}
        events = [e.type for e in brt.store.iter_events(BUDGET_NOW - timedelta(days=1))]
        assert events[-1] == "agent_pause_lifted"
        AgentPool.from_runtime(brt).enforce_budgets()
        assert brt.state.paused_agents == {}
        [row] = [r for r in await ctl.agents() if r["agent"] == "claude"]
        assert row["paused_until"] is None and row["lifted"] == ["2025-03"]
        assert row["why"] == "over budget for 2025-03; pause lifted by hand"

    async def test_resume_refusals_name_the_problem(self, brt: Runtime) -> None:
        """An unknown name lists the agents; an agent that is not paused, or a held state write, is refused."""
        ctl = build_controller(brt)
        with pytest.raises(ControlError, match=r"no agent named 'nope'; agents: claude, backup"):
            await ctl.resume_agent("nope")
        with pytest.raises(ControlError, match=r"^agent backup is not paused$"):
            await ctl.resume_agent("backup")
        brt.state.paused_agents["backup"] = BUDGET_NOW - timedelta(seconds=1)  # a pause already over
        with pytest.raises(ControlError, match="is not paused"):
            await ctl.resume_agent("backup")
        brt.state.paused_agents["backup"] = BUDGET_NOW + timedelta(hours=1)
        brt.write_failure = held_write(BUDGET_NOW)
        with pytest.raises(ControlError, match=r"state writes are held \(the disk is full: .*\); free some space"):
            await ctl.resume_agent("backup")
        assert "backup" in brt.state.paused_agents


def held_write(now: datetime) -> StateWriteFailure:
    return StateWriteFailure(
        since=now, path="/var/lib/agentos", mount="/ (/dev/sda1)", free_bytes=0, error="No space left", disk_full=True
    )


class TestHeldStatus:
    async def test_status_shows_the_hold_and_the_status_page(self, ctl: Controller, rt: Runtime) -> None:
        """A state-write hold and the status page address are in `status`; the systemd line says held too."""
        status = await ctl.status()
        assert status["state_writes_held"] is None and status["status_page"] is None
        assert status["agents_paused"] == 0
        rt.write_failure = held_write(NOW)
        ctl = build_controller(rt, status_page_url=lambda: "http://127.0.0.1:8787/")
        rt.state.paused_agents["claude"] = NOW + timedelta(hours=1)
        status = await ctl.status()
        assert status["state_writes_held"] == (
            "since 2026-01-05T09:30:00+00:00: the disk is full: /var/lib/agentos on / (/dev/sda1) has 0.0 KiB free "
            "(No space left)"
        )
        assert status["status_page"] == "http://127.0.0.1:8787/" and status["agents_paused"] == 1
        daemon = Daemon(rt.config, None)
        daemon.rt = rt
        assert repr(daemon) == (
            "<Daemon dispatching, 0/3 agents running, 0 queued, 1 agent paused, STATE WRITES HELD (disk full) "
            "reloads=0>"
        )

    async def test_a_job_held_by_a_full_disk_is_refused_with_the_reason(self, rt: Runtime) -> None:
        """`ctl run` of a job skipped for the hold says why; the stall watchdog (runs_when_held) still runs."""
        sched = Scheduler(
            rt.state, clock=lambda: NOW, held=lambda: rt.write_failure.describe() if rt.write_failure else None
        )
        rt.scheduler = sched
        pr, watchdog = Job(), Job()
        sched.register("pr_monitor", pr)
        sched.register("stall_watchdog", watchdog, runs_when_paused=True, runs_when_held=True)
        rt.write_failure = held_write(NOW)
        ctl = build_controller(rt)
        with pytest.raises(ControlError, match=r"^state writes are held \(the disk is full: .*\); pr_monitor runs"):
            await ctl.run_job("pr_monitor")
        assert await ctl.run_job("stall_watchdog") == {"job": "stall_watchdog", "result": "ok"}
        assert (pr.runs, watchdog.runs) == (0, 1)
        rt.write_failure = None
        assert (await ctl.run_job("pr_monitor"))["result"] == "ok" and pr.runs == 1


class TestIssueCommands:
    """`issue_new` / `issue_ready`: what `agentos issue new|ready` asks a running daemon to do."""

    @staticmethod
    def args(rt: Runtime, **changes: object) -> dict[str, object]:
        base: dict[str, object] = {
            "repo": None,
            "title": "Add a greeting",
            "body": "Say hello.",
            "labels": ["prio:high"],
            "ready": True,
            "key": "cli:k1",
            "config": str(rt.config_path),
        }
        return {**base, **changes}

    async def test_a_ready_issue_is_filed_once_and_dispatch_is_poked(
        self, ctl: Controller, rt: Runtime, jobs: dict[str, Job]
    ) -> None:
        """The issue lands on the local forge with the ready label and the key; dispatch runs; the same key
        again (a retry) returns that issue instead of filing a second one."""
        filed = await ctl.issue_new(**self.args(rt))  # type: ignore[arg-type]
        await asyncio.wait_for(jobs["dispatch"].started.wait(), 5)
        assert (filed["repo"], filed["number"], filed["title"]) == ("calc", 1, "Add a greeting")
        assert filed["labels"] == ["prio:high", READY_LABEL]
        again = await ctl.issue_new(**self.args(rt, title="Other title"))  # type: ignore[arg-type]
        assert again["number"] == 1
        forge = rt.forge
        assert isinstance(forge, LocalForge)
        [issue] = await forge.list_issues("calc", state="all")
        assert issue.body.startswith("Say hello.") and "<!-- agentos:key=cli:k1 -->" in issue.body

    async def test_the_cli_falling_back_after_a_timeout_finds_the_daemons_issue(
        self, ctl: Controller, rt: Runtime
    ) -> None:
        """The CLI's own path (another LocalForge, another process in real life) with the key the daemon
        used returns the daemon's issue, even once it is closed."""
        filed = await ctl.issue_new(**self.args(rt, ready=False))  # type: ignore[arg-type]
        other = LocalForge(rt.state_dir, {r.name: r for r in rt.config.repos})
        await other.close_issue("calc", filed["number"])
        found = await other.new_issue("calc", "Add a greeting", "Say hello.", ["prio:high"], key="cli:k1")
        assert found.number == filed["number"] and found.state == "closed"
        assert len(await other.list_issues("calc", state="all")) == 1

    async def test_refusals_name_the_problem(self, ctl: Controller, rt: Runtime, tmp_path: Path) -> None:
        """Another config file, an unknown repo and a missing issue are one-line errors; nothing is filed."""
        other = tmp_path / "other.yaml"
        other.write_text("repos: []\n")
        with pytest.raises(ControlError, match=r"^this daemon serves .*agentos\.yaml, not .*other\.yaml$"):
            await ctl.issue_new(**self.args(rt, config=str(other)))  # type: ignore[arg-type]
        with pytest.raises(ControlError, match="not no config file"):
            await ctl.issue_new(**self.args(rt, config=None))  # type: ignore[arg-type]
        with pytest.raises(ControlError, match=r"^no repo named 'nope'; repos: calc$"):
            await ctl.issue_new(**self.args(rt, repo="nope"))  # type: ignore[arg-type]
        with pytest.raises(ControlError, match=r"^calc: no issue or pull request #7$"):
            await ctl.issue_ready("calc", 7, str(rt.config_path))
        forge = rt.forge
        assert isinstance(forge, LocalForge)
        assert await forge.list_issues("calc", state="all") == []

    async def test_ready_labels_an_issue_and_pokes_dispatch(
        self, ctl: Controller, rt: Runtime, jobs: dict[str, Job]
    ) -> None:
        """`issue_ready` adds the ready label (twice changes nothing) and runs dispatch."""
        filed = await ctl.issue_new(**self.args(rt, ready=False, labels=[]))  # type: ignore[arg-type]
        assert jobs["dispatch"].runs == 0
        assert await ctl.issue_ready(None, filed["number"], str(rt.config_path)) == {
            "repo": "calc",
            "number": 1,
            "ready": True,
        }
        await ctl.issue_ready("calc", filed["number"], str(rt.config_path))
        await asyncio.wait_for(jobs["dispatch"].started.wait(), 5)
        forge = rt.forge
        assert isinstance(forge, LocalForge)
        assert (await forge.get_issue("calc", 1)).labels == [READY_LABEL]


class TestSandboxStatus:
    async def test_status_and_the_chat_say_when_attempts_run_unconfined(self, rt: Runtime) -> None:
        """``sandbox.mode: off`` is said in the status (terminal and chat); a working sandbox needs no line."""
        ctl = build_controller(rt)
        status = await ctl.status()
        assert status["sandbox"].startswith("bubblewrap" if rt.config.sandbox.mode == "bubblewrap" else "off: ")
        off = {**status, "sandbox": OFF_LINE}
        assert f"⚠ sandbox {OFF_LINE}" in replies.chat_status(off)
        assert "⚠ sandbox" not in replies.chat_status({**status, "sandbox": "bubblewrap"})


class TestRefusedRepo:
    async def test_status_repos_and_the_chat_say_why_a_repo_is_refused_until_it_is_fixed(
        self, rt: Runtime, jobs: dict[str, Job], tmp_path: Path
    ) -> None:
        """A repo whose path is gone is listed with its problem; a git repository there takes it back."""
        core = build_core(rt)
        ctl = build_controller(rt, core)
        path = tmp_path / "calc"
        assert await core.guard.check() == {"calc": f"{path} does not exist"}
        status = await ctl.status()
        assert status["repos_refused"] == {"calc": f"{path} does not exist"}
        assert f"⚠ repo calc refused: {path} does not exist" in replies.chat_status(status)
        [row] = await ctl.repos()
        assert row["refused"] == f"{path} does not exist"

        subprocess.run(["git", "init", "-q", str(path)], check=True)
        await core.guard.check()
        assert (await ctl.status())["repos_refused"] == {}
        assert [r["refused"] for r in await ctl.repos()] == [None]
