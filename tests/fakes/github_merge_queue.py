"""GitHub's merge queue in the fake GitHub: a ruleset that requires it, entries, merge groups built from real git.

:meth:`FakeMergeQueues.require` puts a ``merge_queue`` rule on a branch (served by
``GET /repos/{o}/{r}/rules/branches/{branch}``). Then, as on GitHub:

* GraphQL ``enqueuePullRequest`` (operation ``AgentosEnqueue``) adds an open, mergeable PR whose head is still
  ``expectedHeadOid`` (an already queued PR answers with its entry); ``dequeuePullRequest`` (``AgentosDequeue``)
  removes it (reason ``MANUAL``); ``repository.mergeQueue(branch).entries`` (``AgentosMergeQueue``) and the PR's
  ``RemovedFromMergeQueueEvent`` timeline (``AgentosQueueDrop``) read them back.
* Each entry gets a merge group: a commit whose tree is the group ahead of it (or the base) merged with the PR's
  head (``git merge-tree``), whose one parent is that group (a squash), on the ref
  ``refs/heads/gh-readonly-queue/{branch}/pr-{n}-{parent sha}`` (listed by ``GET …/git/matching-refs/…``). A PR that
  conflicts with the group ahead is dropped (``MERGE_CONFLICT``); a group rebuilt on a new parent replaces its ref.
* The queue's ``ci(number, build)`` says the conclusion of the ``merge-group`` check run put on each group commit
  (None: no run yet; the test adds check runs itself, as it does for PR heads). A group whose checks fail drops its
  PR (``CI_FAILURE``) and the groups behind it are rebuilt without it; when the first group's checks pass, the
  branch is fast-forwarded to its commit, the PR is marked merged (``merge_commit_sha`` = the group commit) and
  leaves the queue. :attr:`FakeMergeQueue.merged` lists the PRs merged, in order. The group's check run is an
  Actions job: ``GET …/actions/runs?event=merge_group`` lists its run with the group's ``head_branch``.

The queue advances whenever it is read or fed (any queue request, any PR read) and on :meth:`FakeMergeQueues.settle`.
A PR's ``mergeable`` is computed (``git merge-tree`` against the base) on branches with a queue.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from tests.fakes.github_server import FakeGitHub, FakePull, FakeRepo

__all__ = ["FakeMergeQueue", "FakeMergeQueues", "FakeQueueEntry", "GroupCI"]

GroupCI = Callable[[int, int], str | None]
"""(PR number, how many groups were built for it so far, 1-based) → the group's check conclusion, or None."""
CHECK_NAME = "merge-group"


def _all_green(number: int, build: int) -> str | None:
    return "success"


@dataclass
class FakeQueueEntry:
    number: int
    head_sha: str
    enqueuer: str
    enqueued_at: str
    group_sha: str = ""
    group_parent: str = ""
    group_ref: str = ""


@dataclass
class FakeMergeQueue:
    """The merge queue of one branch (see the module docstring)."""

    branch: str
    ruleset_id: int
    ci: GroupCI = _all_green
    ci_log: str = "FAILED test_group.py::test_together - AssertionError: the merged changes disagree\n"
    entries: list[FakeQueueEntry] = field(default_factory=list)
    builds: dict[int, int] = field(default_factory=dict)  # PR → groups built for it
    groups: list[tuple[int, str, str]] = field(default_factory=list)  # (PR, commit, branch) of every group built
    removed: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # PR → its RemovedFromMergeQueueEvents
    merged: list[int] = field(default_factory=list)


