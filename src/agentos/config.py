"""The config file: pydantic models, loading with precise errors, and edits that keep comments.

A bad file gives one message per problem, naming the file, the line and the key path::

    agentos.yaml:14: repos[0].test_command: field required

Secrets never live in the YAML: :func:`secret` reads them from the environment or from a credential
file (systemd ``LoadCredential=`` puts those in ``$CREDENTIALS_DIRECTORY``).

Every key needs a short ``Field(description=...)``: the key tables of docs/configuration.md are generated
from them by ``agentos config docs`` (:mod:`agentos.configdoc`), and a test fails when the page is stale.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from agentos.configpath import credential_dirs as credential_dirs
from agentos.configpath import default_paths as default_paths
from agentos.configpath import find_config as find_config
from agentos.errors import AgentosError
from agentos.fsutil import atomic_write_bytes
from agentos.redact import get_default

AgentKind = Literal["claude", "codex", "gemini", "command"]
AutomationMode = Literal["full", "dispatcher_only"]
AutoReady = Literal["none", "approve", "fix_issues", "all"]

SYSTEM_CONFIG_DIR = Path("/etc/agentos")
"""Where the system unit's config lives."""
SYSTEM_STATE_DIR = Path("/var/lib/agentos")
"""Where the system unit keeps its state (``StateDirectory=agentos``)."""

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

    after_create: str | None = Field(
        default=None,
        description="After the worktree is created (for example `pip install -e .`). "
        "A failure is an `environment_failure`.",
    )
    before_run: str | None = Field(default=None, description="Before each agent attempt.")
    after_run: str | None = Field(default=None, description="After each attempt. Failures are logged and ignored.")
    before_remove: str | None = Field(default=None, description="Before the worktree is removed.")
    timeout_s: float = Field(default=300, gt=0, description="The time limit of each hook, in seconds.")


StrictCheck = Literal["stub", "skip_marker", "todo", "commented_code", "mock", "small_diff", "tests_missing"]
"""The stricter verifier's checks (``repos[].verifier.ignore``); docs/pr-monitor.md describes each."""


class VerifierConfig(_Model):
    """The stricter verifier's deterministic checks of a PR's added lines (``repos[].verifier``)."""

    enabled: bool = Field(
        default=True,
        description="`false` turns the stricter checks off (stubs, skip markers, TODOs, commented-out code, mocks "
        "in non-test code, scope). The basic checks (protected paths, secrets, size) always run.",
    )
    ignore: list[StrictCheck] = Field(
        default_factory=list,
        description="Checks not to run, by finding name: `stub`, `skip_marker`, `todo`, `commented_code`, `mock`, "
        "`small_diff`, `tests_missing`.",
    )
    scope_min_criteria: int = Field(
        default=3,
        ge=1,
        description="`small_diff` applies to an issue with at least this many success criteria.",
    )
    min_diff_lines_per_criterion: int = Field(
        default=3,
        ge=0,
        description="`small_diff`: such an issue's PR must change at least this many lines (added + deleted) "
        "per success criterion; `0` turns the check off.",
    )


