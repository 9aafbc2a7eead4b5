"""``agentos doctor``'s GitHub checks: the token or App, what each feature needs, repos, labels and boards.

The checks go through the daemon's own client (:class:`~agentos.forge.github.GitHubClient` with the
same :class:`TokenAuth` or :class:`AppAuth`), so what passes here is what the daemon will do. Findings:

* ``github:token`` / ``github:app``: the credential works. A classic PAT lists its scopes in
  ``X-OAuth-Scopes`` (``github:scopes``: ``repo``, plus ``project`` when a repo uses a board). An App's installation
  token comes with the permissions the installation granted (``github:permissions``).
* ``github:REPO``: the repository is visible and (for a user's token) pushable.
* ``github:REPO:permissions``: a fine-grained PAT says nothing about its permissions, so each feature's
  read endpoint is probed; a 403 names the permission GitHub wanted (``x-accepted-github-permissions``).
* ``github:REPO:labels``: the ready, running and blocked labels exist.
* ``github:REPO:board``: the Projects v2 board, its status field and the options agentos moves cards to.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, get_args
from urllib.parse import quote

from agentos.cli.doctor import Check
from agentos.cli.probes import GITHUB_API, find_secret

if TYPE_CHECKING:
    from agentos.config import Config, RepoConfig
    from agentos.forge.github import AppAuth, GitHubClient, TokenAuth

__all__ = ["NEEDS", "Need", "check_github"]

TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class Need:
    """A GitHub App / fine-grained permission agentos uses, the level it needs, and what for."""

    permission: str
    level: str
    purpose: str
    probe: str | None = None  # a read endpoint that answers 403 without the permission
    optional: bool = False
    board_only: bool = False

    @property
    def label(self) -> str:
        return self.permission.replace("_", " ")


NEEDS: tuple[Need, ...] = (
    Need("metadata", "read", "see the repository"),
    Need("issues", "write", "read ready issues, comment, label, close", "/repos/{repo}/issues?per_page=1"),
    Need("pull_requests", "write", "open, merge and close PRs", "/repos/{repo}/pulls?per_page=1"),
    Need("contents", "write", "push branches, squash-merge, delete branches"),
    Need("checks", "read", "read check runs (the CI gate)", "/repos/{repo}/commits/{branch}/check-runs?per_page=1"),
    Need("statuses", "read", "read commit statuses (the CI gate)", "/repos/{repo}/commits/{branch}/status"),
    Need("actions", "read", "quote failing job logs in CI follow-ups", "/repos/{repo}/actions/runs?per_page=1", True),
    Need("organization_projects", "write", "move Projects v2 cards", board_only=True),
)
"""Every permission agentos uses (docs/github.md lists the same table for App owners)."""

_LEVELS = {"none": 0, "read": 1, "write": 2, "admin": 3}
_APP_SETTINGS = "the app's settings → Permissions & events (then accept the new permissions on the installation)"


def check_github(cfg: Config, env: Mapping[str, str], dirs: list[Path] | None = None) -> list[Check]:
    """Every GitHub finding for ``cfg`` (runs its own event loop; call it from synchronous code)."""
    return asyncio.run(_check_github(cfg, env, dirs))


async def _check_github(cfg: Config, env: Mapping[str, str], dirs: list[Path] | None) -> list[Check]:
    from agentos.forge.github import GitHubClient, GitHubError

    gh = cfg.github
    api = gh.api_url if gh else GITHUB_API
    boards = any(r.project for r in cfg.repos)
    auth_or_problem = _auth(cfg, env, dirs)
    if isinstance(auth_or_problem, Check):
        return [auth_or_problem]
    auth, source = auth_or_problem

    async def no_wait(seconds: float) -> None:  # doctor reports a rate limit instead of sleeping through it
        await asyncio.sleep(0)

    client = GitHubClient(api, auth=auth, max_retries=1, timeout=TIMEOUT_S, max_rate_wait=0, sleep=no_wait)
    try:
        if gh is not None and gh.app_id is not None:
            checks, probe = await _app_identity(client, source, boards)
        else:
            checks, probe = await _token_identity(client, api, source, boards)
        if not any(c.status == "ok" for c in checks):  # no working credential: nothing more can be learnt
            return checks
        for repo in cfg.repos:
            try:
                checks += await _repo_checks(client, cfg, repo, probe=probe)
            except GitHubError as exc:
                checks.append(Check(f"github:{repo.name}", "error", exc.message, "try again; check the network"))
        return checks
    finally:
        await client.aclose()


def _auth(cfg: Config, env: Mapping[str, str], dirs: list[Path] | None) -> tuple[TokenAuth | AppAuth, str] | Check:
    from agentos.forge.base import ForgeError
    from agentos.forge.github import AppAuth, TokenAuth, load_app_key

    gh = cfg.github
    if gh is None or gh.app_id is None:
        token, source = find_secret("github_token", "GITHUB_TOKEN", env, dirs)
        if token is None:
            fix = "export GITHUB_TOKEN, or run agentos init --forge github to store it in the credentials file"
            return Check("github:token", "error", "no GitHub token (GITHUB_TOKEN or credential github_token)", fix)
        return TokenAuth(token), source
    if gh.installation_id is None:
        fix = "set github.installation_id: the number at the end of the installation's settings URL"
        return Check("github:app", "error", f"github.app_id is {gh.app_id} but github.installation_id is not set", fix)
    key, source = find_secret("github_app_key", "GITHUB_APP_KEY", env, dirs)
    key_fix = (
        "set GITHUB_APP_KEY to the .pem GitHub generated (its text or its path), or store it as the github_app_key "
        "credential (systemd LoadCredential=github_app_key:/etc/agentos/app.pem)"
    )
    if key is None:
        return Check(
            "github:app", "error", "no GitHub App private key (GITHUB_APP_KEY or credential github_app_key)", key_fix
        )
    try:
        return AppAuth(gh.app_id, load_app_key(key), gh.installation_id), source
    except ForgeError as exc:
        return Check("github:app", "error", f"{exc} (from {source})", key_fix)


async def _token_identity(client: GitHubClient, api: str, source: str, boards: bool) -> tuple[list[Check], bool]:
    """The ``github:token`` finding, and whether the repos' permissions must be probed (a fine-grained token)."""
    from agentos.forge.github import GitHubError

    fix = "export GITHUB_TOKEN, or run agentos init --forge github to store it in the credentials file"
    try:
        resp = await client.response("/user")
    except GitHubError as exc:
        return [
            Check("github:token", "error", f"cannot reach {api}: {exc.message}", "check the network or github.api_url")
        ], False
    if resp.status_code == 401:
        return [Check("github:token", "error", f"the token from {source} is rejected (401)", fix)], False
    if resp.status_code != 200:
        return [Check("github:token", "error", f"GET /user answered {resp.status_code}", "check the token")], False
    login = str(resp.json().get("login", "?"))
    header = resp.headers.get("x-oauth-scopes")
    if header is None:
        detail = f"fine-grained token of {login} (from {source}); permissions are probed per repository"
        return [Check("github:token", "ok", detail)], True
    scopes = [s.strip() for s in header.split(",") if s.strip()]
    detail = f"classic token of {login} (from {source}), scopes: {', '.join(scopes) or 'none'}"
    missing = [s for s in ["repo", *(["project"] if boards else [])] if s not in scopes]
    if missing:
        why = "; read:project can read a board but not move its cards" if "read:project" in scopes else ""
        fix = f"add the scope(s) {', '.join(missing)} at https://github.com/settings/tokens"
        return [
            Check("github:token", "ok", f"token of {login} accepted (from {source})"),
            Check("github:scopes", "error", f"{detail}; missing {', '.join(missing)}{why}", fix),
        ], False
    return [Check("github:token", "ok", detail)], False


