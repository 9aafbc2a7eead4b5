"""Repos the daemon refuses to work on: a ``path`` that is missing or not a git repository (issue #21, 6).

``agentos config validate`` and ``doctor`` refuse such a path before the daemon starts (:mod:`agentos.repopath`);
the daemon checks again at start, on reload and before each dispatch pass, because a folder can go away
under a running daemon. A refused repo gets one log line (``repo_refused``: repo, path, problem) and one
sev2 notice per problem, not per pass; the dispatcher admits and starts nothing there instead of burning
attempts on "Could not read from remote repository". Fixed, it comes back by itself (``repo_restored``).

Only repos with a ``path`` are checked: on GitHub a repo may have none (agentos clones it from GitHub).
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from agentos import logging as alog
from agentos.ports import Notify, Settings
from agentos.repopath import path_problem

__all__ = ["RepoGuard"]

log = alog.get_logger("agentos.repo_guard")


class RepoGuard:
    """Which configured repos are refused now, and why (``problem``); :meth:`check` looks again."""

    def __init__(self, *, settings: Settings, notify: Notify | None) -> None:
        self._settings = settings
        self._notify = notify
        self._refused: dict[str, str] = {}
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"<RepoGuard refused={sorted(self._refused)}>"

    @property
    def refused(self) -> dict[str, str]:
        """Each refused repo's problem (``/srv/calc does not exist``), as of the last check."""
        return dict(self._refused)

    def problem(self, repo: str) -> str | None:
        """Why ``repo`` is refused, or None when it may be worked on."""
        return self._refused.get(repo)

    async def check(self) -> dict[str, str]:
        """Look at every configured repo's path again (git runs in a thread); returns :attr:`refused`."""
        paths = {r.name: r.path for r in self._settings.config.repos if r.path}
        async with self._lock:  # a reload's check and a dispatch pass's do not interleave their notices
            found = await asyncio.to_thread(_problems, paths)
            self._update(paths, found)
        return self.refused

    def _update(self, paths: dict[str, str], found: dict[str, str]) -> None:
        for name, problem in found.items():
            if self._refused.get(name) == problem:
                continue
            log.warning("repo_refused", repo=name, path=paths[name], problem=problem)
            if self._notify is not None:
                self._notify.notify(
                    2,
                    f"repo_refused:{name}:{problem}",
                    f"Repo {name} is refused: {problem}. Nothing starts there until the path is a git repository "
                    "again; agentos then takes it back by itself.",
                )
        for name in sorted(set(self._refused) - set(found)):
            if name in paths:  # fixed (a repo taken out of the config is just forgotten)
                log.info("repo_restored", repo=name, path=paths[name])
        self._refused = found


def _problems(paths: dict[str, str]) -> dict[str, str]:
    git = shutil.which("git")
    found = {}
    for name, raw in paths.items():
        if problem := path_problem(Path(raw).expanduser(), git=git):
            found[name] = problem
    return found
