"""The daemon loads an optional dependency only when its feature is enabled: counted in a fresh process, not timed.

Resident memory is what this saves (issue 10, docs/performance.md): PyJWT + cryptography ≈ 8 MB, aiohttp and
the status page ≈ 10 MB, aiogram ≈ 120 MB.
"""

from __future__ import annotations

import json
import subprocess
import sys

OPTIONAL = ("aiohttp", "aiogram", "jwt", "cryptography", "ray")

PROBE = """
import json, sys
{code}
print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}} & set({optional!r}))))
"""


def _loaded(code: str) -> list[str]:
    probe = PROBE.format(code=code, optional=OPTIONAL)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    loaded: list[str] = json.loads(out.stdout)
    return loaded


def test_the_daemon_imports_no_optional_feature() -> None:
    """Without Telegram, the status page or a GitHub App, `agentos run` holds none of their libraries."""
    assert _loaded("import agentos.daemon") == []


def test_the_local_runner_does_not_load_ray() -> None:
    """`runner: local` (the default) builds its runner without importing ray (≈ 100 MB and seconds of start-up)."""
    code = (
        "import agentos.daemon\n"
        "from agentos.config import RunnerConfig\n"
        "from agentos.runners.port import runner_for\n"
        "from agentos.testing import RecordingNotifier\n"
        "runner = runner_for(RunnerConfig(), journal=None, notify=RecordingNotifier(), egress=None)\n"
        "assert runner.kind == 'local', runner"
    )
    assert _loaded(code) == []


def test_github_with_a_token_does_not_load_the_jwt_stack() -> None:
    """A GitHub forge authenticated by token builds its client without PyJWT or cryptography."""
    code = (
        "import agentos.daemon\n"
        "from agentos.forge.github import GitHubClient, TokenAuth\n"
        "GitHubClient('http://127.0.0.1:9', auth=TokenAuth('t0ken'))"
    )
    assert _loaded(code) == []


def test_a_github_app_loads_the_jwt_stack_when_it_signs() -> None:
    """GitHub App auth still gets PyJWT and cryptography: a bad key is refused with the one-line error."""
    code = (
        "from agentos.forge.base import ForgeError\n"
        "from agentos.forge.github import AppAuth\n"
        "try:\n"
        "    AppAuth(1, 'not a key', 2)\n"
        "except ForgeError as exc:\n"
        "    assert 'not a readable PEM private key' in str(exc), exc\n"
        "else:\n"
        "    raise SystemExit('a bad key was accepted')"
    )
    assert _loaded(code) == ["cryptography"]
