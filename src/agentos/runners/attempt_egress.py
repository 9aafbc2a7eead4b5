"""Each attempt's way out through the daemon's one :class:`~agentos.runners.egress.EgressProxy`.

* :func:`egress_proxy` builds the daemon's proxy (``None`` with ``sandbox.mode: off``): its sockets live in a
  private folder under the system's temporary folder (a unix socket path must stay under ~100 bytes, which a
  state directory deep in a home need not), and every first denial of a ``host:port`` in a session is journalled
  as ``egress_denied`` (task, attempt, host, and ``during: tests`` for a test run).
* :func:`agent_allow` is an attempt's allow list: the kind's API host (or the base URL its env names),
  ``sandbox.allow_hosts``, ``agents.<name>.allow_hosts``.
* :func:`egress_session` opens the session of one attempt (``task/N``) or of its test run (``task/N/tests``) and
  closes it when the block ends; with no proxy it yields ``None`` (no sandbox, or no network at all).
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import structlog

from agentos.config import AgentConfig, SandboxConfig
from agentos.ports import Journal
from agentos.proc import CommandResult
from agentos.runners.egress import DeniedCallback, EgressProxy, EgressSession, default_allow
from agentos.workspace import Workspace

__all__ = ["agent_allow", "denial_recorder", "egress_proxy", "egress_session", "sandboxed_tests", "session_id"]

log = structlog.get_logger(__name__)

_SESSION_RE = re.compile(r"^(?P<task>.+)/(?P<attempt>\d+)(?P<tests>/tests)?$")


def session_id(task_id: str, attempt: int, *, tests: bool = False) -> str:
    """``"app#3/2"`` for attempt 2 of ``app#3``, ``"app#3/2/tests"`` for its test run."""
    return f"{task_id}/{attempt}" + ("/tests" if tests else "")


def denial_recorder(journal: Journal) -> DeniedCallback:
    """The proxy's ``on_denied``: journal ``egress_denied`` with the task, the attempt and the host."""

    def denied(session: str, host: str) -> None:
        match = _SESSION_RE.match(session)
        if match is None:
            journal.record("egress_denied", None, session=session, host=host)
            return
        during = "tests" if match["tests"] else "agent"
        journal.record("egress_denied", match["task"], attempt=int(match["attempt"]), host=host, during=during)

    return denied


def egress_proxy(sandbox: SandboxConfig, journal: Journal) -> EgressProxy | None:
    """The daemon's proxy with ``sandbox.mode: bubblewrap``, else ``None`` (nothing is confined)."""
    if sandbox.mode != "bubblewrap":
        return None
    socket_dir = Path(tempfile.mkdtemp(prefix="agentos-egress-"))
    return EgressProxy(socket_dir, on_denied=denial_recorder(journal))


def agent_allow(sandbox: SandboxConfig, agent: AgentConfig, env: Mapping[str, str]) -> list[str]:
    """What one attempt may reach: its kind's API host (or its base URL's), then the configured extras."""
    return [*default_allow(agent.kind, env), *sandbox.allow_hosts, *agent.allow_hosts]


@asynccontextmanager
async def egress_session(
    proxy: EgressProxy | None, session: str, allow: Sequence[str], *, always: bool = True
) -> AsyncIterator[EgressSession | None]:
    """``session``'s door out for the block, closed after it; ``None`` with no proxy, or with an empty ``allow``
    when not ``always`` (a test run with no ``test_allow_hosts`` gets no network at all)."""
    if proxy is None or (not allow and not always):
        yield None
        return
    opened = await proxy.session(session, allow)
    try:
        yield opened
    finally:
        await opened.close()


async def sandboxed_tests(
    ws: Workspace, worktree: Path, proxy: EgressProxy | None, session: str, allow: Sequence[str]
) -> tuple[CommandResult, str]:
    """The repo's tests in ``worktree``, reaching only ``allow`` (``repos[].test_allow_hosts``; empty: no network
    at all), and what the proxy refused them (``"tests blocked: …"``, or ``""``)."""
    async with egress_session(proxy, session, allow, always=False) as door:
        result = await ws.run_tests(worktree, proxy_socket=door.socket_path if door is not None else None)
        denied = f"tests {door.summary()}" if door is not None and door.denied else ""
    return result, denied
