"""The narrow ports the daemon's parts are built with: each part takes the few it uses, in its constructor.

::

    Clock        now()                                   the injectable time
    Journal      commit(events, tasks) · record(...)     every change written (fsynced) before it is acted on
    Wake         wake("dispatch")                        run a job now (the scheduler; a list in tests)
    Notify       notify(sev, key, text, actions)         outbound notices carrying *domain* actions
    Workspaces   workspace(repo)                         the one registry of per-repo clones
    Settings     config · repo(name) · repo_enabled()    the live configuration (a reload replaces it)
    ConfigFile   Settings + config_path · replace_config  the file it was read from; edits and reloads swap it

The daemon builds the real ones (``state_writer.StateWriter``, the scheduler, ``Notifier``, the workspace
registry); ``agentos.testing`` holds in-memory versions. Only the Telegram adapter turns an :class:`Action`
into a button: the core never imports the chat layer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from agentos.config import Config, RepoConfig
    from agentos.graph import Event, Task
    from agentos.workspace import Workspace

__all__ = [
    "Action",
    "ActionKind",
    "Clock",
    "ConfigFile",
    "Journal",
    "Notify",
    "Settings",
    "Severity",
    "Wake",
    "Workspaces",
]

Severity = Literal[1, 2, 3]
"""1: act now (escalations, state-write failures) · 2: soon (pauses, wedged PRs) · 3: the daily digest."""

ActionKind = Literal[
    "retry",
    "cancel",
    "approve",
    "reject",
    "show",
    "accept",
    "plan_approve",
    "plan_skip",
    "issue_make_ready",
    "issue_dismiss",
    "wontfix",
]


@dataclass(frozen=True, slots=True)
class Action:
    """Something the operator can do about a notice: retry/cancel a task, approve/reject a PR, open an issue.

    ``ref`` is a task id (retry, cancel, show, wontfix: close it as won't fix), ``repo#PR`` (approve, reject),
    ``repo#issue`` (accept: an operator signs off a task's acceptance checks; issue_make_ready, issue_dismiss) or a
    repo (plan_approve, plan_skip); ``url`` is the issue's web
    address when the forge has one (``show`` then opens it instead of asking the bot for the text).
    """

    kind: ActionKind
    ref: str
    label: str = ""
    url: str = ""


class Clock(Protocol):
    def __call__(self) -> datetime: ...


class Journal(Protocol):
    """The state's one writer: a change is journalled (fsynced) before anything is done outside."""

    def commit(self, events: Iterable[Event], tasks: Iterable[Task] = ()) -> None: ...

    def record(self, type_: str, task: str | None = None, **data: Any) -> None: ...

    def event(self, type_: str, task: str | None = None, **data: Any) -> Event: ...

    def save_state(self) -> None: ...

    @property
    def held(self) -> str | None:
        """Why state writes are held (the disk is full), or None when they work."""
        ...


class Wake(Protocol):
    """Run a job now (coalesced with a run in progress)."""

    def __call__(self, job: str) -> None: ...


class Notify(Protocol):
    def notify(self, severity: Severity, key: str, text: str, actions: Sequence[Action] = ()) -> bool: ...


class Workspaces(Protocol):
    def workspace(self, repo: RepoConfig) -> Workspace: ...


class Settings(Protocol):
    """The live configuration and the operator's switches over it (a reload replaces ``config``)."""

    @property
    def config(self) -> Config: ...

    def repo(self, name: str) -> RepoConfig: ...

    def repo_enabled(self, name: str) -> bool: ...


class ConfigFile(Settings, Protocol):
    """The live configuration and the file it was read from (None: the daemon runs without one).

    ``replace_config`` swaps in a configuration read afresh (a reload, an operator's ``repo mode`` edit).
    """

    @property
    def config_path(self) -> Path | None: ...

    def replace_config(self, config: Config) -> None: ...
