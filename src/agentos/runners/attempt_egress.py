"""Each attempt's way out through the daemon's one :class:`~agentos.runners.egress.EgressProxy`.

* :func:`egress_proxy` builds the daemon's proxy: its sockets live in a private folder under the system's
  temporary folder (a unix socket path must stay under ~100 bytes, which a state directory deep in a home need
  not). It costs nothing until a session opens, so it exists whatever ``sandbox.mode`` says: a reload that turns
  the sandbox on finds it there. Sessions open only for sandboxed runs (``mode: bubblewrap``).
* :func:`agent_allow` is an attempt's allow list: the kind's API host (or the base URL its env names),
  ``sandbox.allow_hosts``, ``agents.<name>.allow_hosts``.
* :func:`egress_session` opens the session of one attempt (``task/N``) or of a test run (``task/N/tests``) and
  closes it when the block ends; with no proxy it yields ``None`` (no sandbox, or no network at all).
* :func:`denial_recorder` journals ``egress_denied`` (task, attempt, host, ``during``: ``agent`` or ``tests``) the
  first time a session is refused a ``host:port`` (the proxy counts the rest).
* :func:`attempt_session` and :func:`attempt_tests` are the two an executor's attempt uses (both journalled).
* :func:`sandboxed_tests` runs a repo's tests with a session only when ``repos[].test_allow_hosts`` names hosts.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

from agentos.config import AgentConfig, SandboxConfig
from agentos.ports import Journal
from agentos.proc import CommandResult
from agentos.runners.egress import DeniedCallback, EgressProxy, EgressSession, default_allow
from agentos.workspace import Workspace

__all__ = [
    "agent_allow",
    "attempt_session",
    "attempt_tests",
    "denial_recorder",
    "egress_proxy",
    "egress_session",
    "sandboxed_tests",
    "session_id",
]


def session_id(task_id: str, attempt: int, *, tests: bool = False) -> str:
    """``"app#3/2"`` for attempt 2 of ``app#3``, ``"app#3/2/tests"`` for its test run."""
    return f"{task_id}/{attempt}" + ("/tests" if tests else "")


def denial_recorder(journal: Journal, task_id: str, attempt: int, during: str) -> DeniedCallback:
    """A session's ``on_denied``: journal ``egress_denied`` with the task, the attempt and the host."""

    def denied(_session: str, host: str) -> None:
        journal.record("egress_denied", task_id, attempt=attempt, host=host, during=during)

    return denied


def egress_proxy() -> EgressProxy:
    """The daemon's one proxy, its socket folder made now (mode 0700, removed by the daemon when it stops)."""
    return EgressProxy(Path(tempfile.mkdtemp(prefix="agentos-egress-")))


def agent_allow(sandbox: SandboxConfig, agent: AgentConfig, env: Mapping[str, str]) -> list[str]:
    """What one attempt may reach: its kind's API host (or its base URL's), then the configured extras."""
    return [*default_allow(agent.kind, env), *sandbox.allow_hosts, *agent.allow_hosts]


@asynccontextmanager
async def egress_session(
    proxy: EgressProxy | None,
    session: str,
    allow: Sequence[str],
    *,
    always: bool = True,
    on_denied: DeniedCallback | None = None,
) -> AsyncIterator[EgressSession | None]:
    """``session``'s door out for the block, closed after it; ``None`` with no proxy, or with an empty ``allow``
    when not ``always`` (a test run with no ``test_allow_hosts`` gets no network at all)."""
    if proxy is None or (not allow and not always):
        yield None
        return
    opened = await proxy.session(session, allow, on_denied=on_denied)
    try:
        yield opened
    finally:
        await opened.close()


async def sandboxed_tests(
    ws: Workspace,
    worktree: Path,
    proxy: EgressProxy | None,
    session: str,
    *,
    on_denied: DeniedCallback | None = None,
) -> tuple[CommandResult, str]:
    """The repo's tests in ``worktree``; sandboxed, they reach only ``repos[].test_allow_hosts`` through ``proxy``
    (none listed: no network at all). Also what the proxy refused them: ``"tests blocked: …"``, or ``""``."""
    sandboxed = ws.sandbox is not None and ws.sandbox.mode == "bubblewrap"
    allow = ws.repo.test_allow_hosts
    async with egress_session(proxy if sandboxed else None, session, allow, always=False, on_denied=on_denied) as door:
        result = await ws.run_tests(worktree, proxy_socket=door.socket_path if door is not None else None)
        denied = f"tests {door.summary()}" if door is not None and door.denied else ""
    return result, denied


def attempt_session(
    proxy: EgressProxy | None,
    sandbox: SandboxConfig,
    agent: AgentConfig,
    env: Mapping[str, str],
    journal: Journal,
    task_id: str,
    attempt: int,
) -> AbstractAsyncContextManager[EgressSession | None]:
    """The agent's session of attempt ``attempt`` of ``task_id`` (None with ``mode: off``), denials journalled."""
    return egress_session(
        proxy if sandbox.mode == "bubblewrap" else None,
        session_id(task_id, attempt),
        agent_allow(sandbox, agent, env),
        on_denied=denial_recorder(journal, task_id, attempt, "agent"),
    )


async def attempt_tests(
    ws: Workspace, worktree: Path, proxy: EgressProxy | None, journal: Journal, task_id: str, attempt: int
) -> tuple[CommandResult, str]:
    """:func:`sandboxed_tests` of an attempt's hand-off, denials journalled (``during: tests``)."""
    on_denied = denial_recorder(journal, task_id, attempt, "tests")
    return await sandboxed_tests(ws, worktree, proxy, session_id(task_id, attempt, tests=True), on_denied=on_denied)
