"""The in-memory forge of :mod:`agentos.testing` (re-exported there): issues, PRs, checks, comments, labels."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from agentos.config import RepoConfig
from agentos.forge.base import (
    BLOCKED_LABEL,
    READY_LABEL,
    RUNNING_LABEL,
    BoardStatus,
    Checks,
    Comment,
    Feedback,
    Issue,
    MergeResult,
    NotFound,
    PullRequest,
    marker,
)
from agentos.ports import Clock

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@dataclass
class _Pull:
    pr: PullRequest
    comments: list[Comment] = field(default_factory=list)
    checks: Checks | None = None
    feedback: list[Feedback] = field(default_factory=list)
    answers: list[tuple[str, str]] = field(default_factory=list)


class FakeForge:
    """A forge in memory: issues with labels and comments, PRs with checks. ``changes`` logs every write."""

    kind = "fake"
    checks_merge_result = False
    credentials = None
    issue_writer = None
    merge_queue = None

    @property
    def reviews(self) -> FakeForge:
        return self

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or (lambda: T0)
        self.issues: dict[tuple[str, int], Issue] = {}
        self.issue_comments: dict[tuple[str, int], list[Comment]] = {}
        self.pulls: dict[tuple[str, int], _Pull] = {}
        self.board: dict[tuple[str, int], BoardStatus] = {}
        self.changes: list[tuple[str, ...]] = []
        self.fail: set[str] = set()
        """Names of operations that raise :class:`NotFound` (a forge outage in miniature)."""
        self._ids = itertools.count(1)

    def __repr__(self) -> str:
        return f"<FakeForge issues={len(self.issues)} pulls={len(self.pulls)} changes={len(self.changes)}>"

    def _check(self, op: str) -> None:
        if op in self.fail:
            raise NotFound(f"{op} failed (FakeForge.fail)")

    # ------------------------------------------------------------ set-up and reading back

    def add_issue(
        self, repo: str, number: int, title: str = "", *, labels: Sequence[str] = (), body: str = ""
    ) -> Issue:
        now = self.clock()
        issue = Issue(
            repo=repo,
            number=number,
            title=title or f"Issue {number}",
            body=body,
            labels=list(labels),
            created_at=now,
            updated_at=now,
            url=f"https://forge.example/{repo}/issues/{number}",
        )
        self.issues[repo, number] = issue
        return issue

    def add_pr(self, repo: str, number: int, head: str, *, sha: str = "", checks: str = "pending") -> PullRequest:
        pr = PullRequest(
            repo=repo,
            number=number,
            title=f"PR {number}",
            head=head,
            base="main",
            head_sha=sha or f"sha{number}",
            created_at=self.clock(),
        )
        state: Literal["pending", "success", "failure"] = (
            "success" if checks == "success" else "failure" if checks == "failure" else "pending"
        )
        self.pulls[repo, number] = _Pull(pr, checks=Checks(sha=pr.head_sha, state=state))
        return pr

    def add_feedback(self, repo: str, number: int, item: Feedback) -> Feedback:
        """A reviewer's review or comment on the PR (what :meth:`feedback` returns)."""
        self.pulls[repo, number].feedback.append(item)
        return item

    def labels(self, repo: str, number: int) -> list[str]:
        if (repo, number) in self.pulls:
            return list(self.pulls[repo, number].pr.labels)
        return list(self.issues[repo, number].labels)

    def comment_bodies(self, repo: str, number: int) -> list[str]:
        if (repo, number) in self.pulls:
            return [c.body for c in self.pulls[repo, number].comments]
        return [c.body for c in self.issue_comments.get((repo, number), [])]

    # ------------------------------------------------------------ the Forge protocol

    async def ready_issues(self, repo: str) -> list[Issue]:
        self._check("ready_issues")
        ready = [i for (r, _), i in self.issues.items() if r == repo and i.state == "open" and READY_LABEL in i.labels]
        return sorted(ready, key=lambda i: (i.created_at, i.number))

    async def get_issue(self, repo: str, number: int) -> Issue:
        self._check("get_issue")
        try:
            return self.issues[repo, number]
        except KeyError:
            raise NotFound(f"no issue {repo}#{number}") from None

    async def list_issues(self, repo: str, *, state: Literal["open", "closed", "all"] = "open") -> list[Issue]:
        return [i for (r, _), i in self.issues.items() if r == repo and state in ("all", i.state)]

    async def create_issue(self, repo: str, title: str, body: str, labels: list[str], *, key: str) -> Issue:
        for issue in self.issues.values():
            if issue.repo == repo and marker(key) in issue.body and issue.state == "open":
                return issue
        number = max([n for (r, n) in self.issues if r == repo] + [n for (r, n) in self.pulls if r == repo] + [0]) + 1
        self.changes.append(("create_issue", repo, str(number)))
        return self.add_issue(repo, number, title, labels=labels, body=f"{body}\n\n{marker(key)}")

    async def comment(self, repo: str, number: int, body: str, *, key: str) -> Comment:
        self._check("comment")
        tag = marker(key)
        thread = (
            self.pulls[repo, number].comments
            if (repo, number) in self.pulls
            else self.issue_comments.setdefault((repo, number), [])
        )
        found = next((c for c in thread if tag in c.body), None)
        if found is not None:
            return found
        new = Comment(id=next(self._ids), author="agentos", body=f"{body}\n\n{tag}", created_at=self.clock())
        thread.append(new)
        self.changes.append(("comment", repo, str(number), key))
        return new

    async def comments(self, repo: str, number: int) -> list[Comment]:
        if (repo, number) in self.pulls:
            return list(self.pulls[repo, number].comments)
        return list(self.issue_comments.get((repo, number), []))

    def _relabel(self, repo: str, number: int, add: Sequence[str], remove: Sequence[str]) -> None:
        if (repo, number) in self.pulls:
            pull = self.pulls[repo, number]
            kept = [label for label in pull.pr.labels if label not in remove]
            pull.pr = pull.pr.model_copy(update={"labels": kept + [a for a in add if a not in kept]})
            return
        issue = self.issues.get((repo, number))
        if issue is None:
            raise NotFound(f"no issue {repo}#{number}")
        kept = [label for label in issue.labels if label not in remove]
        self.issues[repo, number] = issue.model_copy(update={"labels": kept + [a for a in add if a not in kept]})

    async def add_labels(self, repo: str, number: int, labels: list[str]) -> None:
        self._check("add_labels")
        self._relabel(repo, number, labels, ())
        self.changes.append(("add_labels", repo, str(number), *labels))

    async def remove_label(self, repo: str, number: int, label: str) -> None:
        self._check("remove_label")
        self._relabel(repo, number, (), (label,))
        self.changes.append(("remove_label", repo, str(number), label))

    async def close_issue(self, repo: str, number: int) -> None:
        self._check("close_issue")
        self.issues[repo, number] = self.issues[repo, number].model_copy(update={"state": "closed"})
        self.changes.append(("close_issue", repo, str(number)))

    async def set_board_status(self, repo: str, issue: int, status: BoardStatus) -> None:
        """No board: the labels that mirror it change, as on the local forge."""
        add, remove = {
            "Ready": ([READY_LABEL], []),
            "In Progress": ([RUNNING_LABEL], []),
            "Blocked": ([BLOCKED_LABEL], [RUNNING_LABEL]),
            "In Review": ([], [RUNNING_LABEL]),
            "Done": ([], [RUNNING_LABEL]),
        }[status]
        self.board[repo, issue] = status
        if (repo, issue) in self.issues:
            self._relabel(repo, issue, add, remove)

    async def find_pr(self, repo: str, head: str) -> PullRequest | None:
        return next((p.pr for (r, _), p in self.pulls.items() if r == repo and p.pr.head == head), None)

    async def open_pr(self, repo: str, *, head: str, base: str, title: str, body: str) -> PullRequest:
        found = await self.find_pr(repo, head)
        if found is not None and found.state == "open":
            return found
        number = max([n for (r, n) in self.pulls if r == repo] + [n for (r, n) in self.issues if r == repo] + [0]) + 1
        pr = self.add_pr(repo, number, head)
        pr = pr.model_copy(update={"title": title, "body": body, "base": base})
        self.pulls[repo, number].pr = pr
        self.changes.append(("open_pr", repo, str(number)))
        return pr

    def _pull(self, repo: str, number: int) -> _Pull:
        try:
            return self.pulls[repo, number]
        except KeyError:
            raise NotFound(f"no PR {repo}#{number}") from None

    async def get_pr(self, repo: str, number: int) -> PullRequest:
        return self._pull(repo, number).pr

    async def open_prs(self, repo: str) -> list[PullRequest]:
        return [p.pr for (r, _), p in self.pulls.items() if r == repo and p.pr.state == "open"]

    async def checks(self, repo: str, number: int) -> Checks:
        pull = self.pulls[repo, number]
        return pull.checks or Checks(sha=pull.pr.head_sha, state="pending")

    async def merge_pr(self, repo: str, number: int, *, sha: str, title: str, body: str) -> MergeResult:
        pull = self.pulls[repo, number]
        if pull.pr.state == "merged":
            return MergeResult(merged=True, reason="merged", sha=f"merge-{number}")
        if pull.pr.head_sha != sha:
            return MergeResult(merged=False, reason="head_moved", message="head moved")
        pull.pr = pull.pr.model_copy(update={"state": "merged"})
        self.changes.append(("merge", repo, str(number)))
        return MergeResult(merged=True, reason="merged", sha=f"merge-{number}")

    async def close_pr(self, repo: str, number: int, *, comment: str = "") -> None:
        self._check("close_pr")
        if comment:
            await self.comment(repo, number, comment, key=f"close-pr-{number}")
        pull = self.pulls[repo, number]
        if pull.pr.state == "open":
            pull.pr = pull.pr.model_copy(update={"state": "closed"})
            self.changes.append(("close_pr", repo, str(number)))

    def reconfigure(self, repos: Sequence[RepoConfig]) -> None:
        return None

    async def aclose(self) -> None:
        return None

    # ------------------------------------------------------------ ReviewSource

    async def feedback(self, repo: str, number: int) -> list[Feedback]:
        self._check("feedback")
        pull = self.pulls.get((repo, number))  # a subclass may keep its PRs elsewhere: no feedback then
        return list(pull.feedback) if pull is not None else []

    async def answer(self, repo: str, number: int, item: Feedback, body: str, *, key: str) -> None:
        self._check("answer")
        pull = self._pull(repo, number)
        if all(k != key for k, _ in pull.answers):
            pull.answers.append((key, body))
            self.changes.append(("answer", repo, str(number), item.id))
