"""The groomer's work generation: a backlog below its target depth gets real candidates, each filed once.

::

    backlog (open, not loop-filed, stale, duplicate or blocked) < target (default 2 × plan_size)
        ──► evidence (jobs/_evidence.py) ──► planner agent (llm.py, validated) or the deterministic fallback
        ──► each proposal: like an open or recently closed issue, or a live task's branch?
                 yes ─► a pointer comment on that issue (once), nothing filed
                 no  ─► filed with agentos:proposed, type:<t>, prio:<p> (at most groom_max_per_run a run)

A run whose evidence is unchanged since a run that filed nothing asks nothing (no agent run an hour for nothing).
A run that asked an agent, filed, pointed or bootstrapped is journalled (``backlog_generated``).
A repo with no NORTH_STAR.md, STRATEGY.md or CODEBASE.md in its checkout gets one bootstrap issue for each, once
(never again, even after it is closed).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from agentos import logging as alog
from agentos.agents.prompt import context_section
from agentos.config import RepoConfig
from agentos.context import ProductContext
from agentos.forge.base import BLOCKED_LABEL, Forge, Issue, marker
from agentos.jobs._evidence import CODEBASE_FILE, Evidence, gather, read_repo_file
from agentos.jobs._loops import EventHistory, LoopSettings, comment_once, last_event, read_events, safely
from agentos.jobs._refill import (
    ProposedIssue,
    RefillAnswer,
    deterministic_proposals,
    failure_clusters,
    parse_proposals,
    refill_prompt,
)
from agentos.jobs._titles import DUPLICATE_LABEL, PROPOSED_LABEL, STALE_LABEL, is_loop_issue, similar_titles
from agentos.jobs._titles import normalise_title as normalise
from agentos.jobs.auto_ready import AutoReady
from agentos.llm import ModelAsker
from agentos.ops.metrics import read_history
from agentos.ports import Clock, Journal
from agentos.redact import redact
from agentos.task_graph import TaskGraph

__all__ = ["BOOTSTRAP", "Generated", "WorkGenerator", "backlog_of", "target_depth"]

log = alog.get_logger("agentos.groomer")

BOOTSTRAP: dict[str, str] = {
    "NORTH_STAR.md": "what the product is for and who it serves, in a few sentences: the outcome it is judged by",
    "STRATEGY.md": "how the product gets there: the bets of the next months, and what is deliberately not done",
    CODEBASE_FILE: "how the code is laid out, how to build and test it, and a `## Known Issues` section",
}
"""The documents a repo should have, and what each bootstrap issue asks for."""


MAX_PROPOSALS = 20
"""Proposals looked at per run at most (each match costs a comment lookup)."""


def target_depth(s: LoopSettings) -> int:
    """The backlog depth the groomer keeps: ``target_backlog_depth``, else 2 × ``plan_size`` (0: off)."""
    return s.target_backlog_depth if s.target_backlog_depth is not None else 2 * s.plan_size


@dataclass
class Generated:
    """What one generation run did (journalled as ``backlog_generated``)."""

    source: str = "off"
    filed: list[int] = field(default_factory=list)
    pointed: list[int] = field(default_factory=list)
    bootstrap: list[int] = field(default_factory=list)
    backlog: int = 0
    target: int = 0
    fingerprint: str = ""


def backlog_of(issues: Sequence[Issue]) -> list[Issue]:
    """The open issues that count toward the depth: not filed by the loops, stale, duplicates or blocked."""
    return [
        i
        for i in issues
        if i.state == "open"
        and not is_loop_issue(i)
        and not {STALE_LABEL, DUPLICATE_LABEL, BLOCKED_LABEL} & set(i.labels)
    ]


def _key(kind: str, title: str) -> str:
    return f"{kind}:" + hashlib.sha256(normalise(title).encode()).hexdigest()[:12]


class WorkGenerator:
    """Files candidates into a short backlog (see the module docstring); the groomer calls :meth:`generate`."""

    def __init__(
        self,
        *,
        journal: Journal,
        clock: Clock,
        graph: TaskGraph,
        forge: Forge,
        store: EventHistory,
        offers: AutoReady | None = None,
    ) -> None:
        self._journal = journal
        self._clock = clock
        self._graph = graph
        self._forge = forge
        self._store = store
        self._offers = offers

    def __repr__(self) -> str:
        return "<WorkGenerator>"

    async def generate(
        self,
        repo: RepoConfig,
        issues: list[Issue],
        s: LoopSettings,
        llm: ModelAsker | None,
        *,
        context: ProductContext | None = None,
    ) -> Generated:
        """One run over one repo (``issues``: open and closed); ``context``: its product context, or None."""
        result = Generated(target=target_depth(s))
        if not result.target:
            return result
        result.bootstrap = await self._bootstrap(repo, issues)
        result.backlog = len(backlog_of(issues)) + len(result.bootstrap)
        wanted = min(result.target - result.backlog, s.groom_max_per_run)
        if wanted <= 0:
            result.source = "full"
            return self._done(repo, result, asked=False)
        now = self._clock()
        since = now - timedelta(days=s.analysis_days)
        events = await read_events(self._store, now - timedelta(days=90))
        window = [e for e in events if e.ts >= since]
        clusters = failure_clusters(read_history(window, self._graph, since=since, until=now).failures, repo.name)
        evidence = gather(
            repo,
            graph=self._graph,
            events=events,
            issues=issues,
            clusters=clusters,
            objectives_file=s.objectives_file,
            since=since,
        )
        result.fingerprint = evidence.fingerprint()
        last = last_event(events, "backlog_generated", repo=repo.name)
        if last is not None and last.data.get("fingerprint") == result.fingerprint and not last.data.get("filed"):
            result.source = "unchanged"
            return self._done(repo, result, asked=False)
        proposals = await self._proposals(evidence, issues, wanted, llm, context, result)
        closed_since = now - timedelta(days=s.dedup_closed_days)
        taken = [i for i in issues if i.state == "open" or i.updated_at >= closed_since]
        live = {t.issue: t.title for t in self._graph if t.repo == repo.name and not t.is_terminal and t.branch}
        for item in proposals[:MAX_PROPOSALS]:
            if len(result.filed) >= wanted:
                break
            match = next((i for i in taken if similar_titles(item.title, i.title, s.duplicate_ratio)), None)
            if match is None:
                number = next((n for n, t in live.items() if similar_titles(item.title, t, s.duplicate_ratio)), None)
                match = next((i for i in issues if i.number == number), None) if number is not None else None
            if match is not None:
                await self._point(repo.name, match, item, result)
                continue
            made = await self._file(repo.name, item, issues)
            if made is not None:
                result.filed.append(made.number)
                taken.append(made)
        return self._done(repo, result, asked=True)

    async def _proposals(
        self,
        evidence: Evidence,
        issues: list[Issue],
        wanted: int,
        llm: ModelAsker | None,
        context: ProductContext | None,
        result: Generated,
    ) -> list[ProposedIssue]:
        proposals = None
        if llm is not None:
            question = refill_prompt(evidence, wanted, [i.title for i in issues], context=context_section(context))
            proposals = parse_proposals(await llm.ask(question, RefillAnswer))
            result.source = "asked" if proposals is not None else "no_answer"
        if proposals is None:
            proposals = deterministic_proposals(evidence, [i.body for i in issues])
            result.source = "deterministic" if proposals else ("no_llm" if llm is None else "no_answer")
        return proposals

    async def _point(self, repo: str, match: Issue, item: ProposedIssue, result: Generated) -> None:
        """One comment on ``match`` saying the groomer found the candidate there, instead of filing it."""
        body = (
            f"**agentos:** the backlog groomer found this candidate in the evidence and did not file it, "
            f"because this issue covers it: *{redact(item.title)[:200]}*."
        )
        key = _key("pointer", item.title)
        posted = await safely("comment", comment_once(self._forge, repo, match.number, body, key=key))
        if posted:
            result.pointed.append(match.number)

    async def _file(self, repo: str, item: ProposedIssue, issues: Sequence[Issue]) -> Issue | None:
        key = _key("proposed", item.title)
        if any(marker(key) in i.body for i in issues):
            return None  # filed before (and closed since): once
        kind, prio = item.task_type, item.priority
        text = (
            f"{redact(item.body)[:4000]}\n\nType: {kind}\nPriority: {prio}\n\n"
            "_Proposed by the backlog groomer. Make it ready to have it run._"
        )
        labels = [PROPOSED_LABEL, f"type:{kind}", f"prio:{prio}"]
        title = redact(item.title)[:200]
        made = await safely("create_issue", self._forge.create_issue(repo, title, text, labels, key=key))
        if made is None:
            return None
        log.info("backlog_candidate_filed", repo=repo, issue=made.number, type=kind, priority=prio)
        if self._offers is not None:
            await self._offers.offer(repo, made.number, made.title, "proposed")
        return made

    async def _bootstrap(self, repo: RepoConfig, issues: Sequence[Issue]) -> list[int]:
        """One issue per missing NORTH_STAR.md, STRATEGY.md, CODEBASE.md of the checkout, each once ever."""
        if not repo.path:
            return []
        filed = []
        for name, what in BOOTSTRAP.items():
            if read_repo_file(repo, name, limit=1) is not None:
                continue
            key = f"bootstrap:{name}"
            if any(marker(key) in i.body for i in issues):
                continue
            body = (
                f"## Goal\nWrite `{name}` at the repository's root: {what}.\n\n"
                f"## Success criteria\n- `{name}` exists and agentos's planner and groomer read it.\n\n"
                "Type: docs\nPriority: high\n\n_Filed once by the backlog groomer: the repo has no such file._"
            )
            labels = [PROPOSED_LABEL, "type:docs", "prio:high"]
            filing = self._forge.create_issue(repo.name, f"Write {name}", body, labels, key=key)
            made = await safely("create_issue", filing)
            if made is not None:
                filed.append(made.number)
        return filed

    def _done(self, repo: RepoConfig, result: Generated, *, asked: bool) -> Generated:
        if result.filed or result.pointed or result.bootstrap or (asked and result.source in ("asked", "no_answer")):
            self._journal.record("backlog_generated", None, repo=repo.name, **vars(result))
            log.info("backlog_generated", repo=repo.name, **vars(result))
        return result