class RepoConfig(_Model):
    """A repository to work on (``repos[]``)."""

    name: str = Field(
        min_length=1,
        description="Local forge: any name (no spaces, `:` or `\\`, not starting with `-` or `.`). "
        "GitHub: `owner/name`. Names are unique. Commands address a repo by this name "
        "(`agentos config set repos.calc.enabled false`).",
    )
    path: str | None = Field(
        default=None,
        description="Local forge: the repository itself (required). Branches are pushed to it and merges land in "
        "it; if its base branch is checked out, the working tree is updated in place, so keep that tree clean. "
        "GitHub: an optional local clone to fetch from.",
    )
    remote: str | None = Field(
        default=None,
        description="The git remote to clone and push. Default: `path` on the local forge, the GitHub URL on GitHub.",
    )
    base_branch: str = Field(default="main", description="The branch PRs target.")
    test_command: str = Field(
        description="A shell command run in the worktree. It must pass before a PR opens, and again on the "
        "merge result."
    )
    test_timeout_s: float = Field(default=900, gt=0, description="The time limit of `test_command`, in seconds.")
    automation_mode: AutomationMode = Field(
        default="full",
        description="`full` merges a PR once its checks are green. `dispatcher_only` opens PRs and waits for "
        "`agentos ctl approve repo#N`. `agentos init` writes `dispatcher_only`, so a pilot starts with manual review.",
    )
    enabled: bool = Field(
        default=True,
        description="`false` skips the repo (no dispatch, no PR monitoring). "
        "`agentos ctl repo off NAME` does the same at run time.",
    )
    max_parallel: int | None = Field(default=None, ge=1, description="Overrides `max_parallel_per_repo` for this repo.")
    groom_cadence_days: int | None = Field(
        default=None,
        ge=1,
        description="How often the backlog groomer visits this repo, in days; default `loops.groom_cadence_days` "
        "(7). Repos in `dispatcher_only` mode are never groomed.",
    )
    auto_ready: AutoReady | None = Field(
        default=None, description="Overrides `loops.auto_ready` for this repo (`none`, `approve`, `fix_issues`, `all`)."
    )
    hooks: Hooks = Field(default_factory=Hooks, description="Shell commands run in the worktree at fixed moments.")
    project: dict[str, str | int] | None = Field(
        default=None,
        description="A GitHub Projects v2 board: `{owner: my-org, number: 3, status_field: Status}` (`owner` "
        "defaults to the repo's owner; `status_values` maps agentos's statuses to your option names). "
        "See `docs/github.md`.",
    )
    protected_paths: list[str] = Field(
        default_factory=lambda: list(DEFAULT_PROTECTED_PATHS),
        description="Paths an agent's PR may not change without an operator's approval (the verifier marks the PR "
        "high risk, labels and comments why): a pattern ending in `/` is a directory anywhere in the tree, any "
        "other a glob on the path or the file name. `[]` protects nothing.",
    )
    max_diff_lines: int = Field(
        default=2000,
        ge=1,
        description="A PR changing more lines (added + deleted) is high risk and waits for an operator's approval; "
        "over a quarter of it, medium risk.",
    )
    llm_judge: str | None = Field(
        default=None,
        description="An agent name from `agents:` that reviews each green PR's diff once per head commit before "
        "merge. It can only block, never approve alone. `null`: no judge.",
    )
    verifier: VerifierConfig = Field(
        default_factory=VerifierConfig,
        description="The stricter verifier: findings on a PR's added lines hold it for an operator's approval "
        "(`agentos ctl approve repo#N` overrides). See `docs/pr-monitor.md`.",
    )
    max_worktrees: int | None = Field(
        default=None, ge=1, description="At most this many task worktrees for the repo. See `docs/operations.md`."
    )
    max_worktree_disk_mb: int | None = Field(
        default=None,
        ge=1,
        description="The same budget in disk space: the size of everything under the repo's worktrees, measured "
        "by the watchdog every 5 minutes.",
    )
    pass_env: list[str] = Field(
        default_factory=list,
        description="Names of variables copied from the daemon's environment into the hooks and `test_command` "
        "(for example a database URL the tests need). See `docs/security.md`.",
    )
    test_allow_hosts: list[str] = Field(
        default_factory=list,
        description="`host:port` pairs the hooks and `test_command` may reach from their sandbox (a package "
        "registry, say). Empty: no network at all.",
    )

    @field_validator("name")
    @classmethod
    def _name_is_safe(cls, value: str) -> str:
        if value.startswith(("-", ".")) or any(c in value for c in " \t\n\\:"):
            raise ValueError(f"repo name {value!r} may not start with '-' or '.' or contain spaces, ':' or '\\'")
        return value


class AgentConfig(_Model):
    """A coding-agent CLI (``agents.<name>``)."""

    kind: AgentKind = Field(
        description="`claude`, `codex`, `gemini` (agentos knows their command lines, see `docs/agents.md`) "
        "or `command` (any program)."
    )
    binary: str | None = Field(
        default=None, description="The CLI to run, looked up on `PATH` when not absolute. Not for `command`."
    )
    model: str | None = Field(default=None, description="Passed as the CLI's model flag (`--model` or `-m`).")
    argv: list[str] | None = Field(
        default=None,
        description="`command` agents only, and required for them: the program and its arguments, with the "
        "placeholders `{prompt_file}`, `{worktree}` and `{task_id}`.",
    )
    extra_args: list[str] = Field(default_factory=list, description="Appended to the command line.")
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Literal, non-secret variables for the agent. A name that looks like a secret (`…TOKEN`, "
        "`…API_KEY`, `…SECRET`, `…PASSWORD`, `…PRIVATE_KEY`) is refused: list it in `pass_env` instead. "
        "As root, `IS_SANDBOX=1` is added for Claude Code.",
    )
    pass_env: list[str] = Field(
        default_factory=list,
        description="Variables copied from the daemon's environment. Agents get `PATH`, `HOME`, `LANG`, `LC_ALL`, "
        "`TERM`, `TMPDIR`, `USER`, these, and nothing else.",
    )
    prompt_via: Literal["stdin", "file"] | None = Field(
        default=None,
        description="`stdin` or `file`. A `command` agent with `file` reads `{prompt_file}`; "
        "a built-in CLI is told to read the file.",
    )
    cooldown_minutes: float = Field(
        default=60,
        gt=0,
        description="How long an agent that hit a usage limit is skipped when its message states no reset time.",
    )
    max_cost_usd_per_day: float | None = Field(
        default=None,
        gt=0,
        description="A hard daily cap in dollars: past it the agent is paused until the next midnight in "
        'the top-level `timezone` (see "Budgets" in `docs/agents.md`).',
    )
    monthly_warn_usd: float | None = Field(
        default=None,
        gt=0,
        description="A soft monthly level in dollars: past it, one notification per agent and month. "
        "Must be below `monthly_max_usd`.",
    )
    monthly_max_usd: float | None = Field(
        default=None,
        gt=0,
        description="A hard monthly cap in dollars: past it the agent is paused until the first of next month "
        "(its tasks go to the next agent of the chain, or wait), with one notification.",
    )
    monthly_warn_tokens: int | None = Field(
        default=None, gt=0, description="The soft monthly level in tokens (input, cached included, plus output)."
    )
    monthly_max_tokens: int | None = Field(default=None, gt=0, description="The hard monthly cap in tokens.")
    allow_hosts: list[str] = Field(
        default_factory=list,
        description="`host:port` pairs this agent may reach from its sandbox beyond its kind's API host and "
        "`sandbox.allow_hosts`.",
    )
    home: str | None = Field(
        default=None,
        description="A template folder copied into each attempt's private `HOME` in the sandbox: the CLI's login "
        "(`~/.claude`, `~/.codex`, `~/.gemini` after a one-time login). API keys still come only through `pass_env`.",
    )
    ro_paths: list[str] = Field(
        default_factory=list,
        description="More files or folders the agent may read in its sandbox, besides the system folders, its "
        "program and install folder, and every absolute path of a `command` agent's `argv`.",
    )
    ray_resources: dict[str, float] = Field(
        default_factory=dict,
        description="With `runner.kind: ray`: the custom Ray resources a node must offer to run this agent "
        '(`{"claude": 1}` on the nodes where that CLI is installed and logged in), besides `{"agentos": 1}`.',
    )

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


