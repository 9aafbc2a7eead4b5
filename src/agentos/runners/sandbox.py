"""The bubblewrap sandbox every agent attempt, hook and test command runs in (``sandbox.mode: bubblewrap``).

:func:`wrap` turns an argv into a ``bwrap`` command line from a :class:`SandboxSpec`. Inside:

* **namespaces**: new user, pid, ipc, uts, network and (where the kernel has it) cgroup namespaces; the program
  runs as uid/gid 1000 with no capabilities, ``no_new_privs`` (bwrap always sets it), in a new session
  (``TIOCSTI`` cannot reach the daemon's terminal), and dies with its parent. It sees only its own processes:
  the daemon cannot be signalled or traced. The network namespace has a loopback and nothing else; the egress
  proxy's socket (:attr:`SandboxSpec.proxy_socket`) is the only way out when one is given.
* **filesystem**: an empty root with, read-only, the system folders (``/usr``, ``/bin``, ``/sbin``, ``/lib*``,
  ``/etc`` with its secrets masked: :data:`MASKED_FILES`, :data:`MASKED_DIRS`), then the spec's
  :attr:`~SandboxSpec.ro_paths` (the program and its install folder, a ``command`` agent's absolute argv paths,
  ``agents.<name>.ro_paths``). A fresh ``/proc`` and ``/dev``; a private ``/tmp`` (tmpfs of ``tmp_mb``) and a
  private ``HOME`` at :data:`SANDBOX_HOME` (a host folder of the attempt, or a tmpfs). Then the
  :attr:`~SandboxSpec.hidden` folders (the state directory, ``$CREDENTIALS_DIRECTORY``) are covered by empty
  tmpfs, so no read-only path can reveal them, and last the read-write worktree, the git paths its commits need
  (the shared clone read-only with the run's private view of its refs and objects over it:
  :mod:`agentos.runners.git_view`) and the run files (the prompt) are bound back in; the root itself is then made
  read-only (the folders bwrap made for those mount points, e.g. the state directory's skeleton, take no writes).
  Nothing else exists: not the operator's home, ``/root``, other worktrees, the journal, the control socket
  (under ``/run`` or ``/tmp``).

Paths keep their host names inside, so an argv, a prompt file or a worktree path means the same in both.
:func:`probe` says whether bwrap works here, or the one fix that makes it work.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

from agentos.runners.bridge import BRIDGE_PATH, bridge_argv
from agentos.runners.git_view import GitView

__all__ = [
    "MASKED_DIRS",
    "MASKED_FILES",
    "SANDBOX_HOME",
    "SYSTEM_PATHS",
    "SandboxSpec",
    "SandboxUnavailable",
    "install_folder",
    "last_problem",
    "prepare",
    "probe",
    "usable",
    "venv_paths",
    "wrap",
]

log = structlog.get_logger(__name__)

SANDBOX_HOME = Path("/home/sandbox")
"""``HOME`` inside every sandbox."""
SANDBOX_UID = 1000
PROXY_SOCKET_INSIDE = Path("/run/agentos/egress.sock")
PROXY_PORT = 3128
"""Where the egress bridge listens inside the sandbox (``HTTP(S)_PROXY=http://127.0.0.1:3128``)."""

SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
"""Bound read-only (a symlink, as on merged-/usr systems, is recreated as the same symlink)."""
MASKED_FILES = ("/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-", "/etc/sudoers", "/etc/.pwd.lock")
"""Covered by an empty file: when the daemon runs as root, root's files look like the sandbox user's own."""
MASKED_DIRS = (
    "/etc/ssh",
    "/etc/ssl/private",
    "/etc/sudoers.d",
    "/etc/credstore",
    "/etc/credstore.encrypted",
    "/etc/agentos",
    "/etc/systemd",
)
"""Covered by an empty folder: host keys, TLS keys, systemd credentials, the operator's units and config."""

INSTALL_HINT = "apt-get install bubblewrap"
GIT_NAME, GIT_EMAIL = "agentos", "agentos@localhost"
"""git's identity inside a sandbox (the daemon's own commits use the same, :data:`agentos.gitutil.GIT_IDENTITY`)."""


class SandboxUnavailable(RuntimeError):
    """``sandbox.mode: bubblewrap`` and bwrap cannot run here; the message is the one line that names the fix."""


@dataclass(frozen=True)
class SandboxSpec:
    """What one sandboxed program may see. Paths are host paths; inside they keep the same names."""

    worktree: Path
    """Read-write, and the working directory."""
    rw_paths: tuple[Path, ...] = ()
    """More read-write folders (the git admin folder, objects and refs a commit in the worktree writes)."""
    ro_paths: tuple[Path, ...] = ()
    """Read-only binds, made before :attr:`hidden` is covered (a path under a hidden folder stays invisible)."""
    inner_ro_paths: tuple[Path, ...] = ()
    """Read-only binds made after :attr:`hidden` is covered (the prompt file, the shared clone's git folder)."""
    hidden: tuple[Path, ...] = ()
    """Covered by an empty tmpfs where a read-only path would show them (the state directory,
    ``$CREDENTIALS_DIRECTORY``); elsewhere they are simply not there."""
    home: Path | None = None
    """A host folder bound read-write at :data:`SANDBOX_HOME`; ``None``: a tmpfs of ``tmp_mb``."""
    home_template: Path | None = None
    """Copied into :attr:`home` by :func:`prepare` (a CLI's login, ``agents.<name>.home``)."""
    tmp_mb: int = 1024
    proxy_socket: Path | None = None
    """The egress proxy's unix socket: bound at :data:`PROXY_SOCKET_INSIDE`, ``HTTP(S)_PROXY`` set to the bridge."""
    memory_mb: int | None = None
    """The cgroup memory limit of everything the run starts (:mod:`agentos.runners.cgroups`); ``None``: none."""
    max_processes: int | None = None
    cpus: float | None = None
    """CPU time as a number of cores (a cgroup quota); ``None``: no CPU limit."""
    home_setup: Callable[[Path], None] | None = None
    """Called by :func:`prepare` with :attr:`home` after the template is copied (the CLI's quiet settings)."""


def _bwrap() -> str:
    return shutil.which("bwrap") or "/usr/bin/bwrap"


def _system_binds() -> list[str]:
    args: list[str] = []
    for name in SYSTEM_PATHS:
        if os.path.islink(name):
            args += ["--symlink", os.readlink(name), name]
        elif os.path.isdir(name):
            args += ["--ro-bind", name, name]
    for name in MASKED_FILES:
        if os.path.isfile(name):
            args += ["--ro-bind", "/dev/null", name]
    for name in MASKED_DIRS:
        if os.path.isdir(name):
            args += ["--tmpfs", name, "--remount-ro", name]
    return args


def _unique(paths: Iterable[Path]) -> list[Path]:
    seen: dict[str, Path] = {}
    for path in paths:
        seen.setdefault(os.path.normpath(os.path.abspath(path)), path)
    return sorted((Path(p) for p in seen), key=lambda p: len(p.parts))  # parents before children


def wrap(argv: Sequence[str], spec: SandboxSpec, view: GitView | None = None) -> list[str]:
    """The ``bwrap`` command line that runs ``argv`` in the sandbox ``spec`` describes (see the module doc), with
    ``view`` (:mod:`agentos.runners.git_view`) laid over the worktree's shared clone.

    Read-only paths that do not exist are skipped (a bwrap bind of a missing path fails the whole start)."""
    size = str(spec.tmp_mb * 1024 * 1024)
    args = [
        _bwrap(),
        "--unshare-user",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-net",
        "--unshare-cgroup-try",
        "--uid", str(SANDBOX_UID),
        "--gid", str(SANDBOX_UID),
        "--hostname", "agentos-sandbox",
        "--die-with-parent",
        "--new-session",
        "--cap-drop", "ALL",
        *_system_binds(),
        "--proc", "/proc",
        "--dev", "/dev",
        "--size", size, "--tmpfs", "/tmp",
    ]  # fmt: skip
    if spec.home is not None:
        args += ["--bind", str(spec.home), str(SANDBOX_HOME)]
    else:  # no folder to hold a .gitconfig: git's identity comes from the environment
        args += ["--size", size, "--tmpfs", str(SANDBOX_HOME)]
        for role in ("AUTHOR", "COMMITTER"):
            args += ["--setenv", f"GIT_{role}_NAME", GIT_NAME, "--setenv", f"GIT_{role}_EMAIL", GIT_EMAIL]
    bound: list[Path] = []
    for path in _unique(spec.ro_paths):
        if os.path.lexists(path) and not any(p in path.parents for p in bound):  # a parent shows it already
            args += ["--ro-bind", str(path), str(path)]
            bound.append(path)
    shown = [Path(os.path.abspath(p)) for p in spec.ro_paths]
    for path in _unique(spec.hidden):  # only under a read-only path: elsewhere it simply does not exist
        if any(path == p or p in path.parents for p in shown):
            args += ["--tmpfs", str(path)]
    for path in _unique(spec.inner_ro_paths):
        if os.path.lexists(path):
            args += ["--ro-bind", str(path), str(path)]
    args += ["--bind", str(spec.worktree), str(spec.worktree)]
    for path in _unique(spec.rw_paths):
        if os.path.exists(path):
            args += ["--bind", str(path), str(path)]
    if view is not None:
        args += view.binds()
    args += ["--setenv", "HOME", str(SANDBOX_HOME), "--setenv", "TMPDIR", "/tmp"]
    args += ["--setenv", "USER", "sandbox", "--setenv", "LOGNAME", "sandbox"]
    if spec.proxy_socket is not None:
        proxy = f"http://127.0.0.1:{PROXY_PORT}"
        args += ["--dir", str(PROXY_SOCKET_INSIDE.parent)]
        args += ["--bind", str(spec.proxy_socket), str(PROXY_SOCKET_INSIDE)]
        args += ["--ro-bind", BRIDGE_PATH, BRIDGE_PATH]
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
            args += ["--setenv", name, proxy]
        args += ["--setenv", "NO_PROXY", "localhost,127.0.0.1,::1", "--setenv", "no_proxy", "localhost,127.0.0.1,::1"]
        argv = [*_bridge_argv(), *argv]
    args += ["--remount-ro", "/"]  # the root's own tmpfs (the mount points' parents): nothing to write there
    args += ["--chdir", str(spec.worktree), "--", *argv]
    return args


def _bridge_argv() -> list[str]:
    """The egress bridge's argv prefix (:func:`agentos.runners.bridge.bridge_argv`): inside the sandbox it listens
    on ``127.0.0.1:PROXY_PORT``, relays to the proxy's socket, then execs the rest (:data:`BRIDGE_PATH` is bound
    read-only by :func:`wrap`)."""
    return bridge_argv(str(PROXY_SOCKET_INSIDE), PROXY_PORT)


def prepare(spec: SandboxSpec) -> None:
    """Create the attempt's host ``HOME`` (mode 0700), copy :attr:`SandboxSpec.home_template` into it, and give
    git an identity there when the template has no ``.gitconfig`` (the operator's own is not visible). Missing
    read-write folders are created (a fresh clone has no ``logs/`` yet, and its parent is read-only inside)."""
    for path in spec.rw_paths:
        path.mkdir(parents=True, exist_ok=True)
    if spec.home is None:
        return
    spec.home.mkdir(parents=True, exist_ok=True, mode=0o700)
    if spec.home_template is not None and spec.home_template.is_dir():
        shutil.copytree(spec.home_template, spec.home, symlinks=True, dirs_exist_ok=True)
    if spec.home_setup is not None:
        spec.home_setup(spec.home)
    gitconfig = spec.home / ".gitconfig"
    if not gitconfig.exists():
        gitconfig.write_text(f"[user]\n\tname = {GIT_NAME}\n\temail = {GIT_EMAIL}\n", encoding="utf-8")


def install_folder(program: Path) -> Path:
    """The folder a program is installed in, to bind read-only with it: a Node CLI's install prefix (the folder
    holding ``lib/node_modules`` or ``node_modules``, with ``bin/node`` for nvm-style installs), a Python
    virtualenv's root, else the folder of the resolved file. Never ``/`` or a folder holding the operator's
    home: then the resolved file alone."""
    real = Path(os.path.realpath(program))
    if "node_modules" in real.parts:
        prefix = Path(*real.parts[: real.parts.index("node_modules")])
        folder = prefix.parent if prefix.name == "lib" else prefix
    elif (program.parent.parent / "pyvenv.cfg").is_file():
        folder = program.parent.parent
    else:
        folder = real.parent
    home = Path(os.path.expanduser("~"))
    if folder == Path("/") or folder == home or folder in home.parents:
        return real
    return folder


def venv_paths(venv: Path) -> list[Path]:
    """A Python virtualenv and the installation its interpreter links to (``home =`` in ``pyvenv.cfg``, e.g.
    a pyenv version under the operator's home): both are needed for the venv's ``python`` to start."""
    paths = [venv]
    try:
        lines = (venv / "pyvenv.cfg").read_text(encoding="utf-8").splitlines()
    except OSError:
        return paths
    for line in lines:
        key, _, value = line.partition("=")
        if key.strip() == "home" and value.strip():
            paths.append(Path(os.path.realpath(value.strip())).parent)
    return paths


# ---------------------------------------------------------------- is bwrap usable here


_usable: set[str] = set()  # the bwrap binaries that started a sandbox once
_last_problem: list[str] = []  # what the last failed usable() said (cleared when one succeeds)


def probe() -> str | None:
    """``None`` when bwrap can start a sandbox here, else one line naming the fix."""
    if shutil.which("bwrap") is None:
        return f"bubblewrap is not installed: {INSTALL_HINT}"
    with tempfile.TemporaryDirectory(prefix="agentos-probe-") as tmp:
        argv = wrap(["/bin/true"], SandboxSpec(worktree=Path(tmp), tmp_mb=1))
        try:
            res = subprocess.run(argv, capture_output=True, text=True, timeout=30, env={"PATH": os.defpath})
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"bubblewrap cannot start a sandbox here: {exc}"
    if res.returncode == 0:
        return None
    error = (res.stderr.strip().splitlines() or [f"exit {res.returncode}"])[-1]
    if any(word in error.lower() for word in ("namespace", "uid map", "operation not permitted", "permission")):
        return (
            f"bubblewrap cannot create user namespaces ({error}): enable them (sysctl "
            "kernel.unprivileged_userns_clone=1, user.max_user_namespaces>0) and allow them in the systemd unit "
            "(no RestrictNamespaces=/PrivateUsers= that forbids them), or set sandbox.mode: off"
        )
    return f"bubblewrap cannot start a sandbox here ({error}): {INSTALL_HINT} or set sandbox.mode: off"


def usable() -> str | None:
    """:func:`probe`, remembered once it succeeded (a failure is probed again: the operator may fix it)."""
    found = shutil.which("bwrap")
    if found in _usable:
        return None
    problem = probe()
    _last_problem.clear()
    if problem is None and found is not None:
        _usable.add(found)
    elif problem is not None:
        _last_problem.append(problem)
        log.error("sandbox_unavailable", problem=problem)
    return problem


def last_problem() -> str | None:
    """What the last :func:`usable` found wrong (no probe: cheap enough for every status request), else None."""
    return _last_problem[-1] if _last_problem else None
