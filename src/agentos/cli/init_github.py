"""``agentos init``, GitHub: verify the token (``GET /user`` and each repo) and create the ``agentos:*`` labels."""

from __future__ import annotations

import os
from pathlib import Path

from rich.markup import escape

from agentos.cli._common import console, err_console
from agentos.cli.init_plan import LABELS, Asker, InitError


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


def ask_github_token(ask: Asker, api_url: str, token: str | None, repos: list[str], creds: Path) -> str:
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


def offer_labels(ask: Asker, flag: bool | None, api_url: str, token: str, repos: list[str]) -> None:
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