class HealthGate(_Model):
    """Skip an agent that keeps failing one task type (``routing.health_gate``; docs/loops.md)."""

    enabled: bool = Field(
        default=True,
        description="Skip an agent for a task type while its recent success there is at or under a rate below; "
        "when every agent of the chain would be skipped, none is (fail-open, journalled and told once a day).",
    )
    week_max_rate: float = Field(
        default=0.25,
        ge=0,
        le=1,
        description="Skipped when its success over the last 7 days is at or under this share …",
    )
    week_min_attempts: int = Field(
        default=3, ge=1, description="… over at least this many attempts (usage limits, restarts excluded)."
    )
    day_max_rate: float = Field(
        default=0.5, ge=0, le=1, description="Skipped when its success over the last 24 hours is at or under this …"
    )
    day_min_attempts: int = Field(default=10, ge=1, description="… over at least this many attempts.")


class Routing(_Model):
    """Which agents try which task types, and how often (``routing``)."""

    fallbacks: dict[str, list[str]] = Field(
        default_factory=dict,
        description="The chain of agents per task type (`implementation`, `debugging`, `architecture`, `research`, "
        "`docs`, `design`, `content`, `browser_automation`). Each attempt takes the next agent of the chain.",
    )
    default: list[str] = Field(
        default_factory=list,
        description="The chain for task types with no chain of their own. When it is empty too, every agent, "
        "in name order.",
    )
    max_attempts: int = Field(
        default=4,
        ge=1,
        description="Attempts before a task is escalated (label `agentos:blocked`, a comment, a notification). "
        "A usage limit or a daemon restart does not use up an attempt.",
    )
    max_ci_fix_attempts: int = Field(
        default=3,
        ge=0,
        description="How often red CI or a rebase conflict is sent back to an agent; then the task is escalated "
        "and its PR left open with a comment (see `docs/pr-monitor.md`).",
    )
    wedged_after_hours: float = Field(
        default=4,
        ge=0,
        description="A PR blocked on the same blocker for longer than this is closed with a comment, its branch "
        "deleted, and the task restarted from the base as a new generation, once per issue; a second wedge "
        "escalates. `0`: wedged the second time the same blocker is seen.",
    )
    auto_tune: bool = Field(
        default=False,
        description="The weekly `agent_scoring` job proposes chain orders from observed success rates; "
        "with `true` it also writes them into this file (keeping comments).",
    )
    backoff_base_s: float = Field(
        default=10,
        ge=0,
        description="The retry delay is `min(backoff_base_s · 2^(n−1), backoff_cap_s)` after the n-th failure.",
    )
    backoff_cap_s: float = Field(default=300, ge=0, description="The longest retry delay.")
    max_review_rounds: int = Field(
        default=3,
        ge=0,
        description="How often a PR is sent back to an agent for a reviewer's requested changes or a comment "
        "addressed to agentos (`@agentos`, `/agentos`); the next request escalates the task (see "
        "`docs/github.md`).",
    )
    health_gate: HealthGate = Field(
        default_factory=HealthGate,
        description="Rolling success per agent and task type: skip an agent that keeps failing (docs/loops.md).",
    )


class Limits(_Model):
    """Time, log, cost and retention limits (``limits``)."""

    idle_timeout_minutes: float = Field(
        default=10, gt=0, description="An agent that prints nothing for this long is stalled and killed (`timeout`)."
    )
    max_runtime_minutes: float = Field(default=40, gt=0, description="The wall-clock cap of one attempt.")
    kill_grace_s: float = Field(
        default=10, ge=0, description="SIGTERM → this long → SIGKILL for an agent's process group."
    )
    shutdown_grace_s: float = Field(
        default=30,
        ge=0,
        description="On SIGTERM, running attempts get this long to finish. "
        "The unit's `TimeoutStopSec` must exceed it plus `kill_grace_s`.",
    )
    max_log_bytes: int = Field(
        default=20 * 1024 * 1024, ge=1024, description="The agent log cap per attempt (≥ 1024)."
    )
    max_task_cost_usd: float | None = Field(
        default=None,
        gt=0,
        description="A cost ceiling per issue, over every attempt of every generation: once reached, a failed "
        "attempt is not retried and the issue is escalated (`budget_exceeded`) with the figures.",
    )
    max_task_tokens: int | None = Field(
        default=None,
        gt=0,
        description="The same in tokens. An attempt whose CLI reports no cost counts here with its tokens.",
    )
    event_retention_days: int = Field(
        default=90,
        ge=1,
        description="How long rotated event files in `state_dir/events/` are kept; the daily `housekeeping` job "
        "(and each start) deletes older ones.",
    )


