"""A task as one row of a table: ``ctl tasks``, ``agentos tasks`` (read from the state directory) and Telegram
``/tasks``. Pure: the row is JSON-able, and the surfaces render it (cost cells: :func:`agentos.budget.task_cost_cell`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentos.graph import Task

__all__ = ["task_row"]


def task_row(task: Task) -> dict[str, Any]:
    """One task as a table row (``ctl tasks``, ``agentos tasks``, Telegram ``/tasks``)."""
    last = task.current_attempt
    return {
        "id": task.id,
        "repo": task.repo,
        "issue": task.issue,
        "title": task.title,
        "status": task.status.value,
        "attempts": len(task.attempts),
        "agent": last.agent if last else task.agent,
        "pr": task.pr,
        "blocker": task.last_blocker,
        "cost_usd": round(task.cost_usd(), 4),
        "not_measured": task.unmeasured(),
        "tokens": task.tokens(),
        "updated": task.updated_at.isoformat(),
    }
