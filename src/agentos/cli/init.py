"""``agentos init``: from ``pip install`` to a supervised pilot in one command.

The wizard asks, and every answer is also a flag (``--yes`` takes flags and defaults only, for scripts):

1. checks git and the agent CLIs (``claude``, ``codex``, ``gemini``: ``--version`` with a time limit);
2. the forge, the repositories and their test commands, the agents (a built-in CLI, or any program as a
   ``command`` agent), the automation mode (default ``dispatcher_only``: PRs wait for your approval, as a
   careful pilot should), workers and cadence;
3. GitHub, through the daemon's own client: verifies the token (``GET /user``, each repo) or the GitHub
   App (mints an installation token, reads each repo), offers to create the ``agentos:*`` labels and to
   add the Status options agentos uses to each repo's Projects v2 board;
4. Telegram: reads the chat id of a ``/start`` sent to the bot (``getUpdates``);
5. writes tokens to a credentials directory (0600 files, never the YAML), then the config: a new file
   from a commented template, or a merge into the existing one that keeps every key and comment, after
   a timestamped backup; the result is validated before anything is written;
6. installs the systemd unit (system, or ``--user``) with a drop-in for the config path and credentials,
   and prints the one command that starts it.

Running it again is safe: repos are matched by name, agents and chat ids are added once, labels that
exist are left alone, and an unchanged config is not rewritten. Values already in the config are the
defaults of the questions, so a re-run only changes what you change.

This module is the command and its flow; the steps live beside it: ``init_plan`` (answers, questions,
repositories), ``init_config`` (the config document and token files), ``init_github``, ``init_telegram``
and ``init_systemd``.
"""

from __future__ import annotations

import os
import re
import shlex
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from agentos.cli._common import console, count, err_console
from agentos.cli.init_config import WriteResult, write_config, write_secret
from agentos.cli.init_github import (
    GitHubAccess,
    GitHubFlags,
    ask_github,
    offer_board_options,
    offer_labels,
    webhook_setup,
)
from agentos.cli.init_plan import (
    KNOWN_AGENTS,
    AgentPlan,
    Asker,
    InitError,
    Plan,
    RepoPlan,
    complete_repo,
    detect_test_command,
    detect_timezone,
    parse_agent_spec,
    parse_repo_spec,
    safe_repo_name,
    stop,
    zone_problem,
)
from agentos.cli.init_systemd import install_systemd, writable_paths
from agentos.cli.init_telegram import ask_telegram

if TYPE_CHECKING:
    from agentos.cli.doctor import Probe
    from agentos.config import Config

__all__ = ["InitError", "RepoPlan", "init_command", "parse_repo_spec"]


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
        stop("the existing config is invalid; fix it first (or move it away):\n  " + "\n  ".join(exc.problems), 78)


