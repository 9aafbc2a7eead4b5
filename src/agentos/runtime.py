"""The live parts of one daemon, shared by the jobs, the executor and the controller.

``Runtime.commit`` and the other journal methods delegate to :class:`agentos.state_writer.StateWriter`
(``rt.writer``), which holds every state write after one fails (a full disk) until it can save again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentos import logging as alog
from agentos.config import Config, RepoConfig
from agentos.forge.base import READY_LABEL, Forge
from agentos.graph import Event, Task
from agentos.ports import Action, Severity
from agentos.repo_overrides import overlay
from agentos.state_writer import StateWriteFailure, StateWriter
from agentos.store import DaemonState, StateError, Store
from agentos.task_graph import TaskGraph
from agentos.workspace import Workspace
from agentos.workspace_registry import WorkspaceRegistry

if TYPE_CHECKING:
    from agentos.ops.notify import Message, Notifier
    from agentos.scheduler import Scheduler

log = alog.get_logger("agentos.runtime")


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
    workspace_registry: WorkspaceRegistry | None = None
    """The daemon's one registry of clones (shared with the local forge); built from ``remote_for`` and the
    forge's credentials on first use when not given."""
    running: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    stopping: bool = False
    writer: StateWriter = field(init=False)
    """The state's one writer (journal and write hold); the methods below delegate to it."""

    def __post_init__(self) -> None:
        self.writer = StateWriter(
            self.store, self.graph, self.state, clock=self.now, notify=self, wake=self.wake
        )
        self.config = overlay(self.config, self.state.repo_overrides)

    @property
    def listeners(self) -> list[Callable[[Event], None]]:
        return self.writer.listeners

    @property
    def write_failure(self) -> StateWriteFailure | None:
        """Set while the state cannot be written: nothing new starts until :meth:`retry_state_write` succeeds."""
        return self.writer.write_failure

    @write_failure.setter
    def write_failure(self, failure: StateWriteFailure | None) -> None:
        self.writer.write_failure = failure

    @property
    def state_dir(self) -> Path:
        return self.config.state_path

    def drain_digest(self) -> list[Message]:
        """The notifier's batched sev3 messages (none while there is no notifier), for the daily digest."""
        return self.notifier.drain_digest() if self.notifier is not None else []

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

    def replace_config(self, config: Config) -> None:
        """Swap in a configuration read afresh (the ``ConfigFile`` port: a reload, a config edit), with the
        operator's edits held in the state layered over it (:mod:`agentos.repo_overrides`)."""
        self.config = overlay(config, self.state.repo_overrides)

    def repo_enabled(self, name: str) -> bool:
        try:
            repo = self.config.repo(name)
        except KeyError:
            return False
        return repo.enabled and name not in self.state.disabled_repos

    def workspace(self, repo: RepoConfig) -> Workspace:
        if self.workspace_registry is None:
            creds = self.forge.credentials if self.forge is not None else None
            self.workspace_registry = WorkspaceRegistry(self.state_dir, self.remote_for, credentials=creds)
        return self.workspace_registry.workspace(repo)

    def commit(self, events: Iterable[Event], tasks: Iterable[Task] = ()) -> None:
        """Journal events and the tasks they changed (fsynced) before anything is done outside."""
        self.writer.commit(events, tasks)

    def save_state(self) -> None:
        self.writer.save_state()

    def save_job_state(self) -> None:
        self.writer.save_job_state()

    def retry_state_write(self) -> bool:
        return self.writer.retry_state_write()

    @property
    def held(self) -> str | None:
        """Why state writes are held (the disk is full), or None when they work (the ``Journal`` port)."""
        return self.write_failure.describe() if self.write_failure is not None else None

    def notify(self, severity: Severity, key: str, text: str, actions: Sequence[Action] = ()) -> bool:
        """The ``Notify`` port over the daemon's notifier (none in tests: the notice is dropped)."""
        return self.notifier.notify(severity, key, text, actions) if self.notifier is not None else False

    def wake(self, job: str) -> None:
        """The ``Wake`` port: run ``job`` now when the scheduler has it."""
        if self.scheduler is not None and self.scheduler.has_job(job):
            self.scheduler.poke(job)

    def event(self, type_: str, task: str | None = None, **data: Any) -> Event:
        return self.writer.event(type_, task, **data)

    def record(self, type_: str, task: str | None = None, **data: Any) -> None:
        self.writer.record(type_, task, **data)


class StateSeenStore:
    """The notifier's memory of sent notifications, kept in the daemon state and journalled by ``save``."""

    def __init__(self, state: DaemonState, save: Callable[[], None]) -> None:
        self._state = state
        self._save = save

    def has(self, key: str) -> bool:
        return key in self._state.notified

    def add(self, key: str) -> None:
        if self._state.mark_notified(key):
            try:
                self._save()
            except StateError:  # an alert that cannot be recorded is still sent (the disk-full alert itself)
                log.warning("notified_key_not_saved", key=key)
