"""GitHub's merge queue through the real daemon and the fake GitHub over HTTP (harness of
:mod:`tests.e2e.test_github_daemon`).

The fake's main branch has a ruleset requiring the merge queue (:mod:`tests.fakes.github_merge_queue`): a green PR
is enqueued by GraphQL, GitHub (the fake) builds its merge group from real git, runs the group's check (the test's
``ci`` says its conclusion) and fast-forwards main to the group when it passes. Each issue's agent edits a file of
its own (``plan`` mode); every PR also appends to ``CODEBASE.md``, so PRs cut from one base conflict there.
"""

from __future__ import annotations

import re
from typing import Any

from tests.fakes.github_server import FakeGitHub, fake_github  # noqa: F401

from .conftest import claude_agent
from .test_github_daemon import KEY, REPO, GhDaemon, MakeDaemon, make_daemon  # noqa: F401

N = 5


def plan_issue(d: GhDaemon, index: int) -> int:
    body = f"## Goal\n\nChange {index}.\n\nsoak-plan: change-{index}.txt complete\n"
    number = d.new_issue(f"Change {index}", body)
    d.make_ready(number)
    return number


def assert_no_duplicate_comments(d: GhDaemon) -> None:
    for number, issue in d.repo.issues.items():
        keys = [k for c in issue.comments for k in KEY.findall(c.body)]
        assert len(keys) == len(set(keys)) == len(issue.comments), f"#{number}: {keys}"


async def test_five_green_prs_merge_through_the_queue_in_order_once_each(make_daemon: MakeDaemon) -> None:  # noqa: F811
    """5 issues → 5 PRs, each enqueued and merged by the queue (no REST merge), in the order they were enqueued,
    each exactly once; agentos's own queue rebases nothing for being behind main."""
    d = await make_daemon({"claude": claude_agent("plan")}, board=False, start=False)
    queue = d.fake.queues.require(REPO, "main")
    await d.start()
    numbers = [plan_issue(d, i) for i in range(1, N + 1)]

    tasks = [await d.wait_merged(f"{REPO}#{n}", n, timeout=120) for n in numbers]

    prs = sorted(int(t["pr"]) for t in tasks)
    assert sorted(queue.merged) == prs and len(queue.merged) == N, queue.merged
    enqueued = [int(e["pr"]) for e in d.events("pr_enqueued")]
    last_enqueue = sorted(set(enqueued), key=lambda pr: max(i for i, p in enumerate(enqueued) if p == pr))
    assert queue.merged == last_enqueue, "the queue merges first in, first out"
    assert d.fake.requests_to("PUT", r"/pulls/\d+/merge$") == [], "no PR merged around the queue"
    groups = {sha for _, sha, _ in queue.groups}
    subjects = [subject for _, subject, _ in await d.main_commits()]
    for pr in prs:
        pull = d.repo.pulls[pr]
        assert pull.merge_commit_sha in groups, "main moved to the PR's merge group"
        assert len([s for s in subjects if s.endswith(f"(#{pr})")]) == 1, "one commit per PR on main"

        async def deleted(branch: str = pull.head) -> bool:
            return await d.fake.branch_sha(REPO, branch) is None

        await d.wait_for(deleted, what=f"the head branch of #{pr} deleted after its merge")
    for index in range(1, N + 1):
        assert f"change-{index}.txt" in await d.fake.git(REPO, "ls-tree", "--name-only", "main")
    merged_events = d.events("pr_merged")
    assert sorted(e["task"] for e in merged_events) == sorted(t["id"] for t in tasks), "each task merged once"
    rebases = d.events("pr_rebased")
    assert [e for e in rebases if e["reason"] != "conflict"] == [], "agentos's own queue rebased nothing"
    assert len(rebases) <= N - 1, "at most one rebase per PR, for its CODEBASE.md conflict with the PR ahead"
    assert_no_duplicate_comments(d)


