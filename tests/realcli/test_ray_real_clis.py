"""The **real** Claude Code, Codex and Gemini CLIs through the daemon's Ray runner, on a real local cluster (issue 20).

One cluster for the module (:mod:`tests.ray_cluster`): a head with no ``agentos`` resource, a ``plain`` worker
(``{"agentos": 2}``) and a ``clis`` worker (``{"agentos": 2, "claude": 1, "codex": 1, "gemini": 1}``). Each
node's environment holds the CLIs' API keys (an agent's ``pass_env`` reads the node's own environment, never the
daemon's). The daemon (``agentos run`` on the local forge, ``runner.kind: ray``, ``sandbox.mode: bubblewrap``)
gives an agent ``ray_resources: {<cli>: 1}``: the real CLI runs on the ``clis`` node, inside that node's
bubblewrap sandbox, its model traffic through the node's egress proxy to the scripted model server on 127.0.0.1.
The "model" has it read and rewrite ``README.md`` and write its result file (relative paths: the node's clone is a
folder of its own); the daemon fetches the commit back, pushes, tests and merges it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agentos.agents.adapters import parse_output, split_json
from agentos.config import AgentKind
from agentos.runners.sandbox import SANDBOX_HOME, probe
from tests.fakes.model_server import ModelServer, ReadFile, Script, Shell, WriteFile, serve_in_thread
from tests.realcli.clis import KEYS, PROVIDERS
from tests.realcli.test_daemon_real_clis import RESULT, MakeLoop, agent_output, fix_issue, json_out, readme, start_loop

ray = pytest.importorskip("ray", reason="ray is not installed: pip install 'agentos[ray]' (the test extra has it)")

from tests.ray_cluster import RayCluster  # noqa: E402

SANDBOX_PROBLEM = probe()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(SANDBOX_PROBLEM is not None, reason=f"bubblewrap cannot run here: {SANDBOX_PROBLEM}"),
]

RAY_CLIS: tuple[AgentKind, ...] = ("claude", "codex", "gemini")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayCluster]:
    made = RayCluster(tmp_path_factory.mktemp("ray"), extra_env=dict(KEYS))
    try:
        made.start({"plain": {"agentos": 2}, "clis": {"agentos": 2, "claude": 1, "codex": 1, "gemini": 1}})
        made.learn_node_ids()
        yield made
    finally:
        made.stop()


@pytest.fixture
def server() -> Iterator[ModelServer]:
    with serve_in_thread() as model:
        yield model


def node_script(kind: AgentKind) -> Script:
    """The fix of :func:`~tests.realcli.test_daemon_real_clis.fix_script`, by paths relative to the CLI's working
    directory (the clone on the node), then its ``$PWD`` and ``$HOME`` to say where that was."""
    return Script(
        steps=[
            ReadFile("README.md"),
            WriteFile("README.md", readme(kind)),
            Shell(f"cat > .agent_result.md <<'RESULT_EOF'\n{RESULT}RESULT_EOF\necho \"cwd=$PWD home=$HOME\""),
        ],
        final="README.md now greets the world; .agent_result.md written.",
    )


@pytest.mark.parametrize("kind", RAY_CLIS)
def test_real_cli_fixes_an_issue_on_the_node_offering_it(
    kind: AgentKind, cluster: RayCluster, server: ModelServer, make_loop: MakeLoop
) -> None:
    """A ready issue is fixed by the real CLI on the worker node offering its resource, in that node's sandbox,
    and merges; the attempt records that node and the tokens (and Claude's cost) the CLI printed there."""
    runner = {"kind": "ray", "address": cluster.address, "namespace": "agentos-realcli"}
    loop = start_loop(
        make_loop, server, [kind], sandboxed=True, agent_extra={"ray_resources": {kind: 1}}, runner=runner
    )
    server.script = node_script(kind)
    number, task_id, task = fix_issue(loop)
    output = agent_output(loop, task_id, 1)  # streamed back from the node

    # it ran on the node offering the CLI, in a clone under that node's temp folder (not the daemon's worktree),
    # inside that node's sandbox (its HOME is the sandbox's)
    [attempt] = json_out(loop.cli("ctl", "task", "show", task_id, "--json").stdout)["attempts"]
    assert attempt["runner"] == "ray" and attempt["node"] == cluster.nodes["clis"].node_id, attempt
    results = server.tool_results(PROVIDERS[kind])
    assert len(results) == 3 and "# app" in results[0], results
    where = re.search(r"cwd=(\S+) home=([^\s\\\"]+)", results[2])  # Codex: a JSON string (a quote or \n follows)
    assert where, results[2]
    ran_in, home = map(Path, where.groups())
    assert home == SANDBOX_HOME, results[2]
    assert ran_in.is_relative_to(cluster.temp) and ran_in.name == "repo", results[2]

    # merged: one PR, main holds the CLI's edit, the issue is closed, nothing said twice
    [pull] = loop.pulls()
    assert pull["state"] == "merged" and pull["head"] == task["branch"]
    assert loop.show("README.md") == readme(kind)
    assert sorted(loop.git("show", "--name-only", "--format=", "main").split()) == ["CODEBASE.md", "README.md"]
    issue, comments = loop.issue(number)
    assert issue.state == "closed"
    bodies = [c.body for c in comments]
    assert len(bodies) == len(set(bodies)), bodies

    # the CLI's own report of tokens and cost, as it printed it on the node
    assert (attempt["agent"], attempt["outcome"], attempt["exit_code"]) == (kind, "complete", 0)
    report = parse_output(kind, output, 0, now=datetime.now(UTC))
    assert (attempt["tokens_in"], attempt["tokens_out"], attempt["cost_usd"]) == (
        report.tokens_in,
        report.tokens_out,
        report.cost_usd,
    )
    s = server.script
    assert attempt["tokens_in"] > 0 and attempt["tokens_in"] % s.input_tokens == 0, attempt
    assert attempt["tokens_out"] == attempt["tokens_in"] // s.input_tokens * s.output_tokens, attempt
    if kind == "claude":
        [result] = [o for o in split_json(output)[0] if o.get("type") == "result"]
        assert attempt["cost_usd"] == result["total_cost_usd"] > 0
    else:
        assert attempt["cost_usd"] == 0 and not report.cost_reported
    # its model traffic went through the node's egress proxy, which refused nothing it needed
    assert server.url.removeprefix("http://") not in attempt["egress_denied"]
    if kind != "codex":  # codex also looks at github.com, which is not allowed
        assert attempt["egress_denied"] == "", attempt["egress_denied"]
