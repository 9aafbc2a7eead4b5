"""``agentos init``, part 1: the answers (:class:`Plan`), the questions (:class:`Asker`) and the repositories.

Every question has a flag; with ``--yes`` a question takes its default or stops naming the flag to give.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.markup import escape

from agentos.cli._common import console, err_console

KNOWN_AGENTS = ("claude", "codex", "gemini")
AGENT_KINDS = (*KNOWN_AGENTS, "command")
AGENT_DEFAULTS: dict[str, dict[str, Any]] = {
    "claude": {"kind": "claude", "pass_env": ["ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN"]},
    "codex": {"kind": "codex", "pass_env": ["OPENAI_API_KEY"]},
    "gemini": {"kind": "gemini", "pass_env": ["GEMINI_API_KEY", "GOOGLE_API_KEY"]},
}
LABELS: tuple[tuple[str, str, str], ...] = (
    ("agentos:ready", "0e8a16", "agentos may work on this issue"),
    ("agentos:running", "1d76db", "an agent is working on this issue"),
    ("agentos:blocked", "d93f0b", "agentos escalated: a person is needed"),
    ("agentos:review", "fbca04", "a PR waits for review (dispatcher_only)"),
)
MODE_COMMENT = "full: merge on green | dispatcher_only: PRs wait for `agentos ctl approve`"


class InitError(Exception):
    """A step of the wizard failed in a way the operator must fix; nothing more is written."""


def stop(message: str, code: int = 1) -> NoReturn:
    err_console.print(f"[red]agentos init:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


# ---------------------------------------------------------------- answers


@dataclass
class RepoPlan:
    """One repository to add or update; ``None`` fields keep what the config has."""

    name: str
    path: str | None = None
    test_command: str | None = None
    automation_mode: str | None = None
    base_branch: str | None = None


@dataclass
class AgentPlan:
    """One agent to add: a built-in CLI (``kind`` claude, codex or gemini) or any program (``command``)."""

    name: str
    kind: str
    argv: list[str] | None = None


@dataclass
class Plan:
    """Everything ``agentos init`` writes into the config."""

    forge: str = "local"
    state_dir: str | None = None
    repos: list[RepoPlan] = field(default_factory=list)
    agents: list[AgentPlan] = field(default_factory=list)
    automation_mode: str = "dispatcher_only"
    max_parallel_workers: int | None = None
    dispatch_interval_s: float | None = None
    groom_cadence_days: int | None = None
    github_api_url: str | None = None
    github_app_id: int | None = None
    github_installation_id: int | None = None
    telegram_chat_ids: list[int] = field(default_factory=list)
    telegram_api_base: str | None = None
    timezone: str | None = None
    status_page_enabled: bool | None = None
    status_page_host: str | None = None
    status_page_port: int | None = None


class Asker:
    """Questions with defaults; with ``--yes`` every question takes its default (or fails naming its flag)."""

    def __init__(self, interactive: bool) -> None:
        self.interactive = interactive

    def text(self, question: str, default: str | None, *, flag: str, hide: bool = False, empty: bool = False) -> str:
        if not self.interactive:
            if default is None and not empty:
                stop(f"{question}: give {flag} (or run without --yes to be asked)")
            return default or ""
        while True:
            answer = str(
                typer.prompt(
                    question,
                    default=default if default is not None else ("" if empty else None),
                    hide_input=hide,
                    show_default=not hide and bool(default),
                )
            ).strip()
            if answer or empty:
                return answer
            console.print("an answer is needed")

    def choice(self, question: str, choices: tuple[str, ...], default: str, *, flag: str) -> str:
        while True:
            answer = self.text(f"{question} ({'|'.join(choices)})", default, flag=flag)
            if answer in choices:
                return answer
            if not self.interactive:
                stop(f"{flag} must be one of {', '.join(choices)}, not {answer!r}")
            console.print(f"one of: {', '.join(choices)}")

    def integer(self, question: str, default: int | None, *, flag: str, empty: bool = False) -> int | None:
        while True:
            answer = self.text(question, None if default is None else str(default), flag=flag, empty=empty)
            if not answer and empty:
                return None
            if answer.isdigit() and int(answer) >= 1:
                return int(answer)
            if not self.interactive:
                stop(f"{flag} must be a whole number ≥ 1, not {answer!r}")
            console.print("a whole number ≥ 1")

    def confirm(self, question: str, default: bool) -> bool:
        return bool(typer.confirm(question, default=default)) if self.interactive else default


# ---------------------------------------------------------------- time zone


def zone_problem(name: str) -> str | None:
    """Why ``name`` is not an IANA zone this machine knows, or None when it is one."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {name!r} (an IANA name such as UTC or Europe/Berlin)"
    return None


def detect_timezone(localtime: Path = Path("/etc/localtime")) -> str:
    """This machine's zone: ``$TZ``, else the ``/etc/localtime`` link's target under ``zoneinfo/``, else UTC."""
    candidates = []
    tz = os.environ.get("TZ", "").strip().removeprefix(":")
    if tz:
        candidates.append(tz.split("zoneinfo/", 1)[1] if "zoneinfo/" in tz else tz)
    if localtime.is_symlink():
        target = os.readlink(localtime)  # the link itself: zoneinfo may alias Europe/Berlin further
        if "zoneinfo/" in target:
            candidates.append(target.split("zoneinfo/", 1)[1])
    return next((c for c in candidates if not c.startswith("/") and zone_problem(c) is None), "UTC")


