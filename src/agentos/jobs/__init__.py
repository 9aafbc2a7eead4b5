"""The scheduled jobs, one module each (their triggers: docs/operations.md)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agentos.forge.base import Forge
    from agentos.jobs._loops import TunableSettings
    from agentos.jobs.digest import DigestNotify
    from agentos.ports import Clock, Journal, Wake, Workspaces
    from agentos.store import Store
    from agentos.task_graph import TaskGraph


def loop_jobs(
    *,
    settings: TunableSettings,
    journal: Journal,
    clock: Clock,
    graph: TaskGraph,
    forge: Forge,
    notify: DigestNotify | None,
    store: Store,
    stopping: Callable[[], bool],
    wake: Wake | None = None,
    workspaces: Workspaces | None = None,
) -> dict[str, Callable[[], Awaitable[None]]]:
    """The improvement loops (and the daily housekeeping) by job name, ready to register with the scheduler.

        ``settings`` is the live configuration (the agent scorer may tune its routing and replace it), ``store`` is
        read for the journal's history (and pruned by housekeeping), ``stopping`` says the daemon is shutting down
        (a loop stops between repos), ``notify`` sends the daily digest, sprint plans and one-tap offers (None: they are
    only journalled), ``wake`` runs dispatch when a plan or an offer makes issues ready, ``workspaces`` (the
    clones) let the ``outcome_check`` job read the objectives' metrics (without them it is not built).
    """
    from agentos.jobs.analysis import AgentScorer, LogAnalyzer
    from agentos.jobs.auto_ready import AutoReady
    from agentos.jobs.digest import DailyDigest
    from agentos.jobs.groomer import BacklogGroomer
    from agentos.jobs.housekeeping import Housekeeping
    from agentos.jobs.incident_book import IncidentBook
    from agentos.jobs.incidents import IncidentScanner
    from agentos.jobs.outcome_check import OutcomeChecker
    from agentos.jobs.planner import SprintPlanner

    s, j, c, g = settings, journal, clock, graph
    offers = AutoReady(settings=s, journal=j, clock=c, forge=forge, store=store, notify=notify, wake=wake)
    jobs: dict[str, Callable[[], Awaitable[None]]] = {}
    if workspaces is not None:
        jobs["outcome_check"] = OutcomeChecker(
            settings=s, journal=j, clock=c, graph=g, forge=forge, store=store, stopping=stopping, workspaces=workspaces
        ).tick
    return jobs | {
        "incident_scan": IncidentScanner(
            settings=s,
            journal=j,
            clock=c,
            graph=g,
            forge=forge,
            store=store,
            stopping=stopping,
            offers=offers,
            notify=notify,
            book=IncidentBook(journal=j, clock=c, forge=forge, store=store),
        ).tick,
        "log_analysis": LogAnalyzer(
            settings=s, journal=j, clock=c, graph=g, forge=forge, store=store, offers=offers
        ).tick,
        "agent_scoring": AgentScorer(settings=s, journal=j, clock=c, graph=g, store=store).tick,
        "backlog_groom": BacklogGroomer(
            settings=s, journal=j, clock=c, graph=g, forge=forge, store=store, stopping=stopping, offers=offers
        ).tick,
        "sprint_plan": SprintPlanner(
            settings=s,
            journal=j,
            clock=c,
            graph=g,
            forge=forge,
            store=store,
            stopping=stopping,
            notify=notify,
            wake=wake,
        ).tick,
        "daily_digest": DailyDigest(settings=s, journal=j, clock=c, graph=g, store=store, notify=notify).tick,
        "housekeeping": Housekeeping(settings=s, journal=j, clock=c, store=store).tick,
    }
