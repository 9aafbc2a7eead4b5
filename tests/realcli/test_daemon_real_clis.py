"""The **real** Claude Code, Codex and Gemini CLI through the real daemon, on the local forge: issue → merge.

Each test runs ``agentos run`` (the e2e :class:`~tests.e2e.conftest.Loop`) with one agent: the real binary from
``AGENTOS_REAL_CLI_DIR``, pointed at the scripted model server (:func:`~tests.realcli.clis.cli_setup`: a base URL
in the agent's ``env``, a test key through ``pass_env``, the CLI's settings file in the daemon's ``HOME``). An
issue is made ready with ``agentos issue new --ready``; the "model" has the CLI read ``README.md`` with its file
tool, rewrite it, and write ``.agent_result.md`` with its shell tool. The daemon then does the rest as for any
agent: commit, the repo's tests, PR, merge on green. What is asserted is what a user sees: the issue merged and
closed, ``main`` holds the CLI's edit, and ``agentos ctl task show --json`` has the tokens (and, for Claude, the
cost) the CLI reported. As root, the claude agent runs only because the adapter sets ``IS_SANDBOX=1``.

Gemini CLI's endpoint can be redirected (``GOOGLE_GEMINI_BASE_URL`` plus the ``gemini-api-key`` auth type in
``~/.gemini/settings.json``), so all three CLIs run here. The model server runs in a thread of its own: the test
blocks while it polls the daemon.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agentos.agents.adapters import parse_output, split_json
from agentos.config import AgentKind
from agentos.runners.sandbox import probe
from agentos.workspace import branch_name
from tests.e2e.conftest import REPO, Loop
from tests.fakes.model_server import ModelServer, ReadFile, Script, Shell, WriteFile, serve_in_thread
from tests.realcli.clis import CLIS, IS_ROOT, KEYS, PROVIDERS, cli_setup

MakeLoop = Callable[..., Loop]
SANDBOX_PROBLEM = probe()
WAIT_S = 300.0  # three real CLI starts, tests and a merge on a shared 2-CPU machine; a run takes seconds
TITLE = "Greet the world in the README"
BODY = """## Goal

The README greets the world.

## Success Criteria

- README.md says hello to the world

Type: implementation
"""
RESULT = """STATUS: complete
BLOCKER_CODE: none
SUMMARY: README.md now greets the world.
DONE: rewrote README.md
BLOCKERS: none
NEXT_STEP: none
FILES_CHANGED: README.md
TESTS_RUN: none
DECISIONS: none
RISKS: none
ATTEMPTED_APPROACHES: read and rewrite the file
MANUAL_STEPS: none
"""


@pytest.fixture
def server() -> Iterator[ModelServer]:
    with serve_in_thread() as model:
        yield model


def readme(kind: AgentKind) -> str:
    return f"# app\n\nHello, world: {kind} wrote this line with its own file tool.\n"


def fix_script(worktree: Path, kind: AgentKind) -> Script:
    """Read README.md, rewrite it, write the result file, say so: each through the CLI's own tools."""
    return Script(
        steps=[
            ReadFile(str(worktree / "README.md")),
            WriteFile(str(worktree / "README.md"), readme(kind)),
            Shell(f"cat > .agent_result.md <<'RESULT_EOF'\n{RESULT}RESULT_EOF\ngit status --short"),
        ],
        final="README.md now greets the world; .agent_result.md written.",
    )


def json_out(text: str) -> Any:
    """The JSON document of a CLI's ``--json`` output (a log line may come first)."""
    start = 0 if text.startswith(("{", "[")) else text.find("\n{") + 1
    return json.loads(text[start:])