async def test_a_failing_merge_group_goes_back_to_an_agent_then_merges(make_daemon: MakeDaemon) -> None:  # noqa: F811
    """The PR's first merge group fails its check: GitHub drops it (``CI_FAILURE``), the PR goes back to an agent
    with the group's failing check and log; the fix is enqueued again, its new group passes, it merges once."""
    d = await make_daemon({"claude": claude_agent("plan")}, board=False, start=False)
    prompts = d.root / "prompts.log"
    d.agents["claude"]["env"]["FAKE_AGENT_PROMPT_LOG"] = str(prompts)
    queue = d.fake.queues.require(REPO, "main", ci=lambda number, build: "failure" if build == 1 else "success")
    await d.start()
    number = plan_issue(d, 1)
    task_id = f"{REPO}#{number}"

    task = await d.wait_merged(task_id, number, timeout=90)

    pr = int(task["pr"])
    assert [(a["outcome"]) for a in task["attempts"]] == ["complete", "complete"]
    assert task["ci_fix_attempts"] == 1 and queue.builds[pr] == 2 and queue.merged == [pr]
    assert [e["reason"] for e in queue.removed[pr]] == ["CI_FAILURE"]
    second_prompt = prompts.read_text().split("=== end of prompt ===")[1]
    assert "GitHub's merge queue dropped the PR (CI_FAILURE)" in second_prompt
    assert "merge-group" in second_prompt and "FAILED test_group.py::test_together" in second_prompt
    sent_back = [e for e in d.events("pr_sent_back") if e["task"] == task_id]
    assert [e["reason"] for e in sent_back] == ["merge_group_failed"]
    assert len([e for e in d.events("pr_enqueued") if e["task"] == task_id]) == 2
    assert d.fake.requests_to("PUT", r"/pulls/\d+/merge$") == []
    subjects = [subject for _, subject, _ in await d.main_commits()]
    assert len([s for s in subjects if re.search(rf"\(#{pr}\)$", s)]) == 1
    assert_no_duplicate_comments(d)


async def test_a_pr_removed_by_a_person_is_not_put_back(make_daemon: MakeDaemon) -> None:  # noqa: F811
    """A maintainer dequeues the PR while its group is checked: agentos does not enqueue that head again."""
    d = await make_daemon({"claude": claude_agent("plan")}, board=False, start=False)
    queue = d.fake.queues.require(REPO, "main", ci=lambda number, build: None)  # the group's checks never finish
    await d.start()
    number = plan_issue(d, 1)

    def queued() -> Any:
        return queue.entries[0] if queue.entries else None

    entry = await d.wait_for(queued, what="the PR in the merge queue")
    await d.wait_for(lambda: d.events("pr_in_merge_queue"), what="the monitor to see it queued")
    start = len(d.fake.state.requests)
    await d.ctl("run", {"name": "pr_monitor"})
    asked = [(r.method, r.path) for r in d.fake.state.requests[start:]]
    refs = f"/repos/{REPO}/git/matching-refs/heads/gh-readonly-queue/main/"
    monitor = [a for a in asked if re.search(r"/pulls|/commits/|/graphql|/git/|/rules/|/actions/", a[1])]
    assert monitor == [("POST", "/graphql"), ("GET", refs)], "a queued PR costs the queue's read and its refs"
    node = d.repo.pulls[entry.number].node_id
    answer = await d.fake.queues.gql_dequeue("maya", {"id": node})
    assert answer["data"]["dequeuePullRequest"]["mergeQueueEntry"]["pullRequest"] == {"number": entry.number}
    await d.wait_for(lambda: d.events("pr_blocked"), what="the removal noted as a blocker")
    for _ in range(3):
        await d.ctl("run", {"name": "pr_monitor"})

    assert queue.entries == [] and queue.merged == []
    assert len(d.events("pr_enqueued")) == 1, "a head removed by a person is not enqueued again"
    blocked = d.events("pr_blocked")
    assert [b["kind"] for b in blocked] == ["refused"], blocked
    assert (await d.task(f"{REPO}#{number}"))["status"] == "pr_open"


async def test_a_fifth_of_requests_failing_still_merges_each_pr_once(make_daemon: MakeDaemon) -> None:  # noqa: F811
    """20% of API requests (REST and GraphQL, enqueues included) answer 502, half of them after being applied: each
    PR is still enqueued into one entry and merged by the queue exactly once, with no duplicate comment."""
    d = await make_daemon({"claude": claude_agent("plan")}, board=False, start=False)
    queue = d.fake.queues.require(REPO, "main")
    await d.start()
    flaky = d.fake.fail_randomly(0.2, seed=7)
    numbers = [plan_issue(d, i) for i in (1, 2)]

    tasks = [await d.wait_merged(f"{REPO}#{n}", n, timeout=120) for n in numbers]
    d.fake.stop_failing()

    assert flaky.failed >= 5, flaky
    prs = sorted(int(t["pr"]) for t in tasks)
    assert sorted(queue.merged) == prs, queue.merged
    assert d.fake.requests_to("PUT", r"/pulls/\d+/merge$") == []
    subjects = [subject for _, subject, _ in await d.main_commits()]
    for pr in prs:
        assert len([s for s in subjects if s.endswith(f"(#{pr})")]) == 1
        added = [e for e in d.repo.issues[pr].events if e["event"] == "added_to_merge_queue"]
        assert len(added) == queue.builds[pr] == 1, "one entry, one group per PR: a retried enqueue found its entry"
    assert_no_duplicate_comments(d)
