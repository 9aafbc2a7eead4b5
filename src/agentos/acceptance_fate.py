"""What happens to a merged task with acceptance checks: accepted, waiting for an operator, or sent back.

Composed with :class:`~agentos.lifecycle.Lifecycle` (whose escalation, journal and ports it uses) so that a
task's fate stays in one layer while lifecycle.py stays under its size limit::

    merged (checks pending) ──► every check passes ─────────► ACCEPTED, issue closed, board Done
                            └─► machine checks pass, a human item ──► waits: a sev2 notice with "Accept"
                                                                        └─► ctl accept / the button ──► ACCEPTED
                            └─► a check fails ──► a new generation from the base with the check's output
                                                  (up to acceptance.max_fix_attempts; then that generation
                                                  is escalated at once, and ``task retry`` runs it)

Why a new generation and not the same branch: the merged branch is gone and its PR is history; a fresh
branch from the base (which now holds the merged change) gets a fresh PR, CI and fix budget, as a wedged
PR's re-spawn does. The failing check's output (bounded like red CI) is added to the new generation's goal,
which the prompt quotes.

A ``human:`` item is also how an issue asks for a merge's manual steps (:meth:`Lifecycle.merged`) to be
confirmed: the task waits in ``merged`` until the operator accepts it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from agentos import caller
from agentos import logging as alog
from agentos.errors import ControlError
from agentos.graph import Task, TaskStatus
from agentos.jobs._pr_policy import CI_CONTEXT_CHARS, next_generation
from agentos.lifecycle import Lifecycle, best_effort
from agentos.ports import Action
from agentos.redact import redact

__all__ = ["FEEDBACK_MARK", "AcceptanceFate", "CheckResult"]

log = alog.get_logger("agentos.acceptance")

FEEDBACK_MARK = "\n\n---\nAn acceptance check failed after the merge"
"""Where the feedback of a failed check starts in a re-spawned generation's goal (the original goal before it)."""


@dataclass(frozen=True)
class CheckResult:
    """How one check went: ``passed``, what it said (output tail, status), ``permanent`` when no agent can fix it."""

    check: str
    passed: bool
    detail: str = ""
    permanent: bool = False


def failure_report(results: Sequence[CheckResult]) -> str:
    """The failing checks and their output, bounded like red CI's context."""
    parts = [f"- `{r.check}` failed:\n{r.detail.strip() or '(no output)'}" for r in results if not r.passed]
    return redact("\n".join(parts))[-CI_CONTEXT_CHARS:]


