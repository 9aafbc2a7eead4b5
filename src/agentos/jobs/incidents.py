"""The incident scanner: recurring failure signatures of the last 24 h become ``autonomous-fix`` issues.

::

    journal (24 h) ──► failures (metrics.read_history) ──► signature = blocker code + normalised headline
        ──► clusters seen ≥ threshold ──► an open issue carries incident:<sig>?  comment on it (≤ 1 a day)
                                                                          else   file one (repo most hit)

Deterministic first: the headline of an error is its most telling line (an ``…Error``/``…Exception``
name, a ``FAILED``/``ERROR`` line, a line with an error word, else the first line), normalised by
stripping timestamps, ids, URLs, paths, hex and numbers. An LLM, when configured, only names and
explains a new cluster. Never two open issues for one signature: the open one is looked up in every
enabled repo first. Only occurrences newer than the last report (journalled as ``incident_reported``) are
reported, so a second run in a row changes nothing.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from agentos import logging as alog
from agentos.forge.base import Forge, Issue, marker
from agentos.graph import Event, TaskStatus
from agentos.jobs._loops import (
    EventHistory,
    LoopSettings,
    comment_once,
    file_once,
    loop_repos,
    read_events,
    safely,
    settings_for,
)
from agentos.jobs.auto_ready import AutoReady
from agentos.jobs.incident_book import IncidentBook
from agentos.llm import ModelAsker, from_config
from agentos.ops.metrics import Failure, read_history
from agentos.ports import Action, Clock, Journal, Notify, Settings
from agentos.redact import redact
from agentos.task_graph import TaskGraph

__all__ = [
    "HINTS",
    "Cluster",
    "IncidentName",
    "IncidentScanner",
    "cluster_failures",
    "headline",
    "normalise_error",
    "signature",
]

log = alog.get_logger("agentos.incidents")

RECURRENCE_DAYS = 90
"""How far back a signature's filed fix issue is looked up when the signature comes back."""

