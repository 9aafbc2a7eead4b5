"""In-memory stand-ins for the ports of :mod:`agentos.ports`, for tests that build a part without a daemon.

(``agentos.testing`` will hold the shared versions; these are the few the pool and the loop jobs need.)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from agentos.config import Config, RepoConfig
from agentos.graph import Event, Task, TaskGraph
from agentos.ports import Action, Severity


class FixedClock:
    """A clock that says ``now`` until a test moves it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class MemorySettings:
    """The live configuration, swappable like a reload; repos can be switched off like ``ctl repo off``."""

    config: Config
    disabled: set[str] = field(default_factory=set)

    def repo(self, name: str) -> RepoConfig:
        return self.config.repo(name)

    def repo_enabled(self, name: str) -> bool:
        try:
            repo = self.config.repo(name)
        except KeyError:
            return False
        return repo.enabled and name not in self.disabled


class MemoryJournal:
    """Keeps what would be journalled: events (``recorded``), changed tasks (into ``graph``), state saves."""

    def __init__(self, clock: FixedClock, graph: TaskGraph | None = None) -> None:
        self.clock = clock
        self.graph = graph if graph is not None else TaskGraph()
        self.recorded: list[Event] = []
        self.saves = 0
        self.held_because: str | None = None

    @property
    def held(self) -> str | None:
        return self.held_because

    def event(self, type_: str, task: str | None = None, **data: Any) -> Event:
        return Event(type=type_, task=task, ts=self.clock(), data=data)

    def record(self, type_: str, task: str | None = None, **data: Any) -> None:
        self.recorded.append(self.event(type_, task, **data))

    def commit(self, events: Iterable[Event], tasks: Iterable[Task] = ()) -> None:
        for task in tasks:
            if task.id not in self.graph:
                self.graph.put(task)
        self.recorded.extend(events)

    def save_state(self) -> None:
        self.saves += 1

    def types(self) -> list[str]:
        return [e.type for e in self.recorded]


class RecordingNotify:
    """Keeps every notice as ``(severity, key, text)``."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, str, str]] = []
        self.digest: list[Any] = []

    def notify(self, severity: Severity, key: str, text: str, actions: Sequence[Action] = ()) -> bool:
        self.sent.append((severity, key, text))
        return True

    def drain_digest(self) -> list[Any]:
        batched, self.digest = self.digest, []
        return batched