class SandboxConfig(_Model):
    """Where agents, hooks and `test_command` run (``sandbox``): see `docs/security.md`."""

    mode: Literal["bubblewrap", "off"] = Field(
        default="bubblewrap",
        description="`bubblewrap`: every agent attempt, hook and `test_command` runs in its own bubblewrap sandbox "
        "(its worktree read-write, system folders read-only, a private `HOME` and `/tmp`, no network but the "
        "allowlist, resource limits); without a usable `bwrap` no attempt starts. `off`: they run unconfined as "
        "the daemon's user.",
    )
    allow_hosts: list[str] = Field(
        default_factory=list,
        description="`host:port` pairs every agent may reach, beyond its kind's API host.",
    )
    memory_mb: int = Field(
        default=4096,
        ge=64,
        description="The memory limit of one attempt, all its processes together, in MiB (a cgroup). Over it, "
        "the kernel kills the attempt and it fails as `resource_limit`.",
    )
    max_processes: int = Field(
        default=512, ge=8, description="The most processes one attempt may run at once (a cgroup's pid limit)."
    )
    cpus: float | None = Field(
        default=None,
        gt=0,
        description="The CPU time one attempt may use, in cores (`1.5`: one and a half cores; a cgroup quota). "
        "Empty: no CPU limit.",
    )
    tmp_mb: int = Field(
        default=1024, ge=1, description="The size of each sandbox's private `/tmp` (a memory-backed tmpfs), in MiB."
    )


class RunnerConfig(_Model):
    """Where attempts run (``runner``): this machine, or a Ray cluster (`docs/scale-out.md`)."""

    kind: Literal["local", "ray"] = Field(
        default="local",
        description="`local`: every attempt runs on this machine (in its sandbox). `ray`: each attempt runs as a "
        "detached actor on a node of a Ray cluster (`pip install 'agentos[ray]'`), placed by resources; the "
        "daemon still holds the forge, the credentials and the task graph.",
    )
    address: str = Field(
        default="auto",
        description="The Ray cluster: `auto` (the cluster this machine's `ray start` joined), `host:port` of its "
        "head (GCS), or `ray://head:10001` (Ray Client).",
    )
    namespace: str = Field(default="agentos", description="The Ray namespace the attempts' named actors live in.")
    fallback_local: bool = Field(
        default=False,
        description="While the cluster cannot be reached, run attempts on this machine instead of waiting for it.",
    )


class JobConfig(_Model):
    """An override of one job's built-in trigger (``jobs.<name>``)."""

    enabled: bool = Field(
        default=True,
        description="`false` never runs the job (`agentos ctl job off NAME` does the same at run time).",
    )
    cron: str | None = Field(
        default=None,
        description='Five fields: minute hour day month weekday, e.g. `"*/5 * * * *"`, in the top-level `timezone`.',
    )
    interval_s: float | None = Field(
        default=None, gt=0, description="Every this many seconds. Give `cron` or `interval_s`, not both."
    )

    @model_validator(mode="after")
    def _one_trigger(self) -> JobConfig:
        if self.cron and self.interval_s:
            raise ValueError("give either cron or interval_s, not both")
        if self.cron and len(self.cron.split()) != 5:
            raise ValueError(f"cron {self.cron!r} must have 5 fields: minute hour day month weekday")
        return self


class TelegramConfig(_Model):
    """The Telegram bot (``telegram``)."""

    enabled: bool = Field(default=False, description="Start the bot. It needs the bot token (§3).")
    allowed_chat_ids: list[int] = Field(
        default_factory=list,
        description="The only chats the bot answers (private chats or groups). `agentos init` fills it by pairing.",
    )
    api_base: str | None = Field(
        default=None,
        description="Another Bot API server, e.g. a local `telegram-bot-api`. Default `https://api.telegram.org`.",
    )
    digest_hour: int = Field(
        default=8, ge=0, le=23, description="The hour (0–23) of the daily digest, in the top-level `timezone`."
    )


class GitHubWebhookConfig(_Model):
    """GitHub's webhook deliveries (``github.webhook``): ``POST /github/webhook`` pokes the job an event is about.

    Optional: polling stays, so a lost delivery changes nothing. Enabled without its secret, the daemon refuses
    to start (exit 78): an unsigned endpoint would let anyone poke it.
    """

    enabled: bool = Field(
        default=False,
        description="Serve `POST /github/webhook`: a signed delivery runs the job it is about at once (readiness "
        "poll, PR monitor) instead of at the next poll. See `docs/github.md` §7b.",
    )
    host: str = Field(
        default="127.0.0.1",
        min_length=1,
        description="The address to bind. Keep `127.0.0.1` behind a reverse proxy that terminates TLS.",
    )
    port: int = Field(
        default=8788,
        ge=0,
        le=65535,
        description="The TCP port (`0`: any free port; the address is logged as `github_webhook_started`). "
        "Not the status page's `8787`.",
    )
    secret_credential: str = Field(
        default="github_webhook_secret",
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="The secret shared with GitHub: the credential file of this name, or the variable of its "
        "upper-case name (`GITHUB_WEBHOOK_SECRET`). `agentos init` makes one.",
    )


