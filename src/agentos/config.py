"""The config file: pydantic models, loading with precise errors, and edits that keep comments.

A bad file gives one message per problem, naming the file, the line and the key path::

    agentos.yaml:14: repos[0].test_command: field required

Secrets never live in the YAML: :func:`secret` reads them from the environment or from a credential
file (systemd ``LoadCredential=`` puts those in ``$CREDENTIALS_DIRECTORY``).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from agentos.errors import AgentosError
from agentos.fsutil import atomic_write_bytes
from agentos.redact import get_default

AgentKind = Literal["claude", "codex", "gemini", "command"]
AutomationMode = Literal["full", "dispatcher_only"]

SECRET_KEYS = ("token", "api_key", "secret", "password", "private_key")
DEFAULT_PROTECTED_PATHS = (".github/workflows/", ".gitlab-ci.yml", ".env", "*.pem", "*.key", "id_rsa*", "secrets.*")


class ConfigError(AgentosError):
    """The config file is missing, unreadable or invalid. ``problems`` holds one line per problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Hooks(_Model):
    """Shell commands run in the worktree at fixed moments; each gets ``timeout_s`` and no tokens."""

    after_create: str | None = None
    before_run: str | None = None
    after_run: str | None = None
    before_remove: str | None = None
    timeout_s: float = Field(default=300, gt=0)


class RepoConfig(_Model):
    name: str = Field(min_length=1)
    path: str | None = None
    remote: str | None = None
    base_branch: str = "main"
    test_command: str
    test_timeout_s: float = Field(default=900, gt=0)
    automation_mode: AutomationMode = "full"
    enabled: bool = True
    max_parallel: int | None = Field(default=None, ge=1)
    groom_cadence_days: int | None = Field(default=None, ge=1)
    hooks: Hooks = Field(default_factory=Hooks)
    project: dict[str, str | int] | None = None
    protected_paths: list[str] = Field(default_factory=lambda: list(DEFAULT_PROTECTED_PATHS))
    max_diff_lines: int = Field(default=2000, ge=1)
    llm_judge: str | None = None  # an agent name: it reviews green PRs and may only block (docs/pr-monitor.md)
    max_worktrees: int | None = Field(default=None, ge=1)
    max_worktree_disk_mb: int | None = Field(default=None, ge=1)
    pass_env: list[str] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _name_is_safe(cls, value: str) -> str:
        if value.startswith(("-", ".")) or any(c in value for c in " \t\n\\:"):
            raise ValueError(f"repo name {value!r} may not start with '-' or '.' or contain spaces, ':' or '\\'")
        return value


class AgentConfig(_Model):
    kind: AgentKind
    binary: str | None = None
    model: str | None = None
    argv: list[str] | None = None
    extra_args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    pass_env: list[str] = Field(default_factory=list)
    prompt_via: Literal["stdin", "file"] | None = None
    cooldown_minutes: float = Field(default=60, gt=0)
    max_cost_usd_per_day: float | None = Field(default=None, gt=0)
    monthly_warn_usd: float | None = Field(default=None, gt=0)
    monthly_max_usd: float | None = Field(default=None, gt=0)
    monthly_warn_tokens: int | None = Field(default=None, gt=0)
    monthly_max_tokens: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _warn_below_max(self) -> AgentConfig:
        for unit in ("usd", "tokens"):
            warn, top = getattr(self, f"monthly_warn_{unit}"), getattr(self, f"monthly_max_{unit}")
            if warn is not None and top is not None and warn >= top:
                raise ValueError(f"monthly_warn_{unit} ({warn}) must be below monthly_max_{unit} ({top})")
        return self

    @model_validator(mode="after")
    def _command_needs_argv(self) -> AgentConfig:
        if self.kind == "command" and not self.argv:
            raise ValueError("an agent of kind 'command' needs argv: [program, args…]")
        if self.kind != "command" and self.argv:
            raise ValueError(f"argv is only for kind 'command'; a {self.kind} agent uses binary/extra_args")
        for key, value in self.env.items():
            if any(word in key.lower() for word in SECRET_KEYS):
                raise ValueError(f"env.{key} looks like a secret; list it in pass_env and set it in the environment")
            del value
        return self


