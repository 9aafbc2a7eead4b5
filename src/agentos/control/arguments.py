"""A command's arguments checked against its pydantic model: one clear line naming the first bad one.

The model of each command in :data:`agentos.control.commands.TABLE` is built from its :class:`Arg` list on
first use, so ``agentos ctl`` (which reads the table) never imports pydantic. Strict: no coercion, a
string is not a number and ``1`` is not ``true``. The socket and the chat both go through :func:`validate`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from agentos.control.command_spec import Arg, CommandSpec, ControllerPort
from agentos.control.commands import TABLE
from agentos.errors import ControlError

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = ["model", "run", "validate"]


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
    return create_model(f"{name}_args", __config__=ConfigDict(extra="ignore"), **fields)


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
    values: dict[str, Any] = {}
    for arg in spec.args:
        value: Any = getattr(checked, arg.name)
        value = arg.default if value is None else value
        values[arg.name] = list(value) if arg.type == "labels" else value
    if spec.check is not None and (problem := spec.check(values)):
        raise ControlError(problem)
    return values


async def run(spec: CommandSpec, controller: ControllerPort, args: Mapping[str, object]) -> Any:
    """Validate ``args`` and call the controller: what the socket and the chat both do with a request."""
    return await spec.call(controller, validate(spec, args))
