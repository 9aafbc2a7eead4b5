"""One confined run: the sandboxed argv and its cgroup, set up before the spawn and torn down after.

:func:`confine` is what :func:`agentos.agents.runner.run_process` and :func:`agentos.proc.run_shell` wrap their
spawn in when they are given a :class:`~agentos.runners.sandbox.SandboxSpec`::

    async with confine(argv, spec, label="task-1/2") as run:
        proc = await spawn(run.argv, ...)
        ...
        if run.oom_killed(): ...

It raises :class:`~agentos.runners.sandbox.SandboxUnavailable` (one line naming the fix) before anything starts
when bwrap cannot run here; it prepares the run's ``HOME``, makes its cgroup (or goes on without limits, logged
once) and the run's private view of the worktree's shared clone (:mod:`agentos.runners.git_view`), and on the way
out kills what is left in the cgroup, removes it, and takes the run's branch back from the view. With no spec it
changes nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from agentos.runners import cgroups
from agentos.runners.git_view import close_view, open_view
from agentos.runners.sandbox import SandboxSpec, SandboxUnavailable, prepare, usable, wrap

__all__ = ["ConfinedRun", "confine"]


@dataclass(frozen=True)
class ConfinedRun:
    """The argv to spawn, and the cgroup it joins (``None``: no limits here, or no sandbox)."""

    argv: list[str]
    cgroup: cgroups.Cgroup | None

    def oom_killed(self) -> bool:
        """Whether the kernel killed a process of the run for going over its memory limit."""
        return self.cgroup is not None and self.cgroup.oom_killed()


@asynccontextmanager
async def confine(argv: Sequence[str], spec: SandboxSpec | None, *, label: str) -> AsyncIterator[ConfinedRun]:
    """Set up the sandbox and cgroup of one run of ``argv`` (see the module doc); ``label`` names the cgroup."""
    if spec is None:
        yield ConfinedRun(list(argv), None)
        return
    problem = await asyncio.to_thread(usable)
    if problem is not None:
        raise SandboxUnavailable(problem)
    await asyncio.to_thread(prepare, spec)
    group = None
    if spec.memory_mb is not None and spec.max_processes is not None:
        group = await asyncio.to_thread(
            cgroups.create, label, memory_mb=spec.memory_mb, max_processes=spec.max_processes, cpus=spec.cpus
        )
    view = await asyncio.to_thread(open_view, spec.worktree)
    wrapped = wrap(argv, spec, view)
    try:
        yield ConfinedRun(group.join_argv(wrapped) if group else wrapped, group)
    finally:
        if group is not None:
            await asyncio.shield(asyncio.to_thread(group.remove))
        if view is not None:  # after the cgroup is empty: nothing writes the copy any more
            await asyncio.shield(asyncio.to_thread(close_view, view))
