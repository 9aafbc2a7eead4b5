"""The real Claude Code, Codex and Gemini CLIs behind the egress allowlist: in a sandbox with no network but its
own loopback, each CLI's model traffic goes through the bridge and the daemon's proxy to the scripted server on
127.0.0.1 (proof that the CLI honours the proxy variables), and the task still gets done."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agentos.agents.adapters import build_invocation, parse_output
from agentos.agents.contract import read_contract
from agentos.agents.runner import RunSpec, run_process
from agentos.config import AgentConfig, AgentKind
from agentos.runners.bridge import bridge_argv
from agentos.runners.egress import EgressProxy, default_allow
from tests.fakes.model_server import ModelServer
from tests.realcli.clis import KEYS, NODE, PROVIDERS, binary, cli_setup
from tests.realcli.test_real_clis import PROMPT, complete_script, worktree

__all__ = ["worktree"]  # the fixture, shared with the adapter tests


def _bwrap_net_works() -> bool:
    if not shutil.which("bwrap"):
        return False
    probe = ["bwrap", "--dev-bind", "/", "/", "--unshare-net", "--", "true"]
    return subprocess.run(probe, capture_output=True, check=False).returncode == 0


@pytest.mark.skipif(not _bwrap_net_works(), reason="needs bubblewrap with network namespaces")
@pytest.mark.parametrize("kind", ["claude", "codex", "gemini"])
async def test_the_cli_talks_to_its_model_only_through_the_proxy(
    kind: AgentKind, server: ModelServer, worktree: Path, tmp_path: Path
) -> None:
    """The CLI in a network namespace of its own, behind the bridge, pointed at the scripted server: it completes
    the task and its model requests went through the proxy. With its non-essential traffic switched off
    (:func:`_quiet`) nothing it needs is denied."""
    server.script = complete_script(worktree)
    home, run_dir = tmp_path / "home", tmp_path / "run"
    for d in (home, run_dir, tmp_path / "tmp"):
        d.mkdir(parents=True, exist_ok=True)
    cfg = _quiet(kind, cli_setup(kind, server, home), home)
    base_env = {
        "PATH": os.pathsep.join([str(binary(kind).parent), str(Path(NODE or "node").parent), "/usr/bin", "/bin"]),
        "HOME": str(home),
        "TMPDIR": str(tmp_path / "tmp"),
        "LANG": "C.UTF-8",
        **KEYS,
    }
    inv = build_invocation(
        kind,
        cfg,
        prompt=PROMPT,
        prompt_file=run_dir / "prompt.md",
        worktree=worktree,
        task_id="T-1",
        base_env=base_env,
    )
    denied: list[str] = []
    proxy = EgressProxy(tmp_path / "egress", on_denied=lambda _attempt, host_port: denied.append(host_port))
    session = await proxy.session("T-1/1", [*default_allow(kind, inv.env), server.url.removeprefix("http://")])
    sandbox = ["bwrap", "--dev-bind", "/", "/", "--unshare-net", "--die-with-parent", "--"]
    log = run_dir / "agent.log"
    try:
        outcome = await run_process(
            RunSpec(
                [*sandbox, *bridge_argv(str(session.socket_path), 0), *inv.argv],
                worktree,
                inv.env,
                inv.stdin,
                log,
                idle_timeout_s=90,
                max_runtime_s=180,
                kill_grace_s=2,
                max_log_bytes=8 << 20,
            )
        )
    finally:
        await proxy.aclose()
    output = log.read_text(errors="replace")
    assert outcome.exit_code == 0, output[-3000:]
    report = parse_output(kind, output, outcome.exit_code, now=datetime.now(UTC))
    assert not report.is_error, output[-3000:]
    assert len(server.tool_results(PROVIDERS[kind])) == 3
    assert read_contract(worktree / ".agent_result.md").status == "complete"
    assert session.connections >= 1  # every model request went through the proxy: there is no other way out
    assert server.url.removeprefix("http://") not in session.denied, session.summary()
    if kind != "codex":  # codex 0.169.0 still looks at github.com and api.github.com (its plugin marketplace)
        assert session.summary() == ""


def _quiet(kind: AgentKind, cfg: AgentConfig, home: Path) -> AgentConfig:
    """Switch off what each CLI sends besides its model traffic (it works without it; behind the allowlist it
    would only show up as denials). Found with the pinned versions:

    * Claude Code 2.1.197: api.anthropic.com:443 (six CONNECTs, although the model is elsewhere) →
      ``CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1``;
    * Codex 0.169.0: ab.chatgpt.com:443 → ``[analytics] enabled = false``; its update check →
      ``check_for_update_on_startup = false``; github.com and api.github.com remain;
    * Gemini CLI 0.61.0: play.googleapis.com:443 (usage statistics) → ``privacy.usageStatisticsEnabled: false``.
    """
    if kind == "claude":
        return cfg.model_copy(update={"env": {**cfg.env, "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}})
    if kind == "codex":
        conf = home / ".codex" / "config.toml"
        conf.write_text(f"check_for_update_on_startup = false\n{conf.read_text()}\n[analytics]\nenabled = false\n")
    if kind == "gemini":
        conf = home / ".gemini" / "settings.json"
        settings = json.loads(conf.read_text())
        settings["privacy"] = {"usageStatisticsEnabled": False}
        conf.write_text(json.dumps(settings))
    return cfg