class Routing(_Model):
    fallbacks: dict[str, list[str]] = Field(default_factory=dict)
    default: list[str] = Field(default_factory=list)
    max_attempts: int = Field(default=4, ge=1)
    max_ci_fix_attempts: int = Field(default=3, ge=0)
    wedged_after_hours: float = Field(default=4, ge=0)
    auto_tune: bool = False
    backoff_base_s: float = Field(default=10, ge=0)
    backoff_cap_s: float = Field(default=300, ge=0)


class Limits(_Model):
    idle_timeout_minutes: float = Field(default=10, gt=0)
    max_runtime_minutes: float = Field(default=40, gt=0)
    kill_grace_s: float = Field(default=10, ge=0)
    shutdown_grace_s: float = Field(default=30, ge=0)
    max_log_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    max_task_cost_usd: float | None = Field(default=None, gt=0)
    max_task_tokens: int | None = Field(default=None, gt=0)
    budget_timezone: str = "UTC"
    event_retention_days: int = Field(default=90, ge=1)


    @field_validator("budget_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (an IANA name such as UTC or Europe/Berlin)") from None
        return value


class JobConfig(_Model):
    enabled: bool = True
    cron: str | None = None
    interval_s: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one_trigger(self) -> JobConfig:
        if self.cron and self.interval_s:
            raise ValueError("give either cron or interval_s, not both")
        if self.cron and len(self.cron.split()) != 5:
            raise ValueError(f"cron {self.cron!r} must have 5 fields: minute hour day month weekday")
        return self


class TelegramConfig(_Model):
    enabled: bool = False
    allowed_chat_ids: list[int] = Field(default_factory=list)
    api_base: str | None = None
    digest_hour: int = Field(default=8, ge=0, le=23)


class GitHubConfig(_Model):
    api_url: str = "https://api.github.com"
    git_url: str | None = None
    ready_label: str = "agentos:ready"
    trusted_permission: Literal["read", "triage", "write", "maintain", "admin"] = "triage"
    checks_grace_s: float = Field(default=120, ge=0)
    app_id: int | None = None
    installation_id: int | None = None
    poll_interval_s: float = Field(default=60, gt=0)


class StatusPageConfig(_Model):
    """The read-only status page, JSON API and Prometheus metrics the daemon serves (docs/operations.md).

    Off by default. On ``127.0.0.1`` (or ``::1``, ``localhost``) no token is needed; any other ``host``
    needs the bearer token in the credential ``token_credential`` (or ``$STATUS_PAGE_TOKEN``), or the
    daemon refuses to start. When a token is set, every request must carry it.
    """

    enabled: bool = False
    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=8787, ge=0, le=65535)
    token_credential: str = Field(default="status_page_token", pattern=r"^[A-Za-z0-9_.-]+$")
    window_days: int = Field(default=7, ge=1)


class LoopsConfig(_Model):
    """The improvement loops (docs/loops.md): thresholds, cadences, and what they may do on their own."""

    incident_threshold: int = Field(default=3, ge=1)
    incident_window_hours: float = Field(default=24, gt=0)
    fix_label: str = "autonomous-fix"
    analysis_days: int = Field(default=7, ge=1)
    report_repo: str | None = None
    min_attempts: int = Field(default=3, ge=1)
    peer_gap: float = Field(default=0.3, ge=0, le=1)
    max_fix_issues: int = Field(default=3, ge=0)
    tune_margin: float = Field(default=0.1, ge=0)
    groom_cadence_days: int = Field(default=7, ge=1)
    stale_days: int = Field(default=30, ge=1)
    close_stale_days: int | None = Field(default=None, ge=1)
    duplicate_ratio: float = Field(default=0.9, gt=0, le=1)
    reready_codes: list[str] = Field(default_factory=lambda: ["quota_limited"])
    reready_after_hours: float = Field(default=24, ge=0)
    max_rereadies: int = Field(default=2, ge=0)
    target_backlog_depth: int | None = Field(default=None, ge=0)
    objectives_file: str = "OBJECTIVES.md"
    sprint_enabled: bool = False
    sprint_cadence_days: int = Field(default=7, ge=1)
    plan_size: int = Field(default=5, ge=1)
    digest_window_hours: float = Field(default=24, gt=0)
    llm_agent: str | None = None


