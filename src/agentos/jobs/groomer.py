"""The backlog groomer: stale issues, likely duplicates, blocker triage, and work that finds itself.

Runs hourly over each repo in ``automation_mode: full``. Every run:

- **blocker triage**: an ``agentos:blocked`` issue whose task was escalated with a transient or environmental
  blocker (``reready_codes``: ``quota_limited``, ``runner_failure``, ``timeout``, ``environment_failure``) at
  least ``reready_after_hours`` ago is made ready again, at most ``max_rereadies`` times per issue; each one
  journalled (``blocker_rereadied``) and commented once;
- **work generation** (:mod:`agentos.jobs.backlog_work`): a backlog below its target depth (``target_backlog_depth``,
  default 2 × ``plan_size``) gets candidates from the evidence, deduplicated, each with a type and a priority.

Once per cadence (``groom_cadence_days`` of the repo, else the loop default of 7; gated by its last
``backlog_groomed`` event) also:

1. **stale**: an open issue with no update for ``stale_days`` (30) that agentos is not working on
   (not ready, running or blocked) gets the ``agentos:stale`` label and one comment. With
   ``close_stale_days`` set, a labelled issue untouched for that long after the comment is closed.
   Removing the label keeps it open.
2. **duplicates**: two open issues whose normalised titles are equal or ``difflib`` similar (≥ 0.9, and
   the same numbers in both) are cross-linked: the newer gets ``agentos:duplicate`` and a comment naming
   the older, the older a comment naming the newer. Nothing is closed. Issues the loops filed are skipped.

Every comment carries a key, so a repeated pass writes nothing twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from agentos import logging as alog
from agentos.config import RepoConfig
from agentos.context import ProductContext, directory_reader, read_context
from agentos.forge.base import BLOCKED_LABEL, READY_LABEL, RUNNING_LABEL, Forge, Issue, marker
from agentos.graph import TaskStatus
from agentos.jobs._loops import (
    EventHistory,
    LoopSettings,
    comment_once,
    last_event,
    loop_repos,
    read_events,
    safely,
    settings_for,
)
from agentos.jobs._titles import (
    _LOOP_MARKER,
    DUPLICATE_LABEL,
    PROPOSED_LABEL,
    STALE_LABEL,
    is_loop_issue,
    normalise_title,
    similar_titles,
)
from agentos.jobs.auto_ready import AutoReady
from agentos.jobs.backlog_work import Generated, WorkGenerator
from agentos.llm import ModelAsker, from_config
from agentos.ports import Clock, Journal, Settings
from agentos.task_graph import TaskGraph

__all__ = [
    "DUPLICATE_LABEL",
    "PROPOSED_LABEL",
    "STALE_LABEL",
    "BacklogGroomer",
    "GroomResult",
    "find_duplicates",
    "is_loop_issue",
    "normalise_title",
    "similar_titles",
    "stale_issues",
]

log = alog.get_logger("agentos.groomer")

_ACTIVE_LABELS = frozenset({READY_LABEL, RUNNING_LABEL, BLOCKED_LABEL})
_SETTLE = timedelta(minutes=5)


def stale_issues(issues: Iterable[Issue], now: datetime, days: float) -> list[Issue]:
    """Open issues untouched for ``days`` that agentos is not working on."""
    cutoff = now - timedelta(days=days)
    return [
        i
        for i in issues
        if i.state == "open" and i.updated_at < cutoff and not (set(i.labels) & _ACTIVE_LABELS) and not is_loop_issue(i)
    ]


def find_duplicates(issues: Sequence[Issue], ratio: float = 0.9) -> list[tuple[Issue, Issue]]:
    """``(newer, older)`` pairs of likely duplicates among open issues; each newer issue at most once."""
    candidates = sorted(
        (i for i in issues if i.state == "open" and not is_loop_issue(i) and DUPLICATE_LABEL not in i.labels),
        key=lambda i: i.number,
    )
    pairs = []
    for k, newer in enumerate(candidates):
        older = next((o for o in candidates[:k] if similar_titles(newer.title, o.title, ratio)), None)
        if older is not None:
            pairs.append((newer, older))
    return pairs


@dataclass
class GroomResult:
    stale: list[int] = field(default_factory=list)
    closed: list[int] = field(default_factory=list)
    duplicates: list[list[int]] = field(default_factory=list)
    rereadied: list[int] = field(default_factory=list)
    proposed: list[int] = field(default_factory=list)
    refill: str = "off"


class BacklogGroomer:
    """The ``backlog_groom`` job (hourly; each repo once per its grooming cadence)."""

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
        llm: ModelAsker | None = None,
        offers: AutoReady | None = None,
    ) -> None:
        self._settings = settings
        self._journal = journal
        self._clock = clock
        self._graph = graph
        self._forge = forge
        self._store = store
        self._stopping = stopping
        self._loop_settings = loop_settings
        self._llm = llm
        self._offers = offers
        """Where a proposed issue goes next (``loops.auto_ready: all`` makes it ready); None: it waits."""
        self._work = WorkGenerator(journal=journal, clock=clock, graph=graph, forge=forge, store=store, offers=offers)
        self.groomed = 0

    def __repr__(self) -> str:
        return f"<BacklogGroomer groomed={self.groomed}>"

    def cadence_days(self, repo: RepoConfig, s: LoopSettings) -> int:
        return repo.groom_cadence_days or s.groom_cadence_days

    async def tick(self) -> None:
        s = settings_for(self._settings, self._loop_settings)
        repos = loop_repos(self._settings, full_only=True)
        if not repos:
            return
        now = self._clock()
        events = await read_events(self._store, now - timedelta(days=max(self.cadence_days(r, s) for r in repos)))
        for repo in repos:
            if self._stopping():
                return
            last = last_event(events, "backlog_groomed", repo=repo.name)
            due = last is None or now - last.ts >= timedelta(days=self.cadence_days(repo, s))
            with alog.bound(repo=repo.name):
                issues = await safely("list_issues", self._forge.list_issues(repo.name, state="all"))
                if issues is None:
                    continue
                if not due:
                    open_issues = [i for i in issues if i.state == "open"]
                    await self._reready(repo.name, open_issues, s, now, GroomResult())
                    await self._generate(repo, issues, s, GroomResult())
                    continue
                result = await self.groom(repo, issues, s, now)
            self.groomed += 1
            self._journal.record("backlog_groomed", None, repo=repo.name, **vars(result))
            log.info("backlog_groomed", **vars(result))

    async def groom(self, repo: RepoConfig, issues: list[Issue], s: LoopSettings, now: datetime) -> GroomResult:
        """One full pass over one repo's issues (open and closed); the gate is the caller's."""
        result = GroomResult()
        open_issues = [i for i in issues if i.state == "open"]
        await self._stale(repo.name, open_issues, s, now, result)
        await self._duplicates(repo.name, open_issues, s, result)
        await self._reready(repo.name, open_issues, s, now, result)
        await self._generate(repo, issues, s, result)
        return result

    async def _stale(self, repo: str, issues: list[Issue], s: LoopSettings, now: datetime, result: GroomResult) -> None:
        forge = self._forge
        for issue in stale_issues(issues, now, s.stale_days):
            await safely("add_labels", forge.add_labels(repo, issue.number, [STALE_LABEL]))
            body = (
                f"**agentos:** this issue has had no activity for {s.stale_days} days. Is it still wanted? "
                f"Comment, or remove the `{STALE_LABEL}` label, to keep it"
                + (f"; otherwise it is closed in {s.close_stale_days} days." if s.close_stale_days else ".")
            )
            if await safely("comment", comment_once(forge, repo, issue.number, body, key=f"stale:{issue.number}")):
                result.stale.append(issue.number)
        if not s.close_stale_days:
            return
        for issue in issues:
            if STALE_LABEL not in issue.labels or set(issue.labels) & _ACTIVE_LABELS:
                continue
            comments = await safely("comments", forge.comments(repo, issue.number)) or []
            tag = marker(f"stale:{issue.number}")
            note = next((c for c in comments if tag in c.body), None)
            if note is None or now - note.created_at < timedelta(days=s.close_stale_days):
                continue
            if issue.updated_at > note.created_at + _SETTLE or comments[-1].id != note.id:
                continue  # someone touched it after our note
            await safely("close_issue", forge.close_issue(repo, issue.number))
            result.closed.append(issue.number)

    async def _duplicates(self, repo: str, issues: list[Issue], s: LoopSettings, result: GroomResult) -> None:
        for newer, older in find_duplicates(issues, s.duplicate_ratio):
            key = f"duplicate:{newer.number}:{older.number}"
            posted = await safely(
                "comment",
                comment_once(
                    self._forge,
                    repo,
                    newer.number,
                    f"**agentos:** this looks like a duplicate of #{older.number} ({older.title}). "
                    f"If it is not, remove the `{DUPLICATE_LABEL}` label.",
                    key=key,
                ),
            )
            await safely(
                "comment",
                comment_once(
                    self._forge, repo, older.number, f"**agentos:** #{newer.number} may duplicate this issue.", key=key
                ),
            )
            await safely("add_labels", self._forge.add_labels(repo, newer.number, [DUPLICATE_LABEL]))
            if posted:
                result.duplicates.append([newer.number, older.number])

    async def _reready(
        self, repo: str, issues: list[Issue], s: LoopSettings, now: datetime, result: GroomResult
    ) -> None:
        forge = self._forge
        for issue in issues:
            if BLOCKED_LABEL not in issue.labels:
                continue
            task = self._graph.latest_for_issue(repo, issue.number)
            if task is None or task.status is not TaskStatus.BLOCKED or task.last_blocker not in s.reready_codes:
                continue
            if now - task.updated_at < timedelta(hours=s.reready_after_hours):
                continue
            comments = await safely("comments", forge.comments(repo, issue.number)) or []
            done = sum(1 for c in comments if _LOOP_MARKER + "reready:" in c.body)
            if done >= s.max_rereadies:
                continue
            if any(marker(f"reready:{task.id}") in c.body for c in comments):
                continue
            body = (
                f"**agentos:** `{task.id}` was escalated with `{task.last_blocker}`, a transient blocker; "
                f"the issue is ready again (re-ready {done + 1} of at most {s.max_rereadies})."
            )
            await safely("remove_label", forge.remove_label(repo, issue.number, BLOCKED_LABEL))
            await safely("add_labels", forge.add_labels(repo, issue.number, [READY_LABEL]))
            await safely("comment", comment_once(forge, repo, issue.number, body, key=f"reready:{task.id}"))
            self._journal.record(
                "blocker_rereadied", task.id, repo=repo, issue=issue.number, blocker=task.last_blocker, count=done + 1
            )
            result.rereadied.append(issue.number)
            log.info("issue_rereadied", issue=issue.number, task=task.id, blocker=task.last_blocker)

    async def _generate(self, repo: RepoConfig, issues: list[Issue], s: LoopSettings, result: GroomResult) -> None:
        config = self._settings.config
        llm = self._llm or from_config(config, s.llm_agent, config.state_path)
        context = await _product_context(repo, s) if llm is not None else None
        made: Generated = await self._work.generate(repo, issues, s, llm, context=context)
        result.refill, result.proposed = made.source, made.filed + made.bootstrap


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
