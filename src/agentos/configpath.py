"""Where the config file is, without reading it: stdlib only, so a command that merely names the config
(``agentos issue new`` asking a running daemon whether it serves that file) starts without pydantic.

:mod:`agentos.config` re-exports both functions; that is where the rest of the code takes them from.
"""

from __future__ import annotations

import os
from pathlib import Path


def default_paths() -> list[Path]:
    """Where the config is looked for when ``--config`` is not given, in order."""
    paths = []
    if env := os.environ.get("AGENTOS_CONFIG"):
        paths.append(Path(env))
    paths += [
        Path("agentos.yaml"),
        Path("~/.config/agentos/config.yaml").expanduser(),
        Path("/etc/agentos/config.yaml"),
    ]
    return paths


def find_config(explicit: str | Path | None = None) -> Path | None:
    if explicit is not None:
        return Path(explicit)
    for path in default_paths():
        if path.is_file():
            return path
    return None
