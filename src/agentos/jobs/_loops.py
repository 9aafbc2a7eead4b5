"""What the improvement loops share: their settings, the journal window, and forge writes made exactly once.

Each loop is built with the ports it uses (``agentos.ports``: settings, journal, clock; the task graph, the
forge, the store for history reads, a ``stopping`` flag), never with the whole runtime; :func:`agentos.jobs.loop_jobs`
builds them all.

The loops (incident scanner, log analyzer, agent scorer, backlog groomer, sprint planner, daily digest)
read the journal and write only through the forge. Every write here is idempotent twice over: the forge
dedups by hidden key marker, and the helpers look for the marker first so that they can tell the caller
whether anything was written (a loop journals only what it actually did, so a second run changes nothing).
Every outbound text passes :func:`agentos.redact.redact`.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from agentos import logging as alog
from agentos.config import Config, RepoConfig
from agentos.context import DEFAULT_CONTEXT_FILES
from agentos.errors import AgentosError
from agentos.forge.base import Forge, Issue, marker
from agentos.graph import Event
from agentos.ports import Settings
from agentos.redact import redact

__all__ = [
    "FIX_LABEL",
    "EventHistory",
    "LoopSettings",
    "TunableSettings",
    "comment_once",
    "file_once",
    "find_marked",
    "last_event",
    "loop_repos",
    "read_events",
    "safely",
    "settings_for",
]

log = alog.get_logger("agentos.loops")
T = TypeVar("T")

FIX_LABEL = "autonomous-fix"
"""The label of issues the loops file about agentos's own failures."""


@dataclass(frozen=True)
class LoopSettings:
    """Thresholds and switches of the improvement loops (the ``loops:`` config section, when present).

    Every field has a default that is safe with no config at all: nothing here makes a backlog run
    (``sprint_enabled`` is off; the groomer's candidates wait for a human unless ``auto_ready`` says otherwise).
    """

    # incident scanner
    incident_threshold: int = 3
    incident_window_hours: float = 24.0
    fix_label: str = FIX_LABEL
    # log analyzer and agent scorer
    analysis_days: int = 7
    report_repo: str | None = None
    min_attempts: int = 3
    peer_gap: float = 0.3
    max_fix_issues: int = 3
    tune_margin: float = 0.1
    # backlog groomer
    groom_cadence_days: int = 7
    stale_days: int = 30
    close_stale_days: int | None = None
    duplicate_ratio: float = 0.9
    reready_codes: tuple[str, ...] = ("quota_limited", "runner_failure", "timeout", "environment_failure")
    reready_after_hours: float = 24.0
    max_rereadies: int = 2
    target_backlog_depth: int | None = None  # None: 2 × plan_size
    groom_max_per_run: int = 3
    dedup_closed_days: int = 30
    objectives_file: str = "OBJECTIVES.md"
    # the context layer (agentos.context): what the groomer's question quotes of the repo
    context_files: tuple[str, ...] = DEFAULT_CONTEXT_FILES
    context_file_chars: int = 6000
    context_max_chars: int = 20000
    objective_url_hosts: tuple[str, ...] = ()
    # outcome attribution (jobs/outcome_check.py)
    measurement_window_days: float = 7.0
    outcome_noise_pct: float = 5.0
    outcome_timeout_s: float = 300.0
    # sprint planner
    sprint_enabled: bool = False
    sprint_cadence_days: int = 7
    plan_size: int = 5
    sprint_auto_approve: bool = False
    sprint_approval_hours: float = 24.0
    # closing the loop: loop-filed issues that reach the queue by themselves
    auto_ready: str = "none"
    auto_ready_per_day: int = 3
    # dispatch intelligence: the one-shot normaliser and epic splits (jobs/normalise.py, jobs/epics.py)
    normalise: bool = False
    normalise_max_words: int = 40
    split_epics: bool = True
    # daily digest
    digest_window_hours: float = 24.0
    # one-shot LLM helper (naming incidents, proposing backlog items); None: deterministic only
    llm_agent: str | None = None


_FIELDS = frozenset(f.name for f in dataclasses.fields(LoopSettings))


class EventHistory(Protocol):
    """The journal's history, read by the loops (the store: rotated files, then the live journal)."""

    def iter_events(self, since: datetime) -> Iterator[Event]: ...


class TunableSettings(Settings, Protocol):
    """Settings the agent scorer may edit: the config file it came from, and the live config it replaces."""

    @property
    def config_path(self) -> Path | None: ...

    @property
    def config(self) -> Config: ...

    @config.setter
    def config(self, value: Config) -> None: ...


def settings_for(settings: Settings, explicit: LoopSettings | None = None) -> LoopSettings:
    """``explicit`` if given, else the config's ``loops:`` section (read on every tick, so reloads apply)."""
    if explicit is not None:
        return explicit
    raw = settings.config.loops.model_dump()
    known: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in raw.items() if k in _FIELDS}
    return LoopSettings(**known)


def loop_repos(settings: Settings, *, full_only: bool = False) -> list[RepoConfig]:
    """Enabled repos (and, with ``full_only``, only those in ``automation_mode: full``)."""
    repos = [r for r in settings.config.repos if settings.repo_enabled(r.name)]
    if full_only:
        repos = [r for r in repos if r.automation_mode == "full"]
    return repos


async def read_events(history: EventHistory, since: datetime) -> list[Event]:
    """Events with ``ts >= since`` (rotated history, then the journal), read off the event loop."""
    return await asyncio.to_thread(lambda: list(history.iter_events(since)))


def last_event(events: Iterable[Event], type_: str, **match: Any) -> Event | None:
    """The latest event of ``type_`` whose data has every ``match`` item."""
    found: Event | None = None
    for event in events:
        matches = event.type == type_ and all(event.data.get(k) == v for k, v in match.items())
        if matches and (found is None or event.ts >= found.ts):
            found = event
    return found


async def find_marked(forge: Forge, repo: str, key: str, *, state: str = "open") -> Issue | None:
    """The issue in ``repo`` whose body carries ``key``'s marker (``state``: open, closed or all)."""
    tag = marker(key)
    issues = await forge.list_issues(repo, state=state)  # type: ignore[arg-type]
    return next((i for i in issues if tag in i.body), None)


async def file_once(
    forge: Forge, repo: str, title: str, body: str, labels: list[str], *, key: str
) -> tuple[Issue, bool]:
    """The open issue carrying ``key``, or a new one; True when it was created now."""
    existing = await find_marked(forge, repo, key)
    if existing is not None:
        return existing, False
    issue = await forge.create_issue(repo, redact(title)[:200], redact(body), labels, key=key)
    log.info("loop_issue_filed", repo=repo, issue=issue.number, key=key)
    return issue, True


async def comment_once(forge: Forge, repo: str, number: int, body: str, *, key: str) -> bool:
    """Comment unless a comment carrying ``key`` is there; True when it was posted now."""
    tag = marker(key)
    if any(tag in c.body for c in await forge.comments(repo, number)):
        return False
    await forge.comment(repo, number, redact(body), key=key)
    log.info("loop_comment_posted", repo=repo, issue=number, key=key)
    return True


async def safely(what: str, coro: Awaitable[T]) -> T | None:
    """Await a forge call; a forge error is logged and gives None (the next run tries again)."""
    try:
        return await coro
    except AgentosError as exc:
        log.warning("loop_forge_call_failed", what=what, error=str(exc))
        return None
