"""What the backlog groomer refills with: the planner LLM's proposals (validated), or deterministic ones.

The LLM (``loops.llm_agent``) gets the repo's objectives file, its recent failure signatures and every
existing title (open and closed), and answers ``{"issues": [{"title": …, "body": …}]}``. The answer is
validated with :class:`RefillAnswer` by :meth:`agentos.llm.Llm.ask` (asked again once when it does not); an
item that does not validate as a :class:`ProposedIssue` is dropped on its own. With no agent
configured, or an agent that fails or answers garbage, :func:`deterministic_proposals` proposes the open
items of the objectives file (``- item``, ``- [ ] item``) and recurring failures that have no incident issue.
Pure functions: the groomer does the I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agentos import logging as alog
from agentos.forge.base import marker
from agentos.jobs.incidents import Cluster, cluster_failures
from agentos.ops.metrics import Failure
from agentos.redact import redact

__all__ = [
    "ProposedIssue",
    "RefillAnswer",
    "deterministic_proposals",
    "failure_clusters",
    "objective_items",
    "parse_proposals",
    "refill_prompt",
]

log = alog.get_logger("agentos.groomer")

_BULLET = re.compile(r"^\s*[-*+]\s+(?:\[(?P<done>[ xX])\]\s+)?(?P<text>\S.*?)\s*$")
MAX_FAILURES = 5


class ProposedIssue(BaseModel):
    """One issue the planner proposes: a title that reads as a task and a body (Goal, Success criteria)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    title: str = Field(min_length=5, max_length=200)
    body: str = Field(default="", max_length=8000)

    @field_validator("title")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if "\n" in value:
            raise ValueError("a title is one line")
        return value


class RefillAnswer(BaseModel):
    """The planner's whole answer; each item is validated on its own by :func:`parse_proposals`."""

    model_config = ConfigDict(extra="ignore")

    issues: list[dict[str, Any]] = Field(max_length=100)


def parse_proposals(answer: RefillAnswer | None) -> list[ProposedIssue] | None:
    """The valid proposals of the planner's (validated) answer; None when there is none."""
    if answer is None:
        return None
    proposals = []
    for n, item in enumerate(answer.issues):
        try:
            proposals.append(ProposedIssue.model_validate(item))
        except ValidationError as exc:
            log.info("refill_item_rejected", item=n, error=exc.errors()[0]["msg"])
    return proposals


def objective_items(text: str) -> list[str]:
    """The open bullet items of an objectives file (``- x``, ``* x``, ``- [ ] x``; not ``- [x] x``)."""
    items = []
    for line in text.splitlines():
        m = _BULLET.match(line)
        if m and (m.group("done") or " ") == " ":
            items.append(m.group("text").rstrip("."))
    return items


def failure_clusters(failures: Iterable[Failure], repo: str, minimum: int = 2) -> list[Cluster]:
    """The repo's recurring failure signatures (seen ``minimum`` times or more), biggest first."""
    clusters = cluster_failures(f for f in failures if f.repo == repo)
    return [c for c in clusters if c.count >= minimum][:MAX_FAILURES]


def deterministic_proposals(objectives: str, clusters: Sequence[Cluster], bodies: Sequence[str]) -> list[ProposedIssue]:
    """Proposals without an LLM: open objectives, then recurring failures that no incident issue covers."""
    out: list[tuple[str, str]] = []
    for item in objective_items(objectives):
        body = f"## Goal\n{item}\n\n## Success criteria\n- {item}: done and tested.\n\n_From the objectives file._"
        out.append((item[:200], body))
    for c in clusters:
        if any(marker(f"incident:{c.signature}") in b for b in bodies):
            continue  # the incident scanner already filed it
        title = f"Fix recurring {c.blocker} failures: {c.text[:100]}"
        tasks = ", ".join(f"`{t}`" for t in c.tasks[:10])
        body = (
            f"## Goal\nStop the recurring `{c.blocker}` failure `{c.text}` (signature `{c.signature}`).\n\n"
            f"## Success criteria\n- The failure does not recur.\n\nSeen {c.count} times, in {tasks}."
        )
        out.append((title, body))
    valid = []
    for title, body in out:
        try:
            valid.append(ProposedIssue(title=title, body=body))
        except ValidationError:
            continue  # an objective line too short to be a title
    return valid


def refill_prompt(
    repo: str,
    wanted: int,
    objectives: str,
    clusters: Sequence[Cluster],
    titles: Sequence[str],
    *,
    context: str = "",
) -> str:
    """The planner's question (redacted again by :mod:`agentos.llm` before it leaves the process); ``context``:
    the repo's product context, already quoted and fenced (:func:`agentos.agents.prompt.context_section`)."""
    failures = "\n".join(f"- `{c.blocker}` ×{c.count}: {c.text}" for c in clusters) or "(none)"
    return (
        f"You plan work for the software repository {repo}. Propose {wanted} new issues that move it "
        "toward its objectives or stop its recurring failures. Each needs a short one-line title and a body "
        "with '## Goal' and '## Success criteria' sections. Do not repeat an existing issue, open or closed.\n\n"
        + (f"{redact(context)}\n" if context else "")
        + f"Objectives:\n{redact(objectives) or '(none written down)'}\n\n"
        f"Recurring failures (last days, blocker ×count: normalised error):\n{failures}\n\n"
        "Existing issues:\n"
        + "\n".join(f"- {t}" for t in titles[-200:])
        + '\n\nAnswer as {"issues": [{"title": "...", "body": "..."}]}.'
    )
