"""Runtime edits of a repo (``ctl repo mode|cadence``, ``/repo mode``) over a config file the daemon cannot write.

Under the system unit ``/etc/agentos/config.yaml`` is read-only to the daemon (``ProtectSystem=strict``, and
the file belongs to root). An edit then goes into the state (``DaemonState.repo_overrides``, saved with it
and kept across restarts) and is layered over the file's value; where the file is writable (a ``--user``
install) the edit goes into the file as before and drops any override of that key.

An override remembers the file's value when it was set. Once the file says something else (the operator
edited the YAML and reloaded), the file wins and the override is dropped: the YAML stays the source of
truth an operator can read, and ``ctl repos`` shows which keys are held in the state.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from agentos import logging as alog
from agentos.config import Config
from agentos.state_model import RepoOverride

log = alog.get_logger("agentos.repo_overrides")

Overrides = dict[str, dict[str, RepoOverride]]


def file_writable(path: Path) -> bool:
    """Whether the daemon can rewrite ``path`` in place (itself and its folder, for the atomic rename)."""
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK | os.X_OK)


def with_repo_value(config: Config, repo: str, key: str, value: Any) -> Config:
    """``config`` with ``repos.<repo>.<key>`` set to ``value``, validated as the file's value would be."""
    repos = []
    for r in config.repos:
        if r.name == repo:
            r = r.model_copy()
            setattr(r, key, value)  # validate_assignment: a bad value raises pydantic's ValidationError
        repos.append(r)
    return config.model_copy(update={"repos": repos})


def hold(overrides: Overrides, config: Config, repo: str, key: str, value: Any) -> Config:
    """Record ``value`` for ``repos.<repo>.<key>`` over ``config`` (the file's value is remembered once)."""
    held = overrides.setdefault(repo, {})
    base = held[key].yaml if key in held else getattr(config.repo(repo), key)
    if value == base:  # back to what the file says: nothing to hold
        release(overrides, repo, key)
        return with_repo_value(config, repo, key, value)
    held[key] = RepoOverride(value=value, yaml=base)
    log.info("repo_override_held", repo=repo, key=key, value=value, file_value=base)
    return with_repo_value(config, repo, key, value)


def release(overrides: Overrides, repo: str, key: str) -> None:
    """Forget the override of ``repos.<repo>.<key>`` (the file now holds the operator's value)."""
    held = overrides.get(repo, {})
    held.pop(key, None)
    if not held:
        overrides.pop(repo, None)


def overlay(config: Config, overrides: Overrides) -> Config:
    """``config`` with every override still valid applied; stale ones are dropped from ``overrides``.

    An override is stale when its repo is gone or the file's value is neither the one it replaced nor
    its own (the operator changed the YAML since).
    """
    names = {r.name for r in config.repos}
    for repo in list(overrides):
        for key, held in list(overrides[repo].items()):
            current = getattr(config.repo(repo), key, None) if repo in names else None
            if repo not in names or current not in (held.yaml, held.value):
                log.info("repo_override_dropped", repo=repo, key=key, value=held.value, file_value=current)
                release(overrides, repo, key)
                continue
            config = with_repo_value(config, repo, key, held.value)
    return config


def held_keys(overrides: Overrides, repo: str) -> list[str]:
    """The keys of ``repo`` whose value comes from the state, not the file."""
    return sorted(overrides.get(repo, {}))
