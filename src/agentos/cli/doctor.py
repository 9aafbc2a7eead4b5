"""``agentos doctor``: check everything the daemon needs, and say how to fix what is wrong.

Every check is a :class:`Check` ``{check, status: ok|warn|error, detail, fix}``. An error means the daemon
cannot do its work (exit code 1); a warning means something to look at (exit code 0): a daemon that is
not running, an agent with no API key in this shell, little disk space. The probes (a CLI's ``--version``,
GitHub's ``GET /user``, Telegram's ``getMe``) are shared with ``agentos init``.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import typer

from agentos.cli._common import ConfigOption, JsonOption, console, print_json

if TYPE_CHECKING:
    import httpx

    from agentos.config import AgentConfig, Config, RepoConfig

Status = Literal["ok", "warn", "error"]

MIN_FREE_BYTES = 2 * 1024**3
"""Below this much free space on the state directory's file system, doctor warns."""

VERSION_TIMEOUT_S = 10.0
DEEP_TIMEOUT_S = 90.0
GITHUB_API = "https://api.github.com"
TELEGRAM_API = "https://api.telegram.org"

AUTH_ENV: dict[str, list[str]] = {
    "claude": ["ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN"],
    "codex": ["OPENAI_API_KEY"],
    "gemini": ["GEMINI_API_KEY", "GOOGLE_API_KEY"],
}
"""The environment variables that authenticate each CLI (any one is enough)."""

LOGIN_FILES: dict[str, list[str]] = {
    "claude": ["~/.claude/.credentials.json"],
    "codex": ["~/.codex/auth.json"],
    "gemini": ["~/.gemini/oauth_creds.json"],
}
"""Where each CLI keeps an interactive login, as an alternative to an API key."""

LOGIN_HINTS: dict[str, str] = {
    "claude": "export ANTHROPIC_API_KEY (or CLAUDE_CODE_OAUTH_TOKEN from `claude setup-token`) where the daemon runs",
    "codex": "export OPENAI_API_KEY where the daemon runs, or run `codex login` as the daemon's user",
    "gemini": "export GEMINI_API_KEY where the daemon runs, or run `gemini` once as the daemon's user to log in",
}

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


# ---------------------------------------------------------------- probes (shared with `agentos init`)


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


def credential_dirs() -> list[Path]:
    """Where ``agentos init`` stores tokens: the system directory, then the user's."""
    return [Path("/etc/agentos/credentials"), Path("~/.config/agentos/credentials").expanduser()]


def find_secret(
    name: str, env_name: str, env: Mapping[str, str], dirs: list[Path] | None = None
) -> tuple[str | None, str]:
    """A secret and where it came from: ``$ENV``, ``$CREDENTIALS_DIRECTORY/name``, or a credentials directory.

    ``dirs`` defaults to :func:`credential_dirs` (where ``agentos init`` stores tokens).
    """
    if value := (env.get(env_name) or "").strip():
        return value, f"${env_name}"
    files = [Path(d) / name for d in [env.get("CREDENTIALS_DIRECTORY")] if d]
    files += [d / name for d in (credential_dirs() if dirs is None else dirs)]
    for file in files:
        try:
            value = file.read_text(encoding="utf-8").strip()
        except OSError:
            continue
        if value:
            return value, str(file)
    return None, ""


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
    what = f"{path}: {len(cfg.repos)} repos, {len(cfg.agents)} agents, forge {cfg.forge}"
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


def agent_program(name: str, cfg: AgentConfig) -> str:
    if cfg.kind == "command":
        return (cfg.argv or [name])[0]
    return cfg.binary or cfg.kind


def check_agent(name: str, cfg: AgentConfig, env: Mapping[str, str], *, deep: bool = False) -> list[Check]:
    from agentos.agents.adapters import INSTALL_HINTS

    program = agent_program(name, cfg)
    where = f"agent:{name}"
    if cfg.kind == "command":
        path = shutil.which(program, path=env.get("PATH") or os.defpath) if "/" not in program else program
        if path is None or not os.access(path, os.X_OK):
            return [
                Check(where, "error", f"{program!r} is not on PATH or not executable", f"check agents.{name}.argv[0]")
            ]
        return [Check(where, "ok", f"command agent: {path}")]
    probe = probe_version(program, env=env)
    hint = INSTALL_HINTS.get(cfg.kind, "")
    if probe.path is None:
        fix = f"{hint}; or set agents.{name}.binary to its full path"
        return [Check(where, "error", f"{program!r} ({cfg.kind}) is not installed or not on PATH", fix)]
    if not probe.ok:
        return [Check(where, "error", f"{probe.path}: {probe.version}", f"reinstall it: {hint}")]
    checks = [Check(where, "ok", f"{probe.version} ({probe.path})")]
    checks.append(_auth_check(name, cfg, env))
    if deep:
        checks.append(deep_auth_check(name, cfg, probe.path, env))
    return checks


