"""The core's parts built over one :class:`Runtime`, in the order they depend on each other.

::

    RunningAttempts ─► Lifecycle ─► AgentPool ─► Executor ─► Dispatcher (+ RepoGuard) · PRMonitor · StallWatchdog
                           └─► AcceptanceFate ─► AcceptanceChecker (the acceptance_check job)

The runtime stands in for the ports it implements (``Journal``, ``Settings``, ``Workspaces``, ``Notify``,
``Wake``) until the state writer and the notifier are parts of their own; each part still receives only the
ports it uses, by name. The daemon builds its core here, and so do the tests and benchmarks that run a core
over a real store (``agentos.testing`` has the in-memory ports).
"""

from __future__ import annotations

from dataclasses import dataclass

from agentos.acceptance_fate import AcceptanceFate
from agentos.agents.pool import AgentPool
from agentos.executor import Executor
from agentos.jobs._pr_gate import ReviewGate
from agentos.jobs._pr_git import Branches, WorkspaceBranches
from agentos.jobs.acceptance_check import AcceptanceChecker
from agentos.jobs.dispatch import Dispatcher
from agentos.jobs.epics import Epics
from agentos.jobs.normalise import Normaliser
from agentos.jobs.pr_monitor import PRMonitor
from agentos.jobs.watchdog import StallWatchdog
from agentos.lifecycle import Lifecycle
from agentos.repo_guard import RepoGuard
from agentos.runners.egress import EgressProxy
from agentos.running import RunningAttempts
from agentos.runtime import Runtime

__all__ = ["Core", "build_core"]


@dataclass(frozen=True)
class Core:
    """The parts that move tasks: who decides (lifecycle), who runs (executor), who watches (the jobs)."""

    running: RunningAttempts
    lifecycle: Lifecycle
    pool: AgentPool
    executor: Executor
    dispatcher: Dispatcher
    monitor: PRMonitor
    watchdog: StallWatchdog
    guard: RepoGuard
    acceptance: AcceptanceChecker


def build_core(rt: Runtime, *, branches: Branches | None = None, egress: EgressProxy | None = None) -> Core:
    """Build the core over ``rt`` (``branches``: the PR monitor's git, by default the daemon's clones; ``egress``:
    the daemon's egress proxy, the only way out of a sandboxed attempt, None without one)."""
    running = RunningAttempts(rt.running, on_done=lambda _task_id: rt.wake("dispatch"))
    lifecycle = Lifecycle(
        journal=rt,
        clock=rt.now,
        settings=rt,
        graph=rt.graph,
        forge=rt.forge,
        notify=rt,
        workspaces=rt,
        running=running,
        wake=rt.wake,
    )
    pool = AgentPool(settings=rt, journal=rt, notify=rt, clock=rt.now, state=rt.state, graph=rt.graph)
    executor = Executor(
        settings=rt,
        journal=rt,
        clock=rt.now,
        graph=rt.graph,
        forge=rt.forge,
        workspaces=rt,
        pool=pool,
        lifecycle=lifecycle,
        wake=rt.wake,
        egress=egress,
    )
    guard = RepoGuard(settings=rt, notify=rt)
    dispatcher = Dispatcher(
        settings=rt,
        journal=rt,
        clock=rt.now,
        graph=rt.graph,
        forge=rt.forge,
        workspaces=rt,
        executor=executor,
        lifecycle=lifecycle,
        pool=pool,
        paused=lambda: rt.state.paused,
        stopping=lambda: rt.stopping,
        guard=guard,
        normaliser=Normaliser(settings=rt),
        epics=Epics(
            settings=rt, journal=rt, clock=rt.now, graph=rt.graph, forge=rt.forge, store=rt.store, wake=rt.wake
        ),
    )
    git = branches if branches is not None else WorkspaceBranches(rt, rt)
    monitor = PRMonitor(
        settings=rt,
        journal=rt,
        clock=rt.now,
        graph=rt.graph,
        forge=rt.forge,
        lifecycle=lifecycle,
        branches=git,
        gate=ReviewGate(settings=rt, journal=rt, forge=rt.forge, notify=rt, branches=git),
        stopping=lambda: rt.stopping,
    )
    watchdog = StallWatchdog(
        settings=rt,
        journal=rt,
        clock=rt.now,
        graph=rt.graph,
        workspaces=rt,
        lifecycle=lifecycle,
        executor=executor,
        notify=rt,
        wake=rt.wake,
        retry_writes=rt.retry_state_write,
    )
    acceptance = AcceptanceChecker(
        settings=rt,
        graph=rt.graph,
        workspaces=rt,
        fate=AcceptanceFate(lifecycle=lifecycle),
        stopping=lambda: rt.stopping,
    )
    return Core(running, lifecycle, pool, executor, dispatcher, monitor, watchdog, guard, acceptance)
