"""The sprint planner: every ``sprint_cadence_days`` it makes the next ``plan_size`` issues ready.

**Off by default** (``sprint_enabled: false``): making an issue ready makes an agent run it, and that must
never happen to a backlog whose owner did not ask for it. When enabled it runs hourly and plans each repo
in ``automation_mode: full`` once per cadence, gated by the repo's last ``sprint_planned`` event:

1. candidates: open issues that are not ready, running, blocked, stale, duplicates, on hold or filed
   by the loops themselves;
2. order: priority (``prio:high|normal|low`` labels or a ``priority:`` line, as the dispatcher reads
   them), then age; an issue is picked only when each issue it ``Depends on`` is closed, already in
   flight (ready or running), or picked earlier in this sprint;
3. the plan is journalled (``sprint_planned``) *before* the labels are added, so a crash leaves fewer
   issues ready, never more; then a sprint note issue (``sprint:<repo>:<date>``) lists the picks and
   the previous sprint's outcome (merged, escalated, closed, carried over), and the previous note is
   closed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from agentos import logging as alog
from agentos.config import RepoConfig
from agentos.forge.base import BLOCKED_LABEL, READY_LABEL, RUNNING_LABEL, Forge, Issue
from agentos.graph import PRIORITY_RANK, Event, TaskGraph, TaskStatus
from agentos.issue_text import parse_issue
from agentos.jobs._loops import (
    EventHistory,
    LoopSettings,
    file_once,
    find_marked,
    last_event,
    loop_repos,
    read_events,
    safely,
    settings_for,
)
from agentos.jobs.groomer import DUPLICATE_LABEL, STALE_LABEL, is_loop_issue
from agentos.ports import Clock, Journal, Settings

__all__ = ["HOLD_LABEL", "SPRINT_LABEL", "SprintPlanner", "outcome_of", "pick_sprint"]

log = alog.get_logger("agentos.planner")

HOLD_LABEL = "agentos:hold"
SPRINT_LABEL = "agentos:sprint"
_SKIP = frozenset({READY_LABEL, RUNNING_LABEL, BLOCKED_LABEL, STALE_LABEL, DUPLICATE_LABEL, HOLD_LABEL})
_IN_FLIGHT = frozenset({READY_LABEL, RUNNING_LABEL})


def _rank(issue: Issue) -> tuple[int, datetime, int]:
    parsed = parse_issue(issue.title, issue.body, issue.labels)
    return PRIORITY_RANK.get(parsed.priority, 1), issue.created_at, issue.number


def pick_sprint(issues: Sequence[Issue], size: int) -> list[Issue]:
    """Up to ``size`` candidates by priority then age, each only after what it depends on."""
    by_number = {i.number: i for i in issues}
    candidates = sorted(
        (i for i in issues if i.state == "open" and not (set(i.labels) & _SKIP) and not is_loop_issue(i)), key=_rank
    )
    picked: list[Issue] = []
    chosen: set[int] = set()

    def dep_done(number: int) -> bool:
        dep = by_number.get(number)
        if dep is None:
            return False
        return dep.state == "closed" or number in chosen or bool(set(dep.labels) & _IN_FLIGHT)

    progress = True
    while progress and len(picked) < size:
        progress = False
        for issue in candidates:
            if issue.number in chosen:
                continue
            deps = [n for n in parse_issue(issue.title, issue.body, issue.labels).depends_on if n != issue.number]
            if all(dep_done(n) for n in deps):
                picked.append(issue)
                chosen.add(issue.number)
                progress = True
                break
    return picked


def outcome_of(graph: TaskGraph, repo: str, issue: int, state: str | None) -> str:
    """How a sprint's issue ended: merged, answered (done without a change), escalated, closed, or carried over."""
    task = graph.latest_for_issue(repo, issue)
    if task is not None and task.status in (TaskStatus.MERGED, TaskStatus.ACCEPTED):
        return "merged"
    if task is not None and task.status is TaskStatus.DONE:
        return "answered"
    if task is not None and task.status is TaskStatus.BLOCKED:
        return "escalated"
    if state == "closed":
        return "closed"
    return "carried over"


