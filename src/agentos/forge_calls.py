"""How the core calls the forge about a task's issue: best effort where a failure must not stop the task, and the
label that makes an issue ready (configurable on GitHub; a Projects v2 board's Status may decide instead).

Shared by lifecycle and its collaborators (:mod:`agentos.operator_decisions`, :mod:`agentos.acceptance_fate`),
the executor's hand-off and the dispatcher; :mod:`agentos.lifecycle` re-exports the three names.
"""

from __future__ import annotations

from collections.abc import Awaitable

from agentos import logging as alog
from agentos.config import Config
from agentos.errors import AgentosError
from agentos.forge.base import READY_LABEL

__all__ = ["best_effort", "ready_by_label", "ready_label"]

log = alog.get_logger("agentos.lifecycle")


def ready_label(config: Config) -> str:
    """The label that makes an issue ready (configurable on GitHub)."""
    gh = config.github
    return gh.ready_label if config.forge == "github" and gh is not None else READY_LABEL


def ready_by_label(config: Config, repo: str) -> bool:
    """False when a Projects v2 board's Status decides readiness for ``repo`` instead of the label."""
    try:
        return config.forge != "github" or not config.repo(repo).project
    except KeyError:
        return True


async def best_effort(call: Awaitable[object]) -> bool:
    """A forge call whose failure must not stop the task (the next pass or start tries again); False if it failed."""
    try:
        await call
    except AgentosError as exc:
        log.warning("forge_call_failed", error=str(exc))
        return False
    return True