async def _app_identity(client: GitHubClient, source: str, boards: bool) -> tuple[list[Check], bool]:
    """``github:app`` (an installation token can be minted) and ``github:permissions`` (what it was granted)."""
    from agentos.forge.github import AppAuth, GitHubError

    auth = client.auth
    assert isinstance(auth, AppAuth)
    try:
        await client.token()
    except GitHubError as exc:
        fix = "check github.app_id, github.installation_id, the key (from " + source + ") and the clock"
        return [Check("github:app", "error", exc.message, fix)], False
    where = f"app {auth.app_id}, installation {auth.installation_id}"
    checks = [Check("github:app", "ok", f"{where}: installation token minted (key from {source})")]
    missing: list[str] = []
    optional: list[str] = []
    for need in NEEDS:
        if need.board_only and not boards:
            continue
        have = auth.permissions.get(need.permission, "none")
        if _LEVELS.get(have, 0) < _LEVELS[need.level]:
            line = f"{need.label}: {need.level} (has {have}; to {need.purpose})"
            (optional if need.optional else missing).append(line)
    granted = ", ".join(f"{k}={v}" for k, v in sorted(auth.permissions.items())) or "none"
    if missing:
        detail = "the installation lacks " + "; ".join(missing + optional)
        checks.append(Check("github:permissions", "error", detail, f"grant them in {_APP_SETTINGS}"))
    elif optional:
        detail = "optional: " + "; ".join(optional)
        checks.append(Check("github:permissions", "warn", detail, f"grant it in {_APP_SETTINGS}"))
    else:
        checks.append(Check("github:permissions", "ok", f"granted {granted}"))
    return checks, False


