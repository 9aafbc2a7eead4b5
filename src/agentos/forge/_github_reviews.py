"""A PR's reviews on GitHub as :class:`~agentos.forge.base.Feedback`, and answers to its review threads.

Three list reads per PR (each conditional, so an unchanged PR costs three 304s that do not count against the
rate limit): ``GET /repos/{o}/{r}/pulls/{n}/reviews`` (state ``CHANGES_REQUESTED``, ``APPROVED``,
``COMMENTED``; pending and dismissed reviews are not feedback), ``GET …/pulls/{n}/comments`` (comments on
lines of the diff, each with its ``pull_request_review_id``), and ``GET …/issues/{n}/comments`` (the PR's
conversation). Each author is judged by the rule that makes an issue ready (their role on the repository is at
least ``github.trusted_permission``, or they are a trusted actor); the role lookups share the readiness cache.

A line comment is answered in its thread (``POST …/pulls/{n}/comments/{id}/replies``), anything else by a PR
comment; both carry a key marker and are not posted twice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from agentos.forge._github_http import GitHubClient
from agentos.forge._github_payloads import _Gh, _User
from agentos.forge.base import Feedback, ReviewState, marker
from agentos.redact import redact

__all__ = ["GitHubReviews"]

Trust = Callable[[str, str], Awaitable[bool]]
"""``trust(repo, login)``: may this account's feedback send a PR back to an agent?"""

_STATES: dict[str, ReviewState] = {
    "CHANGES_REQUESTED": "changes_requested",
    "APPROVED": "approved",
    "COMMENTED": "commented",
}


class _RestReview(_Gh):
    id: int
    user: _User | None = None
    body: str | None = None
    state: str
    submitted_at: datetime | None = None


class _RestReviewComment(_Gh):
    id: int
    pull_request_review_id: int | None = None
    user: _User | None = None
    body: str | None = None
    path: str = ""
    line: int | None = None
    original_line: int | None = None
    in_reply_to_id: int | None = None
    created_at: datetime


class _RestIssueComment(_Gh):
    id: int
    user: _User | None = None
    body: str | None = None
    created_at: datetime


def _login(user: _User | None) -> str:
    return user.login if user is not None else ""


class GitHubReviews:
    """The GitHub forge's :class:`~agentos.forge.base.ReviewSource`."""

    def __init__(self, client: GitHubClient, trust: Trust) -> None:
        self._client = client
        self._trust = trust

    def __repr__(self) -> str:
        return f"<GitHubReviews {self._client!r}>"

    async def feedback(self, repo: str, number: int) -> list[Feedback]:
        """Reviews, line comments (not replies) and PR comments, oldest first, each with its author's trust."""
        pull = f"/repos/{repo}/pulls/{number}"
        reviews = [_RestReview.model_validate(x) for x in await self._client.paginate(f"{pull}/reviews")]
        lines = [_RestReviewComment.model_validate(x) for x in await self._client.paginate(f"{pull}/comments")]
        talk = [
            _RestIssueComment.model_validate(x)
            for x in await self._client.paginate(f"/repos/{repo}/issues/{number}/comments")
        ]
        users = [r.user for r in reviews] + [c.user for c in lines] + [t.user for t in talk]
        authors = {_login(u) for u in users} - {""}
        trusted = {login for login in sorted(authors) if await self._trust(repo, login)}
        items: list[Feedback] = []
        for r in reviews:
            state = _STATES.get(r.state)
            if state is None or r.submitted_at is None:  # pending or dismissed
                continue
            who = _login(r.user)
            items.append(
                Feedback(
                    id=f"review:{r.id}",
                    kind="review",
                    author=who,
                    trusted=who in trusted,
                    state=state,
                    body=r.body or "",
                    created_at=r.submitted_at,
                )
            )
        states = {f"review:{r.id}": _STATES.get(r.state, "commented") for r in reviews}
        for c in lines:
            if c.in_reply_to_id is not None:  # a reply in a thread (ours included): the thread's first comment counts
                continue
            who, review = _login(c.user), f"review:{c.pull_request_review_id}" if c.pull_request_review_id else None
            items.append(
                Feedback(
                    id=f"line:{c.id}",
                    kind="line",
                    author=who,
                    trusted=who in trusted,
                    state=states.get(review or "", "commented"),
                    body=c.body or "",
                    path=c.path,
                    line=c.line or c.original_line,
                    review=review,
                    thread=c.id,
                    created_at=c.created_at,
                )
            )
        for t in talk:
            who = _login(t.user)
            items.append(
                Feedback(
                    id=f"comment:{t.id}",
                    kind="comment",
                    author=who,
                    trusted=who in trusted,
                    body=t.body or "",
                    created_at=t.created_at,
                )
            )
        return sorted(items, key=lambda i: i.created_at)

    async def answer(self, repo: str, number: int, item: Feedback, body: str, *, key: str) -> None:
        """A reply in the line comment's thread (a PR comment for other feedback), once per ``key``."""
        tag = marker(key)
        text = f"{redact(body)}\n\n{tag}"
        if item.kind == "line" and item.thread is not None:
            pull = f"/repos/{repo}/pulls/{number}"
            replies = await self._client.paginate(f"{pull}/comments")
            if any(tag in str(r.get("body") or "") for r in replies if isinstance(r, dict)):
                return
            await self._client.post(f"{pull}/comments/{item.thread}/replies", json={"body": text})
            return
        talk = await self._client.paginate(f"/repos/{repo}/issues/{number}/comments")
        if any(tag in str(c.get("body") or "") for c in talk if isinstance(c, dict)):
            return
        await self._client.post(f"/repos/{repo}/issues/{number}/comments", json={"body": text})