class FakeMergeQueues:
    """The merge queues of a :class:`FakeGitHub` (``fake.queues``)."""

    def __init__(self, fake: FakeGitHub) -> None:
        self.fake = fake
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        queues = sum(len(r.merge_queues) for r in self.fake.state.repos.values())
        return f"<FakeMergeQueues queues={queues}>"

    # -- setup and inspection -------------------------------------------------------------------------

    def require(self, repo: str, branch: str = "main", *, ci: GroupCI | None = None) -> FakeMergeQueue:
        """A ruleset on ``branch`` requiring the merge queue; ``ci`` decides each group's check (default green)."""
        queue = FakeMergeQueue(branch, self.fake.state.new_id(), ci=ci or _all_green)
        self.fake.state.repos[repo].merge_queues[branch] = queue
        return queue

    def routes(self, router: web.UrlDispatcher) -> None:
        repo = "/repos/{owner}/{repo}"
        router.add_get(repo + "/rules/branches/{branch:.+}", self._h_rules)
        router.add_get(repo + "/git/matching-refs/{ref:.+}", self._h_matching_refs)

    async def settle(self) -> None:
        """Advance every queue as far as its checks allow (GitHub does this on each check event)."""
        async with self._lock:
            for repo in list(self.fake.state.repos.values()):
                for queue in list(repo.merge_queues.values()):
                    await self._advance(repo, queue)

    def group_branch(self, repo: FakeRepo, sha: str) -> str | None:
        """The ``gh-readonly-queue/…`` branch a merge-group commit was built on, or None (the Actions run's branch)."""
        for queue in repo.merge_queues.values():
            for _, commit, branch in queue.groups:
                if commit == sha:
                    return branch
        return None

    async def mergeable(self, repo: FakeRepo, pull: FakePull) -> bool | None:
        """Does the PR merge cleanly into its base? None where the base has no queue (the fake says True there)."""
        if pull.base not in repo.merge_queues:
            return None
        base, head = await self.fake._rev(repo, pull.base), await self.fake._rev(repo, pull.head)
        if base is None or head is None:
            return None
        return bool(await self.fake._git(repo.path, "merge-tree", "--write-tree", base, head, check=False))

    # -- REST -----------------------------------------------------------------------------------------

    async def _h_rules(self, request: web.Request) -> web.Response:
        repo = self.fake._repo(request)
        queue = repo.merge_queues.get(request.match_info["branch"])
        rules: list[dict[str, Any]] = []
        if queue is not None:
            source = {"ruleset_source_type": "Repository", "ruleset_source": repo.full_name}
            rules.append({"type": "pull_request", **source, "ruleset_id": queue.ruleset_id, "parameters": {}})
            parameters = {
                "check_response_timeout_minutes": 60,
                "grouping_strategy": "ALLGREEN",
                "max_entries_to_build": 5,
                "max_entries_to_merge": 5,
                "merge_method": "SQUASH",
                "min_entries_to_merge": 1,
                "min_entries_to_merge_wait_minutes": 5,
            }
            rules.append({"type": "merge_queue", **source, "ruleset_id": queue.ruleset_id, "parameters": parameters})
        return self.fake._page(request, rules)

    async def _h_matching_refs(self, request: web.Request) -> web.Response:
        repo = self.fake._repo(request)
        await self.settle()
        prefix = "refs/" + request.match_info["ref"]
        out = await self.fake._git(repo.path, "for-each-ref", "--format=%(refname) %(objectname)", check=False)
        refs = []
        for line in sorted(out.splitlines()):
            name, _, sha = line.partition(" ")
            if name.startswith(prefix):
                url = f"{self.fake.url}/repos/{repo.full_name}/git/{name}"
                target = {"sha": sha, "type": "commit"}
                refs.append({"ref": name, "node_id": f"REF_{sha[:8]}", "url": url, "object": target})
        return web.json_response(refs)

    # -- GraphQL --------------------------------------------------------------------------------------

    def _by_node(self, node_id: str) -> tuple[FakeRepo, FakePull] | None:
        for repo in self.fake.state.repos.values():
            for pull in repo.pulls.values():
                if pull.node_id == node_id:
                    return repo, pull
        return None

    @staticmethod
    def _errors(message: str, kind: str = "UNPROCESSABLE") -> dict[str, Any]:
        return {"data": None, "errors": [{"type": kind, "message": message}]}

    def _entry_json(self, repo: FakeRepo, queue: FakeMergeQueue, entry: FakeQueueEntry) -> dict[str, Any]:
        position = queue.entries.index(entry) + 1 if entry in queue.entries else 0
        state = "QUEUED"
        if entry.group_sha:
            checks = self._group_state(repo, entry.group_sha)
            state = {"success": "MERGEABLE", "failure": "UNMERGEABLE"}.get(checks, "AWAITING_CHECKS")
        return {
            "id": f"MQE_{repo.id}_{entry.number}",
            "position": position,
            "state": state,
            "enqueuedAt": entry.enqueued_at,
            "headCommit": {"oid": entry.head_sha},
            "pullRequest": {"number": entry.number},
        }

    async def gql_enqueue(self, login: str, v: dict[str, Any]) -> dict[str, Any]:
        found = self._by_node(str(v.get("id") or ""))
        if found is None:
            return self._errors(f"Could not resolve to a node with the global id of '{v.get('id')}'", "NOT_FOUND")
        repo, pull = found
        async with self._lock:
            queue = repo.merge_queues.get(pull.base)
            if queue is None:
                return self._errors(f"Merge queue is not enabled for {pull.base}")
            if repo.issues[pull.number].state != "open":
                return self._errors("Pull request is closed")
            for entry in queue.entries:
                if entry.number == pull.number:
                    return {"data": {"enqueuePullRequest": {"mergeQueueEntry": self._entry_json(repo, queue, entry)}}}
            head = await self.fake._rev(repo, pull.head)
            if head is None:
                return self._errors("Head branch does not exist")
            if v.get("sha") and v["sha"] != head:
                return self._errors("Head branch was modified. Review and try the merge again.")
            if not await self.mergeable(repo, pull):
                return self._errors("Pull request is not mergeable: it has merge conflicts")
            entry = FakeQueueEntry(pull.number, head, login, self.fake.state.now())
            queue.entries.append(entry)
            self.fake._event(repo.issues[pull.number], "added_to_merge_queue", login)
            answer = self._entry_json(repo, queue, entry)
            await self._advance(repo, queue)
        return {"data": {"enqueuePullRequest": {"mergeQueueEntry": answer}}}

    async def gql_dequeue(self, login: str, v: dict[str, Any]) -> dict[str, Any]:
        found = self._by_node(str(v.get("id") or ""))
        if found is None:
            return self._errors(f"Could not resolve to a node with the global id of '{v.get('id')}'", "NOT_FOUND")
        repo, pull = found
        async with self._lock:
            queue = repo.merge_queues.get(pull.base)
            entry = next((e for e in queue.entries if e.number == pull.number), None) if queue else None
            if queue is None or entry is None:
                return self._errors("Pull request is not in the merge queue")
            answer = self._entry_json(repo, queue, entry)
            await self._drop(repo, queue, entry, "MANUAL", login)
            await self._advance(repo, queue)
        return {"data": {"dequeuePullRequest": {"mergeQueueEntry": answer}}}

    async def gql_merge_queue(self, login: str, v: dict[str, Any]) -> dict[str, Any]:
        repo = self.fake.state.repos.get(f"{v.get('owner')}/{v.get('name')}")
        if repo is None:
            return self._errors("Could not resolve to a Repository", "NOT_FOUND")
        await self.settle()
        queue = repo.merge_queues.get(str(v.get("branch")))
        if queue is None:
            return {"data": {"repository": {"mergeQueue": None}}}
        first = int(v.get("first") or 100)
        nodes = [self._entry_json(repo, queue, e) for e in queue.entries[:first]]
        return {"data": {"repository": {"mergeQueue": {"entries": {"nodes": nodes}}}}}

    async def gql_queue_drop(self, login: str, v: dict[str, Any]) -> dict[str, Any]:
        repo = self.fake.state.repos.get(f"{v.get('owner')}/{v.get('name')}")
        number = int(v.get("number") or 0)
        if repo is None or number not in repo.pulls:
            return self._errors("Could not resolve to a PullRequest", "NOT_FOUND")
        await self.settle()
        queue = repo.merge_queues.get(repo.pulls[number].base)
        removed = queue.removed.get(number, []) if queue else []
        return {"data": {"repository": {"pullRequest": {"timelineItems": {"nodes": removed[-1:]}}}}}

    # -- the queue itself -----------------------------------------------------------------------------

    def _group_state(self, repo: FakeRepo, sha: str) -> str:
        runs = repo.check_runs.get(sha, [])
        if not runs:
            return "pending"
        if any(r["status"] != "completed" for r in runs):
            return "pending"
        ok = all(r["conclusion"] in ("success", "neutral", "skipped") for r in runs)
        return "success" if ok else "failure"

    async def _drop(
        self, repo: FakeRepo, queue: FakeMergeQueue, entry: FakeQueueEntry, reason: str, actor: str
    ) -> None:
        queue.entries.remove(entry)
        if entry.group_ref:
            await self.fake._git(repo.path, "update-ref", "-d", entry.group_ref, check=False)
        event = {
            "createdAt": self.fake.state.now(),
            "reason": reason,
            "beforeCommit": {"oid": entry.head_sha},
            "actor": {"login": actor},
        }
        queue.removed.setdefault(entry.number, []).append(event)
        self.fake._event(repo.issues[entry.number], "removed_from_merge_queue", actor, reason=reason)

    async def _build(self, repo: FakeRepo, queue: FakeMergeQueue, entry: FakeQueueEntry, parent: str) -> bool:
        """The entry's merge group on ``parent``; False when the PR conflicts with it."""
        if entry.group_ref:
            await self.fake._git(repo.path, "update-ref", "-d", entry.group_ref, check=False)
            entry.group_sha = entry.group_ref = ""
        out = await self.fake._git(repo.path, "merge-tree", "--write-tree", parent, entry.head_sha, check=False)
        if not out:
            return False
        issue = repo.issues[entry.number]
        commit = await self.fake._git(
            repo.path, "commit-tree", out.splitlines()[0], "-p", parent, "-m", f"{issue.title} (#{entry.number})"
        )
        entry.group_ref = f"refs/heads/gh-readonly-queue/{queue.branch}/pr-{entry.number}-{parent}"
        await self.fake._git(repo.path, "update-ref", entry.group_ref, commit)
        entry.group_sha, entry.group_parent = commit, parent
        build = queue.builds[entry.number] = queue.builds.get(entry.number, 0) + 1
        queue.groups.append((entry.number, commit, entry.group_ref.removeprefix("refs/heads/")))
        conclusion = queue.ci(entry.number, build)
        if conclusion is not None:
            log = queue.ci_log if conclusion != "success" else None
            self.fake.add_check_run(repo.full_name, commit, CHECK_NAME, conclusion=conclusion, log=log)
        return True

    async def _advance(self, repo: FakeRepo, queue: FakeMergeQueue) -> None:
        """Build missing or stale groups, drop conflicting and failing PRs, merge the first group when green."""
        while True:
            base = await self.fake._rev(repo, queue.branch)
            assert base is not None, f"{repo.full_name} has no branch {queue.branch}"
            for entry in list(queue.entries):
                if repo.issues[entry.number].state != "open":  # closed by someone: it leaves the queue silently
                    queue.entries.remove(entry)
            again = False
            parent = base
            for entry in list(queue.entries):
                stale = entry.group_parent != parent or not entry.group_sha
                if stale and not await self._build(repo, queue, entry, parent):
                    await self._drop(repo, queue, entry, "MERGE_CONFLICT", "github-merge-queue[bot]")
                    again = True
                    break
                parent = entry.group_sha
            if again:
                continue
            failed = next((e for e in queue.entries if self._group_state(repo, e.group_sha) == "failure"), None)
            if failed is not None:
                await self._drop(repo, queue, failed, "CI_FAILURE", "github-merge-queue[bot]")
                continue
            if not queue.entries or self._group_state(repo, queue.entries[0].group_sha) != "success":
                return
            first = queue.entries.pop(0)
            await self.fake._git(repo.path, "update-ref", f"refs/heads/{queue.branch}", first.group_sha, base)
            await self.fake._git(repo.path, "update-ref", "-d", first.group_ref, check=False)
            self.fake._merged(repo, repo.pulls[first.number], first.group_sha, first.head_sha, first.enqueuer)
            queue.merged.append(first.number)
