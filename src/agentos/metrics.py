"""Moved to :mod:`agentos.ops.metrics`; this re-export keeps old imports working until their callers move."""

from agentos.ops.metrics import (
    AttemptRow,
    CheckFlip,
    Failure,
    Finish,
    GroupStats,
    History,
    StatsReport,
    group_stats,
    read_history,
    repo_of,
    summarise,
)

__all__ = [
    "AttemptRow",
    "CheckFlip",
    "Failure",
    "Finish",
    "GroupStats",
    "History",
    "StatsReport",
    "group_stats",
    "read_history",
    "repo_of",
    "summarise",
]
