"""Reading GitHub's merge queue: the rules answer, the queue's entries, a removal's reason, merge-group refs.

The parsers are pure; :class:`GitHubMergeQueue` is driven through ``httpx.MockTransport`` with answers shaped
as GitHub's (REST rules, GraphQL ``mergeQueue`` and ``RemovedFromMergeQueueEvent``).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from agentos.forge._github_checks import CheckReader
from agentos.forge._github_merge_queue import (
    GitHubMergeQueue,
    drop_kind,
    group_number,
    parse_drop,
    parse_entries,
    requires_merge_queue,
)
from agentos.forge.base import ForgeError
from agentos.forge.github import GitHubClient, GitHubError, TokenAuth

MERGE_QUEUE_RULE = {
    "type": "merge_queue",
    "ruleset_source_type": "Repository",
    "ruleset_source": "acme/app",
    "ruleset_id": 42,
    "parameters": {"merge_method": "SQUASH", "grouping_strategy": "ALLGREEN", "max_entries_to_build": 5},
}


class TestParsers:
    def test_a_merge_queue_rule_among_others_requires_the_queue(self) -> None:
        """Only a rule of type ``merge_queue`` counts; other rules, or none, leave agentos's own queue in charge."""
        assert requires_merge_queue([{"type": "pull_request", "parameters": {}}, MERGE_QUEUE_RULE])
        assert not requires_merge_queue([{"type": "pull_request"}, {"type": "required_linear_history"}])
        assert not requires_merge_queue([])
        assert not requires_merge_queue({"message": "Not Found"})

    def test_entries_are_sorted_by_position_and_states_read(self) -> None:
        data = {
            "repository": {
                "mergeQueue": {
                    "entries": {
                        "nodes": [
                            {
                                "position": 2,
                                "state": "QUEUED",
                                "headCommit": {"oid": "b" * 40},
                                "pullRequest": {"number": 9},
                            },
                            {
                                "position": 1,
                                "state": "AWAITING_CHECKS",
                                "headCommit": {"oid": "a" * 40},
                                "pullRequest": {"number": 7},
                            },
                            {
                                "position": 3,
                                "state": "SOMETHING_NEW",
                                "headCommit": None,
                                "pullRequest": {"number": 11},
                            },
                        ]
                    }
                }
            }
        }
        entries = parse_entries(data)
        assert entries is not None
        assert [(e.number, e.position, e.state, e.head_sha) for e in entries] == [
            (7, 1, "awaiting_checks", "a" * 40),
            (9, 2, "queued", "b" * 40),
            (11, 3, "queued", ""),
        ]

    def test_a_branch_without_a_queue_is_none_and_a_broken_entry_is_named(self) -> None:
        assert parse_entries({"repository": {"mergeQueue": None}}) is None
        broken = {"repository": {"mergeQueue": {"entries": {"nodes": [{"position": "first", "state": "QUEUED"}]}}}}
        with pytest.raises(ForgeError, match="merge queue entry unreadable"):
            parse_entries(broken)

    @pytest.mark.parametrize(
        ("reason", "kind"),
        [
            pytest.param("CI_FAILURE", "checks", id="ci-failure"),
            pytest.param("CI_TIMEOUT", "checks", id="ci-timeout"),
            pytest.param("MERGE_CONFLICT", "conflict", id="conflict"),
            pytest.param("MANUAL", "other", id="manual"),
            pytest.param("BRANCH_PROTECTIONS", "other", id="protections"),
            pytest.param("UNKNOWN_REMOVAL_REASON", "other", id="unknown"),
        ],
    )
    def test_removal_reasons(self, reason: str, kind: str) -> None:
        assert drop_kind(reason) == kind

    def test_the_last_removal_is_read_with_the_head_it_had(self) -> None:
        node = {"createdAt": "2026-03-02T09:00:00Z", "reason": "CI_FAILURE", "beforeCommit": {"oid": "c" * 40}}
        drop = parse_drop({"repository": {"pullRequest": {"timelineItems": {"nodes": [node]}}}})
        assert drop is not None
        assert (drop.kind, drop.reason, drop.head_sha, drop.checks) == ("checks", "CI_FAILURE", "c" * 40, None)
        assert parse_drop({"repository": {"pullRequest": {"timelineItems": {"nodes": []}}}}) is None

    def test_group_refs_name_their_pr(self) -> None:
        assert group_number(f"refs/heads/gh-readonly-queue/main/pr-12-{'d' * 40}", "main") == 12
        assert group_number(f"refs/heads/gh-readonly-queue/release/pr-12-{'d' * 40}", "main") is None
        assert group_number("refs/heads/gh-readonly-queue/main/pr-x-1", "main") is None
        assert group_number("refs/heads/agentos/12-fix", "main") is None


