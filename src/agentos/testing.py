"""In-memory ports for tests and benchmarks: a journal, a settable clock, a recording notifier, a fake forge.

::

    rig = build(config)                      # lifecycle, executor, dispatcher, monitor over in-memory ports
    rig.forge.add_issue("calc", 12, "Fix it", labels=["agentos:ready"])
    await rig.lifecycle.attempt_failed(task, Verdict("failed", "timeout"))
    assert rig.forge.labels("calc", 12) == ["agentos:blocked"]
    assert rig.notes.sent[0].key == "escalation:calc#12:1"

    loops = build_loops(config, forge)       # the improvement loops, reading back what they journal
    await loops.backlog_groomer().tick()
    assert "backlog_groomed" in loops.journal.types()

Everything here is typed against the real ports (:mod:`agentos.ports`, :class:`agentos.forge.base.Forge`), so a
test that builds a part with them needs no ``type: ignore``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any, NamedTuple

from agentos._fake_forge import T0, FakeForge
from agentos.agents.pool import AgentPool
from agentos.config import Config, RepoConfig
from agentos.executor import Executor
from agentos.forge.base import Forge
from agentos.graph import Attempt, Event, Task, TaskStatus
from agentos.jobs._loops import LoopSettings
from agentos.jobs._pr_gate import ReviewGate
from agentos.jobs._pr_git import Branches, WorkspaceBranches
from agentos.jobs.analysis import AgentScorer, LogAnalyzer
from agentos.jobs.auto_ready import AutoReady
from agentos.jobs.digest import DailyDigest, DigestNotify
from agentos.jobs.dispatch import Dispatcher
from agentos.jobs.groomer import BacklogGroomer
from agentos.jobs.housekeeping import Housekeeping
from agentos.jobs.incident_book import IncidentBook
from agentos.jobs.incidents import IncidentScanner
from agentos.jobs.planner import SprintPlanner
from agentos.jobs.pr_monitor import PRMonitor
from agentos.lifecycle import Lifecycle
from agentos.llm import ModelAsker
from agentos.ports import Action, Notify, Severity, Wake
from agentos.running import RunningAttempts
from agentos.store import DaemonState, Store
from agentos.task_graph import TaskGraph
from agentos.workspace import Workspace

__all__ = [
    "T0",
    "FakeForge",
    "LoopRig",
    "MemoryJournal",
    "MemorySettings",
    "MemoryWorkspaces",
    "Note",
    "RecordingNotifier",
    "Rig",
    "SettableClock",
    "Wakes",
    "build",
    "build_loops",
    "end_attempt",
    "start_attempt",
    "transition",
]


class SettableClock:
    """``clock()`` is ``now``; :meth:`advance` moves it."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class MemoryJournal:
    """The ``Journal`` port over a :class:`TaskGraph`: changed tasks are put in the graph, events kept in order.

    It is also the history the improvement loops read back (``iter_events``, like the store's).
    """

    def __init__(self, graph: TaskGraph, clock: SettableClock) -> None:
        self.graph = graph
        self.clock = clock
        self.events: list[Event] = []
        self.saves = 0
        self.hold: str | None = None

    def __repr__(self) -> str:
        return f"<MemoryJournal events={len(self.events)}>"

    def commit(self, events: Iterable[Event], tasks: Iterable[Task] = ()) -> None:
        for task in tasks:
            if task.id not in self.graph:
                self.graph.put(task)
        self.events += list(events)

    def record(self, type_: str, task: str | None = None, **data: Any) -> None:
        self.events.append(self.event(type_, task, **data))

    def event(self, type_: str, task: str | None = None, **data: Any) -> Event:
        return Event(type=type_, task=task, ts=self.clock(), data=data)

    def save_state(self) -> None:
        self.saves += 1

    @property
    def held(self) -> str | None:
        return self.hold

    def iter_events(self, since: datetime) -> Iterator[Event]:
        """The events with ``ts >= since``, oldest first (the loops' ``EventHistory``)."""
        return (e for e in list(self.events) if e.ts >= since)

    def types(self, task: str | None = None) -> list[str]:
        """Event types (a transition as ``->status``), of one task when given."""
        return [
            e.type if e.type != "transition" else f"->{e.data['to']}"
            for e in self.events
            if task is None or e.task == task
        ]


class Note(NamedTuple):
    severity: Severity
    key: str
    text: str
    actions: tuple[Action, ...]


class RecordingNotifier:
    """The ``Notify`` port: every notice kept, none sent."""

    def __init__(self) -> None:
        self.sent: list[Note] = []

    def notify(self, severity: Severity, key: str, text: str, actions: Sequence[Action] = ()) -> bool:
        self.sent.append(Note(severity, key, text, tuple(actions)))
        return True


