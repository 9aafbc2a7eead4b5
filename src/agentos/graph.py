"""Tasks, attempts, statuses and the rules that move them (the container of all tasks: :mod:`agentos.task_graph`).

Pure: no I/O, no clocks (callers pass ``now``). Every change goes through a method that checks the
rule and returns the :class:`Event` it produced; the store journals events, the executor acts on them.

    queued ──► running ──► validating ──► pr_open ──► merged ──► accepted (its acceptance checks passed)
      ▲           │             │   └─► done (answered without a change: research, architecture, docs)
      │           ▼             ▼             ▼
      └──────── retrying ◄──────┴─────────────┘      blocked · cancelled · failed (escalated / stopped)
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field

from agentos.acceptance import AcceptanceState

TaskType = Literal[
    "implementation",
    "debugging",
    "architecture",
    "research",
    "docs",
    "design",
    "content",
    "browser_automation",
]
TASK_TYPES: tuple[str, ...] = TaskType.__args__  # type: ignore[attr-defined]
Priority = Literal["high", "normal", "low"]
PRIORITY_RANK: dict[str, int] = {"high": 0, "normal": 1, "low": 2}


class TaskStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    VALIDATING = "validating"
    PR_OPEN = "pr_open"
    MERGED = "merged"
    DONE = "done"
    RETRYING = "retrying"
    BLOCKED = "blocked"
    CANCELLED = "cancelled"
    FAILED = "failed"
    ACCEPTED = "accepted"


S = TaskStatus
TRANSITIONS: dict[TaskStatus, frozenset[TaskStatus]] = {
    S.QUEUED: frozenset({S.RUNNING, S.BLOCKED, S.CANCELLED}),
    S.RUNNING: frozenset({S.VALIDATING, S.RETRYING, S.BLOCKED, S.QUEUED, S.CANCELLED, S.FAILED}),
    S.VALIDATING: frozenset({S.PR_OPEN, S.DONE, S.RETRYING, S.BLOCKED, S.QUEUED, S.CANCELLED, S.FAILED}),
    S.RETRYING: frozenset({S.RUNNING, S.QUEUED, S.BLOCKED, S.CANCELLED}),
    S.PR_OPEN: frozenset({S.MERGED, S.RETRYING, S.BLOCKED, S.QUEUED, S.CANCELLED}),
    S.BLOCKED: frozenset({S.QUEUED, S.CANCELLED}),
    S.FAILED: frozenset({S.QUEUED, S.CANCELLED}),
    S.CANCELLED: frozenset({S.QUEUED}),
    S.MERGED: frozenset({S.ACCEPTED}),
    S.DONE: frozenset(),
    S.ACCEPTED: frozenset(),
}
ACTIVE = frozenset({S.RUNNING, S.VALIDATING})
TERMINAL = frozenset({S.MERGED, S.DONE, S.BLOCKED, S.CANCELLED, S.FAILED, S.ACCEPTED})
FINISHED = frozenset({S.MERGED, S.DONE, S.ACCEPTED})  # the work is done (merged or answered): dependents may start
DISPATCHABLE = frozenset({S.QUEUED, S.RETRYING})
REVIEW_BLOCKER = "review_requested"
"""The blocker of a task whose PR reviewers asked to change (:meth:`Task.send_back_for_review`)."""
NO_NODE_BLOCKER = "no_ray_node"
"""The blocker of an attempt no Ray node could take (its agent's ``ray_resources`` offered nowhere): not counted."""


def send_back_blocker(reason: str) -> str:
    """The blocker a PR sent back for ``reason`` carries: a conflict with its base is no test failure."""
    return "rebase_conflict" if reason == "rebase_conflict" else "test_failure"


class IllegalTransition(ValueError):
    """A status change the rules do not allow (for example merged → running)."""


class Attempt(BaseModel):
    """One run of one agent on one task."""

    number: int
    agent: str
    started_at: datetime
    ended_at: datetime | None = None
    outcome: Literal["running", "complete", "partial", "blocked", "failed", "interrupted"] = "running"
    exit_code: int | None = None
    duration_s: float | None = None
    blocker_code: str | None = None
    summary: str = ""
    error: str = ""
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    cost_reported: bool | None = None  # False: the CLI ran and reported no cost ("not measured"); None: unknown
    tokens_reported: bool | None = None
    turns: int = 0
    run_dir: str | None = None
    pid: int | None = None
    pid_start: int | None = None
    patch_path: str | None = None
    egress_denied: str = ""
    """What the egress proxy refused this attempt (and its test run): ``"blocked: evil.example:443 ×3"``."""
    runner: str = ""
    """Where it ran: ``""`` on this machine, ``"ray"`` on a node of the cluster (``node``: that node's id)."""
    node: str = ""


class Normalised(BaseModel):
    """What the normaliser (``loops.normalise``, :mod:`agentos.jobs.normalise`) wrote for a terse issue.

    Kept next to the fields read from the issue (which stay as filed): the prompt takes its goal, and its
    criteria and constraints where the issue has none (:meth:`Task.effective_criteria`).
    """

    goal: str
    success_criteria: list[str] = Field(default_factory=list)
    constraints: list[str] = Field(default_factory=list)
    filled: list[str] = Field(default_factory=list)
    """What it set on the task besides the text: ``type``, ``agent`` (a label or line wins over it)."""
    by: str = ""
    """The agent that answered."""


class Task(BaseModel):
    """One issue generation turned into work."""

    id: str
    repo: str
    issue: int
    generation: int = 1
    title: str
    goal: str = ""
    success_criteria: list[str] = Field(default_factory=list)
    constraints: list[str] = Field(default_factory=list)
    type: TaskType = "implementation"
    priority: Priority = "normal"
    agent: str | None = None
    status: TaskStatus = TaskStatus.QUEUED
    attempts: list[Attempt] = Field(default_factory=list)
    branch: str | None = None
    pr: int | None = None
    depends_on: list[str] = Field(default_factory=list)
    parent: str | None = None
    created_at: datetime
    updated_at: datetime
    not_before: datetime | None = None
    last_blocker: str | None = None
    last_signature: str | None = None
    blocked_since: datetime | None = None  # when the PR monitor first saw ``last_signature``
    ci_fix_attempts: int = 0
    approved_at: datetime | None = None  # an operator approved the PR (dispatcher_only, high risk)
    awaiting_unready: bool = False
    """Cancelled by an operator and the issue's ready label not yet removed: the dispatcher removes it before
    a ready label counts as *fresh* (added after the cancel) and may start a new generation."""
    note: str = ""
    acceptance: AcceptanceState = Field(default_factory=AcceptanceState)  # merged until they pass: accepted
    reroute: str | None = None
    """The agent an operator named for the next attempt (``task retry --agent``); cleared when an attempt starts."""
    review_rounds: int = 0
    """How often the PR went back to an agent for review feedback (bounded by ``routing.max_review_rounds``)."""
    reviewed: list[str] = Field(default_factory=list)
    """Ids of the review feedback acted on (each piece once)."""
    normalised: Normalised | None = None
    """The normaliser's goal, criteria and constraints for a terse issue (None: the issue is worked as filed)."""

    @staticmethod
    def make_id(repo: str, issue: int, generation: int = 1) -> str:
        return f"{repo}#{issue}" if generation == 1 else f"{repo}#{issue}.{generation}"

    @property
    def current_attempt(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    @property
    def effective_goal(self) -> str:
        """The goal the agent works to: the normaliser's for a terse issue, else the issue's."""
        return self.normalised.goal if self.normalised is not None else self.goal

    @property
    def effective_criteria(self) -> list[str]:
        """The issue's success criteria, else the normaliser's."""
        return self.success_criteria or (self.normalised.success_criteria if self.normalised else [])

    @property
    def effective_constraints(self) -> list[str]:
        """The issue's constraints, else the normaliser's."""
        return self.constraints or (self.normalised.constraints if self.normalised else [])

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    def cost_usd(self) -> float:
        return sum(a.cost_usd for a in self.attempts)

    def tokens(self) -> int:
        return sum(a.tokens_in + a.tokens_out for a in self.attempts)

    def unmeasured(self) -> int:
        """Attempts whose CLI ran but reported no cost: their cost is "not measured", not $0."""
        return sum(1 for a in self.attempts if a.cost_reported is False)

    def counted_attempts(self) -> int:
        """Attempts that count toward ``max_attempts``: a usage limit or a daemon restart burns none."""
        uncounted = ("interrupted", "running")
        return sum(1 for a in self.attempts if a.outcome not in uncounted and a.blocker_code != "quota_limited")

    # ------------------------------------------------------------ transitions (the only writers of fields)

    def move(self, to: TaskStatus, now: datetime, **data: Any) -> Event:
        """Move to ``to`` or raise :class:`IllegalTransition`."""
        if to not in TRANSITIONS[self.status]:
            raise IllegalTransition(f"task {self.id}: {self.status.value} → {to.value} is not allowed")
        before, self.status, self.updated_at = self.status, to, now
        return Event(type="transition", task=self.id, ts=now, data={"from": before.value, "to": to.value, **data})

    def start_attempt(
        self, agent: str, now: datetime, *, branch: str | None = None, run_dir: str | None = None
    ) -> tuple[Attempt, Event]:
        """Begin the next attempt (on ``branch``, the task's from now on): the task must be dispatchable."""
        event = self.move(TaskStatus.RUNNING, now, agent=agent)
        attempt = Attempt(number=len(self.attempts) + 1, agent=agent, started_at=now, run_dir=run_dir)
        self.attempts.append(attempt)
        self.not_before = None
        self.reroute = None
        self.branch = self.branch or branch
        event.data["attempt"] = attempt.number
        return attempt, event

    def end_attempt(
        self,
        now: datetime,
        *,
        outcome: Literal["complete", "partial", "blocked", "failed", "interrupted"],
        blocker_code: str | None = None,
        **fields: Any,
    ) -> Event:
        """Record how the current attempt ended (the status change is a separate transition)."""
        attempt = self._running_attempt()
        attempt.outcome, attempt.ended_at, attempt.blocker_code = outcome, now, blocker_code
        attempt.duration_s = (now - attempt.started_at).total_seconds()
        for key, value in fields.items():
            setattr(attempt, key, value)
        if blocker_code:
            self.last_blocker = blocker_code
        self.updated_at = now
        data = {
            "attempt": attempt.number,
            "agent": attempt.agent,
            "outcome": outcome,
            "blocker_code": blocker_code,
            "duration_s": attempt.duration_s,
            "tokens": attempt.tokens_in + attempt.tokens_out,
            "cost_usd": attempt.cost_usd,
            "cost_reported": attempt.cost_reported,
            "error": attempt.error[-500:],
        }
        return Event(type="attempt_ended", task=self.id, ts=now, data=data)

    def note_process(self, pid: int, start_time: int) -> None:
        """The running attempt's agent process (for :func:`agentos.agents.runner.kill_orphan` after a crash)."""
        attempt = self._running_attempt()
        attempt.pid, attempt.pid_start = pid, start_time

    def note_placement(self, runner: str, node: str) -> None:
        """Where the running attempt's agent started: ``runner`` ``ray`` on the cluster node ``node``."""
        attempt = self._running_attempt()
        attempt.runner, attempt.node = runner, node

    def lose_runner(self, now: datetime, error: str) -> list[Event]:
        """The node the attempt ran on died: it ends ``interrupted`` with blocker ``runner_lost`` (not counted against
        the agent: :meth:`counted_attempts`) and the task goes back to the queue, to run on another node."""
        events = [self.end_attempt(now, outcome="interrupted", blocker_code="runner_lost", error=error)]
        events.append(self.move(TaskStatus.QUEUED, now, reason="runner_lost"))
        self.not_before = None
        return events

    def note_usage(self, **usage: int | float | bool | None) -> None:
        """What the running attempt's CLI reported (``tokens_in``, ``cost_usd``, ``turns``, …) and its exit code."""
        attempt = self._running_attempt()
        for key, value in usage.items():
            setattr(attempt, key, value)

    def note_patch(self, path: str, *, attempt: Attempt | None = None, keep: bool = False) -> None:
        """Where an attempt's (by default the last one's) dropped change was saved; ``keep``: an earlier note wins."""
        target = attempt if attempt is not None else self.current_attempt
        if target is not None and not (keep and target.patch_path):
            target.patch_path = path

    def note_egress(self, summary: str, *, attempt: Attempt | None = None) -> None:
        """What the egress proxy refused an attempt (by default the last one): its session's ``summary()``; a
        second note (the test run's) is added after the first."""
        target = attempt if attempt is not None else self.current_attempt
        if target is not None and summary:
            target.egress_denied = f"{target.egress_denied}; {summary}" if target.egress_denied else summary

    def _running_attempt(self) -> Attempt:
        attempt = self.current_attempt
        if attempt is None or attempt.outcome != "running":
            raise IllegalTransition(f"task {self.id}: no running attempt")
        return attempt

    def complete_attempt(self, now: datetime, summary: str) -> list[Event]:
        """A complete attempt (its work committed): the hand-off proves and publishes it."""
        ended = self.end_attempt(now, outcome="complete", summary=summary[:2000])
        return [ended, self.move(TaskStatus.VALIDATING, now)]

    def fail_validation(self, code: str, detail: str) -> None:
        """A complete attempt whose hand-off failed (no diff, red tests, a secret): the attempt failed after all."""
        attempt = self.current_attempt
        if attempt is None:
            raise IllegalTransition(f"task {self.id}: no attempt to fail")
        attempt.blocker_code, attempt.error, attempt.outcome = code, detail[-3000:], "failed"
        self.last_blocker = code

    def open_pr(self, pr: int, now: datetime) -> Event:
        self.pr = pr
        return self.move(TaskStatus.PR_OPEN, now, pr=pr)

    def retry_after(self, now: datetime, delay_s: float, *, blocker: str | None) -> Event:
        """A failed attempt: the next one may start in ``delay_s`` seconds."""
        event = self.move(TaskStatus.RETRYING, now, blocker=blocker, retry_in_s=delay_s)
        self.not_before = now + timedelta(seconds=delay_s)
        return event

    def requeue(self, now: datetime, reason: str, *, error: str = "") -> list[Event]:
        """Back to the queue (a shutdown, a restart, an operator's retry); a running attempt ends interrupted."""
        events = self._interrupt(now, error or reason)
        events.append(self.move(TaskStatus.QUEUED, now, reason=reason))
        self.not_before = None
        self.awaiting_unready = False
        return events

    def block(self, now: datetime, reason: str, *, blocker: str | None = None) -> Event:
        """Escalated: a human must look (``blocker`` replaces the last blocker when given)."""
        if blocker is not None:
            self.last_blocker = blocker
        return self.move(TaskStatus.BLOCKED, now, reason=reason, blocker=self.last_blocker)

    def cancel(
        self, now: datetime, reason: str, *, unready: bool = False, blocker: str | None = None, **data: Any
    ) -> list[Event]:
        """Stop the task for good; a running attempt ends ``interrupted`` with ``reason`` as its error.

        ``unready``: the issue's ready label must go before it may start again (see :attr:`awaiting_unready`).
        """
        if blocker is not None:
            self.last_blocker = data["blocker"] = blocker
        events = self._interrupt(now, f"cancelled: {reason}")
        events.append(self.move(TaskStatus.CANCELLED, now, reason=reason, **data))
        self.not_before = None
        self.awaiting_unready = unready
        return events

    def _interrupt(self, now: datetime, error: str) -> list[Event]:
        attempt = self.current_attempt
        if attempt is None or attempt.outcome != "running":
            return []
        return [self.end_attempt(now, outcome="interrupted", error=error)]

    def unready_done(self) -> None:
        """The issue's ready label is gone: a ready label seen from now on was added after the cancel."""
        self.awaiting_unready = False

    def send_back(self, now: datetime, *, reason: str, detail: str) -> Event:
        """A red or conflicting PR goes back to an agent on its branch, with ``detail`` as the last error.

        Red CI changes what was approved, so an approval is asked again; a branch that only conflicts with its base
        (``rebase_conflict``) is the same change redone on top of it, and keeps the operator's approval."""
        blocker = send_back_blocker(reason)
        self._report(detail, blocker)
        self.ci_fix_attempts += 1
        if blocker != "rebase_conflict":
            self.approved_at = None
        event = self.move(TaskStatus.RETRYING, now, reason=reason, blocker=blocker)
        self.not_before = now
        return event

    def fix_budget_spent(self, detail: str, blocker: str = "test_failure") -> int:
        """The PR's fix budget is spent: note the last report, reset the budget (for a retry); the fixes made."""
        self._report(detail, blocker)
        fixes, self.ci_fix_attempts = self.ci_fix_attempts, 0
        return fixes

    def _report(self, detail: str, blocker: str) -> None:
        if self.current_attempt is not None:
            self.current_attempt.error = detail
        self.last_blocker = blocker

    def note_pr_blocker(self, signature: str, now: datetime) -> None:
        self.last_signature, self.blocked_since = signature, now

    def clear_pr_blocker(self) -> bool:
        """The PR is no longer blocked; False when it was not."""
        was_blocked = self.last_signature is not None or self.blocked_since is not None
        self.last_signature, self.blocked_since = None, None
        return was_blocked

    def approve(self, now: datetime) -> bool:
        """An operator approved the PR; False when it was approved already."""
        if self.approved_at is not None:
            return False
        self.approved_at = now
        return True

    def mark_done(self, now: datetime) -> Event:
        """Complete without a change: the answer was posted on the issue; no PR, nothing to merge."""
        return self.move(TaskStatus.DONE, now, attempt=len(self.attempts))

    def mark_merged(self, now: datetime, sha: str) -> Event:
        self.last_signature, self.blocked_since = None, None
        return self.move(TaskStatus.MERGED, now, sha=sha, pr=self.pr)

    def accept(self, now: datetime, by: str) -> Event:
        """Every acceptance check passed (a ``human`` one signed off by ``by``): the task is accepted."""
        return self.move(TaskStatus.ACCEPTED, now, by=by, checks=len(self.acceptance.checks))

    def release(self, keep: list[str]) -> None:
        """Dependencies that are done without a merge of theirs are dropped: only ``keep`` remain."""
        self.depends_on = keep

    def send_back_for_review(self, now: datetime, *, detail: str, ids: list[str]) -> Event:
        """Reviewers asked for changes: back to an agent on the PR's branch, with their feedback as the last report."""
        self._report(detail, REVIEW_BLOCKER)
        self.review_rounds += 1
        self.approved_at = None
        self.reviewed = [*self.reviewed, *ids]
        event = self.move(TaskStatus.RETRYING, now, reason="review", blocker=REVIEW_BLOCKER, feedback=ids)
        self.not_before = now
        return event

    def review_noted(self, ids: list[str], *, rounds_spent: bool = False) -> None:
        """Review feedback that is not acted on (untrusted, or the rounds are spent): it is not counted again.
        ``rounds_spent``: the blocker is the review, and the rounds start afresh (for an operator's retry)."""
        self.reviewed = [*self.reviewed, *ids]
        if rounds_spent:
            self.review_rounds, self.last_blocker = 0, REVIEW_BLOCKER

    def reroute_to(self, agent: str) -> None:
        """An operator named the agent of the next attempt; it stays the task's preferred agent afterwards."""
        self.agent = self.reroute = agent

    def close(self, now: datetime, code: str, reason: str) -> list[Event]:
        """Closed for good by an operator (``code``: ``wontfix`` or ``closed``): CANCELLED with ``code`` as its
        blocker. A task cancelled already keeps its status and takes the code."""
        if self.status is TaskStatus.CANCELLED:
            self.last_blocker = code
            return [Event(type="closed", task=self.id, ts=now, data={"blocker": code, "reason": reason})]
        return self.cancel(now, code, blocker=code, note=reason)


class Event(BaseModel):
    """What a change did, as the journal and the loops see it."""

    type: str
    task: str | None = None
    ts: datetime
    data: dict[str, Any] = Field(default_factory=dict)


def backoff_seconds(failures: int, base_s: float = 10.0, cap_s: float = 300.0) -> float:
    """Retry delay after ``failures`` failed attempts: ``min(base · 2^(n-1), cap)``."""
    if failures <= 0:
        return 0.0
    return float(min(base_s * 2 ** (failures - 1), cap_s))
