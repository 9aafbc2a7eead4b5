"""The one command surface. The control socket and the Telegram bot parse a request and call this.

Every method returns JSON-able data and raises :class:`ControlError` with a one-line message on bad
input; none of them blocks the loop.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from agentos import __version__
from agentos import config as cfgmod
from agentos import logging as alog
from agentos.acceptance_fate import AcceptanceFate
from agentos.agents.pool import AgentPool
from agentos.budget import issue_breach
from agentos.control.local_issues import LocalIssues
from agentos.control.refs import numbered, repo_named
from agentos.control.repo_edits import RepoEdits
from agentos.control.task_rows import task_row
from agentos.errors import AgentosError, ControlError
from agentos.forge.base import Forge
from agentos.graph import Event, IllegalTransition, Task, TaskStatus
from agentos.jobs.auto_ready import AutoReady
from agentos.jobs.incident_book import IncidentBook
from agentos.jobs.sprint_plan import SprintPlans
from agentos.lifecycle import Lifecycle
from agentos.ops.metrics import History, read_history
from agentos.ports import Clock, ConfigFile, Journal
from agentos.repo_guard import RepoGuard
from agentos.results import manual_steps_of
from agentos.runners.policy import describe
from agentos.scheduler import Scheduler
from agentos.state_writer import StateWriteFailure
from agentos.store import DaemonState
from agentos.task_graph import TaskGraph

log = alog.get_logger("agentos.controller")


class Approvals(Protocol):
    """An operator's decision on a PR, merged at once when it may (``PRMonitor.approve``)."""

    async def approve(self, repo: str, number: int, approve: bool) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the daemon looks like at one moment, for read-only views (the status page, its metrics)."""

    at: datetime
    status: dict[str, Any]
    """:meth:`Controller.status`."""
    jobs: list[dict[str, Any]]
    """:meth:`Controller.jobs`; empty while the scheduler is not running."""
    tasks: list[Task]
    history: History | None
    """The journal's history of the days asked for, up to ``at``; None when not asked for."""


class JournalWithHold(Journal, Protocol):
    """The journal, and why its writes are held (since when, on which disk): what ``status`` shows."""

    @property
    def write_failure(self) -> StateWriteFailure | None: ...


