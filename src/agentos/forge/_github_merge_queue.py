"""GitHub's merge queue, the :class:`~agentos.forge.base.HostMergeQueue` capability of ``GitHubForge``.

* **Detection**: ``GET /repos/{o}/{r}/rules/branches/{base}`` lists the active ruleset rules of the base branch
  (metadata: read); a rule of type ``merge_queue`` means a PR merges only through the queue. The answer is cached
  for ``rules_ttl`` seconds per repo and branch.
* **Enqueue**: GraphQL ``enqueuePullRequest(pullRequestId, expectedHeadOid)``, guarded by the head the checks ran
  on; an already queued PR is answered with its entry (pull requests: write).
* **Watching**: ``repository.mergeQueue(branch).entries`` (state, position) once per pass, and the merge-group
  refs ``gh-readonly-queue/{base}/pr-{n}-{sha}`` (``GET …/git/matching-refs/heads/gh-readonly-queue/{base}/``)
  whose commits the ``merge_group`` checks run on.
* **Drops**: the PR's last ``RemovedFromMergeQueueEvent`` (``reason``, ``beforeCommit``). For a drop by its checks,
  the checks on its group commit say what failed (checks: read, or the Actions fallback): the commit seen while the
  PR was queued, else the newest ``merge_group`` Actions run on one of its group branches (actions: read).
"""

from __future__ import annotations

import re
from datetime import datetime
from urllib.parse import quote

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentos.forge._github_checks import CheckReader
from agentos.forge._github_http import JSON, GitHubClient, GitHubError
from agentos.forge._github_payloads import _dig
from agentos.forge._github_readiness import split_repo
from agentos.forge.base import DropKind, ForgeError, NotFound, QueueDrop, QueueEntry, QueueState

__all__ = [
    "GROUP_REF_PREFIX",
    "GitHubMergeQueue",
    "drop_kind",
    "group_number",
    "parse_drop",
    "parse_entries",
    "requires_merge_queue",
]

_log = structlog.get_logger("agentos.forge.github")

GROUP_REF_PREFIX = "gh-readonly-queue"
_GROUP_REF = re.compile(rf"^refs/heads/{GROUP_REF_PREFIX}/(?P<base>.+)/pr-(?P<number>\d+)-[0-9a-f]+$")
ENTRIES_PAGE = 100  # a queue longer than this is read in part (its first 100 entries)
GROUPS_KEPT = 1000  # group commits remembered for later drops (merged PRs' are forgotten, oldest first)

_Q_QUEUE = """query AgentosMergeQueue($owner: String!, $name: String!, $branch: String!, $first: Int!) {
  repository(owner: $owner, name: $name) {
    mergeQueue(branch: $branch) {
      entries(first: $first) {
        nodes { position state headCommit { oid } pullRequest { number } }
      }
    }
  }
}"""

_M_ENQUEUE = """mutation AgentosEnqueue($id: ID!, $sha: GitObjectID) {
  enqueuePullRequest(input: {pullRequestId: $id, expectedHeadOid: $sha}) {
    mergeQueueEntry { position state headCommit { oid } pullRequest { number } }
  }
}"""

_Q_DROP = """query AgentosQueueDrop($owner: String!, $name: String!, $number: Int!) {
  repository(owner: $owner, name: $name) {
    pullRequest(number: $number) {
      timelineItems(last: 1, itemTypes: [REMOVED_FROM_MERGE_QUEUE_EVENT]) {
        nodes { ... on RemovedFromMergeQueueEvent { createdAt reason beforeCommit { oid } } }
      }
    }
  }
}"""