class Config(_Model):
    state_dir: str = "~/.local/state/agentos"
    forge: Literal["local", "github"] = "local"
    max_parallel_workers: int = Field(default=2, ge=1)
    max_parallel_per_repo: int = Field(default=2, ge=1)
    repos: list[RepoConfig] = Field(default_factory=list)
    agents: dict[str, AgentConfig] = Field(default_factory=dict)
    routing: Routing = Field(default_factory=Routing)
    limits: Limits = Field(default_factory=Limits)
    jobs: dict[str, JobConfig] = Field(default_factory=dict)
    telegram: TelegramConfig = Field(default_factory=TelegramConfig)
    github: GitHubConfig | None = None
    loops: LoopsConfig = Field(default_factory=LoopsConfig)
    status_page: StatusPageConfig = Field(default_factory=StatusPageConfig)
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @model_validator(mode="after")
    def _references_exist(self) -> Config:
        names = [r.name for r in self.repos]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"repo names must be unique; repeated: {', '.join(dupes)}")
        chains = {f"routing.fallbacks.{k}": v for k, v in self.routing.fallbacks.items()}
        chains["routing.default"] = self.routing.default
        for where, chain in chains.items():
            for agent in chain:
                if agent not in self.agents:
                    known = ", ".join(sorted(self.agents)) or "none"
                    raise ValueError(f"{where}: unknown agent {agent!r} (agents defined: {known})")
        if self.loops.llm_agent is not None and self.loops.llm_agent not in self.agents:
            raise ValueError(f"loops.llm_agent: unknown agent {self.loops.llm_agent!r}")
        if self.forge == "local":
            for repo in self.repos:
                if not repo.path:
                    raise ValueError(f"repo {repo.name!r}: the local forge needs a path")
        return self

    def repo(self, name: str) -> RepoConfig:
        for repo in self.repos:
            if repo.name == name:
                return repo
        raise KeyError(name)

    @property
    def state_path(self) -> Path:
        env = os.environ.get("STATE_DIRECTORY")
        if env and self.state_dir == Config.model_fields["state_dir"].default:
            return Path(env.split(":")[0])
        return Path(self.state_dir).expanduser()

    def chain_for(self, task_type: str, preferred: str | None = None) -> list[str]:
        """The agents to try, in order: the issue's preferred agent first, then the type's chain."""
        chain = list(self.routing.fallbacks.get(task_type) or self.routing.default or sorted(self.agents))
        if preferred and preferred in self.agents:
            chain = [preferred, *[a for a in chain if a != preferred]]
        return chain


# ---------------------------------------------------------------- loading


def _yaml() -> YAML:
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


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


def _line_of(doc: Any, loc: Sequence[int | str]) -> int | None:
    """The 1-based line of the deepest node on ``loc`` that the YAML document knows."""
    node, line = doc, None
    for key in loc:
        if isinstance(node, CommentedMap) and key in node:
            pos = node.lc.key(key)
            line = pos[0] + 1 if pos else line
            node = node[key]
        elif isinstance(node, CommentedSeq) and isinstance(key, int) and 0 <= key < len(node):
            pos = node.lc.item(key)
            line = pos[0] + 1 if pos else line
            node = node[key]
        else:
            break
    if line is None and isinstance(doc, CommentedMap):
        line = 1
    return line


def _key_path(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _message(err: Any) -> str:
    kind, msg = err["type"], err["msg"]
    if kind == "missing":
        return "field required"
    if kind == "extra_forbidden":
        return "unknown key (check the spelling; see config/agentos.example.yaml)"
    return str(msg).removeprefix("Value error, ")


def validate_document(doc: Any, name: str) -> Config:
    """Validate a parsed YAML document, turning pydantic errors into ``file:line: key: problem``."""
    if doc is None:
        doc = CommentedMap()
    if not isinstance(doc, dict):
        raise ConfigError([f"{name}:1: the file must be a mapping of keys (found {type(doc).__name__})"])
    try:
        return Config.model_validate(doc)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith(("function-", "literal[")))]
            line = _line_of(doc, loc[:-1] if err["type"] == "missing" else loc)
            where = f"{name}:{line}" if line else name
            problems.append(f"{where}: {_key_path(loc)}: {_message(err)}")
        raise ConfigError(problems) from None


