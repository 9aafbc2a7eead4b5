"""The PR monitor: merge on green, rebase on conflict, send red back to an agent.

Merges in one repository are serialised (a merge queue): each pass merges at most the oldest green PR
per repo, and a merge is guarded by the head SHA its checks ran on, so a PR that moved after its checks
is never merged on stale results. "Already merged" is success.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from agentos import logging as alog
from agentos.control.notify import action_button
from agentos.errors import AgentosError, ControlError
from agentos.executor import Executor, counted_attempts, safe_id
from agentos.forge.base import REVIEW_LABEL, Checks, PullRequest
from agentos.graph import Task, TaskStatus, transition
from agentos.redact import redact
from agentos.runtime import Runtime

log = alog.get_logger("agentos.pr_monitor")


class PRMonitor:
    def __init__(self, rt: Runtime, executor: Executor) -> None:
        self.rt = rt
        self.executor = executor

    def _open_tasks(self) -> list[Task]:
        tasks = [t for t in self.rt.graph if t.status is TaskStatus.PR_OPEN and t.pr is not None]
        return sorted(tasks, key=lambda t: (t.repo, t.updated_at))

    async def tick(self) -> None:
        merged_in: set[str] = set()
        for task in self._open_tasks():
            if self.rt.stopping:
                return
            with alog.bound(task=task.id, repo=task.repo, pr=task.pr):
                try:
                    await self._check(task, merged_in)
                except AgentosError as exc:
                    log.warning("pr_check_failed", error=str(exc))

    async def _check(self, task: Task, merged_in: set[str]) -> None:
        rt = self.rt
        assert task.pr is not None
        pr = await rt.forge.get_pr(task.repo, task.pr)
        if pr.state == "merged":
            await self._mark_merged(task, pr.head_sha)
            return
        if pr.state == "closed":
            ev = transition(task, TaskStatus.CANCELLED, rt.now(), reason="pr_closed_without_merge")
            rt.commit([ev], [task])
            return
        if task.repo in merged_in:
            return  # one merge per repo per pass; the next PR is rebased onto it first
        if pr.mergeable is False:
            await self._rebase(task)
            return
        checks = await rt.forge.checks(task.repo, pr.number)
        if checks.sha and pr.head_sha and checks.sha != pr.head_sha:
            return  # checks of an older head; wait for the new ones
        if checks.state == "pending":
            return
        if checks.state == "failure":
            # The local forge's checks run on the merge result: a conflict fails them and only then is the PR
            # known to be unmergeable. A conflict is rebased, not sent to an agent as a test failure.
            if (await rt.forge.get_pr(task.repo, pr.number)).mergeable is False:
                await self._rebase(task)
                return
            await self._ci_failed(task, checks)
            return
        repo = rt.repo(task.repo)
        if repo.automation_mode == "dispatcher_only":
            await self._ask_review(task, pr)
            return
        if await self._merge(task, pr, checks):
            merged_in.add(task.repo)

    async def _merge(self, task: Task, pr: PullRequest, checks: Checks) -> bool:
        rt = self.rt
        title = f"{pr.title} (#{pr.number})"
        body = redact(pr.body) if f"Closes #{task.issue}" in pr.body else f"Closes #{task.issue}\n\n{redact(pr.body)}"
        result = await rt.forge.merge_pr(task.repo, pr.number, sha=checks.sha or pr.head_sha, title=title, body=body)
        if not result.merged:
            log.info("merge_refused", reason=result.message)
            if "conflict" in result.message.lower() or "not mergeable" in result.message.lower():
                await self._rebase(task)
            return False
        await self._mark_merged(task, result.sha)
        return True

    async def _mark_merged(self, task: Task, sha: str) -> None:
        rt = self.rt
        ev = transition(task, TaskStatus.MERGED, rt.now(), sha=sha, pr=task.pr)
        rt.commit([ev, rt.event("merged", task.id, pr=task.pr, sha=sha, attempts=len(task.attempts))], [task])
        log.info("pr_merged", sha=sha)
        await Executor._safe(rt.forge.close_issue(task.repo, task.issue))
        await Executor._safe(rt.forge.set_board_status(task.repo, task.issue, "Done"))
        if task.branch:
            try:
                await rt.workspace(rt.repo(task.repo)).remove(task.branch)
            except AgentosError as exc:
                log.warning("worktree_remove_failed", error=str(exc))
        if rt.notifier is not None:
            rt.notifier.notify(3, f"merged:{task.id}", f"Merged {task.repo}#{task.pr}: {task.title}")
        self.executor.on_slot_free()  # tasks that depended on this one may start now, not at the next tick

    async def _rebase(self, task: Task) -> None:
        """Rebase a conflicting PR's branch onto the base and push it (with a lease).

        When the rebase itself conflicts, the branch's change is saved as a patch, the branch is reset to
        the current base, and the task goes back to an agent to redo the change on top of it, with the
        conflicting files and the patch in its prompt (a branch that cannot be rebased cannot merge).
        """
        rt = self.rt
        ws = rt.workspace(rt.repo(task.repo))
        assert task.branch is not None
        worktree = await ws.prepare(task.branch)
        await ws.reset(worktree)
        result = await ws.rebase_onto_base(worktree)
        if result.ok:
            await ws.push(worktree, task.branch)
            rt.record("pr_rebased", task.id, pr=task.pr)
            log.info("pr_rebased")
            return
        base = f"refs/remotes/origin/{ws.base}"
        attempt = task.current_attempt
        run_dir = Path(attempt.run_dir) if attempt and attempt.run_dir else rt.state_dir / "runs" / safe_id(task.id)
        patch = run_dir / "conflict.patch"
        diff = await ws.git("diff", "--binary", "--no-color", f"{base}...HEAD", cwd=worktree)
        await asyncio.to_thread(_write, patch, diff.out)
        await ws.reset(worktree, to=base)
        if attempt is not None:
            attempt.patch_path = str(patch)
        conflicts = ", ".join(result.conflicts) or "(git named no file)"
        detail = (
            f"The PR's branch conflicts with {ws.base} in: {conflicts}. The branch was reset to the current "
            f"{ws.base}; the change it had is saved in {patch}. Redo that change on top of {ws.base}."
        )
        await self._send_back(task, "test_failure", detail, reason="rebase_conflict")

    async def _ci_failed(self, task: Task, checks: Checks) -> None:
        lines = [f"- {r.name}: {r.summary}\n{r.log_tail[-1500:]}" for r in checks.failing]
        detail = "CI failed on the PR:\n" + redact("\n".join(lines))
        await self._send_back(task, "test_failure", detail, reason="ci_failed")

    async def _send_back(self, task: Task, code: str, detail: str, *, reason: str) -> None:
        """A red or conflicting PR goes back to an agent on the same branch, up to the fix budget."""
        rt = self.rt
        limit = rt.config.routing.max_ci_fix_attempts
        last = task.current_attempt
        if last is not None:
            last.error = detail[-3000:]
        task.last_blocker = code
        if task.ci_fix_attempts >= limit or counted_attempts(task) >= rt.config.routing.max_attempts + limit:
            rt.commit([rt.event("ci_fix_exhausted", task.id, reason=reason)], [task])
            await self.executor._escalate(task, [], reason=reason)
            return
        task.ci_fix_attempts += 1
        ev = transition(task, TaskStatus.RETRYING, rt.now(), reason=reason, blocker=code)
        task.not_before = rt.now()
        rt.commit([ev], [task])
        log.info("pr_sent_back", reason=reason, fix_attempt=task.ci_fix_attempts)
        self.executor.on_slot_free()

    async def _ask_review(self, task: Task, pr: PullRequest) -> None:
        rt = self.rt
        if REVIEW_LABEL in pr.labels:
            return
        await rt.forge.add_labels(task.repo, pr.number, [REVIEW_LABEL])
        rt.record("review_requested", task.id, pr=pr.number)
        if rt.notifier is not None:
            rt.notifier.notify(
                1,
                f"review:{task.id}:{pr.head_sha}",
                f"PR {task.repo}#{pr.number} is green and waits for your approval: {task.title}",
                buttons=[
                    action_button("Approve", "approve", f"{task.repo}#{pr.number}"),
                    action_button("Reject", "reject", f"{task.repo}#{pr.number}"),
                ],
            )

    async def approve(self, repo: str, number: int, approve: bool) -> dict[str, Any]:
        """An operator's decision on a PR waiting for review (``/approve``, ``ctl approve``)."""
        rt = self.rt
        task = next((t for t in rt.graph if t.repo == repo and t.pr == number), None)
        if task is None:
            raise ControlError(f"no agentos task owns PR {repo}#{number}")
        if task.status is TaskStatus.MERGED:
            raise ControlError(f"PR {repo}#{number} is already merged")
        if task.status is not TaskStatus.PR_OPEN:
            raise ControlError(f"PR {repo}#{number} is not open for review (task is {task.status.value})")
        if not approve:
            await rt.forge.close_pr(repo, number, comment="Rejected by the operator.")
            ev = transition(task, TaskStatus.CANCELLED, rt.now(), reason="rejected")
            rt.commit([ev], [task])
            return {"pr": f"{repo}#{number}", "result": "rejected"}
        pr = await rt.forge.get_pr(repo, number)
        checks = await rt.forge.checks(repo, number)
        if checks.state != "success":
            raise ControlError(f"PR {repo}#{number} checks are {checks.state}; it merges only when green")
        if not await self._merge(task, pr, checks):
            raise ControlError(f"PR {repo}#{number} could not be merged now; it will be rebased and retried")
        return {"pr": f"{repo}#{number}", "result": "merged"}


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_text(text, encoding="utf-8")
