"""GitHub Projects v2 boards: the board a repo uses, the GraphQL that reads and moves its cards.

``agentos init`` sets a board up with :func:`read_status_field`, :func:`missing_status_options`,
:func:`options_with` and :func:`set_status_options` (the Status options agentos moves cards to).

:class:`~agentos.forge.github.GitHubForge` takes readiness from a board's Status field when a repo has a
:class:`ProjectConfig`, and mirrors each card move onto the running/blocked labels (:data:`_MIRROR`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agentos.forge._github_http import JSON, GitHubClient
from agentos.forge._github_payloads import _GqlItem
from agentos.forge.base import BLOCKED_LABEL, RUNNING_LABEL, BoardStatus, ForgeError, NotFound


class ProjectConfig(BaseModel):
    """A Projects v2 board for one repo, found by ``owner`` and ``number`` or by ``node_id``.

    ``owner`` is the org or user that owns the board (default: the repo's owner).

    ``status_values`` maps agentos's statuses to the board's option names when they differ
    (``{"In Progress": "Doing"}``); option names match case-insensitively.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    owner: str | None = None
    number: int | None = None
    node_id: str | None = None
    status_field: str = "Status"
    status_values: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_way_to_find_it(self) -> ProjectConfig:
        if self.number is None and self.node_id is None:
            raise ValueError("a project needs a number (with owner) or a node_id")
        return self

    def option_name(self, status: BoardStatus) -> str:
        return self.status_values.get(status, status)


_FIELD = "field(name: $field) { ... on ProjectV2SingleSelectField { id options { id name color description } } }"
_Q_PROJECT = f"""query AgentosProject($owner: String!, $number: Int!, $field: String!) {{
  repositoryOwner(login: $owner) {{ ... on ProjectV2Owner {{ projectV2(number: $number) {{ id {_FIELD} }} }} }}
}}"""
_Q_PROJECT_BY_ID = f"""query AgentosProjectById($id: ID!, $field: String!) {{
  node(id: $id) {{ ... on ProjectV2 {{ id {_FIELD} }} }}
}}"""
_Q_BOARD = """query AgentosBoardItems($project: ID!, $field: String!, $cursor: String) {
  node(id: $project) { ... on ProjectV2 { items(first: 100, after: $cursor) {
    pageInfo { hasNextPage endCursor }
    nodes { id
      fieldValueByName(name: $field) { ... on ProjectV2ItemFieldSingleSelectValue { name updatedAt creator { login } } }
      content { ... on Issue { number state lastEditedAt repository { nameWithOwner } } } } } } }
}"""
_Q_ISSUE_ITEMS = """query AgentosIssueItems($owner: String!, $name: String!, $number: Int!) {
  repository(owner: $owner, name: $name) {
    issue(number: $number) { id projectItems(first: 50) { nodes { id project { id } } } } }
}"""
_M_ADD_ITEM = """mutation AgentosAddItem($project: ID!, $content: ID!) {
  addProjectV2ItemById(input: {projectId: $project, contentId: $content}) { item { id } }
}"""
_M_SET_STATUS = """mutation AgentosSetStatus($project: ID!, $item: ID!, $field: ID!, $option: String!) {
  updateProjectV2ItemFieldValue(input: {projectId: $project, itemId: $item, fieldId: $field,
                                        value: {singleSelectOptionId: $option}}) { projectV2Item { id } }
}"""

# In Progress also clears a stale "blocked"; In Review and Done clear both.
_MIRROR: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "Ready": ((), ()),
    "In Progress": ((RUNNING_LABEL,), (BLOCKED_LABEL,)),
    "Blocked": ((BLOCKED_LABEL,), (RUNNING_LABEL,)),
    "In Review": ((), (RUNNING_LABEL, BLOCKED_LABEL)),
    "Done": ((), (RUNNING_LABEL, BLOCKED_LABEL)),
}


@dataclass
class _BoardRead:
    at: float
    items: list[_GqlItem]
    served: set[str]  # the repos this read was handed to


@dataclass(frozen=True)
class _ProjectMeta:
    id: str
    field_id: str
    options: dict[str, str]  # lower-cased option name → option id


# ---------------------------------------------------------------------------------------------- setting a board up

STATUS_OPTION_STYLE: dict[BoardStatus, tuple[str, str]] = {
    "Ready": ("GREEN", "agentos may pick this issue up"),
    "In Progress": ("YELLOW", "an agent is working on it"),
    "In Review": ("BLUE", "a pull request waits for review or CI"),
    "Blocked": ("RED", "agentos escalated: a person is needed"),
    "Done": ("PURPLE", "merged, or closed"),
}
"""The colour and description ``agentos init`` gives a Status option it adds (GitHub's option colours)."""

