"""The one port to the world of issues and pull requests.

The dispatcher, executor, PR monitor and loops speak only to :class:`Forge`; ``LocalForge`` (files in
the state dir over a real git repository) and ``GitHubForge`` (REST + GraphQL over httpx) implement it.

Every create operation is idempotent: ``open_pr`` first looks for a PR with the same head branch,
``comment`` and ``create_issue`` carry a hidden marker ``<!-- agentos:key=… -->`` and look for it first.

A forge declares what it can do beyond the protocol, instead of being probed with ``getattr``/``isinstance``:

* ``checks_merge_result``: its checks test the merge result itself, so a PR behind its base needs no rebase first;
* ``credentials``: a :class:`GitCredentials` that authenticates git to its remotes (GitHub), or None;
* ``issue_writer``: an :class:`IssueWriter` that files issues for ``agentos issue`` (the local forge), or None.
* ``reviews``: a :class:`ReviewSource` that reads a PR's reviews and comments (:class:`Feedback`), or None.
* ``merge_queue``: a :class:`HostMergeQueue` when the host has a merge queue of its own (GitHub), or None. For a base
  branch that requires it, ``merge_pr`` enqueues instead of merging (``MergeResult.reason == "queued"``) and the
  host merges the PR once the checks of its merge group pass.

:meth:`Forge.reconfigure` gives it the repositories of a reloaded config.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Literal, Protocol

from pydantic import BaseModel, Field

from agentos.errors import AgentosError

if TYPE_CHECKING:
    from agentos.config import RepoConfig

BoardStatus = Literal["Ready", "In Progress", "In Review", "Blocked", "Done"]
CheckState = Literal["pending", "success", "failure"]
MergeReason = Literal["merged", "queued", "conflict", "head_moved", "refused"]
"""How a merge ended: merged (or already was), queued in the host's merge queue (it merges when the checks of
its merge group pass), the head conflicts with the base, the head is no longer the sha the caller checked, or
the forge refused for another reason (closed, protected branch, a push that failed)."""
QueueState = Literal["queued", "awaiting_checks", "mergeable", "unmergeable", "locked"]
DropKind = Literal["checks", "conflict", "other"]

READY_LABEL = "agentos:ready"
RUNNING_LABEL = "agentos:running"
BLOCKED_LABEL = "agentos:blocked"
REVIEW_LABEL = "agentos:review"


class ForgeError(AgentosError):
    """A forge operation failed (not found, refused, conflict)."""


class NotFound(ForgeError):
    """The issue, PR or branch does not exist."""


def marker(key: str) -> str:
    """The hidden marker that makes a comment or issue findable (and so never created twice)."""
    return f"<!-- agentos:key={key} -->"


class Comment(BaseModel):
    id: int
    author: str = ""
    body: str
    created_at: datetime


class Issue(BaseModel):
    repo: str
    number: int
    title: str
    body: str = ""
    state: Literal["open", "closed"] = "open"
    labels: list[str] = Field(default_factory=list)
    author: str = ""
    created_at: datetime
    updated_at: datetime
    url: str = ""


class PullRequest(BaseModel):
    repo: str
    number: int
    title: str
    body: str = ""
    head: str
    base: str
    state: Literal["open", "closed", "merged"] = "open"
    head_sha: str = ""
    mergeable: bool | None = None
    created_at: datetime
    url: str = ""
    labels: list[str] = Field(default_factory=list)


class CheckRun(BaseModel):
    name: str
    state: CheckState
    summary: str = ""
    log_tail: str = ""


class Checks(BaseModel):
    """The combined state of a PR's required checks on one head commit."""

    sha: str
    state: CheckState
    runs: list[CheckRun] = Field(default_factory=list)

    @property
    def failing(self) -> list[CheckRun]:
        return [r for r in self.runs if r.state == "failure"]


class MergeResult(BaseModel):
    """What ``merge_pr`` did: ``reason`` is for the caller to act on, ``message`` for people."""

    merged: bool
    reason: MergeReason
    sha: str = ""
    message: str = ""


class QueueEntry(BaseModel):
    """A PR in the host's merge queue: its place, its state, and the merge-group commit its checks run on."""

    number: int
    position: int
    state: QueueState
    head_sha: str = ""
    group_sha: str = ""
    """The merge-group commit (the base plus the PRs ahead plus this one), once the host built it."""


class QueueDrop(BaseModel):
    """The last time the host's merge queue dropped a PR without merging it.

    ``kind``: ``checks`` (its merge group's checks failed or timed out), ``conflict`` (it conflicts with the base
    or a PR ahead) or ``other`` (removed by a person, branch protection…); ``head_sha`` is the PR's head when it
    was dropped; ``checks`` are its group's checks when the group commit is known.
    """

    kind: DropKind
    reason: str
    head_sha: str
    at: datetime
    checks: Checks | None = None


