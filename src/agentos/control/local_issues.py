"""``agentos issue new|ready`` on a running daemon: issues filed and made ready through the local forge.

The controller composes one :class:`LocalIssues` and delegates ``issue_new`` and ``issue_ready`` to it.
It writes through the forge's :class:`~agentos.forge.base.IssueWriter` (the local forge has one, GitHub
has none) and only for the config file this daemon serves: the CLI names the file it read, so an issue
is never filed on another daemon's forge. A ready issue pokes the dispatcher.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from os.path import samefile
from typing import Any

from agentos import logging as alog
from agentos.control.refs import repo_named
from agentos.errors import AgentosError, ControlError
from agentos.forge.base import READY_LABEL, Forge, IssueWriter
from agentos.ports import ConfigFile

__all__ = ["LocalIssues"]

log = alog.get_logger("agentos.controller")
"""The controller's logger: ``issue_filed`` is one of the controller's events."""


class LocalIssues:
    """Files issues and labels them ready on the local forge, for the config file the daemon serves."""

    def __init__(self, *, settings: ConfigFile, forge: Forge, poke: Callable[[str], None]) -> None:
        self._settings = settings
        self._forge = forge
        self._poke = poke
        """Wakes a job by name when the scheduler has it (the controller's ``_poke``)."""

    def __repr__(self) -> str:
        return f"<LocalIssues config={self._settings.config_path}>"

    def _writer(self, config: str | None) -> IssueWriter:
        """The forge's issue writer (the local forge's), when this daemon serves the config file ``config`` (the
        CLI's, None for none)."""
        own = self._settings.config_path
        if not _same_file(config, own):
            raise ControlError(f"this daemon serves {own or 'no config file'}, not {config or 'no config file'}")
        writer = self._forge.issue_writer
        if writer is None:
            raise ControlError("`agentos issue` works on the local forge; this config uses GitHub (its issues)")
        return writer

    def _repo(self, name: str | None) -> str:
        config = self._settings.config
        if name is not None:
            return repo_named(config, name).name
        names = [r.name for r in config.repos]
        if len(names) != 1:
            raise ControlError(f"name the repo with --repo (repos: {', '.join(names) or 'none configured'})")
        return names[0]

    async def new(
        self, *, repo: str | None, title: str, body: str, labels: list[str], ready: bool, key: str, config: str | None
    ) -> dict[str, Any]:
        """File an issue on the local forge (``key`` makes a retry return the same one); ``ready`` pokes dispatch."""
        forge = self._writer(config)
        name = self._repo(repo)
        wanted = list(dict.fromkeys([*labels, READY_LABEL] if ready else labels))
        try:
            issue = await forge.new_issue(name, title, body, wanted, key=key)
        except AgentosError as exc:
            raise ControlError(f"issue not filed: {exc}") from None
        log.info("issue_filed", repo=name, number=issue.number, ready=ready, key=key)
        if ready:
            self._poke("dispatch")
        dumped: dict[str, Any] = issue.model_dump(mode="json")
        return dumped

    async def ready(self, repo: str | None, number: int, config: str | None) -> dict[str, Any]:
        """Label a local-forge issue ready and poke dispatch (a second time changes nothing)."""
        forge = self._writer(config)
        name = self._repo(repo)
        try:
            await forge.add_labels(name, number, [READY_LABEL])
        except AgentosError as exc:
            raise ControlError(str(exc)) from None
        self._poke("dispatch")
        return {"repo": name, "number": number, "ready": True}


def _same_file(a: str | os.PathLike[str] | None, b: str | os.PathLike[str] | None) -> bool:
    """Both None, or two names of one existing file."""
    if a is None or b is None:
        return a is None and b is None
    try:
        return samefile(a, b)
    except OSError:
        return False
