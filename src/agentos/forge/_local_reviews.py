"""Reviews on the embedded forge: what ``agentos pr review|comment`` writes into a PR's record, read back as
:class:`~agentos.forge.base.Feedback` by the PR monitor (the local forge's :class:`ReviewSource`).

A review is kept in the PR's JSON record (``reviews``), a PR comment in its ``comments`` (as agentos's own
comments are). Everyone who can write these files is the operator, so every piece of feedback is trusted;
agentos's own comments (author ``agentos``) are never feedback. A review with a file and line is also a
comment on that line (``line:<id>``), answered by a PR comment that quotes it.
"""

from __future__ import annotations

import asyncio

from agentos.forge._local_files import ForgeFiles, ReviewRecord
from agentos.forge.base import Comment, Feedback, ReviewState, marker

__all__ = ["LocalReviews"]


class LocalReviews:
    """The local forge's :class:`~agentos.forge.base.ReviewSource` and the writer ``agentos pr`` uses."""

    def __init__(self, files: ForgeFiles) -> None:
        self.files = files

    def __repr__(self) -> str:
        return f"LocalReviews({str(self.files.base_dir)!r})"

    async def review(
        self,
        repo: str,
        number: int,
        *,
        state: ReviewState,
        body: str,
        author: str,
        path: str = "",
        line: int | None = None,
    ) -> ReviewRecord:
        """Add a review to the PR ``repo#number`` (:class:`~agentos.forge.base.NotFound` when there is none)."""

        def op() -> ReviewRecord:
            record = self.files.read_pull(repo, number)
            review = ReviewRecord(
                id=self.files.allocate(repo, "comment"),
                author=author,
                state=state,
                body=body,
                path=path,
                line=line,
                created=self.files.clock(),
            )
            record.reviews.append(review)
            record.updated = review.created
            self.files.write_pull(repo, record)
            return review

        return await self.files.mutate(repo, op)

    async def comment(self, repo: str, number: int, *, body: str, author: str) -> Comment:
        """Add a comment by ``author`` to the PR ``repo#number``."""

        def op() -> Comment:
            record = self.files.read_pull(repo, number)
            new = Comment(
                id=self.files.allocate(repo, "comment"), author=author, body=body, created_at=self.files.clock()
            )
            record.comments.append(new)
            record.updated = new.created_at
            self.files.write_pull(repo, record)
            return new

        return await self.files.mutate(repo, op)

    async def feedback(self, repo: str, number: int) -> list[Feedback]:
        record = await asyncio.to_thread(self.files.read_pull, repo, number)
        items: list[Feedback] = []
        for review in record.reviews:
            common = {"author": review.author, "state": review.state, "created_at": review.created}
            items.append(Feedback(id=f"review:{review.id}", kind="review", body=review.body, **common))
            if review.path:
                items.append(
                    Feedback(
                        id=f"line:{review.id}",
                        kind="line",
                        body=review.body,
                        path=review.path,
                        line=review.line,
                        review=f"review:{review.id}",
                        thread=review.id,
                        **common,
                    )
                )
        for c in record.comments:
            if c.author != "agentos":
                items.append(
                    Feedback(
                        id=f"comment:{c.id}", kind="comment", author=c.author, body=c.body, created_at=c.created_at
                    )
                )
        return sorted(items, key=lambda i: i.created_at)

    async def answer(self, repo: str, number: int, item: Feedback, body: str, *, key: str) -> None:
        """A PR comment that quotes the line comment it answers (the local forge has no threads)."""
        where = f"`{item.path}`" + (f" line {item.line}" if item.line else "")
        text = f"> {item.author or 'review'} on {where}: {' '.join(item.body.split())[:200]}\n\n{body}"

        def op() -> None:
            record = self.files.read_pull(repo, number)
            tag = marker(key)
            if any(tag in c.body for c in record.comments):
                return
            new = Comment(
                id=self.files.allocate(repo, "comment"),
                author="agentos",
                body=f"{text}\n\n{tag}",
                created_at=self.files.clock(),
            )
            record.comments.append(new)
            record.updated = new.created_at
            self.files.write_pull(repo, record)

        await self.files.mutate(repo, op)
