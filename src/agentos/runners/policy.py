"""The sandbox policy: what an agent attempt, a hook or a test command may see (:class:`SandboxSpec` builders).

* An **agent attempt** (:func:`agent_spec`): its worktree read-write, with its own admin folder in the shared
  clone read-write and the rest of the clone read-only (a commit's refs and objects go to a private view, taken
  back for its branch only after the run: :mod:`agentos.runners.git_view`); its prompt file read-only; a private
  ``HOME`` on disk in its run folder (``<run>/home``, seeded from ``agents.<name>.home``) and a private tmpfs
  ``/tmp``; read-only its program and that program's
  install folder, every absolute path in its argv, ``agents.<name>.ro_paths``. Hidden: the state directory and
  ``$CREDENTIALS_DIRECTORY``. Limits: ``sandbox.memory_mb`` and ``sandbox.max_processes``.
* A **hook or test command** (:func:`command_spec`): the same worktree and git paths, a tmpfs ``HOME``, and
  read-only the Python environment the daemon runs in (``$VIRTUAL_ENV``, else the daemon's own virtualenv: a
  repo's ``make test`` finds the interpreter the operator tested with). Same limits.

A read-only path is never ``/`` or a folder that holds the operator's home (it would show everything); such a
path is skipped with a warning.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path

import structlog

import agentos
from agentos.agents.quiet_home import quiet_home
from agentos.config import AgentConfig, SandboxConfig
from agentos.runners import cgroups
from agentos.runners.sandbox import SandboxSpec, install_folder, last_problem, usable, venv_paths

__all__ = ["OFF_LINE", "agent_spec", "announce", "command_spec", "describe", "git_paths"]

log = structlog.get_logger(__name__)


def git_paths(worktree: Path) -> tuple[tuple[Path, ...], tuple[Path, ...]]:
    """``(read_write, read_only)``: what git in a linked ``worktree`` needs of the shared clone: its admin folder
    (index, HEAD) read-write, the clone read-only; a commit's objects, refs and reflogs go to the run's private
    view of them (:mod:`agentos.runners.git_view`). A worktree with a ``.git`` folder of its own needs nothing."""
    dotgit = worktree / ".git"
    try:
        text = dotgit.read_text(encoding="utf-8").strip() if dotgit.is_file() else ""
    except OSError:
        return (), ()
    if not text.startswith("gitdir:"):
        return (), ()
    admin = Path(text.removeprefix("gitdir:").strip())
    admin = admin if admin.is_absolute() else (worktree / admin)
    try:
        common_rel = (admin / "commondir").read_text(encoding="utf-8").strip()
    except OSError:
        common_rel = "../.."
    common = Path(os.path.normpath(admin / common_rel))
    return (admin,), (common,)


def _safe(paths: Iterable[Path]) -> list[Path]:
    home = Path(os.path.expanduser("~"))
    kept = []
    for path in paths:
        path = Path(os.path.normpath(path))
        if path == Path("/") or path == home or path in home.parents:
            log.warning("sandbox_path_refused", path=str(path), reason="would show / or the operator's home")
            continue
        kept.append(path)
    return kept


def _bridge_paths(proxy_socket: Path | None) -> list[Path]:
    """With an egress proxy, the bridge runs inside the sandbox: it needs agentos and the daemon's Python."""
    if proxy_socket is None:
        return []
    return [Path(agentos.__file__).parent, *venv_paths(Path(sys.prefix)), Path(sys.base_prefix)]


def _hidden(state_dir: Path, env: Mapping[str, str]) -> tuple[Path, ...]:
    hidden = [state_dir]
    if creds := env.get("CREDENTIALS_DIRECTORY"):
        hidden.append(Path(creds))
    return tuple(hidden)


