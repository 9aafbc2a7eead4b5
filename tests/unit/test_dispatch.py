"""The dispatcher: admission (idempotent, generations), dependencies, and the worker limits (the issue parser is
tested in test_issue_text.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agentos.config import Config
from agentos.forge.base import BLOCKED_LABEL, READY_LABEL, Issue
from agentos.graph import Event, Task, TaskStatus
from agentos.jobs.dispatch import Dispatcher, issue_of
from agentos.task_graph import TaskGraph
from agentos.testing import FakeForge, MemoryJournal, MemorySettings, MemoryWorkspaces, build, start_attempt, transition

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("task_id", "expected"),
    [("calc#12", ("calc", 12)), ("calc#12.3", ("calc", 12)), ("a#b#7", ("a#b", 7)), ("calc", None), ("#1", None)],
)
def test_issue_of(task_id: str, expected: tuple[str, int] | None) -> None:
    """A task id names its repo and issue, whatever its generation."""
    assert issue_of(task_id) == expected


# ---------------------------------------------------------------- the dispatcher with fakes


def issue(number: int, *, labels: tuple[str, ...] = (READY_LABEL,), body: str = "", state: str = "open") -> Issue:
    return Issue(
        repo="calc",
        number=number,
        title=f"issue {number}",
        body=body,
        state=state,  # type: ignore[arg-type]
        labels=list(labels),
        created_at=NOW + timedelta(minutes=number),
        updated_at=NOW,
    )


@dataclass
class World:
    """What the dispatcher works on, to look at after a pass (in-memory ports from agentos.testing)."""

    graph: TaskGraph
    journal: MemoryJournal
    forge: FakeForge
    settings: MemorySettings
    running: dict[str, object] = field(default_factory=dict)
    paused: bool = False

    @property
    def events(self) -> list[Event]:
        return self.journal.events


class FakeExecutor:
    """Starts a task the way the executor does (status RUNNING, a slot in ``running``)."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.started: list[str] = []
        self.refuse: set[str] = set()

    def running(self) -> dict[str, object]:
        return self.world.running

    def start(self, task: Task) -> bool:
        if task.id in self.refuse:
            return False
        start_attempt(task, "claude", NOW)
        self.world.running[task.id] = object()
        self.started.append(task.id)
        return True


class AnyAgent:
    """A pool with every agent free (the dispatcher only asks it to enforce budgets)."""

    def choose(self, task: Task) -> str | None:
        return "claude"

    def pause_for_quota(self, agent: str, until: datetime, detail: str) -> None:
        pass

    def enforce_budgets(self) -> None:
        pass


def make_config(**overrides: Any) -> Config:
    repos = overrides.pop("repos", [{"name": "calc", "path": "/srv/calc", "test_command": "true"}])
    return Config.model_validate(
        {"repos": repos, "agents": {"claude": {"kind": "claude"}, "codex": {"kind": "codex"}}, **overrides}
    )


class StaleListing(FakeForge):
    """Lists the ready issues as they were (``listed``); reading one issue gives its state now."""

    def __init__(self, *listed: Issue) -> None:
        super().__init__()
        self.listed = listed

    async def ready_issues(self, repo: str) -> list[Issue]:
        return [i for i in self.listed if i.repo == repo]


def make(*issues: Issue, forge: FakeForge | None = None, **config: Any) -> tuple[Dispatcher, World, FakeExecutor]:
    rig = build(make_config(**config), now=NOW, forge=forge)
    for one in issues:
        rig.forge.issues[one.repo, one.number] = one
    world = World(rig.graph, rig.journal, rig.forge, rig.settings)
    executor = FakeExecutor(world)
    dispatcher = Dispatcher(
        settings=rig.settings,
        journal=rig.journal,
        clock=rig.clock,
        graph=rig.graph,
        forge=rig.forge,
        workspaces=MemoryWorkspaces(rig.config.state_path, rig.config.state_path / "remote"),
        executor=executor,
        lifecycle=rig.lifecycle,
        pool=AnyAgent(),
        paused=lambda: world.paused,
        stopping=lambda: False,
    )
    return dispatcher, world, executor


def task(repo: str, number: int, *, priority: str = "normal", age: int = 0, status: TaskStatus | None = None) -> Task:
    t = Task(
        id=Task.make_id(repo, number),
        repo=repo,
        issue=number,
        title=f"t{number}",
        priority=priority,  # type: ignore[arg-type]
        created_at=NOW - timedelta(minutes=age),
        updated_at=NOW,
    )
    if status is not None:
        t.status = status
    return t


