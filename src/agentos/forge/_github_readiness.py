"""Whether a ready issue may run: who made it ready (label event or Projects v2 card), their role on the repo,
and whether its body was edited since (see :mod:`agentos.forge.github`'s module doc for the rules and costs)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Literal
from urllib.parse import quote

import structlog

from agentos.forge._github_http import JSON, GitHubClient, GitHubError
from agentos.forge._github_payloads import (
    _dig,
    _GqlEdits,
    _GqlIssueNode,
    _GqlItem,
    _GqlItems,
    _GqlProject,
    _issue,
    _RestEvent,
    _RestPermission,
)
from agentos.forge._github_projects import (
    _M_ADD_ITEM,
    _Q_BOARD,
    _Q_ISSUE_ITEMS,
    _Q_PROJECT,
    _Q_PROJECT_BY_ID,
    ProjectConfig,
    _BoardRead,
    _ProjectMeta,
)
from agentos.forge.base import ForgeError, Issue, NotFound

__all__ = ["PERMISSION_RANK", "Permission", "ReadyGate", "Verdict", "ready_verdict", "split_repo"]

_log = structlog.get_logger("agentos.forge.github")

Permission = Literal["none", "read", "triage", "write", "maintain", "admin"]
PERMISSION_RANK: dict[str, int] = {"none": 0, "read": 1, "triage": 2, "write": 3, "maintain": 4, "admin": 5}
Verdict = Literal["ready", "no_ready_event", "untrusted", "edited_after_ready"]
_VERDICT_EVENTS: dict[str, str] = {
    "no_ready_event": "issue_no_ready_event",
    "untrusted": "issue_untrusted",
    "edited_after_ready": "issue_edited_after_ready",
}


def ready_verdict(
    *,
    ready_at: datetime | None,
    actor: str | None,
    role: str,
    trusted_permission: Permission,
    edited_at: datetime | None,
    trusted_actors: frozenset[str] = frozenset(),
) -> Verdict:
    """Whether an issue made ready at ``ready_at`` by ``actor`` (who has ``role``) may run."""
    if ready_at is None or not actor:
        return "no_ready_event"
    if actor not in trusted_actors and PERMISSION_RANK.get(role, 0) < PERMISSION_RANK[trusted_permission]:
        return "untrusted"
    if edited_at is not None and edited_at > ready_at:
        return "edited_after_ready"
    return "ready"


_Q_READY_EDITS = """query AgentosReadyEdits($owner: String!, $name: String!, $labels: [String!], $cursor: String) {
  repository(owner: $owner, name: $name) {
    issues(first: 100, after: $cursor, states: [OPEN], labels: $labels) {
      pageInfo { hasNextPage endCursor } nodes { number lastEditedAt } } }
}"""


_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


def split_repo(repo: str) -> tuple[str, str]:
    """``("owner", "name")`` of ``owner/name``; a :class:`ForgeError` for anything else."""
    if not _REPO.match(repo):
        raise ForgeError(f"GitHub repo must be 'owner/name', not {repo!r}")
    owner, name = repo.split("/")
    return owner, name


class ReadyGate:
    """The ready issues of a repo that may run, with the caches that keep an idle poll cheap: roles (for
    ``permission_ttl`` seconds), verdicts (until the issue changes), board reads (``board_ttl``), board ids."""

    def __init__(
        self,
        client: GitHubClient,
        *,
        ready_label: str,
        projects: Mapping[str, ProjectConfig],
        trusted_permission: Permission,
        trusted_actors: Iterable[str],
        permission_ttl: float,
        board_ttl: float,
    ) -> None:
        self._client = client
        self.ready_label = ready_label
        self._projects = dict(projects)
        self._trusted_permission: Permission = trusted_permission
        self._trusted_actors = frozenset(trusted_actors)
        self._permission_ttl = permission_ttl
        self._board_ttl = board_ttl
        self._boards: dict[tuple[str, str], _BoardRead] = {}  # (project id, status field) → the last read
        self._roles: dict[tuple[str, str], tuple[str, float]] = {}
        self._verdicts: dict[tuple[str, int], tuple[object, Verdict]] = {}
        self._meta: dict[str, _ProjectMeta] = {}
        self._items: dict[tuple[str, int], str] = {}

    def __repr__(self) -> str:
        return f"<ReadyGate boards={len(self._projects)} verdicts={len(self._verdicts)}>"

    async def ready_issues(self, repo: str) -> list[Issue]:
        """Open issues made ready by a trusted person and not edited since, oldest first."""
        project = self._projects.get(repo)
        if project is not None:
            ready = await self._board_ready(repo, project)
        else:
            ready = await self._label_ready(repo)
        return sorted(ready, key=lambda i: (i.created_at, i.number))

    def board_moved(self, meta: _ProjectMeta, project: ProjectConfig) -> None:
        """agentos moved a card on this board: the next poll reads it afresh."""
        self._boards.pop((meta.id, project.status_field), None)

    async def trusted(self, repo: str, user: str) -> bool:
        """The readiness rule for any account: a trusted actor, or a role of at least the trusted permission."""
        if user in self._trusted_actors:
            return True
        return PERMISSION_RANK.get(await self._role(repo, user), 0) >= PERMISSION_RANK[self._trusted_permission]

    async def _role(self, repo: str, user: str) -> str:
        now = self._client.clock()
        cached = self._roles.get((repo, user))
        if cached is not None and now - cached[1] < self._permission_ttl:
            return cached[0]
        try:
            raw = await self._client.get(f"/repos/{repo}/collaborators/{quote(user, safe='')}/permission")
            perm = _RestPermission.model_validate(raw)
            role = perm.role_name if perm.role_name in PERMISSION_RANK else perm.permission
        except NotFound:
            role = "none"
        role = role if role in PERMISSION_RANK else "none"
        self._roles[(repo, user)] = (role, now)
        return role

    async def _judge(
        self, repo: str, number: int, *, ready_at: datetime | None, actor: str | None, edited_at: datetime | None
    ) -> Verdict:
        role = "none"
        if actor and actor not in self._trusted_actors:
            role = await self._role(repo, actor)
        verdict = ready_verdict(
            ready_at=ready_at,
            actor=actor,
            role=role,
            trusted_permission=self._trusted_permission,
            edited_at=edited_at,
            trusted_actors=self._trusted_actors,
        )
        if verdict != "ready":
            _log.info(_VERDICT_EVENTS[verdict], repo=repo, issue=number, actor=actor, role=role)
        return verdict

    async def _label_ready(self, repo: str) -> list[Issue]:
        raw = await self._client.paginate(f"/repos/{repo}/issues", params={"state": "open", "labels": self.ready_label})
        issues = [_issue(repo, x) for x in raw if _dig(x, "pull_request") is None]
        stale = [i for i in issues if self._verdicts.get((repo, i.number), (None,))[0] != i.updated_at]
        edits = await self._edit_times(repo) if stale else {}
        for issue in stale:
            ready_at, actor = await self._ready_event(repo, issue.number)
            edited_at = edits.get(issue.number)
            verdict = await self._judge(repo, issue.number, ready_at=ready_at, actor=actor, edited_at=edited_at)
            self._verdicts[(repo, issue.number)] = (issue.updated_at, verdict)
        listed = {i.number for i in issues}
        for key in [k for k in self._verdicts if k[0] == repo and k[1] not in listed]:
            del self._verdicts[key]
        return [i for i in issues if self._verdicts[(repo, i.number)][1] == "ready"]

    async def _ready_event(self, repo: str, number: int) -> tuple[datetime | None, str | None]:
        raw = await self._client.paginate(f"/repos/{repo}/issues/{number}/events")
        events = [_RestEvent.model_validate(x) for x in raw]
        labeled = [e for e in events if e.event == "labeled" and e.label and e.label.name == self.ready_label]
        if not labeled:
            return None, None
        last = max(enumerate(labeled), key=lambda pair: (pair[1].created_at, pair[0]))[1]
        return last.created_at, last.actor.login if last.actor else None

    async def _edit_times(self, repo: str) -> dict[int, datetime | None]:
        owner, name = split_repo(repo)
        out: dict[int, datetime | None] = {}
        cursor: str | None = None
        while True:
            variables: dict[str, JSON] = {"owner": owner, "name": name, "labels": [self.ready_label], "cursor": cursor}
            data = await self._client.graphql(_Q_READY_EDITS, variables)
            page = _GqlEdits.model_validate(_dig(data, "repository", "issues"))
            out.update((n.number, n.lastEditedAt) for n in page.nodes)
            if not page.pageInfo.hasNextPage:
                return out
            cursor = page.pageInfo.endCursor

    async def project_meta(self, repo: str, project: ProjectConfig) -> _ProjectMeta:
        if (meta := self._meta.get(repo)) is not None:
            return meta
        if project.node_id is not None:
            data = await self._client.graphql(_Q_PROJECT_BY_ID, {"id": project.node_id, "field": project.status_field})
            raw = _dig(data, "node")
        else:
            owner = project.owner or split_repo(repo)[0]
            variables: dict[str, JSON] = {"owner": owner, "number": project.number, "field": project.status_field}
            raw = _dig(await self._client.graphql(_Q_PROJECT, variables), "repositoryOwner", "projectV2")
        if not raw:
            raise NotFound(f"Projects v2 board for {repo} not found ({project.model_dump(exclude_defaults=True)})")
        found = _GqlProject.model_validate(raw)
        if found.field is None or found.field.id is None:
            raise ForgeError(f"board of {repo} has no single-select field {project.status_field!r}")
        meta = _ProjectMeta(found.id, found.field.id, {o.name.lower(): o.id for o in found.field.options})
        self._meta[repo] = meta
        return meta

    async def item_id(self, repo: str, number: int, meta: _ProjectMeta) -> str:
        if (item := self._items.get((repo, number))) is not None:
            return item
        owner, name = split_repo(repo)
        data = await self._client.graphql(_Q_ISSUE_ITEMS, {"owner": owner, "name": name, "number": number})
        node = _GqlIssueNode.model_validate(_dig(data, "repository", "issue"))
        item = next((i.id for i in node.projectItems.nodes if i.project.id == meta.id), None)
        if item is None:
            added = await self._client.graphql(_M_ADD_ITEM, {"project": meta.id, "content": node.id}, idempotent=True)
            found = _dig(added, "addProjectV2ItemById", "item", "id")
            if not isinstance(found, str):
                raise GitHubError("addProjectV2ItemById returned no item", status=200, method="POST", route="/graphql")
            item = found
        self._items[(repo, number)] = item
        return item

    async def _board_items(self, repo: str, meta: _ProjectMeta, project: ProjectConfig) -> list[_GqlItem]:
        """Every item of the board. One read serves each repo sharing the board once (so one poll of N repos
        costs one read), for at most ``board_ttl`` seconds; a repo asking a second time gets a fresh read."""
        key = (meta.id, project.status_field)
        now = self._client.clock()
        last = self._boards.get(key)
        if last is not None and repo not in last.served and now - last.at < self._board_ttl:
            last.served.add(repo)
            return last.items
        items: list[_GqlItem] = []
        cursor: str | None = None
        while True:
            variables: dict[str, JSON] = {"project": meta.id, "field": project.status_field, "cursor": cursor}
            data = await self._client.graphql(_Q_BOARD, variables)
            page = _GqlItems.model_validate(_dig(data, "node", "items"))
            items.extend(page.nodes)
            if not page.pageInfo.hasNextPage:
                break
            cursor = page.pageInfo.endCursor
        self._boards[key] = _BoardRead(now, items, {repo})
        return items

    async def _board_ready(self, repo: str, project: ProjectConfig) -> list[Issue]:
        meta = await self.project_meta(repo, project)
        ready_name = project.option_name("Ready").lower()
        ready: list[Issue] = []
        for item in await self._board_items(repo, meta, project):
            content, value = item.content, item.fieldValueByName
            if content is None or content.number is None or content.repository is None:
                continue
            if content.repository.nameWithOwner.lower() != repo.lower():
                continue
            self._items[(repo, content.number)] = item.id
            if content.state != "OPEN" or value is None or (value.name or "").lower() != ready_name:
                continue
            actor = value.creator.login if value.creator else None
            version = (value.updatedAt, content.lastEditedAt, actor)
            cached = self._verdicts.get((repo, content.number))
            if cached is None or cached[0] != version:
                verdict = await self._judge(
                    repo, content.number, ready_at=value.updatedAt, actor=actor, edited_at=content.lastEditedAt
                )
                cached = (version, verdict)
                self._verdicts[(repo, content.number)] = cached
            if cached[1] == "ready":
                ready.append(_issue(repo, await self._client.get(f"/repos/{repo}/issues/{content.number}")))
        return ready
