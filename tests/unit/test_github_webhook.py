"""Which job a GitHub delivery pokes (the receiver itself: tests/e2e/test_github_webhook.py)."""

from __future__ import annotations

from typing import Any

import pytest

from agentos.ops.github_webhook import jobs_for


@pytest.mark.parametrize(
    ("event", "payload", "jobs"),
    [
        ("issues", {"action": "labeled"}, ("dispatch",)),
        ("issue_comment", {"issue": {"number": 1}}, ("dispatch",)),
        ("issue_comment", {"issue": {"number": 2, "pull_request": {"url": "…"}}}, ("pr_monitor",)),
        ("pull_request", {"action": "opened"}, ("pr_monitor",)),
        ("pull_request", {"action": "closed"}, ("pr_monitor", "dispatch")),
        ("pull_request_review", {"action": "submitted"}, ("pr_monitor",)),
        ("pull_request_review_comment", {"action": "created"}, ("pr_monitor",)),
        ("check_suite", {"action": "completed"}, ("pr_monitor",)),
        ("check_run", {"action": "completed"}, ("pr_monitor",)),
        ("status", {"state": "success"}, ("pr_monitor",)),
        ("merge_group", {"action": "checks_requested"}, ("pr_monitor",)),
        ("projects_v2_item", {"action": "edited"}, ("dispatch",)),
        ("ping", {"zen": "Keep it logically awesome."}, ()),
        ("push", {"ref": "refs/heads/main"}, ()),
    ],
)
def test_each_event_pokes_the_job_it_is_news_for(event: str, payload: dict[str, Any], jobs: tuple[str, ...]) -> None:
    assert jobs_for(event, payload) == jobs
