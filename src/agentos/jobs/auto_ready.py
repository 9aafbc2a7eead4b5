"""Closing the loop: issues the loops file reach the queue by themselves, or with one tap.

``loops.auto_ready`` (a repo's own ``auto_ready`` wins) says what happens when a loop files an issue:

=============  =========================================================================================
``none``       nothing: the issue waits for a human to label it ready (the default)
``approve``    fix issues get a notice with **Make ready** / **Dismiss** (``agentos ctl offer ready|dismiss``)
``fix_issues`` incident and finding fix issues are made ready at once
``all``        the groomer's proposed issues too
=============  =========================================================================================

At most ``loops.auto_ready_per_day`` issues per repo are made ready in 24 h; one over the cap gets the
one-tap notice instead. Each decision is journalled (``auto_readied``, ``auto_ready_offered``,
``auto_ready_dismissed``) before the label is added.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from agentos import logging as alog
from agentos.errors import ControlError
from agentos.forge.base import READY_LABEL, Forge
from agentos.jobs._loops import EventHistory, LoopSettings, read_events, safely, settings_for
from agentos.ports import Action, Clock, Journal, Notify, Settings, Wake

__all__ = ["AutoReady", "IssueKind", "mode_for"]

log = alog.get_logger("agentos.auto_ready")

IssueKind = Literal["incident", "finding", "proposed"]
_FIX_KINDS = frozenset({"incident", "finding"})


def mode_for(settings: Settings, s: LoopSettings, repo: str) -> str:
    """The repo's ``auto_ready`` mode: its own, else ``loops.auto_ready``."""
    own = next((r.auto_ready for r in settings.config.repos if r.name == repo), None)
    return own or s.auto_ready


class AutoReady:
    """Decides whether a loop-filed issue is made ready, offered with one tap, or left alone."""

    def __init__(
        self,
        *,
        settings: Settings,
        journal: Journal,
        clock: Clock,
        forge: Forge,
        store: EventHistory,
        notify: Notify | None = None,
        wake: Wake | None = None,
        loop_settings: LoopSettings | None = None,
    ) -> None:
        self._settings = settings
        self._journal = journal
        self._clock = clock
        self._forge = forge
        self._store = store
        self._notify = notify
        self._wake = wake
        self._loop_settings = loop_settings

    def __repr__(self) -> str:
        return "<AutoReady>"

    async def offer(self, repo: str, number: int, title: str, kind: IssueKind) -> str:
        """What became of a newly filed issue: ``ready``, ``offered`` or ``left``."""
        s = settings_for(self._settings, self._loop_settings)
        mode = mode_for(self._settings, s, repo)
        automatic = mode == "all" or (mode == "fix_issues" and kind in _FIX_KINDS)
        if mode == "none" or (kind not in _FIX_KINDS and mode != "all"):
            return "left"
        if automatic:
            used = await self._used_today(repo)
            if used < s.auto_ready_per_day:
                self._journal.record("auto_readied", None, repo=repo, issue=number, kind=kind, mode=mode)
                await safely("add_labels", self._forge.add_labels(repo, number, [READY_LABEL]))
                log.info("auto_readied", repo=repo, issue=number, kind=kind)
                if self._wake is not None:
                    self._wake("dispatch")
                return "ready"
            log.info("auto_ready_capped", repo=repo, issue=number, per_day=s.auto_ready_per_day)
        self._journal.record("auto_ready_offered", None, repo=repo, issue=number, kind=kind)
        if self._notify is not None:
            ref = f"{repo}#{number}"
            self._notify.notify(
                2,
                f"offer:{ref}",
                f"New {kind} issue {ref}: {title}\nMake it ready to have an agent fix it?",
                [Action("issue_make_ready", ref, "Make ready"), Action("issue_dismiss", ref, "Dismiss")],
            )
        return "offered"

    async def _used_today(self, repo: str) -> int:
        events = await read_events(self._store, self._clock() - timedelta(hours=24))
        return sum(1 for e in events if e.type == "auto_readied" and e.data.get("repo") == repo)

    async def make_ready(self, repo: str, number: int) -> dict[str, Any]:
        """The operator's **Make ready**: label the issue ready and wake dispatch."""
        issue = await self._forge.get_issue(repo, number)
        if issue.state != "open":
            raise ControlError(f"{repo}#{number} is closed")
        self._journal.record("auto_readied", None, repo=repo, issue=number, kind="operator", mode="approve")
        if READY_LABEL not in issue.labels:
            await self._forge.add_labels(repo, number, [READY_LABEL])
        if self._wake is not None:
            self._wake("dispatch")
        return {"repo": repo, "issue": number, "ready": True}

    async def dismiss(self, repo: str, number: int) -> dict[str, Any]:
        """The operator's **Dismiss**: journalled; the issue stays as it is, not ready."""
        self._journal.record("auto_ready_dismissed", None, repo=repo, issue=number)
        return {"repo": repo, "issue": number, "dismissed": True}
