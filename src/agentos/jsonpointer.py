"""RFC 6901 pointers into a parsed JSON document (``/a/0/b``; ``""`` is the whole document).

Shared by the acceptance checks (a URL's JSON value) and the outcome metrics (a file's or a page's value).
"""

from __future__ import annotations

from typing import Any

__all__ = ["MISSING", "json_at"]

MISSING: Any = object()  # nothing at the pointer (a JSON ``null`` there is ``None``)


def json_at(document: Any, pointer: str) -> Any:
    """The value at ``pointer`` in ``document``; :data:`MISSING` when there is none."""
    value = document
    for raw in pointer.split("/")[1:] if pointer else ():
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return MISSING
    return value