# ---------------------------------------------------------------- repositories


def detect_test_command(path: Path) -> str | None:
    """A guess at a repository's test command from the files it has."""
    makefile = path / "Makefile"
    if makefile.is_file() and re.search(r"(?m)^test\s*:", makefile.read_text(errors="replace")):
        return "make test"
    if any((path / f).exists() for f in ("pyproject.toml", "setup.py", "setup.cfg", "pytest.ini", "tox.ini")):
        return "python3 -m pytest -q"
    if (path / "package.json").is_file():
        return "npm test"
    if (path / "Cargo.toml").is_file():
        return "cargo test"
    if (path / "go.mod").is_file():
        return "go test ./..."
    return None


def detect_base_branch(path: Path) -> str | None:
    """``main`` when the repository has it, else the branch checked out (``master``, ``trunk``…)."""
    git = shutil.which("git")
    if git is None or not path.is_dir():
        return None

    def run(*args: str) -> str | None:
        try:
            res = subprocess.run([git, "-C", str(path), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return (res.stdout.strip() or None) if res.returncode == 0 else None

    if run("rev-parse", "--verify", "--quiet", "refs/heads/main") is not None:
        return "main"
    return run("symbolic-ref", "--quiet", "--short", "HEAD")


def safe_repo_name(path: Path) -> str:
    name = re.sub(r"[\s:\\]+", "-", path.resolve().name).lstrip("-.")
    return name or "repo"


def parse_repo_spec(spec: str, forge: str) -> RepoPlan:
    """``PATH``, ``NAME:PATH`` or ``NAME:PATH:TEST COMMAND`` (GitHub: ``OWNER/NAME[:CLONE PATH[:TEST]]``)."""
    parts = spec.split(":", 2)
    test = parts[2].strip() if len(parts) > 2 and parts[2].strip() else None
    if forge == "github":
        name, path = parts[0].strip(), (parts[1].strip() if len(parts) > 1 else "") or None
        if not re.fullmatch(r"[\w.-]+/[\w.-]+", name):
            raise InitError(f"--repo {spec!r}: a GitHub repo is OWNER/NAME[:CLONE PATH[:TEST COMMAND]]")
        return RepoPlan(name, path, test)
    if len(parts) == 1:
        path_only = Path(parts[0]).expanduser()
        return RepoPlan(safe_repo_name(path_only), str(path_only.absolute()), None)
    name, path = parts[0].strip(), parts[1].strip()
    if not name or not path:
        raise InitError(f"--repo {spec!r}: a local repo is PATH, NAME:PATH or NAME:PATH:TEST COMMAND")
    return RepoPlan(name, str(Path(path).expanduser().absolute()), test)


def complete_repo(plan: RepoPlan, existing: dict[str, dict[str, Any]], default_test: str | None) -> RepoPlan:
    """Fill a new repo's test command (flag, then a guess from its files) and base branch (its checkout)."""
    if plan.name in existing:
        return plan
    path = Path(plan.path) if plan.path else None
    if plan.test_command is None:
        plan.test_command = default_test or (detect_test_command(path) if path else None)
        if plan.test_command is None:
            raise InitError(f"repo {plan.name}: no test command; give NAME:PATH:TEST COMMAND or --test-command")
    if plan.base_branch is None and path is not None:
        plan.base_branch = detect_base_branch(path)
    return plan


# ---------------------------------------------------------------- agents


def parse_agent_spec(spec: str, configured: tuple[str, ...] = ()) -> AgentPlan:
    """``NAME`` (a built-in CLI, or an agent the config has), ``NAME:KIND`` or ``NAME:command:COMMAND LINE``.

    The command line is split like a shell would; it may use ``{prompt_file}``, ``{worktree}`` and
    ``{task_id}``. A ``command`` agent given without one has ``argv`` None: the wizard asks for it.
    """
    name, _, rest = (part.strip() for part in spec.strip().partition(":"))
    kind, _, command = (part.strip() for part in rest.partition(":"))
    if not name or not re.fullmatch(r"[\w.-]+", name):
        raise InitError(f"--agent {spec!r}: an agent is NAME, NAME:KIND or NAME:command:COMMAND LINE")
    if not kind:
        if name in configured:
            return AgentPlan(name, "")  # already in the config: left as it is
        if name not in KNOWN_AGENTS:
            raise InitError(
                f"--agent {spec!r}: unknown agent; give one of {', '.join(KNOWN_AGENTS)}, "
                f"or NAME:command:COMMAND LINE for any other program"
            )
        kind = name
    if kind not in AGENT_KINDS:
        raise InitError(f"--agent {spec!r}: the kind is one of {', '.join(AGENT_KINDS)}, not {kind!r}")
    if command and kind != "command":
        raise InitError(f"--agent {spec!r}: only a command agent takes a command line")
    argv = None
    if command:
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            raise InitError(f"--agent {spec!r}: the command line does not parse: {exc}") from None
    return AgentPlan(name, kind, argv or None)
