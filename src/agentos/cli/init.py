"""``agentos init``: from ``pip install`` to a supervised pilot in one command.

The wizard asks, and every answer is also a flag (``--yes`` takes flags and defaults only, for scripts):

1. checks git and the agent CLIs (``claude``, ``codex``, ``gemini``: ``--version`` with a time limit);
2. the forge, the repositories and their test commands, the agents, the automation mode (default
   ``dispatcher_only``: PRs wait for your approval, as a careful pilot should), workers and cadence;
3. GitHub: verifies the token (``GET /user``, each repo) and offers to create the ``agentos:*`` labels;
4. Telegram: reads the chat id of a ``/start`` sent to the bot (``getUpdates``);
5. writes tokens to a credentials directory (0600 files, never the YAML), then the config: a new file
   from a commented template, or a merge into the existing one that keeps every key and comment, after
   a timestamped backup; the result is validated before anything is written;
6. installs the systemd unit (system, or ``--user``) with a drop-in for the config path and credentials,
   and prints the one command that starts it.

Running it again is safe: repos are matched by name, agents and chat ids are added once, labels that
exist are left alone, and an unchanged config is not rewritten. Values already in the config are the
defaults of the questions, so a re-run only changes what you change.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from rich.markup import escape

from agentos.cli._common import console, err_console

if TYPE_CHECKING:
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap

    from agentos.cli.doctor import Probe
    from agentos.config import Config

KNOWN_AGENTS = ("claude", "codex", "gemini")
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
DROP_IN = "10-agentos-init.conf"
CREDENTIALS = ("github_token", "telegram_bot_token")
"""The credential files the units load (``LoadCredential=``) and ``config.secret`` reads."""


class InitError(Exception):
    """A step of the wizard failed in a way the operator must fix; nothing more is written."""


def _stop(message: str, code: int = 1) -> NoReturn:
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
class Plan:
    """Everything ``agentos init`` writes into the config."""

    forge: str = "local"
    state_dir: str | None = None
    repos: list[RepoPlan] = field(default_factory=list)
    agents: list[str] = field(default_factory=list)
    automation_mode: str = "dispatcher_only"
    max_parallel_workers: int | None = None
    dispatch_interval_s: float | None = None
    groom_cadence_days: int | None = None
    github_api_url: str | None = None
    telegram_chat_ids: list[int] = field(default_factory=list)
    telegram_api_base: str | None = None


class Asker:
    """Questions with defaults; with ``--yes`` every question takes its default (or fails naming its flag)."""

    def __init__(self, interactive: bool) -> None:
        self.interactive = interactive

    def text(self, question: str, default: str | None, *, flag: str, hide: bool = False, empty: bool = False) -> str:
        if not self.interactive:
            if default is None and not empty:
                _stop(f"{question}: give {flag} (or run without --yes to be asked)")
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
                _stop(f"{flag} must be one of {', '.join(choices)}, not {answer!r}")
            console.print(f"one of: {', '.join(choices)}")

    def integer(self, question: str, default: int | None, *, flag: str, empty: bool = False) -> int | None:
        while True:
            answer = self.text(question, None if default is None else str(default), flag=flag, empty=empty)
            if not answer and empty:
                return None
            if answer.isdigit() and int(answer) >= 1:
                return int(answer)
            if not self.interactive:
                _stop(f"{flag} must be a whole number ≥ 1, not {answer!r}")
            console.print("a whole number ≥ 1")

    def confirm(self, question: str, default: bool) -> bool:
        return bool(typer.confirm(question, default=default)) if self.interactive else default


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


# ---------------------------------------------------------------- the config document


def yaml_rt() -> YAML:
    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def template(forge: str, now: datetime) -> str:
    """A new config file, commented like ``config/agentos.example.yaml``; the plan is merged into it."""
    github = (
        "github:\n  api_url: https://api.github.com\n  ready_label: agentos:ready\n  poll_interval_s: 60\n"
        if forge == "github"
        else "# github:                               # needed when forge: github\n"
        "#   api_url: https://api.github.com\n#   ready_label: agentos:ready\n"
    )
    return f"""\
# agentos configuration, written by `agentos init` on {now:%Y-%m-%d %H:%M}.
# Every key and its default: docs/configuration.md (and config/agentos.example.yaml).
# Check it with `agentos config validate FILE`; change one value keeping comments with
# `agentos config set KEY VALUE`; re-run `agentos init` to add repos (it merges, keeping your edits).
# Secrets never go here: see "Secrets" at the end.

# Where the task graph, journal, agent logs, worktrees and the local forge live.
# Under systemd, $STATE_DIRECTORY (/var/lib/agentos) is used when this is left at its default.
state_dir: ~/.local/state/agentos

# Where issues and pull requests live: local (files under state_dir, no tokens) or github.
forge: {forge}

# How many agents run at once, in all and per repository.
max_parallel_workers: 2
max_parallel_per_repo: 2

# debug | info | warning | error
log_level: info

# The repositories agentos works on. test_command must pass before a PR opens.
# automation_mode: dispatcher_only opens PRs and waits for `agentos ctl approve repo#N` (start here);
# full merges a PR by itself once its checks are green.
repos: []

