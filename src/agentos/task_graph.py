"""The task graph: every task in memory, indexed by id and by (repo, issue), and the order tasks start in.

Pure: no I/O, no clocks (callers pass ``now``). The tasks, their statuses and the rules that move them are
:mod:`agentos.graph`'s.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime

from agentos.graph import ACTIVE, DISPATCHABLE, FINISHED, PRIORITY_RANK, Task, TaskStatus

__all__ = ["TaskGraph"]


class TaskGraph:
    """All tasks in memory, indexed by id and by (repo, issue)."""

    def __init__(self, tasks: Iterable[Task] = ()) -> None:
        self._tasks: dict[str, Task] = {}
        self._by_issue: dict[tuple[str, int], list[Task]] = {}  # each issue's generations, oldest first
        for task in tasks:
            self.put(task)

    def __len__(self) -> int:
        return len(self._tasks)

    def __iter__(self) -> Iterator[Task]:
        return iter(self._tasks.values())

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._tasks

    def __repr__(self) -> str:
        counts: dict[str, int] = {}
        for task in self._tasks.values():
            counts[task.status.value] = counts.get(task.status.value, 0) + 1
        return f"<TaskGraph {counts}>"

    def put(self, task: Task) -> None:
        old = self._tasks.get(task.id)
        if old is not None:
            generations = self._by_issue.get((old.repo, old.issue), [])
            generations[:] = [t for t in generations if t.id != task.id]
        self._tasks[task.id] = task
        generations = self._by_issue.setdefault((task.repo, task.issue), [])
        generations.append(task)
        if len(generations) > 1:
            generations.sort(key=lambda t: t.generation)

    def get(self, task_id: str) -> Task:
        try:
            return self._tasks[task_id]
        except KeyError:
            raise KeyError(f"no task {task_id!r}") from None

    def find(self, task_id: str) -> Task | None:
        return self._tasks.get(task_id)

    def for_issue(self, repo: str, issue: int) -> list[Task]:
        """Every generation of one issue's task, oldest first."""
        return list(self._by_issue.get((repo, issue), ()))

    def latest_for_issue(self, repo: str, issue: int) -> Task | None:
        tasks = self.for_issue(repo, issue)
        return tasks[-1] if tasks else None

    def counts(self) -> dict[str, int]:
        counts = {status.value: 0 for status in TaskStatus}
        for task in self._tasks.values():
            counts[task.status.value] += 1
        return counts

    def active(self) -> list[Task]:
        return [t for t in self._tasks.values() if t.status in ACTIVE]

    def deps_met(self, task: Task) -> bool:
        """A task runs only when every task it depends on is finished: merged or done (unknown ids block)."""
        for dep in task.depends_on:
            other = self._tasks.get(dep)
            if other is None or other.status not in FINISHED:
                return False
        return True

    def dispatchable(self, now: datetime) -> list[Task]:
        """Tasks that may start now, highest priority first, then oldest."""
        ready = [
            t
            for t in self._tasks.values()
            if t.status in DISPATCHABLE and (t.not_before is None or t.not_before <= now) and self.deps_met(t)
        ]
        return sorted(ready, key=lambda t: (PRIORITY_RANK[t.priority], t.created_at, t.id))
