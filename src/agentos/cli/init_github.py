"""``agentos init``, GitHub: the token or GitHub App, the ``agentos:*`` labels and the board's Status options.

Every request goes through the daemon's own client (:class:`~agentos.forge.github.GitHubClient` with the
same :class:`TokenAuth` or :class:`AppAuth`), so what init verifies is what the daemon will do:

* a token: ``GET /user`` (its login, and a classic token's scopes), then ``GET /repos/{repo}`` for each repo;
* an App: an installation token is minted from the app id, the installation id and the private key,
  then each repo is read with it. The key is stored as the ``github_app_key`` credential (0600), never
  in the YAML;
* labels: each missing ``agentos:*`` label is created (``GET`` first, so a re-run creates nothing);
* boards: a repo with ``repos[].project`` gets the Status options agentos moves cards to. GitHub's
  ``updateProjectV2Field`` replaces the whole option list, so the existing options are sent back with
  their ids (their cards keep their value) and the missing ones are added.
"""

from __future__ import annotations

import os
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from rich.markup import escape

from agentos.cli._common import console, err_console
from agentos.cli.init_plan import LABELS, Asker, InitError, Plan

if TYPE_CHECKING:
    from agentos.config import Config
    from agentos.forge.github import AppAuth, GitHubClient, ProjectConfig, TokenAuth

T = TypeVar("T")
TIMEOUT_S = 15.0


@dataclass(frozen=True)
class GitHubFlags:
    """What the command line said about GitHub credentials (None: ask, or take the config's)."""

    token: str | None = None
    app_id: int | None = None
    installation_id: int | None = None
    app_key: str | None = None  # the path of the App's .pem


@dataclass(frozen=True)
class GitHubAccess:
    """A verified way in: a token, or a GitHub App (id, installation id and the key's PEM)."""

    api_url: str
    token: str | None = None
    app_id: int | None = None
    installation_id: int | None = None
    app_key: str | None = None

    def auth(self) -> TokenAuth | AppAuth:
        from agentos.forge.github import AppAuth, TokenAuth

        if self.app_id is not None and self.installation_id is not None and self.app_key is not None:
            return AppAuth(self.app_id, self.app_key, self.installation_id)
        return TokenAuth(self.token or "")

    def session(self) -> GitHubSession:
        return GitHubSession(self.api_url, self.auth())


class GitHubSession:
    """The daemon's client on one event loop, for init's synchronous steps; library logs go to stderr, warnings only."""

    def __init__(self, api_url: str, auth: TokenAuth | AppAuth) -> None:
        import asyncio  # here: every `agentos` command imports this module

        from agentos.cli.doctor import _logs_to_stderr
        from agentos.forge.github import GitHubClient

        self._runner = asyncio.Runner()
        self._logs = _logs_to_stderr()
        self._logs.__enter__()
        self.client: GitHubClient = GitHubClient(
            api_url, auth=auth, max_retries=2, timeout=TIMEOUT_S, max_rate_wait=60.0
        )

    def __enter__(self) -> GitHubSession:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            self._runner.run(self.client.aclose())
            self._runner.close()
        finally:
            self._logs.__exit__(None, None, None)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._runner.run(coro)


# ---------------------------------------------------------------- verifying


async def _verify_token(client: GitHubClient, repos: list[str], boards: bool) -> list[str]:
    """``GET /user`` and each repo; lines to print, or :class:`InitError` for a token that does not work."""
    from agentos.cli.probes import github_scopes
    from agentos.forge.github import GitHubError

    try:
        resp = await client.response("/user")
    except GitHubError as exc:
        raise InitError(f"cannot reach {client.base_url}: {exc.message}") from None
    if resp.status_code == 401:
        raise InitError("GitHub rejects this token (401); create one with repo access and try again")
    if resp.status_code != 200:
        raise InitError(f"GET {client.base_url}/user answered {resp.status_code}")
    scopes = github_scopes(resp)
    login = resp.json().get("login", "?")
    lines = [f"GitHub: token of {login}" + (f", scopes {', '.join(scopes)}" if scopes else "")]
    if scopes is not None:
        lacking = [s for s in ["repo", *(["project"] if boards else [])] if s not in scopes]
        if lacking:
            lines.append(f"  warning: the token lacks the scope(s) {', '.join(lacking)}; agentos needs them")
    return lines + await _verify_repos(client, repos, "token")


