"""``agentos doctor``: check everything the daemon needs, and say how to fix what is wrong.

Every check is a :class:`Check` ``{check, status: ok|warn|error, detail, fix}``. An error means the daemon
cannot do its work (exit code 1); a warning means something to look at (exit code 0): a daemon that is
not running, an agent with no API key in this shell, little disk space. The probes (a CLI's ``--version``,
GitHub's ``GET /user``, Telegram's ``getMe``) live in :mod:`agentos.cli.probes`, shared with ``agentos init``;
the agent checks are in :mod:`agentos.cli.doctor_agents` and the GitHub checks in :mod:`agentos.cli.doctor_github`.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import typer

from agentos.cli._common import ConfigOption, JsonOption, console, count, print_json
from agentos.cli.probes import VERSION_TIMEOUT_S, git_version
from agentos.cli.probes import Probe as Probe  # the probes are re-exported for agentos init
from agentos.cli.probes import credential_dirs as credential_dirs
from agentos.cli.probes import find_secret as find_secret
from agentos.cli.probes import github_get as github_get
from agentos.cli.probes import github_scopes as github_scopes
from agentos.cli.probes import probe_version as probe_version
from agentos.cli.probes import telegram_call as telegram_call
from agentos.repopath import (
    ServiceUser,
    closed_ancestor,
    current_user,
    git_dir_of,
    path_problem,
    service_user,
    writable_by,
)

if TYPE_CHECKING:
    from agentos.config import Config, RepoConfig

Status = Literal["ok", "warn", "error"]

MIN_FREE_BYTES = 2 * 1024**3
"""Below this much free space on the state directory's file system, doctor warns."""


SHELL_WORDS = frozenset({"cd", "export", "source", ".", "set", "env", "exec", "(", "{", "if", "for", "while"})
SHELL_BUILTINS = frozenset({"true", "false", ":", "echo", "printf", "test", "[", "exit"})


@dataclass(frozen=True, slots=True)
class Check:
    """One finding: what was checked, how it went, what was seen, and how to fix it."""

    check: str
    status: Status
    detail: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


# ---------------------------------------------------------------- checks


def check_config(explicit: str | None) -> tuple[list[Check], Config | None, Path | None]:
    from agentos.config import Config, ConfigError, find_config, load_config

    path = find_config(explicit)
    if path is None:
        return (
            [
                Check(
                    "config",
                    "warn",
                    "no config file; the daemon would run on the local forge with no repos",
                    "agentos init",
                )
            ],
            Config(),
            None,
        )
    try:
        cfg, found = load_config(path)
    except ConfigError as exc:
        return (
            [Check("config", "error", "; ".join(exc.problems), f"fix {path} (agentos config validate {path})")],
            None,
            path,
        )
    what = f"{path}: {count(len(cfg.repos), 'repo')}, {count(len(cfg.agents), 'agent')}, forge {cfg.forge}"
    checks = [Check("config", "ok", what)]
    if not cfg.repos:
        checks.append(Check("config:repos", "warn", "no repositories configured", "agentos init --repo NAME:PATH:TEST"))
    if not cfg.agents:
        checks.append(Check("config:agents", "warn", "no agents configured", "agentos init --agent claude"))
    return checks, cfg, found


def check_state_dir(state_dir: Path, *, min_free_bytes: int = MIN_FREE_BYTES) -> list[Check]:
    existing = state_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    checks: list[Check] = []
    fix = f"sudo install -d -o $(id -un) -m 0700 {state_dir}   # or set state_dir in the config"
    if existing == state_dir and not state_dir.is_dir():
        checks.append(Check("state_dir", "error", f"{state_dir} exists and is not a directory", fix))
    elif existing != state_dir:
        if os.access(existing, os.W_OK | os.X_OK):
            checks.append(Check("state_dir", "ok", f"{state_dir} will be created ({existing} is writable)"))
        else:
            checks.append(
                Check("state_dir", "error", f"{state_dir} does not exist and {existing} is not writable", fix)
            )
    else:
        checks.append(_probe_writable(state_dir, fix))
    try:
        usage = shutil.disk_usage(existing)
    except OSError as exc:
        checks.append(Check("disk", "warn", f"cannot read free space of {existing}: {exc.strerror}"))
        return checks
    free_gb = usage.free / 1024**3
    if usage.free < min_free_bytes:
        checks.append(
            Check(
                "disk",
                "warn",
                f"{free_gb:.1f} GB free for {state_dir}; worktrees and logs need room"
                f" (warning below {min_free_bytes / 1024**3:.0f} GB)",
                f"free space on that file system, or move state_dir; old runs live in {state_dir / 'runs'}",
            )
        )
    else:
        checks.append(Check("disk", "ok", f"{free_gb:.1f} GB free for {state_dir}"))
    return checks