# The coding-agent CLIs. pass_env lists the variables copied from the daemon's environment
# (API keys); nothing else is passed. binary: looked up on PATH when not absolute.
agents: {{}}

routing:
  default: []                           # the chain of agents for task types with no chain of their own
  max_attempts: 4                       # then escalate (label agentos:blocked, comment, notify)

limits:
  idle_timeout_minutes: 10              # no agent output for this long: stalled, killed
  max_runtime_minutes: 40               # wall-clock cap per attempt

jobs:                                   # per job: enabled, and cron or interval_s
  dispatch: {{interval_s: 60}}             # how often ready issues are picked up
  pr_monitor: {{cron: "*/5 * * * *"}}      # merge, rebase, send red CI back

telegram:
  enabled: false
  allowed_chat_ids: []                  # only these chats get answers
  digest_hour: 8

{github}
# Secrets, from the environment or systemd credentials ($CREDENTIALS_DIRECTORY/<name>);
# `agentos init` stores them in its credentials directory and loads them with LoadCredential=:
#   GITHUB_TOKEN        or credential github_token
#   TELEGRAM_BOT_TOKEN  or credential telegram_bot_token
"""


def _flow(items: list[Any]) -> Any:
    from ruamel.yaml.comments import CommentedSeq

    seq = CommentedSeq(items)
    seq.fa.set_flow_style()
    return seq


def _map(doc: CommentedMap, key: str, changes: list[str], comment: str | None = None) -> CommentedMap:
    """``doc[key]`` as a block mapping, created (at the end, with a comment) when missing."""
    from ruamel.yaml.comments import CommentedMap

    node = doc.get(key)
    if not isinstance(node, CommentedMap):
        node = CommentedMap()
        doc[key] = node
        if comment:
            doc.yaml_set_comment_before_after_key(key, before=f"\n{comment}")
        changes.append(f"added {key}")
    return node


def _set(node: dict[str, Any], key: str, value: Any, changes: list[str], where: str) -> None:
    if node.get(key) != value:
        node[key] = value
        changes.append(f"{where}{key} = {value}")


def _last_path(node: Any) -> list[tuple[Any, Any]]:
    """``(container, key)`` pairs down the last item of a block collection, stopping at flow style."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    path: list[tuple[Any, Any]] = []
    while isinstance(node, CommentedMap | CommentedSeq) and node:
        key = list(node.keys())[-1] if isinstance(node, CommentedMap) else len(node) - 1
        path.append((node, key))
        node = node[key]
        if isinstance(node, CommentedMap | CommentedSeq) and node.fa.flow_style():
            break
    return path


def _take_blank_lines(node: Any) -> str:
    """Cut the blank lines that end ``node`` (the gap before the next section) and return them."""
    from ruamel.yaml.comments import CommentedMap

    for container, key in reversed(_last_path(node)):
        slot = container.ca.items.get(key)
        token = (slot[2] if isinstance(container, CommentedMap) else slot[0]) if slot else None
        if token is not None:
            kept = token.value.rstrip("\n")
            blank = len(token.value) - len(kept) - 1
            if blank > 0:
                token.value = kept + "\n"
                return "\n" * blank
            return ""
    return ""


def _give_blank_lines(node: Any, blank: str) -> None:
    """Put ``blank`` lines after the last item of ``node`` (where :func:`_take_blank_lines` took them)."""
    from ruamel.yaml.comments import CommentedMap
    from ruamel.yaml.error import CommentMark
    from ruamel.yaml.tokens import CommentToken

    path = _last_path(node)
    if not blank or not path:
        return
    container, key = path[-1]
    if isinstance(container, CommentedMap):
        slot = container.ca.items.setdefault(key, [None, None, None, None])
        index = 2
    else:
        slot = container.ca.items.setdefault(key, [None, None])
        index = 0
    token = slot[index]
    if token is None:
        slot[index] = CommentToken("\n" + blank, CommentMark(0), None)
    else:
        token.value = (token.value if token.value.endswith("\n") else token.value + "\n") + blank