class TestAdmit:
    async def test_a_second_pass_creates_no_second_task(self) -> None:
        """Idempotent: each ready issue gets one task, however often the dispatcher runs."""
        dispatcher, rt, _ = make(issue(1, body="## Goal\nDo it\nAgent: codex\n"), issue(2), max_parallel_workers=1)
        await dispatcher.tick()
        await dispatcher.tick()
        assert sorted(t.id for t in rt.graph) == ["calc#1", "calc#2"]
        assert rt.graph.get("calc#1").agent == "codex"
        assert [e.type for e in rt.events].count("task_created") == 2

    async def test_an_unknown_agent_in_the_issue_is_ignored(self) -> None:
        """`Agent:` naming no configured agent leaves the choice to routing."""
        dispatcher, rt, _ = make(issue(1, body="Agent: gpt-9\n"))
        await dispatcher.tick()
        assert rt.graph.get("calc#1").agent is None

    @pytest.mark.parametrize(
        ("labels", "respawn"),
        [
            pytest.param((READY_LABEL,), True, id="ready-again"),
            pytest.param((READY_LABEL, BLOCKED_LABEL), False, id="still-blocked"),
            pytest.param((), False, id="not-ready-now"),
        ],
    )
    async def test_new_generation_only_when_made_ready_again(self, labels: tuple[str, ...], respawn: bool) -> None:
        """An escalated issue gets a new generation only if, read afresh, it is ready and not blocked."""
        dispatcher, rt, _ = make(forge=StaleListing(issue(1)))  # listed as ready when the pass began
        old = task("calc", 1, status=TaskStatus.BLOCKED)
        rt.graph.put(old)
        rt.forge.issues["calc", 1] = issue(1, labels=labels)  # the fresh state; the listing is stale
        await dispatcher.tick()
        assert sorted(t.id for t in rt.graph) == (["calc#1", "calc#1.2"] if respawn else ["calc#1"])

    async def test_a_merged_or_live_task_is_never_respawned(self) -> None:
        """An issue whose task merged (or still runs) gets no new generation even if it stays ready."""
        dispatcher, rt, _ = make(issue(1), issue(2))
        rt.graph.put(task("calc", 1, status=TaskStatus.MERGED))
        rt.graph.put(task("calc", 2, status=TaskStatus.PR_OPEN))
        await dispatcher.tick()
        assert len(rt.graph) == 2

    async def test_dependency_on_a_closed_issue_without_a_task_is_no_dependency(self) -> None:
        """`Depends on #N` where #N is already closed (done by hand) does not hold the task."""
        dispatcher, rt, executor = make(issue(2, body="Depends on #1"), issue(1, labels=(), state="closed"))
        await dispatcher.tick()
        assert rt.graph.get("calc#2").depends_on == []
        assert executor.started == ["calc#2"]

    async def test_a_cancelled_task_restarts_only_on_a_fresh_ready_label(self) -> None:
        """After an operator's cancel the old ready label is removed, not obeyed; one added afterwards is."""
        dispatcher, rt, _ = make(issue(1))
        cancelled = task("calc", 1, status=TaskStatus.CANCELLED)
        cancelled.awaiting_unready = True
        rt.graph.put(cancelled)
        await dispatcher.tick()
        await dispatcher.tick()
        assert [t.id for t in rt.graph] == ["calc#1"]
        assert READY_LABEL not in rt.forge.labels("calc", 1) and not cancelled.awaiting_unready
        await rt.forge.add_labels("calc", 1, [READY_LABEL])
        await dispatcher.tick()
        assert [t.id for t in rt.graph] == ["calc#1", "calc#1.2"]

    async def test_dependency_on_an_open_issue_waits_for_its_merge(self) -> None:
        """A dependency on an open issue (with or without a task yet) holds the task until that task merges."""
        dispatcher, rt, executor = make(issue(2, body="Depends on #1"), issue(1, labels=()))
        await dispatcher.tick()
        assert rt.graph.get("calc#2").depends_on == ["calc#1"]
        assert executor.started == []
        dep = task("calc", 1, status=TaskStatus.MERGED)
        rt.graph.put(dep)
        await dispatcher.tick()
        assert executor.started == ["calc#2"]

    async def test_a_dependency_closed_later_without_a_task_is_released(self) -> None:
        """The dependency's issue is closed by hand after the task was made: the task no longer waits."""
        dispatcher, rt, executor = make(issue(2, body="Depends on #1"), issue(1, labels=()))
        await dispatcher.tick()
        assert executor.started == []
        rt.forge.issues["calc", 1] = issue(1, labels=(), state="closed")
        await dispatcher.tick()
        assert rt.graph.get("calc#2").depends_on == []
        assert executor.started == ["calc#2"]
        assert [e.data for e in rt.events if e.type == "dependencies_released"] == [{"released": ["calc#1"]}]

    async def test_a_dependency_merged_in_a_later_generation_is_released(self) -> None:
        """Waiting on generation 1 of an issue whose generation 2 merged: released."""
        dispatcher, rt, executor = make(issue(2, body="Depends on #1"))
        rt.graph.put(task("calc", 1, status=TaskStatus.BLOCKED))
        await dispatcher.tick()
        assert rt.graph.get("calc#2").depends_on == ["calc#1"]
        gen2 = task("calc", 1, status=TaskStatus.MERGED).model_copy(update={"id": "calc#1.2", "generation": 2})
        rt.graph.put(gen2)
        await dispatcher.tick()
        assert executor.started == ["calc#2"]

    async def test_a_dependency_not_filed_yet_is_waited_for(self) -> None:
        """`Depends on #9` before #9 exists: the task waits (it may be filed next), it is not dropped."""
        dispatcher, rt, executor = make(issue(2, body="Depends on #9"))
        await dispatcher.tick()
        await dispatcher.tick()
        assert rt.graph.get("calc#2").depends_on == ["calc#9"]
        assert executor.started == []


