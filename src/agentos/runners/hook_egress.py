"""A sandboxed hook's way out: the same hosts as the repo's tests (``repos[].test_allow_hosts``).

A ``before_run`` hook that installs dependencies (``npm ci``, ``pip install -r …``) needs the package registry its
tests need; both are the repo's own commands, run in the worktree the agent wrote, so both get one allowlist. With
none listed, no sandbox or no proxy, a hook has no network at all. What the proxy refuses a hook is logged
(``hook_egress_denied``: the repo, the hook, the ``host:port``); a hook belongs to no attempt, so no attempt counts it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import structlog

from agentos.config import RepoConfig, SandboxConfig
from agentos.runners.egress import EgressProxy

__all__ = ["hook_egress"]

log = structlog.get_logger(__name__)


@asynccontextmanager
async def hook_egress(
    egress: EgressProxy | None, sandbox: SandboxConfig | None, repo: RepoConfig, hook: str, worktree: Path
) -> AsyncIterator[Path | None]:
    """The egress socket of one run of ``hook`` in ``worktree`` for the block, or ``None`` (no network)."""
    allow = repo.test_allow_hosts
    if egress is None or sandbox is None or sandbox.mode != "bubblewrap" or not allow:
        yield None
        return

    def denied(_session: str, host: str) -> None:
        log.warning("hook_egress_denied", repo=repo.name, hook=hook, host=host)

    door = await egress.session(f"hooks/{repo.name}/{worktree.name}/{hook}", allow, on_denied=denied)
    try:
        yield door.socket_path
    finally:
        await door.close()
