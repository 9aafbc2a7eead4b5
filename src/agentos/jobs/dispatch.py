"""The dispatcher: ready issues become tasks; queued tasks start up to the worker limits.

Idempotent: an issue has at most one live task; a new generation is made only when an issue whose
last task ended without a merge (escalated, cancelled) is made ready again: it is open, labelled ready
and not labelled blocked when read afresh. After an operator's cancel the ready label is taken off first
(:meth:`Lifecycle.clear_ready`), so only a label added again after the cancel counts.

A dependency (``Depends on #N``) holds a task back until #N's task merges. One that cannot merge through
agentos any more but is done (#N was closed by hand, or a later generation of it merged) is dropped on
the next pass, so the dependent task is never held forever.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection
from typing import Protocol

from agentos import logging as alog
from agentos.acceptance import AcceptanceState
from agentos.errors import AgentosError
from agentos.executor import Pool
from agentos.forge.base import BLOCKED_LABEL, Forge, Issue, NotFound
from agentos.graph import FINISHED, TERMINAL, Task, TaskStatus
from agentos.issue_text import ParsedIssue as ParsedIssue  # re-exported: the parser moved to issue_text
from agentos.issue_text import parse_issue as parse_issue
from agentos.jobs.epics import Epics
from agentos.jobs.normalise import Normaliser, Outcome
from agentos.lifecycle import Lifecycle, best_effort, ready_by_label, ready_label
from agentos.notices import acceptance_unreadable_comment
from agentos.ports import Clock, Journal, Settings, Workspaces
from agentos.redact import redact
from agentos.repo_guard import RepoGuard
from agentos.task_graph import TaskGraph

log = alog.get_logger("agentos.dispatch")


def issue_of(task_id: str) -> tuple[str, int] | None:
    """``("calc", 12)`` from a task id ``calc#12`` or ``calc#12.3``."""
    repo, sep, rest = task_id.rpartition("#")
    number = rest.split(".", 1)[0]
    return (repo, int(number)) if sep and repo and number.isdigit() else None


class Starter(Protocol):
    """What the dispatcher needs of the executor: start an attempt, see which run."""

    def start(self, task: Task) -> bool: ...

    def running(self) -> Collection[str]: ...


