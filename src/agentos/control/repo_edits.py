"""The operator's repo commands: the repos as configured, and their switches (``repo enable|disable|mode|cadence``).

On and off live in the daemon's state. A mode or a cadence is written into the config file, or held in the state
when the file is read-only (the system unit: :mod:`agentos.repo_overrides`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from agentos import config as cfgmod
from agentos import logging as alog
from agentos import repo_overrides
from agentos.control.refs import repo_named
from agentos.errors import ControlError
from agentos.ports import ConfigFile, Journal
from agentos.store import DaemonState

log = alog.get_logger("agentos.controller")


class RepoEdits:
    """``repos`` and the edits of one repo, for :class:`~agentos.control.controller.Controller`."""

    def __init__(
        self, *, settings: ConfigFile, journal: Journal, state: DaemonState, refused: Callable[[], dict[str, str]]
    ) -> None:
        self._settings = settings
        self._journal = journal
        self._state = state
        self._refused = refused
        """The repos refused for a broken path, and why."""
        self._config_lock = asyncio.Lock()

    def _repo(self, name: str) -> cfgmod.RepoConfig:
        return repo_named(self._settings.config, name)

    def listing(self) -> list[dict[str, Any]]:
        return [
            {
                "name": r.name,
                "enabled": self._settings.repo_enabled(r.name),
                "mode": r.automation_mode,
                "cadence_days": r.groom_cadence_days,
                "base": r.base_branch,
                "path": r.path,
                "refused": self._refused().get(r.name),
                "held": ", ".join(repo_overrides.held_keys(self._state.repo_overrides, r.name)) or None,
            }
            for r in self._settings.config.repos
        ]

    def set_enabled(self, name: str, enabled: bool) -> dict[str, Any]:
        self._repo(name)
        disabled = self._state.disabled_repos
        if enabled and name in disabled:
            disabled.remove(name)
        elif not enabled and name not in disabled:
            disabled.append(name)
        self._journal.save_state()
        return {"repo": name, "enabled": enabled}

    async def _edit(self, name: str, key: str, value: Any) -> None:
        """Write ``repos.<name>.<key>`` into the config file, or hold it in the state when the file is read-only
        (the system unit: :mod:`agentos.repo_overrides`)."""
        self._repo(name)
        path = self._settings.config_path
        if path is None:
            raise ControlError("the daemon runs without a config file; there is nothing to edit")
        overrides = self._state.repo_overrides
        async with self._config_lock:
            if not await asyncio.to_thread(repo_overrides.file_writable, path):
                new = repo_overrides.hold(overrides, self._settings.config, name, key, value)
                self._journal.save_state()
                self._settings.replace_config(new)
                log.info("config_edit_held", repo=name, key=key, value=value, path=str(path))
                return
            try:
                new = await asyncio.to_thread(cfgmod.set_value, path, f"repos.{name}.{key}", value)
            except cfgmod.ConfigError as exc:
                raise ControlError(str(exc).splitlines()[0]) from None
            if name in overrides and key in overrides[name]:
                repo_overrides.release(overrides, name, key)
                self._journal.save_state()
        self._settings.replace_config(new)
        log.info("config_edited", repo=name, key=key, value=value)

    async def set_mode(self, name: str, mode: str) -> dict[str, Any]:
        modes = {"full": "full", "dispatcher": "dispatcher_only", "dispatcher_only": "dispatcher_only"}
        if mode not in modes:
            raise ControlError(f"mode must be full or dispatcher, not {mode!r}")
        await self._edit(name, "automation_mode", modes[mode])
        return {"repo": name, "mode": modes[mode]}

    async def set_cadence(self, name: str, days: int) -> dict[str, Any]:
        if not isinstance(days, int) or days < 1:
            raise ControlError(f"cadence must be a whole number of days ≥ 1, not {days!r}")
        await self._edit(name, "groom_cadence_days", days)
        return {"repo": name, "cadence_days": days}
