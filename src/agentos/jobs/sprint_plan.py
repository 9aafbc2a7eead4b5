"""A sprint plan waiting for the operator: proposed, then approved (its issues made ready) or skipped.

::

    sprint_proposed ──► Approve (ctl plan approve · the Telegram button) ──► sprint_approved + sprint_planned
                     │                                                     ──► ready labels, wake dispatch, note
                     ├─► Skip (ctl plan skip · the button) ──► sprint_skipped (reason: operator)
                     └─► no answer by the deadline ──────────► sprint_skipped (reason: expired)

Everything is in the journal, so a restart forgets nothing: a repo's plan is *pending* while its last
``sprint_proposed`` has no ``sprint_approved``/``sprint_skipped`` of the same ``plan`` after it. One plan is
pending per repo at most. The decision is journalled before any label is added (a crash leaves fewer
issues ready, never more). The picks of plans skipped since the repo's last approved one are
:meth:`SprintPlans.skipped`: the next plan leaves them out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from agentos import logging as alog
from agentos.errors import ControlError
from agentos.forge.base import READY_LABEL, Forge, Issue
from agentos.graph import Event, TaskStatus
from agentos.issue_text import parse_issue
from agentos.jobs._loops import EventHistory, comment_once, file_once, find_marked, last_event, read_events, safely
from agentos.ports import Action, Clock, Journal, Notify, Settings, Wake
from agentos.task_graph import TaskGraph

__all__ = ["HISTORY_DAYS", "SPRINT_LABEL", "Pick", "Plan", "SprintPlans", "next_focus", "outcome_of"]

log = alog.get_logger("agentos.planner")

SPRINT_LABEL = "agentos:sprint"
HISTORY_DAYS = 90
"""How far back the journal is read for plans and their decisions."""


@dataclass(frozen=True, slots=True)
class Pick:
    """One issue of a plan, and why (the planner agent's rationale, or the rule's)."""

    issue: int
    title: str
    priority: str
    rationale: str


@dataclass(frozen=True, slots=True)
class Plan:
    """A proposed sprint: its id (the local date), picks, where they came from, and when it expires."""

    repo: str
    plan: str
    picks: tuple[Pick, ...]
    source: str
    proposed_at: datetime
    deadline: datetime

    @property
    def issues(self) -> list[int]:
        return [p.issue for p in self.picks]

    def as_json(self) -> dict[str, Any]:
        return {
            "repo": self.repo,
            "plan": self.plan,
            "source": self.source,
            "proposed_at": self.proposed_at.isoformat(),
            "deadline": self.deadline.isoformat(),
            "picks": [
                {"issue": p.issue, "title": p.title, "priority": p.priority, "rationale": p.rationale}
                for p in self.picks
            ],
        }

    @classmethod
    def from_event(cls, event: Event) -> Plan:
        d = event.data
        picks = tuple(
            Pick(int(p["issue"]), str(p.get("title", "")), str(p.get("priority", "")), str(p.get("rationale", "")))
            for p in d.get("picks") or []
        )
        return cls(
            repo=str(d["repo"]),
            plan=str(d["plan"]),
            picks=picks,
            source=str(d.get("source", "")),
            proposed_at=event.ts,
            deadline=datetime.fromisoformat(str(d["deadline"])),
        )


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


class SprintPlans:
    """Proposes, shows, approves and skips sprint plans; the state is the journal (restart-safe)."""

    def __init__(
        self,
        *,
        settings: Settings,
        journal: Journal,
        clock: Clock,
        graph: TaskGraph,
        forge: Forge,
        store: EventHistory,
        notify: Notify | None = None,
        wake: Wake | None = None,
    ) -> None:
        self._settings = settings
        self._journal = journal
        self._clock = clock
        self._graph = graph
        self._forge = forge
        self._store = store
        self._notify = notify
        self._wake = wake

    def __repr__(self) -> str:
        return "<SprintPlans>"

    # ------------------------------------------------------------ reading the journal

    async def _events(self) -> list[Event]:
        return await read_events(self._store, self._clock() - timedelta(days=HISTORY_DAYS))

    async def show(self, repos: list[str]) -> list[dict[str, Any]]:
        """The pending plan of each repo (``ctl plan show``)."""
        return [describe(await self.pending(name), name) for name in repos]

    async def waiting_repo(self, repos: list[str]) -> str:
        """The one repo whose plan waits, for an approve or skip that names none."""
        waiting = [name for name in repos if await self.pending(name) is not None]
        if len(waiting) != 1:
            raise ControlError(f"name the repo (plans waiting: {', '.join(waiting) or 'none'})")
        return waiting[0]

    async def pending(self, repo: str) -> Plan | None:
        """The repo's plan waiting for a decision, or None."""
        events = await self._events()
        proposed = last_event(events, "sprint_proposed", repo=repo)
        if proposed is None:
            return None
        plan = proposed.data.get("plan")
        for type_ in ("sprint_approved", "sprint_skipped"):
            decided = last_event(events, type_, repo=repo, plan=plan)
            if decided is not None and decided.ts >= proposed.ts:
                return None
        return Plan.from_event(proposed)

    async def next_id(self, repo: str, day: str) -> str:
        """A new plan's id: the local date, then ``-2``, ``-3`` … for more plans the same day."""
        events = await self._events()
        taken = {e.data.get("plan") for e in events if e.type == "sprint_proposed" and e.data.get("repo") == repo}
        if day not in taken:
            return day
        n = 2
        while f"{day}-{n}" in taken:
            n += 1
        return f"{day}-{n}"

    async def skipped(self, repo: str) -> set[int]:
        """The picks of plans skipped (by the operator or the deadline) since the repo's last approved plan."""
        events = await self._events()
        approved = last_event(events, "sprint_approved", repo=repo)
        since = approved.ts if approved is not None else None
        return {
            int(n)
            for e in events
            if e.type == "sprint_skipped" and e.data.get("repo") == repo and (since is None or e.ts >= since)
            for n in e.data.get("issues") or []
        }

    # ------------------------------------------------------------ deciding

    async def propose(self, plan: Plan, *, auto_approve: bool) -> None:
        """Journal ``plan``; apply it now (``auto_approve``) or ask the operator with Approve / Skip."""
        self._journal.record("sprint_proposed", None, **plan.as_json())
        log.info("sprint_proposed", repo=plan.repo, plan=plan.plan, issues=plan.issues, source=plan.source)
        if auto_approve:
            await self._apply(plan, by="sprint_auto_approve")
            return
        if self._notify is not None:
            self._notify.notify(
                2,
                f"plan:{plan.repo}:{plan.plan}",
                plan_text(plan),
                [Action("plan_approve", plan.repo, "Approve"), Action("plan_skip", plan.repo, "Skip")],
            )

    async def approve(self, repo: str, *, by: str = "operator") -> dict[str, Any]:
        """Apply the repo's pending plan: its issues are made ready. ControlError when none waits."""
        plan = await self._require(repo)
        made = await self._apply(plan, by=by)
        return {"repo": repo, "plan": plan.plan, "ready": made}

    async def skip(self, repo: str, *, reason: str = "operator") -> dict[str, Any]:
        """Drop the repo's pending plan: nothing runs, and the next plan leaves its picks out."""
        plan = await self._require(repo)
        self._skip(plan, reason)
        return {"repo": repo, "plan": plan.plan, "skipped": plan.issues}

    async def expire(self, repo: str) -> bool:
        """Skip the repo's pending plan when its deadline has passed; True when it did."""
        plan = await self.pending(repo)
        if plan is None or self._clock() < plan.deadline:
            return False
        self._skip(plan, "expired")
        if self._notify is not None:
            self._notify.notify(
                3, f"plan_expired:{repo}:{plan.plan}", f"Sprint plan {plan.plan} for {repo} expired unapproved."
            )
        return True

    async def _require(self, repo: str) -> Plan:
        plan = await self.pending(repo)
        if plan is None:
            raise ControlError(f"no sprint plan waits for {repo}")
        return plan

    def _skip(self, plan: Plan, reason: str) -> None:
        self._journal.record("sprint_skipped", None, repo=plan.repo, plan=plan.plan, issues=plan.issues, reason=reason)
        log.info("sprint_skipped", repo=plan.repo, plan=plan.plan, reason=reason)

    async def _apply(self, plan: Plan, *, by: str) -> list[int]:
        """Journal the decision and the sprint, then label each still-open pick ready and wake dispatch."""
        repo, forge = plan.repo, self._forge
        history = await self._events()
        previous = last_event(history, "sprint_planned", repo=repo)
        self._journal.record("sprint_approved", None, repo=repo, plan=plan.plan, issues=plan.issues, by=by)
        self._journal.record("sprint_planned", None, repo=repo, sprint=plan.plan, issues=plan.issues)
        issues = await safely("list_issues", forge.list_issues(repo, state="all")) or []
        by_number = {i.number: i for i in issues}
        made: list[int] = []
        for number in plan.issues:
            issue = by_number.get(number)
            if issue is None or issue.state != "open":
                continue
            if READY_LABEL not in issue.labels:
                await safely("add_labels", forge.add_labels(repo, number, [READY_LABEL]))
            made.append(number)
        log.info("sprint_planned", repo=repo, sprint=plan.plan, issues=made, by=by)
        if self._wake is not None:
            self._wake("dispatch")
        body = self._note(plan, previous, by_number)
        key = f"sprint:{repo}:{plan.plan}"
        await safely("create_issue", file_once(forge, repo, f"Sprint {plan.plan}", body, [SPRINT_LABEL], key=key))
        if previous is not None and previous.data.get("sprint") != plan.plan:
            old = await self.report(previous, by_number)
            if old is not None:
                await safely("close_issue", forge.close_issue(repo, old.number))
        return made

    def _note(self, plan: Plan, previous: Event | None, issues: dict[int, Issue]) -> str:
        """The sprint note: the picks with their rationale, the previous sprint's report, the next focus."""
        lines = [f"**agentos sprint** for {plan.repo}: these issues are now ready.", ""]
        for pick in plan.picks:
            found = issues.get(pick.issue)
            prio = pick.priority or (parse_issue(found.title, found.body, found.labels).priority if found else "")
            why = f": {pick.rationale}" if pick.rationale else ""
            lines.append(f"- #{pick.issue} {pick.title or (found.title if found else '')} ({prio}){why}")
        if previous is not None:
            lines += ["", f"### Previous sprint ({previous.data.get('sprint')})", "", *self._report(previous, issues)]
        lines += ["", f"_Planned by the sprint planner ({plan.source}); approved. Remove a ready label to hold one._"]
        return "\n".join(lines)

    async def report(self, sprint: Event, issues: dict[int, Issue]) -> Issue | None:
        """Post the sprint's report (done, carried over, risks, next focus) on its note issue, once, and journal
        its next focus (``sprint_reported``), which the next groomer and planner runs read; the note, or None."""
        repo, name = str(sprint.data.get("repo")), str(sprint.data.get("sprint"))
        focus = next_focus(self._graph, sprint, issues)
        events = await self._events()
        if last_event(events, "sprint_reported", repo=repo, sprint=name) is None:
            self._journal.record("sprint_reported", None, repo=repo, sprint=name, next_focus=focus)
            log.info("sprint_reported", repo=repo, sprint=name, next_focus=focus)
        note = await safely("find", find_marked(self._forge, repo, f"sprint:{repo}:{name}", state="all"))
        if note is None:
            return None
        report = "\n".join([f"**Sprint report** ({name})", "", *self._report(sprint, issues)])
        await safely(
            "comment", comment_once(self._forge, repo, note.number, report, key=f"sprint-report:{repo}:{name}")
        )
        return note

    def _report(self, sprint: Event, issues: dict[int, Issue]) -> list[str]:
        """A sprint's report: each issue's outcome (done, answered, escalated, closed, carried over), the
        counts, the risks (escalations) and what is carried over."""
        repo = str(sprint.data.get("repo"))
        lines: list[str] = []
        counts: dict[str, int] = {}
        carried: list[str] = []
        risks: list[str] = []
        for number in sprint.data.get("issues") or []:
            found = issues.get(int(number))
            outcome = outcome_of(self._graph, repo, int(number), found.state if found else None)
            counts[outcome] = counts.get(outcome, 0) + 1
            title = found.title if found else ""
            lines.append(f"- #{number} {title}: {outcome}")
            if outcome == "carried over":
                carried.append(f"#{number}")
            if outcome == "escalated":
                risks.append(f"#{number} {title} escalated to a human")
        lines += ["", ", ".join(f"{n} {what}" for what, n in sorted(counts.items()))]
        if risks:
            lines += ["", "**Risks:** " + "; ".join(risks)]
        if carried:
            lines += ["", "**Carried over:** " + ", ".join(carried)]
        lines += ["", "**Next focus:** " + ("; ".join(next_focus(self._graph, sprint, issues)) or "the backlog")]
        return lines