def merge_plan(doc: CommentedMap, plan: Plan) -> list[str]:
    """Apply ``plan`` to a round-trip document in place, touching only what differs; returns what changed."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    changes: list[str] = []
    _set(doc, "forge", plan.forge, changes, "")
    if plan.state_dir is not None:
        _set(doc, "state_dir", plan.state_dir, changes, "")
    if plan.max_parallel_workers is not None:
        _set(doc, "max_parallel_workers", plan.max_parallel_workers, changes, "")

    repos = doc.get("repos")
    if not isinstance(repos, CommentedSeq):
        repos = CommentedSeq()
        doc["repos"] = repos
    for rp in plan.repos:
        entry = next((r for r in repos if isinstance(r, dict) and r.get("name") == rp.name), None)
        where = f"repos.{rp.name}."
        if entry is None:
            entry = CommentedMap()
            entry["name"] = rp.name
            if rp.path:
                entry["path"] = rp.path
            if rp.base_branch and rp.base_branch != "main":
                entry["base_branch"] = rp.base_branch
            entry["test_command"] = rp.test_command
            entry["automation_mode"] = rp.automation_mode or plan.automation_mode
            entry.yaml_add_eol_comment(MODE_COMMENT, "automation_mode")
            if plan.groom_cadence_days is not None:
                entry["groom_cadence_days"] = plan.groom_cadence_days
            gap = _take_blank_lines(repos)
            repos.append(entry)
            _give_blank_lines(repos, gap)
            changes.append(f"added repo {rp.name}")
            continue
        for key, value in (
            ("path", rp.path),
            ("test_command", rp.test_command),
            ("automation_mode", rp.automation_mode),
        ):
            if value is not None:
                _set(entry, key, value, changes, where)
        if plan.groom_cadence_days is not None:
            _set(entry, "groom_cadence_days", plan.groom_cadence_days, changes, where)
    if repos:
        repos.fa.set_block_style()

    agents = doc.get("agents")
    if not isinstance(agents, CommentedMap):
        agents = CommentedMap()
        doc["agents"] = agents
    for name in plan.agents:
        if name not in agents:
            spec = CommentedMap()
            spec["kind"] = AGENT_DEFAULTS[name]["kind"]
            spec["pass_env"] = _flow(list(AGENT_DEFAULTS[name]["pass_env"]))
            gap = _take_blank_lines(agents)
            agents[name] = spec
            _give_blank_lines(agents, gap)
            changes.append(f"added agent {name}")
    if agents:
        agents.fa.set_block_style()

    if plan.agents:
        routing = _map(doc, "routing", changes)
        chain = list(routing.get("default") or [])
        wanted = chain + [a for a in plan.agents if a not in chain]
        if wanted != chain:
            routing["default"] = _flow(wanted)
            changes.append(f"routing.default = {wanted}")

    if plan.dispatch_interval_s is not None:
        jobs = _map(doc, "jobs", changes)
        dispatch = jobs.get("dispatch")
        if not isinstance(dispatch, CommentedMap):
            dispatch = CommentedMap()
            dispatch.fa.set_flow_style()
            jobs["dispatch"] = dispatch
        if "cron" in dispatch:
            del dispatch["cron"]
        interval = int(plan.dispatch_interval_s) if plan.dispatch_interval_s.is_integer() else plan.dispatch_interval_s
        _set(dispatch, "interval_s", interval, changes, "jobs.dispatch.")

    if plan.forge == "github":
        github = _map(doc, "github", changes, "GitHub, for forge: github (the token is a secret: not here)")
        if plan.github_api_url is not None or "api_url" not in github:
            _set(github, "api_url", plan.github_api_url or "https://api.github.com", changes, "github.")

    if plan.telegram_chat_ids or plan.telegram_api_base:
        telegram = _map(doc, "telegram", changes, "Telegram: notifications and control")
        if plan.telegram_chat_ids:
            _set(telegram, "enabled", True, changes, "telegram.")
            ids = list(telegram.get("allowed_chat_ids") or [])
            merged = ids + [c for c in plan.telegram_chat_ids if c not in ids]
            if merged != ids:
                telegram["allowed_chat_ids"] = _flow(merged)
                changes.append(f"telegram.allowed_chat_ids = {merged}")
        if plan.telegram_api_base:
            _set(telegram, "api_base", plan.telegram_api_base, changes, "telegram.")
    return changes


@dataclass
class WriteResult:
    path: Path
    created: bool
    changes: list[str]
    backup: Path | None
    config: Config


def write_config(path: Path, plan: Plan, *, now: datetime) -> WriteResult:
    """Merge ``plan`` into ``path`` (or a new file from :func:`template`), validate, back up, write."""
    from agentos.config import ConfigError, validate_document
    from agentos.fsutil import atomic_write_bytes

    yaml = yaml_rt()
    created = not path.exists()
    old_text = "" if created else path.read_text(encoding="utf-8")
    doc = yaml.load(template(plan.forge, now) if created or not old_text.strip() else old_text)
    if doc is None or not hasattr(doc, "yaml_set_comment_before_after_key"):
        raise InitError(f"{path}: the file is not a YAML mapping; move it away and run init again")
    changes = merge_plan(doc, plan)
    try:
        config = validate_document(doc, str(path))
    except ConfigError as exc:
        raise InitError("the resulting config is invalid:\n  " + "\n  ".join(exc.problems)) from None
    buf = io.StringIO()
    yaml.dump(doc, buf)
    new_text = buf.getvalue()
    if not created and new_text == old_text:
        return WriteResult(path, False, [], None, config)
    backup = None
    owner = None
    mode = 0o644
    if not created:
        st = path.stat()
        mode, owner = st.st_mode & 0o777, (st.st_uid, st.st_gid)
        backup = path.with_name(f"{path.name}.bak-{now:%Y%m%d%H%M%S}")
        n = 1
        while backup.exists():
            backup = path.with_name(f"{path.name}.bak-{now:%Y%m%d%H%M%S}.{n}")
            n += 1
        shutil.copy2(path, backup)
    atomic_write_bytes(path, new_text.encode("utf-8"), mode=mode)
    if owner is not None and owner != (os.geteuid(), os.getegid()) and os.geteuid() == 0:
        os.chown(path, *owner)  # root edited someone else's file: it stays theirs
    return WriteResult(path, created, changes or ["new file"], backup, config)


def write_secret(directory: Path, name: str, value: str) -> bool:
    """Store a token as ``directory/name`` (mode 0600, directory 0700); False when it was already there."""
    from agentos.fsutil import atomic_write_bytes

    path = directory / name
    data = (value.strip() + "\n").encode()
    if path.is_file() and path.read_bytes() == data:
        return False
    if not directory.exists():
        directory.mkdir(mode=0o700, parents=True)
    atomic_write_bytes(path, data, mode=0o600)
    return True


# ---------------------------------------------------------------- GitHub and Telegram


def verify_github(api_url: str, token: str, repos: list[str]) -> list[str]:
    """``GET /user`` and each repo; returns lines to print, raises :class:`InitError` on a bad token."""
    import httpx

    from agentos.cli.doctor import github_get, github_scopes

    try:
        resp = github_get(api_url, token, "/user")
    except httpx.HTTPError as exc:
        raise InitError(f"cannot reach {api_url}: {exc}") from None
    if resp.status_code == 401:
        raise InitError("GitHub rejects this token (401); create one with repo access and try again")
    if resp.status_code != 200:
        raise InitError(f"GET {api_url}/user answered {resp.status_code}")
    scopes = github_scopes(resp)
    lines = [f"GitHub: token of {resp.json().get('login', '?')}" + (f", scopes {', '.join(scopes)}" if scopes else "")]
    if scopes is not None and "repo" not in scopes:
        lines.append("  warning: the token lacks the 'repo' scope; agentos cannot push or open PRs")
    for name in repos:
        r = github_get(api_url, token, f"/repos/{name}")
        if r.status_code != 200:
            raise InitError(f"GitHub: {name} is not visible to this token ({r.status_code})")
        push = (r.json().get("permissions") or {}).get("push")
        lines.append(f"  {name}: ok" + ("" if push in (None, True) else " (warning: no push access)"))
    return lines


def create_labels(api_url: str, token: str, repos: list[str]) -> list[str]:
    """Create the ``agentos:*`` labels in each repo; existing ones (422) are left as they are."""
    import httpx

    headers = {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json"}
    lines = []
    with httpx.Client(base_url=api_url.rstrip("/"), headers=headers, timeout=10) as client:
        for repo in repos:
            made = []
            for name, color, description in LABELS:
                body = {"name": name, "color": color, "description": description}
                resp = client.post(f"/repos/{repo}/labels", json=body)
                if resp.status_code == 201:
                    made.append(name)
                elif resp.status_code != 422:
                    raise InitError(f"{repo}: creating label {name} answered {resp.status_code}")
            lines.append(f"  {repo}: " + (f"created {', '.join(made)}" if made else "labels already there"))
    return lines


def pair_telegram(api_base: str | None, token: str, timeout_s: float) -> tuple[int, str]:
    """Wait for a ``/start`` sent to the bot and return ``(chat id, bot username)``."""
    import httpx

    from agentos.cli.doctor import telegram_call

    try:
        me = telegram_call(api_base, token, "getMe")
    except httpx.HTTPError as exc:
        raise InitError(f"cannot reach the Telegram Bot API: {exc}") from None
    if not me.get("ok"):
        raise InitError(f"Telegram rejects the bot token: {me.get('description', 'unknown error')}")
    username = str((me.get("result") or {}).get("username", "your bot"))
    console.print(
        f"Send /start to @{username} from the chat that should control agentos (waiting {timeout_s:.0f} s)…",
        markup=False,
    )
    deadline = time.monotonic() + timeout_s
    offset: int | None = None
    while (left := deadline - time.monotonic()) > 0:
        poll = max(1, min(10, int(left)))
        params: dict[str, Any] = {"timeout": poll, "allowed_updates": ["message"]}
        if offset is not None:
            params["offset"] = offset
        try:
            answer = telegram_call(api_base, token, "getUpdates", params, timeout=poll + 10)
        except httpx.HTTPError as exc:
            raise InitError(f"Telegram getUpdates failed: {exc}") from None
        if not answer.get("ok"):
            if answer.get("error_code") == 409:
                raise InitError(
                    "another process reads this bot's updates (a running agentos daemon, or a webhook); "
                    "stop it, or give the chat id with --telegram-chat-id"
                )
            raise InitError(f"Telegram getUpdates: {answer.get('description', 'failed')}")
        for update in answer.get("result") or []:
            offset = int(update["update_id"]) + 1
            message = update.get("message") or {}
            words = str(message.get("text") or "").split()
            if words and words[0].split("@")[0] == "/start" and "chat" in message:
                chat_id = int(message["chat"]["id"])
                telegram_call(api_base, token, "getUpdates", {"offset": offset, "timeout": 0})  # consume it
                text = "agentos is paired with this chat. Try /status and /help."
                telegram_call(api_base, token, "sendMessage", {"chat_id": chat_id, "text": text})
                return chat_id, username
    raise InitError(
        f"no /start reached @{username} within {timeout_s:.0f} s; run init again, or give --telegram-chat-id"
    )


# ---------------------------------------------------------------- systemd


def _checkout_root() -> Path:
    return Path(__file__).resolve().parents[3]


def unit_source(user: bool, explicit: str | None) -> Path | None:
    """The unit file to install: ``--unit-file``, else the checkout's ``deploy/systemd/`` (user variant first)."""
    if explicit:
        return Path(explicit)
    names = ["agentos-user.service", "agentos.user.service", "user/agentos.service"] if user else []
    for root in (_checkout_root() / "deploy" / "systemd", Path("/usr/share/agentos/systemd")):
        for name in [*names, "agentos.service"]:
            if (root / name).is_file():
                return root / name
    return None