class TestStartReady:
    def test_global_limit(self) -> None:
        """No more than max_parallel_workers attempts run at once, across repos."""
        repos = [{"name": n, "path": f"/srv/{n}", "test_command": "true"} for n in ("a", "b")]
        dispatcher, rt, _ = make(max_parallel_workers=3, max_parallel_per_repo=5, repos=repos)
        for i in range(1, 4):
            rt.graph.put(task("a", i, age=i))
            rt.graph.put(task("b", i, age=i))
        assert dispatcher.start_ready() == 3
        assert len(rt.running) == 3
        assert dispatcher.start_ready() == 0

    def test_per_repo_limit_counts_what_already_runs(self) -> None:
        """max_parallel_per_repo (or the repo's own max_parallel) counts attempts started earlier too."""
        repos = [
            {"name": "a", "path": "/srv/a", "test_command": "true"},
            {"name": "b", "path": "/srv/b", "test_command": "true", "max_parallel": 1},
        ]
        dispatcher, rt, executor = make(max_parallel_workers=10, max_parallel_per_repo=2, repos=repos)
        for i in range(1, 4):
            rt.graph.put(task("a", i, age=i))
            rt.graph.put(task("b", i, age=i))
        rt.running["a#1"] = object()
        rt.graph.get("a#1").status = TaskStatus.RUNNING
        dispatcher.start_ready()
        assert executor.started == ["a#3", "b#3"]  # the oldest of each repo, up to its limit
        assert dispatcher.start_ready() == 0

    def test_priority_then_age(self) -> None:
        """High priority first, then the oldest."""
        dispatcher, rt, executor = make(max_parallel_workers=10, max_parallel_per_repo=10)
        rt.graph.put(task("calc", 1, priority="low", age=30))
        rt.graph.put(task("calc", 2, age=10))
        rt.graph.put(task("calc", 3, age=20))
        rt.graph.put(task("calc", 4, priority="high", age=0))
        dispatcher.start_ready()
        assert executor.started == ["calc#4", "calc#3", "calc#2", "calc#1"]

    def test_one_running_task_per_issue(self) -> None:
        """A second generation of an issue does not start while a task of that issue runs."""
        dispatcher, rt, _ = make(max_parallel_workers=10, max_parallel_per_repo=10)
        first = task("calc", 1, status=TaskStatus.RUNNING)
        rt.graph.put(first)
        rt.running[first.id] = object()
        rt.graph.put(task("calc", 1).model_copy(update={"id": "calc#1.2", "generation": 2}))
        assert dispatcher.start_ready() == 0

    def test_paused_disabled_and_waiting(self) -> None:
        """Nothing starts when paused; a disabled repo, a backoff not yet over, and refusal are skipped."""
        dispatcher, rt, executor = make(max_parallel_workers=10, max_parallel_per_repo=10)
        rt.graph.put(task("calc", 1))
        rt.paused = True
        assert dispatcher.start_ready() == 0
        rt.paused = False
        rt.settings.disabled = {"calc"}
        assert dispatcher.start_ready() == 0
        rt.settings.disabled = set()
        waiting = task("calc", 2)
        waiting.not_before = NOW + timedelta(seconds=5)
        rt.graph.put(waiting)
        executor.refuse = {"calc#1"}  # no agent available for it now
        assert dispatcher.start_ready() == 0
        executor.refuse = set()
        assert dispatcher.start_ready() == 1
        assert executor.started == ["calc#1"]

    def test_a_retrying_task_is_started_again(self) -> None:
        """A task waiting to retry is dispatchable once its backoff is over."""
        dispatcher, rt, _ = make()
        t = task("calc", 1)
        start_attempt(t, "claude", NOW)
        transition(t, TaskStatus.RETRYING, NOW)
        rt.graph.put(t)
        assert dispatcher.start_ready() == 1