class Controller:
    """The operator's commands over the daemon's parts, each given here (the daemon wires them)."""

    def __init__(
        self,
        *,
        settings: ConfigFile,
        journal: JournalWithHold,
        clock: Clock,
        graph: TaskGraph,
        state: DaemonState,
        forge: Forge,
        lifecycle: Lifecycle,
        pool: AgentPool,
        scheduler: Scheduler | None,
        events: Callable[[datetime], Iterable[Event]],
        started_at: datetime,
        guard: RepoGuard | None = None,
        acceptance: AcceptanceFate | None = None,
        on_reload: Callable[[], Awaitable[None]] | None = None,
        approvals: Approvals | None = None,
        status_page_url: Callable[[], str | None] = lambda: None,
        plans: SprintPlans | None = None,
        offers: AutoReady | None = None,
        incidents: IncidentBook | None = None,
    ) -> None:
        self._settings = settings
        self._journal = journal
        self._clock = clock
        self._graph = graph
        self._state = state
        self._forge = forge
        self.lifecycle = lifecycle
        self._pool = pool
        self._scheduler_or_none = scheduler
        """The job table (None: a controller without a scheduler, as in some tests: job commands refuse)."""
        self._events = events
        """The journal's events since a time (the status page's history)."""
        self._started_at = started_at
        self._guard = guard
        """The repos refused for a broken path (``status`` and ``repos`` say why); None: none are checked."""
        self._on_reload = on_reload
        self._approvals = approvals
        """Who merges an approved PR at once (the PR monitor); without it lifecycle records the decision."""
        self._status_page_url = status_page_url
        self._acceptance = acceptance or AcceptanceFate(lifecycle=lifecycle)
        """Who records an operator's sign-off of a merged task's acceptance checks (``accept``)."""
        self._plans = plans
        """Sprint plans waiting for a decision (``plan show|approve|skip``); None: those commands refuse."""
        self._offers = offers
        """Loop-filed issues offered with one tap (``issue make-ready|dismiss``); None: those commands refuse."""
        self._incidents = incidents
        """Open incidents (``incidents``, ``ack``, ``resolve``); None: those commands refuse."""
        self._issues = LocalIssues(settings=settings, forge=forge, poke=self._poke)
        """``agentos issue new|ready`` on the local forge (``issue_new``, ``issue_ready``)."""
        self._repos = RepoEdits(settings=settings, journal=journal, state=state, refused=self._refused)
        """``repos`` and ``repo enable|disable|mode|cadence``."""

    def __repr__(self) -> str:
        return f"<Controller tasks={len(self._graph)} paused={self._state.paused}>"

    @property
    def status_page_url(self) -> str | None:
        """Where the status page answers, once the daemon has bound it (``status`` shows it)."""
        return self._status_page_url()

    # ------------------------------------------------------------ daemon

    async def status(self) -> dict[str, Any]:
        config, state = self._settings.config, self._state
        counts = self._graph.counts()
        now = self._clock()
        paused_agents = {k: v.isoformat() for k, v in state.paused_agents.items() if v > now}
        held = self._journal.write_failure
        sched = self._scheduler_or_none
        return {
            "pid": os.getpid(),
            "version": __version__,
            "paused": state.paused,
            "running": counts["running"] + counts["validating"],  # tasks at work, as the counts say
            "max_parallel_workers": config.max_parallel_workers,
            "max_parallel_per_repo": config.max_parallel_per_repo,
            "queued": counts["queued"] + counts["retrying"],
            "counts": counts,
            "tasks": len(self._graph),
            "uptime_s": round((now - self._started_at).total_seconds(), 1),
            "forge": config.forge,
            "repos": [r.name for r in config.repos if self._settings.repo_enabled(r.name)],
            "repos_refused": self._refused(),
            "paused_agents": paused_agents,
            "agents_paused": len(paused_agents),
            "state_writes_held": None if held is None else f"since {held.since.isoformat()}: {held.describe()}",
            "status_page": self.status_page_url,
            "state_dir": str(config.state_path),
            "config": self._config_path_text(),
            "jobs_running": sched.busy() if sched is not None else [],
            "sandbox": describe(config.sandbox),
            "runner": config.runner.kind if config.runner.kind == "local" else f"ray {config.runner.address}",
            "running_on": {
                t.id: f"ray {a.node[:12]}" if a.node else "here"
                for t in self._graph
                if t.status is TaskStatus.RUNNING and (a := t.current_attempt) is not None and a.outcome == "running"
            },
        }

    def _refused(self) -> dict[str, str]:
        return self._guard.refused if self._guard is not None else {}

    def _config_path_text(self) -> str | None:
        path = self._settings.config_path
        return str(path) if path else None

    async def snapshot(self, *, history_days: float | None = None) -> Snapshot:
        """The daemon's state as plain data; with ``history_days`` also the journal's history of those last
        days (read in a thread)."""
        now, tasks = self._clock(), list(self._graph)
        history = None
        if history_days is not None:
            since = now - timedelta(days=history_days)
            history = await asyncio.to_thread(lambda: read_history(self._events(since), tasks, since=since, until=now))
        jobs = await self.jobs() if self._scheduler_or_none is not None else []
        return Snapshot(at=now, status=await self.status(), jobs=jobs, tasks=tasks, history=history)

    async def pause(self) -> dict[str, Any]:
        self._state.paused = True
        self._journal.save_state()
        log.warning("daemon_paused")
        return {"paused": True}

    async def resume(self) -> dict[str, Any]:
        self._state.paused = False
        self._journal.save_state()
        log.info("daemon_resumed")
        self._poke("dispatch")
        return {"paused": False}

    async def reload(self) -> dict[str, Any]:
        """Re-read the config file; a bad file changes nothing and its problems come back as the error."""
        if self._on_reload is None:
            raise ControlError("reload is not available")
        try:
            await self._on_reload()
        except cfgmod.ConfigError as exc:
            raise ControlError("config not reloaded, the last good one stays: " + "; ".join(exc.problems)) from None
        return {"reloaded": True, "config": self._config_path_text()}

    # ------------------------------------------------------------ agents

    async def agents(self) -> list[dict[str, Any]]:
        """One row per configured agent (and per paused agent no longer configured): its pause and why,
        this month's spend and its limits, in the config's ``timezone``."""
        return self._pool.view()

    async def resume_agent(self, name: str) -> dict[str, Any]:
        """Lift ``name``'s pause now (a usage limit's or a budget's); see :meth:`AgentPool.resume`."""
        result = self._pool.resume(name)
        self._poke("dispatch")
        return result

    # ------------------------------------------------------------ jobs

    def _scheduler(self) -> Scheduler:
        if self._scheduler_or_none is None:
            raise ControlError("the scheduler is not running")
        return self._scheduler_or_none

    async def jobs(self) -> list[dict[str, Any]]:
        return self._scheduler().table()

    async def set_job(self, name: str, enabled: bool) -> dict[str, Any]:
        self._scheduler().set_enabled(name, enabled)
        return {"job": name, "enabled": enabled}

    async def run_job(self, name: str) -> dict[str, Any]:
        result = await self._scheduler().run_now(name)
        if result == "skipped_paused":
            raise ControlError(f"the daemon is paused; `resume` first to run {name}")
        held = self._journal.write_failure
        if result == "skipped_held" and held is not None:
            raise ControlError(f"state writes are held ({held.describe()}); {name} runs again once they resume")
        if result == "failed":
            record = self._state.job_runs.get(name)
            raise ControlError(f"{name} failed: {record.last_error if record else 'unknown error'}")
        return {"job": name, "result": result}

    def _poke(self, name: str) -> None:
        sched = self._scheduler_or_none
        if sched is not None and name in sched.names:
            sched.poke(name)

    async def poke(self, job: str = "dispatch") -> dict[str, Any]:
        if not self._scheduler().has_job(job):
            raise ControlError(f"no job named {job!r}; jobs: {', '.join(sorted(self._scheduler().names))}")
        self._poke(job)
        return {"poked": job}

    # ------------------------------------------------------------ repos

    def _repo(self, name: str) -> cfgmod.RepoConfig:
        return repo_named(self._settings.config, name)

    async def repos(self) -> list[dict[str, Any]]:
        return self._repos.listing()

    async def set_repo(self, name: str, enabled: bool) -> dict[str, Any]:
        return self._repos.set_enabled(name, enabled)

    async def set_repo_mode(self, name: str, mode: str) -> dict[str, Any]:
        return await self._repos.set_mode(name, mode)

    async def set_repo_cadence(self, name: str, days: int) -> dict[str, Any]:
        return await self._repos.set_cadence(name, days)

    # ------------------------------------------------------------ tasks

    def _task(self, task_id: str) -> Task:
        task = self._graph.find(task_id)
        if task is None:
            raise ControlError(f"no task {task_id!r} (ids look like repo#12; see `agentos ctl tasks`)")
        return task

    async def tasks(self, repo: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
        if status is not None and status not in {s.value for s in TaskStatus}:
            raise ControlError(f"unknown status {status!r}; one of: {', '.join(s.value for s in TaskStatus)}")
        rows = [
            task_row(t)
            for t in self._graph
            if (repo is None or t.repo == repo) and (status is None or t.status.value == status)
        ]
        return sorted(rows, key=lambda r: r["updated"], reverse=True)

    async def task(self, task_id: str) -> dict[str, Any]:
        """The task in full; ``manual_steps``: what its agent's result file says a human must do (when any)."""
        task = self._task(task_id)
        dumped: dict[str, Any] = task.model_dump(mode="json")
        if manual := await asyncio.to_thread(manual_steps_of, task):
            dumped["manual_steps"] = manual
        return dumped

    async def issue(self, task_id: str) -> dict[str, Any]:
        """The task's issue as the forge has it now: what the escalation button "Open issue" shows."""
        task = self._task(task_id)
        try:
            issue = await self._forge.get_issue(task.repo, task.issue)
        except AgentosError as exc:
            raise ControlError(f"issue {task.repo}#{task.issue} could not be read: {exc}") from None
        return {
            "task": task.id,
            "issue": f"{issue.repo}#{issue.number}",
            "title": issue.title,
            "state": issue.state,
            "labels": issue.labels,
            "url": issue.url,
            "body": issue.body,
            "status": task.status.value,
            "blocker": task.last_blocker,
        }

    async def retry(self, task_id: str, agent: str | None = None) -> dict[str, Any]:
        task = self._task(task_id)
        try:
            self.lifecycle.retry(task, agent or None)
        except IllegalTransition as exc:
            raise ControlError(str(exc)) from None
        result: dict[str, Any] = {"task": task_id, "status": task.status.value}
        if agent:
            result["agent"] = agent
        breach = issue_breach(self._graph.for_issue(task.repo, task.issue), self._settings.config.limits)
        if breach:  # an operator's retry runs once more past the ceiling; the ceiling is checked after it
            result["budget"] = f"over budget ({breach}): this retry runs one attempt; if it fails, it escalates again"
        return result

    async def cancel(self, task_id: str) -> dict[str, Any]:
        task = self._task(task_id)
        try:
            await self.lifecycle.cancel(task)
        except IllegalTransition as exc:
            raise ControlError(str(exc)) from None
        return {"task": task_id, "status": task.status.value}

    async def close(self, task_id: str, wontfix: bool = False, reason: str = "") -> dict[str, Any]:
        task = self._task(task_id)
        try:
            await self.lifecycle.close(task, wontfix=wontfix, reason=reason)
        except IllegalTransition as exc:
            raise ControlError(str(exc)) from None
        return {"task": task_id, "status": task.status.value, "blocker": task.last_blocker}

    # ------------------------------------------------------------ issues (`agentos issue new|ready`)

    async def issue_new(
        self, *, repo: str | None, title: str, body: str, labels: list[str], ready: bool, key: str, config: str | None
    ) -> dict[str, Any]:
        """File an issue on the local forge (``key`` makes a retry return the same one); ``ready`` pokes dispatch."""
        return await self._issues.new(
            repo=repo, title=title, body=body, labels=labels, ready=ready, key=key, config=config
        )

    async def issue_ready(self, repo: str | None, number: int, config: str | None) -> dict[str, Any]:
        """Label a local-forge issue ready and poke dispatch (a second time changes nothing)."""
        return await self._issues.ready(repo, number, config)

    def _pr_ref(self, ref: str) -> tuple[str, int]:
        return numbered(self._settings.config, ref)

    async def approve(self, ref: str) -> dict[str, Any]:
        """Approve a PR waiting for review: it merges at once when green and up to date, else when it is."""
        repo, number = self._pr_ref(ref)
        if self._approvals is not None:
            return await self._approvals.approve(repo, number, True)
        return await self.lifecycle.review(repo, number, approve=True)

    async def accept(self, ref: str) -> dict[str, Any]:
        """Sign off a merged task's acceptance (its ``human`` items, its manual steps): accepted, issue closed."""
        repo, number = self._pr_ref(ref)
        return dict(await self._acceptance.accept(repo, number))

    async def reject(self, ref: str) -> dict[str, Any]:
        """Reject a PR: closed, its task cancelled, its issue out of the ready set."""
        repo, number = self._pr_ref(ref)
        if self._approvals is not None:
            return await self._approvals.approve(repo, number, False)
        return await self.lifecycle.review(repo, number, approve=False)

    # ------------------------------------------------------------ sprint plans and one-tap offers

    def _sprint_plans(self) -> SprintPlans:
        if self._plans is None:
            raise ControlError("sprint plans are not available in this daemon")
        return self._plans

    async def plan_show(self, repo: str | None) -> list[dict[str, Any]]:
        """The pending sprint plan of ``repo`` (or of every repo)."""
        names = [self._repo(repo).name] if repo else [r.name for r in self._settings.config.repos]
        return await self._sprint_plans().show(names)

    async def _plan_repo(self, repo: str | None) -> str:
        names = [r.name for r in self._settings.config.repos]
        return self._repo(repo).name if repo else await self._sprint_plans().waiting_repo(names)

    async def plan_approve(self, repo: str | None) -> dict[str, Any]:
        """Approve the repo's pending sprint plan: its issues are made ready."""
        return await self._sprint_plans().approve(await self._plan_repo(repo))

    async def plan_skip(self, repo: str | None) -> dict[str, Any]:
        """Skip the repo's pending sprint plan: nothing runs, the next plan leaves its picks out."""
        return await self._sprint_plans().skip(await self._plan_repo(repo))

    def _offer_ref(self, ref: str) -> tuple[AutoReady, str, int]:
        if self._offers is None:
            raise ControlError("one-tap offers are not available in this daemon")
        repo, number = self._pr_ref(ref)
        return self._offers, repo, number

    async def issue_make_ready(self, ref: str) -> dict[str, Any]:
        """Make a loop-filed issue ready (the offer's **Make ready**)."""
        offers, repo, number = self._offer_ref(ref)
        return await offers.make_ready(repo, number)

    async def issue_dismiss(self, ref: str) -> dict[str, Any]:
        """Dismiss a loop-filed issue's offer: it stays, not ready."""
        offers, repo, number = self._offer_ref(ref)
        return await offers.dismiss(repo, number)

    # ------------------------------------------------------------ incidents

    def _incident_book(self) -> IncidentBook:
        if self._incidents is None:
            raise ControlError("incidents are not available in this daemon")
        return self._incidents

    async def incidents(self) -> list[dict[str, Any]]:
        """The open incidents: signature, count, first and last seen, fix issue, acked."""
        return await self._incident_book().listing()

    async def incident_ack(self, signature: str, by: str) -> dict[str, Any]:
        """Silence an incident's notices until it is resolved."""
        return await self._incident_book().ack(signature, by=by)

    async def incident_resolve(self, signature: str, by: str) -> dict[str, Any]:
        """Close an incident and its fix issue."""
        return await self._incident_book().resolve(signature, by=by)
