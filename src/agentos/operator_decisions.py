"""The operator's decisions on a task: cancel, close (won't fix), retry (on a named agent), approve or reject a PR.

Composed with :class:`~agentos.lifecycle.Lifecycle`, which delegates its operator methods here (they stay
``Lifecycle.cancel``, ``retry``, ``close``, ``clear_ready``, ``reject``, ``review``, ``approve``), so a task's
fate stays in one layer while lifecycle.py stays under its size limit::

    cancel ──► CANCELLED first, then the attempt stopped (its processes killed), labels off, a PR closed (branch kept)
    retry ───► QUEUED (``--agent``: that agent runs the next attempt)
    close ───► CANCELLED (blocker wontfix|closed), the issue closed with the reason, PR and branch gone
    approve ─► recorded on the task (who, an override of the verifier's findings), the PR monitor woken
    reject ──► the PR closed, the task cancelled, the issue out of the ready set

Each decision is journalled first, with who made it (:func:`agentos.caller.current`); every side effect after it
is keyed or idempotent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from agentos import caller
from agentos import logging as alog
from agentos.config import Config
from agentos.errors import AgentosError, ControlError
from agentos.forge.base import RUNNING_LABEL
from agentos.forge_calls import best_effort, ready_by_label, ready_label
from agentos.graph import Event, IllegalTransition, Task, TaskStatus
from agentos.jobs._pr_git import WorkspaceBranches
from agentos.jobs.verify import Finding
from agentos.notices import cancelled_pr_comment, closed_issue_comment, closed_pr_comment
from agentos.redact import redact

if TYPE_CHECKING:
    from agentos.lifecycle import Lifecycle

__all__ = ["OPERATOR_CANCEL", "OperatorDecisions"]

log = alog.get_logger("agentos.lifecycle")

OPERATOR_CANCEL = "operator_cancel"


class OperatorDecisions:
    """Makes an operator's decision on a task so (journal first, then the attempt, the forge and the worktree)."""

    def __init__(self, *, lifecycle: Lifecycle) -> None:
        self.lifecycle = lifecycle
        self.journal, self.clock, self.forge = lifecycle.journal, lifecycle.clock, lifecycle.forge
        self.graph, self.running, self.wake = lifecycle.graph, lifecycle.running, lifecycle.wake
        self._branches = WorkspaceBranches(lifecycle.settings, lifecycle.workspaces)

    def __repr__(self) -> str:
        return "<OperatorDecisions>"

    @property
    def _config(self) -> Config:
        return self.lifecycle.settings.config

    async def cancel(self, task: Task, reason: str = OPERATOR_CANCEL) -> Task:
        """Stop a task for good: CANCELLED is journalled first, then its attempt is stopped (the agent's or the
        test command's processes killed), the issue's ready and running labels go and an open PR is closed
        (its branch kept). The issue runs again only after ``task retry`` or a ready label added afresh.

        Raises :class:`IllegalTransition` for a task that is merged or cancelled already.
        """
        if task.status is TaskStatus.CANCELLED:
            raise IllegalTransition(f"task {task.id} is already cancelled")
        was = task.status
        events = task.cancel(self.clock(), reason, unready=True)
        events.append(self.journal.event(reason, task.id, status=was.value, pr=task.pr, by=caller.current()))
        self.journal.commit(events, [task])
        log.warning("task_cancelled", task=task.id, reason=reason, was=was.value)
        await self.running.stop(task.id, reason)
        if was is TaskStatus.PR_OPEN and task.pr is not None:
            await best_effort(self.forge.close_pr(task.repo, task.pr, comment=redact(cancelled_pr_comment(task))))
        await self.clear_ready(task)
        await self.lifecycle.drop_worktree(task)
        return task

    async def clear_ready(self, task: Task) -> bool:
        """Take a cancelled task's issue out of the ready set (ready and running labels); True once done.

        On a repo whose readiness is a Projects board's Status, no label says "ready" and a card moved back to
        Ready cannot be told from one never moved: such a task stays cancelled until ``task retry``.
        """
        removed = await best_effort(self.forge.remove_label(task.repo, task.issue, ready_label(self._config)))
        removed = await best_effort(self.forge.remove_label(task.repo, task.issue, RUNNING_LABEL)) and removed
        if removed and task.awaiting_unready and ready_by_label(self._config, task.repo):
            task.unready_done()
            self.journal.commit([self.journal.event("ready_label_removed", task.id)], [task])
        return removed

    def retry(self, task: Task, agent: str | None = None) -> Event:
        """An operator's retry: the task is queued again (one attempt past a budget ceiling).

        ``agent``: reroute, that agent runs the next attempt (and is the task's preferred agent from then on).
        Raises :class:`ControlError` naming the configured agents when there is no such agent."""
        if agent is not None and agent not in self._config.agents:
            raise ControlError(f"no agent named {agent!r}; agents: {', '.join(sorted(self._config.agents)) or 'none'}")
        if task.status in (TaskStatus.QUEUED, TaskStatus.RETRYING, TaskStatus.RUNNING, TaskStatus.VALIDATING):
            raise IllegalTransition(f"task {task.id} is already {task.status.value}")
        events = task.requeue(self.clock(), "operator_retry")
        moved = events[-1]
        if agent is not None:
            task.reroute_to(agent)
        audit = {"agent": agent} if agent is not None else {}
        events.append(self.journal.event("operator_retry", task.id, by=caller.current(), **audit))
        self.journal.commit(events, [task])
        log.info("task_retried", task=task.id, agent=agent, by=caller.current())
        self.wake("dispatch")
        return moved

    async def close(self, task: Task, *, wontfix: bool = False, reason: str = "") -> Task:
        """Close a task for good (``task close [--wontfix]``): CANCELLED with the blocker ``wontfix`` or ``closed``
        journalled first (with who did it), the attempt stopped, an open PR closed and its branch deleted, the
        reason commented on the issue (keyed), its labels updated and the issue closed. Raises
        :class:`IllegalTransition` for a merged or done task."""
        if task.status in (TaskStatus.MERGED, TaskStatus.DONE):
            raise IllegalTransition(f"task {task.id} is {task.status.value} already")
        code, by, was = ("wontfix" if wontfix else "closed"), caller.current(), task.status
        events = task.close(self.clock(), code, reason)
        audit = {"status": was.value, "by": by, "blocker": code, "reason": reason, "pr": task.pr}
        self.journal.commit([*events, self.journal.event("operator_close", task.id, **audit)], [task])
        log.warning("task_closed", task=task.id, blocker=code, was=was.value, by=by)
        await self.running.stop(task.id, code)
        if task.pr is not None:
            await self._close_pr_and_branch(task, task.pr, wontfix=wontfix)
        body = redact(closed_issue_comment(task, wontfix=wontfix, reason=reason, by=by))
        await best_effort(self.forge.comment(task.repo, task.issue, body, key=f"close:{task.id}"))
        if wontfix:
            await best_effort(self.forge.add_labels(task.repo, task.issue, ["wontfix"]))
        await self.clear_ready(task)
        await best_effort(self.forge.close_issue(task.repo, task.issue))
        await best_effort(self.forge.set_board_status(task.repo, task.issue, "Done"))
        await self.lifecycle.drop_worktree(task, keep_branch=False)
        return task

    async def _close_pr_and_branch(self, task: Task, number: int, *, wontfix: bool) -> None:
        """Close the task's PR when it is open, then delete its branch (remote and local): the work is not wanted."""
        try:
            pr = await self.forge.get_pr(task.repo, number)
        except AgentosError as exc:
            log.warning("forge_call_failed", error=str(exc))
            return
        comment = redact(closed_pr_comment(task, wontfix=wontfix))
        if pr.state == "merged" or (
            pr.state == "open" and not await best_effort(self.forge.close_pr(task.repo, number, comment=comment))
        ):
            return
        try:
            await self._branches.delete(task.repo, pr.head, pr.head_sha)
        except (AgentosError, KeyError, OSError) as exc:  # no clone to push from: the branch stays
            log.warning("branch_not_deleted", branch=pr.head, detail=str(exc))

    async def reject(self, task: Task, pr: int) -> None:
        """An operator rejected the PR: closed, the task cancelled, the issue out of the ready set."""
        await self.forge.close_pr(task.repo, pr, comment="Rejected by the operator.")
        self.journal.commit(task.cancel(self.clock(), "rejected"), [task])
        await best_effort(self.forge.remove_label(task.repo, task.issue, ready_label(self._config)))
        await self.lifecycle.drop_worktree(task)

    async def review(
        self, repo: str, number: int, *, approve: bool, overridden: Sequence[Finding] = ()
    ) -> dict[str, Any]:
        """An operator's decision on the PR ``repo#number`` (``ctl approve|reject``, the Telegram buttons).

        Approval is recorded on the task and the PR monitor woken: the PR merges on that pass when it is green
        and up to date, else as soon as it is. ``overridden``: the verifier's findings that held the PR (the
        approval is then journalled as an override). Raises :class:`ControlError` when no open agentos PR has
        that number.
        """
        owners = [t for t in self.graph if t.repo == repo and t.pr == number]
        task = next((t for t in owners if t.status is TaskStatus.PR_OPEN), owners[-1] if owners else None)
        ref = f"{repo}#{number}"
        if task is None:
            raise ControlError(f"no agentos task owns PR {ref}")
        if task.status is TaskStatus.MERGED:
            raise ControlError(f"PR {ref} is already merged")
        if task.status is not TaskStatus.PR_OPEN:
            raise ControlError(f"PR {ref} is not open for review (task is {task.status.value})")
        if not approve:
            await self.reject(task, number)
            return {"pr": ref, "result": "rejected"}
        self.approve(task, number, overridden)
        self.wake("pr_monitor")
        return {"pr": ref, "result": "approved", "status": task.status.value}

    def approve(self, task: Task, pr: int, overridden: Sequence[Finding] = ()) -> None:
        """An operator approved the PR (it outlives restarts and queue rebases, not a follow-up attempt).

        Journalled with who approved it (:func:`agentos.caller.current`) and, when the verifier's findings held
        it, ``override: true`` and those findings."""
        if task.approve(self.clock()):
            by = caller.current()
            audit: dict[str, Any] = {"by": by}
            if overridden:
                audit["override"] = True
                audit["findings"] = [
                    {"kind": f.code, "file": f.path, "line": f.line, "detail": f.detail} for f in overridden
                ]
            self.journal.commit([self.journal.event("pr_approved", task.id, pr=pr, **audit)], [task])
            log.info("pr_approved", task=task.id, pr=pr, by=by, override=bool(overridden))
