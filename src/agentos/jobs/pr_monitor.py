"""The PR monitor: merge on green, rebase on conflict, send red back to an agent, close what is wedged.

One pass (:meth:`PRMonitor.tick`) walks each enabled repo's open agent PRs, oldest first::

    merged already ─► task merged (also how a crash between a merge and its journal line is reconciled)
    closed ─────────► task cancelled (or, when agentos closed it as wedged, the re-spawn is finished)
    conflicting ────► rebase onto the base, push --force-with-lease; a rebase conflict → back to an agent
    checks pending ─► wait
    checks red ─────► back to an agent on the same branch with the failing checks (names, summaries,
                      redacted log tails); after ``max_ci_fix_attempts`` escalate, the PR left open
    reviewed ───────► (before the checks) trusted reviewers asked for changes: back to an agent with their
                      feedback, up to ``max_review_rounds`` (:mod:`agentos.jobs.reviews`)
    green ──────────► verifier + risk label; ``dispatcher_only`` or high risk waits for an operator's
                      approval; otherwise a merge-queue candidate

**Merge queue** (per repo): merge the oldest candidate whose head contains the current base (checks of
the head are then checks of what lands), at most one merge per repo per pass; then rebase the oldest
candidate behind the base onto it (its checks re-run on the new head) unless a PR that is up to date is
still being checked. The local forge's checks run on the merge result itself, so there every candidate
counts as up to date. A merge is guarded by the head SHA its checks ran on; "already merged" is success.
Only the **head of the queue** (the first PR, oldest first, that is green, being checked or was just
rebased) is rebased and re-checked: a PR behind it that was already seen green or conflicting on its
current head SHA waits untouched (no checks, no rebase) until it reaches the head, so N queued PRs cost
about N rebases and 2N check runs, not N²/2 of each. Waiting PRs are read from one listing of the repo's
open PRs per pass, not one ``get_pr`` each.

**GitHub's merge queue**: where the base requires the host's own queue (``Forge.merge_queue``), agentos's queue
stands aside: every green PR is enqueued (``merge_pr`` answers ``queued``), none is rebased for being behind or
merged directly, a queued PR is left alone, and one dropped for its merge group's failing checks goes back to an
agent like red CI (docs/pr-monitor.md §2a).

**Wedged**: a PR blocked on one blocker signature for longer than ``routing.wedged_after_hours`` is closed and its
task re-spawned, once per issue; a second wedge escalates (:mod:`agentos.jobs._pr_blockers`).

Every change is journalled before the next side effect, every side effect is idempotent (keyed comments,
lease pushes, label checks), and a pass over an unchanged state changes nothing. See docs/pr-monitor.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from agentos import logging as alog
from agentos.errors import AgentosError
from agentos.forge.base import Checks, Forge, PullRequest, QueueEntry, marker
from agentos.graph import Task, TaskStatus
from agentos.jobs._pr_blockers import PRBlockers
from agentos.jobs._pr_gate import ReviewGate
from agentos.jobs._pr_git import Branches, RebaseOutcome, WorkspaceBranches
from agentos.jobs._pr_host_queue import HostQueueView
from agentos.jobs._pr_policy import (
    Blocker,
    ci_context,
    group_failed,
    normalise,
    pending_blocker,
    red_blocker,
    wedge_key,
)
from agentos.jobs.reviews import ReviewFollowUp
from agentos.jobs.verify import Finding
from agentos.lifecycle import Lifecycle
from agentos.notices import issue_ref, safe_id
from agentos.ports import Clock, Journal, Settings
from agentos.redact import redact
from agentos.task_graph import TaskGraph

__all__ = ["Blocker", "Branches", "PRMonitor", "RebaseOutcome", "WorkspaceBranches"]

log = alog.get_logger("agentos.pr_monitor")


@dataclass
class _Candidate:
    """A green PR that passed its gates: it merges when it is the oldest up to date with the base."""

    task: Task
    pr: PullRequest
    checks: Checks
    up_to_date: bool


InFlight = Literal["in_flight"]
Waiting = Literal["waiting"]


@dataclass(frozen=True)
class _Verdict:
    """What a PR's checks said on one head SHA: it waits behind the queue's head until that SHA changes."""

    sha: str
    kind: Literal["green", "conflict"]


class PRMonitor:
    def __init__(
        self,
        *,
        settings: Settings,
        journal: Journal,
        clock: Clock,
        graph: TaskGraph,
        forge: Forge,
        lifecycle: Lifecycle,
        branches: Branches,
        gate: ReviewGate,
        stopping: Callable[[], bool],
    ) -> None:
        self.settings = settings
        self.journal = journal
        self.clock = clock
        self.graph = graph
        self.forge = forge
        self.lifecycle = lifecycle
        self.branches = branches
        self.stopping = stopping
        self.gate = gate
        self.reviews = ReviewFollowUp(forge=forge, lifecycle=lifecycle, journal=journal)
        self.counts = {"merged": 0, "rebased": 0, "sent_back": 0, "wedged": 0}
        self.blockers = PRBlockers(
            settings=settings,
            journal=journal,
            clock=clock,
            forge=forge,
            lifecycle=lifecycle,
            branches=branches,
            counts=self.counts,
        )
        self.waited = 0  # PR passes skipped because the PR waits behind the head of its queue
        self.enqueued = 0  # PRs put in the host's merge queue
        self.host = HostQueueView(settings=settings, forge=forge)
        self._locks: dict[str, asyncio.Lock] = {}
        self._verdicts: dict[str, _Verdict] = {}  # task id → its checks' verdict on its current head

    def __repr__(self) -> str:
        return "<PRMonitor " + " ".join(f"{k}={v}" for k, v in self.counts.items()) + ">"

    @property
    def _checks_merge_result(self) -> bool:
        return bool(getattr(self.forge, "checks_merge_result", False))

    def _lock(self, repo: str) -> asyncio.Lock:
        return self._locks.setdefault(repo, asyncio.Lock())

    def _open_tasks(self) -> dict[str, list[Task]]:
        by_repo: dict[str, list[Task]] = {}
        for task in self.graph:
            if task.status is TaskStatus.PR_OPEN and task.pr is not None:
                by_repo.setdefault(task.repo, []).append(task)
        return {repo: sorted(tasks, key=lambda t: (t.pr or 0, t.id)) for repo, tasks in sorted(by_repo.items())}

    async def tick(self) -> None:
        merged, rebased = self.counts["merged"], self.counts["rebased"]
        try:
            await self._pass()
        finally:
            # A pass merges at most one PR per repo; without this the rest wait for the 5-minute timer. On a
            # forge whose checks run on the merge result, a rebased head is checked by the very next pass.
            again = self.counts["merged"] != merged or (self._checks_merge_result and self.counts["rebased"] != rebased)
            if again:
                self.lifecycle.wake("pr_monitor")

    async def _pass(self) -> None:
        by_repo = self._open_tasks()
        live = {t.id for tasks in by_repo.values() for t in tasks}
        self._verdicts = {k: v for k, v in self._verdicts.items() if k in live}
        self.host.forget(live)
        self.gate.forget(live)
        for repo, tasks in by_repo.items():
            if self.stopping():
                return
            if not self.settings.repo_enabled(repo):
                continue
            async with self._lock(repo):
                with alog.bound(repo=repo):
                    try:
                        await self._repo_pass(repo, tasks)
                    except AgentosError as exc:
                        log.warning("pr_monitor_repo_failed", error=str(exc))

    async def _repo_pass(self, repo: str, tasks: list[Task]) -> None:
        await self.branches.sync(repo)
        hosted = await self.host.entries(repo)
        ready: list[_Candidate] = []
        busy = False
        head: Task | None = None  # the queue's head: the first PR that is green, being checked or rebased
        listed: dict[int, PullRequest] | None = None  # the repo's open PRs, listed once when one may wait
        for task in tasks:
            if self.stopping():
                return
            if task.status is not TaskStatus.PR_OPEN:
                continue
            if hosted is not None and task.pr in hosted:
                self.host.queued(task, hosted[task.pr])  # merged or dropped by GitHub, seen in a later pass
                continue
            with alog.bound(task=task.id, pr=task.pr):
                try:
                    verdict = self._verdicts.get(task.id)
                    if head is not None and verdict is not None and (hosted is None or verdict.kind == "conflict"):
                        # One listing of the open PRs per pass instead of a get_pr per waiting PR: N waiting
                        # PRs re-read on each of N passes was O(N²) (one ls-remote each on the local forge).
                        if listed is None:
                            listed = {pr.number: pr for pr in await self.forge.open_prs(repo)}
                        still = listed.get(task.pr or 0)
                        if still is not None and still.head_sha == verdict.sha:
                            self.waited += 1
                            continue
                    seen = await self._assess(task, behind_head=head is not None, hosted=hosted)
                except AgentosError as exc:
                    log.warning("pr_check_failed", error=str(exc))
                    continue
            if isinstance(seen, _Candidate):
                ready.append(seen)
            elif seen == "in_flight":
                busy = True
            elif seen == "waiting":
                self.waited += 1
            if head is None and seen is not None and seen != "waiting":
                head = task
        if hosted is not None:
            await self._enqueue(ready)
        else:
            await self._queue(ready, busy)

    async def _queue(self, ready: list[_Candidate], busy: bool) -> None:
        """Merge the oldest candidate that is up to date; rebase the oldest one behind the new base."""
        merged: _Candidate | None = None
        for c in ready:
            if c.up_to_date and c.task.status is TaskStatus.PR_OPEN:
                with alog.bound(task=c.task.id, pr=c.pr.number):
                    try:
                        if await self._merge(c.task, c.pr, c.checks):
                            merged = c
                            break
                    except AgentosError as exc:
                        log.warning("merge_failed", error=str(exc))
        if self._checks_merge_result or (merged is None and busy):
            return  # local: the next pass checks the merge result on the new base by itself
        behind = [
            c
            for c in ready
            if c is not merged and c.task.status is TaskStatus.PR_OPEN and (merged is not None or not c.up_to_date)
        ]
        if behind:
            head = behind[0]
            with alog.bound(task=head.task.id, pr=head.pr.number):
                try:
                    await self._rebase(head.task, head.pr, reason="queue")
                except AgentosError as exc:
                    log.warning("queue_rebase_failed", error=str(exc))

    async def _assess(
        self, task: Task, *, behind_head: bool = False, hosted: dict[int, QueueEntry] | None = None
    ) -> _Candidate | InFlight | Waiting | None:
        """Act on what one PR needs now; a candidate for the merge queue, ``in_flight``, ``waiting`` or None.

        ``behind_head``: an older PR heads the queue; this one is neither rebased nor merged now, and is not
        even re-checked when its checks already ran on its current head SHA (it waits for its turn).
        ``hosted``: the host's merge queue (its entries) merges this repo; only a conflicting PR waits behind the
        head, and a green PR the queue dropped on this head is dealt with here (:meth:`_dropped`).
        """
        assert task.pr is not None
        pr = await self.forge.get_pr(task.repo, task.pr)
        if pr.state == "merged":  # by the host's merge queue, or before a crash (or by hand)
            await self._mark_merged(task, pr.head_sha, reconciled=hosted is None, delete_branch=True)
            return None
        if pr.state == "closed":
            await self._closed(task, pr)
            return None
        verdict = self._verdicts.get(task.id)
        if (
            behind_head
            and verdict is not None
            and verdict.sha == pr.head_sha
            and (hosted is None or verdict.kind != "green")
        ):
            return "waiting"
        if await self.reviews.check(task, pr):  # reviewers asked for changes: back to an agent
            self.counts["sent_back"] += 1
            return None
        if pr.mergeable is False:
            return await self._conflict_or_wait(task, pr, behind_head)
        checks = await self.forge.checks(task.repo, pr.number)
        if checks.sha and pr.head_sha and checks.sha != pr.head_sha:
            checks = Checks(sha=pr.head_sha, state="pending")  # checks of an older head: wait for the new ones
        if checks.state == "pending":
            if await self.blockers.note(task, pr, pending_blocker(checks)):
                return None
            return "in_flight" if await self._up_to_date(task, pr) else None
        if checks.state == "failure":
            # The local forge's checks run on the merge result: a conflict fails them, and only then is the
            # PR known to be unmergeable. A conflict is rebased, not sent to an agent as a test failure.
            if (await self.forge.get_pr(task.repo, pr.number)).mergeable is False:
                return await self._conflict_or_wait(task, pr, behind_head)
            if not await self.blockers.note(task, pr, red_blocker(checks)):
                await self._send_back(task, pr, ci_context(checks), reason="ci_failed")
            return None
        if hosted is not None and await self._dropped(task, pr, busy=bool(hosted)):
            return None
        self.blockers.clear(task, pr)
        self._verdicts[task.id] = _Verdict(pr.head_sha, "green")
        if not await self.gate.passes(task, pr):
            return None
        return _Candidate(task, pr, checks, hosted is not None or await self._up_to_date(task, pr))

    async def _conflict_or_wait(self, task: Task, pr: PullRequest, behind_head: bool) -> InFlight | Waiting | None:
        """A PR that conflicts with its base: rebased at the head of the queue, else it waits for its turn."""
        if behind_head:
            self._verdicts[task.id] = _Verdict(pr.head_sha, "conflict")
            return "waiting"
        await self._conflict(task, pr)
        return "in_flight" if task.status is TaskStatus.PR_OPEN else None

    async def _up_to_date(self, task: Task, pr: PullRequest) -> bool:
        return self._checks_merge_result or await self.branches.up_to_date(task.repo, pr)

    # ------------------------------------------------------------ merging

    async def _merge(self, task: Task, pr: PullRequest, checks: Checks) -> bool:
        title = f"{pr.title} (#{pr.number})"
        ref = issue_ref(task)
        body = redact(pr.body) if ref in pr.body else f"{ref}\n\n{redact(pr.body)}"
        result = await self.forge.merge_pr(task.repo, pr.number, sha=checks.sha or pr.head_sha, title=title, body=body)
        if result.merged:
            await self._mark_merged(task, result.sha)
            return True
        if result.reason == "queued":
            self.journal.record("pr_enqueued", task.id, pr=pr.number, sha=result.sha, detail=result.message)
            self.enqueued += 1
            log.info("pr_enqueued", sha=result.sha, detail=result.message)
            return False
        log.info("merge_refused", reason=result.reason, message=result.message)
        if result.reason == "conflict":
            await self._conflict(task, pr)
        elif result.reason != "head_moved":  # a moved head: the next pass
            await self.blockers.note(task, pr, Blocker("refused", (), (normalise(result.message)[:200],)))
        return False

    async def _mark_merged(
        self, task: Task, sha: str, *, reconciled: bool = False, delete_branch: bool = False
    ) -> None:
        await self.lifecycle.merged(task, sha, reconciled=reconciled)
        self.counts["merged"] += 1
        if task.branch and delete_branch:  # merged by GitHub's queue, before a crash or by hand: the branch is left
            try:
                await self.branches.delete(task.repo, task.branch, sha)
            except AgentosError as exc:
                log.warning("branch_delete_failed", error=str(exc))
        await self._drop_worktree(task)

    async def _closed(self, task: Task, pr: PullRequest) -> None:
        """A PR closed without a merge: by agentos as wedged (finish the re-spawn) or by someone else."""
        tag = marker(wedge_key(task))
        if any(tag in c.body for c in await self.forge.comments(task.repo, pr.number)):
            await self.blockers.respawn(task, pr)
            return
        self.lifecycle.closed_unmerged(task)
        await self._drop_worktree(task)

    async def _drop_worktree(self, task: Task) -> None:
        if task.branch:
            try:
                await self.branches.remove_worktree(task.repo, task.branch)
            except AgentosError as exc:
                log.warning("worktree_remove_failed", error=str(exc))

    async def _enqueue(self, ready: list[_Candidate]) -> None:
        """The host's merge queue merges this repo: every candidate is enqueued (``merge_pr`` answers ``queued``)."""
        for c in ready:
            if c.task.status is TaskStatus.PR_OPEN:
                with alog.bound(task=c.task.id, pr=c.pr.number):
                    try:
                        await self._merge(c.task, c.pr, c.checks)
                    except AgentosError as exc:
                        log.warning("enqueue_failed", error=str(exc))

    async def _dropped(self, task: Task, pr: PullRequest, *, busy: bool) -> bool:
        """Did the host's queue drop this green head? True when it must not be enqueued again now: its group's
        checks failed (back to an agent), a person removed it, or it conflicts with PRs still queued (``busy``)."""
        drop = await self.host.drop_on_head(task, pr)
        if drop is None:
            return False
        if drop.kind == "checks":
            blocker, detail = group_failed(drop)
            if not await self.blockers.note(task, pr, blocker):
                await self._send_back(task, pr, detail, reason="merge_group_failed")
            return True
        if drop.kind == "conflict":
            return busy  # it conflicts with a PR ahead: wait until they merged; a conflict with the base is rebased
        await self.blockers.note(task, pr, Blocker("refused", (), (normalise(f"dequeued: {drop.reason}")[:200],)))
        return True  # removed by a person (or a rule): not put back on the same head

    # ------------------------------------------------------------ conflicts and red CI

    async def _conflict(self, task: Task, pr: PullRequest) -> None:
        if not await self.blockers.note(task, pr, Blocker("conflict", (pr.base,))):
            await self._rebase(task, pr, reason="conflict")

    async def _rebase(self, task: Task, pr: PullRequest, *, reason: str) -> None:
        """Rebase the branch onto the base and push it with a lease; a rebase conflict goes back to an agent
        with the conflicting files and the saved change (a branch that cannot be rebased cannot merge)."""
        attempt = task.current_attempt
        runs = self.settings.config.state_path / "runs"
        run_dir = Path(attempt.run_dir) if attempt and attempt.run_dir else runs / safe_id(task.id)
        outcome = await self.branches.rebase(task, pr.head_sha, run_dir / "conflict.patch")
        if outcome.status == "pushed":
            self.journal.record("pr_rebased", task.id, pr=pr.number, reason=reason, head=outcome.head)
            self.counts["rebased"] += 1
            log.info("pr_rebased", reason=reason, head=outcome.head)
            return
        if outcome.status != "conflict":
            log.info("pr_not_rebased", reason=reason, status=outcome.status)
            return
        if outcome.patch:
            task.note_patch(outcome.patch)
        base = self.settings.repo(task.repo).base_branch
        conflicts = ", ".join(outcome.conflicts) or "(git named no file)"
        detail = (
            f"The PR's branch conflicts with {base} in: {conflicts}. The branch was reset to the current "
            f"{base}; the change it had is saved in {outcome.patch}. Redo that change on top of {base}."
        )
        await self._send_back(task, pr, detail, reason="rebase_conflict")

    async def _send_back(self, task: Task, pr: PullRequest, detail: str, *, reason: str) -> None:
        """A red or conflicting PR goes back to an agent on the same branch, up to the fix budget (lifecycle)."""
        if await self.lifecycle.send_back(task, pr, detail, reason=reason):
            self.counts["sent_back"] += 1

    # ------------------------------------------------------------ operator decisions

    async def approve(self, repo: str, number: int, approve: bool) -> dict[str, Any]:
        """An operator's decision on a PR (``ctl approve|reject``, the Telegram buttons): lifecycle records it
        (:meth:`Lifecycle.review`), then an approved PR that is green and up to date merges at once (or, where
        GitHub's merge queue merges the repo, is enqueued at once: ``result: enqueued``)."""
        async with self._lock(repo):
            held = next(
                (t for t in self.graph if t.repo == repo and t.pr == number and t.status is TaskStatus.PR_OPEN), None
            )
            overridden: list[Finding] = []
            if approve and held is not None and held.approved_at is None:
                try:
                    overridden = await self.gate.holding(held)
                except AgentosError as exc:  # the approval still counts; the audit names no findings
                    log.warning("override_findings_unread", task=held.id, error=str(exc))
            result = await self.lifecycle.review(repo, number, approve=approve, overridden=overridden)
            task = next((t for t in self.graph if t.repo == repo and t.pr == number and t.approved_at), None)
            if result["result"] != "approved" or task is None or task.status is not TaskStatus.PR_OPEN:
                return result
            with alog.bound(task=task.id, repo=repo, pr=number):
                await self.branches.sync(repo)
                hosted = await self.host.entries(repo)
                if hosted is not None and number in hosted:
                    return {"pr": result["pr"], "result": "enqueued"}  # in GitHub's queue already
                seen = await self._assess(task, hosted=hosted)
                enqueued = self.enqueued
                if isinstance(seen, _Candidate) and seen.up_to_date and await self._merge(task, seen.pr, seen.checks):
                    return {"pr": result["pr"], "result": "merged"}
                if self.enqueued != enqueued:
                    return {"pr": result["pr"], "result": "enqueued"}
        return {**result, "status": task.status.value}