class GitHubConfig(_Model):
    """The GitHub forge (``github``), needed when ``forge: github``."""

    api_url: str = Field(
        default="https://api.github.com",
        description="The REST API. GitHub Enterprise: `https://HOST/api/v3`.",
    )
    git_url: str | None = Field(
        default=None,
        description="Where `git` pushes. Default: derived from `api_url` (`https://github.com` for github.com).",
    )
    ready_label: str = Field(default="agentos:ready", description="The label that makes an issue ready.")
    trusted_permission: Literal["read", "triage", "write", "maintain", "admin"] = Field(
        default="triage",
        description="The least repository permission (`read`, `triage`, `write`, `maintain`, `admin`) of whoever "
        "makes an issue ready; readiness set by anyone else is ignored.",
    )
    checks_grace_s: float = Field(
        default=120,
        ge=0,
        description="A PR head with no checks at all counts as pending for this long after the PR's last update, "
        "so CI has time to report.",
    )
    app_id: int | None = Field(
        default=None,
        description="Authenticate as a GitHub App instead of a token (with `installation_id` and the "
        "`github_app_key` secret).",
    )
    installation_id: int | None = Field(default=None, description="The App's installation.")
    poll_interval_s: float = Field(default=60, gt=0, description="How often ready issues are polled.")
    webhook: GitHubWebhookConfig = Field(
        default_factory=GitHubWebhookConfig,
        description="Webhook deliveries that poke the readiness poll and the PR monitor at once (off by default).",
    )


class StatusPageConfig(_Model):
    """The read-only status page, JSON API and Prometheus metrics the daemon serves (docs/operations.md).

    Off by default. On ``127.0.0.1`` (or ``::1``, ``localhost``) no token is needed; any other ``host``
    needs the bearer token in the credential ``token_credential`` (or ``$STATUS_PAGE_TOKEN``), or the
    daemon refuses to start. When a token is set, every request must carry it.
    """

    enabled: bool = Field(
        default=False,
        description="Serve `GET /` (the page), `GET /api/status` (JSON) and `GET /metrics` (Prometheus text).",
    )
    host: str = Field(
        default="127.0.0.1",
        min_length=1,
        description="The address to bind. Any address other than `127.0.0.1`, `::1` or `localhost` needs a token, "
        "or the daemon refuses to start (exit 78).",
    )
    port: int = Field(
        default=8787,
        ge=0,
        le=65535,
        description="The TCP port (`0`: any free port; the address is logged as `status_page_started`).",
    )
    token_credential: str = Field(
        default="status_page_token",
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="The secret holding the bearer token: the credential file of this name, or the variable of its "
        "upper-case name (`STATUS_PAGE_TOKEN`). When a token is set, every request needs "
        "`Authorization: Bearer TOKEN`.",
    )
    window_days: int = Field(
        default=7,
        ge=1,
        description="How far back the page and metrics look for merges, escalations and per-agent success rates.",
    )


