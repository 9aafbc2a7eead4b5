"""Typer without pydantic on the common path: each command starts about 50 ms sooner.

typer 0.29 coerces every parameter of the command it runs through a pydantic ``TypeAdapter``, and builds
it before looking at the value, so even ``--help`` left out (value None) imports pydantic (30 ms) and
builds schemas (20 ms more). :func:`defer_adapters` makes that build wait until a value needs it. None
need it for a missing value (typer answers None without the adapter), a ``str`` option given a string
or a ``list[str]`` option given strings or none (typer's adapters return them unchanged, as a list).
Every other value gets typer's own adapter, built on first use, so what a command receives is unchanged.

It leans on typer's private ``_TyperParameter.get_runtime_param``; with a typer that lacks it the
function changes nothing and commands start as slowly as before (``tests/unit/test_cli_startup.py``
notices).
"""

from __future__ import annotations

from typing import Any


def defer_adapters() -> bool:
    """Install the deferral once; False when this typer has no such hook (nothing changed)."""
    try:
        from typer import core
        from typer._coercion import RuntimeParam, TypeDescriptor, build_runtime_param
    except ImportError:
        return False
    param_cls: Any = getattr(core, "_TyperParameter", None)
    original = getattr(param_cls, "get_runtime_param", None)
    if original is None or getattr(original, "_agentos_deferred", False):
        return original is not None

    class Deferred(RuntimeParam):
        """Stands in for typer's runtime param until a value needs the real one."""

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            if self.parameter_info.parser is None:
                if self.annotation is str and type(value) is str:
                    return value
                if self.annotation == list[str] and type(value) in (list, tuple) and _strings(value):
                    return list(value)
            descriptor: TypeDescriptor = param.type_descriptor
            param._runtime_param = build_runtime_param(descriptor)
            return param._runtime_param._coerce_value(value, param=param, ctx=ctx)

    def get_runtime_param(self: Any) -> Any:
        if self._runtime_param is None and self.type_descriptor.file_annotation is None:
            self._runtime_param = Deferred(self.type_descriptor.parameter_info, self.type_descriptor.annotation)
        return original(self)

    get_runtime_param._agentos_deferred = True  # type: ignore[attr-defined]
    param_cls.get_runtime_param = get_runtime_param
    return True


def _strings(values: list[Any] | tuple[Any, ...]) -> bool:
    return all(type(v) is str for v in values)