async def _repo_checks(client: GitHubClient, cfg: Config, repo: RepoConfig, *, probe: bool) -> list[Check]:
    from agentos.forge.github import GitHubError

    name, where = repo.name, f"github:{repo.name}"
    try:
        resp = await client.response(f"/repos/{name}")
    except GitHubError as exc:
        return [Check(where, "error", f"{name}: {exc.message}", "check the network and github.api_url")]
    app = cfg.github is not None and cfg.github.app_id is not None
    if resp.status_code in (403, 404):
        fix = (
            "add the repository to the app's installation (the installation's settings → Repository access)"
            if app
            else "grant the token access to it (fine-grained: Repository access), or fix the name (owner/name)"
        )
        return [Check(where, "error", f"{name}: not visible ({resp.status_code})", fix)]
    if resp.status_code != 200:
        return [Check(where, "error", f"{name}: GET answered {resp.status_code}", "check the name (owner/name)")]
    body = resp.json()
    perms = body.get("permissions") or {}
    if perms and not perms.get("push"):
        fix = "give the token's user write access to the repository"
        return [Check(where, "error", f"{name}: this user cannot push (role {body.get('role_name', '?')})", fix)]
    checks = [Check(where, "ok", f"{name}: reachable" + (", can push" if perms.get("push") else ""))]
    if probe:
        checks.append(await _probe_permissions(client, name, str(body.get("default_branch") or repo.base_branch)))
    checks.append(await _labels(client, cfg, repo))
    if repo.project:
        checks.append(await _board(client, repo))
    if queue := await _merge_queue(client, repo):
        checks.append(queue)
    return checks


async def _merge_queue(client: GitHubClient, repo: RepoConfig) -> Check | None:
    """A line when the base branch requires GitHub's merge queue (agentos then enqueues instead of merging)."""
    from agentos.forge._github_merge_queue import requires_merge_queue

    resp = await client.response(f"/repos/{repo.name}/rules/branches/{quote(repo.base_branch, safe='')}")
    if resp.status_code != 200 or not requires_merge_queue(resp.json()):
        return None
    detail = f"{repo.base_branch} requires GitHub's merge queue: green PRs are enqueued, GitHub merges them"
    return Check(f"github:{repo.name}:merge_queue", "ok", detail)