def agent_spec(
    sandbox: SandboxConfig,
    agent: AgentConfig,
    *,
    argv: Sequence[str],
    worktree: Path,
    run_dir: Path,
    prompt_file: Path,
    state_dir: Path,
    env: Mapping[str, str] | None = None,
    proxy_socket: Path | None = None,
) -> SandboxSpec | None:
    """The sandbox of one agent attempt (see the module doc), ``None`` with ``mode: off``; ``env`` is the
    daemon's (for ``$CREDENTIALS_DIRECTORY``), :data:`os.environ` by default."""
    if sandbox.mode != "bubblewrap":
        return None
    program = Path(argv[0])
    folder = install_folder(program)
    ro = [program, *(venv_paths(folder) if (folder / "pyvenv.cfg").is_file() else [folder])]
    ro += [Path(arg) for arg in argv[1:] if os.path.isabs(arg) and os.path.exists(arg)]
    ro += [Path(os.path.expanduser(p)) for p in agent.ro_paths]
    ro += _bridge_paths(proxy_socket)
    rw, clone = git_paths(worktree)
    return SandboxSpec(
        worktree=worktree,
        rw_paths=rw,
        ro_paths=tuple(_safe(ro)),
        inner_ro_paths=(prompt_file, *clone),
        hidden=_hidden(state_dir, os.environ if env is None else env),
        home=run_dir / "home",
        home_template=Path(os.path.expanduser(agent.home)) if agent.home else None,
        home_setup=partial(quiet_home, agent.kind),
        proxy_socket=proxy_socket,
        tmp_mb=sandbox.tmp_mb,
        memory_mb=sandbox.memory_mb,
        max_processes=sandbox.max_processes,
        cpus=sandbox.cpus,
    )


def command_spec(
    sandbox: SandboxConfig | None,
    worktree: Path,
    state_dir: Path,
    env: Mapping[str, str] | None = None,
    proxy_socket: Path | None = None,
) -> SandboxSpec | None:
    """The sandbox of a hook or the test command in ``worktree`` (``None`` without a config or with ``mode:
    off``); ``state_dir`` is hidden; ``env`` is the daemon's environment; ``proxy_socket`` the egress proxy's
    socket when ``repos[].test_allow_hosts`` lets the tests out."""
    if sandbox is None or sandbox.mode != "bubblewrap":
        return None
    env = os.environ if env is None else env
    venv = env.get("VIRTUAL_ENV") or (sys.prefix if sys.prefix != sys.base_prefix else None)
    ro = [*(venv_paths(Path(venv)) if venv else []), *_bridge_paths(proxy_socket)]
    rw, clone = git_paths(worktree)
    return SandboxSpec(
        worktree=worktree,
        rw_paths=rw,
        ro_paths=tuple(_safe(ro)),
        inner_ro_paths=clone,
        hidden=_hidden(state_dir, env),
        proxy_socket=proxy_socket,
        tmp_mb=sandbox.tmp_mb,
        memory_mb=sandbox.memory_mb,
        max_processes=sandbox.max_processes,
        cpus=sandbox.cpus,
    )


OFF_LINE = "off: agents, hooks and tests run unconfined, as the daemon's user"


def describe(sandbox: SandboxConfig) -> str:
    """How attempts run, for ``ctl status`` and the status page: ``bubblewrap``, ``bubblewrap, unusable: <the
    fix>`` (no attempt starts), or :data:`OFF_LINE`."""
    if sandbox.mode == "off":
        return OFF_LINE
    problem = last_problem()
    return f"bubblewrap, unusable: {problem}" if problem else "bubblewrap"


def announce(sandbox: SandboxConfig) -> str | None:
    """Log, at start-up, how attempts will run: ``sandbox_off`` (a warning: unconfined), ``sandbox_ready`` (with
    whether the resource limits hold), or ``sandbox_unavailable`` (an error; no attempt will start). Returns the
    line naming the fix in that last case, for a notice."""
    if sandbox.mode == "off":
        log.warning("sandbox_off", detail=OFF_LINE.removeprefix("off: "))
        return None
    problem = usable()  # logs sandbox_unavailable itself
    if problem is None:
        limits = cgroups.unavailable_reason()
        log.info("sandbox_ready", limits="on" if limits is None else f"skipped: {limits}")
    return problem
