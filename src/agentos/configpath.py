"""Where the config file and the stored secrets are, without reading them: stdlib only, so a command that merely
names the config (``agentos issue new`` asking a running daemon whether it serves that file) starts without
pydantic.

:mod:`agentos.config` re-exports these functions; that is where the rest of the code takes them from.
:func:`credential_dirs` is the one search order for credential files: the daemon (``config.secret``) and
``agentos doctor`` (``cli.probes.find_secret``) both use it, so doctor checks the token the daemon runs with.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

SYSTEM_CREDENTIALS_DIR = Path("/etc/agentos/credentials")
"""Where ``agentos init`` stores tokens for a system install."""


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


def systemd_credential_dirs(env: Mapping[str, str] | None = None) -> list[Path]:
    """systemd's ``$CREDENTIALS_DIRECTORY`` (``LoadCredential=``), each of a colon-separated list."""
    source = os.environ if env is None else env
    return [Path(p) for p in source.get("CREDENTIALS_DIRECTORY", "").split(":") if p]


def credential_dirs(env: Mapping[str, str] | None = None) -> list[Path]:
    """Where credential files are looked for, in order: systemd's (:func:`systemd_credential_dirs` of ``env``,
    the process's environment by default), then the user's ``~/.config/agentos/credentials``, then
    :data:`SYSTEM_CREDENTIALS_DIR`. The first file found wins."""
    return [*systemd_credential_dirs(env), Path("~/.config/agentos/credentials").expanduser(), SYSTEM_CREDENTIALS_DIR]
