"""The operator's view of incidents: the open ones, **ack** (silence their notices) and **resolve** (close them).

The state is the journal, like the scanner's (:mod:`agentos.jobs.incidents`)::

    incident_reported (filed · commented · escalated) ──► open ──► incident_acked ──► open, silenced
                                                           └──────► incident_resolved ──► gone; fix issue closed

An incident is a signature with an ``incident_reported`` event newer than its last ``incident_resolved``. Its
count is the occurrences reported since then, first and last seen the first and latest of them, its fix issue the
one the last report names. An ack lasts until the signature is resolved: the scanner sends no notice for an acked
signature (its comments on the fix issue go on). A resolve closes the fix issue with a comment; a recurrence after
it is handled by the scanner's rule (a new fix issue, or an escalation when the fix merged through agentos), and the
signature is open again, not acked. Each ack and resolve is journalled with who did it (``ctl`` or ``telegram``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from agentos import logging as alog
from agentos.errors import ControlError
from agentos.forge.base import Forge
from agentos.graph import Event
from agentos.jobs._loops import EventHistory, comment_once, read_events, safely
from agentos.ports import Clock, Journal

__all__ = ["HISTORY_DAYS", "Incident", "IncidentBook", "open_incidents"]

log = alog.get_logger("agentos.incidents")

HISTORY_DAYS = 90
"""How far back the journal is read for incidents and the operator's decisions."""


@dataclass(frozen=True, slots=True)
class Incident:
    """One open signature as the operator sees it."""

    signature: str
    blocker: str
    text: str
    count: int
    first_seen: str
    last_seen: str
    repo: str
    issue: int
    acked_by: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "signature": self.signature,
            "blocker": self.blocker,
            "text": self.text,
            "count": self.count,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "fix_issue": f"{self.repo}#{self.issue}" if self.issue else "",
            "acked": self.acked_by is not None,
            "acked_by": self.acked_by or "",
        }


def open_incidents(events: list[Event]) -> list[Incident]:
    """The open incidents in ``events`` (oldest first), most recently seen first."""
    resolved: dict[str, datetime] = {}
    for e in events:
        if e.type == "incident_resolved":
            resolved[str(e.data.get("signature"))] = e.ts
    reports: dict[str, list[Event]] = {}
    acks: dict[str, str] = {}
    for e in events:
        sig = str(e.data.get("signature"))
        if sig in resolved and e.ts <= resolved[sig]:
            continue
        if e.type == "incident_reported":
            reports.setdefault(sig, []).append(e)
        elif e.type == "incident_acked":
            acks[sig] = str(e.data.get("by") or "operator")
    out = []
    for sig, found in reports.items():
        last = found[-1].data
        seen = [str(r.data.get("last_seen") or r.ts.isoformat()) for r in found]
        first = found[0].data
        count = sum(int(r.data.get("new") or 0) for r in found)
        first_seen = str(first.get("first_seen") or "") or min(seen)
        out.append(
            Incident(
                signature=sig,
                blocker=str(last.get("blocker") or ""),
                text=str(last.get("text") or ""),
                count=count,
                first_seen=first_seen,
                last_seen=max(seen),
                repo=str(last.get("repo") or ""),
                issue=int(last.get("issue") or 0),
                acked_by=acks.get(sig),
            )
        )
    return sorted(out, key=lambda i: i.last_seen, reverse=True)


class IncidentBook:
    """``ctl incidents`` / ``ack`` / ``resolve`` over the journal; the scanner asks it what is acked."""

    def __init__(self, *, journal: Journal, clock: Clock, forge: Forge, store: EventHistory) -> None:
        self._journal = journal
        self._clock = clock
        self._forge = forge
        self._store = store

    def __repr__(self) -> str:
        return "<IncidentBook>"

    async def incidents(self) -> list[Incident]:
        return open_incidents(await read_events(self._store, self._clock() - timedelta(days=HISTORY_DAYS)))

    async def listing(self) -> list[dict[str, Any]]:
        """The open incidents (``ctl incidents``): signature, count, first and last seen, fix issue, acked."""
        return [i.as_json() for i in await self.incidents()]

    async def acked(self, signature: str) -> bool:
        """True when the operator acked ``signature`` since it was last resolved (its notices are silenced)."""
        return any(i.signature == signature and i.acked_by is not None for i in await self.incidents())

    async def _find(self, signature: str) -> Incident:
        wanted = signature.strip().lower()
        if len(wanted) < 4:
            raise ControlError(f"signature {signature!r}: give at least 4 characters of it (see `incidents`)")
        found = [i for i in await self.incidents() if i.signature.startswith(wanted)]
        if not found:
            raise ControlError(f"no open incident has the signature {signature!r} (see `incidents`)")
        if len(found) > 1:
            raise ControlError(f"signature {signature!r} matches {len(found)} incidents; give more of it")
        return found[0]

    async def ack(self, signature: str, *, by: str) -> dict[str, Any]:
        """Silence the incident's notices until it is resolved; journalled with ``by``."""
        incident = await self._find(signature)
        if incident.acked_by is None:
            self._journal.record("incident_acked", None, signature=incident.signature, by=by)
            log.info("incident_acked", signature=incident.signature, by=by)
        return {"signature": incident.signature, "acked": True, "by": incident.acked_by or by}

    async def resolve(self, signature: str, *, by: str) -> dict[str, Any]:
        """Close the incident and its fix issue (a comment says who); a recurrence opens it again."""
        incident = await self._find(signature)
        self._journal.record(
            "incident_resolved", None, signature=incident.signature, by=by, repo=incident.repo, issue=incident.issue
        )
        log.info("incident_resolved", signature=incident.signature, by=by)
        closed = False
        if incident.issue:
            issue = await safely("get_issue", self._forge.get_issue(incident.repo, incident.issue))
            if issue is not None and issue.state == "open":
                text = (
                    f"**agentos:** incident `{incident.signature}` resolved by the operator ({by}). "
                    "If it recurs, the incident scanner reports it again."
                )
                key = f"incident-resolved:{incident.signature}:{self._clock():%Y%m%dT%H%M%S}"
                await safely("comment", comment_once(self._forge, incident.repo, incident.issue, text, key=key))
                await safely("close_issue", self._forge.close_issue(incident.repo, incident.issue))
                closed = True
        fix = f"{incident.repo}#{incident.issue}" if incident.issue else ""
        return {"signature": incident.signature, "resolved": True, "by": by, "fix_issue": fix, "closed": closed}
