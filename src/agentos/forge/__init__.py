"""The forge: the one port to issues, pull requests, checks and comments (docs/architecture.md).

The protocol and its values are re-exported here from :mod:`agentos.forge.base`. The implementations are
imported from their own modules, so a daemon on the local forge never loads the GitHub client:
:mod:`agentos.forge.github` (``GitHubForge``, ``GitHubClient``, auth) and :mod:`agentos.forge.local`
(``LocalForge``); :mod:`agentos.forge.factory` builds the configured one.
"""

from agentos.forge.base import (
    BLOCKED_LABEL,
    READY_LABEL,
    REVIEW_LABEL,
    RUNNING_LABEL,
    BoardStatus,
    CheckRun,
    Checks,
    CheckState,
    Comment,
    Forge,
    ForgeError,
    Issue,
    MergeResult,
    NotFound,
    PullRequest,
    marker,
)

__all__ = [
    "BLOCKED_LABEL",
    "READY_LABEL",
    "REVIEW_LABEL",
    "RUNNING_LABEL",
    "BoardStatus",
    "CheckRun",
    "CheckState",
    "Checks",
    "Comment",
    "Forge",
    "ForgeError",
    "Issue",
    "MergeResult",
    "NotFound",
    "PullRequest",
    "marker",
]
