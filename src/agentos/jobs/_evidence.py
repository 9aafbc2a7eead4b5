"""What the groomer generates work from: one repo's evidence, gathered from its files, the task graph and the journal.

:func:`gather` reads, for one repo:

- ``objectives``: the objectives file (``loops.objectives_file``, ``OBJECTIVES.md``) of its checkout;
- ``known_issues``: the bullets of ``CODEBASE.md``'s ``## Known Issues`` section;
- ``risks``: the ``RISKS`` of the result contracts (``.agent_result.md``) of attempts that ended in the window;
- ``outcomes``: its tasks that ended blocked or partial in the window (id, title, blocker, summary);
- ``findings``: the open weekly findings (issues the log analyzer filed);
- ``next_focus``: the last sprint report's next focus (:mod:`agentos.jobs.sprint_plan`);
- ``clusters``: its recurring failure signatures.

Everything here is untrusted text: the prompt quotes it (:mod:`agentos.jobs._refill`), the deterministic proposals
cut and redact it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from agentos.agents.contract import RESULT_FILE, ContractError, read_contract
from agentos.config import RepoConfig
from agentos.forge.base import Issue
from agentos.graph import Event
from agentos.jobs._loops import last_event
from agentos.jobs.incidents import Cluster
from agentos.task_graph import TaskGraph

__all__ = ["CODEBASE_FILE", "Evidence", "Outcome", "gather", "known_issues", "read_repo_file"]

CODEBASE_FILE = "CODEBASE.md"
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_BULLET = re.compile(r"^\s*[-*+]\s+(?:\[(?P<done>[ xX])\]\s+)?(?P<text>\S.*?)\s*$")
MAX_ITEMS = 20


@dataclass(frozen=True, slots=True)
class Outcome:
    """A task of the window that ended blocked or partial."""

    task: str
    issue: int
    title: str
    outcome: str
    blocker: str
    summary: str


@dataclass(frozen=True)
class Evidence:
    repo: str
    objectives: str = ""
    known_issues: tuple[str, ...] = ()
    risks: tuple[tuple[str, str], ...] = ()
    outcomes: tuple[Outcome, ...] = ()
    findings: tuple[str, ...] = ()
    next_focus: tuple[str, ...] = ()
    clusters: tuple[Cluster, ...] = field(default=())

    def fingerprint(self) -> str:
        """A short hash of the evidence: the same evidence twice is asked about once."""
        data = [
            self.objectives,
            self.known_issues,
            self.risks,
            [(o.task, o.outcome, o.blocker) for o in self.outcomes],
            self.findings,
            self.next_focus,
            [c.signature for c in self.clusters],
        ]
        return hashlib.sha256(json.dumps(data, default=str).encode()).hexdigest()[:12]


def known_issues(text: str) -> list[str]:
    """The open bullets of the ``## Known Issues`` section of a CODEBASE.md (any heading level)."""
    items: list[str] = []
    level: int | None = None
    for line in text.splitlines():
        heading = _HEADING.match(line)
        if heading:
            if level is not None and len(heading.group(1)) <= level:
                break
            if heading.group(2).strip().lower() == "known issues":
                level = len(heading.group(1))
            continue
        if level is None:
            continue
        m = _BULLET.match(line)
        if m and (m.group("done") or " ") == " ":
            items.append(m.group("text").rstrip("."))
    return items[:MAX_ITEMS]


def read_repo_file(repo: RepoConfig, name: str, limit: int = 8000) -> str | None:
    """A file of the repo's checkout (``path``), cut to ``limit``; None when it has none."""
    if not repo.path:
        return None
    root = Path(repo.path).expanduser().resolve()
    path = (root / name).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return None
    try:
        return path.read_text(encoding="utf-8", errors="replace")[:limit]
    except OSError:
        return None


def _risks_and_outcomes(graph: TaskGraph, repo: str, since: datetime) -> tuple[list[tuple[str, str]], list[Outcome]]:
    risks: list[tuple[str, str]] = []
    outcomes: list[Outcome] = []
    for task in list(graph):
        if task.repo != repo or task.updated_at < since:
            continue
        attempt = task.current_attempt
        if attempt is None:
            continue
        if attempt.run_dir:
            try:
                risk = read_contract(Path(attempt.run_dir) / RESULT_FILE).risks.strip()
            except ContractError:
                risk = ""
            if risk and risk.lower().rstrip(".") not in {"none", "n/a", "no", "-"}:
                risks.append((task.id, " ".join(risk.split())[:300]))
        if task.status.value == "blocked" or attempt.outcome == "partial":
            outcome = "partial" if attempt.outcome == "partial" else "blocked"
            summary = " ".join((attempt.summary or attempt.error).split())[:300]
            outcomes.append(Outcome(task.id, task.issue, task.title, outcome, task.last_blocker or "", summary))
    return risks[-MAX_ITEMS:], outcomes[-MAX_ITEMS:]


def gather(
    repo: RepoConfig,
    *,
    graph: TaskGraph,
    events: Sequence[Event],
    issues: Sequence[Issue],
    clusters: Sequence[Cluster],
    objectives_file: str,
    since: datetime,
) -> Evidence:
    """One repo's evidence (see the module docstring); ``events``: the journal since well before ``since``."""
    risks, outcomes = _risks_and_outcomes(graph, repo.name, since)
    focus = last_event(events, "sprint_reported", repo=repo.name)
    findings = [i.title for i in issues if i.state == "open" and "<!-- agentos:key=finding:" in i.body][:MAX_ITEMS]
    return Evidence(
        repo=repo.name,
        objectives=read_repo_file(repo, objectives_file) or "",
        known_issues=tuple(known_issues(read_repo_file(repo, CODEBASE_FILE) or "")),
        risks=tuple(risks),
        outcomes=tuple(outcomes),
        findings=tuple(findings),
        next_focus=tuple(str(x) for x in (focus.data.get("next_focus") or [])) if focus is not None else (),
        clusters=tuple(clusters),
    )