class HostMergeQueue(Protocol):
    """A forge capability: the host's own merge queue (GitHub's), for base branches that require it."""

    async def required(self, repo: str, base: str) -> bool:
        """Does ``base`` require the merge queue (so a PR merges only through it)?"""
        ...

    async def entries(self, repo: str, base: str) -> list[QueueEntry]:
        """The PRs in the queue of ``base``, first to merge first."""
        ...

    async def last_drop(self, repo: str, number: int) -> QueueDrop | None:
        """Why the queue last dropped the PR, or None when it never did."""
        ...


FeedbackKind = Literal["review", "line", "comment"]
ReviewState = Literal["changes_requested", "commented", "approved"]


class Feedback(BaseModel):
    """One piece of review feedback on a PR: a review, a comment on a line of its diff, or a comment on the PR.

    ``id`` is unique per PR across kinds (``review:3``, ``line:12``, ``comment:7``); ``trusted`` is the forge's
    trust rule (GitHub: the author's role is at least the configured permission; local: the operator);
    ``review`` is the id of the review a line comment belongs to; ``thread`` the forge's id to answer it by.
    """

    id: str
    kind: FeedbackKind
    author: str = ""
    trusted: bool = True
    state: ReviewState = "commented"
    body: str = ""
    path: str = ""
    line: int | None = None
    review: str | None = None
    thread: int | None = None
    created_at: datetime


class ReviewSource(Protocol):
    """A forge capability: what reviewers said on a PR, and answering a review thread."""

    async def feedback(self, repo: str, number: int) -> list[Feedback]:
        """The PR's reviews, line comments and comments, oldest first."""
        ...

    async def answer(self, repo: str, number: int, item: Feedback, body: str, *, key: str) -> None:
        """Answer ``item`` (a reply in its review thread where the forge has threads; else a PR comment)."""
        ...


class GitCredentials(Protocol):
    """A forge capability: the remote URL of a repository and the git environment that authenticates to it."""

    async def git_credentials(self, repo: str) -> tuple[str, dict[str, str]]: ...


class IssueWriter(Protocol):
    """A forge capability: filing issues from the command line (``agentos issue new|ready``)."""

    async def new_issue(
        self,
        repo: str,
        title: str,
        body: str = "",
        labels: Iterable[str] = (),
        *,
        author: str | None = None,
        key: str | None = None,
    ) -> Issue:
        """Open an issue; with ``key``, the issue already carrying it is returned instead."""
        ...

    async def add_labels(self, repo: str, number: int, labels: list[str]) -> None: ...


class Forge(Protocol):
    """What agentos needs from a code host, and what it declares it can do (see the module docstring)."""

    kind: str

    @property
    def checks_merge_result(self) -> bool: ...

    @property
    def credentials(self) -> GitCredentials | None: ...

    @property
    def issue_writer(self) -> IssueWriter | None: ...

    @property
    def reviews(self) -> ReviewSource | None: ...

    @property
    def merge_queue(self) -> HostMergeQueue | None: ...

    def reconfigure(self, repos: Sequence[RepoConfig]) -> None:
        """The repositories of a reloaded config (a forge that needs none of their settings ignores it)."""
        ...

    async def ready_issues(self, repo: str) -> list[Issue]:
        """Open issues made ready for agentos (label or board status), oldest first."""
        ...

    async def get_issue(self, repo: str, number: int) -> Issue: ...

    async def list_issues(self, repo: str, *, state: Literal["open", "closed", "all"] = "open") -> list[Issue]: ...

    async def create_issue(self, repo: str, title: str, body: str, labels: list[str], *, key: str) -> Issue:
        """Create an issue, or return the open one already carrying ``key``."""
        ...

    async def comment(self, repo: str, number: int, body: str, *, key: str) -> Comment:
        """Comment on an issue or PR, unless a comment with ``key`` is already there."""
        ...

    async def comments(self, repo: str, number: int) -> list[Comment]: ...

    async def add_labels(self, repo: str, number: int, labels: list[str]) -> None: ...

    async def remove_label(self, repo: str, number: int, label: str) -> None: ...

    async def close_issue(self, repo: str, number: int) -> None: ...

    async def set_board_status(self, repo: str, issue: int, status: BoardStatus) -> None:
        """Move the issue's card (and the labels that mirror it)."""
        ...

    async def find_pr(self, repo: str, head: str) -> PullRequest | None:
        """The PR (open or merged) whose head is ``head``."""
        ...

    async def open_pr(self, repo: str, *, head: str, base: str, title: str, body: str) -> PullRequest:
        """Open a PR, or return the one already open for ``head``."""
        ...

    async def get_pr(self, repo: str, number: int) -> PullRequest: ...

    async def open_prs(self, repo: str) -> list[PullRequest]: ...

    async def checks(self, repo: str, number: int) -> Checks: ...

    async def merge_pr(self, repo: str, number: int, *, sha: str, title: str, body: str) -> MergeResult:
        """Squash-merge if the head is still ``sha``; "already merged" is success. Where the base requires the host's
        merge queue, enqueue the PR instead (``reason="queued"``; "already queued" is that too)."""
        ...

    async def close_pr(self, repo: str, number: int, *, comment: str = "") -> None: ...

    async def aclose(self) -> None: ...
