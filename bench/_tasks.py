"""Synthetic but realistic task graphs for the state benchmarks: sizes, texts and statuses like a year of use."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from agentos.graph import Attempt, Task, TaskStatus

GOAL = (
    "The nightly job fails about once a week with a timeout in the upload step. Find why the retry "
    "does not kick in, make the upload resumable, and keep the public API unchanged. Logs from the last "
    "three failures are attached to the issue."
)
SUMMARY = (
    "Made the upload resumable: chunks are retried with backoff and the offset is kept in the session. "
    "Added tests for a dropped connection mid-upload."
)
# A year of use: most tasks merged, some escalated or cancelled, a few live.
STATUS_MIX = [TaskStatus.MERGED] * 80 + [TaskStatus.BLOCKED] * 6 + [TaskStatus.CANCELLED] * 4
STATUS_MIX += [TaskStatus.QUEUED] * 6 + [TaskStatus.PR_OPEN] * 3 + [TaskStatus.RETRYING]


def make_tasks(n: int, *, repos: int = 10, seed: int = 10) -> list[Task]:
    """``n`` tasks over ``repos`` repositories, each with one or two finished attempts."""
    rnd = random.Random(seed)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    tasks = []
    for i in range(n):
        repo = f"org/repo-{i % repos}"
        issue = i // repos + 1
        created = start + timedelta(minutes=i)
        status = STATUS_MIX[rnd.randrange(len(STATUS_MIX))]
        attempts = []
        if status is not TaskStatus.QUEUED:
            for k in range(1 + (rnd.random() < 0.25)):
                began = created + timedelta(minutes=5 + 30 * k)
                attempts.append(
                    Attempt(
                        number=k + 1,
                        agent="claude" if k == 0 else "codex",
                        started_at=began,
                        ended_at=began + timedelta(minutes=12),
                        outcome="complete" if status in (TaskStatus.MERGED, TaskStatus.PR_OPEN) else "failed",
                        exit_code=0,
                        duration_s=720.0 + k,
                        blocker_code=None if status is TaskStatus.MERGED else "test_failure",
                        summary=SUMMARY,
                        tokens_in=120_000 + i % 1000,
                        tokens_out=8_000,
                        cost_usd=0.42,
                        turns=23,
                        run_dir=f"/var/lib/agentos/runs/{repo.replace('/', '_')}-{issue}/{k + 1}",
                    )
                )
        tasks.append(
            Task(
                id=Task.make_id(repo, issue),
                repo=repo,
                issue=issue,
                title=f"Nightly upload times out in module {i % 97} (case {i})",
                goal=GOAL,
                success_criteria=["`make test` passes", "a dropped connection mid-upload is retried"],
                constraints=["keep the public API"],
                priority=("high", "normal", "low")[i % 3],
                status=status,
                attempts=attempts,
                branch=f"agentos/{issue}-nightly-upload-times-out",
                pr=issue + 100_000 if status in (TaskStatus.MERGED, TaskStatus.PR_OPEN) else None,
                created_at=created,
                updated_at=created + timedelta(hours=1),
            )
        )
    return tasks