def load_config(path: str | Path | None = None) -> tuple[Config, Path | None]:
    """Load and validate the config; with no file anywhere, the defaults (local forge, no repos)."""
    found = find_config(path)
    if found is None:
        return Config(), None
    if not found.is_file():
        raise ConfigError([f"{found}: no such config file"])
    try:
        text = found.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{found}: cannot read: {exc}"]) from None
    return parse_config(text, str(found)), found


def parse_config(text: str, name: str = "config.yaml") -> Config:
    try:
        doc = _yaml().load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError([f"{name}{line}: invalid YAML: {problem}"]) from None
    except Exception as exc:  # ruamel raises KeyError on "%YAML 0.0", RecursionError on deep nesting…
        raise ConfigError([f"{name}: invalid YAML: {type(exc).__name__}: {exc}"[:300]]) from None
    return validate_document(doc, name)


# ---------------------------------------------------------------- edits that keep comments


def _coerce(raw: str) -> Any:
    """Parse a command-line value the way YAML would (``3`` → int, ``true`` → bool, ``[a, b]`` → list)."""
    value = YAML(typ="safe").load(raw) if raw.strip() else ""
    return raw if value is None else value


def _walk_key(key: str) -> list[str | int]:
    parts: list[str | int] = []
    for piece in key.replace("]", "").replace("[", ".").split("."):
        if piece == "":
            continue
        parts.append(int(piece) if piece.isdigit() else piece)
    return parts


def set_value(path: Path, key: str, raw_value: str | Any) -> Config:
    """Set one key (``repos.calc.automation_mode`` or ``repos[0].test_command``) keeping comments and order.

    A repo may be addressed by its name in place of its index. The edited document is validated before
    it is written (atomically); an invalid edit changes nothing.
    """
    yaml = _yaml()
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    doc = yaml.load(text) if text.strip() else CommentedMap()
    parts = _walk_key(key)
    if not parts:
        raise ConfigError([f"{path}: empty key"])
    node: Any = doc
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list) and isinstance(part, str):
            named = [item for item in node if isinstance(item, dict) and item.get("name") == part]
            if not named:
                raise ConfigError([f"{path}: {_key_path(parts[: i + 1])}: no entry named {part!r}"])
            node = named[0]
            continue
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            if isinstance(node, dict) and isinstance(part, str):
                node[part] = CommentedMap()
                node = node[part]
            else:
                raise ConfigError([f"{path}: {_key_path(parts[: i + 1])}: no such key"]) from None
    value = _coerce(raw_value) if isinstance(raw_value, str) else raw_value
    last = parts[-1]
    try:
        node[last] = value
    except (IndexError, TypeError):
        raise ConfigError([f"{path}: {_key_path(parts)}: no such key"]) from None
    config = validate_document(doc, str(path))
    buf = io.StringIO()
    yaml.dump(doc, buf)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o640
    atomic_write_bytes(path, buf.getvalue().encode("utf-8"), mode=mode)
    return config


# ---------------------------------------------------------------- secrets


def credential_dirs() -> list[Path]:
    """Where credential files are looked for: systemd's, then the ones ``agentos init`` writes."""
    dirs = [Path(p) for p in os.environ.get("CREDENTIALS_DIRECTORY", "").split(":") if p]
    return [*dirs, Path("~/.config/agentos/credentials").expanduser(), Path("/etc/agentos/credentials")]


def secret(name: str, *, env: str | None = None) -> str | None:
    """A secret from ``$ENV`` or the credential file ``name`` (see :func:`credential_dirs`).

    Every secret read here is also given to the process-wide redactor, so it can never appear in a
    log line, a comment or a chat message.
    """
    env_name = env or name.upper()
    value = (os.environ.get(env_name) or "").strip() or None
    for folder in credential_dirs():
        if value is not None:
            break
        file = folder / name
        if file.is_file():
            value = file.read_text(encoding="utf-8").strip() or None
    if value is not None:
        get_default().add(value)
    return value