async def _verify_app(client: GitHubClient, repos: list[str], boards: bool) -> list[str]:
    """Mint an installation token, warn about missing permissions, then read each repo with it."""
    from agentos.cli.doctor_github import NEEDS
    from agentos.forge.github import AppAuth, GitHubError

    auth = client.auth
    assert isinstance(auth, AppAuth)
    try:
        await client.token()
    except GitHubError as exc:
        raise InitError(exc.message) from None
    lines = [f"GitHub App {auth.app_id}, installation {auth.installation_id}: installation token minted"]
    levels = {"none": 0, "read": 1, "write": 2, "admin": 3}
    lacking = [
        f"{n.label} ({n.level})"
        for n in NEEDS
        if not n.optional
        and (boards or not n.board_only)
        and levels.get(auth.permissions.get(n.permission, "none"), 0) < levels[n.level]
    ]
    if lacking:
        lines.append(f"  warning: the installation lacks {', '.join(lacking)}; grant them in the app's settings")
    return lines + await _verify_repos(client, repos, "installation")


async def _verify_repos(client: GitHubClient, repos: list[str], who: str) -> list[str]:
    from agentos.forge.github import GitHubError

    lines = []
    for name in repos:
        try:
            resp = await client.response(f"/repos/{name}")
        except GitHubError as exc:
            raise InitError(f"GitHub: reading {name} failed: {exc.message}") from None
        if resp.status_code != 200:
            raise InitError(f"GitHub: {name} is not visible to this {who} ({resp.status_code})")
        push = (resp.json().get("permissions") or {}).get("push")
        lines.append(f"  {name}: ok" + ("" if push in (None, True) else " (warning: no push access)"))
    return lines


def _check(access: GitHubAccess, repos: list[str], boards: bool) -> None:
    """Verify ``access`` and print what was found; :class:`InitError` (one line) when it does not work."""
    from agentos.forge.base import ForgeError

    try:
        session = access.session()
    except ForgeError as exc:  # a key that cannot sign
        raise InitError(str(exc)) from None
    with session:
        verify = _verify_app if access.app_id is not None else _verify_token
        for line in session.run(verify(session.client, repos, boards)):
            console.print(line, markup=False, highlight=False)


# ---------------------------------------------------------------- credentials


def ask_github(
    ask: Asker,
    plan: Plan,
    existing: Config | None,
    flags: GitHubFlags,
    api_url: str,
    repos: list[str],
    creds: Path,
    secrets: dict[str, str],
) -> GitHubAccess:
    """A token or a GitHub App that works for every repo; the secret goes into ``secrets`` (stored by init).

    The App is chosen by ``--github-app-id`` or the config's ``github.app_id``; interactively, when neither
    a token nor an App is given, the wizard asks which.
    """
    gh = existing.github if existing else None
    boards = any(r.project for r in (existing.repos if existing else []))
    app_id = flags.app_id or (gh.app_id if gh else None)
    if app_id is None and flags.token is None and ask.interactive:
        question = "GitHub credentials: a token or a GitHub App"
        if ask.choice(question, ("token", "app"), "token", flag="--github-app-id") == "app":
            app_id = ask.integer("GitHub App id (the app's settings page)", None, flag="--github-app-id")
    if app_id is None:
        access = _ask_token(ask, api_url, flags.token, repos, creds, boards)
        assert access.token is not None
        secrets["github_token"] = access.token
        return access
    installation = flags.installation_id or (gh.installation_id if gh else None)
    installation = installation or ask.integer(
        "Installation id (the number at the end of the installation's settings URL)",
        None,
        flag="--github-installation-id",
    )
    assert installation is not None
    access = _ask_app(ask, api_url, app_id, installation, flags.app_key, repos, creds, boards)
    assert access.app_key is not None
    plan.github_app_id, plan.github_installation_id = app_id, installation
    secrets["github_app_key"] = access.app_key
    return access


def _ask_token(
    ask: Asker, api_url: str, token: str | None, repos: list[str], creds: Path, boards: bool
) -> GitHubAccess:
    from agentos.cli.probes import find_secret

    if token is None:
        found, source = find_secret("github_token", "GITHUB_TOKEN", os.environ, [creds])
        if found and ask.confirm(f"Use the GitHub token from {source}?", default=True):
            token = found
    for attempt in range(3):
        token = token or ask.text("GitHub token (input hidden)", None, flag="--github-token", hide=True)
        access = GitHubAccess(api_url, token=token)
        try:
            _check(access, repos, boards)
            return access
        except InitError as exc:
            if not ask.interactive or attempt == 2:
                raise
            console.print(f"[red]{escape(str(exc))}[/red]")
            token = None
    raise InitError("no working GitHub token")