class LoopsConfig(_Model):
    """The improvement loops (docs/loops.md): thresholds, cadences, and what they may do on their own."""

    incident_threshold: int = Field(
        default=3,
        ge=1,
        description="A failure signature seen this many times in the window files an `autonomous-fix` issue.",
    )
    incident_window_hours: float = Field(default=24, gt=0, description="The incident scanner's window.")
    fix_label: str = Field(
        default="autonomous-fix", description="The label of issues the loops file about agentos's own failures."
    )
    analysis_days: int = Field(default=7, ge=1, description="The log analyzer's and agent scorer's window.")
    report_repo: str | None = Field(
        default=None, description="Where the weekly report issue goes (default: the first enabled repo)."
    )
    min_attempts: int = Field(
        default=3, ge=1, description="Attempts an agent needs on a task type before it is judged or moved."
    )
    peer_gap: float = Field(
        default=0.3,
        ge=0,
        le=1,
        description='An agent this far below its peers\' success rate on a type is a "weak agent" finding (0–1).',
    )
    max_fix_issues: int = Field(default=3, ge=0, description="Fix issues filed per analysis, worst findings first.")
    tune_margin: float = Field(
        default=0.1,
        ge=0,
        description="How much better an agent must do before the scorer proposes moving it up a chain.",
    )
    groom_cadence_days: int = Field(
        default=7, ge=1, description="How often each repo is groomed (a repo's own `groom_cadence_days` wins)."
    )
    stale_days: int = Field(
        default=30, ge=1, description="An issue with no activity this long is labelled `agentos:stale`."
    )
    close_stale_days: int | None = Field(
        default=None,
        ge=1,
        description="Close a stale issue this many days after the stale comment (default: never).",
    )
    duplicate_ratio: float = Field(
        default=0.9,
        gt=0,
        le=1,
        description="Titles this alike (0–1) mark the newer issue `agentos:duplicate`. Nothing is closed.",
    )
    reready_codes: list[str] = Field(
        default_factory=lambda: ["quota_limited", "runner_failure", "timeout", "environment_failure"],
        description="Blocker triage: escalations with these blocker codes are transient, made ready again later.",
    )
    reready_after_hours: float = Field(
        default=24, ge=0, description="The cooldown: how long after such an escalation the issue is made ready again."
    )
    max_rereadies: int = Field(default=2, ge=0, description="At most this many times per issue.")
    target_backlog_depth: int | None = Field(
        default=None,
        ge=0,
        description="The groomer files candidates while the backlog is below this many open issues "
        "(default: 2 × `plan_size`; 0: it files none).",
    )
    groom_max_per_run: int = Field(default=3, ge=1, description="Candidates the groomer files per run at most.")
    dedup_closed_days: int = Field(
        default=30, ge=0, description="A candidate like an issue closed this recently is not filed (a pointer instead)."
    )
    objectives_file: str = Field(
        default="OBJECTIVES.md", description="The file in the repo the refill and the sprint planner read."
    )
    sprint_enabled: bool = Field(
        default=False,
        description="Let the sprint planner propose a plan each sprint (applied on approval, or at once with "
        "`sprint_auto_approve`). Off by default: ready issues make agents run.",
    )
    sprint_cadence_days: int = Field(default=7, ge=1, description="The sprint length.")
    plan_size: int = Field(default=5, ge=1, description="Issues picked per sprint.")
    digest_window_hours: float = Field(default=24, gt=0, description="What the daily digest covers.")
    llm_agent: str | None = Field(
        default=None,
        description="An agent from `agents` used to name incidents, propose refill issues, pick sprint plans and judge "
        "`kind: prose` objectives; without it the loops stay deterministic.",
    )
    context_files: list[str] = Field(
        default_factory=lambda: [
            "README.md",
            "NORTH_STAR.md",
            "STRATEGY.md",
            "PLANNING_PRINCIPLES.md",
            "OBJECTIVES.md",
            "objectives.yaml",
        ],
        description="The product context: files read from each repo's base branch (paths in the repo; missing ones "
        "are skipped) and quoted, fenced as untrusted, in every worker prompt and the groomer's question. Of a "
        "`README*` only its goal section is kept. `[]`: no context. See `docs/loops.md`.",
    )
    context_file_chars: int = Field(
        default=6000, ge=100, description="Each context file is cut to this many characters."
    )
    context_max_chars: int = Field(
        default=20000,
        ge=0,
        description="All context files together are cut to this many characters (later files first). A worker "
        "prompt over its size limit leaves the context out before it cuts `CODEBASE.md`.",
    )
    objective_url_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts an `objectives.yaml` metric may name in its HTTPS `url`; a metric on any other host "
        "makes the file invalid. Plain `http://` only for a loopback host named here (`127.0.0.1`, `localhost`).",
    )
    measurement_window_days: float = Field(
        default=7,
        gt=0,
        description="How long after a merge the `outcome_check` job reads the `objectives.yaml` metrics again and "
        "compares them with the baseline read at the merge (docs/loops.md, outcome attribution).",
    )
    outcome_noise_pct: float = Field(
        default=5,
        ge=0,
        description="A metric that moved by at most this percent of its baseline is `unchanged`; beyond it, "
        "`improved` or `regressed` by the metric's direction.",
    )
    outcome_timeout_s: float = Field(
        default=300, gt=0, description="Time limit of one metric `command` (and 30 s at most per metric `url`)."
    )
    sprint_auto_approve: bool = Field(
        default=False,
        description="Apply each sprint plan at once instead of asking the operator (Approve / Skip) first.",
    )
    sprint_approval_hours: float = Field(
        default=24,
        gt=0,
        description="A sprint plan nobody approved in this many hours is skipped (its picks are not offered again).",
    )
    auto_ready: AutoReady = Field(
        default="none",
        description="Which loop-filed issues reach the queue by themselves: `none`; `approve` (a notice with "
        "Make ready / Dismiss); `fix_issues` (incident and finding fix issues are made ready); `all` (also the "
        "groomer's proposed issues). A repo's own `auto_ready` wins.",
    )
    auto_ready_per_day: int = Field(
        default=3,
        ge=0,
        description="At most this many issues made ready by `auto_ready` per repo in 24 h; more wait for a tap.",
    )
    normalise: bool = Field(
        default=False,
        description="Before a terse ready issue runs (no success criteria and under `normalise_max_words` words), "
        "ask `llm_agent` once for its goal, criteria, constraints, type and agent. It only fills what the issue "
        "leaves out (`type:`/`agent:` labels and `Type:`/`Agent:` lines win); a bad answer leaves the issue as filed.",
    )
    normalise_max_words: int = Field(
        default=40, ge=1, description="An issue body under this many words (and no criteria) counts as terse."
    )
    split_epics: bool = Field(
        default=True,
        description="With `llm_agent` set, a ready issue labelled `epic` (or one the normaliser judges too big) is "
        "split into at most 5 ready sub-issues (`Part of #N`, each `Depends on` the one before) instead of being "
        "worked on; it closes when every part merged.",
    )


class AcceptanceConfig(_Model):
    """Acceptance checks after a merge (an issue's ``## Acceptance`` section; docs/pr-monitor.md)."""

    url_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts an acceptance `url:` check may fetch (exact names, e.g. `status.example.com`); a URL "
        "on any other host fails its check and escalates the task.",
    )
    timeout_s: float = Field(
        default=600, gt=0, description="Time limit of one acceptance `command:` (and 30 s at most per `url:`)."
    )
    max_fix_attempts: int = Field(
        default=2,
        ge=0,
        description="How many new generations a failed acceptance check may start before the task escalates.",
    )