def _probe_writable(state_dir: Path, fix: str) -> Check:
    owner = state_dir.stat().st_uid
    if os.geteuid() not in (0, owner) and not os.access(state_dir, os.W_OK):
        import pwd

        try:
            name = pwd.getpwuid(owner).pw_name
        except KeyError:
            name = str(owner)
        detail = f"{state_dir} belongs to {name}; not writable by this user, so not checked"
        return Check("state_dir", "warn", detail, f"run doctor as {name} or root (sudo agentos doctor)")
    try:
        with tempfile.NamedTemporaryFile(dir=state_dir, prefix=".doctor-", delete=True):
            pass
    except OSError as exc:
        return Check("state_dir", "error", f"{state_dir} is not writable: {exc.strerror}", fix)
    lock = state_dir / "agentos.lock"
    return Check("state_dir", "ok", f"{state_dir} is writable" + (" (has state)" if lock.exists() else ""))


def socket_candidates(explicit: str | None, env: Mapping[str, str]) -> list[Path]:
    """Where a daemon may listen: ``--socket``/``$AGENTOS_SOCKET``, else the hand-started, user and system places."""
    from agentos.control.socket import default_socket_path

    if explicit or env.get("AGENTOS_SOCKET"):
        return [Path(explicit or env["AGENTOS_SOCKET"])]
    found = [default_socket_path()]  # a daemon started by hand
    if xdg := env.get("XDG_RUNTIME_DIR"):
        found.append(Path(xdg) / "agentos" / "agentos.sock")  # the user unit (RuntimeDirectory=agentos)
    found.append(Path("/run/agentos/agentos.sock"))  # the system unit
    return list(dict.fromkeys(found))


def check_socket(explicit: str | None, env: Mapping[str, str]) -> Check:
    from agentos.control.socket import NotRunning, request
    from agentos.errors import AgentosError

    candidates = socket_candidates(explicit, env)
    fix = "start it: sudo systemctl start agentos (or systemctl --user start agentos, or agentos run)"
    for path in candidates:
        if not path.exists():
            continue
        try:
            status = request(path, "status", None, timeout=3)
        except NotRunning:
            continue
        except PermissionError:
            return Check("socket", "warn", f"{path} exists but is not ours to use", "run as the daemon's user or root")
        except (AgentosError, OSError) as exc:
            return Check("socket", "warn", f"{path}: {exc}", fix)
        paused = isinstance(status, dict) and status.get("paused")
        return Check("socket", "ok", f"daemon running at {path}" + (" (paused)" if paused else ""))
    where = ", ".join(str(p) for p in candidates)
    return Check("socket", "warn", f"daemon not running (no answer at {where})", fix)


def check_git(env: Mapping[str, str]) -> Check:
    probe = probe_version("git", env=env)
    if not probe.ok:
        return Check("git", "error", f"git: {probe.version}", "install git (apt install git) and put it on PATH")
    version = git_version(probe.version)
    if version and version < (2, 25):
        return Check("git", "warn", f"{probe.version} is old; worktrees need a recent git", "install git ≥ 2.25")
    return Check("git", "ok", f"{probe.version} ({probe.path})")


def command_program(command: str) -> str | None:
    """The program a test command runs (after ``VAR=value`` prefixes); None when it is shell syntax."""
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
        words.pop(0)
    if not words or words[0] in SHELL_WORDS:
        return None
    return words[0]


def check_repo(repo: RepoConfig, env: Mapping[str, str], user: ServiceUser | None = None) -> list[Check]:
    """The repo's path is a git repository's top folder (that ``user``, the daemon's, may write), and its
    test command's program exists."""
    where = f"repo:{repo.name}"
    checks: list[Check] = []
    path = Path(repo.path).expanduser() if repo.path else None
    if path is None:
        checks.append(Check(where, "ok", "no local path: agentos clones it into the state directory"))
    elif not path.is_dir():
        fix = f"create or clone it there, or fix repos.{repo.name}.path (agentos config set repos.{repo.name}.path DIR)"
        checks.append(Check(where, "error", f"{path} does not exist", fix))
    else:
        checks.append(_git_repo_check(where, repo, path, env))
        if checks[-1].status != "error":
            checks.append(_writable_check(where, path, user or current_user()))
    program = command_program(repo.test_command)
    tests = f"{where}:tests"
    if program is None or program in SHELL_BUILTINS:
        checks.append(Check(tests, "ok", f"`{repo.test_command}` runs through the shell; not checked"))
    elif "/" in program:
        candidate = Path(program).expanduser()
        candidate = candidate if candidate.is_absolute() or path is None else path / candidate
        if candidate.is_file() and os.access(candidate, os.X_OK):
            checks.append(Check(tests, "ok", f"`{repo.test_command}` runs {candidate}"))
        else:
            checks.append(
                Check(tests, "error", f"{candidate} is not an executable file", f"fix repos.{repo.name}.test_command")
            )
    elif found := shutil.which(program, path=env.get("PATH") or os.defpath):
        checks.append(Check(tests, "ok", f"`{repo.test_command}` runs {found}"))
    else:
        fix = f"install {program!r} on the daemon's PATH, or change repos.{repo.name}.test_command"
        checks.append(Check(tests, "error", f"`{repo.test_command}`: {program!r} is not on PATH", fix))
    return checks


