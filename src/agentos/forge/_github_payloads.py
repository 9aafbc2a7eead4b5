"""The parts of GitHub's REST and GraphQL answers that :class:`~agentos.forge.github.GitHubForge` reads, and
their conversion to the forge's own :class:`~agentos.forge.base.Issue`, ``Comment`` and ``PullRequest``.

Every model ignores fields it does not name, so GitHub adding a field never breaks a read.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from agentos.forge._github_http import JSON
from agentos.forge.base import Comment, Issue, PullRequest


class _Gh(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _User(_Gh):
    login: str = ""


class _Label(_Gh):
    name: str


class _RestIssue(_Gh):
    number: int
    title: str
    body: str | None = None
    state: Literal["open", "closed"]
    labels: list[_Label] = Field(default_factory=list)
    user: _User | None = None
    created_at: datetime
    updated_at: datetime
    html_url: str = ""
    pull_request: dict[str, object] | None = None


class _RestComment(_Gh):
    id: int
    user: _User | None = None
    body: str | None = None
    created_at: datetime


class _RepoRef(_Gh):
    full_name: str = ""


class _Ref(_Gh):
    ref: str
    sha: str = ""
    repo: _RepoRef | None = None


class _RestPull(_Gh):
    number: int
    node_id: str = ""
    title: str
    body: str | None = None
    state: Literal["open", "closed"]
    head: _Ref
    base: _Ref
    merged_at: datetime | None = None
    merge_commit_sha: str | None = None
    mergeable: bool | None = None
    created_at: datetime
    updated_at: datetime
    html_url: str = ""
    labels: list[_Label] = Field(default_factory=list)


class _RestEvent(_Gh):
    event: str
    actor: _User | None = None
    label: _Label | None = None
    created_at: datetime


class _Output(_Gh):
    title: str | None = None
    summary: str | None = None
    text: str | None = None


class _App(_Gh):
    slug: str = ""


class _RestCheckRun(_Gh):
    id: int
    name: str
    status: str
    conclusion: str | None = None
    output: _Output = Field(default_factory=_Output)
    app: _App | None = None


class _RestStatus(_Gh):
    context: str
    state: str
    description: str | None = None


class _CombinedStatus(_Gh):
    statuses: list[_RestStatus] = Field(default_factory=list)


class _RestPermission(_Gh):
    permission: str = "none"
    role_name: str | None = None


class _GqlPageInfo(_Gh):
    hasNextPage: bool = False
    endCursor: str | None = None


class _GqlOption(_Gh):
    id: str
    name: str


class _GqlField(_Gh):
    id: str | None = None
    options: list[_GqlOption] = Field(default_factory=list)


class _GqlProject(_Gh):
    id: str
    field: _GqlField | None = None


class _GqlStatusValue(_Gh):
    name: str | None = None
    updatedAt: datetime | None = None
    creator: _User | None = None


class _GqlRepoName(_Gh):
    nameWithOwner: str


class _GqlContent(_Gh):
    number: int | None = None
    state: str | None = None
    lastEditedAt: datetime | None = None
    repository: _GqlRepoName | None = None


class _GqlItem(_Gh):
    id: str
    fieldValueByName: _GqlStatusValue | None = None
    content: _GqlContent | None = None


class _GqlItems(_Gh):
    pageInfo: _GqlPageInfo
    nodes: list[_GqlItem]


class _GqlEdit(_Gh):
    number: int
    lastEditedAt: datetime | None = None


class _GqlEdits(_Gh):
    pageInfo: _GqlPageInfo
    nodes: list[_GqlEdit]


class _GqlId(_Gh):
    id: str


class _GqlIssueItem(_Gh):
    id: str
    project: _GqlId


class _GqlIssueItems(_Gh):
    nodes: list[_GqlIssueItem] = Field(default_factory=list)


class _GqlIssueNode(_Gh):
    id: str
    projectItems: _GqlIssueItems = Field(default_factory=_GqlIssueItems)


def _dig(data: JSON, *keys: str) -> JSON:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _issue(repo: str, raw: JSON) -> Issue:
    r = _RestIssue.model_validate(raw)
    return Issue(
        repo=repo,
        number=r.number,
        title=r.title,
        body=r.body or "",
        state=r.state,
        labels=[label.name for label in r.labels],
        author=r.user.login if r.user else "",
        created_at=r.created_at,
        updated_at=r.updated_at,
        url=r.html_url,
    )


def _comment(raw: JSON) -> Comment:
    c = _RestComment.model_validate(raw)
    return Comment(id=c.id, author=c.user.login if c.user else "", body=c.body or "", created_at=c.created_at)


def _pull(repo: str, raw: JSON | _RestPull) -> PullRequest:
    p = raw if isinstance(raw, _RestPull) else _RestPull.model_validate(raw)
    return PullRequest(
        repo=repo,
        number=p.number,
        title=p.title,
        body=p.body or "",
        head=p.head.ref,
        base=p.base.ref,
        state="merged" if p.merged_at is not None else p.state,
        head_sha=p.head.sha,
        mergeable=p.mergeable,
        created_at=p.created_at,
        url=p.html_url,
        labels=[label.name for label in p.labels],
    )