class AcceptanceFate:
    """Decides and records the fate of a merged task whose issue has acceptance checks."""

    def __init__(self, *, lifecycle: Lifecycle) -> None:
        self.lifecycle = lifecycle

    def __repr__(self) -> str:
        return "<AcceptanceFate>"

    def pending(self, task: Task) -> bool:
        """A merged task whose checks have not passed yet (and no later generation took over)."""
        graph = self.lifecycle.graph
        return (
            task.status is TaskStatus.MERGED
            and bool(task.acceptance.checks)
            and graph.latest_for_issue(task.repo, task.issue) is task
        )

    async def passed(self, task: Task) -> None:
        """Every machine check passed: accepted, or (with a ``human`` item) waiting for an operator's sign-off."""
        if not task.acceptance.needs_human:
            await self.accepted(task, "acceptance_check")
            return
        if task.acceptance.passed_at is not None:
            return
        lc = self.lifecycle
        task.acceptance.passed_at = lc.clock()
        questions = [c.value for c in task.acceptance.checks if c.kind == "human"]
        lc.journal.commit([lc.journal.event("acceptance_waiting", task.id, human=questions)], [task])
        log.info("acceptance_waiting", task=task.id)
        ref = f"{task.repo}#{task.issue}"
        text = (
            f"{ref} merged and its checks pass; it waits for your sign-off: "
            + "; ".join(questions)
            + f"\nAccept with `agentos ctl accept {ref}`."
        )
        body = (
            "**agentos**: the change is merged and the automatic acceptance checks pass. An operator must "
            "confirm:\n\n" + "\n".join(f"- [ ] {q}" for q in questions) + f"\n\n`agentos ctl accept {ref}` closes "
            "the issue."
        )
        await best_effort(lc.forge.comment(task.repo, task.issue, redact(body), key=f"acceptance-wait:{task.id}"))
        actions = [Action("accept", ref, "Accept"), Action("show", task.id, "Open issue")]
        lc.notify.notify(2, f"acceptance:{task.id}", redact(text), actions)

    async def accepted(self, task: Task, by: str) -> None:
        """ACCEPTED is journalled (with who), then the issue is closed and the board set to Done."""
        lc = self.lifecycle
        done = lc.journal.event("accepted", task.id, by=by, checks=[c.describe() for c in task.acceptance.checks])
        lc.journal.commit([task.accept(lc.clock(), by), done], [task])
        log.info("task_accepted", task=task.id, by=by)
        await best_effort(lc.forge.close_issue(task.repo, task.issue))
        await best_effort(lc.forge.set_board_status(task.repo, task.issue, "Done"))
        lc.notify.notify(3, f"accepted:{task.id}", f"Accepted {task.repo}#{task.issue}: {task.title}")
        lc.wake("dispatch")

    async def accept(self, repo: str, issue: int) -> dict[str, object]:
        """An operator's sign-off (``ctl accept repo#N``, the Telegram button), journalled with who gave it."""
        task = self.lifecycle.graph.latest_for_issue(repo, issue)
        ref = f"{repo}#{issue}"
        if task is None:
            raise ControlError(f"no agentos task for issue {ref}")
        if task.status is TaskStatus.ACCEPTED:
            return {"issue": ref, "result": "already accepted", "task": task.id}
        if not self.pending(task):
            raise ControlError(f"issue {ref} has no merged task waiting for acceptance (task is {task.status.value})")
        if task.acceptance.passed_at is None:
            raise ControlError(f"issue {ref}: the automatic acceptance checks have not passed yet")
        await self.accepted(task, caller.current())
        return {"issue": ref, "result": "accepted", "task": task.id}

    async def failed(self, task: Task, results: Sequence[CheckResult]) -> Task:
        """A check failed: a new generation from the base with its output, queued, or escalated at once when the
        fix budget is spent or no agent can fix it (``ctl task retry`` of that generation then runs it)."""
        lc = self.lifecycle
        report = failure_report(results)
        names = [r.check for r in results if not r.passed]
        failed = lc.journal.event("acceptance_failed", task.id, checks=names, fixes=task.acceptance.fixes)
        permanent = any(r.permanent for r in results if not r.passed)
        give_up = permanent or task.acceptance.fixes >= lc.settings.config.acceptance.max_fix_attempts
        fresh = next_generation(task, lc.clock())
        fresh.acceptance.fixes = task.acceptance.fixes + 1
        original = task.goal.split(FEEDBACK_MARK, 1)[0]
        fresh.goal = (
            f"{original}{FEEDBACK_MARK} of PR #{task.pr} ({task.id}). The base branch now holds that change; "
            f"make the checks pass on top of it.\n\n{report}"
        )
        fresh.note = f"re-spawned: an acceptance check failed after PR #{task.pr} of {task.id} merged"
        created = {"issue": task.issue, "generation": fresh.generation, "parent": task.id, "reason": "acceptance"}
        events = [failed, lc.journal.event("task_created", fresh.id, **created)]
        key = f"acceptance-failed:{task.id}"
        if give_up:  # the new generation is journalled blocked: it never runs unless an operator retries it
            fresh.last_blocker = "acceptance_failed"
            await lc.escalate(fresh, events, reason="acceptance_failed", blocker="acceptance_failed")
            what = f"{fresh.id} is escalated; `agentos ctl task retry {fresh.id}` gives it to an agent again"
        else:
            lc.journal.commit(events, [fresh])
            what = f"{fresh.id} gives the issue to an agent again"
        log.warning("acceptance_failed", task=task.id, fresh=fresh.id, checks=names, escalated=give_up)
        body = f"**agentos**: after PR #{task.pr} merged, an acceptance check failed; {what}.\n\n```\n{report}\n```"
        await best_effort(lc.forge.comment(task.repo, task.issue, redact(body), key=key))
        if not give_up:
            lc.notify.notify(2, key, f"Acceptance check failed on {task.id}; {fresh.id} queued")
            lc.wake("dispatch")
        return fresh
