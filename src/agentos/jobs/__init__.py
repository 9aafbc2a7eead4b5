"""The scheduled jobs, one module each (DESIGN.md §7)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agentos.runtime import Runtime


def loop_jobs(rt: Runtime) -> dict[str, Callable[[], Awaitable[None]]]:
    """The improvement loops (and the daily housekeeping) by job name, ready to register with the scheduler."""
    from agentos.jobs.analysis import AgentScorer, LogAnalyzer
    from agentos.jobs.digest import DailyDigest
    from agentos.jobs.groomer import BacklogGroomer
    from agentos.jobs.housekeeping import Housekeeping
    from agentos.jobs.incidents import IncidentScanner
    from agentos.jobs.planner import SprintPlanner

    return {
        "incident_scan": IncidentScanner(rt).tick,
        "log_analysis": LogAnalyzer(rt).tick,
        "agent_scoring": AgentScorer(rt).tick,
        "backlog_groom": BacklogGroomer(rt).tick,
        "sprint_plan": SprintPlanner(rt).tick,
        "daily_digest": DailyDigest(rt).tick,
        "housekeeping": Housekeeping(rt).tick,
    }
