"""Probes shared by ``agentos doctor`` and ``agentos init``: a program's ``--version``, GitHub's REST API,
Telegram's Bot API, and where stored secrets are found. None of them raises for an answer it does not like.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentos.configpath import credential_dirs, systemd_credential_dirs

if TYPE_CHECKING:
    import httpx

__all__ = [
    "GITHUB_API",
    "TELEGRAM_API",
    "VERSION_TIMEOUT_S",
    "Probe",
    "credential_dirs",
    "find_secret",
    "git_version",
    "github_get",
    "github_scopes",
    "probe_version",
    "telegram_call",
]

VERSION_TIMEOUT_S = 10.0
GITHUB_API = "https://api.github.com"
TELEGRAM_API = "https://api.telegram.org"


@dataclass(frozen=True, slots=True)
class Probe:
    """A program found (or not) on PATH, and what ``PROGRAM --version`` said."""

    program: str
    path: str | None
    version: str
    ok: bool


def probe_version(program: str, *, timeout: float = VERSION_TIMEOUT_S, env: Mapping[str, str] | None = None) -> Probe:
    """Find ``program`` and run ``program --version`` with a time limit; never raises."""
    path_var = (env or os.environ).get("PATH") or os.defpath
    path = shutil.which(program, path=path_var) if "/" not in program else program
    if path is None or not (os.path.isfile(path) and os.access(path, os.X_OK)):
        return Probe(program, None, "not found on PATH", False)
    try:
        res = subprocess.run(
            [path, "--version"],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            errors="replace",
        )
    except subprocess.TimeoutExpired:
        return Probe(program, path, f"`{program} --version` did not answer within {timeout:.0f} s", False)
    except OSError as exc:
        return Probe(program, path, f"cannot run: {exc.strerror or exc}", False)
    lines = [ln.strip() for ln in (res.stdout + "\n" + res.stderr).splitlines() if ln.strip()]
    first = lines[0] if lines else "(no output)"
    if res.returncode != 0:
        return Probe(program, path, f"`{program} --version` exited {res.returncode}: {first}", False)
    return Probe(program, path, first, True)


def git_version(text: str) -> tuple[int, ...]:
    match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    return tuple(int(g) for g in match.groups() if g is not None) if match else ()


def github_get(api_url: str, token: str, path: str, *, timeout: float = 10.0) -> httpx.Response:
    """One authenticated GET on the GitHub REST API (raises ``httpx.HTTPError`` when unreachable)."""
    import httpx

    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": "2022-11-28",
        "User-Agent": "agentos-doctor",
    }
    return httpx.get(api_url.rstrip("/") + path, headers=headers, timeout=timeout)


def github_scopes(resp: httpx.Response) -> list[str] | None:
    """The classic token's scopes from ``X-OAuth-Scopes``; None for a fine-grained token (no header)."""
    header = resp.headers.get("x-oauth-scopes")
    if header is None:
        return None
    return [s.strip() for s in header.split(",") if s.strip()]


def telegram_call(
    api_base: str | None, token: str, method: str, params: dict[str, Any] | None = None, *, timeout: float = 10.0
) -> dict[str, Any]:
    """Call a Bot API method; returns the decoded ``{"ok", "result"|"description"}`` (raises when unreachable)."""
    import httpx

    url = f"{(api_base or TELEGRAM_API).rstrip('/')}/bot{token}/{method}"
    resp = httpx.post(url, json=params or {}, timeout=timeout)
    try:
        data = resp.json()
    except ValueError:
        return {"ok": False, "error_code": resp.status_code, "description": resp.text[:200]}
    return data if isinstance(data, dict) else {"ok": False, "description": "unexpected answer"}


def find_secret(
    name: str, env_name: str, env: Mapping[str, str], dirs: list[Path] | None = None
) -> tuple[str | None, str]:
    """A secret and where it came from: ``$ENV``, else the first credential file ``name`` found, searched as the
    daemon searches (:func:`agentos.configpath.credential_dirs` of ``env``).

    ``dirs`` replaces the user's and the system directory (``agentos doctor --credentials-dir``, ``agentos init``'s
    target); systemd's ``$CREDENTIALS_DIRECTORY`` is still searched first.
    """
    if value := (env.get(env_name) or "").strip():
        return value, f"${env_name}"
    searched = credential_dirs(env) if dirs is None else [*systemd_credential_dirs(env), *dirs]
    files = [Path(d) / name for d in searched]
    for file in files:
        try:
            value = file.read_text(encoding="utf-8").strip()
        except OSError:
            continue
        if value:
            return value, str(file)
    return None, ""