class Config(_Model):
    """The whole file. docs/configuration.md's key tables are generated from these descriptions (configdoc.py)."""

    state_dir: str = Field(
        default="~/.local/state/agentos",
        description="Where the task graph (`graph.json`, `journal.jsonl`), rotated events, agent logs (`runs/`), "
        "worktrees and the local forge live. Under systemd, when it is left at this default, `$STATE_DIRECTORY` "
        "is used instead (`/var/lib/agentos` for the system unit).",
    )
    forge: Literal["local", "github"] = Field(
        default="local",
        description="Where issues and pull requests live: `local` (Markdown and JSON files under `state_dir`, "
        "no tokens) or `github` (then see `github`).",
    )
    max_parallel_workers: int = Field(
        default=2, ge=1, description="How many agents run at once, across all repositories (≥ 1)."
    )
    max_parallel_per_repo: int = Field(
        default=2,
        ge=1,
        description="How many agents run at once in one repository (≥ 1); "
        "`repos[].max_parallel` overrides it per repo.",
    )
    timezone: str = Field(
        default="UTC",
        description="The IANA zone (`Europe/Berlin`) of every cron trigger in the job table (`0 8 * * *` is 08:00 "
        "there, across DST changes), of the daily digest's date, and of the midnights and firsts of the month "
        "that start the agents' daily and monthly budgets.",
    )
    repos: list[RepoConfig] = Field(default_factory=list, description="The repositories to work on (§2.1).")
    agents: dict[str, AgentConfig] = Field(
        default_factory=dict, description="The coding-agent CLIs, by a name you choose (§2.2)."
    )
    routing: Routing = Field(
        default_factory=Routing, description="Which agents try which task types, and how often."
    )
    limits: Limits = Field(default_factory=Limits, description="Time, log, cost and retention limits.")
    sandbox: SandboxConfig = Field(
        default_factory=SandboxConfig,
        description="The sandbox every agent attempt, hook and `test_command` runs in (`docs/security.md`).",
    )
    runner: RunnerConfig = Field(
        default_factory=RunnerConfig, description="Where attempts run: this machine or a Ray cluster (§2.12)."
    )
    jobs: dict[str, JobConfig] = Field(
        default_factory=dict, description="Per-job overrides of the job table (§2.5)."
    )
    telegram: TelegramConfig = Field(default_factory=TelegramConfig, description="The Telegram bot.")
    github: GitHubConfig | None = Field(default=None, description="Needed when `forge: github` (§2.7).")
    loops: LoopsConfig = Field(
        default_factory=LoopsConfig,
        description="The improvement loops: thresholds, cadences, and what they may do on their own.",
    )
    status_page: StatusPageConfig = Field(
        default_factory=StatusPageConfig,
        description="The read-only status page, JSON API and Prometheus metrics (off by default).",
    )
    acceptance: AcceptanceConfig = Field(
        default_factory=AcceptanceConfig,
        description="Acceptance checks after a merge: allowed URL hosts, the command time limit, the fix budget.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info",
        description="`debug`, `info`, `warning` or `error`. Logs are JSON lines on journald, "
        "or a console format on a terminal.",
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (an IANA name such as UTC or Europe/Berlin)") from None
        return value

    @property
    def zone(self) -> ZoneInfo:
        """:attr:`timezone` as a ``ZoneInfo`` (cached by zoneinfo, so cheap to call per tick)."""
        return ZoneInfo(self.timezone)

    _unit_state: Path | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _unit_state_dir(self, info: ValidationInfo) -> Config:
        """Read from the system config (``load_config``'s ``source`` context) with ``state_dir`` at its default
        while the system unit's state directory exists: that directory (decided once, at load)."""
        source = (info.context or {}).get("source")
        if self.state_dir != Config.model_fields["state_dir"].default:
            self._unit_state = None  # also when an assignment (validate_assignment) sets a state_dir
        elif source is not None:
            system = Path(source).absolute().is_relative_to(SYSTEM_CONFIG_DIR) and SYSTEM_STATE_DIR.is_dir()
            self._unit_state = SYSTEM_STATE_DIR if system else None
        return self

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
        """The state directory: the one resolution every command and the daemon use.

        ``$STATE_DIRECTORY`` (set by the systemd unit) when ``state_dir`` is left at its default; then, for
        a config read from :data:`SYSTEM_CONFIG_DIR` that leaves it at its default, the system unit's
        :data:`SYSTEM_STATE_DIR` when that existed at load (so ``sudo agentos issue new`` outside the unit
        writes where the unit reads); else ``state_dir`` itself.
        """
        env = os.environ.get("STATE_DIRECTORY")
        if env and self.state_dir == Config.model_fields["state_dir"].default:
            return Path(env.split(":")[0])
        return self._unit_state or Path(self.state_dir).expanduser()

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


def _line_of(doc: Any, loc: Sequence[int | str]) -> int | None:
    """The 1-based line of the deepest node on ``loc`` that the YAML document knows."""
    node, line = doc, None
    for key in loc:
        if isinstance(node, CommentedMap) and key in node:
            pos = _position(node.lc.key, key)
            node = node[key]
        elif isinstance(node, CommentedSeq) and isinstance(key, int) and 0 <= key < len(node):
            pos = _position(node.lc.item, key)
            node = node[key]
        else:
            break
        if pos is None:  # a key added by `config set`, not read from the file: its parent's line, if any
            return line
        line = pos[0] + 1
    if line is None and isinstance(doc, CommentedMap):
        line = 1
    return line


def _position(lookup: Any, key: Any) -> tuple[int, int] | None:
    try:
        pos = lookup(key)
    except (KeyError, IndexError, TypeError):
        return None
    return (int(pos[0]), int(pos[1])) if pos else None


def _known_keys(loc: Sequence[int | str]) -> list[str]:
    """The keys the config's models allow inside ``loc`` (``agents.claude`` → the keys of an agent)."""
    from typing import get_args, get_origin

    def unwrap(annotation: Any) -> Any:
        args = [a for a in get_args(annotation) if a is not type(None)]
        return args[0] if type(None) in get_args(annotation) and len(args) == 1 else annotation

    model: Any = Config
    for part in loc:
        if get_origin(model) in (list, dict):
            model = unwrap(get_args(model)[-1])
        elif isinstance(model, type) and issubclass(model, BaseModel) and isinstance(part, str):
            field = model.model_fields.get(part)
            if field is None:
                return []
            model = unwrap(field.annotation)
        else:
            return []
    return list(model.model_fields) if isinstance(model, type) and issubclass(model, BaseModel) else []


def _key_path(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _message(err: Any, loc: Sequence[int | str]) -> str:
    kind, msg = err["type"], err["msg"]
    if kind == "missing":
        return "field required"
    if kind == "extra_forbidden":
        import difflib

        close = difflib.get_close_matches(str(loc[-1]), _known_keys(loc[:-1]), n=1)
        hint = f"did you mean {close[0]}?" if close else "check the spelling"
        return f"unknown key; {hint} (every key: docs/configuration.md)"
    return str(msg).removeprefix("Value error, ")


def validate_document(doc: Any, name: str, source: Path | None = None) -> Config:
    """Validate a parsed YAML document, turning pydantic errors into ``file:line: key: problem``.

    ``source`` is the file it was read from, when it was (see :attr:`Config.state_path`).
    """
    if doc is None:
        doc = CommentedMap()
    if not isinstance(doc, dict):
        raise ConfigError([f"{name}:1: the file must be a mapping of keys (found {type(doc).__name__})"])
    try:
        return Config.model_validate(doc, context={"source": source})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith(("function-", "literal[")))]
            line = _line_of(doc, loc[:-1] if err["type"] == "missing" else loc)
            where = f"{name}:{line}" if line else name
            problems.append(f"{where}: {_key_path(loc)}: {_message(err, loc)}")
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
    return parse_config(text, str(found), found), found