def _git_repo_check(where: str, repo: RepoConfig, path: Path, env: Mapping[str, str]) -> Check:
    git = shutil.which("git", path=env.get("PATH") or os.defpath)
    if git is None:
        return Check(where, "warn", f"{path}: cannot check (git is missing)", "install git")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [git, "-C", str(path), *args], capture_output=True, text=True, timeout=VERSION_TIMEOUT_S, errors="replace"
        )

    if problem := path_problem(path, git=git):
        fix = f"git init {path} (or point repos.{repo.name}.path at a clone)"
        return Check(where, "error", problem, fix)
    try:
        branch = run("rev-parse", "--verify", "--quiet", f"refs/heads/{repo.base_branch}^{{commit}}")
    except subprocess.TimeoutExpired:
        return Check(where, "warn", f"{path}: git did not answer in time", "check the file system")
    if branch.returncode != 0:
        fix = f"create it (git -C {path} branch {repo.base_branch}) or set repos.{repo.name}.base_branch"
        return Check(where, "warn", f"{path}: no branch {repo.base_branch!r}", fix)
    return Check(where, "ok", f"{path} is a git repository (base {repo.base_branch})")


def _writable_check(where: str, path: Path, user: ServiceUser) -> Check:
    """The local forge pushes into the repository and updates its checkout: its folder and git directory must
    be writable by the daemon's user."""
    name, uid, gids = user
    places = [path]
    if (git_dir := git_dir_of(path)) is not None and git_dir != path:
        places.append(git_dir)
    denied = [p for p in places if not writable_by(p, uid, gids)]
    if denied:
        fix = f"sudo chown -R {name} {path} (or give the group {name} is in write access)"
        shown = ", ".join(str(p) for p in denied)
        return Check(f"{where}:writable", "error", f"{shown} is not writable by {name}, the daemon's user", fix)
    if (closed := closed_ancestor(path, uid, gids)) is not None:
        fix = f"chmod o+x {closed} (or move the repository to /srv)"
        return Check(f"{where}:writable", "error", f"{name}, the daemon's user, cannot enter {closed}", fix)
    return Check(f"{where}:writable", "ok", f"{path} is writable by {name}")


def system_config(config_path: Path | None) -> bool:
    """Whether ``config_path`` is the system unit's (under /etc/agentos)."""
    from agentos.config import SYSTEM_CONFIG_DIR

    return config_path is not None and config_path.absolute().is_relative_to(SYSTEM_CONFIG_DIR)


def daemon_user(config_path: Path | None, explicit: str | None = None) -> ServiceUser | None:
    """The user the daemon runs as: ``explicit``; for the system config when run as root, the system unit's
    ``agentos``; else whoever runs doctor. None when ``explicit`` names no user."""
    if explicit:
        return service_user(explicit)
    if system_config(config_path) and os.geteuid() == 0:
        return service_user("agentos") or current_user()
    return current_user()


def check_telegram(cfg: Config, env: Mapping[str, str], dirs: list[Path] | None = None) -> list[Check]:
    import httpx

    if not cfg.telegram.enabled:
        return []
    token, source = find_secret("telegram_bot_token", "TELEGRAM_BOT_TOKEN", env, dirs)
    fix = "export TELEGRAM_BOT_TOKEN, or run agentos init --telegram-token … to store it"
    checks: list[Check] = []
    if token is None:
        checks.append(Check("telegram", "error", "telegram.enabled but no bot token (TELEGRAM_BOT_TOKEN)", fix))
    else:
        try:
            me = telegram_call(cfg.telegram.api_base, token, "getMe")
        except httpx.HTTPError as exc:
            checks.append(Check("telegram", "error", f"cannot reach the Bot API: {exc}", "check telegram.api_base"))
        else:
            if me.get("ok"):
                user = (me.get("result") or {}).get("username", "?")
                checks.append(Check("telegram", "ok", f"bot @{user} (token from {source})"))
            else:
                checks.append(Check("telegram", "error", f"getMe: {me.get('description', 'rejected')}", fix))
    if not cfg.telegram.allowed_chat_ids:
        pair = "agentos init --telegram-token … (send /start to the bot) or set telegram.allowed_chat_ids"
        checks.append(Check("telegram:chats", "warn", "no allowed_chat_ids: the bot answers nobody", pair))
    return checks