class Wakes:
    """The ``Wake`` port: the jobs asked to run, in order."""

    def __init__(self) -> None:
        self.jobs: list[str] = []

    def __call__(self, job: str) -> None:
        self.jobs.append(job)


class MemorySettings:
    """The ``Settings`` port over a config (``disabled`` repos switched off, like ``ctl repo off``).

    Assigning ``config`` is a reload. With ``config_path`` (the file the config came from) it is also the
    agent scorer's ``TunableSettings``.
    """

    def __init__(self, config: Config, *, config_path: Path | None = None) -> None:
        self._config = config
        self.config_path = config_path
        self.disabled: set[str] = set()

    @property
    def config(self) -> Config:
        return self._config

    @config.setter
    def config(self, value: Config) -> None:
        self._config = value

    def repo(self, name: str) -> RepoConfig:
        return self._config.repo(name)

    def repo_enabled(self, name: str) -> bool:
        try:
            return self._config.repo(name).enabled and name not in self.disabled
        except KeyError:
            return False


class MemoryWorkspaces:
    """The ``Workspaces`` port: real :class:`Workspace` objects that touch git only when used."""

    def __init__(self, state_dir: Path, remote: Path) -> None:
        self.state_dir = state_dir
        self.remote = remote
        self._made: dict[str, Workspace] = {}

    def workspace(self, repo: RepoConfig) -> Workspace:
        ws = self._made.get(repo.name)
        if ws is None:
            ws = Workspace(self.state_dir, repo, remote_url=str(self.remote))
            self._made[repo.name] = ws
        return ws


# ------------------------------------------------------------ task shorthands (the transition methods, as functions)


def transition(task: Task, to: TaskStatus, now: datetime, **data: Any) -> Event:
    """Move ``task`` to ``to`` or raise :class:`~agentos.graph.IllegalTransition` (:meth:`Task.move`)."""
    return task.move(to, now, **data)


def start_attempt(task: Task, agent: str, now: datetime) -> tuple[Attempt, Event]:
    """Begin the next attempt (:meth:`Task.start_attempt`)."""
    return task.start_attempt(agent, now)


def end_attempt(task: Task, now: datetime, **how: Any) -> Event:
    """Record how the current attempt ended (:meth:`Task.end_attempt`)."""
    return task.end_attempt(now, **how)


@dataclass
class Rig:
    """The core wired to in-memory ports, and the ports to look at."""

    config: Config
    clock: SettableClock
    graph: TaskGraph
    journal: MemoryJournal
    forge: FakeForge
    notes: RecordingNotifier
    wakes: Wakes
    settings: MemorySettings
    state: DaemonState
    running: RunningAttempts
    lifecycle: Lifecycle
    pool: AgentPool
    executor: Executor
    dispatcher: Dispatcher
    monitor: PRMonitor
    stopping: bool = False


def build(
    config: Config,
    *,
    tasks: Iterable[Task] = (),
    now: datetime = T0,
    running: RunningAttempts | None = None,
    branches: Branches | None = None,
    forge: FakeForge | None = None,
) -> Rig:
    """Lifecycle, executor, dispatcher and PR monitor over in-memory ports (worktrees under ``config.state_path``).

    ``running`` replaces the registry of running attempts (a recording one, say); ``branches`` the PR monitor's
    git (by default the real clones under the state dir, made only when a test gets that far); ``forge`` a
    :class:`FakeForge` of the test's own (a subclass scripting what it needs).
    """
    clock = SettableClock(now)
    graph = TaskGraph(tasks)
    journal = MemoryJournal(graph, clock)
    forge = forge if forge is not None else FakeForge(clock)
    notes = RecordingNotifier()
    wakes = Wakes()
    settings = MemorySettings(config)
    state = DaemonState()
    running = running if running is not None else RunningAttempts()
    workspaces = MemoryWorkspaces(config.state_path, config.state_path / "remote.git")
    lifecycle = Lifecycle(
        journal=journal,
        clock=clock,
        settings=settings,
        graph=graph,
        forge=forge,
        notify=notes,
        workspaces=workspaces,
        running=running,
        wake=wakes,
    )
    pool = AgentPool(settings=settings, journal=journal, notify=notes, clock=clock, state=state, graph=graph)
    executor = Executor(
        settings=settings,
        journal=journal,
        clock=clock,
        graph=graph,
        forge=forge,
        workspaces=workspaces,
        pool=pool,
        lifecycle=lifecycle,
        wake=wakes,
    )
    rig: Rig
    dispatcher = Dispatcher(
        settings=settings,
        journal=journal,
        clock=clock,
        graph=graph,
        forge=forge,
        workspaces=workspaces,
        executor=executor,
        lifecycle=lifecycle,
        pool=pool,
        paused=lambda: state.paused,
        stopping=lambda: rig.stopping,
    )
    git = branches if branches is not None else WorkspaceBranches(settings, workspaces)
    monitor = PRMonitor(
        settings=settings,
        journal=journal,
        clock=clock,
        graph=graph,
        forge=forge,
        lifecycle=lifecycle,
        branches=git,
        gate=ReviewGate(settings=settings, journal=journal, forge=forge, notify=notes, branches=git),
        stopping=lambda: rig.stopping,
    )
    rig = Rig(
        config,
        clock,
        graph,
        journal,
        forge,
        notes,
        wakes,
        settings,
        state,
        running,
        lifecycle,
        pool,
        executor,
        dispatcher,
        monitor,
    )
    return rig


