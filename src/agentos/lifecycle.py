"""Lifecycle: the one owner of a task's fate.

The executor runs one attempt and hands its :class:`Verdict` here; the PR monitor reads a PR and tells what it
saw; the controller passes on an operator's decision. Every decision about what happens to a task next is
made in this module or a collaborator composed with it (the operator's decisions: :mod:`agentos.operator_decisions`;
a merged task's acceptance: :mod:`agentos.acceptance_fate`), and the task's own transition methods
(:mod:`agentos.graph`) are the only writers::

    attempt failed ──► permanent code or max_attempts ──► escalate (labels, BLOCKED, comment, notice, marker)
                  └──► over the issue's budget ──────────► escalate (budget)
                  └──► otherwise ────────────────────────► RETRYING after a backoff (a usage limit: at once)
    PR red / rebase conflict ──► back to an agent on its branch, up to the fix budget, then escalate
    review asks for changes ──► back to an agent on its branch, up to routing.max_review_rounds, then escalate
    PR wedged ──► close it and re-spawn a new generation from the base (once per issue), then escalate
    PR merged ──► MERGED, issue closed, board Done · PR closed by someone ──► CANCELLED
              └─► with acceptance checks: the issue stays open; acceptance_fate.py takes over (→ ACCEPTED)
    complete, no change ──► research/architecture/docs: the answer on the issue, DONE, issue closed · else a failure
    operator cancel ──► CANCELLED first, then the attempt stopped (its processes killed), labels off, a PR closed
    operator retry ──► QUEUED (``--agent``: that agent runs the next attempt)
    operator close ──► CANCELLED (blocker wontfix|closed), the issue closed with the reason, PR and branch gone

Each change is journalled before the side effect it licenses; every side effect is keyed or idempotent.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from agentos import logging as alog
from agentos.agents.contract import PERMANENT_CODES, ResultContract
from agentos.budget import BUDGET_CODE, issue_breach, issue_spend
from agentos.config import Config
from agentos.errors import AgentosError
from agentos.forge.base import BLOCKED_LABEL, REVIEW_LABEL, Feedback, Forge, PullRequest
from agentos.forge_calls import best_effort, ready_by_label, ready_label
from agentos.graph import (
    NO_NODE_BLOCKER,
    Attempt,
    Event,
    Task,
    TaskStatus,
    backoff_seconds,
    send_back_blocker,
)
from agentos.jobs._pr_policy import CI_CONTEXT_CHARS, next_generation
from agentos.jobs.verify import Finding
from agentos.notices import (
    answer_comment,
    escalation_comment,
    escalation_notice,
    fixes_exhausted_comment,
    manual_steps_comment,
    review_rounds_comment,
    safe_id,
)
from agentos.operator_decisions import OPERATOR_CANCEL, OperatorDecisions
from agentos.ports import Action, Clock, Journal, Notify, Settings, Wake, Workspaces
from agentos.redact import redact
from agentos.results import manual_steps_of
from agentos.running import RunningAttempts
from agentos.task_graph import TaskGraph
from agentos.verdicts import Verdict

__all__ = [
    "ANSWER_TYPES",
    "CONTAINMENT_CODES",
    "OPERATOR_CANCEL",
    "Lifecycle",
    "Verdict",
    "best_effort",
    "ready_by_label",
    "ready_label",
]

log = alog.get_logger("agentos.lifecycle")

ANSWER_TYPES = frozenset({"research", "architecture", "docs"})
"""Task types whose complete attempt may change nothing: the answer is the result, posted on the issue."""

CONTAINMENT_CODES: dict[str, bool] = {
    "history_rewritten": False,  # the branch was rewritten or left: work saved as a patch, retried from the start
    "workspace_violation": True,  # agentos's clone or the user's repo was changed: a human must look
    "secret_detected": True,  # a push would publish a secret: nothing pushed, a human must look
}
"""Blocker codes agentos assigns when it contains a misbehaving agent (code → permanent)."""

class Lifecycle:
    """Decides what happens to a task next and makes it so (journal first, then the forge and the operator)."""

    def __init__(
        self,
        *,
        journal: Journal,
        clock: Clock,
        settings: Settings,
        graph: TaskGraph,
        forge: Forge,
        notify: Notify,
        workspaces: Workspaces,
        running: RunningAttempts,
        wake: Wake,
    ) -> None:
        self.journal = journal
        self.clock = clock
        self.settings = settings
        self.graph = graph
        self.forge = forge
        self.notify = notify
        self.workspaces = workspaces
        self.running = running
        self.wake = wake
        self.operator = OperatorDecisions(lifecycle=self)  # cancel, close, retry, approve, reject

    def __repr__(self) -> str:
        return f"<Lifecycle tasks={len(self.graph)} running={len(self.running)}>"

    @property
    def _config(self) -> Config:
        return self.settings.config

    # ------------------------------------------------------------ verdicts of an attempt

    async def attempt_failed(self, task: Task, verdict: Verdict) -> None:
        """End a failed attempt (if it still runs) and retry the task or escalate it.

        Its worktree was dealt with by the executor (partial work committed, anything else saved as a patch).
        """
        now = self.clock()
        events: list[Event] = []
        attempt = task.current_attempt
        if attempt is not None and attempt.outcome == "running":
            outcome: Literal["partial", "blocked", "failed"] = (
                "partial" if verdict.outcome == "partial" else "blocked" if verdict.outcome == "blocked" else "failed"
            )
            events.append(
                task.end_attempt(
                    now,
                    outcome=outcome,
                    blocker_code=verdict.blocker,
                    summary=verdict.summary[:2000],
                    error=redact(verdict.error)[-3000:],
                )
            )
        routing = self._config.routing
        permanent = verdict.blocker in PERMANENT_CODES or CONTAINMENT_CODES.get(verdict.blocker or "", False)
        exhausted = task.counted_attempts() >= routing.max_attempts
        if permanent or exhausted:
            await self.escalate(task, events, reason="permanent" if permanent else "max_attempts")
            return
        if breach := self.budget_breach(task):
            await self.escalate_over_budget(task, breach, events)
            return
        delay = (
            0.0
            if verdict.blocker == "quota_limited"
            else backoff_seconds(task.counted_attempts(), routing.backoff_base_s, routing.backoff_cap_s)
        )
        events.append(task.retry_after(now, delay, blocker=verdict.blocker))
        self.journal.commit(events, [task])
        log.info("attempt_failed_will_retry", task=task.id, blocker=verdict.blocker, retry_in_s=delay)

    async def no_node_fits(self, task: Task, line: str) -> None:
        """No Ray node offers what the attempt's agent needs (``line`` says what): the attempt ends ``interrupted``
        with blocker ``no_ray_node`` (not counted against the agent), the task tries again with backoff, and
        after ``routing.max_attempts`` such tries in a row it is escalated with that line. A retry runs one more."""
        now = self.clock()
        events = [task.end_attempt(now, outcome="interrupted", blocker_code=NO_NODE_BLOCKER, error=line)]
        tries = 0
        for attempt in reversed(task.attempts):
            if attempt.blocker_code != NO_NODE_BLOCKER:
                break
            tries += 1
        routing = self._config.routing
        if tries >= routing.max_attempts:
            await self.escalate(task, events, reason=NO_NODE_BLOCKER)
            return
        delay = backoff_seconds(tries, routing.backoff_base_s, routing.backoff_cap_s)
        events.append(task.retry_after(now, delay, blocker=NO_NODE_BLOCKER))
        self.journal.commit(events, [task])
        log.warning("attempt_no_node_fits", task=task.id, detail=line, tries=tries, retry_in_s=delay)

    async def validation_failed(self, task: Task, code: str, detail: str) -> None:
        """A complete attempt whose hand-off failed (no diff, red tests, a secret): it failed after all."""
        task.fail_validation(code, redact(detail))
        log.warning("validation_failed", task=task.id, code=code)
        await self.attempt_failed(task, Verdict("failed", code, error=detail, keep_changes=True))

    async def completed_without_change(self, task: Task, attempt: Attempt, contract: ResultContract | None) -> None:
        """A complete attempt that changed nothing. A research, architecture or docs task (:data:`ANSWER_TYPES`) is
        done: its result (summary, done, decisions, risks) is posted on the issue as a keyed comment, DONE is
        journalled, the issue closed and the board set to Done. Any other task failed (``no_diff_produced``).

        Safe to repeat after a crash: the comment is keyed, closing a closed issue changes nothing.
        """
        if task.type not in ANSWER_TYPES:
            await self.validation_failed(task, "no_diff_produced", "the agent reported complete but changed nothing")
            return
        # The answer is the deliverable, as a PR is: a forge failure here fails the hand-off like one on open_pr.
        answer = redact(answer_comment(task, attempt, contract))
        await self.forge.comment(task.repo, task.issue, answer, key=f"answer:{task.id}")
        done = self.journal.event("completed_without_change", task.id, type=task.type, attempt=attempt.number)
        self.journal.commit([task.mark_done(self.clock()), done], [task])
        log.info("task_answered", task=task.id, type=task.type)
        await best_effort(self.forge.close_issue(task.repo, task.issue))
        await best_effort(self.forge.set_board_status(task.repo, task.issue, "Done"))
        self.notify.notify(3, f"done:{task.id}", f"Answered {task.repo}#{task.issue} without a change: {task.title}")
        await self.drop_worktree(task)
        self.wake("dispatch")  # tasks that depended on this one may start now

    # ------------------------------------------------------------ escalation

    async def escalate(self, task: Task, events: Sequence[Event], *, reason: str, blocker: str | None = None) -> None:
        """Label the issue blocked (and no longer ready), journal BLOCKED, then comment and notify.

        The labels change first, so the dispatcher never sees a blocked task on a still-ready issue; the
        comment is keyed and :meth:`recover_escalations` posts it if the daemon died before it did.
        """
        await best_effort(self.forge.remove_label(task.repo, task.issue, ready_label(self._config)))
        await best_effort(self.forge.add_labels(task.repo, task.issue, [BLOCKED_LABEL]))
        await best_effort(self.forge.set_board_status(task.repo, task.issue, "Blocked"))
        evs = list(events)
        evs.append(task.block(self.clock(), reason, blocker=blocker))
        evs.append(self.journal.event("escalated", task.id, blocker=task.last_blocker, attempts=len(task.attempts)))
        self.journal.commit(evs, [task])
        log.warning("task_escalated", task=task.id, blocker=task.last_blocker, attempts=len(task.attempts))
        await self._announce_escalation(task)
        await self.drop_worktree(task)

    def budget_breach(self, task: Task) -> str | None:
        """``spent …; limit …`` when the task's issue (every attempt of every generation) is over a ceiling."""
        return issue_breach(self._issue_tasks(task), self._config.limits)

    def _issue_tasks(self, task: Task) -> list[Task]:
        tasks = self.graph.for_issue(task.repo, task.issue)
        return tasks if any(t is task for t in tasks) else [*tasks, task]

    async def escalate_over_budget(self, task: Task, breach: str, events: Sequence[Event] = ()) -> None:
        log.warning("task_over_budget", task=task.id, detail=breach)
        await self.escalate(task, events, reason="budget", blocker=BUDGET_CODE)

    def _escalation_marker(self, task: Task) -> Path:
        return self._config.state_path / "runs" / safe_id(task.id) / f"escalated-{len(task.attempts)}"

    async def _announce_escalation(self, task: Task) -> None:
        """The structured comment (once, by key) and the notification; then the marker that says so."""
        key = f"escalation:{task.id}:{len(task.attempts)}"
        figures = self.budget_breach(task) or f"spent {issue_spend(self._issue_tasks(task)).describe()}"
        try:
            await self.forge.comment(task.repo, task.issue, redact(escalation_comment(task, figures)), key=key)
        except AgentosError as exc:
            log.warning("forge_call_failed", error=str(exc))
            return  # no marker: the next start tries again
        url = ""
        with contextlib.suppress(AgentosError):  # the button degrades to "show" when the issue can't be read
            url = (await self.forge.get_issue(task.repo, task.issue)).url
        actions = [
            Action("retry", task.id, "Retry"),
            Action("cancel", task.id, "Cancel"),
            Action("wontfix", task.id, "Won't fix"),
            Action("show", task.id, "Open issue", url),
        ]
        self.notify.notify(1, key, escalation_notice(task, figures), actions)
        marker = self._escalation_marker(task)
        with contextlib.suppress(OSError):
            marker.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            marker.write_text(key + "\n", encoding="utf-8")

    async def recover_escalations(self) -> None:
        """After a restart: escalations whose comment or notice was not sent are finished."""
        for task in list(self.graph):
            if task.status is TaskStatus.BLOCKED and not self._escalation_marker(task).exists():
                log.info("escalation_resumed", task=task.id)
                await self._announce_escalation(task)

    async def drop_worktree(self, task: Task, *, keep_branch: bool = True) -> None:
        """A finished task keeps no worktree; its branch stays for a retry (unless closed for good)."""
        if not task.branch:
            return
        try:
            ws = self.workspaces.workspace(self.settings.repo(task.repo))
            await ws.remove(task.branch, keep_branch=keep_branch)
        except (AgentosError, KeyError) as exc:
            log.warning("worktree_remove_failed", task=task.id, error=str(exc))

    # ------------------------------------------------------------ what the PR monitor saw

    async def send_back(self, task: Task, pr: PullRequest, detail: str, *, reason: str) -> bool:
        """A red or conflicting PR goes back to an agent on its branch, up to the fix budget (then escalate).

        True when it was sent back, False when the budget was spent and the task escalated.
        """
        detail = detail[-CI_CONTEXT_CHARS:]
        routing = self._config.routing
        limit = routing.max_ci_fix_attempts
        if task.ci_fix_attempts >= limit or task.counted_attempts() >= routing.max_attempts + limit:
            await self._fixes_exhausted(task, pr, detail, reason)
            return False
        if REVIEW_LABEL in pr.labels:  # the change will change: a new approval is asked when it is green again
            await best_effort(self.forge.remove_label(task.repo, pr.number, REVIEW_LABEL))
        event = task.send_back(self.clock(), reason=reason, detail=detail)
        self.journal.commit([event], [task])
        log.info("pr_sent_back", task=task.id, reason=reason, fix_attempt=task.ci_fix_attempts)
        self.wake("dispatch")
        return True

    async def _fixes_exhausted(self, task: Task, pr: PullRequest, detail: str, reason: str) -> None:
        """The fix budget is spent: comment on the PR (left open for a human), then escalate the task."""
        fixes = task.fix_budget_spent(detail, send_back_blocker(reason))  # a retry starts with a fresh budget
        body = fixes_exhausted_comment(task, reason, fixes)
        await best_effort(
            self.forge.comment(task.repo, pr.number, redact(body), key=f"ci-exhausted:{task.id}:{len(task.attempts)}")
        )
        event = self.journal.event("ci_fix_exhausted", task.id, reason=reason, fixes=fixes, pr=pr.number)
        await self.escalate(task, [event], reason=reason)

    async def review_requested(self, task: Task, pr: PullRequest, feedback: Sequence[Feedback], detail: str) -> None:
        """Trusted reviewers asked for changes (``detail``: their feedback for the prompt): the PR goes back to an
        agent on its branch, up to ``routing.max_review_rounds`` rounds; then a PR comment and escalation."""
        ids, rounds = [i.id for i in feedback], task.review_rounds
        if rounds >= self._config.routing.max_review_rounds:
            task.review_noted(ids, rounds_spent=True)
            body = redact(review_rounds_comment(task, rounds))
            await best_effort(self.forge.comment(task.repo, pr.number, body, key=f"review-rounds:{task.id}:{ids[0]}"))
            event = self.journal.event("review_rounds_exhausted", task.id, pr=pr.number, rounds=rounds, feedback=ids)
            await self.escalate(task, [event], reason="review_rounds")
            return
        if REVIEW_LABEL in pr.labels:
            await best_effort(self.forge.remove_label(task.repo, pr.number, REVIEW_LABEL))
        event = task.send_back_for_review(self.clock(), detail=redact(detail), ids=ids)
        self.journal.commit([event], [task])
        log.info("pr_sent_back", task=task.id, reason="review", round=task.review_rounds, feedback=ids)
        self.wake("dispatch")

    def wedged_before(self, task: Task) -> bool:
        """Another generation of this issue was wedged already (a second wedge escalates)."""
        return any(t is not task and t.last_blocker == "wedged" for t in self.graph.for_issue(task.repo, task.issue))

    async def escalate_wedged(self, task: Task, pr: PullRequest) -> None:
        signature = task.last_signature
        event = self.journal.event("pr_wedged", task.id, pr=pr.number, signature=signature, action="escalated")
        await self.escalate(task, [event], reason="wedged", blocker="wedged")

    def respawn(self, task: Task, pr: PullRequest) -> Task | None:
        """After the wedge comment, the close and the branch's deletion: cancel the task, queue a new generation."""
        now = self.clock()
        signature = task.last_signature
        events = [
            self.journal.event("pr_wedged", task.id, pr=pr.number, signature=signature, action="respawned"),
            *task.cancel(now, "wedged", blocker="wedged"),
        ]
        changed = [task]
        fresh: Task | None = None
        if self.graph.latest_for_issue(task.repo, task.issue) is task:
            fresh = next_generation(task, now)
            created = {"issue": task.issue, "generation": fresh.generation, "parent": task.id, "reason": "wedged"}
            events.append(self.journal.event("task_created", fresh.id, **created))
            changed.append(fresh)
        self.journal.commit(events, changed)
        again = f"; restarted from the base as {fresh.id}" if fresh else ""
        self.notify.notify(2, f"wedged:{task.id}", f"Closed wedged PR {task.repo}#{pr.number}: {task.title}{again}")
        self.wake("dispatch")
        return fresh

    async def merged(self, task: Task, sha: str, *, reconciled: bool = False) -> None:
        """The PR merged: MERGED, the issue closed, the board Done, the operator's digest told.

        A task with acceptance checks keeps its issue open: the ``acceptance_check`` job is woken and closes it
        when they pass (:mod:`agentos.acceptance_fate`). Manual steps in the result are posted and notified."""
        ev = task.mark_merged(self.clock(), sha)
        extra = {"reconciled": True} if reconciled else {}
        merged = self.journal.event("merged", task.id, pr=task.pr, sha=sha, attempts=len(task.attempts), **extra)
        self.journal.commit([ev, merged], [task])
        log.info("pr_merged", task=task.id, sha=sha, reconciled=reconciled)
        if task.acceptance.checks:
            self.wake("acceptance_check")
        else:
            await best_effort(self.forge.close_issue(task.repo, task.issue))
            await best_effort(self.forge.set_board_status(task.repo, task.issue, "Done"))
        self.notify.notify(3, f"merged:{task.id}", f"Merged {task.repo}#{task.pr}: {task.title}")
        if steps := manual_steps_of(task):  # a sev2 notice and a keyed comment on the issue (redacted)
            body = redact(manual_steps_comment(task, steps))
            await best_effort(self.forge.comment(task.repo, task.issue, body, key=f"manual-steps:{task.id}"))
            self.notify.notify(2, f"manual:{task.id}", redact(f"Manual steps for {task.id} ({task.title}):\n{steps}"))
        self.wake("outcome_check")  # reads the objectives' baseline of this merge
        self.wake("dispatch")  # tasks that depended on this one may start now, not at the next tick

    def closed_unmerged(self, task: Task) -> None:
        """The PR was closed without a merge by someone else: the task is cancelled."""
        self.journal.commit(task.cancel(self.clock(), "pr_closed_without_merge"), [task])

    # ------------------------------------------------------------ operator decisions (operator_decisions.py)

    async def cancel(self, task: Task, reason: str = OPERATOR_CANCEL) -> Task:
        """Stop a task for good (:meth:`OperatorDecisions.cancel`)."""
        return await self.operator.cancel(task, reason)

    async def clear_ready(self, task: Task) -> bool:
        """Take a cancelled task's issue out of the ready set (:meth:`OperatorDecisions.clear_ready`)."""
        return await self.operator.clear_ready(task)

    def retry(self, task: Task, agent: str | None = None) -> Event:
        """An operator's retry, on ``agent`` when named (:meth:`OperatorDecisions.retry`)."""
        return self.operator.retry(task, agent)

    async def close(self, task: Task, *, wontfix: bool = False, reason: str = "") -> Task:
        """Close a task for good (:meth:`OperatorDecisions.close`)."""
        return await self.operator.close(task, wontfix=wontfix, reason=reason)

    async def reject(self, task: Task, pr: int) -> None:
        """An operator rejected the PR (:meth:`OperatorDecisions.reject`)."""
        await self.operator.reject(task, pr)

    async def review(
        self, repo: str, number: int, *, approve: bool, overridden: Sequence[Finding] = ()
    ) -> dict[str, Any]:
        """An operator's decision on the PR ``repo#number`` (:meth:`OperatorDecisions.review`)."""
        return await self.operator.review(repo, number, approve=approve, overridden=overridden)

    def approve(self, task: Task, pr: int, overridden: Sequence[Finding] = ()) -> None:
        """An operator approved the PR (:meth:`OperatorDecisions.approve`)."""
        self.operator.approve(task, pr, overridden)