def start_loop(
    make_loop: MakeLoop,
    server: ModelServer,
    kinds: list[AgentKind],
    *,
    oauth: bool = False,
    sandboxed: bool = False,
    agent_extra: dict[str, Any] | None = None,
    **overrides: Any,
) -> Loop:
    """The daemon with the real ``kinds`` as its fallback chain, each pointed at ``server``, which plays the fix of
    the first issue (its worktree's path is known before the daemon makes it). ``sandboxed``: ``sandbox.mode:
    bubblewrap``, the CLI's files in a login template (``agents.<name>.home``) copied into each attempt's HOME.
    ``agent_extra``: more keys of each agent's config; ``overrides``: more of the daemon's (``runner``)."""
    loop = make_loop({}, start=False, **overrides)
    for kind in kinds:
        if sandboxed:
            template = loop.root / "agent-home"
            cfg = cli_setup(kind, server, template, oauth=oauth)
            # Codex finds its server in config.toml (no base-URL variable): the allowlist names it.
            hosts = [server.url.removeprefix("http://")] if kind == "codex" else []
            cfg = cfg.model_copy(update={"home": str(template), "allow_hosts": hosts})
        else:
            cfg = cli_setup(kind, server, loop.root / "home", oauth=oauth)  # the daemon's HOME is the agent's HOME
        loop.agents[kind] = cfg.model_dump(mode="json", exclude_defaults=True) | (agent_extra or {})
    if sandboxed:
        loop.overrides["sandbox"] = {"mode": "bubblewrap"}
    loop.overrides |= {
        "routing": {"default": kinds, "max_attempts": 1},  # a usage limit spends no attempt
        "limits": {"idle_timeout_minutes": 3, "max_runtime_minutes": 5, "kill_grace_s": 2},
    }
    loop.write_config()
    loop.env |= KEYS  # the agent gets only the key its pass_env names
    worktree = loop.worktree({"branch": branch_name(1, TITLE)})  # the first issue of a fresh forge is #1
    server.script = fix_script(worktree, kinds[-1])
    loop.start()
    return loop


def fix_issue(loop: Loop) -> tuple[int, str, dict[str, Any]]:
    """File the issue, ready, and wait until its task has merged (or failed for good: then say why)."""
    number = loop.new_issue(TITLE, BODY)
    assert number == 1
    task_id = f"{REPO}#{number}"
    task = loop.wait_status(task_id, "merged", "blocked", "failed", "cancelled", timeout=WAIT_S)
    if task["status"] != "merged":
        logs = "\n".join(
            f"--- attempt {a['number']} ({a['agent']}) ---\n{agent_output(loop, task_id, a['number'])[-3000:]}"
            for a in task["attempts"]
        )
        raise AssertionError(f"{task}\n{logs}\n{loop.debug()}")
    return number, task_id, task


def agent_output(loop: Loop, task_id: str, attempt: int) -> str:
    path = loop.run_path(task_id, attempt) / "agent.log"
    return path.read_text(errors="replace") if path.exists() else "(no agent.log)"


@pytest.mark.parametrize("kind", CLIS)
def test_real_cli_fixes_an_issue_through_the_daemon(
    kind: AgentKind,
    server: ModelServer,
    make_loop: MakeLoop,
) -> None:
    """A ready issue on the local forge is fixed by the real CLI's own edit, merged and closed; the attempt
    records the tokens (and Claude's cost) the CLI reported."""
    loop = start_loop(make_loop, server, [kind])
    number, task_id, task = fix_issue(loop)
    output = agent_output(loop, task_id, 1)

    # the CLI's own tools did the work: it read the README, rewrote it and ran the shell command
    results = server.tool_results(PROVIDERS[kind])
    assert len(results) == 3 and "# app" in results[0], results
    replies = [r.reply for r in server.requests if r.status == 200 and r.reply != "other"]
    assert [r for r in replies if r.startswith("tool:")] and replies[-1] == "final", replies

    # merged: one squash commit on main with the CLI's edit, closing the issue
    [pull] = loop.pulls()
    assert pull["state"] == "merged" and pull["head"] == task["branch"]
    subject, message = loop.main_log()[0]
    assert subject == f"{TITLE} (#{pull['number']})" and f"Closes #{number}" in message
    assert loop.show("README.md") == readme(kind)
    changed = loop.git("show", "--name-only", "--format=", "main").split()
    assert sorted(changed) == ["CODEBASE.md", "README.md"]  # nothing else the CLI left (.claude/, .gemini/, …)
    assert ".agent_result.md" not in loop.git("ls-tree", "-r", "--name-only", "main")
    assert loop.issue(number)[0].state == "closed"

    # the attempt, as `agentos ctl task show --json` has it: the CLI's own report of tokens and cost
    shown = json_out(loop.cli("ctl", "task", "show", task_id, "--json").stdout)
    [attempt] = shown["attempts"]
    assert (attempt["agent"], attempt["outcome"], attempt["exit_code"]) == (kind, "complete", 0)
    report = parse_output(kind, output, 0, now=datetime.now(UTC))
    assert (attempt["tokens_in"], attempt["tokens_out"], attempt["cost_usd"]) == (
        report.tokens_in,
        report.tokens_out,
        report.cost_usd,
    )
    assert (attempt["tokens_reported"], attempt["cost_reported"]) == (True, kind == "claude")
    s = server.script  # every response of the server reports 1200 tokens in and 80 out
    assert attempt["tokens_in"] > 0 and attempt["tokens_in"] % s.input_tokens == 0, attempt
    assert attempt["tokens_out"] == attempt["tokens_in"] // s.input_tokens * s.output_tokens, attempt
    assert attempt["tokens_in"] <= len(replies) * s.input_tokens
    if kind == "claude":  # the price Claude Code printed in its result object
        [result] = [o for o in split_json(output)[0] if o.get("type") == "result"]
        assert attempt["cost_usd"] == result["total_cost_usd"] > 0
        assert report.cost_reported
    else:  # Codex and Gemini CLI report tokens for every request, and no price: "not measured", never guessed
        assert attempt["tokens_in"] == len(replies) * s.input_tokens, (attempt, replies)
        assert attempt["cost_usd"] == 0 and not report.cost_reported
    rows = json_out(loop.cli("ctl", "tasks", "--json").stdout)
    assert [(r["id"], r["status"], r["tokens"], r["not_measured"]) for r in rows] == [
        (task_id, "merged", attempt["tokens_in"] + attempt["tokens_out"], 0 if kind == "claude" else 1)
    ]
    if kind == "claude" and IS_ROOT:
        assert "cannot be used with root" not in output


