"""The CLIs' non-essential traffic is switched off in the attempt's HOME, keeping what the operator's template set."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from agentos.agents.adapters import build_invocation
from agentos.agents.quiet_home import quiet_home
from agentos.config import AgentConfig, SandboxConfig
from agentos.runners.policy import agent_spec
from agentos.runners.sandbox import prepare


def test_codex_gets_no_update_check_and_no_analytics_next_to_its_login(tmp_path: Path) -> None:
    (tmp_path / ".codex").mkdir()
    (tmp_path / ".codex" / "config.toml").write_text('model = "o4"\n\n[profiles.x]\nmodel = "o3"\n')
    quiet_home("codex", tmp_path)
    conf = tomllib.loads((tmp_path / ".codex" / "config.toml").read_text())
    assert conf["check_for_update_on_startup"] is False and conf["analytics"] == {"enabled": False}
    assert conf["model"] == "o4" and conf["profiles"] == {"x": {"model": "o3"}}


def test_an_operator_setting_is_kept(tmp_path: Path) -> None:
    (tmp_path / ".codex").mkdir()
    (tmp_path / ".codex" / "config.toml").write_text(
        "check_for_update_on_startup = true\n[analytics]\nenabled = true\n"
    )
    (tmp_path / ".gemini").mkdir()
    (tmp_path / ".gemini" / "settings.json").write_text('{"privacy": {"usageStatisticsEnabled": true}, "a": 1}')
    quiet_home("codex", tmp_path)
    quiet_home("gemini", tmp_path)
    conf = tomllib.loads((tmp_path / ".codex" / "config.toml").read_text())
    assert conf == {"check_for_update_on_startup": True, "analytics": {"enabled": True}}
    assert json.loads((tmp_path / ".gemini" / "settings.json").read_text()) == {
        "privacy": {"usageStatisticsEnabled": True},
        "a": 1,
    }


def test_gemini_sends_no_usage_statistics(tmp_path: Path) -> None:
    quiet_home("gemini", tmp_path)
    settings = json.loads((tmp_path / ".gemini" / "settings.json").read_text())
    assert settings == {"privacy": {"usageStatisticsEnabled": False}}


def test_the_attempt_home_is_quieted_after_the_template_is_copied(tmp_path: Path) -> None:
    template = tmp_path / "template"
    (template / ".gemini").mkdir(parents=True)
    (template / ".gemini" / "oauth_creds.json").write_text("{}")
    cfg = AgentConfig(kind="gemini", home=str(template))
    spec = agent_spec(
        SandboxConfig(),
        cfg,
        argv=["/usr/bin/gemini"],
        worktree=tmp_path / "wt",
        run_dir=tmp_path / "run",
        prompt_file=tmp_path / "run" / "prompt.md",
        state_dir=tmp_path / "state",
    )
    assert spec is not None and spec.home is not None
    prepare(spec)
    assert (spec.home / ".gemini" / "oauth_creds.json").exists()
    assert json.loads((spec.home / ".gemini" / "settings.json").read_text())["privacy"] == {
        "usageStatisticsEnabled": False
    }


def test_claude_is_told_to_send_only_what_it_needs(tmp_path: Path) -> None:
    inv = build_invocation(
        "claude",
        AgentConfig(kind="claude", binary="/bin/true"),
        prompt="p",
        prompt_file=tmp_path / "prompt.md",
        worktree=tmp_path,
        task_id="t",
        base_env={"PATH": "/usr/bin:/bin"},
    )
    assert inv.env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1"
