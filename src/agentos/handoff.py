"""The hand-off of a complete attempt: from its committed work to a pull request (the executor's second half).

    commit → VALIDATING → diff? → tests → CODEBASE.md entry → secret scan → lease push →
    PR (found by its head branch first) → keyed comment → PR_OPEN           (a review round: the reviewers told)
    no diff ──► lifecycle decides (an answer, or a failure) · red tests, a secret ──► lifecycle.validation_failed

Every step may be repeated safely (worktree reset, lease pushes, the PR found by branch, comments by key), so a
hand-off whose coroutine died is run again from the start (:meth:`Handoff.resume`, after a crash or by the
watchdog). Composed with :class:`~agentos.executor.Executor`, which runs the attempt before it.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from agentos import logging as alog
from agentos import memory
from agentos.agents.contract import RESULT_FILE, ContractError, read_contract
from agentos.errors import AgentosError
from agentos.forge.base import Forge
from agentos.forge_calls import best_effort
from agentos.fsutil import atomic_write_text
from agentos.graph import REVIEW_BLOCKER, Attempt, Task, TaskStatus
from agentos.jobs.reviews import reply_to_review
from agentos.lifecycle import Lifecycle
from agentos.notices import attempt_comment, commit_message, pr_body
from agentos.ports import Clock, Journal, Settings, Wake, Workspaces
from agentos.proc import CommandResult
from agentos.redact import find_secrets, redact
from agentos.run_files import attempt_dir
from agentos.runners.attempt_egress import attempt_tests
from agentos.runners.egress import EgressProxy
from agentos.verdicts import Verdict
from agentos.workspace import Workspace

__all__ = ["Handoff"]

log = alog.get_logger("agentos.executor")


class Handoff:
    """Proves, records and publishes a complete attempt; its failures go to lifecycle."""

    def __init__(
        self,
        *,
        settings: Settings,
        journal: Journal,
        clock: Clock,
        forge: Forge,
        workspaces: Workspaces,
        lifecycle: Lifecycle,
        wake: Wake,
        egress: EgressProxy | None = None,
    ) -> None:
        self.settings = settings
        self.journal = journal
        self.clock = clock
        self.forge = forge
        self.workspaces = workspaces
        self.lifecycle = lifecycle
        self.wake = wake
        self.egress = egress

    def __repr__(self) -> str:
        return "<Handoff>"

    async def begin(
        self,
        task: Task,
        attempt: Attempt,
        ws: Workspace,
        worktree: Path,
        verdict: Verdict,
        *,
        tests: CommandResult | None = None,
        refused: str = "",
    ) -> None:
        """A complete attempt: its work is committed *before* VALIDATING is journalled, so a hand-off
        resumed after a crash starts from a clean worktree (what the test run left behind is dropped).
        ``tests``: the test run the runner already made where the agent ran (a Ray node; ``refused``: what its
        proxy refused them), else the hand-off runs ``test_command`` here."""
        (worktree / RESULT_FILE).unlink(missing_ok=True)
        await ws.commit_all(worktree, commit_message(task, verdict.summary))
        self.journal.commit(task.complete_attempt(self.clock(), verdict.summary), [task])
        await self.run(task, attempt, ws, worktree, tests=tests, refused=refused)

    async def resume(self, task: Task, attempt: Attempt) -> None:
        """Run the hand-off of a VALIDATING task again, from a reset worktree (its coroutine died)."""
        alog.clear()
        with alog.bound(task=task.id, repo=task.repo, issue=task.issue, attempt=attempt.number):
            ws: Workspace | None = None
            worktree: Path | None = None
            try:
                ws = self.workspaces.workspace(self.settings.repo(task.repo))
                assert task.branch is not None
                worktree = await ws.prepare(task.branch)
                await ws.reset(worktree)
                await self.run(task, attempt, ws, worktree)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("handoff_crashed", error=repr(exc), exc_info=not isinstance(exc, AgentosError))
                if task.status is TaskStatus.VALIDATING:
                    detail = f"{type(exc).__name__}: {exc}"
                    await self.fail(task, "environment_failure", detail, ws=ws, worktree=worktree)

    async def run(
        self,
        task: Task,
        attempt: Attempt,
        ws: Workspace,
        worktree: Path,
        *,
        tests: CommandResult | None = None,
        refused: str = "",
    ) -> None:
        """Prove, record and publish a complete (committed) attempt. Every step may be repeated safely:
        the PR is found by its head branch before one is opened, the comment is keyed."""
        repo = self.settings.repo(task.repo)
        stat = await ws.diff_stat(worktree)
        if stat.files == 0:  # lifecycle decides: an answer (research, architecture, docs) or a failure
            contract = None
            with contextlib.suppress(ContractError):
                contract = read_contract(self._run_dir(task, attempt) / RESULT_FILE)
            await self.lifecycle.completed_without_change(task, attempt, contract)
            return
        if tests is None:
            tests, refused = await attempt_tests(ws, worktree, self.egress, self.journal, task.id, attempt.number)
        else:
            log.info("tests_ran_remotely", code=tests.code, timed_out=tests.timed_out, duration_s=tests.duration_s)
        task.note_egress(refused, attempt=attempt)
        if tests.code != 0 or tests.timed_out:
            why = "timed out" if tests.timed_out else f"exit {tests.code}"
            detail = f"`{repo.test_command}` {why}:\n{redact(tests.output_tail[-3000:])}"
            await self.fail(task, "test_failure", detail, ws=ws, worktree=worktree)
            return
        await ws.reset(worktree)  # drop what the test run left behind (caches, reports)
        if await memory.record(worktree, task, attempt, stat.paths):
            await ws.commit_all(worktree, f"CODEBASE.md: notes from {task.id}")  # the only change after the reset
        branch = task.branch or ""
        leaks, scanned = await ws.find_secrets(worktree, find_secrets)
        if leaks:
            await self._refuse_secret(task, attempt, ws, worktree, leaks)
            return
        await ws.push(worktree, branch, sha=scanned)  # the commit the scan read, not HEAD asked again
        pr = await self.forge.find_pr(task.repo, branch)
        if pr is None:
            body = pr_body(task, attempt, stat.files)
            pr = await self.forge.open_pr(task.repo, head=branch, base=repo.base_branch, title=task.title, body=body)
            log.info("pr_opened", pr=pr.number, url=pr.url)
        else:
            log.info("pr_reused", pr=pr.number, state=pr.state)
            if task.last_blocker == REVIEW_BLOCKER:  # the reviewers hear what changed, on their PR and threads
                await best_effort(reply_to_review(self.forge, task, pr.number, attempt))
        # The comment is keyed, so posting it before the state change is safe to repeat after a crash.
        await best_effort(
            self.forge.comment(
                task.repo,
                task.issue,
                redact(attempt_comment(task, attempt, pr.number)),
                key=f"attempt:{task.id}:{attempt.number}",
            )
        )
        self.journal.commit([task.open_pr(pr.number, self.clock())], [task])
        await best_effort(self.forge.set_board_status(task.repo, task.issue, "In Review"))
        self.wake("pr_monitor")

    async def fail(
        self, task: Task, code: str, detail: str, *, ws: Workspace | None = None, worktree: Path | None = None
    ) -> None:
        """The hand-off failed: the agent's work stays committed on the branch, test leftovers go; lifecycle decides."""
        if ws is not None and worktree is not None:
            with contextlib.suppress(AgentosError):
                await ws.reset(worktree)
        await self.lifecycle.validation_failed(task, code, detail)

    async def _refuse_secret(
        self, task: Task, attempt: Attempt, ws: Workspace, worktree: Path, leaks: list[str]
    ) -> None:
        """A branch that would publish a secret is never pushed: escalate, then reset the branch to the base
        (its change is kept, secret and all, in the run dir, which only agentos's user can read)."""
        base = f"refs/remotes/origin/{ws.base}"
        patch = self._run_dir(task, attempt) / "secret.patch"
        diff = await ws.git("diff", "--binary", "--no-color", f"{base}...HEAD", cwd=worktree, check=False)
        await asyncio.to_thread(atomic_write_text, patch, diff.out)
        shown = "; ".join(leaks[:5]) + (f" (+{len(leaks) - 5} more)" if len(leaks) > 5 else "")
        detail = (
            f"a push would publish a secret: {shown}. Nothing was pushed. The branch was reset to {ws.base}; its "
            f"change, secret included, is in {patch}. If the secret is real, rotate it."
        )
        log.warning("secret_in_branch", leaks=len(leaks))
        await self.fail(task, "secret_detected", detail, ws=ws, worktree=worktree)
        assert task.branch is not None
        if (worktree / ".git").exists():
            await ws.restore_branch(worktree, task.branch, base)
        else:  # the escalation removed the worktree; its branch stays, emptied
            await ws.git("branch", "-f", task.branch, base, check=False)

    def _run_dir(self, task: Task, attempt: Attempt) -> Path:
        return attempt_dir(self.settings.config.state_path, task, attempt)
