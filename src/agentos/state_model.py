"""What the state directory holds, and what goes wrong with it: the schema and its migrations, the daemon's
own small state (:class:`DaemonState`), and the :class:`StateError` tree that :mod:`agentos.store` raises.

Exceptions::

    AgentosError
     └── StateError          anything wrong with the state directory
          ├── CorruptState   a file does not parse or validate (a bad snapshot is quarantined)
          ├── SchemaTooNew   a file written by a newer agentos
          └── AlreadyRunning another process holds agentos.lock
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, field_validator

from agentos.errors import AgentosError

__all__ = [
    "MIGRATIONS",
    "NOTIFIED_KEEP",
    "SCHEMA",
    "AlreadyRunning",
    "CorruptState",
    "DaemonState",
    "JobRun",
    "Migration",
    "SchemaTooNew",
    "StateError",
    "daemon_delta",
    "notified_delta",
]

SCHEMA = 1
"""The schema this code writes. Files with a lower ``"schema"`` are migrated on load."""

NOTIFIED_KEEP = 5000
"""How many notification dedup keys :class:`DaemonState` keeps (the most recent)."""

Migration = Callable[[dict[str, Any]], dict[str, Any]]
MIGRATIONS: dict[int, Migration] = {}
"""``MIGRATIONS[n]`` turns a schema-``n`` document into schema ``n + 1`` (the chain sets ``"schema"``).

A document is ``{"schema", "seq", "tasks": [task dicts], "daemon": {daemon fields}}``. Journal lines are
migrated as partial documents: ``tasks`` holds the one task the line carries (or none) and ``daemon`` only
the fields the line changed, so a migration must tolerate missing daemon keys."""


class StateError(AgentosError):
    """The state directory cannot be read or written as the rules require."""


class CorruptState(StateError):
    """A state file fails to parse or validate; snapshots are renamed ``*.corrupt-<ts>`` first."""


class SchemaTooNew(StateError):
    """A state file was written by a newer agentos; an older binary would drop its fields."""


class AlreadyRunning(StateError):
    """Another process holds ``agentos.lock`` in the same state directory."""


class JobRun(BaseModel):
    """The run history of one scheduled job."""

    last_run: datetime | None = None
    last_success: datetime | None = None
    last_error: str | None = None
    runs: int = 0
    failures: int = 0


class RepoOverride(BaseModel):
    """An operator's ``ctl repo mode|cadence`` held in the state because the config file is read-only."""

    value: Any
    yaml: Any
    """The file's value when the override was set: once the file says something else, the file wins."""


class DaemonState(BaseModel):
    """The daemon's own small state: kill switch, disabled jobs and repos, job runs, agent cool-downs."""

    paused: bool = False
    disabled_jobs: list[str] = Field(default_factory=list)
    disabled_repos: list[str] = Field(default_factory=list)
    repo_overrides: dict[str, dict[str, RepoOverride]] = Field(default_factory=dict)
    """repo → config key → the operator's value, over a config file the daemon cannot write (see
    :mod:`agentos.repo_overrides`)."""
    job_runs: dict[str, JobRun] = Field(default_factory=dict)
    paused_agents: dict[str, datetime] = Field(default_factory=dict)
    notified: list[str] = Field(default_factory=list)

    @field_validator("notified")
    @classmethod
    def _keep_recent(cls, keys: list[str]) -> list[str]:
        return keys[-NOTIFIED_KEEP:]

    def mark_notified(self, key: str) -> bool:
        """Remember that the notification ``key`` was sent; False when it already was (so skip it)."""
        if key in self.notified:
            return False
        self.notified.append(key)
        if len(self.notified) > NOTIFIED_KEEP:
            del self.notified[: len(self.notified) - NOTIFIED_KEEP]
        return True


def notified_delta(old: list[str], new: list[str]) -> tuple[int, list[str]]:
    """``(keep, added)`` with ``old[len(old) - keep:] + added == new``, keeping as much of ``old`` as fits."""
    if old:
        last = old[-1]
        for j in range(min(len(new), len(old)) - 1, -1, -1):
            if new[j] == last and new[: j + 1] == old[len(old) - j - 1 :]:
                return j + 1, new[j + 1 :]
    return 0, list(new)


def daemon_delta(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """What a journal line carries to turn the daemon state ``old`` (dumped) into ``new``: the changed fields
    (``"daemon"``) and the change of the notification dedup list (``"notified_keep"``/``"notified_add"``)."""
    delta: dict[str, Any] = {}
    changed = {key: value for key, value in new.items() if key != "notified" and old.get(key) != value}
    if changed:
        delta["daemon"] = changed
    if new["notified"] != old.get("notified"):
        keep, added = notified_delta(old.get("notified", []), new["notified"])
        delta["notified_keep"] = keep
        delta["notified_add"] = added
    return delta