def parse_config(text: str, name: str = "config.yaml", source: Path | None = None) -> Config:
    try:
        doc = _yaml().load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError([f"{name}{line}: invalid YAML: {problem}"]) from None
    except Exception as exc:  # ruamel raises KeyError on "%YAML 0.0", RecursionError on deep nesting…
        raise ConfigError([f"{name}: invalid YAML: {type(exc).__name__}: {exc}"[:300]]) from None
    return validate_document(doc, name, source)


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
    return set_values(path, [(key, raw_value)])


def set_values(path: Path, edits: Sequence[tuple[str, str | Any]]) -> Config:
    """Set several keys at once (:func:`set_value`), validated together: ``agents.p.kind command`` needs its
    ``agents.p.argv`` in the same edit. A missing key is added (with its missing parents); an edit that
    leaves the file invalid raises :class:`ConfigError` naming the key, and changes nothing.
    """
    yaml = _yaml()
    try:
        text = path.read_text(encoding="utf-8") if path.exists() else ""
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read: {exc}"]) from None
    try:
        doc = yaml.load(text) if text.strip() else CommentedMap()
    except YAMLError as exc:
        raise ConfigError([f"{path}: invalid YAML: {getattr(exc, 'problem', None) or exc}"]) from None
    if not isinstance(doc, CommentedMap):
        raise ConfigError([f"{path}:1: the file must be a mapping of keys"])
    for key, raw_value in edits:
        _set_in(doc, path, key, _coerce(raw_value) if isinstance(raw_value, str) else raw_value)
    config = validate_document(doc, str(path), path)
    buf = io.StringIO()
    yaml.dump(doc, buf)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o640
    try:
        atomic_write_bytes(path, buf.getvalue().encode("utf-8"), mode=mode)
    except OSError as exc:
        raise ConfigError([f"{path}: cannot write: {exc.strerror or exc}"]) from None
    return config


def _set_in(doc: CommentedMap, path: Path, key: str, value: Any) -> None:
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
        if isinstance(node, dict) and isinstance(part, str) and node.get(part) is None:
            node[part] = CommentedMap()  # a missing section (or an empty `key:`) is added
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            raise ConfigError([f"{path}: {_key_path(parts[: i + 1])}: no such key"]) from None
    last = parts[-1]
    if isinstance(node, list) and isinstance(last, int) and last == len(node):
        node.append(value)  # repos[N] with N the length: a new entry
        return
    if isinstance(node, list):
        if not (isinstance(last, int) and 0 <= last < len(node)):
            raise ConfigError([f"{path}: {_key_path(parts)}: no such entry"])
        node[last] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ConfigError([f"{path}: {_key_path(parts)}: {_key_path(parts[:-1])} holds a value, not keys"])


# ---------------------------------------------------------------- secrets


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
