"""The agent CLIs' settings that keep an attempt's traffic to its model: written into the attempt's own ``HOME``.

Behind the egress allowlist, whatever a CLI sends besides its model traffic (usage statistics, update checks) is
denied and would show on every attempt as ``blocked: …``. Each CLI works without it, so it is switched off where the
CLI reads its settings, in the sandbox's private ``HOME`` (after ``agents.<name>.home`` was copied in; a setting the
operator's template already has is kept). Claude Code needs no file: its adapter sets
``CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1``. Found with the pinned versions (tests/realcli/test_egress_real.py):

* Codex: ``check_for_update_on_startup = false`` and ``[analytics] enabled = false`` in ``~/.codex/config.toml``
  (ab.chatgpt.com and its update check; github.com and api.github.com, its plugin marketplace, remain);
* Gemini CLI: ``privacy.usageStatisticsEnabled: false`` in ``~/.gemini/settings.json`` (play.googleapis.com).

With ``sandbox.mode: off`` nothing is written: ``HOME`` is then the operator's own.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

__all__ = ["quiet_home"]


def quiet_home(kind: str, home: Path) -> None:
    """Write ``kind``'s quiet settings into the attempt's ``home`` (see the module doc); other kinds: nothing."""
    if kind == "codex":
        _codex(home / ".codex" / "config.toml")
    elif kind == "gemini":
        _gemini(home / ".gemini" / "settings.json")


def _codex(path: Path) -> None:
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    try:
        current = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return  # the operator's file is theirs to fix; the CLI will say what is wrong with it
    if "check_for_update_on_startup" not in current:
        text = f"check_for_update_on_startup = false\n{text}"  # a top-level key: before every table
    if "analytics" not in current:
        text = f"{text.rstrip()}\n\n[analytics]\nenabled = false\n".lstrip()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _gemini(path: Path) -> None:
    try:
        settings = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        return
    if not isinstance(settings, dict):
        return
    privacy = settings.setdefault("privacy", {})
    if isinstance(privacy, dict):
        privacy.setdefault("usageStatisticsEnabled", False)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