def init_command(
    config: str | None = typer.Option(None, "--config", "-c", help="Config file to write or merge into"),
    yes: bool = typer.Option(False, "--yes", "-y", "--non-interactive", help="Ask nothing: flags and defaults"),
    forge: str | None = typer.Option(None, "--forge", help="local or github"),
    repo: list[str] = typer.Option(
        [], "--repo", help="PATH, NAME:PATH or NAME:PATH:TEST COMMAND (github: OWNER/NAME[:CLONE[:TEST]]); repeatable"
    ),
    test_command: str | None = typer.Option(None, "--test-command", help="Test command for --repo entries with none"),
    agent: list[str] = typer.Option(
        [],
        "--agent",
        help="claude, codex, gemini, NAME:KIND or NAME:command:COMMAND LINE (any program); repeatable "
        "(default: the configured agents, else the installed CLIs)",
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
    timezone: str | None = typer.Option(
        None, "--timezone", help="IANA zone of cron jobs, the digest and budgets (default: this machine's)"
    ),
    status_page: bool | None = typer.Option(
        None, "--status-page/--no-status-page", help="Serve the status page, JSON API and metrics (default: off)"
    ),
    status_page_host: str | None = typer.Option(
        None, "--status-page-host", help="Address to bind (not loopback: init stores a bearer token)"
    ),
    status_page_port: int | None = typer.Option(None, "--status-page-port", min=0, max=65535),
    github_token: str | None = typer.Option(None, "--github-token", envvar="GITHUB_TOKEN", show_envvar=True),
    github_api_url: str | None = typer.Option(None, "--github-api-url", help="Default https://api.github.com"),
    github_app_id: int | None = typer.Option(None, "--github-app-id", help="Authenticate as this GitHub App"),
    github_installation_id: int | None = typer.Option(None, "--github-installation-id", help="The App's installation"),
    github_app_key: str | None = typer.Option(
        None, "--github-app-key", metavar="FILE", help="The App's private key (.pem); stored as a 0600 credential"
    ),
    labels: bool | None = typer.Option(None, "--create-labels/--no-create-labels", help="Create the agentos:* labels"),
    board_options: bool | None = typer.Option(
        None,
        "--create-board-options/--no-create-board-options",
        help="Add the Status options agentos uses to each repo's Projects v2 board (--yes: only with this flag)",
    ),
    telegram_token: str | None = typer.Option(None, "--telegram-token", envvar="TELEGRAM_BOT_TOKEN", show_envvar=True),
    telegram_chat_id: list[int] = typer.Option([], "--telegram-chat-id", help="Skip pairing; repeatable"),
    telegram_api_base: str | None = typer.Option(None, "--telegram-api-base"),
    no_telegram: bool = typer.Option(False, "--no-telegram", help="Do not set up Telegram now"),
    pair_timeout: float = typer.Option(120, "--pair-timeout", help="Seconds to wait for /start"),
    credentials_dir: str | None = typer.Option(None, "--credentials-dir", help="Where tokens are stored (0600 files)"),
    systemd: bool = typer.Option(True, "--systemd/--no-systemd", help="Install the systemd unit"),
    user: bool = typer.Option(False, "--user", help="A user service (systemctl --user) instead of a system one"),
    unit_dir: str | None = typer.Option(None, "--unit-dir", help="Where the unit goes (default per --user)"),
    unit_file: str | None = typer.Option(None, "--unit-file", help="The unit to install (default: the shipped one)"),
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
            (timezone, status_page, status_page_host, status_page_port),
        )
        secrets: dict[str, str] = {}
        repo_names = [r.name for r in plan.repos] + [r.name for r in (existing.repos if existing else [])]
        repo_names = list(dict.fromkeys(repo_names))
        api_url = plan.github_api_url or (existing.github.api_url if existing and existing.github else None)
        api_url = api_url or "https://api.github.com"
        access: GitHubAccess | None = None
        if plan.forge == "github":
            flags = GitHubFlags(github_token, github_app_id, github_installation_id, github_app_key)
            access = ask_github(ask, plan, existing, flags, api_url, repo_names, creds, secrets)
        if not no_telegram:
            ask_telegram(ask, plan, existing, telegram_token, pair_timeout, secrets, creds)
        for name, value in secrets.items():
            stored = write_secret(creds, name, value)
            console.print(f"{'stored' if stored else 'kept'} {name} in {creds / name} (0600)", markup=False)
        result = write_config(path, plan, now=now)
    except InitError as exc:
        stop(str(exc))
    _report(result)
    page_credential = _status_page_token(result.config, creds, user_scope)
    hook_credential = webhook_setup(result.config, creds)
    if access is not None:
        offer_labels(ask, labels, access, repo_names)
        offer_board_options(ask, board_options, access, result.config)
    if systemd:
        writable = [] if user_scope else writable_paths(result.config)
        extra = tuple(name for name in (page_credential, hook_credential) if name)
        install_systemd(user_scope, unit_dir, unit_file, result.path, creds, writable, extra)
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
    daemon: tuple[str | None, bool | None, str | None, int | None],
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
    by_path = {str(Path(r["path"]).expanduser().absolute()): n for n, r in known.items() if r.get("path")}
    for spec in repo_specs:
        rp = parse_repo_spec(spec, plan.forge)
        if plan.forge == "local" and ":" not in spec and rp.path in by_path:
            rp.name = by_path[rp.path]  # a bare path the config has: that repo, not a second one
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

    plan.agents = _ask_agents(ask, agents, tuple(existing.agents) if existing else (), probes)

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
    _ask_daemon(ask, plan, existing, *daemon)
    return plan


def _ask_agents(ask: Asker, flags: list[str], configured: tuple[str, ...], probes: dict[str, Probe]) -> list[AgentPlan]:
    """The agents: ``--agent`` flags, else the question (default: the configured ones, else the installed CLIs).

    A wrong answer is asked again (the flags stop instead); a new ``command`` agent is asked for its command line.
    """
    installed = [a for a in KNOWN_AGENTS if probes[a].ok]
    default = ", ".join(configured or installed) or None
    if not flags and not ask.interactive and default is None:
        console.print(
            "[yellow]no agent CLI found[/yellow] (claude, codex, gemini): add one later with "
            "agentos init --agent NAME, or --agent NAME:command:COMMAND LINE for any program"
        )
        return []
    while True:
        specs = flags or [
            a.strip()
            for a in ask.text(
                "Agents (comma-separated: claude, codex, gemini, or NAME:command for any program)",
                default,
                flag="--agent",
                empty=default is None,  # none installed: Enter adds none for now
            ).split(",")
            if a.strip()
        ]
        try:
            chosen = [parse_agent_spec(spec, configured) for spec in specs]
            break
        except InitError as exc:
            if flags or not ask.interactive:
                raise
            console.print(str(exc).removeprefix("--agent "), markup=False)
    for agent in chosen:
        if agent.kind == "command" and agent.argv is None:
            line = ask.text(
                f"Command line of {agent.name} ({{prompt_file}}, {{worktree}} and {{task_id}} are filled in)",
                None,
                flag=f"--agent {agent.name}:command:COMMAND LINE",
            )
            try:
                agent.argv = shlex.split(line) or None
            except ValueError as exc:
                raise InitError(f"the command line of {agent.name} does not parse: {exc}") from None
        elif agent.kind in KNOWN_AGENTS and agent.name not in configured and not probes[agent.kind].ok:
            console.print(
                f"[yellow]note:[/yellow] {agent.kind} is not installed here yet; `agentos doctor` will remind you"
            )
    unique = {a.name: a for a in chosen}
    return list(unique.values())


def _ask_daemon(
    ask: Asker,
    plan: Plan,
    existing: Config | None,
    timezone: str | None,
    page: bool | None,
    host: str | None,
    port: int | None,
) -> None:
    """The time zone (default: this machine's, or the config's) and the status page (default: off)."""
    if timezone is not None:
        problem = zone_problem(timezone)
        if problem:
            raise InitError(f"--timezone: {problem}")
        plan.timezone = timezone
    elif ask.interactive:
        has_zone = existing is not None and "timezone" in existing.model_fields_set
        default = existing.timezone if existing is not None and has_zone else detect_timezone()
        while True:
            plan.timezone = ask.text("Time zone of cron jobs, the digest and budgets", default, flag="--timezone")
            problem = zone_problem(plan.timezone)
            if problem is None:
                break
            console.print(problem, markup=False)
    elif existing is None:
        plan.timezone = detect_timezone()

    current = existing.status_page if existing is not None else None
    if page is None and host is None and port is None:
        if not ask.interactive:
            return
        page = ask.confirm("Serve the status page (a web page, JSON and metrics)?", bool(current and current.enabled))
        if page:
            host = ask.text(
                "Address to bind (127.0.0.1: this machine only; another needs a token, which init makes)",
                current.host if current else "127.0.0.1",
                flag="--status-page-host",
            )
            port = ask.integer("Port", current.port if current else 8787, flag="--status-page-port")
    plan.status_page_enabled = True if page is None else page  # --status-page-host alone turns it on
    plan.status_page_host = host.strip() if host else None
    plan.status_page_port = port
    if plan.status_page_host == "":
        raise InitError("--status-page-host: an address is needed, e.g. 127.0.0.1 or 0.0.0.0")


def _status_page_token(config: Config, creds: Path, user_scope: bool) -> str | None:
    """Store a bearer token for a status page on a non-loopback host (once); returns its credential's name."""
    import secrets

    from agentos.ops.status_page import needs_token

    page = config.status_page
    if not page.enabled or not needs_token(page.host):
        return None
    name = page.token_credential
    path = creds / name
    if path.is_file() and path.read_text(encoding="utf-8").strip():
        console.print(f"kept {name} in {path} (the status page's token)", markup=False)
    else:
        write_secret(creds, name, secrets.token_urlsafe(32))
        console.print(f"stored {name} in {path} (0600): the status page's bearer token", markup=False)
    sudo = "" if user_scope or os.geteuid() == 0 else "sudo "
    host = "HOST" if page.host in ("0.0.0.0", "::") else f"[{page.host}]" if ":" in page.host else page.host
    console.print(
        f'status page: curl -H "Authorization: Bearer $({sudo}cat {path})" http://{host}:{page.port}/api/status',
        markup=False,
        highlight=False,
    )
    return name


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


def _report(result: WriteResult) -> None:
    if not result.changes:
        console.print(f"config unchanged: {result.path}", markup=False)
        return
    verb = "wrote" if result.created else "updated"
    console.print(f"{verb} {result.path}" + (f" (backup: {result.backup})" if result.backup else ""), markup=False)
    for change in result.changes:
        console.print(f"  {change}", markup=False, highlight=False)
    cfg = result.config
    console.print(
        f"valid: {count(len(cfg.repos), 'repo')}, {count(len(cfg.agents), 'agent')}, forge {cfg.forge}", markup=False
    )