async def _probe_permissions(client: GitHubClient, repo: str, branch: str) -> Check:
    """A fine-grained token: each feature's read endpoint; a 403 is a permission it lacks.

    GitHub cannot grant Checks to a fine-grained token; the forge then reads Actions jobs instead, so
    Checks may be missing when Actions is readable.
    """
    denied: dict[str, str] = {}
    for need in NEEDS:
        if need.probe is None:
            continue
        resp = await client.response(need.probe.format(repo=repo, branch=quote(branch, safe="")))
        if resp.status_code == 403:
            denied[need.permission] = resp.headers.get("x-accepted-github-permissions") or f"{need.permission}=read"
    required = [n for n in NEEDS if n.permission in denied and n.permission not in ("checks", "actions")]
    missing = [f"{n.label} ({denied[n.permission]}; to {n.purpose})" for n in required]
    if "checks" in denied and "actions" in denied:
        missing.append(f"actions ({denied['actions']}; CI results are read from Actions jobs without checks)")
    optional = "actions" in denied and "checks" not in denied
    where = f"github:{repo}:permissions"
    fix = (
        f"edit the token at https://github.com/settings/personal-access-tokens: Repository permissions for {repo} → "
        "Read and write: issues, pull requests, contents; Read: commit statuses, actions"
    )
    if missing:
        return Check(where, "error", "the token cannot read " + "; ".join(missing), fix)
    if optional:
        return Check(where, "warn", "optional: actions (failing job logs in CI follow-ups)", fix)
    via = "Actions jobs (Checks is not grantable to this token)" if "checks" in denied else "check runs"
    detail = f"issues, pull requests and statuses readable; CI from {via} (write access is used, not probed)"
    return Check(where, "ok", detail)


async def _labels(client: GitHubClient, cfg: Config, repo: RepoConfig) -> Check:
    from agentos.cli.init_plan import LABELS
    from agentos.forge.base import BLOCKED_LABEL, READY_LABEL, RUNNING_LABEL

    ready = cfg.github.ready_label if cfg.github else READY_LABEL
    wanted = [ready, RUNNING_LABEL, BLOCKED_LABEL]
    missing = []
    for label in wanted:
        resp = await client.response(f"/repos/{repo.name}/labels/{quote(label, safe='')}")
        if resp.status_code == 404:
            missing.append(label)
        elif resp.status_code != 200:
            return Check(f"github:{repo.name}:labels", "warn", f"reading labels answered {resp.status_code}", "")
    where = f"github:{repo.name}:labels"
    if not missing:
        return Check(where, "ok", f"{', '.join(wanted)} exist")
    colors = {name: color for name, color, _ in LABELS}
    commands = "; ".join(
        f"gh label create {label} -R {repo.name} -c {colors.get(label, 'ededed')}" for label in missing
    )
    fix = f"agentos init --forge github --create-labels (safe to re-run), or: {commands}"
    blocking = ready in missing and not repo.project  # label mode: nobody can mark an issue ready
    detail = f"missing {', '.join(missing)}" + (" (issues cannot be made ready)" if blocking else "")
    return Check(where, "error" if blocking else "warn", detail, fix)


async def _board(client: GitHubClient, repo: RepoConfig) -> Check:
    from pydantic import ValidationError

    from agentos.forge.base import BoardStatus, ForgeError, NotFound
    from agentos.forge.github import GitHubError, GitHubForge, ProjectConfig

    where = f"github:{repo.name}:board"
    try:
        project = ProjectConfig.model_validate(repo.project)
    except ValidationError as exc:
        problem = exc.errors()[0]["msg"]
        return Check(where, "error", f"repos[{repo.name}].project: {problem}", "give number (and owner) or node_id")
    field = project.status_field
    try:
        options = set(await GitHubForge(client, projects={repo.name: project}).board_options(repo.name))
    except NotFound as exc:
        fix = "check repos[].project (owner, number); the token needs the project scope (App: organization projects)"
        return Check(where, "error", f"board not found: {str(exc).rsplit(': ', 1)[-1]}", fix)
    except GitHubError as exc:
        return Check(where, "error", f"reading the board failed: {exc.message}", "check the project scope/permission")
    except ForgeError as exc:
        return Check(where, "error", str(exc), f"add a single-select field {field!r} or set project.status_field")
    statuses: tuple[BoardStatus, ...] = get_args(BoardStatus)
    missing = [project.option_name(s) for s in statuses if project.option_name(s).lower() not in options]
    if missing:
        fix = (
            f"run `agentos init --create-board-options` to add them to the {field} field, "
            "or map them in repos[].project.status_values"
        )
        return Check(where, "error", f"field {field!r} has no option {', '.join(map(repr, missing))}", fix)
    return Check(where, "ok", f"field {field!r} has {', '.join(project.option_name(s) for s in statuses)}")