class SprintPlanner:
    """The ``sprint_plan`` job (hourly; each repo once per sprint; only with ``sprint_enabled``)."""

    def __init__(
        self,
        *,
        settings: Settings,
        journal: Journal,
        clock: Clock,
        graph: TaskGraph,
        forge: Forge,
        store: EventHistory,
        stopping: Callable[[], bool],
        loop_settings: LoopSettings | None = None,
    ) -> None:
        self._settings = settings
        self._journal = journal
        self._clock = clock
        self._graph = graph
        self._forge = forge
        self._store = store
        self._stopping = stopping
        self._loop_settings = loop_settings
        self.planned = 0

    def __repr__(self) -> str:
        return f"<SprintPlanner planned={self.planned}>"

    async def tick(self) -> None:
        s = settings_for(self._settings, self._loop_settings)
        if not s.sprint_enabled:
            log.debug("sprint_planner_disabled")
            return
        now = self._clock()
        cadence = timedelta(days=s.sprint_cadence_days)
        events = await read_events(self._store, now - cadence)
        for repo in loop_repos(self._settings, full_only=True):
            if self._stopping():
                return
            last = last_event(events, "sprint_planned", repo=repo.name)
            if last is not None and now - last.ts < cadence:
                continue
            with alog.bound(repo=repo.name):
                await self.plan(repo, s, now)

    async def plan(self, repo: RepoConfig, s: LoopSettings, now: datetime) -> list[int]:
        """Plan one repo's sprint now (the cadence gate is the caller's); the issue numbers made ready."""
        forge = self._forge
        issues = await safely("list_issues", forge.list_issues(repo.name, state="all"))
        if issues is None:
            return []
        picks = pick_sprint(issues, s.plan_size)
        if not picks:
            log.info("sprint_nothing_to_plan")
            return []
        history = await read_events(self._store, now - timedelta(days=90))
        previous = last_event(history, "sprint_planned", repo=repo.name)
        sprint = now.astimezone(self._settings.config.zone).date().isoformat()  # the local date, in `timezone`
        numbers = [i.number for i in picks]
        self._journal.record("sprint_planned", None, repo=repo.name, sprint=sprint, issues=numbers)
        self.planned += 1
        for issue in picks:
            await safely("add_labels", forge.add_labels(repo.name, issue.number, [READY_LABEL]))
        log.info("sprint_planned", sprint=sprint, issues=numbers)
        body = self._note(repo.name, picks, previous, {i.number: i for i in issues})
        await safely(
            "create_issue",
            file_once(forge, repo.name, f"Sprint {sprint}", body, [SPRINT_LABEL], key=f"sprint:{repo.name}:{sprint}"),
        )
        if previous is not None and previous.data.get("sprint") != sprint:
            old_key = f"sprint:{repo.name}:{previous.data.get('sprint')}"
            old = await safely("find", find_marked(forge, repo.name, old_key))
            if old is not None:
                await safely("close_issue", forge.close_issue(repo.name, old.number))
        return numbers

    def _note(self, repo: str, picks: Sequence[Issue], previous: Event | None, issues: dict[int, Issue]) -> str:
        lines = [f"**agentos sprint** for {repo}: these issues are now ready.", ""]
        for issue in picks:
            prio = parse_issue(issue.title, issue.body, issue.labels).priority
            lines.append(f"- #{issue.number} {issue.title} ({prio})")
        if previous is not None:
            lines += ["", f"### Previous sprint ({previous.data.get('sprint')})", ""]
            counts: dict[str, int] = {}
            for number in previous.data.get("issues") or []:
                found = issues.get(int(number))
                outcome = outcome_of(self._graph, repo, int(number), found.state if found else None)
                counts[outcome] = counts.get(outcome, 0) + 1
                lines.append(f"- #{number} {found.title if found else ''}: {outcome}")
            lines += ["", ", ".join(f"{n} {what}" for what, n in sorted(counts.items()))]
        lines += ["", "_Planned by the sprint planner (`loops.sprint_enabled`). Remove a ready label to hold one._"]
        return "\n".join(lines)
