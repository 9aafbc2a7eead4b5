"""In-memory ports for tests and benchmarks: a journal, a settable clock, a recording notifier, a fake forge.

::

    rig = build(config)                      # lifecycle, executor, dispatcher, monitor over in-memory ports
    rig.forge.add_issue("calc", 12, "Fix it", labels=["agentos:ready"])
    await rig.lifecycle.attempt_failed(task, Verdict("failed", "timeout"))
    assert rig.forge.labels("calc", 12) == ["agentos:blocked"]
    assert rig.notes.sent[0].key == "escalation:calc#12:1"

Everything here is typed against the real ports (:mod:`agentos.ports`, :class:`agentos.forge.base.Forge`), so a
test that builds a part with them needs no ``type: ignore``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, NamedTuple

from agentos.config import Config, RepoConfig
from agentos.executor import Executor
from agentos.forge.base import (
    BLOCKED_LABEL,
    READY_LABEL,
    RUNNING_LABEL,
    BoardStatus,
    Checks,
    Comment,
    Issue,
    MergeResult,
    NotFound,
    PullRequest,
    marker,
)
from agentos.graph import Event, Task, TaskGraph
from agentos.jobs._pr_gate import ReviewGate
from agentos.jobs._pr_git import Branches, WorkspaceBranches
from agentos.jobs.dispatch import Dispatcher
from agentos.jobs.pr_monitor import PRMonitor
from agentos.lifecycle import Lifecycle
from agentos.ports import Action, Severity
from agentos.running import RunningAttempts
from agentos.state_pool import StatePool
from agentos.store import DaemonState
from agentos.workspace import Workspace

__all__ = [
    "FakeForge",
    "MemoryJournal",
    "MemorySettings",
    "MemoryWorkspaces",
    "Note",
    "RecordingNotifier",
    "Rig",
    "SettableClock",
    "Wakes",
    "build",
]

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class SettableClock:
    """``clock()`` is ``now``; :meth:`advance` moves it."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class MemoryJournal:
    """The ``Journal`` port over a :class:`TaskGraph`: changed tasks are put in the graph, events kept in order."""

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
    """The ``Settings`` port over a fixed config (``disabled`` repos switched off)."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self.disabled: set[str] = set()

    @property
    def config(self) -> Config:
        return self._config

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


@dataclass
class _Pull:
    pr: PullRequest
    comments: list[Comment] = field(default_factory=list)
    checks: Checks | None = None


class FakeForge:
    """A forge in memory: issues with labels and comments, PRs with checks. ``changes`` logs every write."""

    kind = "fake"

    def __init__(self, clock: SettableClock | None = None) -> None:
        self.clock = clock or SettableClock()
        self.issues: dict[tuple[str, int], Issue] = {}
        self.issue_comments: dict[tuple[str, int], list[Comment]] = {}
        self.pulls: dict[tuple[str, int], _Pull] = {}
        self.board: dict[tuple[str, int], BoardStatus] = {}
        self.changes: list[tuple[str, ...]] = []
        self.fail: set[str] = set()
        """Names of operations that raise :class:`NotFound` (a forge outage in miniature)."""
        self._ids = itertools.count(1)

    def __repr__(self) -> str:
        return f"<FakeForge issues={len(self.issues)} pulls={len(self.pulls)} changes={len(self.changes)}>"

    def _check(self, op: str) -> None:
        if op in self.fail:
            raise NotFound(f"{op} failed (FakeForge.fail)")

    # ------------------------------------------------------------ set-up and reading back

    def add_issue(
        self, repo: str, number: int, title: str = "", *, labels: Sequence[str] = (), body: str = ""
    ) -> Issue:
        now = self.clock()
        issue = Issue(
            repo=repo,
            number=number,
            title=title or f"Issue {number}",
            body=body,
            labels=list(labels),
            created_at=now,
            updated_at=now,
            url=f"https://forge.example/{repo}/issues/{number}",
        )
        self.issues[repo, number] = issue
        return issue

    def add_pr(self, repo: str, number: int, head: str, *, sha: str = "", checks: str = "pending") -> PullRequest:
        pr = PullRequest(
            repo=repo,
            number=number,
            title=f"PR {number}",
            head=head,
            base="main",
            head_sha=sha or f"sha{number}",
            created_at=self.clock(),
        )
        state: Literal["pending", "success", "failure"] = (
            "success" if checks == "success" else "failure" if checks == "failure" else "pending"
        )
        self.pulls[repo, number] = _Pull(pr, checks=Checks(sha=pr.head_sha, state=state))
        return pr

    def labels(self, repo: str, number: int) -> list[str]:
        if (repo, number) in self.pulls:
            return list(self.pulls[repo, number].pr.labels)
        return list(self.issues[repo, number].labels)

    def comment_bodies(self, repo: str, number: int) -> list[str]:
        if (repo, number) in self.pulls:
            return [c.body for c in self.pulls[repo, number].comments]
        return [c.body for c in self.issue_comments.get((repo, number), [])]

    # ------------------------------------------------------------ the Forge protocol

    async def ready_issues(self, repo: str) -> list[Issue]:
        self._check("ready_issues")
        ready = [i for (r, _), i in self.issues.items() if r == repo and i.state == "open" and READY_LABEL in i.labels]
        return sorted(ready, key=lambda i: (i.created_at, i.number))

    async def get_issue(self, repo: str, number: int) -> Issue:
        self._check("get_issue")
        try:
            return self.issues[repo, number]
        except KeyError:
            raise NotFound(f"no issue {repo}#{number}") from None

    async def list_issues(self, repo: str, *, state: Literal["open", "closed", "all"] = "open") -> list[Issue]:
        return [i for (r, _), i in self.issues.items() if r == repo and state in ("all", i.state)]

    async def create_issue(self, repo: str, title: str, body: str, labels: list[str], *, key: str) -> Issue:
        for issue in self.issues.values():
            if issue.repo == repo and marker(key) in issue.body and issue.state == "open":
                return issue
        number = max([n for (r, n) in self.issues if r == repo] + [n for (r, n) in self.pulls if r == repo] + [0]) + 1
        self.changes.append(("create_issue", repo, str(number)))
        return self.add_issue(repo, number, title, labels=labels, body=f"{body}\n\n{marker(key)}")

    async def comment(self, repo: str, number: int, body: str, *, key: str) -> Comment:
        self._check("comment")
        tag = marker(key)
        thread = (
            self.pulls[repo, number].comments
            if (repo, number) in self.pulls
            else self.issue_comments.setdefault((repo, number), [])
        )
        found = next((c for c in thread if tag in c.body), None)
        if found is not None:
            return found
        new = Comment(id=next(self._ids), author="agentos", body=f"{body}\n\n{tag}", created_at=self.clock())
        thread.append(new)
        self.changes.append(("comment", repo, str(number), key))
        return new

    async def comments(self, repo: str, number: int) -> list[Comment]:
        if (repo, number) in self.pulls:
            return list(self.pulls[repo, number].comments)
        return list(self.issue_comments.get((repo, number), []))

    def _relabel(self, repo: str, number: int, add: Sequence[str], remove: Sequence[str]) -> None:
        if (repo, number) in self.pulls:
            pull = self.pulls[repo, number]
            kept = [label for label in pull.pr.labels if label not in remove]
            pull.pr = pull.pr.model_copy(update={"labels": kept + [a for a in add if a not in kept]})
            return
        issue = self.issues.get((repo, number))
        if issue is None:
            raise NotFound(f"no issue {repo}#{number}")
        kept = [label for label in issue.labels if label not in remove]
        self.issues[repo, number] = issue.model_copy(update={"labels": kept + [a for a in add if a not in kept]})

    async def add_labels(self, repo: str, number: int, labels: list[str]) -> None:
        self._check("add_labels")
        self._relabel(repo, number, labels, ())
        self.changes.append(("add_labels", repo, str(number), *labels))

    async def remove_label(self, repo: str, number: int, label: str) -> None:
        self._check("remove_label")
        self._relabel(repo, number, (), (label,))
        self.changes.append(("remove_label", repo, str(number), label))

    async def close_issue(self, repo: str, number: int) -> None:
        self._check("close_issue")
        self.issues[repo, number] = self.issues[repo, number].model_copy(update={"state": "closed"})
        self.changes.append(("close_issue", repo, str(number)))

    async def set_board_status(self, repo: str, issue: int, status: BoardStatus) -> None:
        """No board: the labels that mirror it change, as on the local forge."""
        add, remove = {
            "Ready": ([READY_LABEL], []),
            "In Progress": ([RUNNING_LABEL], []),
            "Blocked": ([BLOCKED_LABEL], [RUNNING_LABEL]),
            "In Review": ([], [RUNNING_LABEL]),
            "Done": ([], [RUNNING_LABEL]),
        }[status]
        self.board[repo, issue] = status
        if (repo, issue) in self.issues:
            self._relabel(repo, issue, add, remove)

    async def find_pr(self, repo: str, head: str) -> PullRequest | None:
        return next((p.pr for (r, _), p in self.pulls.items() if r == repo and p.pr.head == head), None)

    async def open_pr(self, repo: str, *, head: str, base: str, title: str, body: str) -> PullRequest:
        found = await self.find_pr(repo, head)
        if found is not None and found.state == "open":
            return found
        number = max([n for (r, n) in self.pulls if r == repo] + [n for (r, n) in self.issues if r == repo] + [0]) + 1
        pr = self.add_pr(repo, number, head)
        pr = pr.model_copy(update={"title": title, "body": body, "base": base})
        self.pulls[repo, number].pr = pr
        self.changes.append(("open_pr", repo, str(number)))
        return pr

    async def get_pr(self, repo: str, number: int) -> PullRequest:
        try:
            return self.pulls[repo, number].pr
        except KeyError:
            raise NotFound(f"no PR {repo}#{number}") from None

    async def open_prs(self, repo: str) -> list[PullRequest]:
        return [p.pr for (r, _), p in self.pulls.items() if r == repo and p.pr.state == "open"]

    async def checks(self, repo: str, number: int) -> Checks:
        pull = self.pulls[repo, number]
        return pull.checks or Checks(sha=pull.pr.head_sha, state="pending")

    async def merge_pr(self, repo: str, number: int, *, sha: str, title: str, body: str) -> MergeResult:
        pull = self.pulls[repo, number]
        if pull.pr.state == "merged":
            return MergeResult(merged=True, sha=f"merge-{number}")
        if pull.pr.head_sha != sha:
            return MergeResult(merged=False, message="head moved")
        pull.pr = pull.pr.model_copy(update={"state": "merged"})
        self.changes.append(("merge", repo, str(number)))
        return MergeResult(merged=True, sha=f"merge-{number}")

    async def close_pr(self, repo: str, number: int, *, comment: str = "") -> None:
        self._check("close_pr")
        if comment:
            await self.comment(repo, number, comment, key=f"close-pr-{number}")
        pull = self.pulls[repo, number]
        if pull.pr.state == "open":
            pull.pr = pull.pr.model_copy(update={"state": "closed"})
            self.changes.append(("close_pr", repo, str(number)))

    async def aclose(self) -> None:
        return None


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
    pool: StatePool
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
    pool = StatePool(
        settings=settings, clock=clock, state=state, journal=journal, notify=notes, enforce_budgets=lambda: None
    )
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
