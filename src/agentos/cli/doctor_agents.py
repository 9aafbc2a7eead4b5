"""``agentos doctor``'s agent checks: each CLI is installed, answers ``--version``, and can authenticate.

``--deep`` makes one tiny real call through the environment the daemon would give the agent.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from agentos.cli.doctor import Check
from agentos.cli.probes import probe_version

if TYPE_CHECKING:
    from agentos.config import AgentConfig

__all__ = ["AUTH_ENV", "LOGIN_FILES", "LOGIN_HINTS", "agent_program", "check_agent", "deep_auth_check"]

DEEP_TIMEOUT_S = 90.0

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
