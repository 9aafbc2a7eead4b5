"""The local runner: the attempt's agent as a supervised subprocess on this machine, in its bubblewrap sandbox.

Its way out is a session of the daemon's egress proxy (:func:`~agentos.runners.attempt_egress.attempt_session`,
denials journalled); its limits and its log are :func:`~agentos.agents.runner.run_process`'s.
"""

from __future__ import annotations

from collections.abc import Callable

from agentos.agents.adapters import build_invocation
from agentos.agents.runner import RunSpec, run_process
from agentos.ports import Journal
from agentos.runners.attempt_egress import attempt_session
from agentos.runners.egress import EgressProxy
from agentos.runners.policy import agent_spec
from agentos.runners.port import AttemptRun, AttemptSpec, Placement, RunnerKind

__all__ = ["LocalRunner"]


class LocalRunner:
    """Runs each attempt here (the default runner)."""

    kind: RunnerKind = "local"

    def __init__(self, *, journal: Journal, egress: EgressProxy | None) -> None:
        self.journal = journal
        self.egress = egress

    def __repr__(self) -> str:
        return "<LocalRunner>"

    def ready(self) -> bool:
        return True

    async def run(self, spec: AttemptSpec, on_start: Callable[[Placement], None]) -> AttemptRun:
        inv = build_invocation(
            spec.agent,
            spec.agent_cfg,
            prompt=spec.prompt,
            prompt_file=spec.prompt_file,
            worktree=spec.worktree,
            task_id=spec.task_id,
            base_env=spec.env,
        )
        where = (self.journal, spec.task_id, spec.attempt)
        async with attempt_session(self.egress, spec.sandbox, spec.agent_cfg, inv.env, *where) as door:
            outcome = await run_process(
                RunSpec(
                    argv=inv.argv,
                    cwd=spec.worktree,
                    env=inv.env,
                    stdin=inv.stdin,
                    log_path=spec.log_path,
                    idle_timeout_s=spec.idle_timeout_s,
                    max_runtime_s=spec.max_runtime_s,
                    kill_grace_s=spec.kill_grace_s,
                    max_log_bytes=spec.max_log_bytes,
                    marker=spec.marker,
                    sandbox=agent_spec(
                        spec.sandbox,
                        spec.agent_cfg,
                        argv=inv.argv,
                        worktree=spec.worktree,
                        run_dir=spec.run_dir,
                        prompt_file=spec.prompt_file,
                        state_dir=spec.state_dir,
                        proxy_socket=door.socket_path if door is not None else None,
                    ),
                ),
                on_start=lambda pid, start: on_start(Placement("local", pid=pid, pid_start=start)),
            )
            return AttemptRun(outcome, egress=door.summary() if door is not None else "")

    async def reattach(self, spec: AttemptSpec) -> AttemptRun | None:
        """A local agent dies with the daemon's restart (its orphan is killed): there is nothing to wait for."""
        return None

    def detach(self) -> None:
        return None

    async def close(self) -> None:
        return None
