"""The weekly loops: the log analyzer (chronic patterns → a report issue and fix issues) and the agent scorer.

Both read the last ``analysis_days`` (7) of the journal. Findings are pure functions of the history:

- ``weak_agent``: an agent whose success rate on a task type is ``peer_gap`` (0.3) or more below the pooled
  rate of the other agents on that type (each with ``min_attempts`` or more attempts);
- ``always_timeout``: a task with two or more attempts that all ended in ``timeout``;
- ``flaky_tests``, two heuristics: (1) a PR whose checks went red and later green **on the same head
  commit** (``pr_blocked`` kind ``red`` then ``pr_unblocked``, both carrying ``sha``: nothing changed but the
  result), once is enough; (2) one ``test_failure`` signature that hit two or more tasks which merged
  anyway (their change was not what broke the test).

The scorer ranks the agents of each type's chain by smoothed success rate ((s + 1) / (n + 2)) and
proposes a new ``routing.fallbacks.<type>`` order when the agent moved up beats the one it displaces by
``tune_margin``. Agents with too few attempts keep their place. The proposal is journalled
(``routing_proposed``) and, only with ``routing.auto_tune: true``, written to the config file keeping its
comments (``routing_tuned``).
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from ruamel.yaml.comments import CommentedSeq

from agentos import logging as alog
from agentos.config import ConfigError, set_value
from agentos.forge.base import Forge
from agentos.graph import TASK_TYPES, Event
from agentos.jobs._loops import (
    EventHistory,
    LoopSettings,
    TunableSettings,
    comment_once,
    file_once,
    find_marked,
    loop_repos,
    read_events,
    safely,
    settings_for,
)
from agentos.jobs.auto_ready import AutoReady
from agentos.jobs.incidents import headline, normalise_error, signature
from agentos.jobs.weekly_figures import weekly_sections
from agentos.ops.metrics import GroupStats, History, group_stats, read_history
from agentos.ports import Clock, Journal, Settings
from agentos.task_graph import TaskGraph

__all__ = [
    "AgentScorer",
    "Finding",
    "LogAnalyzer",
    "always_timeout",
    "find_chronic",
    "flaky_tests",
    "iso_week",
    "propose_order",
    "weak_agents",
    "worst_pair",
]

log = alog.get_logger("agentos.analysis")


@dataclass(frozen=True)
class Finding:
    kind: Literal["weak_agent", "always_timeout", "flaky_tests"]
    subject: str
    repo: str
    title: str
    detail: str
    score: float

    @property
    def key(self) -> str:
        return f"finding:{self.kind}:{self.subject}"


def iso_week(moment: datetime) -> str:
    year, week, _ = moment.isocalendar()
    return f"{year}-W{week:02d}"


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.0%}"


def _pairs(history: History) -> list[GroupStats]:
    return group_stats(history, lambda row: f"{row.agent} on {row.type}")


def _rated(history: History, agent: str | None, ttype: str) -> tuple[int, int]:
    rows = [r for r in history.attempts if r.type == ttype and r.rated and (agent is None or r.agent == agent)]
    return sum(1 for r in rows if r.succeeded), len(rows)


def worst_pair(history: History, min_attempts: int = 1) -> GroupStats | None:
    """The agent/type pair with the lowest success rate (most attempts first on a tie)."""
    rated = [g for g in _pairs(history) if g.success_rate is not None and g.attempts >= min_attempts]
    return min(rated, key=lambda g: (g.success_rate, -g.attempts, g.key), default=None)


def weak_agents(history: History, *, min_attempts: int = 3, gap: float = 0.3) -> list[Finding]:
    found = []
    for ttype in sorted({r.type for r in history.attempts}):
        agents = sorted({r.agent for r in history.attempts if r.type == ttype})
        counted = {a: _rated(history, a, ttype) for a in agents}
        judged = {a: sn for a, sn in counted.items() if sn[1] >= min_attempts}
        for agent, (succ, n) in judged.items():
            peers = [sn for a, sn in judged.items() if a != agent]
            if not peers:
                continue
            peer_rate = sum(s for s, _ in peers) / sum(m for _, m in peers)
            rate = succ / n
            if peer_rate - rate < gap:
                continue
            rows = [r for r in history.attempts if r.agent == agent and r.type == ttype]
            repo = Counter(r.repo for r in rows).most_common(1)[0][0]
            blockers = Counter(r.blocker for r in rows if r.blocker).most_common(3)
            detail = (
                f"`{agent}` succeeded on {succ} of {n} `{ttype}` attempts ({rate:.0%}); the other agents on "
                f"`{ttype}` succeeded on {peer_rate:.0%}.\n\nTop blockers: "
                + (", ".join(f"`{b}` ({k})" for b, k in blockers) or "none")
                + f"\n\nMove `{agent}` later in `routing.fallbacks.{ttype}` (the agent scorer proposes an "
                "order; `routing.auto_tune: true` applies it), or fix what makes it fail on this type."
            )
            found.append(
                Finding(
                    "weak_agent",
                    f"{agent}:{ttype}",
                    repo,
                    f"Agent {agent} succeeds on {rate:.0%} of {ttype} attempts (peers {peer_rate:.0%})",
                    detail,
                    (peer_rate - rate) * n,
                )
            )
    return found


def always_timeout(history: History, *, min_attempts: int = 2) -> list[Finding]:
    by_task: dict[str, list[str | None]] = defaultdict(list)
    repos: dict[str, str] = {}
    for row in history.attempts:
        if row.rated:
            by_task[row.task].append(row.blocker)
            repos[row.task] = row.repo
    found = []
    for task, blockers in sorted(by_task.items()):
        if len(blockers) >= min_attempts and all(b == "timeout" for b in blockers):
            found.append(
                Finding(
                    "always_timeout",
                    task,
                    repos[task],
                    f"Task {task} timed out on all {len(blockers)} attempts",
                    f"Every attempt at `{task}` this week ended in `timeout`. Split the issue into smaller ones, "
                    "check that its tests cannot hang, or raise the limits for this repo.",
                    float(len(blockers)),
                )
            )
    return found


def flaky_tests(history: History, *, min_tasks: int = 2) -> list[Finding]:
    """Suspected flaky tests: checks red then green on one commit, or one failure that does not stop merges."""
    found = _same_commit_flips(history)
    merged = {f.task for f in history.finishes if f.kind == "merged"}
    groups: dict[tuple[str, str], set[str]] = defaultdict(set)
    texts: dict[tuple[str, str], str] = {}
    for fail in history.failures:
        if fail.blocker != "test_failure" or fail.task not in merged:
            continue
        text = normalise_error(headline(fail.error)) or "(no error text)"
        sig = signature(fail.blocker, text)
        groups[(fail.repo, sig)].add(fail.task)
        texts[(fail.repo, sig)] = text
    for (repo, sig), tasks in sorted(groups.items()):
        if len(tasks) < min_tasks:
            continue
        found.append(
            Finding(
                "flaky_tests",
                f"{repo}:{sig}",
                repo,
                f"Suspected flaky test in {repo}: {texts[(repo, sig)]}"[:140],
                f"The same test failure (`{texts[(repo, sig)]}`) hit {len(tasks)} tasks that merged anyway: "
                + ", ".join(f"`{t}`" for t in sorted(tasks))
                + ". A failure that does not stop unrelated changes from merging is likely flaky: run the test "
                "repeatedly on the base branch and fix or quarantine it.",
                float(len(tasks)),
            )
        )
    return found


def _same_commit_flips(history: History) -> list[Finding]:
    """One finding per repo and red signature whose checks failed then passed on an unchanged head commit."""
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for flip in history.flips:
        groups[(flip.repo, flip.signature)].append(f"`{flip.task}` at `{flip.sha[:12]}`")
    found = []
    for (repo, sig), where in sorted(groups.items()):
        checks = sig.split(":")[1] if sig.count(":") >= 2 else "the checks"
        found.append(
            Finding(
                "flaky_tests",
                f"{repo}:{sig.rsplit(':', 1)[-1]}",
                repo,
                f"Flaky test in {repo}: {checks} failed then passed on the same commit"[:140],
                f"The checks `{checks}` failed and later passed with no new commit: "
                + ", ".join(where)
                + ". Nothing changed but the result, so a test is flaky: run it repeatedly on the base branch "
                "and fix or quarantine it.",
                2.0 * len(where) + 1,
            )
        )
    return found


def find_chronic(history: History, s: LoopSettings) -> list[Finding]:
    """Every finding of the week, the most severe first."""
    found = [
        *weak_agents(history, min_attempts=s.min_attempts, gap=s.peer_gap),
        *always_timeout(history),
        *flaky_tests(history),
    ]
    return sorted(found, key=lambda f: (-f.score, f.key))


def _stats_table(groups: Sequence[GroupStats], title: str) -> list[str]:
    lines = [
        f"| {title} | attempts | success | merged | escalated | att./merge | cost $ | top blocker |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for g in groups:
        top = f"`{g.top_blockers[0][0]}` ({g.top_blockers[0][1]})" if g.top_blockers else "-"
        per = "-" if g.attempts_per_merged is None else f"{g.attempts_per_merged:.1f}"
        lines.append(
            f"| {g.key} | {g.attempts} | {_pct(g.success_rate)} | {g.merged} | {g.escalated} | {per} | "
            f"{g.cost_usd:.2f} | {top} |"
        )
    return lines


def report_body(
    history: History,
    findings: Sequence[tuple[Finding, int | None]],
    proposals: Sequence[Event],
    *,
    since: datetime,
    until: datetime,
    sections: Sequence[str] = (),
) -> str:
    """The report issue's body (``sections``: :func:`agentos.jobs.weekly_figures.weekly_sections`' lines)."""
    overall = group_stats(history, lambda _r: "all")
    pairs = sorted(
        (g for g in _pairs(history) if g.success_rate is not None),
        key=lambda g: (g.success_rate, -g.attempts, g.key),
    )
    worst = worst_pair(history)
    parts = [f"**agentos weekly report**, {since:%Y-%m-%d} to {until:%Y-%m-%d}.", ""]
    if overall:
        g = overall[0]
        parts += [
            f"{g.attempts} attempts, success {_pct(g.success_rate)}; {g.merged} merged, {g.escalated} escalated "
            f"(escalation rate {_pct(g.escalation_rate)}); {g.tokens} tokens, ${g.cost_usd:.2f}.",
            "",
        ]
    else:
        parts += ["No attempts this week.", ""]
    if worst is not None:
        parts += [
            f"**Worst agent/type pair:** {worst.key}: {_pct(worst.success_rate)} of {worst.attempts} attempts.",
            "",
        ]
    if pairs:
        parts += ["### Agent × task type (worst first)", "", *_stats_table(pairs, "agent on type"), ""]
    repos = group_stats(history, lambda r: r.repo)
    if repos:
        parts += ["### Repos", "", *_stats_table(repos, "repo"), ""]
    parts += [*sections, "### Findings", ""]
    if findings:
        for finding, number in findings:
            link = f" (#{number} in {finding.repo})" if number else ""
            parts.append(f"- **{finding.title}**{link}")
    else:
        parts.append("None.")
    if proposals:
        parts += ["", "### Routing proposals (agent scorer)", ""]
        for ev in proposals:
            d = ev.data
            state = "applied" if d.get("applied") else "not applied (`routing.auto_tune` is off)"
            parts.append(f"- `{d.get('type')}`: {d.get('current')} → {d.get('proposed')}, {state}")
    parts += ["", "_Filed by the log analyzer once a week._"]
    return "\n".join(parts)


class LogAnalyzer:
    """The ``log_analysis`` job (Mondays 07:00): one report issue per ISO week plus fix issues."""

    def __init__(
        self,
        *,
        settings: Settings,
        journal: Journal,
        clock: Clock,
        graph: TaskGraph,
        forge: Forge,
        store: EventHistory,
        loop_settings: LoopSettings | None = None,
        offers: AutoReady | None = None,
    ) -> None:
        self._settings = settings
        self._journal = journal
        self._clock = clock
        self._graph = graph
        self._forge = forge
        self._store = store
        self._loop_settings = loop_settings
        self._offers = offers
        """Where a new fix issue goes next (``loops.auto_ready``); None: it waits for a human."""

    def __repr__(self) -> str:
        return "<LogAnalyzer>"

    async def tick(self) -> None:
        s = settings_for(self._settings, self._loop_settings)
        repos = [r.name for r in loop_repos(self._settings)]
        home = s.report_repo if s.report_repo in repos else (repos[0] if repos else None)
        if home is None:
            log.info("weekly_report_skipped", reason="no enabled repo")
            return
        now = self._clock()
        week = iso_week(now)
        report_key = f"weekly-report:{week}"
        if await safely("find", find_marked(self._forge, home, report_key, state="all")) is not None:
            return  # this week's report exists (open or closed): nothing to redo
        since = now - timedelta(days=s.analysis_days)
        earlier = await read_events(self._store, since - timedelta(days=s.analysis_days))
        events = [e for e in earlier if e.ts >= since]
        history = read_history(events, self._graph, since=since, until=now)
        if not history.attempts and not history.finishes:
            log.info("weekly_report_skipped", reason="no activity", week=week)
            return
        last_week = read_history(earlier, self._graph, since=since - timedelta(days=s.analysis_days), until=since)
        findings = find_chronic(history, s)
        linked: list[tuple[Finding, int | None]] = []
        for finding in findings:
            number = None
            if len(linked) < s.max_fix_issues and finding.repo in repos:
                number = await self._file(finding, week, s)
            linked.append((finding, number))
        proposals = [e for e in events if e.type == "routing_proposed"]
        sections = weekly_sections(history, last_week, events)
        body = report_body(history, linked, proposals, since=since, until=now, sections=sections)
        title = f"agentos weekly report {week}"
        result = await safely("create_issue", file_once(self._forge, home, title, body, [], key=report_key))
        if result is not None and result[1]:
            number, found = result[0].number, len(findings)
            self._journal.record("weekly_report_filed", None, week=week, repo=home, issue=number, findings=found)

    async def _file(self, finding: Finding, week: str, s: LoopSettings) -> int | None:
        body = f"{finding.detail}\n\n_Filed by the log analyzer ({week}). It comments here weekly while seen._"
        existing = await safely("find", find_marked(self._forge, finding.repo, finding.key))
        if existing is not None:
            if f"({week})" in existing.body:
                return existing.number  # filed this week by an earlier, interrupted run
            note = f"Still seen in {week}: {finding.title}.\n\n{finding.detail}"
            posted = await safely(
                "comment", comment_once(self._forge, finding.repo, existing.number, note, key=f"{finding.key}:{week}")
            )
            if posted:
                self._record(finding, existing.number, "commented")
            return existing.number
        result = await safely(
            "create_issue", file_once(self._forge, finding.repo, finding.title, body, [s.fix_label], key=finding.key)
        )
        if result is None:
            return None
        if result[1]:
            self._record(finding, result[0].number, "filed")
            if self._offers is not None:
                await self._offers.offer(finding.repo, result[0].number, finding.title, "finding")
        return result[0].number

    def _record(self, finding: Finding, number: int, action: str) -> None:
        self._journal.record(
            "finding_reported", None, kind=finding.kind, key=finding.key, repo=finding.repo, issue=number, action=action
        )


def propose_order(
    chain: Sequence[str], counts: dict[str, tuple[int, int]], *, min_attempts: int = 3, margin: float = 0.1
) -> list[str] | None:
    """A better order of ``chain`` by smoothed success rate, or None when it would not change enough.

    ``counts[agent] = (successes, rated attempts)``. Agents with fewer than ``min_attempts`` keep their slot.
    """

    def smoothed(agent: str) -> float:
        succ, n = counts.get(agent, (0, 0))
        return (succ + 1) / (n + 2)

    scored = [a for a in chain if counts.get(a, (0, 0))[1] >= min_attempts]
    if len(scored) < 2:
        return None
    ranked = sorted(scored, key=lambda a: (-smoothed(a), chain.index(a)))
    first_change = next((i for i, (old, new) in enumerate(zip(scored, ranked, strict=True)) if old != new), None)
    if first_change is None or smoothed(ranked[first_change]) - smoothed(scored[first_change]) < margin:
        return None
    order = iter(ranked)
    return [next(order) if agent in scored else agent for agent in chain]


class AgentScorer:
    """The ``agent_scoring`` job (Mondays 06:30): proposes, and with ``routing.auto_tune`` applies, chains."""

    def __init__(
        self,
        *,
        settings: TunableSettings,
        journal: Journal,
        clock: Clock,
        graph: TaskGraph,
        store: EventHistory,
        loop_settings: LoopSettings | None = None,
    ) -> None:
        self._settings = settings
        self._journal = journal
        self._clock = clock
        self._graph = graph
        self._store = store
        self._loop_settings = loop_settings

    def __repr__(self) -> str:
        return "<AgentScorer>"

    def proposals(self, history: History, s: LoopSettings) -> dict[str, tuple[list[str], list[str]]]:
        """``{type: (current chain, proposed chain)}`` for the types whose order should change."""
        cfg = self._settings.config
        types = sorted(set(cfg.routing.fallbacks) | {r.type for r in history.attempts if r.type in TASK_TYPES})
        out = {}
        for ttype in types:
            chain = cfg.chain_for(ttype)
            counts = {agent: _rated(history, agent, ttype) for agent in chain}
            proposed = propose_order(chain, counts, min_attempts=s.min_attempts, margin=s.tune_margin)
            if proposed is not None:
                out[ttype] = (chain, proposed)
        return out

    async def tick(self) -> None:
        s = settings_for(self._settings, self._loop_settings)
        now = self._clock()
        since = now - timedelta(days=s.analysis_days)
        events = await read_events(self._store, since)
        history = read_history(events, self._graph, since=since, until=now)
        auto = self._settings.config.routing.auto_tune
        for ttype, (current, proposed) in self.proposals(history, s).items():
            rates = {a: list(_rated(history, a, ttype)) for a in current}
            applied = auto and await self._apply(ttype, current, proposed)
            seen = any(
                e.type == "routing_proposed" and e.data.get("type") == ttype and e.data.get("proposed") == proposed
                for e in events
            )
            if applied or not seen:
                self._journal.record(
                    "routing_proposed",
                    None,
                    type=ttype,
                    current=current,
                    proposed=proposed,
                    rates=rates,
                    applied=applied,
                )
            log.info("routing_proposed", type=ttype, current=current, proposed=proposed, applied=applied)

    async def _apply(self, ttype: str, current: list[str], proposed: list[str]) -> bool:
        path = self._settings.config_path
        if path is None:
            log.info("auto_tune_skipped", type=ttype, reason="the daemon runs without a config file")
            return False
        chain = CommentedSeq(proposed)
        chain.fa.set_flow_style()  # [a, b], as the example config writes chains
        try:
            new = await asyncio.to_thread(set_value, path, f"routing.fallbacks.{ttype}", chain)
        except ConfigError as exc:
            log.error("auto_tune_failed", type=ttype, error=str(exc).splitlines()[0])
            return False
        self._settings.config = new
        self._journal.record("routing_tuned", None, type=ttype, before=current, after=proposed, path=str(path))
        log.warning("routing_tuned", type=ttype, before=current, after=proposed)
        return True
