"""Build the forge a config names, and the one workspace registry that reaches each repository's git remote."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentos.config import Config, ConfigError, RepoConfig, secret
from agentos.forge.base import Forge
from agentos.redact import get_default
from agentos.runners.egress import EgressProxy
from agentos.workspace_registry import RemoteFor, WorkspaceRegistry

if TYPE_CHECKING:
    from agentos.forge.github import AppAuth

__all__ = ["RemoteFor", "app_auth", "build_forge"]


def build_forge(config: Config, *, egress: EgressProxy | None = None) -> tuple[Forge, WorkspaceRegistry]:
    """The forge and the one registry of workspaces (each repo's clone, remote URL and git environment) that the
    daemon's parts share: the local forge gets it too, so its checks and merges use the executor's clones.

    For GitHub the environment is filled (and refreshed) by the forge's ``credentials`` capability through
    the workspace, so a token never sits in a URL, in argv or on disk. ``egress``: the daemon's egress proxy,
    through which the local forge's sandboxed checks reach ``repos[].test_allow_hosts``.
    """
    if config.forge == "github":
        forge, remote = _github(config)
        return forge, WorkspaceRegistry(
            config.state_path, remote, credentials=forge.credentials, sandbox=config.sandbox, egress=egress
        )
    from agentos.forge._local_checks import user_repository
    from agentos.forge.local import LocalForge

    def user_remote(repo: RepoConfig) -> tuple[str, dict[str, str]]:
        return user_repository(repo), {}

    workspaces = WorkspaceRegistry(config.state_path, user_remote, sandbox=config.sandbox, egress=egress)
    repos = {r.name: r for r in config.repos}
    return LocalForge(config.state_path, repos, workspaces=workspaces, egress=egress), workspaces


def _github(config: Config) -> tuple[Forge, RemoteFor]:
    from agentos.forge.github import GitHubClient, GitHubForge, ProjectConfig, TokenAuth

    gh = config.github
    if gh is None:
        raise ConfigError(["forge: github needs a github: section (see config/agentos.example.yaml)"])
    auth: TokenAuth | AppAuth
    if gh.app_id is not None:
        auth = app_auth(gh.app_id, gh.installation_id)
    else:
        token = secret("github_token")
        if token is None:
            raise ConfigError(["forge: github needs GITHUB_TOKEN (environment) or the github_token credential"])
        auth = TokenAuth(token)
    projects = {r.name: ProjectConfig.model_validate(r.project) for r in config.repos if r.project}
    forge = GitHubForge(
        GitHubClient(gh.api_url, auth=auth),
        ready_label=gh.ready_label,
        projects=projects,
        trusted_permission=gh.trusted_permission,
        git_base_url=gh.git_url,
        checks_grace=gh.checks_grace_s,
    )

    def remote(repo: RepoConfig) -> tuple[str, dict[str, str]]:
        return repo.remote or f"{forge.git_base_url}/{repo.name}.git", {}

    return forge, remote


def app_auth(app_id: int, installation_id: int | None) -> AppAuth:
    """GitHub App auth from ``github.app_id``/``installation_id`` and the ``github_app_key`` secret.

    The secret (``$GITHUB_APP_KEY``, ``$CREDENTIALS_DIRECTORY/github_app_key`` or a credentials file)
    is the PEM itself or the path of the ``.pem`` file; a missing or unusable key is a one-line
    :class:`ConfigError`.
    """
    from agentos.forge.base import ForgeError
    from agentos.forge.github import AppAuth, load_app_key

    if installation_id is None:
        raise ConfigError(["github.installation_id: needed with github.app_id (see docs/github.md, GitHub App)"])
    key = secret("github_app_key")
    if key is None:
        raise ConfigError(
            [
                "github.app_id is set but there is no app key: set GITHUB_APP_KEY (PEM or path) or the github_app_key "
                "credential"
            ]
        )
    try:
        pem = load_app_key(key)
        get_default().add(pem)
        return AppAuth(app_id, pem, installation_id)
    except ForgeError as exc:
        raise ConfigError([str(exc)]) from None