@dataclass
class LoopRig:
    """The improvement loops' ports in memory, and a builder per loop.

    Every loop reads its history back from ``journal`` (what it and the test journalled), writes through
    ``forge`` and reads the config from ``settings`` (assign ``settings.config`` to reload it).
    """

    clock: SettableClock
    graph: TaskGraph
    journal: MemoryJournal
    settings: MemorySettings
    forge: Forge
    stopping: bool = False

    @property
    def config(self) -> Config:
        return self.settings.config

    def _reads(self) -> dict[str, Any]:
        return {
            "settings": self.settings,
            "journal": self.journal,
            "clock": self.clock,
            "graph": self.graph,
            "store": self.journal,
        }

    def _stopping(self) -> bool:
        return self.stopping

    def incident_scanner(
        self,
        s: LoopSettings | None = None,
        *,
        llm: ModelAsker | None = None,
        offers: AutoReady | None = None,
        notify: Notify | None = None,
    ) -> IncidentScanner:
        return IncidentScanner(
            **self._reads(),
            forge=self.forge,
            stopping=self._stopping,
            loop_settings=s,
            llm=llm,
            offers=offers,
            notify=notify,
            book=self.incident_book(),
        )

    def incident_book(self) -> IncidentBook:
        """The operator's incidents (``ctl incidents``, ``ack``, ``resolve``) over this rig's journal."""
        return IncidentBook(journal=self.journal, clock=self.clock, forge=self.forge, store=self.journal)

    def auto_ready(
        self, s: LoopSettings | None = None, *, notify: Notify | None = None, wake: Wake | None = None
    ) -> AutoReady:
        """Where loop-filed issues go next (``loops.auto_ready``): ready, a one-tap offer, or nowhere."""
        return AutoReady(
            settings=self.settings,
            journal=self.journal,
            clock=self.clock,
            forge=self.forge,
            store=self.journal,
            notify=notify,
            wake=wake,
            loop_settings=s,
        )

    def log_analyzer(self, s: LoopSettings | None = None) -> LogAnalyzer:
        return LogAnalyzer(**self._reads(), forge=self.forge, loop_settings=s)

    def agent_scorer(self, s: LoopSettings | None = None) -> AgentScorer:
        return AgentScorer(**self._reads(), loop_settings=s)

    def backlog_groomer(self, s: LoopSettings | None = None, *, llm: ModelAsker | None = None) -> BacklogGroomer:
        return BacklogGroomer(**self._reads(), forge=self.forge, stopping=self._stopping, loop_settings=s, llm=llm)

    def sprint_planner(
        self,
        s: LoopSettings | None = None,
        *,
        notify: Notify | None = None,
        wake: Wake | None = None,
        llm: ModelAsker | None = None,
    ) -> SprintPlanner:
        """The planner; its ``plans`` (:class:`agentos.jobs.sprint_plan.SprintPlans`) approve and skip."""
        return SprintPlanner(
            **self._reads(),
            forge=self.forge,
            stopping=self._stopping,
            loop_settings=s,
            notify=notify,
            wake=wake,
            llm=llm,
        )

    def daily_digest(
        self, s: LoopSettings | None = None, *, notify: DigestNotify | None = None, tz: tzinfo | None = None
    ) -> DailyDigest:
        return DailyDigest(**self._reads(), notify=notify, loop_settings=s, tz=tz)

    def housekeeping(self, store: Store) -> Housekeeping:
        """The daily prune of ``store``'s rotated history (files on disk: the one loop that needs a real store)."""
        return Housekeeping(settings=self.settings, journal=self.journal, clock=self.clock, store=store)


def build_loops(
    config: Config,
    forge: Forge,
    *,
    clock: SettableClock | None = None,
    config_path: Path | None = None,
    tasks: Iterable[Task] = (),
) -> LoopRig:
    """The loops' ports over ``forge`` (share ``clock`` with it); ``config_path`` lets the scorer tune the file."""
    clock = clock if clock is not None else SettableClock()
    graph = TaskGraph(tasks)
    journal = MemoryJournal(graph, clock)
    return LoopRig(clock, graph, journal, MemorySettings(config, config_path=config_path), forge)
