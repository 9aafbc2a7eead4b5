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

import re
from dataclasses import dataclass, field

from agentos import logging as alog
from agentos.agents.prompt import strip_hidden
from agentos.budget import enforce_agent_budgets
from agentos.errors import AgentosError
from agentos.executor import Executor
from agentos.forge.base import BLOCKED_LABEL, Issue, NotFound
from agentos.graph import PRIORITY_RANK, TASK_TYPES, TERMINAL, Task, TaskStatus
from agentos.runtime import Runtime

log = alog.get_logger("agentos.dispatch")

# Unambiguous on purpose: "[A-Za-z ]+?[ \t]*:?[ \t]*$" split a run of spaces three ways and took minutes (the
# daemon's loop with it) on a heading line padded with a few thousand spaces.
SECTION = re.compile(r"^#{2,3}[ \t]*(?P<name>[A-Za-z]+(?: +[A-Za-z]+)*)[ \t]*(?::[ \t]*)?$", re.MULTILINE)
DEPENDS = re.compile(r"\bdepends\s+on\s*:?\s*((?:#\d+[\s,and]*)+)", re.IGNORECASE)
LINE_FIELD = re.compile(r"^[ \t]*(agent|type|priority)[ \t]*:[ \t]*(\S+)[ \t]*$", re.IGNORECASE | re.MULTILINE)
ALIASES = {
    "acceptance criteria": "success criteria",
    "done when": "success criteria",
    "success criterion": "success criteria",
    "constraint": "constraints",
}


@dataclass
class ParsedIssue:
    goal: str
    success_criteria: list[str] = field(default_factory=list)
    constraints: list[str] = field(default_factory=list)
    agent: str | None = None
    type: str = "implementation"
    priority: str = "normal"
    depends_on: list[int] = field(default_factory=list)


def _items(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        item = re.sub(r"^\s*(?:[-*+]|\d+[.)])\s+(?:\[[ xX]\]\s*)?", "", line).strip()
        if item:
            out.append(item)
    return out


def parse_issue(title: str, body: str, labels: list[str]) -> ParsedIssue:
    """Read goal, criteria, constraints and the optional lines from an issue; a one-liner still works.

    Only what a reader of the issue sees counts: HTML comments and invisible characters are dropped first.
    """
    title, body = strip_hidden(title), strip_hidden(body)
    sections: dict[str, str] = {}
    matches = list(SECTION.finditer(body))
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(body)
        name = m.group("name").strip().lower()
        sections.setdefault(ALIASES.get(name, name), body[m.end() : end].strip())
    preamble = body[: matches[0].start()] if matches else body
    fields = {m.group(1).lower(): m.group(2).strip().lower() for m in LINE_FIELD.finditer(body)}
    goal = sections.get("goal") or LINE_FIELD.sub("", preamble).strip() or title
    parsed = ParsedIssue(
        goal=goal,
        success_criteria=_items(sections.get("success criteria", "")),
        constraints=_items(sections.get("constraints", "")),
        agent=fields.get("agent"),
    )
    if fields.get("type") in TASK_TYPES:
        parsed.type = fields["type"]
    priority = fields.get("priority")
    for label in labels:
        if label.lower().startswith("prio:"):
            priority = label.split(":", 1)[1].lower()
    if priority in PRIORITY_RANK:
        parsed.priority = priority
    for m in DEPENDS.finditer(body):
        for n in re.findall(r"#(\d+)", m.group(1)):
            if int(n) not in parsed.depends_on:
                parsed.depends_on.append(int(n))
    return parsed


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
            if latest.awaiting_unready:
                # Cancelled by an operator, and its ready label may still be the one from before the cancel:
                # take it off first. Only a ready label added after that (a fresh one) starts a new generation.
                await self.executor.lifecycle.clear_ready(latest)
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
                task.release(keep)
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
        enforce_agent_budgets(rt)
        cfg = rt.config
        started = 0
        per_repo: dict[str, int] = {}
        started_in: dict[str, int] = {}
        busy_issues: set[tuple[str, int]] = set()
        running = self.executor.running()
        for task_id in running:
            t = rt.graph.find(task_id)
            if t is not None:
                per_repo[t.repo] = per_repo.get(t.repo, 0) + 1
                busy_issues.add((t.repo, t.issue))
        for task in rt.graph.dispatchable(rt.now()):
            if len(running) >= cfg.max_parallel_workers:
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
            if task.id in running:
                continue
            if self.executor.start(task):
                started += 1
                per_repo[task.repo] = per_repo.get(task.repo, 0) + 1
                started_in[task.repo] = started_in.get(task.repo, 0) + 1
                busy_issues.add((task.repo, task.issue))
        return started
