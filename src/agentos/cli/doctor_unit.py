"""``agentos doctor``: what the installed system unit lets the daemon see of each repository.

The shipped unit mounts the whole file system read-only (``ProtectSystem=strict``) but for its state, the
paths in ``ReadWritePaths=`` and, with ``ProtectHome=yes``, hides /home, /root and /run/user. A repository
the unit cannot write fails every attempt at ``git push`` ("remote unpack failed"); ``agentos init`` writes
the drop-in that prevents it, and this check says when one is missing.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from agentos.cli.doctor import Check

UNIT = "agentos.service"
PROPERTIES = ("LoadState", "ProtectSystem", "ProtectHome", "ReadWritePaths")
HIDDEN_BY_PROTECT_HOME = (Path("/home"), Path("/root"), Path("/run/user"))
TIMEOUT_S = 10.0


def unit_properties() -> dict[str, str] | None:
    """The system unit's sandbox settings as systemd has them (drop-ins included), or None with no such unit."""
    systemctl = shutil.which("systemctl")
    if systemctl is None:
        return None
    try:
        res = subprocess.run(
            [systemctl, "show", UNIT, "-p", ",".join(PROPERTIES)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    props = dict(line.split("=", 1) for line in res.stdout.splitlines() if "=" in line)
    return props if res.returncode == 0 and props.get("LoadState") == "loaded" else None


def _under(path: Path, tops: list[Path] | tuple[Path, ...]) -> bool:
    return any(path == top or path.is_relative_to(top) for top in tops)


def check_unit_view(repos: list[tuple[str, Path]], props: dict[str, str]) -> list[Check]:
    """One check per repository: can the daemon, inside the unit's sandbox, write it?"""
    writable = [Path(word.lstrip("-+")) for word in props.get("ReadWritePaths", "").split()]
    checks = []
    for name, path in repos:
        where = f"repo:{name}:unit"
        if props.get("ProtectHome") in ("yes", "tmpfs") and _under(path, HIDDEN_BY_PROTECT_HOME):
            fix = "run `agentos init` again (its drop-in sets ProtectHome=read-only), or move the repository to /srv"
            checks.append(Check(where, "error", f"{path} is hidden from the service (ProtectHome=yes)", fix))
        elif props.get("ProtectSystem") == "strict" and not _under(path, writable):
            fix = f"run `agentos init` again (its drop-in lists the repositories), or add ReadWritePaths=-{path}"
            checks.append(Check(where, "error", f"{path} is read-only to the service (ProtectSystem=strict)", fix))
        else:
            checks.append(Check(where, "ok", f"the unit lets the service write {path}"))
    return checks
