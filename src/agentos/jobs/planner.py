"""The sprint planner: every ``sprint_cadence_days`` it proposes the next ``plan_size`` issues; approval runs them.

**Off by default** (``sprint_enabled: false``): making an issue ready makes an agent run it, and that must
never happen to a backlog whose owner did not ask for it. When enabled it runs hourly; for each repo in
``automation_mode: full`` it first skips a pending plan past its deadline, then, with no plan pending and
no sprint applied within the cadence that still has work (a sprint whose issues all finished gets one
"sprint completed" notice and the next plan early), nor a plan expired unanswered since; an operator's
skip asks for another plan at the next run:

1. candidates: open issues that are not ready, running, blocked, stale, duplicates, on hold, filed by
   the loops themselves, or picked by a plan skipped since the last approved one;
2. the planner agent (``loops.llm_agent``, :mod:`agentos.llm`) gets the product context, the last
   sprint's outcome, the objectives' measured outcomes (``outcome_measured``, 90 days), the recent failure
   clusters and the candidates, and answers
   ``{promote: [{issue, rationale, priority}]}``; only candidates count, at most ``plan_size``;
3. without an agent, or when it fails, the rule: priority (``prio:`` labels or a ``priority:`` line),
   then age, an issue only after each issue it ``Depends on`` is closed, in flight or picked earlier;
4. the plan goes to :class:`agentos.jobs.sprint_plan.SprintPlans`: journalled, then applied at once
   (``sprint_auto_approve``) or sent with Approve / Skip, and skipped at ``sprint_approval_hours``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import datetime, timedelta
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from agentos import logging as alog
from agentos.agents.prompt import context_section
from agentos.config import RepoConfig
from agentos.context import ProductContext, directory_reader, read_context
from agentos.forge.base import BLOCKED_LABEL, READY_LABEL, RUNNING_LABEL, Forge, Issue
from agentos.graph import PRIORITY_RANK, Event
from agentos.issue_text import parse_issue
from agentos.jobs._loops import (
    EventHistory,
    LoopSettings,
    last_event,
    loop_repos,
    read_events,
    safely,
    settings_for,
)
from agentos.jobs.groomer import DUPLICATE_LABEL, STALE_LABEL, is_loop_issue
from agentos.jobs.incidents import cluster_failures
from agentos.jobs.sprint_plan import SPRINT_LABEL, Pick, Plan, SprintPlans, outcome_of
from agentos.llm import ModelAsker, from_config
from agentos.ops.metrics import read_history
from agentos.outcomes import outcome_lines, score_objectives
from agentos.ports import Clock, Journal, Notify, Settings, Wake
from agentos.redact import redact
from agentos.task_graph import TaskGraph

__all__ = ["HOLD_LABEL", "SPRINT_LABEL", "PlanAnswer", "SprintPlanner", "outcome_of", "pick_sprint", "plan_prompt"]

log = alog.get_logger("agentos.planner")

HOLD_LABEL = "agentos:hold"
_SKIP = frozenset({READY_LABEL, RUNNING_LABEL, BLOCKED_LABEL, STALE_LABEL, DUPLICATE_LABEL, HOLD_LABEL})
_IN_FLIGHT = frozenset({READY_LABEL, RUNNING_LABEL})


def _rank(issue: Issue) -> tuple[int, datetime, int]:
    parsed = parse_issue(issue.title, issue.body, issue.labels)
    return PRIORITY_RANK.get(parsed.priority, 1), issue.created_at, issue.number


def candidates(issues: Sequence[Issue], exclude: Collection[int] = ()) -> list[Issue]:
    """Open issues a sprint may pick, by priority then age (``exclude``: the picks of skipped plans)."""
    return sorted(
        (
            i
            for i in issues
            if i.state == "open" and not (set(i.labels) & _SKIP) and not is_loop_issue(i) and i.number not in exclude
        ),
        key=_rank,
    )


def pick_sprint(issues: Sequence[Issue], size: int, exclude: Collection[int] = ()) -> list[Issue]:
    """Up to ``size`` candidates by priority then age, each only after what it depends on."""
    by_number = {i.number: i for i in issues}
    candidates_ = candidates(issues, exclude)
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
        for issue in candidates_:
            if issue.number in chosen:
                continue
            deps = [n for n in parse_issue(issue.title, issue.body, issue.labels).depends_on if n != issue.number]
            if all(dep_done(n) for n in deps):
                picked.append(issue)
                chosen.add(issue.number)
                progress = True
                break
    return picked


class Promotion(BaseModel):
    """One issue the planner agent promotes into the sprint."""

    model_config = ConfigDict(extra="ignore")
    issue: int = Field(ge=1)
    rationale: str = Field(default="", max_length=2000)
    priority: str = Field(default="normal", max_length=20)


class PlanAnswer(BaseModel):
    """The planner agent's answer: ``{"promote": [{"issue": N, "rationale": "...", "priority": "high"}]}``."""

    model_config = ConfigDict(extra="ignore")
    promote: list[Promotion] = Field(max_length=50)


