"""The one registry of per-repo workspaces the daemon's parts share."""

from __future__ import annotations

from pathlib import Path

from agentos.config import RepoConfig
from agentos.workspace_registry import WorkspaceRegistry


def remote(repo: RepoConfig) -> tuple[str, dict[str, str]]:
    return f"/srv/{repo.name}", {"GIT_CONFIG_NOSYSTEM": "1"}


class FakeCredentials:
    def __init__(self) -> None:
        self.asked: list[str] = []

    async def git_credentials(self, repo: str) -> tuple[str, dict[str, str]]:
        self.asked.append(repo)
        return f"https://git.example/{repo}.git", {"AGENTOS_GIT_TOKEN": "t"}


class TestWorkspaceRegistry:
    def test_one_workspace_per_repo(self, tmp_path: Path) -> None:
        """Asking twice for a repo gives the same workspace (one clone, one lock); another repo gets its own."""
        registry = WorkspaceRegistry(tmp_path, remote)
        calc = RepoConfig(name="calc", path="/srv/calc", test_command="true")
        web = RepoConfig(name="web", path="/srv/web", test_command="true")
        assert registry.workspace(calc) is registry.workspace(calc)
        assert registry.workspace(web) is not registry.workspace(calc)
        assert registry.workspace(calc).remote_url == "/srv/calc"
        assert registry.workspace(calc).git_env == {"GIT_CONFIG_NOSYSTEM": "1"}

    def test_a_changed_repo_config_gets_a_new_workspace(self, tmp_path: Path) -> None:
        """After a reload changes a repo's settings, the workspace reflects them."""
        registry = WorkspaceRegistry(tmp_path, remote)
        before = registry.workspace(RepoConfig(name="calc", path="/srv/calc", test_command="true"))
        after = registry.workspace(RepoConfig(name="calc", path="/srv/calc", test_command="make test"))
        assert after is not before and after.repo.test_command == "make test"

    async def test_the_forge_credentials_refresh_git(self, tmp_path: Path) -> None:
        """With a forge's credentials, git in the workspace authenticates with them; a configured remote wins."""
        creds = FakeCredentials()
        registry = WorkspaceRegistry(tmp_path, remote, credentials=creds)
        ws = registry.workspace(RepoConfig(name="acme/calc", path="/srv/calc", test_command="true"))
        assert ws.credentials is not None
        url, env = await ws.credentials()
        assert url == "https://git.example/acme/calc.git" and env == {"AGENTOS_GIT_TOKEN": "t"}
        web = RepoConfig(name="acme/web", path="/srv/web", remote="git@host:web.git", test_command="true")
        pinned = registry.workspace(web)
        assert pinned.credentials is not None
        assert (await pinned.credentials())[0] == "git@host:web.git"
        assert creds.asked == ["acme/calc", "acme/web"]
