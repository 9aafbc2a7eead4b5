"""The dispatcher: ready issues become tasks; queued tasks start up to the worker limits.

Idempotent: an issue has at most one live task; a new generation is made only when an issue whose
last task ended without a merge (escalated, cancelled) is made ready again: it is open, labelled ready
and not labelled blocked when read afresh.

A dependency (``Depends on #N``) holds a task back until #N's task merges. One that cannot merge through
agentos any more but is done (#N was closed by hand, or a later generation of it merged) is dropped on
the next pass, so the dependent task is never held forever.
"""

from __future__ import annotations

from agentos import logging as alog
from agentos.agents.pool import AgentPool
from agentos.errors import AgentosError
from agentos.executor import Executor
from agentos.forge.base import BLOCKED_LABEL, Issue, NotFound
from agentos.graph import TERMINAL, Task, TaskStatus
from agentos.issue_text import ParsedIssue as ParsedIssue  # re-exported: the parser moved to issue_text
from agentos.issue_text import parse_issue as parse_issue
from agentos.runtime import Runtime

log = alog.get_logger("agentos.dispatch")

def issue_of(task_id: str) -> tuple[str, int] | None:
    """``("calc", 12)`` from a task id ``calc#12`` or ``calc#12.3``."""
    repo, sep, rest = task_id.rpartition("#")
    number = rest.split(".", 1)[0]
    return (repo, int(number)) if sep and repo and number.isdigit() else None


