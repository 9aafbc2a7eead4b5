"""``agentos init``, systemd: install the unit (system or ``--user``) with a drop-in for this machine."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rich.markup import escape

from agentos.cli._common import console
from agentos.cli.init_plan import stop

if TYPE_CHECKING:
    from agentos.config import Config

DROP_IN = "10-agentos-init.conf"
HOMES = ("/home", "/root", "/run/user")
"""What the system unit's ProtectHome=yes hides."""
CREDENTIALS = ("github_token", "github_app_key", "telegram_bot_token")
"""The credential files the units load (``LoadCredential=``) and ``config.secret`` reads; init adds the
status page's token (``status_page.token_credential``) when the page binds beyond loopback."""


def shipped_unit(user: bool) -> Path:
    """The unit agentos ships as package data (``agentos/deploy/systemd/``): the same in a wheel and a checkout."""
    from importlib.resources import files

    name = "agentos-user.service" if user else "agentos.service"
    return Path(str(files("agentos.deploy") / "systemd" / name))


def unit_source(user: bool, explicit: str | None) -> Path:
    """The unit file to install: ``--unit-file``, else the shipped unit (the user variant for ``--user``)."""
    return Path(explicit) if explicit else shipped_unit(user)


def agentos_executable() -> str:
    here = Path(sys.argv[0])
    if here.name == "agentos" and here.exists():
        return str(here.absolute())
    beside = Path(sys.executable).parent / "agentos"
    return str(beside) if beside.exists() else (shutil.which("agentos") or "agentos")


def _unit_setting(unit_text: str, key: str) -> str | None:
    for line in unit_text.splitlines():
        if line.startswith(f"{key}="):
            return line.removeprefix(f"{key}=").strip()
    return None


def _exec_start_missing(unit_text: str, home: Path) -> bool:
    """Whether the unit's ExecStart program is an absolute path that does not exist here (``%h`` expanded)."""
    value = _unit_setting(unit_text, "ExecStart")
    words = value.lstrip("-@:+!").split() if value else []
    if not words:
        return False
    program = words[0].replace("%h", str(home))
    return program.startswith("/") and not Path(program).exists()


def _quote(word: str) -> str:
    return f'"{word}"' if any(c.isspace() for c in word) else word


def drop_in(
    *,
    config_path: Path,
    creds: Path,
    exec_start: str | None,
    writable: list[str],
    credentials: tuple[str, ...] = CREDENTIALS,
    user: bool = False,
) -> str:
    """The drop-in with this machine's settings; the unit file itself stays as shipped."""
    lines = [
        "# Written by `agentos init`; running it again rewrites this file. Local settings for agentos.service.",
        "[Service]",
        f"Environment={_quote(f'AGENTOS_CONFIG={config_path}')}",
        "# The tokens init stored (an empty file means: not configured). The empty line resets the unit's list.",
        "LoadCredential=",
    ]
    lines += [f"LoadCredential={_quote(f'{name}:{creds / name}')}" for name in credentials]
    if writable:
        lines.append("# The repositories the daemon fetches from and merges into (ProtectSystem=strict).")
        lines += [f"ReadWritePaths={_quote('-' + path)}" for path in writable]
    if not user and any(Path(p).is_relative_to(top) for p in writable for top in HOMES):
        lines.append("# A repository under /home: ProtectHome=yes would hide it; read-only keeps the rest unwritable.")
        lines.append("ProtectHome=read-only")
    if exec_start:
        lines += ["# The unit's program is not installed here: run this agentos.", "ExecStart="]
        lines.append(f"ExecStart={_quote(exec_start)} run")
    return "\n".join(lines) + "\n"


def ensure_credential_files(creds: Path, credentials: tuple[str, ...] = CREDENTIALS) -> list[Path]:
    """Create each missing credential as an empty 0600 file: LoadCredential= fails the start on a missing one."""
    made = []
    for name in credentials:
        path = creds / name
        if not path.exists():
            creds.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.close(fd)
            made.append(path)
    return made