def _queue(handler: Any) -> tuple[GitHubMergeQueue, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        response: httpx.Response = handler(request)
        return response

    async def no_wait(seconds: float) -> None:
        return None

    client = GitHubClient(
        "https://api.github.test", auth=TokenAuth("t"), transport=httpx.MockTransport(record), sleep=no_wait
    )
    return GitHubMergeQueue(client, CheckReader(client, fetch_action_logs=False, checks_grace=0)), seen


class TestGitHubMergeQueue:
    async def test_rules_are_read_once_per_branch_within_the_ttl(self) -> None:
        """``main`` has the rule, ``dev`` none; a second question within the TTL asks GitHub nothing."""

        def handler(request: httpx.Request) -> httpx.Response:
            rules = [MERGE_QUEUE_RULE] if request.url.path.endswith("/main") else []
            return httpx.Response(200, json=rules)

        queue, seen = _queue(handler)
        assert await queue.required("acme/app", "main") is True
        assert await queue.required("acme/app", "dev") is False
        assert await queue.required("acme/app", "main") is True
        assert [r.url.path for r in seen] == [
            "/repos/acme/app/rules/branches/main",
            "/repos/acme/app/rules/branches/dev",
        ]

    async def test_rules_the_token_may_not_read_mean_no_queue(self) -> None:
        queue, _ = _queue(lambda request: httpx.Response(404, json={"message": "Not Found"}))
        assert await queue.required("acme/app", "main") is False

    async def test_a_failure_of_the_moment_is_not_cached_as_no_queue(self) -> None:
        """A 502 raises (the pass is skipped); the next question asks again and finds the rule."""
        answers = [httpx.Response(502, json={"message": "Bad Gateway"})] * 10

        def handler(request: httpx.Request) -> httpx.Response:
            return answers.pop(0) if answers else httpx.Response(200, json=[MERGE_QUEUE_RULE])

        queue, _ = _queue(handler)
        with pytest.raises(GitHubError):
            await queue.required("acme/app", "main")
        answers.clear()
        assert await queue.required("acme/app", "main") is True

    async def test_entries_carry_their_group_commit_and_a_drop_its_failing_checks(self) -> None:
        """The group commit seen while queued is where a later ``CI_FAILURE`` drop's checks are read."""
        head, group = "a" * 40, "f" * 40
        dropped = {"value": False}

        def handler(request: httpx.Request) -> httpx.Response:
            path = request.url.path
            if path == "/graphql":
                body = json.loads(request.content)
                if "AgentosMergeQueue" in body["query"]:
                    assert body["variables"] == {"owner": "acme", "name": "app", "branch": "main", "first": 100}
                    nodes = (
                        []
                        if dropped["value"]
                        else [
                            {
                                "position": 1,
                                "state": "AWAITING_CHECKS",
                                "headCommit": {"oid": head},
                                "pullRequest": {"number": 7},
                            }
                        ]
                    )
                    return httpx.Response(
                        200, json={"data": {"repository": {"mergeQueue": {"entries": {"nodes": nodes}}}}}
                    )
                assert "AgentosQueueDrop" in body["query"] and body["variables"]["number"] == 7
                node = {"createdAt": "2026-03-02T09:00:00Z", "reason": "CI_FAILURE", "beforeCommit": {"oid": head}}
                return httpx.Response(
                    200, json={"data": {"repository": {"pullRequest": {"timelineItems": {"nodes": [node]}}}}}
                )
            if path == "/repos/acme/app/git/matching-refs/heads/gh-readonly-queue/main/":
                ref = f"refs/heads/gh-readonly-queue/main/pr-7-{'0' * 40}"
                return httpx.Response(200, json=[{"ref": ref, "object": {"sha": group, "type": "commit"}}])
            if path == f"/repos/acme/app/commits/{group}/check-runs":
                run = {
                    "id": 5,
                    "name": "merge-group",
                    "status": "completed",
                    "conclusion": "failure",
                    "output": {"title": "pytest", "summary": "1 failed", "text": "FAILED test_x"},
                    "app": {"slug": "ci-app"},
                }
                return httpx.Response(200, json={"total_count": 1, "check_runs": [run]})
            if path == f"/repos/acme/app/commits/{group}/status":
                return httpx.Response(200, json={"state": "pending", "statuses": []})
            raise AssertionError(f"unexpected request {request.method} {path}")

        queue, _ = _queue(handler)
        [entry] = await queue.entries("acme/app", "main")
        assert (entry.number, entry.state, entry.group_sha) == (7, "awaiting_checks", group)
        dropped["value"] = True
        assert await queue.entries("acme/app", "main") == []
        drop = await queue.last_drop("acme/app", 7)
        assert drop is not None and drop.kind == "checks" and drop.checks is not None
        assert drop.checks.sha == group and [r.name for r in drop.checks.failing] == ["merge-group"]
        assert "FAILED test_x" in drop.checks.failing[0].log_tail

    @pytest.mark.parametrize("actions", [pytest.param(200, id="actions-readable"), pytest.param(403, id="no-actions")])
    async def test_a_group_never_seen_queued_is_found_by_its_merge_group_run(self, actions: int) -> None:
        """The group was built and failed between two passes: its commit comes from the newest ``merge_group`` run on
        one of the PR's group branches; without Actions: read the drop is still reported, without checks."""
        head, group = "a" * 40, "e" * 40

        def handler(request: httpx.Request) -> httpx.Response:
            path = request.url.path
            if path == "/graphql":
                node = {"createdAt": "2026-03-02T09:00:00Z", "reason": "CI_FAILURE", "beforeCommit": {"oid": head}}
                items = {"timelineItems": {"nodes": [node]}}
                return httpx.Response(200, json={"data": {"repository": {"pullRequest": items}}})
            if path == "/repos/acme/app/actions/runs":
                assert request.url.params["event"] == "merge_group"
                if actions != 200:
                    return httpx.Response(actions, json={"message": "Resource not accessible by integration"})
                runs = [
                    {"id": 9, "head_branch": f"gh-readonly-queue/main/pr-8-{'1' * 40}", "head_sha": "9" * 40},
                    {"id": 8, "head_branch": f"gh-readonly-queue/main/pr-7-{'2' * 40}", "head_sha": group},
                    {"id": 7, "head_branch": f"gh-readonly-queue/main/pr-7-{'3' * 40}", "head_sha": "7" * 40},
                ]
                return httpx.Response(200, json={"total_count": 3, "workflow_runs": runs})
            if path == f"/repos/acme/app/commits/{group}/check-runs":
                run = {"id": 5, "name": "merge-group", "status": "completed", "conclusion": "failure", "output": {}}
                return httpx.Response(200, json={"total_count": 1, "check_runs": [run]})
            if path == f"/repos/acme/app/commits/{group}/status":
                return httpx.Response(200, json={"state": "pending", "statuses": []})
            raise AssertionError(f"unexpected request {request.method} {path}")

        queue, _ = _queue(handler)
        drop = await queue.last_drop("acme/app", 7)

        assert drop is not None and drop.kind == "checks" and drop.head_sha == head
        if actions == 200:
            assert drop.checks is not None and drop.checks.sha == group
            assert [r.name for r in drop.checks.failing] == ["merge-group"]
        else:
            assert drop.checks is None
