"""``GitHubForge`` and GitHub's merge queue over real HTTP: the fake GitHub's rules, entries and merge groups.

Branches are pushed over git smart HTTP; merge groups are real commits in the fake's bare repository.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest_asyncio

from agentos.forge.github import GitHubClient, GitHubForge, TokenAuth
from tests.fakes.github_server import BOT_LOGIN, FakeGitHub, fake_github  # noqa: F401
from tests.integration.test_github_forge import git, git_env

REPO = "acme/calc"


@dataclass
class Rig:
    fake: FakeGitHub
    forge: GitHubForge
    tmp: Path

    async def pr(self, branch: str, files: dict[str, str]) -> tuple[int, str]:
        """A branch off main with ``files`` pushed over HTTP and a PR for it: (number, head sha)."""
        url, cred_env = await self.forge.git_credentials(REPO)
        env = git_env(self.tmp, cred_env)
        work = self.tmp / f"work-{branch.replace('/', '-')}"
        await git("clone", "-q", url, str(work), env=env)
        await git("checkout", "-q", "-b", branch, cwd=work, env=env)
        for name, text in files.items():
            (work / name).write_text(text)
        await git("add", ".", cwd=work, env=env)
        await git("commit", "-q", "-m", f"change {branch}", cwd=work, env=env)
        await git("push", "-q", "origin", branch, cwd=work, env=env)
        pr = await self.forge.open_pr(REPO, head=branch, base="main", title=f"Do {branch}", body="Closes #1")
        return pr.number, await git("rev-parse", "HEAD", cwd=work, env=env)


@pytest_asyncio.fixture
async def rig(fake_github: FakeGitHub, tmp_path: Path) -> AsyncIterator[Rig]:  # noqa: F811
    await fake_github.add_repo(REPO, files={"calc.py": "def add(a, b):\n    return a + b\n"})
    await fake_github.add_repo("acme/plain")
    client = GitHubClient(fake_github.url, auth=TokenAuth(fake_github.token))
    try:
        yield Rig(fake_github, GitHubForge(client), tmp_path)
    finally:
        await client.aclose()


class TestMergeQueue:
    async def test_detected_from_the_branch_rules(self, rig: Rig) -> None:
        """A ruleset's ``merge_queue`` rule on main requires the queue; another branch or repo does not."""
        rig.fake.queues.require(REPO, "main")
        queue = rig.forge.merge_queue
        assert await queue.required(REPO, "main") is True
        assert await queue.required(REPO, "release") is False
        assert await queue.required("acme/plain", "main") is False

    async def test_green_prs_are_enqueued_and_merged_in_order_by_their_groups(self, rig: Rig) -> None:
        """``merge_pr`` enqueues (no REST merge); each group is the one ahead plus the PR; green groups land in order
        as squash commits on main; asking again for a queued PR does not queue it twice."""
        queue_state = rig.fake.queues.require(REPO, "main", ci=lambda number, build: None)  # the test decides
        first, first_head = await rig.pr("one", {"one.txt": "1\n"})
        second, second_head = await rig.pr("two", {"two.txt": "2\n"})

        results = [
            await rig.forge.merge_pr(REPO, first, sha=first_head, title="Do one", body=""),
            await rig.forge.merge_pr(REPO, second, sha=second_head, title="Do two", body=""),
            await rig.forge.merge_pr(REPO, second, sha=second_head, title="Do two", body=""),
        ]

        assert [(r.merged, r.reason) for r in results] == [(False, "queued")] * 3
        assert rig.fake.requests_to("PUT", r"/merge$") == []
        entries = await rig.forge.merge_queue.entries(REPO, "main")
        assert [(e.number, e.position, e.state) for e in entries] == [
            (first, 1, "awaiting_checks"),
            (second, 2, "awaiting_checks"),
        ]
        main = await rig.fake.branch_sha(REPO, "main")
        assert await rig.fake.git(REPO, "rev-parse", f"{entries[0].group_sha}^") == main
        assert await rig.fake.git(REPO, "rev-parse", f"{entries[1].group_sha}^") == entries[0].group_sha
        assert await rig.fake.git(REPO, "ls-tree", "--name-only", entries[1].group_sha) == "calc.py\none.txt\ntwo.txt"

        for entry in entries:
            rig.fake.add_check_run(REPO, entry.group_sha, "merge-group", conclusion="success")
        await rig.fake.queues.settle()

        assert queue_state.merged == [first, second]
        assert await rig.fake.branch_sha(REPO, "main") == entries[1].group_sha
        log = (await rig.fake.git(REPO, "log", "--format=%s", "main")).splitlines()
        assert log[:2] == [f"Do two (#{second})", f"Do one (#{first})"]
        pr = await rig.forge.get_pr(REPO, second)
        assert pr.state == "merged"
        assert await rig.forge.merge_queue.entries(REPO, "main") == []
        refs = await rig.fake.git(REPO, "for-each-ref", "--format=%(refname)", "refs/heads/gh-readonly-queue")
        assert refs == "", "the merge-group refs are gone once merged"

    async def test_a_failing_group_drops_its_pr_and_the_group_behind_is_rebuilt(self, rig: Rig) -> None:
        """The first group's checks fail: its PR leaves the queue (``CI_FAILURE``, with the group's checks and log);
        the PR behind is rebuilt on main without it and merges alone."""
        rig.fake.queues.require(REPO, "main", ci=lambda number, build: None)
        first, first_head = await rig.pr("one", {"one.txt": "1\n"})
        second, second_head = await rig.pr("two", {"two.txt": "2\n"})
        for number, head in ((first, first_head), (second, second_head)):
            await rig.forge.merge_pr(REPO, number, sha=head, title="t", body="")
        queue = rig.forge.merge_queue
        before = {e.number: e.group_sha for e in await queue.entries(REPO, "main")}
        rig.fake.add_check_run(REPO, before[first], "merge-group", conclusion="failure", log="E   boom\nFAILED t\n")

        [entry] = await queue.entries(REPO, "main")

        assert entry.number == second and entry.group_sha != before[second]
        main = await rig.fake.branch_sha(REPO, "main")
        assert await rig.fake.git(REPO, "rev-parse", f"{entry.group_sha}^") == main
        drop = await queue.last_drop(REPO, first)
        assert drop is not None and (drop.kind, drop.reason, drop.head_sha) == ("checks", "CI_FAILURE", first_head)
        assert drop.checks is not None and drop.checks.sha == before[first]
        assert "FAILED t" in drop.checks.failing[0].log_tail
        assert await queue.last_drop(REPO, second) is None
        rig.fake.add_check_run(REPO, entry.group_sha, "merge-group", conclusion="success")
        assert (await rig.forge.get_pr(REPO, second)).state == "merged"
        assert (await rig.forge.get_pr(REPO, first)).state == "open"

    async def test_a_conflict_is_refused_or_dropped(self, rig: Rig) -> None:
        """A PR conflicting with the group ahead is dropped (``MERGE_CONFLICT``); once that one merged, the PR is
        unmergeable and enqueueing it is refused as a conflict; a moved head is refused too."""
        rig.fake.queues.require(REPO, "main", ci=lambda number, build: None)
        first, first_head = await rig.pr("one", {"calc.py": "def add(a, b):\n    return b + a\n"})
        second, second_head = await rig.pr("two", {"calc.py": "def add(a, b):\n    return a + b + 0\n"})
        await rig.forge.merge_pr(REPO, first, sha=first_head, title="t", body="")
        result = await rig.forge.merge_pr(REPO, second, sha=second_head, title="t", body="")
        assert result.reason == "queued"  # mergeable with main: GitHub takes it, then the group fails to build

        [entry] = await rig.forge.merge_queue.entries(REPO, "main")
        drop = await rig.forge.merge_queue.last_drop(REPO, second)

        assert entry.number == first
        assert drop is not None and (drop.kind, drop.reason) == ("conflict", "MERGE_CONFLICT")
        rig.fake.add_check_run(REPO, entry.group_sha, "merge-group", conclusion="success")
        assert (await rig.forge.get_pr(REPO, first)).state == "merged"
        assert (await rig.forge.get_pr(REPO, second)).mergeable is False
        refused = await rig.forge.merge_pr(REPO, second, sha=second_head, title="t", body="")
        assert (refused.merged, refused.reason) == (False, "conflict")
        moved = await rig.forge.merge_pr(REPO, second, sha="0" * 40, title="t", body="")
        assert (moved.merged, moved.reason) == (False, "head_moved")
        assert BOT_LOGIN in {e["actor"]["login"] for e in rig.fake.state.repos[REPO].issues[second].events}

    async def test_an_enqueue_whose_answer_is_lost_is_not_doubled(self, rig: Rig) -> None:
        """GitHub applies the enqueue but the answer comes too late: the retry finds the PR's entry; one entry."""
        rig.fake.queues.require(REPO, "main", ci=lambda number, build: None)
        number, head = await rig.pr("one", {"one.txt": "1\n"})
        client = GitHubClient(rig.fake.url, auth=TokenAuth(rig.fake.token), timeout=0.4)
        forge = GitHubForge(client)
        try:
            rig.fake.create_then_stall(method="POST", path="/graphql", seconds=1.0)
            result = await forge.merge_pr(REPO, number, sha=head, title="Do one", body="")
        finally:
            await client.aclose()

        assert (result.merged, result.reason) == (False, "queued")
        assert len(rig.fake.requests_to("POST", "/graphql")) >= 2, "the enqueue was sent again"
        events = [e["event"] for e in rig.fake.state.repos[REPO].issues[number].events]
        assert events.count("added_to_merge_queue") == 1
        assert [e.number for e in await rig.forge.merge_queue.entries(REPO, "main")] == [number]
