"""The repo's commands in a task worktree: its hooks (``repos[].hooks``) and its ``test_command``.

Both run with :func:`agentos.proc.scrubbed_env` plus the repo's ``pass_env``, sandboxed by ``sandbox``
(:func:`agentos.runners.policy.command_spec`: the code an agent just wrote is untrusted; both reach only
``repos[].test_allow_hosts``, through the daemon's egress proxy). :class:`~agentos.workspace.Workspace` runs them
(:meth:`~agentos.workspace.Workspace.run_hook`, :meth:`~agentos.workspace.Workspace.run_tests`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import structlog

from agentos._worktree import HookName, HookResult
from agentos.config import RepoConfig, SandboxConfig
from agentos.proc import CommandResult, run_shell, scrubbed_env
from agentos.runners.egress import EgressProxy
from agentos.runners.hook_egress import hook_egress
from agentos.runners.policy import command_spec

__all__ = ["run_repo_hook", "run_repo_tests"]

log = structlog.get_logger("agentos.workspace")


async def run_repo_hook(
    repo: RepoConfig,
    name: HookName,
    worktree: Path,
    *,
    root: Path,
    sandbox: SandboxConfig | None,
    egress: EgressProxy | None,
) -> HookResult:
    """Run one of the repo's hooks in ``worktree`` with its time limit and a scrubbed environment."""
    command: str | None = getattr(repo.hooks, name)
    if not command:
        return HookResult(name, None)
    env = scrubbed_env(repo.pass_env)
    async with hook_egress(egress, sandbox, repo, name, worktree) as proxy_socket:
        box = command_spec(sandbox, worktree, root, proxy_socket=proxy_socket)
        res = await run_shell(command, cwd=worktree, env=env, timeout=repo.hooks.timeout_s, sandbox=box)
    result = HookResult(name, command, res.code, res.output_tail, res.timed_out, res.duration_s)
    if result.ok:
        log.info("hook_ran", repo=repo.name, hook=name, duration_s=res.duration_s)
    else:
        log.warning(
            "hook_failed",
            repo=repo.name,
            hook=name,
            code=res.code,
            timed_out=res.timed_out,
            tail=res.output_tail[-500:],
        )
    return result


async def run_repo_tests(
    repo: RepoConfig,
    worktree: Path,
    env: Mapping[str, str] | None = None,
    *,
    root: Path,
    sandbox: SandboxConfig | None,
    proxy_socket: Path | None = None,
) -> CommandResult:
    """The repo's ``test_command`` in ``worktree``, limited to ``test_timeout_s``.

    The environment is :func:`agentos.proc.scrubbed_env` with the repo's ``pass_env``, plus ``env``.
    """
    res = await run_shell(
        repo.test_command,
        cwd=worktree,
        env=scrubbed_env(repo.pass_env, env),
        timeout=repo.test_timeout_s,
        sandbox=command_spec(sandbox, worktree, root, proxy_socket=proxy_socket),
    )
    where = {"repo": repo.name, "worktree": str(worktree)}
    log.info("tests_ran", **where, code=res.code, timed_out=res.timed_out, duration_s=res.duration_s)
    return res