def fallback_unit(agentos: str, user: bool) -> str:
    """A minimal unit for installs without ``deploy/systemd`` (for example from a wheel)."""
    system_only = "" if user else "StateDirectory=agentos\nRuntimeDirectory=agentos\n"
    return f"""\
# agentos.service written by `agentos init` (no deploy/systemd/agentos.service was found).
[Unit]
Description=agentos: issues in, merged pull requests out
After=network-online.target
Wants=network-online.target

[Service]
Type=notify
ExecStart={agentos} run
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=5
{system_only}KillMode=mixed
TimeoutStopSec=90

[Install]
WantedBy={"default.target" if user else "multi-user.target"}
"""


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


def drop_in(*, config_path: Path, creds: Path, exec_start: str | None, writable: list[str]) -> str:
    """The drop-in with this machine's settings; the unit file itself stays as shipped."""
    lines = [
        "# Written by `agentos init`; running it again rewrites this file. Local settings for agentos.service.",
        "[Service]",
        f"Environment={_quote(f'AGENTOS_CONFIG={config_path}')}",
        "# The tokens init stored (an empty file means: not configured). The empty line resets the unit's list.",
        "LoadCredential=",
    ]
    lines += [f"LoadCredential={_quote(f'{name}:{creds / name}')}" for name in CREDENTIALS]
    if writable:
        lines.append("# The repositories the daemon fetches from and merges into (ProtectSystem=strict).")
        lines += [f"ReadWritePaths={_quote('-' + path)}" for path in writable]
    if exec_start:
        lines += ["# The unit's program is not installed here: run this agentos.", "ExecStart="]
        lines.append(f"ExecStart={_quote(exec_start)} run")
    return "\n".join(lines) + "\n"