def read_app_key(path: str) -> str:
    """The PEM text of the ``.pem`` file at ``path``; a one-line :class:`InitError` naming the file otherwise."""
    from agentos.forge.base import ForgeError
    from agentos.forge.github import load_app_key

    file = Path(path).expanduser()
    if not file.is_file():
        raise InitError(f"--github-app-key {path}: no such file")
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InitError(f"--github-app-key {path}: cannot read it ({exc.__class__.__name__})") from None
    if "-----BEGIN" not in text:
        raise InitError(f"--github-app-key {path}: not a PEM private key (the .pem file GitHub generated for the app)")
    try:
        return load_app_key(text)
    except ForgeError as exc:
        raise InitError(f"--github-app-key {path}: {exc}") from None


def _ask_app(
    ask: Asker,
    api_url: str,
    app_id: int,
    installation: int,
    key_path: str | None,
    repos: list[str],
    creds: Path,
    boards: bool,
) -> GitHubAccess:
    from agentos.cli.probes import find_secret
    from agentos.forge.base import ForgeError
    from agentos.forge.github import load_app_key
    from agentos.redact import get_default

    pem: str | None = None
    if key_path is None:
        found, source = find_secret("github_app_key", "GITHUB_APP_KEY", os.environ, [creds])
        if found and ask.confirm(f"Use the GitHub App key from {source}?", default=True):
            try:
                pem = load_app_key(found)
            except ForgeError as exc:
                console.print(f"[yellow]{escape(str(exc))}[/yellow]")
    for attempt in range(3):
        try:
            if pem is None:
                question = "Path of the GitHub App's private key (.pem)"
                key_path = key_path or ask.text(question, None, flag="--github-app-key")
                pem = read_app_key(key_path)
            get_default().add(pem)
            access = GitHubAccess(api_url, app_id=app_id, installation_id=installation, app_key=pem)
            _check(access, repos, boards)
            return access
        except InitError as exc:
            if not ask.interactive or attempt == 2:
                raise
            console.print(f"[red]{escape(str(exc))}[/red]")
            pem = key_path = None
    raise InitError("no working GitHub App key")


# ---------------------------------------------------------------- labels and boards


async def _create_labels(client: GitHubClient, repos: list[str]) -> list[str]:
    """Create each missing ``agentos:*`` label; existing ones are left as they are (a re-run sends no POST)."""
    from agentos.forge.github import GitHubError

    lines = []
    for repo in repos:
        made = []
        for name, color, description in LABELS:
            resp = await client.response(f"/repos/{repo}/labels/{quote(name, safe='')}")
            if resp.status_code == 200:
                continue
            if resp.status_code != 404:
                raise InitError(f"{repo}: reading label {name} answered {resp.status_code}")
            body: dict[str, Any] = {"name": name, "color": color, "description": description}
            try:
                await client.post(f"/repos/{repo}/labels", json=body)
            except GitHubError as exc:
                if exc.status != 422:  # 422: made in between, which is fine
                    raise InitError(f"{repo}: creating label {name}: {exc.message}") from None
                continue
            made.append(name)
        lines.append(f"  {repo}: " + (f"created {', '.join(made)}" if made else "labels already there"))
    return lines


def offer_labels(ask: Asker, flag: bool | None, access: GitHubAccess, repos: list[str]) -> None:
    names = ", ".join(n for n, _, _ in LABELS)
    wanted = flag if flag is not None else ask.confirm(f"Create the labels {names} in each repo?", default=True)
    if not wanted:
        console.print("labels: left for later (agentos init --create-labels; they are also made on first use)")
        return
    from agentos.forge.base import ForgeError

    try:
        with access.session() as session:
            for line in session.run(_create_labels(session.client, repos)):
                console.print(line, markup=False, highlight=False)
    except (InitError, ForgeError, OSError) as exc:
        err_console.print(
            f"[yellow]labels not created:[/yellow] {escape(str(exc))}; run agentos init --create-labels later"
        )