def install_unit(
    unit_dir: Path,
    source: Path,
    *,
    user: bool,
    config_path: Path,
    creds: Path,
    writable: list[str],
    credentials: tuple[str, ...] = CREDENTIALS,
) -> list[str]:
    """Copy the unit and write its drop-in; returns lines to print. Raises PermissionError when not allowed."""
    from agentos.fsutil import atomic_write_text

    agentos = agentos_executable()
    text = source.read_text(encoding="utf-8")
    target = unit_dir / "agentos.service"
    lines = []
    unit_dir.mkdir(parents=True, exist_ok=True)
    if target.is_file() and target.read_text(encoding="utf-8") == text:
        lines.append(f"unit unchanged: {target}")
    else:
        atomic_write_text(target, text, mode=0o644)
        lines.append(f"installed {target} (from {source})")
    exec_start = agentos if _exec_start_missing(text, Path.home()) else None
    override = drop_in(
        config_path=config_path,
        creds=creds,
        exec_start=exec_start,
        writable=writable,
        credentials=credentials,
        user=user,
    )
    conf = unit_dir / "agentos.service.d" / DROP_IN
    if conf.is_file() and conf.read_text(encoding="utf-8") == override:
        lines.append(f"drop-in unchanged: {conf}")
    else:
        atomic_write_text(conf, override, mode=0o644)
        lines.append(f"wrote {conf}")
    for made in ensure_credential_files(creds, credentials):
        lines.append(f"created {made} empty (not configured; systemd needs the file)")
    lines += service_notes(text, user=user, agentos=exec_start or agentos)
    return lines


def service_notes(unit_text: str, *, user: bool, agentos: str) -> list[str]:
    """What the operator must still do for the unit to run: its user, where agentos lives."""
    import pwd

    notes: list[str] = []
    if user:
        return notes
    account = _unit_setting(unit_text, "User")
    if account:
        try:
            pwd.getpwnam(account)
        except KeyError:
            notes.append(f"note: create the service user: sudo useradd --system --home /var/lib/agentos {account}")
        notes.append(f"note: the service runs as {account}: it needs write access to the repositories listed above")
    if _unit_setting(unit_text, "ProtectHome") == "yes" and agentos.startswith(("/home/", "/root/")):
        notes.append(f"note: ProtectHome=yes hides {agentos}; install agentos under /opt/agentos/venv")
    notes.append("note: model API keys (ANTHROPIC_API_KEY=…) go in /etc/agentos/env, one VAR=value a line, mode 0600")
    return notes


def start_command(user: bool) -> str:
    if user:
        return "systemctl --user daemon-reload && systemctl --user enable --now agentos"
    sudo = "" if os.geteuid() == 0 else "sudo "
    return f"{sudo}systemctl daemon-reload && {sudo}systemctl enable --now agentos"


def writable_paths(config: Config) -> list[str]:
    """Paths outside the unit's StateDirectory the daemon writes: repository clones and a custom state_dir."""
    paths = [str(Path(r.path).expanduser()) for r in config.repos if r.path]
    if config.state_dir != type(config).model_fields["state_dir"].default:
        paths.append(str(Path(config.state_dir).expanduser()))
    return list(dict.fromkeys(paths))


def install_systemd(
    user: bool,
    unit_dir: str | None,
    unit_file: str | None,
    config_path: Path,
    creds: Path,
    writable: list[str],
    extra_credentials: tuple[str, ...] = (),
) -> None:
    target = (
        Path(unit_dir).expanduser()
        if unit_dir
        else (Path.home() / ".config/systemd/user" if user else Path("/etc/systemd/system"))
    )
    source = unit_source(user, unit_file)
    if not source.is_file():
        stop(f"--unit-file {source}: no such file")
    try:
        credentials = tuple(dict.fromkeys((*CREDENTIALS, *extra_credentials)))
        lines = install_unit(
            target,
            source,
            user=user,
            config_path=config_path,
            creds=creds,
            writable=writable,
            credentials=credentials,
        )
        for line in lines:
            console.print(line, markup=False, highlight=False)
    except PermissionError:
        console.print(
            f"[yellow]cannot write {escape(str(target))}[/yellow]; as root: "
            + escape(f"install -m 0644 {source} {target}/agentos.service")
        )
        return
    console.print("start it with:")
    console.print(f"  {start_command(user)}", markup=False, highlight=False)
    if user:
        console.print(
            f"  (and `loginctl enable-linger {os.environ.get('USER', '$USER')}` to keep it running after logout)",
            markup=False,
            highlight=False,
        )
