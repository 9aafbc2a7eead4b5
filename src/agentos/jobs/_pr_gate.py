"""The PR monitor's gate before a green PR may merge: the verifier, the LLM judge, the risk label, approval.

A PR that touches what it must not, that the stricter verifier finds stubs, skips, TODOs… in
(:mod:`agentos.jobs.findings`), or that the judge blocks (as a whole, or an acceptance criterion it judged
unmet), is high risk; a high-risk PR, or any PR of a ``dispatcher_only`` repo, waits for an operator's
approval (asked once: the ``agentos:review`` label and a notice with approve/reject actions). The findings
are a keyed comment on the PR, once per head commit. An operator's approval of a PR held by findings is an
override: :meth:`ReviewGate.holding` says which.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection

from agentos import logging as alog
from agentos.forge.base import REVIEW_LABEL, Forge, PullRequest
from agentos.graph import Task
from agentos.jobs._pr_git import Branches
from agentos.jobs._pr_policy import verify_comment
from agentos.jobs.findings import scan
from agentos.jobs.verify import Finding, JudgeVerdict, PRDiff, Risk, assess_risk, judge_findings, judge_prompt, verify
from agentos.llm import ModelAsker, from_config
from agentos.ports import Action, Journal, Notify, Settings
from agentos.redact import redact

log = alog.get_logger("agentos.pr_monitor")

RISK_LABELS: dict[str, str] = {"low": "risk:low", "medium": "risk:medium", "high": "risk:high"}


class ReviewGate:
    """Labels a green PR's risk and says whether it may merge now."""

    def __init__(
        self, *, settings: Settings, journal: Journal, forge: Forge, notify: Notify, branches: Branches
    ) -> None:
        self.settings = settings
        self.journal = journal
        self.forge = forge
        self.notify = notify
        self.branches = branches
        self._judged: dict[str, tuple[str, list[Finding]]] = {}  # task id → (head sha, LLM judge's findings)
        self._verified: dict[str, tuple[str, list[Finding]]] = {}  # task id → (head sha, its findings)
        self._reported: dict[str, str] = {}  # task id → the head sha whose findings are on the PR

    def __repr__(self) -> str:
        return f"<ReviewGate judged={len(self._judged)} verified={len(self._verified)}>"

    def forget(self, live: Collection[str]) -> None:
        """Drop what the verifier and the judge said about tasks whose PR is no longer open."""
        self._judged = {k: v for k, v in self._judged.items() if k in live}
        self._verified = {k: v for k, v in self._verified.items() if k in live}
        self._reported = {k: v for k, v in self._reported.items() if k in live}

    async def passes(self, task: Task, pr: PullRequest) -> bool:
        """Label the PR's risk; True when it may merge (no approval needed, or given)."""
        repo = self.settings.repo(task.repo)
        diff = await self.branches.diff(task.repo, pr)
        findings = await self._findings(task, pr, diff)
        risk = assess_risk(diff, findings, max_diff_lines=repo.max_diff_lines)
        await self._label_risk(task, pr, risk, findings)
        await self._report(task, pr, risk, findings)
        if task.approved_at is not None:
            return True
        if repo.automation_mode == "dispatcher_only" or risk == "high":
            await self._ask_approval(task, pr, risk, findings)
            return False
        return True

    async def holding(self, task: Task) -> list[Finding]:
        """The blocking findings that hold the task's PR on its current head (what an approval overrides).

        Read again from the diff when this daemon has not verified that head yet (after a restart); the LLM
        judge is not asked then (the operator waits for the answer), so only a judge's verdict already given
        on that head counts."""
        assert task.pr is not None
        pr = await self.forge.get_pr(task.repo, task.pr)
        seen = self._verified.get(task.id)
        if seen is None or seen[0] != pr.head_sha:
            findings = await self._findings(task, pr, await self.branches.diff(task.repo, pr), ask_judge=False)
        else:
            findings = seen[1]
        return [f for f in findings if f.blocking]

    async def _findings(self, task: Task, pr: PullRequest, diff: PRDiff, *, ask_judge: bool = True) -> list[Finding]:
        """The verifier's findings, the stricter ones, and the judge's when nothing blocks already."""
        repo = self.settings.repo(task.repo)
        findings = verify(
            diff, task_type=task.type, protected_paths=repo.protected_paths, max_diff_lines=repo.max_diff_lines
        )
        # a thread: a PR adding tens of thousands of lines is parsed and searched without stalling the loop
        findings += await asyncio.to_thread(
            scan, diff, goal=task.effective_goal, criteria=list(task.effective_criteria), config=repo.verifier
        )
        if not ask_judge:
            earlier = self._judged.get(task.id)
            if earlier is not None and earlier[0] == pr.head_sha:
                findings += earlier[1]
            return findings
        if repo.llm_judge and not any(f.blocking for f in findings):  # blocked already: no need to ask
            findings += await self._judge(task, pr, diff, repo.llm_judge)
        self._verified[task.id] = (pr.head_sha, findings)
        return findings

    async def _judge(self, task: Task, pr: PullRequest, diff: PRDiff, agent: str) -> list[Finding]:
        """The LLM judge's blocking findings on this head commit (its block, each acceptance criterion it judged
        unmet); asked once per head (fail-open: no answer, no finding)."""
        seen = self._judged.get(task.id)
        if seen is not None and seen[0] == pr.head_sha:
            return seen[1]
        llm: ModelAsker | None = from_config(self.settings.config, agent, self.settings.config.state_path)
        if llm is None:
            log.warning("llm_judge_unavailable", agent=agent, effect="not blocking")
            findings: list[Finding] = []
        else:
            criteria = list(task.success_criteria)
            verdict = await llm.ask(judge_prompt(task.title, task.type, diff, criteria), JudgeVerdict)
            findings = judge_findings(verdict, agent, criteria)
        self._judged[task.id] = (pr.head_sha, findings)
        log.info("llm_judged", agent=agent, blocks=len(findings))
        return findings

    async def _label_risk(self, task: Task, pr: PullRequest, risk: Risk, findings: list[Finding]) -> None:
        label = RISK_LABELS[risk]
        if label in pr.labels:
            return
        for other in RISK_LABELS.values():
            if other in pr.labels:
                await self.forge.remove_label(task.repo, pr.number, other)
        await self.forge.add_labels(task.repo, pr.number, [label])
        self.journal.record("pr_verified", task.id, pr=pr.number, risk=risk, findings=[f.code for f in findings])
        log.info("pr_verified", risk=risk, findings=[f.code for f in findings])

    async def _report(self, task: Task, pr: PullRequest, risk: Risk, findings: list[Finding]) -> None:
        """The findings as a comment on the PR, once per head commit (keyed: a restart repeats a no-op)."""
        if not findings or self._reported.get(task.id) == pr.head_sha:
            return
        body = redact(verify_comment(task, pr, risk, findings))
        await self.forge.comment(task.repo, pr.number, body, key=f"verify:{task.id}:{pr.head_sha[:12]}")
        self._reported[task.id] = pr.head_sha

    async def _ask_approval(self, task: Task, pr: PullRequest, risk: Risk, findings: list[Finding]) -> None:
        if REVIEW_LABEL in pr.labels:
            return  # asked already
        await self.forge.add_labels(task.repo, pr.number, [REVIEW_LABEL])
        self.journal.record("review_requested", task.id, pr=pr.number, risk=risk)
        ref = f"{task.repo}#{pr.number}"
        if risk == "high":
            reasons = "\n".join(
                f"- {f.code}{' ' + f.where if f.where else ''}: {f.detail}" for f in findings if f.blocking
            )
            text = f"PR {ref} is green but high risk and waits for your approval: {task.title}\n{reasons}"
        else:
            text = f"PR {ref} is green and waits for your approval: {task.title}"
        self.notify.notify(
            1,
            f"review:{task.id}:{pr.head_sha}",
            redact(text),
            [Action("approve", ref, "Approve"), Action("reject", ref, "Reject")],
        )