class Dispatcher:
    def __init__(self, rt: Runtime, executor: Executor) -> None:
        self.rt = rt
        self.executor = executor

    async def tick(self) -> None:
        """One dispatch pass: sync ready issues into the graph, release done dependencies, start what may start."""
        if self.rt.stopping or self.rt.write_failure is not None:  # a full disk: nothing new until it is saved
            return
        for repo in self.rt.config.repos:
            if not self.rt.repo_enabled(repo.name):
                continue
            try:
                issues = await self.rt.forge.ready_issues(repo.name)
            except AgentosError as exc:
                log.warning("ready_issues_failed", repo=repo.name, error=str(exc))
                continue
            for issue in issues:
                await self._admit(issue)
        await self.release_dependencies()
        self.start_ready()

    async def _admit(self, issue: Issue) -> Task | None:
        rt = self.rt
        latest = rt.graph.latest_for_issue(issue.repo, issue.number)
        if latest is not None:
            if latest.status not in TERMINAL or latest.status is TaskStatus.MERGED:
                return None
            if not await self._ready_again(issue):
                return None
            if rt.graph.latest_for_issue(issue.repo, issue.number) is not latest:
                return None  # another pass admitted it meanwhile
        generation = latest.generation + 1 if latest else 1
        parsed = parse_issue(issue.title, issue.body, issue.labels)
        deps = []
        for number in parsed.depends_on:
            if number == issue.number:
                continue
            dep_task = rt.graph.latest_for_issue(issue.repo, number)
            if dep_task is not None:
                if dep_task.status is not TaskStatus.MERGED:
                    deps.append(dep_task.id)
                continue
            try:
                dep_issue = await rt.forge.get_issue(issue.repo, number)
            except NotFound:
                log.warning("dependency_not_found_yet", issue=issue.number, depends_on=number)
                dep_issue = None  # perhaps filed next: wait for it
            except AgentosError:
                dep_issue = None  # unknown now: wait; the next pass looks again
            if dep_issue is None or dep_issue.state == "open":
                deps.append(Task.make_id(issue.repo, number))  # waits until that issue's task merges
        if rt.graph.latest_for_issue(issue.repo, issue.number) is not latest:
            return None
        if parsed.agent and parsed.agent not in rt.config.agents:
            log.warning("unknown_agent_in_issue", issue=issue.number, agent=parsed.agent)
            parsed.agent = None
        now = rt.now()
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
            created_at=issue.created_at,
            updated_at=now,
        )
        rt.commit([rt.event("task_created", task.id, issue=issue.number, generation=generation)], [task])
        log.info("task_created", task=task.id, priority=task.priority, depends_on=deps)
        return task

    async def _ready_again(self, issue: Issue) -> bool:
        """Was an issue whose last task ended unmerged made ready again? Read afresh: the list may be stale."""
        try:
            fresh = await self.rt.forge.get_issue(issue.repo, issue.number)
        except AgentosError as exc:
            log.warning("issue_read_failed", issue=issue.number, error=str(exc))
            return False
        labelled = self.rt.ready_label in fresh.labels or not self.rt.ready_by_label(issue.repo)
        return fresh.state == "open" and labelled and BLOCKED_LABEL not in fresh.labels

    async def release_dependencies(self) -> int:
        """Drop dependencies of waiting tasks that are done without a merge of theirs; how many were dropped.

        A dependency is done when a task of its issue (any generation) merged, or when the issue is closed.
        An issue that does not exist (yet) or cannot be read now is waited for.
        """
        rt = self.rt
        closed: dict[tuple[str, int], bool] = {}
        dropped = 0
        for task in list(rt.graph):
            if task.status not in (TaskStatus.QUEUED, TaskStatus.RETRYING) or not task.depends_on:
                continue
            keep: list[str] = []
            gone: list[str] = []
            for dep in task.depends_on:
                other = rt.graph.find(dep)
                ref = issue_of(dep)
                if (other is not None and other.status is TaskStatus.MERGED) or ref is None:
                    keep.append(dep)
                    continue
                if any(t.status is TaskStatus.MERGED for t in rt.graph.for_issue(*ref)):
                    gone.append(dep)
                    continue
                if ref not in closed:
                    try:
                        closed[ref] = (await rt.forge.get_issue(*ref)).state == "closed"
                    except AgentosError as exc:
                        log.warning("dependency_check_failed", task=task.id, depends_on=dep, error=str(exc))
                        closed[ref] = False
                (gone if closed[ref] else keep).append(dep)
            if gone:
                task.depends_on = keep
                rt.commit([rt.event("dependencies_released", task.id, released=gone)], [task])
                log.info("dependencies_released", task=task.id, released=gone)
                dropped += len(gone)
        return dropped

    def start_ready(self) -> int:
        """Start dispatchable tasks within the global, per-repo and per-issue limits."""
        rt = self.rt
        if rt.stopping or rt.state.paused or rt.write_failure is not None:
            return 0
        # Agents past a daily or monthly budget are paused (skipped below like a usage limit); a new month, or
        # a limit raised by a reload, lets them run again. An issue past its own ceiling: Executor.start.
        AgentPool.from_runtime(rt).enforce_budgets()
        cfg = rt.config
        started = 0
        per_repo: dict[str, int] = {}
        started_in: dict[str, int] = {}
        busy_issues: set[tuple[str, int]] = set()
        for task_id in rt.running:
            t = rt.graph.find(task_id)
            if t is not None:
                per_repo[t.repo] = per_repo.get(t.repo, 0) + 1
                busy_issues.add((t.repo, t.issue))
        for task in rt.graph.dispatchable(rt.now()):
            if len(rt.running) >= cfg.max_parallel_workers:
                break
            if not rt.repo_enabled(task.repo) or (task.repo, task.issue) in busy_issues:
                continue
            repo = cfg.repo(task.repo)
            limit = repo.max_parallel or cfg.max_parallel_per_repo
            if per_repo.get(task.repo, 0) >= limit:
                continue
            budgeted = repo.max_worktrees is not None or repo.max_worktree_disk_mb is not None
            if budgeted and not rt.workspace(repo).has_room(task.branch, starting=started_in.get(task.repo, 0)):
                continue  # the repo's worktree budget is spent: the watchdog cleans up and tells the operator
            if task.id in rt.running:
                continue
            if self.executor.start(task):
                started += 1
                per_repo[task.repo] = per_repo.get(task.repo, 0) + 1
                started_in[task.repo] = started_in.get(task.repo, 0) + 1
                busy_issues.add((task.repo, task.issue))
        return started
