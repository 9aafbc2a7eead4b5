"""The real Claude Code CLI behind the egress allowlist: in a sandbox with no network but its own loopback,
its model traffic goes through the bridge and the daemon's proxy to the scripted server on 127.0.0.1 (proof
that the CLI honours the proxy variables), and the task still gets done."""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agentos.agents.adapters import build_invocation, parse_output
from agentos.agents.contract import read_contract
from agentos.agents.runner import RunSpec, run_process
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
async def test_claude_talks_to_its_model_only_through_the_proxy(
    server: ModelServer, worktree: Path, tmp_path: Path
) -> None:
    """Claude Code in a network namespace of its own, behind the bridge, with ``ANTHROPIC_BASE_URL`` at the
    scripted server: it completes the task, its requests went through the proxy, and none was denied."""
    server.script = complete_script(worktree)
    home, run_dir = tmp_path / "home", tmp_path / "run"
    for d in (home, run_dir, tmp_path / "tmp"):
        d.mkdir(parents=True, exist_ok=True)
    cfg = cli_setup("claude", server, home)
    base_env = {
        "PATH": os.pathsep.join([str(binary("claude").parent), str(Path(NODE or "node").parent), "/usr/bin", "/bin"]),
        "HOME": str(home),
        "TMPDIR": str(tmp_path / "tmp"),
        "LANG": "C.UTF-8",
        **KEYS,
    }
    # Without this Claude Code also calls api.anthropic.com:443 (six denied CONNECTs in 2.1.197) although its
    # model is elsewhere: the traffic it calls non-essential, which it works without.
    cfg = cfg.model_copy(update={"env": {**cfg.env, "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}})
    inv = build_invocation(
        "claude",
        cfg,
        prompt=PROMPT,
        prompt_file=run_dir / "prompt.md",
        worktree=worktree,
        task_id="T-1",
        base_env=base_env,
    )
    denied: list[str] = []
    proxy = EgressProxy(tmp_path / "egress", on_denied=lambda _attempt, host_port: denied.append(host_port))
    session = await proxy.session("T-1/1", default_allow("claude", inv.env))
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
    report = parse_output("claude", output, outcome.exit_code, now=datetime.now(UTC))
    assert not report.is_error, output[-3000:]
    assert len(server.tool_results(PROVIDERS["claude"])) == 3
    assert read_contract(worktree / ".agent_result.md").status == "complete"
    assert session.connections >= 1  # every model request went through the proxy: there is no other way out
    assert session.summary() == ""