def ensure_credential_files(creds: Path) -> list[Path]:
    """Create each missing credential as an empty 0600 file: LoadCredential= fails the start on a missing one."""
    made = []
    for name in CREDENTIALS:
        path = creds / name
        if not path.exists():
            creds.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.close(fd)
            made.append(path)
    return made


def install_unit(
    unit_dir: Path, source: Path | None, *, user: bool, config_path: Path, creds: Path, writable: list[str]
) -> list[str]:
    """Copy the unit and write its drop-in; returns lines to print. Raises PermissionError when not allowed."""
    from agentos.fsutil import atomic_write_text

    agentos = agentos_executable()
    text = source.read_text(encoding="utf-8") if source else fallback_unit(agentos, user)
    target = unit_dir / "agentos.service"
    lines = []
    unit_dir.mkdir(parents=True, exist_ok=True)
    if target.is_file() and target.read_text(encoding="utf-8") == text:
        lines.append(f"unit unchanged: {target}")
    else:
        atomic_write_text(target, text, mode=0o644)
        lines.append(f"installed {target}" + (f" (from {source})" if source else " (a minimal unit)"))
    exec_start = agentos if _exec_start_missing(text, Path.home()) else None
    override = drop_in(config_path=config_path, creds=creds, exec_start=exec_start, writable=writable)
    conf = unit_dir / "agentos.service.d" / DROP_IN
    if conf.is_file() and conf.read_text(encoding="utf-8") == override:
        lines.append(f"drop-in unchanged: {conf}")
    else:
        atomic_write_text(conf, override, mode=0o644)
        lines.append(f"wrote {conf}")
    for made in ensure_credential_files(creds):
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


# ---------------------------------------------------------------- the command


def _probe_tools(agents: tuple[str, ...]) -> dict[str, Probe]:
    from rich.table import Table

    from agentos.cli.doctor import probe_version

    probes = {name: probe_version(name, timeout=10) for name in ("git", *agents)}
    t = Table(show_edge=False, header_style="bold", title="tools on PATH")
    for col in ("program", "found", "version"):
        t.add_column(col)
    for name, p in probes.items():
        t.add_row(name, p.path or "-", p.version if p.ok else f"[yellow]{p.version}[/yellow]")
    console.print(t)
    if not probes["git"].ok:
        err_console.print("[yellow]warning:[/yellow] git is needed: install it before starting the daemon")
    return probes


def _existing(path: Path) -> Config | None:
    from agentos.config import ConfigError, load_config

    if not path.exists():
        return None
    try:
        return load_config(path)[0]
    except ConfigError as exc:
        _stop("the existing config is invalid; fix it first (or move it away):\n  " + "\n  ".join(exc.problems), 78)