def next_focus(graph: TaskGraph, sprint: Event, issues: dict[int, Issue]) -> list[str]:
    """What the next sprint should look at first: the sprint's escalated issues (unblock them), then those
    carried over (finish them)."""
    repo = str(sprint.data.get("repo"))
    unblock, finish = [], []
    for number in sprint.data.get("issues") or []:
        found = issues.get(int(number))
        outcome = outcome_of(graph, repo, int(number), found.state if found else None)
        title = found.title if found else ""
        if outcome == "escalated":
            task = graph.latest_for_issue(repo, int(number))
            blocker = f" (blocked: {task.last_blocker})" if task is not None and task.last_blocker else ""
            unblock.append(f"unblock #{number} {title}{blocker}")
        elif outcome == "carried over":
            finish.append(f"finish #{number} {title}")
    return unblock + finish


def plan_text(plan: Plan) -> str:
    """The notice asking for a decision: each pick with its rationale, the deadline, the ctl commands."""
    lines = [f"Sprint plan {plan.plan} for {plan.repo} ({len(plan.picks)} issues, by the {plan.source}):"]
    lines += [
        f"• #{p.issue} {p.title} ({p.priority})" + (f": {p.rationale}" if p.rationale else "") for p in plan.picks
    ]
    lines += [
        f"Expires unapproved at {plan.deadline:%Y-%m-%d %H:%M} UTC.",
        f"agentos ctl plan approve {plan.repo} · agentos ctl plan skip {plan.repo}",
    ]
    return "\n".join(lines)


def describe(plan: Plan | None, repo: str) -> dict[str, Any]:
    """``ctl plan show``'s answer for one repo."""
    if plan is None:
        return {"repo": repo, "pending": False}
    return {"pending": True, **plan.as_json()}
