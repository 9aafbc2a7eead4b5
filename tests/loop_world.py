"""A small world for the improvement loops: the ports they take, over a real store and forge, without a daemon.

:class:`LoopWorld` is the loops' settings (a config the test may replace, like a reload or the scorer's
auto-tune), their journal (every event appended to the real store, so a loop reads its own past runs back),
their clock and their notifier; the builders make each loop from it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from agentos.config import Config, RepoConfig
from agentos.forge.base import Forge
from agentos.graph import Event, Task
from agentos.jobs._loops import LoopSettings
from agentos.jobs.analysis import AgentScorer, LogAnalyzer
from agentos.jobs.digest import DailyDigest
from agentos.jobs.groomer import BacklogGroomer
from agentos.jobs.housekeeping import Housekeeping
from agentos.jobs.incidents import IncidentScanner
from agentos.jobs.planner import SprintPlanner
from agentos.llm import ModelAsker
from agentos.ops.notify import Message, Notifier
from agentos.ports import Action, Clock, Severity
from agentos.store import Store


class LoopWorld:
    """Settings, journal, clock and notifier of the loops, over ``store``, ``graph`` and ``forge``."""

    def __init__(
        self,
        config: Config,
        store: Store,
        forge: Forge,
        clock: Clock,
        *,
        config_path: Path | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.store = store
        self.graph, self.state = store.load()
        self.forge = forge
        self.clock = clock
        self.notifier: Notifier | None = None
        self.stopping = False
        self.disabled: set[str] = set()

    # Settings
    def repo(self, name: str) -> RepoConfig:
        return self.config.repo(name)

    def repo_enabled(self, name: str) -> bool:
        try:
            repo = self.config.repo(name)
        except KeyError:
            return False
        return repo.enabled and name not in self.disabled

    # Clock
    def now(self) -> datetime:
        return self.clock()

    # Journal
    @property
    def held(self) -> str | None:
        return None

    def event(self, type_: str, task: str | None = None, **data: Any) -> Event:
        return Event(type=type_, task=task, ts=self.clock(), data=data)

    def record(self, type_: str, task: str | None = None, **data: Any) -> None:
        self.store.append([self.event(type_, task, **data)])

    def commit(self, events: Iterable[Event], tasks: Iterable[Task] = ()) -> None:
        task_list = list(tasks)
        for task in task_list:
            if task.id not in self.graph:
                self.graph.put(task)
        self.store.append(list(events), task_list)

    def save_state(self) -> None:
        self.store.append([], [], daemon=self.state)

    # Notify (the digest's)
    def notify(self, severity: Severity, key: str, text: str, actions: Sequence[Action] = ()) -> bool:
        return self.notifier.notify(severity, key, text) if self.notifier is not None else False

    def drain_digest(self) -> list[Message]:
        return self.notifier.drain_digest() if self.notifier is not None else []

    # the loops, built from the ports above
    def _reads(self) -> dict[str, Any]:
        return {"settings": self, "journal": self, "clock": self.clock, "graph": self.graph, "store": self.store}

    def _stopping(self) -> bool:
        return self.stopping

    def incident_scanner(self, s: LoopSettings | None = None, *, llm: ModelAsker | None = None) -> IncidentScanner:
        return IncidentScanner(
            **self._reads(), forge=self.forge, stopping=self._stopping, loop_settings=s, llm=llm
        )

    def log_analyzer(self, s: LoopSettings | None = None) -> LogAnalyzer:
        return LogAnalyzer(**self._reads(), forge=self.forge, loop_settings=s)

    def agent_scorer(self, s: LoopSettings | None = None) -> AgentScorer:
        return AgentScorer(**self._reads(), loop_settings=s)

    def backlog_groomer(self, s: LoopSettings | None = None, *, llm: ModelAsker | None = None) -> BacklogGroomer:
        return BacklogGroomer(**self._reads(), forge=self.forge, stopping=self._stopping, loop_settings=s, llm=llm)

    def sprint_planner(self, s: LoopSettings | None = None) -> SprintPlanner:
        return SprintPlanner(**self._reads(), forge=self.forge, stopping=self._stopping, loop_settings=s)

    def daily_digest(self, s: LoopSettings | None = None, *, tz: Any = None) -> DailyDigest:
        return DailyDigest(**self._reads(), notify=self, loop_settings=s, tz=tz)

    def housekeeping(self) -> Housekeeping:
        return Housekeeping(settings=self, journal=self, clock=self.clock, store=self.store)