def init_command(
    config: str | None = typer.Option(None, "--config", "-c", help="Config file to write or merge into"),
    yes: bool = typer.Option(False, "--yes", "-y", "--non-interactive", help="Ask nothing: flags and defaults"),
    forge: str | None = typer.Option(None, "--forge", help="local or github"),
    repo: list[str] = typer.Option(
        [], "--repo", help="PATH, NAME:PATH or NAME:PATH:TEST COMMAND (github: OWNER/NAME[:CLONE[:TEST]]); repeatable"
    ),
    test_command: str | None = typer.Option(None, "--test-command", help="Test command for --repo entries with none"),
    agent: list[str] = typer.Option(
        [], "--agent", help="claude, codex or gemini; repeatable (default: installed ones)"
    ),
    automation_mode: str | None = typer.Option(
        None, "--automation-mode", help="dispatcher_only (default: PRs wait for approval) or full (merge on green)"
    ),
    max_parallel_workers: int | None = typer.Option(None, "--max-parallel-workers", min=1),
    dispatch_interval: float | None = typer.Option(
        None, "--dispatch-interval", min=1, help="Seconds between dispatches"
    ),
    groom_cadence_days: int | None = typer.Option(None, "--groom-cadence-days", min=1),
    state_dir: str | None = typer.Option(None, "--state-dir"),
    github_token: str | None = typer.Option(None, "--github-token", envvar="GITHUB_TOKEN", show_envvar=True),
    github_api_url: str | None = typer.Option(None, "--github-api-url", help="Default https://api.github.com"),
    labels: bool | None = typer.Option(None, "--create-labels/--no-create-labels", help="Create the agentos:* labels"),
    telegram_token: str | None = typer.Option(None, "--telegram-token", envvar="TELEGRAM_BOT_TOKEN", show_envvar=True),
    telegram_chat_id: list[int] = typer.Option([], "--telegram-chat-id", help="Skip pairing; repeatable"),
    telegram_api_base: str | None = typer.Option(None, "--telegram-api-base"),
    no_telegram: bool = typer.Option(False, "--no-telegram", help="Do not set up Telegram now"),
    pair_timeout: float = typer.Option(120, "--pair-timeout", help="Seconds to wait for /start"),
    credentials_dir: str | None = typer.Option(None, "--credentials-dir", help="Where tokens are stored (0600 files)"),
    systemd: bool = typer.Option(True, "--systemd/--no-systemd", help="Install the systemd unit"),
    user: bool = typer.Option(False, "--user", help="A user service (systemctl --user) instead of a system one"),
    unit_dir: str | None = typer.Option(None, "--unit-dir", help="Where the unit goes (default per --user)"),
    unit_file: str | None = typer.Option(None, "--unit-file", help="The unit to install (default: deploy/systemd/)"),
) -> None:
    """Set agentos up: check tools, write the config (merging, with a backup), store tokens, install the unit."""
    from agentos.config import find_config

    ask = Asker(interactive=not yes)
    now = datetime.now()
    user_scope = user or (os.geteuid() != 0 and unit_dir is None)
    home = Path.home()
    path = (
        Path(config)
        if config
        else (
            find_config(None)
            or (home / ".config/agentos/config.yaml" if user_scope else Path("/etc/agentos/config.yaml"))
        )
    )
    path = path.expanduser().absolute()
    console.print(
        f"agentos init → {path}" + (" (merging into the existing file)" if path.exists() else ""), markup=False
    )
    existing = _existing(path)
    probes = _probe_tools(KNOWN_AGENTS)
    creds = (
        Path(credentials_dir).expanduser()
        if credentials_dir
        else (home / ".config/agentos/credentials" if user_scope else Path("/etc/agentos/credentials"))
    )
    try:
        plan = _gather(
            ask,
            existing,
            probes,
            forge,
            repo,
            test_command,
            agent,
            automation_mode,
            max_parallel_workers,
            dispatch_interval,
            groom_cadence_days,
            state_dir,
            github_api_url,
            telegram_chat_id,
            telegram_api_base,
        )
        secrets: dict[str, str] = {}
        repo_names = [r.name for r in plan.repos] + [r.name for r in (existing.repos if existing else [])]
        repo_names = list(dict.fromkeys(repo_names))
        api_url = plan.github_api_url or (existing.github.api_url if existing and existing.github else None)
        api_url = api_url or "https://api.github.com"
        if plan.forge == "github":
            secrets["github_token"] = _github(ask, api_url, github_token, repo_names, creds)
        if not no_telegram:
            _telegram(ask, plan, existing, telegram_token, pair_timeout, secrets, creds)
        for name, value in secrets.items():
            stored = write_secret(creds, name, value)
            console.print(f"{'stored' if stored else 'kept'} {name} in {creds / name} (0600)", markup=False)
        result = write_config(path, plan, now=now)
    except InitError as exc:
        _stop(str(exc))
    _report(result)
    if plan.forge == "github":
        _labels(ask, labels, api_url, secrets["github_token"], repo_names)
    if systemd:
        writable = [] if user_scope else _writable_paths(result.config)
        _systemd(user_scope, unit_dir, unit_file, result.path, creds, writable)
    else:
        console.print(
            "systemd: skipped (--no-systemd); run it with: agentos run --config " + str(result.path), markup=False
        )
    console.print("next: `agentos doctor` checks the whole setup")