def offer_board_options(ask: Asker, flag: bool | None, access: GitHubAccess, config: Config) -> None:
    """For each repo with a board: check its Status options and, when agreed, add the missing ones.

    ``--yes`` changes a board only with ``--create-board-options``: the option list is shared by everyone
    using the board.
    """
    from pydantic import ValidationError

    from agentos.forge.base import ForgeError
    from agentos.forge.github import ProjectConfig

    boards: dict[str, ProjectConfig] = {}
    for repo in config.repos:
        if repo.project:
            try:
                boards[repo.name] = ProjectConfig.model_validate(repo.project)
            except ValidationError as exc:
                problem = f"repos[{repo.name}].project: {exc.errors()[0]['msg']}"
                err_console.print(f"[yellow]board:[/yellow] {escape(problem)}")
    if not boards:
        return
    try:
        with access.session() as session:
            for name, project in boards.items():
                line = _board_options(ask, flag, session, name, project)
                console.print(line, markup=False, highlight=False)
    except (InitError, ForgeError, OSError) as exc:
        err_console.print(
            f"[yellow]board not set up:[/yellow] {escape(str(exc))}; run agentos init --create-board-options later"
        )


def _board_options(ask: Asker, flag: bool | None, session: GitHubSession, repo: str, project: ProjectConfig) -> str:
    """Read one board's Status field, add what it lacks when agreed; the line to print."""
    from agentos.forge.github import (
        missing_status_options,
        options_with,
        read_status_field,
        set_status_options,
    )

    where = f"  {repo}: board field {project.status_field!r}"
    field = session.run(read_status_field(session.client, repo, project))
    missing = missing_status_options(project, (o.name for o in field.options))
    if not missing:
        return f"{where} has every option agentos uses"
    listed = ", ".join(missing)
    if flag is not None:
        wanted = flag
    else:
        wanted = ask.interactive and ask.confirm(f"Add the option(s) {listed} to {where.strip()}?", default=True)
    if not wanted:
        return f"{where} lacks {listed}: left for later (agentos init --create-board-options)"
    options = options_with(project, field.options, missing)
    updated = session.run(set_status_options(session.client, field, options))
    still = missing_status_options(project, (o.name for o in updated.options))
    if still:
        raise InitError(f"{where.strip()}: GitHub did not add {', '.join(still)}")
    return f"{where}: added {listed}"


# ---------------------------------------------------------------- webhook

WEBHOOK_EVENTS = (
    "Issues, Issue comments, Pull requests, Pull request reviews, Pull request review comments, "
    "Check suites, Check runs, Statuses, Merge groups"
)


def webhook_setup(config: Config, creds: Path) -> str | None:
    """With ``github.webhook.enabled``: make its secret once (a 0600 credential) and print what to paste into each
    repository's webhook settings. Returns the credential's name (for the unit's ``LoadCredential=``)."""
    import secrets

    from agentos.cli.init_config import write_secret
    from agentos.forge.github import _default_git_base

    gh = config.github
    if config.forge != "github" or gh is None:
        return None
    hook = gh.webhook
    if not hook.enabled:
        console.print(
            f"webhook: off (ready labels are polled every {gh.poll_interval_s:g}s); "
            "`github.webhook.enabled: true` acts on them at once (docs/github.md §7b)",
            markup=False,
        )
        return None
    path = creds / hook.secret_credential
    value = path.read_text(encoding="utf-8").strip() if path.is_file() else ""
    if value:
        console.print(f"kept {hook.secret_credential} in {path} (the webhook's secret)", markup=False)
    else:
        value = secrets.token_hex(32)
        write_secret(creds, hook.secret_credential, value)
        console.print(f"stored {hook.secret_credential} in {path} (0600): the webhook's secret", markup=False)
    host = "[" + hook.host + "]" if ":" in hook.host else hook.host
    local = f"http://{host}:{hook.port}/github/webhook"
    if hook.host in ("127.0.0.1", "::1", "localhost"):
        payload_url = f"https://YOUR-PUBLIC-HOST/github/webhook (a TLS reverse proxy forwarding to {local})"
    else:
        payload_url = local.replace("0.0.0.0", "THIS-MACHINE").replace("[::]", "THIS-MACHINE")
    web = (gh.git_url or _default_git_base(gh.api_url)).rstrip("/")
    where = ", ".join(f"{web}/{r.name}/settings/hooks/new" for r in config.repos) or f"{web}/OWNER/REPO/settings/hooks"
    for line in (
        f"GitHub webhook: add one in each repository ({where}):",
        f"  Payload URL   {payload_url}",
        "  Content type  application/json",
        f"  Secret        {value}",
        f"  Events        {WEBHOOK_EVENTS}",
    ):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    return hook.secret_credential