_M_SET_OPTIONS = """mutation AgentosSetStatusOptions($field: ID!, $options: [ProjectV2SingleSelectFieldOptionInput!]!) {
  updateProjectV2Field(input: {fieldId: $field, singleSelectOptions: $options}) {
    projectV2Field { ... on ProjectV2SingleSelectField { id options { id name color description } } } }
}"""


@dataclass(frozen=True)
class BoardOption:
    """One option of a single-select field, as GitHub has it (``color``: ``GRAY``, ``GREEN``…)."""

    id: str | None
    name: str
    color: str = "GRAY"
    description: str = ""


@dataclass(frozen=True)
class StatusField:
    """A board's Status field: the ids the mutations need and its options in board order."""

    project_id: str
    field_id: str
    options: tuple[BoardOption, ...]


def missing_status_options(project: ProjectConfig, names: Iterable[str]) -> list[str]:
    """The option names agentos moves cards to (after ``status_values``) that ``names`` lacks, in agentos's order."""
    have = {n.lower() for n in names}
    return [project.option_name(s) for s in get_args(BoardStatus) if project.option_name(s).lower() not in have]


def options_with(project: ProjectConfig, existing: Iterable[BoardOption], missing: Iterable[str]) -> list[BoardOption]:
    """Every existing option unchanged (id kept), plus each missing one placed where agentos's order puts it.

    A missing option goes just before the next agentos status the field already has (``Ready`` before
    ``In Progress``), or at the end when none follows. ``updateProjectV2Field`` replaces the whole list, so
    this is the list to send.
    """
    out = list(existing)
    order = [project.option_name(s) for s in get_args(BoardStatus)]
    styles = {project.option_name(s).lower(): STATUS_OPTION_STYLE[s] for s in get_args(BoardStatus)}
    for name in missing:
        later = [n.lower() for n in order[order.index(name) + 1 :]] if name in order else []
        at = next((i for i, o in enumerate(out) if o.name.lower() in later), len(out))
        color, description = styles.get(name.lower(), ("GRAY", ""))
        out.insert(at, BoardOption(None, name, color, description))
    return out


def _status_field(project_id: str, field: JSON, where: str) -> StatusField:
    """A :class:`StatusField` from a GraphQL ``field`` answer; ``where`` names the board in the error."""
    if not isinstance(field, dict) or not isinstance(field.get("id"), str):
        raise ForgeError(f"{where} has no such single-select field")
    raw = field.get("options")
    options = tuple(
        BoardOption(str(o["id"]), str(o["name"]), str(o.get("color") or "GRAY"), str(o.get("description") or ""))
        for o in (raw if isinstance(raw, list) else [])
        if isinstance(o, dict)
    )
    return StatusField(project_id, str(field["id"]), options)


async def read_status_field(client: GitHubClient, repo: str, project: ProjectConfig) -> StatusField:
    """The board's Status field with every option's id, colour and description (the daemon's own query)."""
    if project.node_id is not None:
        data = await client.graphql(_Q_PROJECT_BY_ID, {"id": project.node_id, "field": project.status_field})
        raw = data.get("node")
    else:
        owner = project.owner or repo.split("/", 1)[0]
        variables: dict[str, JSON] = {"owner": owner, "number": project.number, "field": project.status_field}
        found = (await client.graphql(_Q_PROJECT, variables)).get("repositoryOwner")
        raw = found.get("projectV2") if isinstance(found, dict) else None
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
        raise NotFound(f"Projects v2 board for {repo} not found ({project.model_dump(exclude_defaults=True)})")
    where = f"board of {repo}: field {project.status_field!r}"
    return _status_field(str(raw["id"]), raw.get("field"), where)


async def set_status_options(client: GitHubClient, field: StatusField, options: list[BoardOption]) -> StatusField:
    """Replace the field's options with ``options`` (existing ones sent with their ids, so cards keep their value)."""
    payload: list[JSON] = [
        {"name": o.name, "color": o.color, "description": o.description, **({"id": o.id} if o.id else {})}
        for o in options
    ]
    data = await client.graphql(_M_SET_OPTIONS, {"field": field.field_id, "options": payload})
    updated = data.get("updateProjectV2Field")
    raw = updated.get("projectV2Field") if isinstance(updated, dict) else None
    return _status_field(field.project_id, raw, "updateProjectV2Field's answer")