def _gather(
    ask: Asker,
    existing: Config | None,
    probes: dict[str, Probe],
    forge: str | None,
    repo_specs: list[str],
    test_command: str | None,
    agents: list[str],
    automation_mode: str | None,
    workers: int | None,
    dispatch_interval: float | None,
    groom_days: int | None,
    state_dir: str | None,
    github_api_url: str | None,
    chat_ids: list[int],
    telegram_api_base: str | None,
) -> Plan:
    plan = Plan(state_dir=state_dir, github_api_url=github_api_url, telegram_api_base=telegram_api_base)
    plan.forge = forge or ask.choice(
        "Forge", ("local", "github"), existing.forge if existing else "local", flag="--forge"
    )
    if plan.forge not in ("local", "github"):
        raise InitError(f"--forge must be local or github, not {plan.forge!r}")
    known = {r.name: r.model_dump() for r in (existing.repos if existing else [])}
    mode_default = automation_mode or "dispatcher_only"
    if automation_mode is None and ask.interactive:
        mode_default = ask.choice(
            "Automation mode for new repos: dispatcher_only (PRs wait for your approval) or full (merge on green)",
            ("dispatcher_only", "full"),
            "dispatcher_only",
            flag="--automation-mode",
        )
    if mode_default not in ("dispatcher_only", "full"):
        raise InitError(f"--automation-mode must be dispatcher_only or full, not {mode_default!r}")
    plan.automation_mode = mode_default
    for spec in repo_specs:
        rp = parse_repo_spec(spec, plan.forge)
        rp.automation_mode = automation_mode
        plan.repos.append(complete_repo(rp, known, test_command))
    if ask.interactive:
        if known:
            console.print(f"repos in the config: {', '.join(known)}", markup=False)
        while ask.confirm("Add a repository?", default=not known and not plan.repos):
            plan.repos.append(_ask_repo(ask, plan.forge, known, test_command))
    if not known and not plan.repos:
        console.print("[yellow]no repositories yet[/yellow]: add one later with agentos init --repo NAME:PATH:TEST")
    names = [r.name for r in plan.repos]
    if len(set(names)) != len(names):
        raise InitError(f"a repo is given twice: {', '.join(sorted({n for n in names if names.count(n) > 1}))}")

    installed = [a for a in KNOWN_AGENTS if probes[a].ok]
    configured = list(existing.agents) if existing else []
    default_agents = ",".join(configured or installed or ["claude"])
    chosen = agents or [
        a.strip()
        for a in ask.text("Agents (comma-separated: claude, codex, gemini)", default_agents, flag="--agent").split(",")
        if a.strip()
    ]
    for name in chosen:
        if name not in KNOWN_AGENTS and name not in configured:
            raise InitError(
                f"unknown agent {name!r}: init sets up {', '.join(KNOWN_AGENTS)}; edit the config for others"
            )
        if name in KNOWN_AGENTS and not probes[name].ok:
            console.print(f"[yellow]note:[/yellow] {name} is not installed here yet; `agentos doctor` will remind you")
    plan.agents = list(dict.fromkeys(chosen))

    current_workers = existing.max_parallel_workers if existing else 2
    plan.max_parallel_workers = workers or ask.integer(
        "Agents at work at once", current_workers, flag="--max-parallel-workers"
    )
    current = existing.jobs.get("dispatch") if existing else None
    interval_default = int(current.interval_s) if current and current.interval_s else 60
    if dispatch_interval is not None:
        plan.dispatch_interval_s = dispatch_interval
    elif ask.interactive:
        plan.dispatch_interval_s = float(
            ask.integer("Seconds between looks for ready issues", interval_default, flag="--dispatch-interval") or 60
        )
    elif existing is None:
        plan.dispatch_interval_s = 60.0
    plan.groom_cadence_days = groom_days
    if plan.forge == "github" and github_api_url is None and ask.interactive:
        current_api = existing.github.api_url if existing and existing.github else "https://api.github.com"
        plan.github_api_url = ask.text("GitHub API URL", current_api, flag="--github-api-url")
    plan.telegram_chat_ids = list(chat_ids)
    return plan


def _ask_repo(ask: Asker, forge: str, known: dict[str, dict[str, Any]], test_command: str | None) -> RepoPlan:
    if forge == "github":
        while True:
            name = ask.text("GitHub repository (owner/name)", None, flag="--repo")
            if re.fullmatch(r"[\w.-]+/[\w.-]+", name):
                break
            console.print("as owner/name, e.g. my-org/my-repo")
        clone = ask.text(
            "Local clone to use (empty: agentos clones it)",
            known.get(name, {}).get("path") or "",
            flag="--repo",
            empty=True,
        )
        path = str(Path(clone).expanduser().absolute()) if clone else None
    else:
        while True:
            raw = ask.text("Path of the repository", None, flag="--repo")
            candidate = Path(raw).expanduser().absolute()
            if candidate.is_dir() or ask.confirm(f"{candidate} does not exist; use it anyway?", default=False):
                break
        path = str(candidate)
        name = ask.text("Name", safe_repo_name(candidate), flag="--repo")
    guess = (
        known.get(name, {}).get("test_command") or test_command or (detect_test_command(Path(path)) if path else None)
    )
    test = ask.text("Test command (must pass before a PR opens)", guess, flag="--test-command")
    plan = RepoPlan(name, path, test)
    return complete_repo(plan, known, test)


