"""The agents as one pool: which agent runs a task, which agents are paused and why, lifting a pause by hand.

::

    choose(task) ──► the task's chain (config ``routing``, its preferred agent first) minus the paused agents,
                     minus the agents the health gate skips for its type (:mod:`agentos.agents.health`),
                     rotating past the ones that already failed it
    pause_for_quota(agent, until)   the CLI reported a usage limit: paused until its reset time (or cool-down)
    enforce_budgets()               past a daily/monthly hard limit: paused until the period ends; a soft one warns
    resume(name)                    the operator's ``agent resume``: the pause ends now, whatever set it
    view()                          one row per agent for ``ctl agents`` and ``/agents``

A pause is one entry in ``DaemonState.paused_agents`` (agent → until) whatever set it; which cause it was is
told from the budget's "sent" markers (:func:`agentos.budget.describe_pause`). The spend and ceiling
arithmetic is :mod:`agentos.budget` (pure); this module applies it to the state, the journal and the notices.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from agentos import logging as alog
from agentos.agents.health import AgentHealth, Gate, gate_chain, health_table
from agentos.budget import (
    AgentPause,
    AgentVerdict,
    agent_verdicts,
    describe_pause,
    has_agent_limits,
    limits_text,
    local_time,
    period_word,
    verdict_figures,
)
from agentos.errors import ControlError
from agentos.graph import Task
from agentos.ports import Clock, Journal, Notify, Settings
from agentos.redact import redact
from agentos.store import DaemonState
from agentos.task_graph import TaskGraph

if TYPE_CHECKING:
    from agentos.runtime import Runtime

__all__ = ["AgentPool"]

log = alog.get_logger("agentos.agents.pool")

_FAILED = ("blocked", "failed", "partial")


class AgentPool:
    """Routing and pauses over the daemon state; holds nothing itself, so building one is free."""

    def __init__(
        self,
        *,
        settings: Settings,
        journal: Journal,
        notify: Notify | None,
        clock: Clock,
        state: DaemonState,
        graph: TaskGraph,
    ) -> None:
        self._settings = settings
        self._journal = journal
        self._notify = notify
        self._clock = clock
        self._state = state
        self._graph = graph

    @classmethod
    def from_runtime(cls, rt: Runtime) -> AgentPool:
        """The pool over a daemon's runtime (which is its settings, journal and notifier)."""
        return cls(settings=rt, journal=rt, notify=rt, clock=rt.now, state=rt.state, graph=rt.graph)

    def __repr__(self) -> str:
        return f"<AgentPool agents={len(self._settings.config.agents)} paused={len(self.paused())}>"

    def paused(self) -> dict[str, datetime]:
        """The agents paused now, with when each pause ends."""
        now = self._clock()
        return {name: until for name, until in self._state.paused_agents.items() if until > now}

    # ------------------------------------------------------------ routing

    def choose(self, task: Task) -> str | None:
        """The agent for the task's next attempt: the first of its chain that is not paused and has not failed
        it yet (an agent an operator named with ``task retry --agent`` first); when all have, the chain is rotated
        by the attempts so far. None when every agent is paused."""

        chain = self._settings.config.chain_for(task.type, task.agent)
        failed = {a.agent for a in task.attempts if a.outcome in _FAILED}
        paused = self.paused()
        usable = [a for a in chain if a not in paused]
        if not usable:
            return None
        if task.reroute in usable:  # an operator's pick runs next, whatever it did before
            return task.reroute
        usable = self._gate(task, usable)
        fresh = [a for a in usable if a not in failed]
        if fresh:
            return fresh[0]
        return usable[task.counted_attempts() % len(usable)]

    def health(self) -> dict[tuple[str, str], AgentHealth]:
        """Each (agent, task type)'s recent success and whether the health gate skips it."""
        return health_table(self._graph, self._clock(), self._settings.config.routing.health_gate)

    def _gate(self, task: Task, usable: list[str]) -> list[str]:
        """``usable`` without the agents the health gate skips for the task's type; every decision journalled.

        When all of them would be skipped the gate opens (none is): journalled too, and told once a day per type.
        """
        if not self._settings.config.routing.health_gate.enabled:
            return usable
        gate = gate_chain(usable, task.type, self.health())
        action = "opened" if gate.opened else "skipped"
        for health in gate.skipped:
            self._journal.record("agent_gated", task.id, **health.figures(), action=action, chain=usable)
            log.warning("agent_gated", task=task.id, agent=health.agent, type=task.type, action=action)
        if gate.opened:
            self._tell_opened(task, gate)
        return gate.usable

    def _tell_opened(self, task: Task, gate: Gate) -> None:
        key = f"health_gate_open:{task.type}:{self._clock().date().isoformat()}"
        if not self._state.mark_notified(key):
            return
        self._journal.save_state()
        if self._notify is not None:
            figures = "; ".join(f"{h.agent}: {h.reason}" for h in gate.skipped)
            text = (
                f"Every agent for {task.type} tasks is failing ({figures}). The health gate lets them run anyway "
                "(routing.health_gate); check the agents with `agentos ctl agents`."
            )
            self._notify.notify(2, key, text)

    # ------------------------------------------------------------ pauses

    def pause_for_quota(self, agent: str, until: datetime | None, detail: str = "") -> datetime:
        """The agent's CLI reported a usage limit: pause it until ``until`` (the reset time the CLI stated), else
        for the agent's ``cooldown_minutes``; one sev2 notice. Returns when the pause ends."""
        if until is None:
            until = self._clock() + timedelta(minutes=self._settings.config.agents[agent].cooldown_minutes)
        self._state.paused_agents[agent] = until
        self._journal.save_state()
        log.warning("agent_quota_limited", agent=agent, until=until.isoformat(), detail=redact(detail)[:200])
        if self._notify is not None:
            self._notify.notify(
                2,
                f"quota:{agent}:{until.isoformat()}",
                f"Agent {agent} hit its usage limit; paused until {until:%Y-%m-%d %H:%M} UTC.",
            )
        return until

    def enforce_budgets(self) -> list[AgentVerdict]:
        """Warn once per agent and period at a soft limit; pause an agent at a hard one until the period ends.

        A pause this method set is lifted again when the agent is no longer over a hard limit (the operator
        raised or removed it and reloaded the config). A breach the operator lifted by hand (:meth:`resume`)
        does not pause the agent again in that period while its hard limits stay the ones it was lifted at; a
        changed limit that the agent is over is a new breach and pauses it. The verdicts are returned for the
        caller's logs and tests.
        """
        config = self._settings.config
        agents, state = config.agents, self._state
        paused = list(self.paused())
        if not has_agent_limits(agents) and not paused:
            return []
        zone = config.zone
        verdicts = agent_verdicts(self._graph, agents, self._clock(), zone, also=paused)
        stopped = {v.agent for v in verdicts if v.stop}
        changed = False
        announce: list[tuple[AgentVerdict, Literal[1, 2], str, str]] = []
        for v in verdicts:
            paused_until = state.paused_agents.get(v.agent)
            if v.stop and v.lift_key in state.notified:
                continue  # the operator lifted this breach (`ctl agent resume`): not paused again at these limits
            if v.stop:
                if paused_until is None or paused_until < v.until:
                    state.paused_agents[v.agent] = v.until
                    changed = True
                if state.mark_notified(v.stop_key):
                    changed = True
                    text = (
                        f"Agent {v.agent} reached its {period_word(v)} budget: {verdict_figures(v, v.stop)}. "
                        f"It is paused until {local_time(v.until, zone)}; `agentos ctl agent resume {v.agent}` "
                        f"(or /agent resume {v.agent}) lets it run for the rest of the {v.period}, or raise the "
                        "limit and run `agentos ctl reload`."
                    )
                    announce.append((v, 1, text, "agent_budget_paused"))
            elif v.agent not in stopped and paused_until == v.until and v.stop_key in state.notified:
                del state.paused_agents[v.agent]  # our pause, and the limit was raised or removed
                changed = True
                self._journal.record("agent_budget_resumed", agent=v.agent, period=v.label)
                log.info("agent_budget_resumed", agent=v.agent, period=v.label)
            if v.warn and not v.stop and state.mark_notified(v.warn_key):
                changed = True
                text = f"Agent {v.agent} passed its {period_word(v)} warning level: {verdict_figures(v, v.warn)}."
                announce.append((v, 2, text, "agent_budget_warning"))
        if changed:
            self._journal.save_state()  # the "sent" markers are on disk before anything is sent: never twice
        for v, severity, text, event in announce:
            self._announce(v, severity, text, event)
        return verdicts

    def _announce(self, v: AgentVerdict, severity: Literal[1, 2], text: str, event: str) -> None:
        self._journal.record(
            event,
            agent=v.agent,
            period=v.label,
            tokens=v.spend.tokens,
            cost_usd=round(v.spend.cost_usd, 6),
            attempts=v.spend.attempts,
            not_measured=v.spend.unmeasured,
            until=v.until.isoformat(),
        )
        log.warning(event, agent=v.agent, period=v.label, tokens=v.spend.tokens, cost_usd=round(v.spend.cost_usd, 4))
        if self._notify is not None:
            self._notify.notify(severity, f"{event}:{v.agent}:{v.label}", text)

    # ------------------------------------------------------------ the operator

    def resume(self, name: str) -> dict[str, Any]:
        """The operator's ``agent resume``: end ``name``'s pause now (a usage limit's or a budget's).

        A budget breach in force now is marked lifted (:attr:`AgentVerdict.lift_key`): the agent runs for the rest
        of that day or month while its hard limits stay as they are. Changing a limit in the config re-arms the
        check: an agent over the new limit is paused again. A usage limit the CLI still enforces simply fails the
        next attempt, which pauses the agent again with the CLI's reset time. Refused (:class:`ControlError`)
        for an unknown or unpaused agent, and while state writes are held.
        """
        config = self._settings.config
        until = self._state.paused_agents.get(name)
        if name not in config.agents and until is None:
            names = ", ".join(config.agents) or "none"
            raise ControlError(f"no agent named {name!r}; agents: {names}")
        if until is None or until <= self._clock():
            raise ControlError(f"agent {name} is not paused")
        if (held := self._journal.held) is not None:
            raise ControlError(f"state writes are held ({held}); free some space, then resume {name}")
        pause = self._lift(name, until)
        result: dict[str, Any] = {"agent": name, "resumed": True, "was_paused_until": until.isoformat()}
        result["why"] = pause.why
        if pause.breaches:
            labels = ", ".join(v.label for v in pause.breaches)
            result["budget"] = (
                f"still over budget for {labels}: the pause stays lifted for the rest of that period unless its "
                "limits change in the config (an agent over a changed limit is paused again)"
            )
        return result

    def _lift(self, agent: str, until: datetime) -> AgentPause:
        config = self._settings.config
        zone = config.zone
        agents = {agent: config.agents[agent]} if agent in config.agents else {}
        verdicts = agent_verdicts(self._graph, agents, self._clock(), zone, also=[agent])
        pause = describe_pause(agent, until, verdicts, self._state.notified, zone)
        for v in pause.breaches:
            self._state.mark_notified(v.lift_key)
        del self._state.paused_agents[agent]
        self._journal.save_state()
        waived = [v.label for v in pause.breaches]
        self._journal.record("agent_pause_lifted", agent=agent, until=until.isoformat(), why=pause.why, waived=waived)
        log.warning("agent_pause_lifted", agent=agent, until=until.isoformat(), waived=waived)
        return pause

    def view(self) -> list[dict[str, Any]]:
        """One row per configured agent (and per paused agent no longer configured): its pause and why, this
        month's spend and its limits, in the config's ``timezone``."""
        config = self._settings.config
        zone = config.zone
        paused = self.paused()
        names = list(config.agents) + [name for name in paused if name not in config.agents]
        verdicts = agent_verdicts(self._graph, config.agents, self._clock(), zone, also=names)
        notified = set(self._state.notified)
        health = self._health_rows()
        rows = []
        for name in names:
            cfg = config.agents.get(name)
            mine = {v.period: v for v in verdicts if v.agent == name}
            month, day = mine["month"], mine["day"]
            row: dict[str, Any] = {
                "agent": name,
                "kind": cfg.kind if cfg is not None else None,
                "paused_until": None,
                "paused_until_local": None,
                "why": None,
                "month": month.label,
                "month_spend": month.spend.describe(),
                "month_tokens": month.spend.tokens,
                "month_cost_usd": round(month.spend.cost_usd, 6),
                "month_attempts": month.spend.attempts,
                "month_not_measured": month.spend.unmeasured,
                "today_cost_usd": round(day.spend.cost_usd, 6),
                "limits": limits_text(cfg) if cfg is not None else "not in the config",
                "lifted": [v.label for v in (day, month) if v.stop and v.lift_key in notified],
                "health": health.get(name, []),
            }
            if name in paused:
                until = paused[name]
                pause = describe_pause(name, until, mine.values(), notified, zone)
                row.update(paused_until=until.isoformat(), paused_until_local=local_time(until, zone), why=pause.why)
            elif row["lifted"]:
                row["why"] = f"over budget for {', '.join(row['lifted'])}; pause lifted by hand"
            rows.append(row)
        return rows

    def _health_rows(self) -> dict[str, list[dict[str, Any]]]:
        """Per agent, one row per task type it ran lately: its figures and whether the gate skips it and why."""
        config = self._settings.config
        table = self.health()
        enabled = config.routing.health_gate.enabled
        rows: dict[str, list[dict[str, Any]]] = {}
        for (agent, task_type), h in table.items():
            gated = enabled and h.gated
            if gated and gate_chain(config.chain_for(task_type, None), task_type, table).opened:
                state = "open: every agent of the chain is failing"
            else:
                state = "skipped" if gated else "ok"
            rows.setdefault(agent, []).append(
                {
                    **h.figures(),
                    "week": h.week.describe(),
                    "day": h.day.describe(),
                    "gated": gated,
                    "gate": state,
                }
            )
        return rows