class _Gql(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class _Oid(_Gql):
    oid: str = ""


class _Number(_Gql):
    number: int


class _Entry(_Gql):
    position: int
    state: str
    head_commit: _Oid | None = Field(default=None, alias="headCommit")
    pull_request: _Number = Field(alias="pullRequest")


class _Removed(_Gql):
    created_at: datetime = Field(alias="createdAt")
    reason: str | None = None
    before_commit: _Oid | None = Field(default=None, alias="beforeCommit")


def requires_merge_queue(rules: JSON) -> bool:
    """Does a ``rules/branches/{branch}`` answer (a list of rules) hold a ``merge_queue`` rule?"""
    return isinstance(rules, list) and any(_dig(rule, "type") == "merge_queue" for rule in rules)


def _state(raw: str) -> QueueState:
    state = raw.lower()
    if state in ("queued", "awaiting_checks", "mergeable", "unmergeable", "locked"):
        return state  # type: ignore[return-value]
    return "queued"  # a state GitHub added later: still in the queue


def _entry(raw: JSON) -> QueueEntry:
    try:
        entry = _Entry.model_validate(raw)
    except ValidationError as exc:
        raise ForgeError(f"GitHub merge queue entry unreadable: {exc.errors()[0]['msg']}") from exc
    head = entry.head_commit.oid if entry.head_commit else ""
    return QueueEntry(
        number=entry.pull_request.number, position=entry.position, state=_state(entry.state), head_sha=head
    )


def parse_entries(data: JSON) -> list[QueueEntry] | None:
    """The entries of an ``AgentosMergeQueue`` answer, first to merge first; None when the branch has no queue."""
    queue = _dig(data, "repository", "mergeQueue")
    if queue is None:
        return None
    nodes = _dig(queue, "entries", "nodes")
    entries = [_entry(node) for node in (nodes if isinstance(nodes, list) else []) if node is not None]
    return sorted(entries, key=lambda e: e.position)


def drop_kind(reason: str) -> DropKind:
    """What a removal reason means for agentos: ``CI_FAILURE``/``CI_TIMEOUT`` are the group's checks, a
    ``MERGE_CONFLICT`` a conflict; anything else (``MANUAL``, branch protection…) was not the change's fault."""
    text = reason.upper()
    if "CONFLICT" in text:
        return "conflict"
    if text.startswith("CI_") or "CHECK" in text:
        return "checks"
    return "other"


def parse_drop(data: JSON) -> QueueDrop | None:
    """The last ``RemovedFromMergeQueueEvent`` of an ``AgentosQueueDrop`` answer (without checks), or None."""
    nodes = _dig(data, "repository", "pullRequest", "timelineItems", "nodes")
    if not isinstance(nodes, list) or not nodes or not isinstance(nodes[-1], dict) or not nodes[-1]:
        return None
    try:
        removed = _Removed.model_validate(nodes[-1])
    except ValidationError as exc:
        raise ForgeError(f"GitHub merge queue removal unreadable: {exc.errors()[0]['msg']}") from exc
    reason = removed.reason or "UNKNOWN_REMOVAL_REASON"
    head = removed.before_commit.oid if removed.before_commit else ""
    return QueueDrop(kind=drop_kind(reason), reason=reason, head_sha=head, at=removed.created_at)


def group_number(ref: str, base: str | None) -> int | None:
    """The PR number of a merge-group ref ``refs/heads/gh-readonly-queue/{base}/pr-{n}-{sha}`` (any base when
    ``base`` is None), else None."""
    match = _GROUP_REF.match(ref)
    if match is None or (base is not None and match["base"] != base):
        return None
    return int(match["number"])


class GitHubMergeQueue:
    """Reads and feeds GitHub's merge queue; remembers each queued PR's group commit for its drop's checks."""

    def __init__(self, client: GitHubClient, checks: CheckReader, *, rules_ttl: float = 300.0) -> None:
        self._client = client
        self._checks = checks
        self._rules_ttl = rules_ttl
        self._required: dict[tuple[str, str], tuple[bool, float]] = {}  # (repo, base) → (required, read at)
        self._groups: dict[tuple[str, int], tuple[str, str]] = {}  # (repo, PR) → (its head, its group commit)

    def __repr__(self) -> str:
        return f"<GitHubMergeQueue rules={len(self._required)} groups={len(self._groups)}>"

    async def required(self, repo: str, base: str) -> bool:
        """Does a ruleset on ``base`` require the merge queue? Cached ``rules_ttl`` seconds. Rules the token may
        not read (403, 404) are no queue; a failure of the moment raises (nothing is cached)."""
        split_repo(repo)
        now = self._client.clock()
        known = self._required.get((repo, base))
        if known is not None and now - known[1] < self._rules_ttl:
            return known[0]
        try:
            rules = await self._client.paginate(f"/repos/{repo}/rules/branches/{quote(base, safe='')}")
        except (GitHubError, NotFound) as exc:
            if isinstance(exc, GitHubError) and exc.status not in (403, 404):
                raise  # a failure of the moment (5xx, no answer, rate limit): asked again on the next pass
            _log.warning("branch_rules_unreadable", repo=repo, branch=base, error=str(exc), assumed="no merge queue")
            rules = []
        required = requires_merge_queue(rules)
        if known is None or known[0] != required:
            _log.info("merge_queue_detected" if required else "merge_queue_absent", repo=repo, branch=base)
        self._required[(repo, base)] = (required, now)
        return required

    async def entries(self, repo: str, base: str) -> list[QueueEntry]:
        """The queue of ``base``, each entry with its merge-group commit when GitHub has built it."""
        owner, name = split_repo(repo)
        variables: dict[str, JSON] = {"owner": owner, "name": name, "branch": base, "first": ENTRIES_PAGE}
        entries = parse_entries(await self._client.graphql(_Q_QUEUE, variables)) or []
        if not entries:
            return []
        groups = await self._group_commits(repo, base)
        for entry in entries:
            entry.group_sha = groups.get(entry.number, "")
            if entry.group_sha:
                self._groups.pop((repo, entry.number), None)  # re-inserted last: the oldest are forgotten first
                self._groups[(repo, entry.number)] = (entry.head_sha, entry.group_sha)
        while len(self._groups) > GROUPS_KEPT:
            del self._groups[next(iter(self._groups))]
        return entries

    async def enqueue(self, repo: str, node_id: str, sha: str) -> QueueEntry:
        """Put the PR in the queue if its head is still ``sha``; a queued PR answers with its entry."""
        variables: dict[str, JSON] = {"id": node_id, "sha": sha}
        data = await self._client.graphql(_M_ENQUEUE, variables, idempotent=True)
        raw = _dig(data, "enqueuePullRequest", "mergeQueueEntry")
        if not isinstance(raw, dict):
            raise ForgeError(f"{repo}: GitHub enqueued no merge queue entry")
        return _entry(raw)

    async def last_drop(self, repo: str, number: int) -> QueueDrop | None:
        """Why the queue last dropped the PR; with its group's checks when that group was seen queued."""
        owner, name = split_repo(repo)
        variables: dict[str, JSON] = {"owner": owner, "name": name, "number": number}
        drop = parse_drop(await self._client.graphql(_Q_DROP, variables))
        if drop is None:
            return None
        if drop.kind != "checks":
            return drop
        seen = self._groups.get((repo, number))
        group = seen[1] if seen is not None and seen[0] == drop.head_sha else await self._group_of_runs(repo, number)
        if group:
            drop.checks = await self._checks.read_commit(repo, group)
        return drop

    async def _group_of_runs(self, repo: str, number: int) -> str:
        """The group commit of the PR's newest ``merge_group`` Actions run (a group built and failed between two
        reads of the queue); "" when none of the last 100 such runs was on one of its groups."""
        params: dict[str, str | int] = {"event": "merge_group", "per_page": 100}
        try:
            data = await self._client.get(f"/repos/{repo}/actions/runs", params=params)
        except (GitHubError, NotFound) as exc:  # no Actions: read, say: the drop is still reported, without checks
            _log.info("merge_group_runs_unreadable", repo=repo, pr=number, error=str(exc))
            return ""
        runs = _dig(data, "workflow_runs")
        for run in runs if isinstance(runs, list) else []:  # newest first
            branch, sha = _dig(run, "head_branch"), _dig(run, "head_sha")
            if (
                isinstance(branch, str)
                and isinstance(sha, str)
                and group_number(f"refs/heads/{branch}", None) == number
            ):
                return sha
        return ""

    async def _group_commits(self, repo: str, base: str) -> dict[int, str]:
        """PR number → the commit of its newest merge-group ref (one request for the whole queue)."""
        prefix = f"heads/{GROUP_REF_PREFIX}/{base}/"
        try:
            refs = await self._client.get(f"/repos/{repo}/git/matching-refs/{quote(prefix, safe='/')}")
        except NotFound:
            return {}
        groups: dict[int, str] = {}
        for ref in refs if isinstance(refs, list) else []:
            name, sha = _dig(ref, "ref"), _dig(ref, "object", "sha")
            number = group_number(name, base) if isinstance(name, str) else None
            if number is not None and isinstance(sha, str):
                groups[number] = sha  # an invalidated group's ref is deleted: one ref per queued PR
        return groups