def _github(ask: Asker, api_url: str, token: str | None, repos: list[str], creds: Path) -> str:
    from agentos.cli.doctor import find_secret

    if token is None:
        found, source = find_secret("github_token", "GITHUB_TOKEN", os.environ, [creds])
        if found and ask.confirm(f"Use the GitHub token from {source}?", default=True):
            token = found
    for attempt in range(3):
        token = token or ask.text("GitHub token (input hidden)", None, flag="--github-token", hide=True)
        try:
            for line in verify_github(api_url, token, repos):
                console.print(line, markup=False, highlight=False)
            return token
        except InitError as exc:
            if not ask.interactive or attempt == 2:
                raise
            console.print(f"[red]{escape(str(exc))}[/red]")
            token = None
    raise InitError("no working GitHub token")


def _telegram(
    ask: Asker,
    plan: Plan,
    existing: Config | None,
    token: str | None,
    timeout: float,
    secrets: dict[str, str],
    creds: Path,
) -> None:
    from agentos.cli.doctor import find_secret

    had = bool(existing and existing.telegram.enabled and existing.telegram.allowed_chat_ids)
    if token is None and not plan.telegram_chat_ids:
        if not ask.interactive or not ask.confirm("Set up Telegram (notifications and control)?", default=False):
            return
        found, source = find_secret("telegram_bot_token", "TELEGRAM_BOT_TOKEN", os.environ, [creds])
        if found and ask.confirm(f"Use the bot token from {source}?", default=True):
            token = found
        else:
            token = ask.text("Bot token from @BotFather (input hidden)", None, flag="--telegram-token", hide=True)
    if token is None:
        return  # chat ids given, token kept where it is
    secrets["telegram_bot_token"] = token
    api_base = plan.telegram_api_base or (existing.telegram.api_base if existing else None)
    if plan.telegram_chat_ids:
        return
    if had and not ask.confirm("Pair another chat?", default=False):
        return
    try:
        chat_id, bot = pair_telegram(api_base, token, timeout)
    except InitError as exc:
        if not ask.interactive:
            raise
        console.print(f"[yellow]{escape(str(exc))}[/yellow]")
        entered = ask.integer("Chat id (empty: skip Telegram for now)", None, flag="--telegram-chat-id", empty=True)
        if entered is None:
            secrets.pop("telegram_bot_token", None)
            return
        chat_id, bot = entered, "the bot"
    console.print(f"Telegram: paired chat {chat_id} with @{bot}", markup=False)
    plan.telegram_chat_ids.append(chat_id)


def _report(result: WriteResult) -> None:
    if not result.changes:
        console.print(f"config unchanged: {result.path}", markup=False)
        return
    verb = "wrote" if result.created else "updated"
    console.print(f"{verb} {result.path}" + (f" (backup: {result.backup})" if result.backup else ""), markup=False)
    for change in result.changes:
        console.print(f"  {change}", markup=False, highlight=False)
    cfg = result.config
    console.print(f"valid: {len(cfg.repos)} repos, {len(cfg.agents)} agents, forge {cfg.forge}", markup=False)


def _labels(ask: Asker, flag: bool | None, api_url: str, token: str, repos: list[str]) -> None:
    names = ", ".join(n for n, _, _ in LABELS)
    wanted = flag if flag is not None else ask.confirm(f"Create the labels {names} in each repo?", default=True)
    if not wanted:
        console.print("labels: left for later (agentos init --create-labels; they are also made on first use)")
        return
    try:
        for line in create_labels(api_url, token, repos):
            console.print(line, markup=False, highlight=False)
    except (InitError, OSError) as exc:
        err_console.print(
            f"[yellow]labels not created:[/yellow] {escape(str(exc))}; run agentos init --create-labels later"
        )


def _writable_paths(config: Config) -> list[str]:
    """Paths outside the unit's StateDirectory the daemon writes: repository clones and a custom state_dir."""
    paths = [str(Path(r.path).expanduser()) for r in config.repos if r.path]
    if config.state_dir != type(config).model_fields["state_dir"].default:
        paths.append(str(Path(config.state_dir).expanduser()))
    return list(dict.fromkeys(paths))


def _systemd(
    user: bool, unit_dir: str | None, unit_file: str | None, config_path: Path, creds: Path, writable: list[str]
) -> None:
    target = (
        Path(unit_dir).expanduser()
        if unit_dir
        else (Path.home() / ".config/systemd/user" if user else Path("/etc/systemd/system"))
    )
    source = unit_source(user, unit_file)
    if source is not None and not source.is_file():
        _stop(f"--unit-file {source}: no such file")
    if source is None:
        console.print("[yellow]note:[/yellow] deploy/systemd/agentos.service not found; installing a minimal unit")
    try:
        lines = install_unit(target, source, user=user, config_path=config_path, creds=creds, writable=writable)
        for line in lines:
            console.print(line, markup=False, highlight=False)
    except PermissionError:
        src = source or "deploy/systemd/agentos.service"
        console.print(
            f"[yellow]cannot write {escape(str(target))}[/yellow]; as root: "
            + escape(f"install -m 0644 {src} {target}/agentos.service")
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