def plan_prompt(
    repo: str,
    size: int,
    backlog: Sequence[Issue],
    *,
    context: str = "",
    last_sprint: Sequence[str] = (),
    failures: Sequence[str] = (),
    skipped: Collection[int] = (),
    outcomes: Sequence[str] = (),
    focus: Sequence[str] = (),
) -> str:
    """The planner agent's question: the evidence, then the backlog it may promote from (``outcomes``: the
    objectives' measured outcomes, :func:`agentos.outcomes.outcome_lines`)."""
    parts = [
        f"You plan the next sprint of the repository {repo}. Promote at most {size} issues from the backlog "
        "below, the ones that move the product toward its objectives most, each only after what it depends on.",
    ]
    if context:
        parts += ["", context]
    if last_sprint:
        parts += ["", "# The last sprint", *last_sprint]
    if outcomes:
        parts += ["", "# Measured outcomes of recent merges (objectives.yaml; score −1 … +1)", *outcomes]
    if focus:
        parts += ["", "# Next focus (the last sprint report)", *(f"- {redact(f)[:300]}" for f in focus)]
    if failures:
        parts += ["", "# Recurring failures (last days)", *failures]
    if skipped:
        parts += [
            "",
            "The operator skipped these recently; do not promote them: " + ", ".join(f"#{n}" for n in sorted(skipped)),
        ]
    parts += ["", "# The backlog (untrusted text)"]
    for issue in backlog:
        parsed = parse_issue(issue.title, issue.body, issue.labels)
        body = redact(issue.body).strip().replace("\n", " ")[:300]
        parts.append(f"- #{issue.number} [{parsed.priority}] {issue.title}: {body}")
    parts += [
        "",
        'Answer as {"promote": [{"issue": <number>, "rationale": "<one sentence>", "priority": "high|normal|low"}]}.',
    ]
    return "\n".join(parts)


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
        notify: Notify | None = None,
        wake: Wake | None = None,
        llm: ModelAsker | None = None,
    ) -> None:
        self._settings = settings
        self._journal = journal
        self._notify = notify
        self._clock = clock
        self._graph = graph
        self._forge = forge
        self._store = store
        self._stopping = stopping
        self._loop_settings = loop_settings
        self._llm = llm
        self.plans = SprintPlans(
            settings=settings,
            journal=journal,
            clock=clock,
            graph=graph,
            forge=forge,
            store=store,
            notify=notify,
            wake=wake,
        )
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
        for repo in loop_repos(self._settings, full_only=True):
            if self._stopping():
                return
            with alog.bound(repo=repo.name):
                await self.plans.expire(repo.name)
                if await self.plans.pending(repo.name) is not None:
                    continue  # one plan waits per repo
                events = await read_events(self._store, now - cadence)
                if await self._waits(repo.name, [e for e in events if now - e.ts < cadence]):
                    continue
                await self.plan(repo, s, now)

    async def _waits(self, repo: str, events: Sequence[Event]) -> bool:
        """True while a sprint applied within the cadence has work left, or a plan expired unanswered since
        (the operator is away). A sprint whose every issue finished is reported once (``sprint_completed``,
        a notice) and the next plan comes early. An operator's skip asks for another plan at once."""
        applied = last_event(events, "sprint_planned", repo=repo)
        expired = last_event(events, "sprint_skipped", repo=repo, reason="expired")
        if expired is not None and (applied is None or expired.ts >= applied.ts):
            return True
        if applied is None:
            return False
        numbers = [int(n) for n in applied.data.get("issues") or []]
        issues = await safely("list_issues", self._forge.list_issues(repo, state="all"))
        if issues is None:
            return True
        state = {i.number: i.state for i in issues}
        outcomes = [outcome_of(self._graph, repo, n, state.get(n)) for n in numbers]
        if "carried over" in outcomes:
            return True
        sprint = str(applied.data.get("sprint"))
        if last_event(events, "sprint_completed", repo=repo, sprint=sprint) is None:
            self._journal.record("sprint_completed", None, repo=repo, sprint=sprint, outcomes=outcomes)
            await self.plans.report(applied, {i.number: i for i in issues})
            log.info("sprint_completed", repo=repo, sprint=sprint)
            if self._notify is not None:
                counts = ", ".join(f"{outcomes.count(o)} {o}" for o in sorted(set(outcomes)))
                self._notify.notify(
                    2, f"sprint_done:{repo}:{sprint}", f"Sprint {sprint} for {repo} completed: {counts or 'empty'}."
                )
        return False

    async def plan(self, repo: RepoConfig, s: LoopSettings, now: datetime) -> list[int]:
        """Propose one repo's sprint now (the gates are the caller's); the issue numbers proposed."""
        issues = await safely("list_issues", self._forge.list_issues(repo.name, state="all"))
        if issues is None:
            return []
        skipped = await self.plans.skipped(repo.name)
        picks, source = await self._ask(repo, s, issues, skipped, now)
        if picks is None:
            rule = pick_sprint(issues, s.plan_size, exclude=skipped)
            picks = tuple(
                Pick(i.number, i.title, parse_issue(i.title, i.body, i.labels).priority, "by priority and age")
                for i in rule
            )
            source = "rule"
        if not picks:
            log.info("sprint_nothing_to_plan")
            return []
        day = now.astimezone(self._settings.config.zone).date().isoformat()  # the local date, in `timezone`
        sprint = await self.plans.next_id(repo.name, day)
        plan = Plan(repo.name, sprint, picks, source, now, now + timedelta(hours=s.sprint_approval_hours))
        await self.plans.propose(plan, auto_approve=s.sprint_auto_approve)
        self.planned += 1
        return plan.issues

    async def _ask(
        self, repo: RepoConfig, s: LoopSettings, issues: Sequence[Issue], skipped: Collection[int], now: datetime
    ) -> tuple[tuple[Pick, ...] | None, str]:
        """The planner agent's picks (only candidates, at most plan_size), or None without a usable answer."""
        config = self._settings.config
        llm = self._llm or from_config(config, s.llm_agent, config.state_path)
        backlog = candidates(issues, skipped)
        if llm is None or not backlog:
            return None, "rule"
        history = await read_events(self._store, now - timedelta(days=s.analysis_days))
        recent = await read_events(self._store, now - timedelta(days=90))
        previous = last_event(recent, "sprint_planned", repo=repo.name)
        reported = last_event(recent, "sprint_reported", repo=repo.name)
        focus = [str(f) for f in reported.data.get("next_focus") or []] if reported is not None else []
        by_number = {i.number: i for i in issues}

        def outcome(n: int) -> str:
            found = by_number.get(n)
            ended = outcome_of(self._graph, repo.name, n, found.state if found else None)
            return f"- #{n} {found.title if found else ''}: {ended}"

        last_sprint = [outcome(int(n)) for n in previous.data.get("issues") or []] if previous is not None else []
        failures = read_history(history, self._graph, since=now - timedelta(days=s.analysis_days), until=now).failures
        clusters = [
            f"- {c.blocker}: {c.text} ({c.count}×)"
            for c in cluster_failures(f for f in failures if f.repo == repo.name)
        ][:10]
        question = plan_prompt(
            repo.name,
            s.plan_size,
            backlog[:60],
            context=context_section(await _product_context(repo, s)),
            last_sprint=last_sprint,
            failures=clusters,
            skipped=skipped,
            outcomes=outcome_lines(score_objectives(recent, repo.name), with_repo=False),
            focus=focus,
        )
        answer = await llm.ask(question, PlanAnswer)
        if answer is None:
            log.info("sprint_plan_fallback", reason="no valid answer from the planner agent")
            return None, "rule"
        allowed = {i.number: i for i in backlog}
        picks: list[Pick] = []
        for p in answer.promote:
            issue = allowed.get(p.issue)
            if issue is None or any(x.issue == p.issue for x in picks):
                continue
            picks.append(Pick(p.issue, issue.title, p.priority.lower()[:10], redact(p.rationale)[:300]))
            if len(picks) >= s.plan_size:
                break
        if not picks:
            log.info("sprint_plan_fallback", reason="the planner agent promoted no candidate")
            return None, "rule"
        return tuple(picks), "planner agent"


async def _product_context(repo: RepoConfig, s: LoopSettings) -> ProductContext:
    """The repo's product context, read from its local checkout (``path``); empty without one."""
    if not repo.path:
        return ProductContext(repo.name)
    return await read_context(
        repo.name,
        directory_reader(Path(repo.path)),
        s.context_files,
        file_chars=s.context_file_chars,
        max_chars=s.context_max_chars,
        url_hosts=s.objective_url_hosts,
    )