def _auth_check(name: str, cfg: AgentConfig, env: Mapping[str, str]) -> Check:
    where = f"agent:{name}:auth"
    passed = list(cfg.pass_env)
    shown = ", ".join(f"{v} ({'set' if env.get(v) else 'unset'})" for v in passed) or "nothing"
    auth_vars = AUTH_ENV.get(cfg.kind, [])
    usable = [v for v in auth_vars if v in passed and env.get(v)]
    home = env.get("HOME") or str(Path.home())
    logins = [f for f in LOGIN_FILES.get(cfg.kind, []) if Path(f.replace("~", home, 1)).is_file()]
    detail = f"passes {shown} (in this shell)"
    if usable:
        return Check(where, "ok", f"{detail}; authenticates with {usable[0]}")
    if logins:
        return Check(where, "ok", f"{detail}; logged in ({logins[0]})")
    missing = [v for v in auth_vars if v not in passed]
    fix = LOGIN_HINTS.get(cfg.kind, "")
    if missing and not any(v in passed for v in auth_vars):
        fix += f"; and list it in agents.{name}.pass_env (e.g. {missing[0]})"
    return Check(where, "warn", f"{detail}; no API key set and no login found", fix)


def deep_auth_check(name: str, cfg: AgentConfig, path: str, env: Mapping[str, str]) -> Check:
    """One tiny real call (or ``codex login status``) through the environment the daemon would give it."""
    from datetime import UTC, datetime

    from agentos.agents.adapters import parse_output
    from agentos.agents.runner import scrubbed_env

    where = f"agent:{name}:login"
    agent_env = scrubbed_env(list(cfg.pass_env), dict(cfg.env), env)
    prompt = "Reply with the single word OK and do nothing else."
    if cfg.kind == "codex":
        argv, stdin = [path, "login", "status"], None
    elif cfg.kind == "claude":
        argv, stdin = [path, "-p", "--output-format", "json", "--max-turns", "1", *_model(cfg)], prompt
    else:
        argv, stdin = [path, "-p", "", "--output-format", "json", *_model(cfg)], prompt
    with tempfile.TemporaryDirectory(prefix="agentos-doctor-") as cwd:
        try:
            res = subprocess.run(
                argv, input=stdin, capture_output=True, text=True, timeout=DEEP_TIMEOUT_S, cwd=cwd, env=agent_env
            )
        except subprocess.TimeoutExpired:
            return Check(where, "warn", f"no answer within {DEEP_TIMEOUT_S:.0f} s", "run it by hand to see why")
        except OSError as exc:
            return Check(where, "error", f"cannot run {path}: {exc}", "reinstall the CLI")
    output = res.stdout + "\n" + res.stderr
    if cfg.kind == "codex":
        if res.returncode == 0:
            return Check(where, "ok", output.strip().splitlines()[0] if output.strip() else "logged in")
        return Check(where, "error", f"not logged in: {output.strip()[-200:]}", LOGIN_HINTS["codex"])
    report = parse_output(cfg.kind, output, res.returncode, now=datetime.now(UTC))
    if report.failure == "missing_credentials":
        return Check(where, "error", f"authentication failed: {report.detail}", LOGIN_HINTS.get(cfg.kind, ""))
    if report.failure == "quota_limited":
        return Check(where, "warn", f"authenticated, but at a usage limit: {report.detail}", "wait for the reset")
    if report.is_error:
        return Check(where, "error", f"the call failed: {report.detail or output.strip()[-200:]}", "run it by hand")
    cost = f", ${report.cost_usd:.4f}" if report.cost_reported else ""
    return Check(where, "ok", f"answered a one-line prompt ({report.tokens_in + report.tokens_out} tokens{cost})")


def _model(cfg: AgentConfig) -> list[str]:
    return (["--model" if cfg.kind == "claude" else "-m", cfg.model]) if cfg.model else []


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


def check_repo(repo: RepoConfig, env: Mapping[str, str]) -> list[Check]:
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

    try:
        inside = run("rev-parse", "--git-dir")
        if inside.returncode != 0:
            fix = f"git init {path} (or point repos.{repo.name}.path at a clone)"
            return Check(where, "error", f"{path} is not a git repository", fix)
        branch = run("rev-parse", "--verify", "--quiet", f"refs/heads/{repo.base_branch}^{{commit}}")
    except subprocess.TimeoutExpired:
        return Check(where, "warn", f"{path}: git did not answer in time", "check the file system")
    if branch.returncode != 0:
        fix = f"create it (git -C {path} branch {repo.base_branch}) or set repos.{repo.name}.base_branch"
        return Check(where, "warn", f"{path}: no branch {repo.base_branch!r}", fix)
    return Check(where, "ok", f"{path} is a git repository (base {repo.base_branch})")