@pytest.mark.skipif(SANDBOX_PROBLEM is not None, reason=f"bubblewrap cannot run here: {SANDBOX_PROBLEM}")
@pytest.mark.parametrize("kind", CLIS)
def test_real_cli_fixes_an_issue_inside_the_sandbox(kind: AgentKind, server: ModelServer, make_loop: MakeLoop) -> None:
    """The same fix with ``sandbox.mode: bubblewrap``: the CLI runs in its sandbox with no network but the egress
    proxy, its model traffic goes through the allowlist to the scripted server on 127.0.0.1 (allowed by the base URL
    its env names, or for Codex by ``allow_hosts``), and the issue merges with the CLI's edit."""
    loop = start_loop(make_loop, server, [kind], sandboxed=True)
    number, task_id, _ = fix_issue(loop)

    assert len(server.tool_results(PROVIDERS[kind])) == 3
    assert loop.show("README.md") == readme(kind)
    assert loop.issue(number)[0].state == "closed"
    [attempt] = json_out(loop.cli("ctl", "task", "show", task_id, "--json").stdout)["attempts"]
    assert (attempt["outcome"], attempt["exit_code"]) == ("complete", 0)
    assert loop.ctl("status")["sandbox"] == "bubblewrap"
    # nothing the CLI needs was refused; its telemetry is switched off (codex still looks at github.com)
    assert server.url.removeprefix("http://") not in attempt["egress_denied"]
    if kind != "codex":
        assert attempt["egress_denied"] == "", attempt["egress_denied"]


def test_usage_limit_pauses_the_real_cli_and_the_next_one_fixes_the_issue(
    server: ModelServer, make_loop: MakeLoop
) -> None:
    """Claude Code on a plan hits its usage limit: the daemon pauses it until the reset time Claude printed,
    without spending an attempt, and real Codex, next in the chain, fixes the issue, which merges."""
    reset = (datetime.now(UTC) + timedelta(hours=2, minutes=17)).replace(second=0, microsecond=0)
    server.fail("quota", reset_at=reset, provider="anthropic")
    loop = start_loop(make_loop, server, ["claude", "codex"], oauth=True)
    _, task_id, task = fix_issue(loop)

    attempts = [(a["agent"], a["outcome"], a["blocker_code"]) for a in task["attempts"]]
    assert attempts == [("claude", "failed", "quota_limited"), ("codex", "complete", None)], attempts
    paused = datetime.fromisoformat(loop.ctl("status")["paused_agents"]["claude"])
    assert abs(paused - reset) <= timedelta(seconds=90), (paused, reset, agent_output(loop, task_id, 1)[-2000:])
    assert loop.show("README.md") == readme("codex")
    assert [r.reply for r in server.requests if r.provider == "anthropic" and r.reply.startswith("tool:")] == []