_SUBS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), repl)
    for pattern, repl in (
        (r"\d{4}-\d{2}-\d{2}(?:[t ]\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:z|[+-]\d{2}:?\d{2})?)?", "<ts>"),
        (r"\b\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?\b", "<ts>"),
        (r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", "<id>"),
        (r"\b[a-z][a-z0-9+.-]*://\S+", "<url>"),
        (r"(?<![\w<>])(?:[a-z]:)?(?:[~.]{0,2}/)?(?:[\w.@+-]+/)+[\w.@+-]*", "<path>"),
        (r"\b0x[0-9a-f]+\b", "<hex>"),
        (r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{7,}\b", "<hex>"),
        (r"\d+(?:\.\d+)?", "<n>"),
    )
)
_EXC = re.compile(r"\b(?:[A-Z]\w*)?(?:Error|Exception)\b")
_FAILED_LINE = re.compile(r"^(?:FAILED|ERROR|FATAL|fatal|error)\b")
_ERROR_WORD = re.compile(
    r"\b(?:error|exception|traceback|fatal|denied|refused|not found|no such|timed out|cannot|can't|unable|"
    r"invalid|missing|limit|crash\w*|killed|segfault|panic)\b",
    re.IGNORECASE,
)
_DECORATION = re.compile(r"^[\s=_\-*#~.]*$")
_LAST_OUTPUT = re.compile(r";?\s*last output:.*$", re.IGNORECASE)
MAX_TEXT = 160

HINTS: dict[str, str] = {
    "timeout": "Attempts run out of time. Split the task, raise `limits.idle_timeout_minutes` / "
    "`limits.max_runtime_minutes`, or check that the test command cannot hang.",
    "runner_failure": "The agent CLI crashes or cannot start. Check its binary, version and login on the host.",
    "missing_credentials": "The agent is not authenticated. Check `pass_env` and the credential files.",
    "quota_limited": "Agents hit their usage limits. Add a fallback agent or lower `max_parallel_workers`.",
    "invalid_result_contract": "Agents end without a valid `.agent_result.md`. Check the prompt's contract "
    "section and that the agent may write in the worktree.",
    "test_failure": "The repo's tests fail after agents report complete. Check that the test command is "
    "green on the base branch and whether a test is flaky.",
    "environment_failure": "git or a hook fails. Read the excerpts; check disk space, hooks and the clone.",
    "no_diff_produced": "Agents report complete without changing anything. The issues may be unclear or already done.",
    "prompt_too_large": "Prompts exceed the limit. Trim CODEBASE.md or split the issues.",
}
DEFAULT_HINT = "Read the excerpts and find the common cause."


def headline(error: str) -> str:
    """The most telling line of an error text (see the module docstring)."""
    lines = [ln.strip() for ln in error.splitlines() if ln.strip() and not _DECORATION.match(ln)]
    if not lines:
        return ""
    for rule in (_EXC, _FAILED_LINE, _ERROR_WORD):
        for line in lines:
            if rule.search(line):
                return _LAST_OUTPUT.sub("", line).strip()
    return _LAST_OUTPUT.sub("", lines[0]).strip()


def normalise_error(text: str) -> str:
    """``text`` without what varies between occurrences of one problem (times, ids, paths, numbers).

    Not :func:`agentos.jobs._pr_policy.normalise` (a CI log line of a PR blocker: keeps file names, no length
    cap): the two feed different signatures that are stored (in issue markers and in tasks), so each keeps its
    own rules and they are named apart.
    """
    out = text
    for pattern, repl in _SUBS:
        out = pattern.sub(repl, out)
    return " ".join(out.lower().split())[:MAX_TEXT]


def signature(blocker: str, text: str) -> str:
    """A short stable id of (blocker code, normalised text)."""
    return hashlib.sha256(f"{blocker}\n{text}".encode()).hexdigest()[:12]


class IncidentName(BaseModel):
    """The LLM's name for a new incident: a short title and the likely cause."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    title: str = Field(min_length=5, max_length=120)
    explanation: str = Field(default="", max_length=4000)


@dataclass(frozen=True)
class Cluster:
    """Failures that share one signature, oldest first."""

    signature: str
    blocker: str
    text: str
    failures: tuple[Failure, ...]

    @property
    def count(self) -> int:
        return len(self.failures)

    @property
    def repos(self) -> list[tuple[str, int]]:
        """Repos by occurrences, most first (ties by name)."""
        return sorted(Counter(f.repo for f in self.failures).items(), key=lambda kv: (-kv[1], kv[0]))

    @property
    def agents(self) -> list[tuple[str, int]]:
        return sorted(Counter(f.agent for f in self.failures).items(), key=lambda kv: (-kv[1], kv[0]))

    @property
    def tasks(self) -> list[str]:
        return list(dict.fromkeys(f.task for f in self.failures))


def cluster_failures(failures: Iterable[Failure]) -> list[Cluster]:
    """Group failures by signature; the biggest cluster first (ties: the most recent first)."""
    groups: dict[str, list[Failure]] = {}
    meta: dict[str, tuple[str, str]] = {}
    for fail in failures:
        text = normalise_error(headline(fail.error)) or "(no error text)"
        sig = signature(fail.blocker, text)
        groups.setdefault(sig, []).append(fail)
        meta[sig] = (fail.blocker, text)
    clusters = [
        Cluster(sig, meta[sig][0], meta[sig][1], tuple(sorted(fails, key=lambda f: f.ts)))
        for sig, fails in groups.items()
    ]
    return sorted(clusters, key=lambda c: (-c.count, -c.failures[-1].ts.timestamp(), c.signature))


def _fence(text: str, limit: int = 800) -> str:
    body = redact(text.strip())[-limit:].replace("```", "'''")
    return f"```\n{body}\n```"


def _table(rows: Sequence[tuple[str, str]]) -> str:
    return "\n".join(["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)])


def _counts(pairs: Sequence[tuple[str, int]]) -> str:
    return ", ".join(f"{name} ({n})" for name, n in pairs)


def _evidence(failures: Sequence[Failure], *, excerpts: int = 3) -> str:
    tasks = list(dict.fromkeys(f"`{f.task}` ({f.agent}, {f.stage})" for f in failures))
    shown = tasks[:20] + ([f"… and {len(tasks) - 20} more"] if len(tasks) > 20 else [])
    distinct = list(dict.fromkeys(f.error.strip() for f in reversed(failures) if f.error.strip()))[:excerpts]
    parts = ["**Tasks:** " + ", ".join(shown)]
    if distinct:
        parts += ["", "**Excerpts** (latest first, redacted):", *(_fence(e) for e in distinct)]
    return "\n".join(parts)


def issue_body(c: Cluster, window_h: float, explanation: str = "") -> str:
    rows = [
        ("signature", f"`{c.signature}`"),
        ("blocker code", f"`{c.blocker}`"),
        ("normalised error", "`" + c.text.replace("|", "/").replace("`", "'") + "`"),
        ("first / last seen", f"{c.failures[0].ts:%Y-%m-%d %H:%M} / {c.failures[-1].ts:%Y-%m-%d %H:%M} UTC"),
        ("repos", _counts(c.repos)),
        ("agents", _counts(c.agents)),
    ]
    parts = [
        f"**agentos incident:** `{c.blocker}` failures with one signature were seen {c.count} times "
        f"in the last {window_h:g} h.",
        "",
        _table(rows),
        "",
        _evidence(c.failures),
        "",
        f"**Suggested next step:** {HINTS.get(c.blocker, DEFAULT_HINT)}",
    ]
    if explanation:
        parts += ["", "**What it may be** (LLM, unverified):", "", redact(explanation)[:1500]]
    parts += [
        "",
        "_Filed by the incident scanner. It comments here, at most once a day, while the failure recurs. "
        "Close the issue when the cause is fixed._",
    ]
    return "\n".join(parts)


def comment_body(c: Cluster, new: Sequence[Failure]) -> str:
    return "\n".join(
        [
            f"**Still recurring:** {len(new)} new occurrence(s) since the last report "
            f"({c.count} in the window; last at {new[-1].ts:%Y-%m-%d %H:%M} UTC).",
            "",
            _evidence(new, excerpts=1),
        ]
    )


def reported_upto(events: Iterable[Event], sig: str) -> datetime | None:
    """The last occurrence already reported for ``sig`` (from ``incident_reported`` events)."""
    seen = [
        datetime.fromisoformat(str(e.data["last_seen"]))
        for e in events
        if e.type == "incident_reported" and e.data.get("signature") == sig and e.data.get("last_seen")
    ]
    return max(seen, default=None)


class IncidentScanner:
    """The ``incident_scan`` job (every 6 h)."""

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
        notify: Notify | None = None,
        book: IncidentBook | None = None,
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
        """Where a new fix issue goes next (``loops.auto_ready``); None: it waits for a human."""
        self._notify = notify
        """Who hears of a signature that recurs after its fix merged (a sev1 notice)."""
        self._book = book
        """The operator's acks: an acked signature sends no notice (None: every notice is sent)."""
        self.filed = 0
        self.commented = 0

    def __repr__(self) -> str:
        return f"<IncidentScanner filed={self.filed} commented={self.commented}>"

    async def tick(self) -> None:
        s = settings_for(self._settings, self._loop_settings)
        now = self._clock()
        since = now - timedelta(hours=s.incident_window_hours)
        events = await read_events(self._store, since)
        history = read_history(events, self._graph, since=since, until=now)
        clusters = [c for c in cluster_failures(history.failures) if c.count >= s.incident_threshold]
        if not clusters:
            return
        repos = [r.name for r in loop_repos(self._settings)]
        listing: dict[str, list[Issue]] = {}
        for repo in repos:
            issues = await safely("list_issues", self._forge.list_issues(repo))
            if issues is None:
                return  # without every repo's open issues, a duplicate incident could be filed: next time
            listing[repo] = issues
        for c in clusters:
            if self._stopping():
                return
            with alog.bound(signature=c.signature, blocker=c.blocker):
                await self._report(c, events, listing, s, now)

    async def _report(
        self, c: Cluster, events: list[Event], listing: dict[str, list[Issue]], s: LoopSettings, now: datetime
    ) -> None:
        upto = reported_upto(events, c.signature)
        new = [f for f in c.failures if upto is None or f.ts > upto]
        if not new:
            return
        key = f"incident:{c.signature}"
        tag = marker(key)
        found = next(((repo, i) for repo, issues in listing.items() for i in issues if tag in i.body), None)
        if found is not None:
            repo, issue = found
            day = now.date().isoformat()
            body = comment_body(c, new)
            posted = await safely("comment", comment_once(self._forge, repo, issue.number, body, key=f"{key}:{day}"))
            if posted:
                self.commented += 1
                self._record("commented", c, repo, issue.number, new)
            return
        if await self._recurred(c, key, new, now):
            return
        home = next((name for name, _ in c.repos if name in listing), None)
        if home is None:
            log.info("incident_without_enabled_repo", repos=[r for r, _ in c.repos])
            return
        title, explanation = await self._name(c)
        body = issue_body(c, s.incident_window_hours, explanation)
        result = await safely("create_issue", file_once(self._forge, home, title, body, [s.fix_label], key=key))
        if result is None:
            return
        issue, created = result
        listing[home].append(issue)
        if created:
            self.filed += 1
            self._record("filed", c, home, issue.number, new)
            log.warning("incident_filed", repo=home, issue=issue.number, count=c.count)
            if self._offers is not None:
                await self._offers.offer(home, issue.number, title, "incident")

    async def _recurred(self, c: Cluster, key: str, new: Sequence[Failure], now: datetime) -> bool:
        """A signature whose fix issue was closed after its fix merged is back: tell a human, file nothing."""
        history = await read_events(self._store, now - timedelta(days=RECURRENCE_DAYS))
        filed = [
            e
            for e in history
            if e.type == "incident_reported"
            and e.data.get("signature") == c.signature
            and e.data.get("action") == "filed"
        ]
        if not filed:
            return False
        last = filed[-1]
        repo, number = str(last.data.get("repo")), int(last.data.get("issue") or 0)
        task = self._graph.latest_for_issue(repo, number)
        if task is None or task.status is not TaskStatus.MERGED:
            return False
        day = now.date().isoformat()
        text = (
            f"**Recurred after the fix merged:** the signature `{c.signature}` was seen {len(new)} more time(s) "
            f"(last at {new[-1].ts:%Y-%m-%d %H:%M} UTC) after the fix (PR #{task.pr}) merged. "
            "agentos files no new issue for it: a human should look at why the fix did not hold.\n\n"
            + _evidence(new, excerpts=1)
        )
        await safely("comment", comment_once(self._forge, repo, number, text, key=f"{key}:recurred:{day}"))
        self._record("escalated", c, repo, number, new)
        log.error("incident_recurred", repo=repo, issue=number, signature=c.signature)
        if self._notify is not None and not (self._book is not None and await self._book.acked(c.signature)):
            self._notify.notify(
                1,
                f"recurred:{c.signature}",
                f"Incident {repo}#{number} recurred after its fix merged ({c.blocker}: {c.text}). "
                "Escalated to you; no new issue filed.",
                [Action("show", f"{repo}#{number}", "Open issue")],
            )
        return True

    async def _name(self, c: Cluster) -> tuple[str, str]:
        """A title (and an explanation when an LLM is configured) for a new incident issue."""
        title = f"Recurring {c.blocker}: {c.text}"[:120]
        config = self._settings.config
        llm = self._llm or from_config(
            config, settings_for(self._settings, self._loop_settings).llm_agent, config.state_path
        )
        if llm is None:
            return title, ""
        excerpt = "\n---\n".join(f.error[-600:] for f in c.failures[-3:])
        answer = await llm.ask(
            "Several runs of coding agents failed the same way. Name the problem in a short issue title "
            "(at most 80 characters) and explain its likely cause in at most 5 sentences.\n"
            f"Blocker code: {c.blocker}\nNormalised error: {c.text}\nExcerpts:\n{excerpt}\n"
            'Answer as {"title": "...", "explanation": "..."}.',
            IncidentName,
        )
        if answer is None:
            return title, ""
        return f"Recurring {c.blocker}: {answer.title}"[:140], answer.explanation

    def _record(self, action: str, c: Cluster, repo: str, number: int, new: Sequence[Failure]) -> None:
        self._journal.record(
            "incident_reported",
            None,
            signature=c.signature,
            blocker=c.blocker,
            text=c.text,
            action=action,
            repo=repo,
            issue=number,
            count=c.count,
            new=len(new),
            tasks=c.tasks[:50],
            first_seen=new[0].ts.isoformat(),
            last_seen=c.failures[-1].ts.isoformat(),
        )
