"""Where the real CLIs are installed, and how each one is pointed at the scripted model server.

Shared by the adapter-level tests (``test_real_clis.py``) and the daemon tests (``test_daemon_real_clis.py``).
Importing this module skips the importing test module, with the reason, when the CLIs are not there:
``AGENTOS_REAL_CLI_DIR`` is unset (plain ``pytest``; ``make test`` and ``make test-agents`` set it), or
``scripts/install-agent-clis.sh`` found the npm registry unreachable and had nothing installed.

What each CLI needs to talk to a local server (:func:`cli_setup`):

* Claude Code: ``ANTHROPIC_BASE_URL`` and ``ANTHROPIC_API_KEY`` (API billing) or ``CLAUDE_CODE_OAUTH_TOKEN``
  (a Claude plan: only then does it state a usage limit's reset time).
* Codex: a model provider in ``~/.codex/config.toml`` (``base_url = "<url>/v1"``, ``wire_api = "responses"``,
  ``supports_websockets = false``, ``env_key = "OPENAI_API_KEY"``); the ``OPENAI_BASE_URL`` variable is ignored.
* Gemini CLI: ``GOOGLE_GEMINI_BASE_URL`` and ``GEMINI_API_KEY``, plus ``security.auth.selectedType:
  gemini-api-key`` in ``~/.gemini/settings.json``: with the base URL alone 0.61.0 picks its "gateway" auth
  type, which headless mode rejects ("Invalid auth method selected.", exit 41).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from agentos.config import AgentConfig, AgentKind
from tests.fakes.model_server import ModelServer, Provider

_DIR = os.environ.get("AGENTOS_REAL_CLI_DIR", "").strip()
if not _DIR:
    pytest.skip(
        "AGENTOS_REAL_CLI_DIR is not set: the real Claude Code/Codex/Gemini CLI tests run with `make test` or "
        "`make test-agents` (they install the CLIs from npm into .cache/agent-clis and set it)",
        allow_module_level=True,
    )
CLI_DIR = Path(_DIR).expanduser().resolve()
if (CLI_DIR / ".registry-unreachable").exists() and not (CLI_DIR / ".installed").exists():
    pytest.skip((CLI_DIR / ".registry-unreachable").read_text().strip(), allow_module_level=True)

CLIS: tuple[AgentKind, ...] = ("claude", "codex", "gemini")
PROVIDERS: dict[AgentKind, Provider] = {"claude": "anthropic", "codex": "openai", "gemini": "gemini"}
IS_ROOT = os.geteuid() == 0
NODE = shutil.which("node")
KEYS = {
    "ANTHROPIC_API_KEY": "sk-ant-api03-realcli-test",
    "CLAUDE_CODE_OAUTH_TOKEN": "sk-ant-oat01-realcli-test",
    "OPENAI_API_KEY": "sk-proj-realcli-test",
    "GEMINI_API_KEY": "AIzaSy-realcli-test",
}


def binary(kind: AgentKind) -> Path:
    for path in (CLI_DIR / "node_modules" / ".bin" / kind, CLI_DIR / "bin" / kind, CLI_DIR / kind):
        if path.exists():
            return path
    raise AssertionError(f"{kind} is not installed in {CLI_DIR}: run scripts/install-agent-clis.sh {CLI_DIR}")


def assert_installed() -> None:
    assert NODE, "node is not on PATH (Codex's launcher and Gemini CLI are Node programs)"
    for kind in CLIS:
        binary(kind)


def cli_setup(
    kind: AgentKind, server: ModelServer, home: Path, *, model: str | None = None, oauth: bool = False
) -> AgentConfig:
    """The agent config (and the CLI's files in ``home``) that run the real ``kind`` against ``server``."""
    if kind == "claude":
        return AgentConfig(
            kind="claude",
            binary=str(binary(kind)),
            model=model,
            env={"ANTHROPIC_BASE_URL": server.url, "DISABLE_AUTOUPDATER": "1"},
            pass_env=["CLAUDE_CODE_OAUTH_TOKEN" if oauth else "ANTHROPIC_API_KEY"],
        )
    if kind == "codex":
        (home / ".codex").mkdir(parents=True, exist_ok=True)
        (home / ".codex" / "config.toml").write_text(
            'model_provider = "agentos-test"\n\n'
            "[model_providers.agentos-test]\n"
            'name = "agentos scripted model server"\n'
            f'base_url = "{server.url}/v1"\n'
            'env_key = "OPENAI_API_KEY"\n'
            'wire_api = "responses"\n'
            "supports_websockets = false\n"
        )
        return AgentConfig(kind="codex", binary=str(binary(kind)), model=model, pass_env=["OPENAI_API_KEY"])
    (home / ".gemini").mkdir(parents=True, exist_ok=True)
    (home / ".gemini" / "settings.json").write_text(
        json.dumps({"security": {"auth": {"selectedType": "gemini-api-key"}}})
    )
    return AgentConfig(
        kind="gemini",
        binary=str(binary(kind)),
        model=model,
        env={"GOOGLE_GEMINI_BASE_URL": server.url},
        pass_env=["GEMINI_API_KEY"],
    )
