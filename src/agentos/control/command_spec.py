"""The shape of an operator command: the types the command table is written in, and the controller it calls.

:data:`agentos.control.commands.TABLE` declares each command once as a :class:`CommandSpec`: its wire name,
its arguments (:class:`Arg`), the :class:`ControllerPort` call, its help, how ``agentos ctl`` and the chat
spell it (:class:`Form`), and how its answer reads (:mod:`agentos.control.replies`). The socket, ``agentos
ctl`` and Telegram read these fields; :mod:`agentos.control.arguments` builds a pydantic model from an
:class:`Arg` list (daemon side).

Like the table, this module imports neither pydantic nor the daemon: ``agentos ctl`` must start fast.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from agentos.control import replies

__all__ = [
    "JSON",
    "Arg",
    "ArgType",
    "CommandSpec",
    "ControllerPort",
    "Form",
]

JSON = Mapping[str, Any]
ArgType = Literal["str", "text", "bool", "int", "issue_number", "labels", "key"]


class ControllerPort(Protocol):
    """The controller as the command table calls it; every method raises ``ControlError`` on bad input."""

    async def status(self) -> JSON: ...
    async def pause(self) -> JSON: ...
    async def resume(self) -> JSON: ...
    async def reload(self) -> JSON: ...
    async def jobs(self) -> Sequence[JSON]: ...
    async def set_job(self, name: str, enabled: bool) -> JSON: ...
    async def run_job(self, name: str) -> JSON: ...
    async def poke(self, job: str = "dispatch") -> JSON: ...
    async def repos(self) -> Sequence[JSON]: ...
    async def set_repo(self, name: str, enabled: bool) -> JSON: ...
    async def set_repo_mode(self, name: str, mode: str) -> JSON: ...
    async def set_repo_cadence(self, name: str, days: int) -> JSON: ...
    async def tasks(self, repo: str | None = None, status: str | None = None) -> Sequence[JSON]: ...
    async def task(self, task_id: str) -> JSON: ...
    async def issue(self, task_id: str) -> JSON: ...
    async def retry(self, task_id: str, agent: str | None = None) -> JSON: ...
    async def cancel(self, task_id: str) -> JSON: ...
    async def approve(self, ref: str) -> JSON: ...
    async def reject(self, ref: str) -> JSON: ...
    async def agents(self) -> Sequence[JSON]: ...
    async def resume_agent(self, name: str) -> JSON: ...
    async def issue_new(
        self, *, repo: str | None, title: str, body: str, labels: list[str], ready: bool, key: str, config: str | None
    ) -> JSON: ...
    async def issue_ready(self, repo: str | None, number: int, config: str | None) -> JSON: ...
    async def accept(self, ref: str) -> JSON: ...
    async def plan_show(self, repo: str | None) -> Sequence[JSON]: ...
    async def plan_approve(self, repo: str | None) -> JSON: ...
    async def plan_skip(self, repo: str | None) -> JSON: ...
    async def issue_make_ready(self, ref: str) -> JSON: ...
    async def issue_dismiss(self, ref: str) -> JSON: ...
    async def incidents(self) -> Sequence[JSON]: ...
    async def incident_ack(self, signature: str, by: str) -> JSON: ...
    async def incident_resolve(self, signature: str, by: str) -> JSON: ...
    async def close(self, task_id: str, wontfix: bool = False, reason: str = "") -> JSON: ...


@dataclass(frozen=True, slots=True)
class Arg:
    """One argument of a command.

    ``type`` says what the socket accepts: ``str`` a non-empty string, ``text`` any string, ``bool``,
    ``int`` a whole number, ``issue_number`` 1 … 2³¹-1, ``labels`` a list of strings, ``key`` an
    idempotency key. ``required=False`` lets it be absent or null (then ``default``). ``choices`` maps each
    accepted word to the value passed on (``dispatcher`` → ``dispatcher_only``). ``option`` makes it a
    ``--name`` option of ``agentos ctl`` instead of a positional argument. ``pick`` is how a chat tells
    which free word is this optional argument (``/tasks blocked calc``): the value, or None for not this one.
    """

    name: str
    type: ArgType
    help: str
    required: bool = True
    default: object = None
    metavar: str | None = None
    choices: Mapping[str, str] | None = None
    minimum: int | None = None
    option: bool = False
    pick: Callable[[str], str | None] | None = None

    @property
    def word(self) -> str:
        """How a usage line shows it: ``NAME``, ``full|dispatcher``, ``[REPO]``."""
        word = self.metavar or self.name.upper()
        return word if self.required else f"[{word}]"


@dataclass(frozen=True, slots=True)
class Form:
    """How a surface spells a command: its words (``("job", "off")``) and the arguments they fix."""

    words: tuple[str, ...]
    fixed: Mapping[str, object] = field(default_factory=dict)
    help: str | None = None
    """This form's help when it differs from the command's (``job on`` vs ``job off``)."""


Call = Callable[[ControllerPort, JSON], Awaitable[Any]]
ChatReply = Callable[[JSON, Any], str]
TerminalView = Callable[[Any], list[replies.View]]


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """One operator command: the single place its name, arguments, call, help and replies are declared."""

    name: str
    help: str
    call: Call
    args: tuple[Arg, ...] = ()
    ctl: tuple[Form, ...] = ()
    chat: tuple[Form, ...] = ()
    chat_reply: ChatReply | None = None
    terminal: TerminalView | None = None
    """How ``agentos ctl`` shows the result; None: key/value lines for a mapping, JSON otherwise."""
    timeout_s: float = 30.0
    """How long ``agentos ctl`` waits for the answer."""
    check: Callable[[JSON], str | None] | None = None
    """What is wrong with the arguments taken together, in one line, or None (after each passed its own check)."""

    def positional(self, form: Form, *, options: bool = False) -> list[Arg]:
        """The arguments a form takes as words after its own: those it does not fix, and with ``options``
        (a chat has no ``--options``) the ``--options`` too."""
        return [a for a in self.args if a.name not in form.fixed and (options or not a.option)]
