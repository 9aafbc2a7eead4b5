"""The runner port: where one agent attempt runs, behind one call.

The executor hands a runner an :class:`AttemptSpec` (the worktree on its base and task branch, the prompt, the
agent's config, the limits, the sandbox profile) and gets back an :class:`AttemptRun` once the agent is done. The
runner's promise: when :meth:`Runner.run` returns, the worktree holds what the agent did (its commits, its
uncommitted changes, its result file) and ``spec.log_path`` its output, exactly as if it had run here. Nothing
else in the daemon knows where it ran.

* ``local`` (:mod:`agentos.runners.local`): a supervised subprocess on this machine, in its bubblewrap sandbox.
* ``ray`` (:mod:`agentos.runners.ray_runner`): a detached actor on a node of a Ray cluster, the repo shipped both
  ways as a git bundle. Imported only when ``runner.kind: ray`` says so.

:func:`runner_for` builds the configured one.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from agentos.agents.runner import RunOutcome
from agentos.config import AgentConfig, RepoConfig, SandboxConfig
from agentos.errors import AgentosError
from agentos.proc import CommandResult

if TYPE_CHECKING:
    from agentos.config import Config, RunnerConfig
    from agentos.graph import Attempt, Task
    from agentos.ports import Journal, Notify
    from agentos.runners.egress import EgressProxy

__all__ = [
    "AttemptRun",
    "AttemptSpec",
    "NoNodeFits",
    "Placement",
    "Runner",
    "RunnerLost",
    "RunnerUnavailable",
    "attempt_spec",
    "runner_for",
]

RunnerKind = Literal["local", "ray"]


class RunnerUnavailable(AgentosError):
    """The runner cannot take an attempt now (the cluster is unreachable, its versions differ from ours)."""


class NoNodeFits(AgentosError):
    """No node of the cluster offers the resources the agent needs (``agents.<name>.ray_resources``): the line
    names them and how to offer them. Not the agent's fault; the executor retries a few times, then escalates."""


class RunnerLost(AgentosError):
    """The attempt's runner went away under it (its node died): nothing the agent did came back."""


@dataclass(frozen=True)
class AttemptSpec:
    """Everything one attempt needs, wherever it runs."""

    task_id: str
    attempt: int
    agent: str
    agent_cfg: AgentConfig
    prompt: str
    prompt_file: Path
    worktree: Path
    branch: str
    start_sha: str
    run_dir: Path
    idle_timeout_s: float
    max_runtime_s: float
    kill_grace_s: float
    max_log_bytes: int
    sandbox: SandboxConfig
    state_dir: Path
    marker: str
    """``AGENTOS_ATTEMPT`` of its processes; unique per state directory, task and attempt (also the actor's name)."""
    env: Mapping[str, str] = field(default_factory=dict)
    """The daemon's environment the agent's is filtered from (:func:`agentos.proc.scrubbed_env`); local only."""
    repo: RepoConfig | None = None
    """Its repository (``test_command``): a remote runner runs the tests next to a complete agent's work."""

    @property
    def log_path(self) -> Path:
        return self.run_dir / "agent.log"


def attempt_spec(
    config: Config,
    task: Task,
    attempt: Attempt,
    worktree: Path,
    start_sha: str,
    prompt: str,
    run_dir: Path,
    marker: str,
) -> AttemptSpec:
    """The spec of ``attempt`` of ``task`` under ``config`` (its agent, limits, sandbox and repo)."""
    assert task.branch is not None
    limits = config.limits
    return AttemptSpec(
        task_id=task.id,
        attempt=attempt.number,
        agent=attempt.agent,
        agent_cfg=config.agents[attempt.agent],
        prompt=prompt,
        prompt_file=run_dir / "prompt.md",
        worktree=worktree,
        branch=task.branch,
        start_sha=start_sha,
        run_dir=run_dir,
        idle_timeout_s=limits.idle_timeout_minutes * 60,
        max_runtime_s=limits.max_runtime_minutes * 60,
        kill_grace_s=limits.kill_grace_s,
        max_log_bytes=limits.max_log_bytes,
        sandbox=config.sandbox,
        state_dir=config.state_path.resolve(),
        marker=marker,
        env=os.environ,
        repo=config.repo(task.repo),
    )


@dataclass(frozen=True)
class Placement:
    """Where an attempt's agent started: a local process (``pid``) or a node of the cluster (``node``)."""

    runner: RunnerKind
    node: str = ""
    pid: int | None = None
    pid_start: int | None = None


@dataclass
class AttemptRun:
    """How the agent's run ended (``outcome``) and what the egress proxy refused it (``egress``: a summary;
    ``denied``: the hosts refused on a remote node, for the daemon to journal; a local session journals its own)."""

    outcome: RunOutcome
    egress: str = ""
    denied: list[str] = field(default_factory=list)
    tests: CommandResult | None = None
    """``test_command`` run where the agent ran (a remote runner, after a complete run); None: the hand-off runs it."""
    tests_egress: str = ""


class Runner(Protocol):
    """Runs attempts somewhere; see the module doc."""

    kind: RunnerKind

    def ready(self) -> bool:
        """Whether an attempt may start now (the cluster is connected, or worth trying again)."""
        ...

    async def run(self, spec: AttemptSpec, on_start: Callable[[Placement], None]) -> AttemptRun:
        """Run the attempt; raises :class:`RunnerLost` when its node died, :class:`RunnerUnavailable` when it could
        not start there, :class:`NoNodeFits` when no node can take it as the cluster stands. Cancelling it kills
        the agent's process group wherever it runs."""
        ...

    async def reattach(self, spec: AttemptSpec) -> AttemptRun | None:
        """A restarted daemon: wait again for an attempt still running (None: it is gone, start it afresh)."""
        ...

    def detach(self) -> None:
        """The daemon is stopping: attempts it stops from now on are left running if they run elsewhere (on the
        cluster, for the next start to find again); local ones are stopped as always."""
        ...

    async def close(self) -> None: ...


def runner_for(
    config: RunnerConfig,
    *,
    journal: Journal,
    notify: Notify,
    egress: EgressProxy | None,
) -> Runner:
    """The configured runner. Ray is imported here only when ``runner.kind`` is ``ray``; with
    ``fallback_local`` the local runner takes attempts while the cluster cannot be reached."""
    from agentos.runners.local import LocalRunner

    local = LocalRunner(journal=journal, egress=egress)
    if config.kind == "local":
        return local
    from agentos.runners.ray_runner import RayRunner

    return RayRunner(config, notify=notify, fallback=local if config.fallback_local else None)
