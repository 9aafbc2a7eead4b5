"""A command's arguments checked against its pydantic model: one clear line naming the first bad one.

The model of each command in :data:`agentos.control.commands.TABLE` is built from its :class:`Arg` list on
first use, so ``agentos ctl`` (which reads the table) never imports pydantic. Strict: no coercion, a
string is not a number and ``1`` is not ``true``. The socket and the chat both go through :func:`validate`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from agentos.control.commands import TABLE, Arg, CommandSpec, ControllerPort
from agentos.errors import ControlError

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = ["issue_problem", "model", "run", "validate"]


ISSUE_TITLE_MAX = 256
ISSUE_BODY_MAX = 65_536
"""GitHub's limits (characters)."""
LABEL_MAX = 50
LABELS_MAX = 20
_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:._-")

_PROBLEMS: dict[str, str] = {
    "str": "is required and must be a non-empty string",
    "text": "must be a string",
    "bool": "must be true or false",
    "int": "must be a whole number",
    "issue_number": "must be an issue number ≥ 1",
    "labels": "must be a list of strings",
    "key": "must be 1 to 100 letters, digits or ':._-'",
}


def issue_problem(title: str, body: str, labels: Sequence[str]) -> str | None:
    """What is wrong with an issue to file, in one line, or None: the daemon and the CLI check the same."""
    if not title.strip():
        return "the title must not be empty"
    if len(title) > ISSUE_TITLE_MAX:
        return f"the title has {len(title)} characters; at most {ISSUE_TITLE_MAX}"
    if len(body) > ISSUE_BODY_MAX:
        return f"the body has {len(body)} characters; at most {ISSUE_BODY_MAX}"
    if len(labels) > LABELS_MAX:
        return f"{len(labels)} labels; at most {LABELS_MAX}"
    for label in labels:
        if not label.strip() or len(label) > LABEL_MAX or not label.isprintable():
            return f"label {_short(label, 60)} must be 1 to {LABEL_MAX} printable characters"
    return None


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _problem(arg: Arg) -> str:
    if arg.choices is not None:
        return f"must be one of {', '.join(dict.fromkeys(arg.choices.values()))}"
    if arg.minimum is not None:
        return f"must be a whole number ≥ {arg.minimum}"
    return _PROBLEMS[arg.type]


@functools.cache
def model(name: str) -> type[BaseModel]:
    """The pydantic model of command ``name``'s arguments (built on first use; strict: no coercion)."""
    from typing import Annotated

    from pydantic import AfterValidator, ConfigDict, Field, StrictBool, StrictInt, StrictStr, create_model

    spec = TABLE[name]
    fields: dict[str, Any] = {}
    for arg in spec.args:
        kind: Any
        if arg.type in ("str", "key"):
            kind = Annotated[StrictStr, Field(min_length=1)]
        elif arg.type == "text":
            kind = StrictStr
        elif arg.type == "bool":
            kind = StrictBool
        elif arg.type == "int":
            kind = Annotated[StrictInt, Field(ge=arg.minimum)] if arg.minimum is not None else StrictInt
        elif arg.type == "issue_number":
            kind = Annotated[StrictInt, Field(ge=1, lt=2**31)]
        else:
            kind = list[StrictStr]
        if arg.type == "key":
            kind = Annotated[kind, AfterValidator(_check_key)]
        if arg.choices is not None:
            kind = Annotated[kind, AfterValidator(functools.partial(_choose, arg.choices))]
        if arg.required:
            fields[arg.name] = (kind, ...)
        else:
            fields[arg.name] = (kind | None, arg.default)
    return create_model(f"{name}_args", __config__=ConfigDict(extra="ignore", frozen=True), **fields)


def _check_key(key: str) -> str:
    if len(key) > 100 or not set(key) <= _KEY_CHARS:
        raise ValueError("bad key")
    return key


def _choose(choices: Mapping[str, str], word: str) -> str:
    if word not in choices:
        raise ValueError("not a choice")
    return choices[word]


def validate(spec: CommandSpec, args: Mapping[str, object]) -> dict[str, Any]:
    """``args`` checked against ``spec``: a dict with every argument, or a one-line :class:`ControlError`
    naming the first bad one (``argument 'enabled' must be true or false``)."""
    from pydantic import ValidationError

    try:
        checked = model(spec.name).model_validate(dict(args))
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else "?"
        arg = next((a for a in spec.args if a.name == name), None)
        raise ControlError(f"argument {name!r} {_problem(arg) if arg else 'is not valid'}") from None
    values = {a.name: getattr(checked, a.name) for a in spec.args}
    values = {k: (v if v is not None else _default(spec, k)) for k, v in values.items()}
    if spec.name == "issue_new":
        values["labels"] = list(values["labels"])
        if problem := issue_problem(values["title"], values["body"], values["labels"]):
            raise ControlError(problem)
    return values


def _default(spec: CommandSpec, name: str) -> Any:
    arg = next(a for a in spec.args if a.name == name)
    return arg.default


async def run(spec: CommandSpec, controller: ControllerPort, args: Mapping[str, object]) -> Any:
    """Validate ``args`` and call the controller: what the socket and the chat both do with a request."""
    return await spec.call(controller, validate(spec, args))