def check_github(cfg: Config, env: Mapping[str, str], dirs: list[Path] | None = None) -> list[Check]:
    import httpx

    api = cfg.github.api_url if cfg.github else GITHUB_API
    if cfg.github is not None and cfg.github.app_id is not None:
        return [Check("github:token", "warn", "GitHub App authentication is not checked by doctor yet", "")]
    token, source = find_secret("github_token", "GITHUB_TOKEN", env, dirs)
    fix_token = "export GITHUB_TOKEN, or run agentos init --forge github to store it in the credentials file"
    if token is None:
        return [Check("github:token", "error", "no GitHub token (GITHUB_TOKEN or credential github_token)", fix_token)]
    try:
        resp = github_get(api, token, "/user")
    except httpx.HTTPError as exc:
        return [Check("github:token", "error", f"cannot reach {api}: {exc}", "check the network or github.api_url")]
    if resp.status_code == 401:
        return [Check("github:token", "error", f"the token from {source} is rejected (401)", fix_token)]
    if resp.status_code != 200:
        return [Check("github:token", "error", f"GET /user answered {resp.status_code}", "check the token")]
    login = str(resp.json().get("login", "?"))
    scopes = github_scopes(resp)
    checks: list[Check] = []
    if scopes is None:
        checks.append(Check("github:token", "ok", f"fine-grained token of {login} (from {source})"))
    else:
        needed = ["repo"] + (["project"] if any(r.project for r in cfg.repos) else [])
        missing = [s for s in needed if s not in scopes and not (s == "project" and "read:project" in scopes)]
        detail = f"classic token of {login} (from {source}), scopes: {', '.join(scopes) or 'none'}"
        if missing:
            fix = f"add the scope(s) {', '.join(missing)} at https://github.com/settings/tokens"
            checks.append(Check("github:token", "error", f"{detail}; missing {', '.join(missing)}", fix))
        else:
            checks.append(Check("github:token", "ok", detail))
    for repo in cfg.repos:
        checks.append(_github_repo(api, token, repo.name))
    return checks


def _github_repo(api: str, token: str, name: str) -> Check:
    import httpx

    where = f"github:{name}"
    try:
        resp = github_get(api, token, f"/repos/{name}")
    except httpx.HTTPError as exc:
        return Check(where, "error", f"cannot reach {api}: {exc}", "check the network")
    if resp.status_code in (403, 404):
        return Check(
            where, "error", f"{name}: not visible to this token ({resp.status_code})", "grant the token access"
        )
    if resp.status_code != 200:
        return Check(where, "error", f"{name}: GET answered {resp.status_code}", "check the name (owner/name)")
    perms = resp.json().get("permissions") or {}
    if perms and not perms.get("push"):
        return Check(
            where, "error", f"{name}: the token cannot push", "give the token write access to contents and PRs"
        )
    return Check(where, "ok", f"{name}: reachable" + (", can push" if perms.get("push") else ""))


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
) -> list[Check]:
    """Every check, in the order a person would fix things.

    ``env`` is the environment the daemon is assumed to have (default: this process's);
    ``credentials`` the directories searched for stored tokens (default: :func:`credential_dirs`).
    """
    from agentos.cli.views import resolve_state_dir

    env = dict(os.environ if env is None else env)
    checks, cfg, path = check_config(config)
    checks.append(check_git(env))
    if cfg is None:
        checks.append(check_socket(socket, env))
        return checks
    checks += check_state_dir(resolve_state_dir(cfg, path), min_free_bytes=min_free_bytes)
    checks.append(check_socket(socket, env))
    for name, agent in cfg.agents.items():
        checks += check_agent(name, agent, env, deep=deep)
    for repo in cfg.repos:
        checks += check_repo(repo, env)
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


def doctor(
    config: str | None = ConfigOption,
    as_json: bool = JsonOption,
    deep: bool = typer.Option(False, "--deep", help="Also make one tiny real call per agent to prove its login"),
    socket: str | None = typer.Option(None, "--socket", help="Control socket path (default: the usual places)"),
    credentials_dir: str | None = typer.Option(
        None, "--credentials-dir", help="Where tokens are stored (default: /etc/agentos/credentials, then ~/.config/…)"
    ),
) -> None:
    """Check the config, state dir, daemon, git, agents, repos, GitHub and Telegram; exit 1 on any error."""
    dirs = [Path(credentials_dir).expanduser()] if credentials_dir else None
    checks = run_checks(config, socket=socket, deep=deep, credentials=dirs)
    errors = sum(c.status == "error" for c in checks)
    warnings = sum(c.status == "warn" for c in checks)
    if as_json:
        print_json([c.as_dict() for c in checks])
    else:
        render(checks)
        summary = f"{len(checks)} checks: {errors} errors, {warnings} warnings"
        console.print(f"[red]{summary}[/red]" if errors else summary, highlight=False)
    raise typer.Exit(1 if errors else 0)