def run_checks(
    config: str | None,
    *,
    socket: str | None = None,
    deep: bool = False,
    env: Mapping[str, str] | None = None,
    min_free_bytes: int = MIN_FREE_BYTES,
    credentials: list[Path] | None = None,
    service_user_name: str | None = None,
) -> list[Check]:
    """Every check, in the order a person would fix things.

    ``env`` is the environment the daemon is assumed to have (default: this process's);
    ``credentials`` the directories searched for stored tokens (default: :func:`credential_dirs`).
    """
    from agentos.cli.doctor_agents import check_agent
    from agentos.cli.doctor_github import check_github
    from agentos.cli.doctor_ray import check_runner
    from agentos.cli.doctor_sandbox import check_sandbox
    from agentos.cli.doctor_unit import check_unit_view, unit_properties
    from agentos.cli.views import resolve_state_dir

    env = dict(os.environ if env is None else env)
    checks, cfg, path = check_config(config)
    checks.append(check_git(env))
    if cfg is None:
        checks.append(check_socket(socket, env))
        return checks
    checks += check_state_dir(resolve_state_dir(cfg, path), min_free_bytes=min_free_bytes)
    checks.append(check_socket(socket, env))
    checks += check_sandbox(cfg.sandbox)
    checks += check_runner(cfg)
    for name, agent in cfg.agents.items():
        checks += check_agent(name, agent, env, deep=deep)
    user = daemon_user(path, service_user_name)
    if user is None:
        checks.append(Check("service-user", "error", f"no user named {service_user_name!r}", "give an existing user"))
    for repo in cfg.repos:
        checks += check_repo(repo, env, user)
    if system_config(path) and (props := unit_properties()) is not None:
        checks += check_unit_view([(r.name, Path(r.path).expanduser()) for r in cfg.repos if r.path], props)
    if cfg.forge == "github":
        checks += check_github(cfg, env, credentials)
    checks += check_telegram(cfg, env, credentials)
    return checks


STYLE = {"ok": "[green]ok   [/green]", "warn": "[yellow]warn [/yellow]", "error": "[red]error[/red]"}


def render(checks: list[Check]) -> None:
    """One line per check, and the fix under each problem."""
    from rich.markup import escape

    width = max((len(c.check) for c in checks), default=0)
    for c in checks:
        console.print(f"{STYLE[c.status]}  {escape(c.check):<{width}}  {escape(c.detail)}", highlight=False)
        if c.fix and c.status != "ok":
            console.print(f"{'':5}  {'':<{width}}  [dim]fix:[/dim] {escape(c.fix)}", highlight=False)


@contextmanager
def _logs_to_stderr() -> Iterator[None]:
    """While doctor runs, library log lines (the GitHub client's) go to stderr, warnings only: stdout is the report."""
    import structlog  # here, not at the top: every `agentos` command imports this module

    saved = structlog.get_config()
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    try:
        yield
    finally:
        structlog.configure(**saved)


def doctor(
    config: str | None = ConfigOption,
    as_json: bool = JsonOption,
    deep: bool = typer.Option(False, "--deep", help="Also make one tiny real call per agent to prove its login"),
    socket: str | None = typer.Option(None, "--socket", help="Control socket path (default: the usual places)"),
    credentials_dir: str | None = typer.Option(
        None, "--credentials-dir", help="Where tokens are stored (default: ~/.config/agentos/credentials, then /etc/…)"
    ),
    service_user_name: str | None = typer.Option(
        None,
        "--service-user",
        help="The user the daemon runs as, for the repos' write check (default: agentos for the system config "
        "when run as root, else you)",
    ),
) -> None:
    """Check the config, state dir, daemon, git, agents, repos, GitHub and Telegram; exit 1 on any error."""
    dirs = [Path(credentials_dir).expanduser()] if credentials_dir else None
    with _logs_to_stderr():
        checks = run_checks(config, socket=socket, deep=deep, credentials=dirs, service_user_name=service_user_name)
    errors = sum(c.status == "error" for c in checks)
    warnings = sum(c.status == "warn" for c in checks)
    if as_json:
        print_json([c.as_dict() for c in checks])
    else:
        render(checks)
        summary = f"{len(checks)} checks: {errors} errors, {warnings} warnings"
        console.print(f"[red]{summary}[/red]" if errors else summary, highlight=False)
    raise typer.Exit(1 if errors else 0)
