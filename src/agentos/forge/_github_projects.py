"""GitHub Projects v2 boards: the board a repo uses, the GraphQL that reads and moves its cards.

:class:`~agentos.forge.github.GitHubForge` takes readiness from a board's Status field when a repo has a
:class:`ProjectConfig`, and mirrors each card move onto the running/blocked labels (:data:`_MIRROR`).
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agentos.forge._github_payloads import _GqlItem
from agentos.forge.base import BLOCKED_LABEL, RUNNING_LABEL, BoardStatus


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


_FIELD = "field(name: $field) { ... on ProjectV2SingleSelectField { id options { id name } } }"
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
