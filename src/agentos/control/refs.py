"""How an operator names a repository, a PR or an issue: ``calc``, ``calc#12``, or ``12`` with one repo.

Pure functions of the config; each raises :class:`~agentos.errors.ControlError` with a one-line message
that says how to name it instead. The controller and its collaborators (:mod:`agentos.control.local_issues`)
resolve every name an operator gives through these.
"""

from __future__ import annotations

from agentos.config import Config, RepoConfig
from agentos.errors import ControlError

__all__ = ["numbered", "repo_named"]


def repo_named(config: Config, name: str) -> RepoConfig:
    """The configured repository ``name``; the error lists the ones there are."""
    try:
        return config.repo(name)
    except KeyError:
        names = ", ".join(r.name for r in config.repos) or "none"
        raise ControlError(f"no repo named {name!r}; repos: {names}") from None


def numbered(config: Config, ref: str) -> tuple[str, int]:
    """A PR or an issue named ``repo#N``, or ``N`` when one repository is configured: ``(repo, N)``."""
    repo, _, num = ref.rpartition("#")
    if not num.isdigit():
        raise ControlError(f"a PR is named repo#N or N, not {ref!r}")
    if not repo:
        repos = config.repos
        if len(repos) != 1:
            raise ControlError("more than one repo: name the PR as repo#N")
        repo = repos[0].name
    repo_named(config, repo)
    return repo, int(num)
