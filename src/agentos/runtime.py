"""The live parts of one daemon, shared by the jobs, the executor and the controller.

``Runtime.commit`` is the only way state changes: it applies nothing itself, it journals (fsynced) the
events and the changed tasks that a graph rule produced, so a crash after it returns loses nothing.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentos import logging as alog
from agentos.config import Config, RepoConfig
from agentos.forge.base import READY_LABEL, Forge
from agentos.graph import Event, Task, TaskGraph
from agentos.store import DaemonState, Store
from agentos.workspace import Workspace

if TYPE_CHECKING:
    from agentos.control.notify import Notifier
    from agentos.scheduler import Scheduler

log = alog.get_logger("agentos.runtime")


async def _remote_credentials(
    creds: Callable[[str], Awaitable[tuple[str, dict[str, str]]]], repo: RepoConfig
) -> tuple[str, dict[str, str]]:
    """A forge's fresh git credentials for ``repo``; an explicit ``remote`` in the config wins."""
    url, env = await creds(repo.name)
    return repo.remote or url, env


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Runtime:
    config: Config
    config_path: Path | None
    store: Store
    graph: TaskGraph
    state: DaemonState
    forge: Forge
    remote_for: Callable[[RepoConfig], tuple[str, dict[str, str]]]
    clock: Callable[[], datetime] = utcnow
    notifier: Notifier | None = None
    scheduler: Scheduler | None = None
    started_at: datetime = field(default_factory=utcnow)
    workspaces: dict[str, Workspace] = field(default_factory=dict)
    running: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    listeners: list[Callable[[Event], None]] = field(default_factory=list)
    stopping: bool = False

    @property
    def state_dir(self) -> Path:
        return self.config.state_path

    def now(self) -> datetime:
        return self.clock()

    def repo(self, name: str) -> RepoConfig:
        return self.config.repo(name)

    @property
    def ready_label(self) -> str:
        """The label that makes an issue ready (configurable on GitHub)."""
        gh = self.config.github
        return gh.ready_label if self.config.forge == "github" and gh is not None else READY_LABEL

    def ready_by_label(self, repo: str) -> bool:
        """False when a Projects v2 board's Status decides readiness for ``repo`` instead of the label."""
        try:
            return self.config.forge != "github" or not self.config.repo(repo).project
        except KeyError:
            return True

    def repo_enabled(self, name: str) -> bool:
        try:
            repo = self.config.repo(name)
        except KeyError:
            return False
        return repo.enabled and name not in self.state.disabled_repos

    def workspace(self, repo: RepoConfig) -> Workspace:
        ws = self.workspaces.get(repo.name)
        if ws is None or ws.repo != repo:
            url, env = self.remote_for(repo)
            creds = getattr(self.forge, "git_credentials", None)
            refresh = None if creds is None else functools.partial(_remote_credentials, creds, repo)
            ws = Workspace(self.state_dir, repo, remote_url=url, git_env=env, credentials=refresh)
            self.workspaces[repo.name] = ws
        return ws

    def commit(self, events: Iterable[Event], tasks: Iterable[Task] = ()) -> None:
        """Journal events and the tasks they changed (fsynced) before anything is done outside."""
        task_list, event_list = list(tasks), list(events)
        for task in task_list:
            if task.id not in self.graph:
                self.graph.put(task)
        self.store.append(event_list, task_list)
        self.store.maybe_compact(self.graph, self.state)
        self._tell(event_list)

    def save_state(self) -> None:
        """Journal the daemon's own state (pause, disabled jobs and repos, job runs)."""
        self.store.append([], [], daemon=self.state)

    def event(self, type_: str, task: str | None = None, **data: Any) -> Event:
        return Event(type=type_, task=task, ts=self.now(), data=data)

    def record(self, type_: str, task: str | None = None, **data: Any) -> None:
        """Journal an event that changes no task (a job run, a notification, a merge seen elsewhere)."""
        event = self.event(type_, task, **data)
        self.store.append([event])
        self._tell([event])

    def _tell(self, events: list[Event]) -> None:
        for event in events:
            for listener in self.listeners:
                try:
                    listener(event)
                except Exception:  # a listener must never break a state change
                    log.error("event_listener_failed", event_type=event.type, exc_info=True)


class StateSeenStore:
    """The notifier's memory of sent notifications, kept in the daemon state (journalled)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def has(self, key: str) -> bool:
        return key in self.rt.state.notified

    def add(self, key: str) -> None:
        if self.rt.state.mark_notified(key):
            self.rt.save_state()
