"""The one registry of per-repository workspaces: :class:`WorkspaceRegistry` (the :class:`agentos.ports.Workspaces`
port). The daemon builds it once (:func:`agentos.forge.factory.build_forge`) and hands the same one to the runtime
and to the local forge, so each repository has one clone, one lock and one set of worktrees in the process.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

from agentos.config import RepoConfig, SandboxConfig
from agentos.forge.base import GitCredentials
from agentos.runners.egress import EgressProxy
from agentos.workspace import Workspace

__all__ = ["RemoteFor", "WorkspaceRegistry"]

RemoteFor = Callable[[RepoConfig], tuple[str, dict[str, str]]]
"""A repository's git remote URL and the git environment that reaches it."""


async def _fresh_credentials(credentials: GitCredentials, repo: RepoConfig) -> tuple[str, dict[str, str]]:
    """A forge's fresh git credentials for ``repo``; an explicit ``remote`` in the config wins."""
    url, env = await credentials.git_credentials(repo.name)
    return repo.remote or url, env


class WorkspaceRegistry:
    """One :class:`Workspace` per repository under ``root``, built on first use and rebuilt when the repository's
    config changes (a reload); ``credentials`` (the forge's, when it has them) refresh git's authentication;
    ``sandbox`` (the config's) confines the hooks and test commands the workspaces run; ``egress`` (the daemon's
    proxy) lets the hooks reach ``repos[].test_allow_hosts``."""

    def __init__(
        self,
        root: Path,
        remote_for: RemoteFor,
        *,
        credentials: GitCredentials | None = None,
        sandbox: SandboxConfig | None = None,
        egress: EgressProxy | None = None,
    ) -> None:
        self.root = Path(root)
        self.remote_for = remote_for
        self.credentials = credentials
        self.sandbox = sandbox
        self.egress = egress
        self._workspaces: dict[str, Workspace] = {}

    def __repr__(self) -> str:
        return f"WorkspaceRegistry(root={str(self.root)!r}, repos={sorted(self._workspaces)})"

    def workspace(self, repo: RepoConfig) -> Workspace:
        ws = self._workspaces.get(repo.name)
        if ws is None or ws.repo != repo:
            url, env = self.remote_for(repo)
            creds = self.credentials
            refresh = None if creds is None else functools.partial(_fresh_credentials, creds, repo)
            ws = Workspace(
                self.root,
                repo,
                remote_url=url,
                git_env=env,
                credentials=refresh,
                sandbox=self.sandbox,
                egress=self.egress,
            )
            self._workspaces[repo.name] = ws
        return ws
