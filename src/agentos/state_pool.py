"""The agent pool as it is today, over the daemon's state: agent choice, the quota pause, budget enforcement.

The executor and the dispatcher see only the three calls of :class:`agentos.executor.Pool`;
``agents/pool.py`` (``AgentPool``) replaces this class behind the same three calls.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from agentos import logging as alog
from agentos.graph import Task
from agentos.ports import Clock, Journal, Notify, Settings
from agentos.store import DaemonState

log = alog.get_logger("agentos.pool")


class StatePool:
    """Routing over ``routing.fallbacks`` with the paused agents of the daemon state skipped."""

    def __init__(
        self,
        *,
        settings: Settings,
        clock: Clock,
        state: DaemonState,
        journal: Journal,
        notify: Notify,
        enforce_budgets: Callable[[], object],
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.state = state
        self.journal = journal
        self.notify = notify
        self._enforce_budgets = enforce_budgets

    def __repr__(self) -> str:
        return f"<StatePool paused={len(self.state.paused_agents)}>"

    def choose(self, task: Task) -> str | None:
        """The first agent of the task's chain that is not paused by a usage limit."""
        now = self.clock()
        chain = self.settings.config.chain_for(task.type, task.agent)
        failed = {a.agent for a in task.attempts if a.outcome in ("blocked", "failed", "partial")}
        paused = {name for name, until in self.state.paused_agents.items() if until > now}
        usable = [a for a in chain if a not in paused]
        if not usable:
            return None
        # Rotate through the chain: the next agent after the ones that already failed this task.
        fresh = [a for a in usable if a not in failed]
        if fresh:
            return fresh[0]
        return usable[task.counted_attempts() % len(usable)]

    def pause_for_quota(self, agent: str, until: datetime | None, detail: str = "") -> datetime:
        """An agent hit its usage limit: it is skipped until ``until`` (else its ``cooldown_minutes``), and the
        operator is told. When the pause ends."""
        if until is None:
            until = self.clock() + timedelta(minutes=self.settings.config.agents[agent].cooldown_minutes)
        self.state.paused_agents[agent] = until
        self.journal.save_state()
        log.warning("agent_quota_limited", agent=agent, until=until.isoformat(), detail=detail[:200])
        self.notify.notify(
            2,
            f"quota:{agent}:{until.isoformat()}",
            f"Agent {agent} hit its usage limit; paused until {until:%Y-%m-%d %H:%M} UTC.",
        )
        return until

    def enforce_budgets(self) -> object:
        """An agent past its daily or monthly limit is paused before its next start."""
        return self._enforce_budgets()