class Dispatcher:
    def __init__(
        self,
        *,
        settings: Settings,
        journal: Journal,
        clock: Clock,
        graph: TaskGraph,
        forge: Forge,
        workspaces: Workspaces,
        executor: Starter,
        lifecycle: Lifecycle,
        pool: Pool,
        paused: Callable[[], bool],
        stopping: Callable[[], bool],
        guard: RepoGuard | None = None,
        normaliser: Normaliser | None = None,
        epics: Epics | None = None,
    ) -> None:
        self.settings = settings
        self.journal = journal
        self.clock = clock
        self.graph = graph
        self.forge = forge
        self.workspaces = workspaces
        self.executor = executor
        self.lifecycle = lifecycle
        self.pool = pool
        self.paused = paused
        self.stopping = stopping
        self.guard = guard
        """Repos refused for a broken path (looked at before each pass); None: every path is trusted."""
        self.normaliser = normaliser
        """Terse issues get goal and criteria from ``loops.llm_agent`` first (``loops.normalise``); None: never."""
        self.epics = epics
        """Epics are split into sub-issues instead of worked on (``loops.split_epics``); None: never."""

    def __repr__(self) -> str:
        return f"<Dispatcher tasks={len(self.graph)} running={len(self.executor.running())}>"

    async def tick(self) -> None:
        """One dispatch pass: sync ready issues into the graph, release done dependencies, start what may start."""
        if self.stopping() or self.journal.held is not None:  # a full disk: nothing new until it is saved
            return
        if self.guard is not None:
            await self.guard.check()
        slow: list[Issue] = []
        for repo in self.settings.config.repos:
            if not self._may_work_on(repo.name):
                continue
            try:
                issues = await self.forge.ready_issues(repo.name)
            except AgentosError as exc:
                log.warning("ready_issues_failed", repo=repo.name, error=str(exc))
                continue
            for issue in issues:
                if self._asks_agent(issue):
                    slow.append(issue)
                else:
                    await self._admit(issue)
        if self.epics is not None:
            await self.epics.tick()
        await self.release_dependencies()
        self.start_ready()
        for issue in slow:  # each waits for the LLM agent's answer: what was ready already started
            if self.stopping():
                return
            await self._admit(issue)
        if slow:
            self.start_ready()

    def _asks_agent(self, issue: Issue) -> bool:
        """A new epic to split or a terse issue to normalise: admitted after the others (it waits for an answer)."""
        if self.graph.latest_for_issue(issue.repo, issue.number) is not None:
            return False
        if self.epics is not None and self.epics.is_epic(issue):
            return True
        return self.normaliser is not None and self.normaliser.wants(
            issue, parse_issue(issue.title, issue.body, issue.labels)
        )

    def _may_work_on(self, repo: str) -> bool:
        """The repo is enabled and not refused for a broken path."""
        return self.settings.repo_enabled(repo) and (self.guard is None or self.guard.problem(repo) is None)

    async def _admit(self, issue: Issue) -> Task | None:
        latest = self.graph.latest_for_issue(issue.repo, issue.number)
        if latest is not None:
            if latest.status not in TERMINAL or latest.status in FINISHED:
                return None
            if latest.awaiting_unready:
                # Cancelled by an operator, and its ready label may still be the one from before the cancel:
                # take it off first. Only a ready label added after that (a fresh one) starts a new generation.
                await self.lifecycle.clear_ready(latest)
                return None
            if not await self._ready_again(issue):
                return None
            if self.graph.latest_for_issue(issue.repo, issue.number) is not latest:
                return None  # another pass admitted it meanwhile
        generation = latest.generation + 1 if latest else 1
        parsed = parse_issue(issue.title, issue.body, issue.labels)
        normalising = self.normaliser is not None and self.normaliser.wants(issue, parsed)
        work, outcome = await self._shape(issue, parsed, latest, normalising)
        if not work:
            return None
        deps = []
        for number in parsed.depends_on:
            if number == issue.number:
                continue
            dep_task = self.graph.latest_for_issue(issue.repo, number)
            if dep_task is not None:
                if dep_task.status not in FINISHED:
                    deps.append(dep_task.id)
                continue
            try:
                dep_issue = await self.forge.get_issue(issue.repo, number)
            except NotFound:
                log.warning("dependency_not_found_yet", issue=issue.number, depends_on=number)
                dep_issue = None  # perhaps filed next: wait for it
            except AgentosError:
                dep_issue = None  # unknown now: wait; the next pass looks again
            if dep_issue is None or dep_issue.state == "open":
                deps.append(Task.make_id(issue.repo, number))  # waits until that issue's task merges
        if self.graph.latest_for_issue(issue.repo, issue.number) is not latest:
            return None
        if parsed.agent and parsed.agent not in self.settings.config.agents:
            log.warning("unknown_agent_in_issue", issue=issue.number, agent=parsed.agent)
            parsed.agent = None
        now = self.clock()
        task = Task(
            id=Task.make_id(issue.repo, issue.number, generation),
            repo=issue.repo,
            issue=issue.number,
            generation=generation,
            title=issue.title,
            goal=parsed.goal,
            success_criteria=parsed.success_criteria,
            constraints=parsed.constraints,
            type=parsed.type,
            priority=parsed.priority,
            agent=parsed.agent,
            depends_on=deps,
            acceptance=AcceptanceState(checks=parsed.acceptance.checks),
            normalised=outcome.normalised if outcome is not None else None,
            created_at=issue.created_at,
            updated_at=now,
        )
        events = [self.journal.event("task_created", task.id, issue=issue.number, generation=generation)]
        if normalising:  # the normaliser's text is saved with the task, in one write; a failure is one line
            filled = outcome.normalised.filled if outcome is not None else []
            events.append(self.journal.event("issue_normalised", task.id, ok=outcome is not None, filled=filled))
        self.journal.commit(events, [task])
        how = {"priority": task.priority, "type": task.type, "type_from": parsed.type_from, "depends_on": deps}
        log.info("task_created", task=task.id, **how)
        if problem := parsed.acceptance.problem:  # one comment per issue and problem; the task runs without checks
            log.warning("acceptance_unreadable", task=task.id, problem=problem)
            digest = hashlib.sha256(problem.encode()).hexdigest()[:12]
            key = f"acceptance-unreadable:{issue.repo}#{issue.number}:{digest}"
            text = redact(acceptance_unreadable_comment(problem))
            await best_effort(self.forge.comment(issue.repo, issue.number, text, key=key))
        return task

    async def _shape(
        self, issue: Issue, parsed: ParsedIssue, latest: Task | None, normalising: bool
    ) -> tuple[bool, Outcome | None]:
        """Epics and the normaliser, before a task is made: False when no task is to be made now (an epic is
        split instead, or another pass admitted the issue meanwhile); the normaliser's outcome, its type and
        agent already put into ``parsed`` where the issue left them out."""
        epics = self.epics
        if latest is None and epics is not None:  # an epic is split, never worked on itself
            if await epics.holds(issue):
                return False, None
            if epics.is_epic(issue):
                await epics.split(issue)
                return False, None
        if not normalising or self.normaliser is None:
            return True, None
        outcome = await self.normaliser.normalise(issue, parsed)
        if self.graph.latest_for_issue(issue.repo, issue.number) is not latest:
            return False, None  # another pass admitted it meanwhile
        too_big = outcome is not None and outcome.too_big
        if too_big and epics is not None and epics.enabled() and not await epics.known(issue.repo, issue.number):
            await epics.split(issue)
            return False, None
        if outcome is not None:
            parsed.type = outcome.type or parsed.type
            parsed.agent = outcome.agent or parsed.agent
        return True, outcome

    async def _ready_again(self, issue: Issue) -> bool:
        """Was an issue whose last task ended unmerged made ready again? Read afresh: the list may be stale."""
        try:
            fresh = await self.forge.get_issue(issue.repo, issue.number)
        except AgentosError as exc:
            log.warning("issue_read_failed", issue=issue.number, error=str(exc))
            return False
        config = self.settings.config
        labelled = ready_label(config) in fresh.labels or not ready_by_label(config, issue.repo)
        return fresh.state == "open" and labelled and BLOCKED_LABEL not in fresh.labels

    async def release_dependencies(self) -> int:
        """Drop dependencies of waiting tasks that are done without a merge of theirs; how many were dropped.

        A dependency is done when a task of its issue (any generation) merged or was answered (done), or when the
        issue is closed.
        An issue that does not exist (yet) or cannot be read now is waited for.
        """
        closed: dict[tuple[str, int], bool] = {}
        dropped = 0
        for task in list(self.graph):
            if task.status not in (TaskStatus.QUEUED, TaskStatus.RETRYING) or not task.depends_on:
                continue
            keep: list[str] = []
            gone: list[str] = []
            for dep in task.depends_on:
                other = self.graph.find(dep)
                ref = issue_of(dep)
                if (other is not None and other.status in FINISHED) or ref is None:
                    keep.append(dep)
                    continue
                if any(t.status in FINISHED for t in self.graph.for_issue(*ref)):
                    gone.append(dep)
                    continue
                if ref not in closed:
                    try:
                        closed[ref] = (await self.forge.get_issue(*ref)).state == "closed"
                    except AgentosError as exc:
                        log.warning("dependency_check_failed", task=task.id, depends_on=dep, error=str(exc))
                        closed[ref] = False
                (gone if closed[ref] else keep).append(dep)
            if gone:
                task.release(keep)
                self.journal.commit([self.journal.event("dependencies_released", task.id, released=gone)], [task])
                log.info("dependencies_released", task=task.id, released=gone)
                dropped += len(gone)
        return dropped

    def start_ready(self) -> int:
        """Start dispatchable tasks within the global, per-repo and per-issue limits."""
        if self.stopping() or self.paused() or self.journal.held is not None:
            return 0
        # Agents past a daily or monthly budget are paused (skipped below like a usage limit); a new month, or
        # a limit raised by a reload, lets them run again. An issue past its own ceiling: Executor.start.
        self.pool.enforce_budgets()
        cfg = self.settings.config
        started = 0
        per_repo: dict[str, int] = {}
        started_in: dict[str, int] = {}
        busy_issues: set[tuple[str, int]] = set()
        running = self.executor.running()
        for task_id in running:
            t = self.graph.find(task_id)
            if t is not None:
                per_repo[t.repo] = per_repo.get(t.repo, 0) + 1
                busy_issues.add((t.repo, t.issue))
        for task in self.graph.dispatchable(self.clock()):
            if len(running) >= cfg.max_parallel_workers:
                break
            if not self._may_work_on(task.repo) or (task.repo, task.issue) in busy_issues:
                continue
            repo = cfg.repo(task.repo)
            limit = repo.max_parallel or cfg.max_parallel_per_repo
            if per_repo.get(task.repo, 0) >= limit:
                continue
            budgeted = repo.max_worktrees is not None or repo.max_worktree_disk_mb is not None
            room = not budgeted or self.workspaces.workspace(repo).has_room(
                task.branch, starting=started_in.get(task.repo, 0)
            )
            if not room:
                continue  # the repo's worktree budget is spent: the watchdog cleans up and tells the operator
            if task.id in running:
                continue
            if self.executor.start(task):
                started += 1
                per_repo[task.repo] = per_repo.get(task.repo, 0) + 1
                started_in[task.repo] = started_in.get(task.repo, 0) + 1
                busy_issues.add((task.repo, task.issue))
        return started
