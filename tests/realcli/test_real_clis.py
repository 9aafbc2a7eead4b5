"""The adapters against the **real** Claude Code, Codex and Gemini CLI binaries, with a scripted model server.

Each test goes the way an attempt does: :func:`build_invocation` → :func:`run_process` → :func:`parse_output`,
in a real git worktree, with the CLI pointed at :class:`~tests.fakes.model_server.ModelServer` on 127.0.0.1:

* a complete run: the "model" has the CLI write a file with its file tool and write ``.agent_result.md``
  with its shell tool, then ends with a final text; the CLI exits 0 and reports tokens (and Claude a cost);
* ``prompt_via: file``: the CLI reads the prompt from the run directory with its own file tool;
* a usage limit with a reset time → ``quota_limited`` with that ``reset_at``; a quota with none → no time;
* a rejected key → ``missing_credentials``;
* Claude Code as root: without ``IS_SANDBOX=1`` it refuses the permission bypass; the adapter sets it.

What each CLI needs to talk to a local server is :func:`tests.realcli.clis.cli_setup`.

Set ``AGENTOS_REAL_CLI_RECORD=<dir>`` to keep each run's output there (``<cli>-<case>.txt``).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from agentos.agents.adapters import AgentReport, Invocation, build_invocation, parse_output
from agentos.agents.contract import read_contract
from agentos.agents.runner import RunOutcome, RunSpec, run_process
from agentos.config import AgentConfig, AgentKind
from tests.fakes.model_server import ModelServer, ReadFile, Script, Shell, WriteFile
from tests.realcli.clis import (
    CLI_DIR,
    CLIS,
    IS_ROOT,
    KEYS,
    NODE,
    PROVIDERS,
    binary,
    cli_setup,
)

PROMPT_MARK = "agentos-prompt-marker-5d1c"
PROMPT = f"""Task {PROMPT_MARK}: change greeting.txt to say "hello, world", then write .agent_result.md."""
RESULT = """STATUS: complete
BLOCKER_CODE: none
SUMMARY: greeting.txt now says hello, world.
DONE: changed greeting.txt
BLOCKERS: none
NEXT_STEP: none
FILES_CHANGED: greeting.txt
TESTS_RUN: none
DECISIONS: none
RISKS: none
ATTEMPTED_APPROACHES: write the file
MANUAL_STEPS: none
"""
FINAL = "Changed greeting.txt to say hello, world and wrote .agent_result.md."


# ---------------------------------------------------------------- setup


@pytest.fixture
def worktree(tmp_path: Path) -> Path:
    """A git worktree on a task branch of a repository with one commit (greeting.txt), as agentos makes them."""
    repo, wt = tmp_path / "repo", tmp_path / "worktrees" / "task-1"
    repo.mkdir()
    (repo / "greeting.txt").write_text("hello\n")
    for cmd in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "config", "user.email", "agentos@example.invalid"],
        ["git", "config", "user.name", "agentos"],
        ["git", "add", "greeting.txt"],
        ["git", "commit", "-q", "-m", "init"],
        ["git", "worktree", "add", "-q", "-b", "agentos/task-1", str(wt)],
    ):
        subprocess.run(cmd, cwd=repo, check=True, capture_output=True)
    return wt


def git_status(wt: Path) -> list[str]:
    out = subprocess.run(["git", "status", "--porcelain"], cwd=wt, check=True, capture_output=True, text=True)
    return sorted(out.stdout.splitlines())


@dataclass
class Run:
    invocation: Invocation
    outcome: RunOutcome
    report: AgentReport
    output: str
    seconds: float


async def run_cli(
    kind: AgentKind,
    cfg: AgentConfig,
    wt: Path,
    tmp_path: Path,
    *,
    case: str,
    euid: int | None = None,
    drop_env: tuple[str, ...] = (),
    tz: str | None = None,
) -> Run:
    """One attempt as the executor makes it, and what the adapter reads from it."""
    home, tmp, run_dir = tmp_path / "home", tmp_path / "tmp", tmp_path / "run"
    for d in (home, tmp, run_dir):
        d.mkdir(parents=True, exist_ok=True)
    base_env = {
        "PATH": os.pathsep.join([str(binary(kind).parent), str(Path(NODE or "node").parent), "/usr/bin", "/bin"]),
        "HOME": str(home),
        "TMPDIR": str(tmp),
        "LANG": "C.UTF-8",
        "USER": "agentos",
        "AGENTOS_TELEGRAM_TOKEN": "123:must-not-reach-the-agent",
        **KEYS,
        **({"TZ": tz} if tz else {}),
    }
    prompt_file = run_dir / "prompt.md"
    prompt_file.write_text(PROMPT)
    inv = build_invocation(
        kind, cfg, prompt=PROMPT, prompt_file=prompt_file, worktree=wt, task_id="T-1", base_env=base_env, euid=euid
    )
    assert "AGENTOS_TELEGRAM_TOKEN" not in inv.env
    env = {k: v for k, v in inv.env.items() if k not in drop_env}
    log = run_dir / "agent.log"
    started = time.monotonic()
    outcome = await run_process(
        RunSpec(
            inv.argv,
            wt,
            env,
            inv.stdin,
            log,
            idle_timeout_s=90,
            max_runtime_s=180,
            kill_grace_s=2,
            max_log_bytes=8 << 20,
        )
    )
    seconds = time.monotonic() - started
    output = log.read_text(errors="replace")
    assert outcome.timed_out is None and not outcome.not_found, output[-3000:]
    now = datetime.now(UTC)
    local_tz = ZoneInfo(tz) if tz else None  # the daemon's zone: in production base_env is its environment
    report = parse_output(kind, output, outcome.exit_code, now=now, local_tz=local_tz)
    if record := os.environ.get("AGENTOS_REAL_CLI_RECORD"):
        _record(Path(record), f"{kind}-{case}", kind, output, outcome.exit_code, now, report, tmp_path, tz)
    return Run(inv, outcome, report, output, seconds)


def _record(
    where: Path,
    name: str,
    kind: AgentKind,
    output: str,
    exit_code: int | None,
    now: datetime,
    report: AgentReport,
    tmp_path: Path,
    tz: str | None,
) -> None:
    """Keep a run's output, trimmed (no stack frames, no machine paths), and what the adapter read from it, in
    ``where/index.json``; the trimmed output must still parse the same."""
    lines = [
        line
        for line in output.replace(str(tmp_path), "/tmp/agentos-realcli").splitlines(keepends=True)
        if not line.startswith("    at ")
    ]
    trimmed = "".join(lines).replace(str(CLI_DIR), "/opt/agent-clis")
    again = parse_output(kind, trimmed, exit_code, now=now, local_tz=ZoneInfo(tz) if tz else None)
    assert (again.failure, again.reset_at, again.tokens_in, again.final_message) == (
        report.failure,
        report.reset_at,
        report.tokens_in,
        report.final_message,
    ), name
    where.mkdir(parents=True, exist_ok=True)
    (where / f"{name}.txt").write_text(trimmed)
    index_path = where / "index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {}
    index[f"{name}.txt"] = {
        "kind": kind,
        "exit_code": exit_code,
        "now": now.isoformat(),
        "local_tz": tz or str(datetime.now().astimezone().tzinfo),  # a reset printed without a zone is in this one
        "failure": report.failure,
        "reset_at": report.reset_at.isoformat() if report.reset_at else None,
        "tokens_in": report.tokens_in,
        "tokens_out": report.tokens_out,
        "tokens_cached": report.tokens_cached,
        "cost_usd": report.cost_usd if report.cost_reported else None,
        "turns": report.turns,
        "final_message": report.final_message,
    }
    index_path.write_text(json.dumps(dict(sorted(index.items())), indent=2) + "\n")


def complete_script(wt: Path) -> Script:
    return Script(
        steps=[
            ReadFile(str(wt / "greeting.txt")),
            WriteFile(str(wt / "greeting.txt"), "hello, world\n"),
            Shell(f"cat > .agent_result.md <<'RESULT_EOF'\n{RESULT}RESULT_EOF\ngit status --short"),
        ],
        final=FINAL,
    )


def model_replies(server: ModelServer) -> list[str]:
    """The server's successful model replies (tool calls, the final text, side requests)."""
    return [r.reply for r in server.requests if r.status == 200 and r.reply != "other"]


# ---------------------------------------------------------------- a complete run

COMPLETE_CASES = [
    ("claude", None),
    ("claude", "claude-sonnet-4-5"),
    ("codex", None),  # the default model: Codex's JavaScript "code mode" exec tool
    ("codex", "gpt-5"),  # a model with plain function tools (exec_command)
    ("gemini", None),  # "auto": a routing classifier request first
    ("gemini", "gemini-2.5-pro"),
]


@pytest.mark.parametrize(("kind", "model"), COMPLETE_CASES)
async def test_complete_run(
    kind: AgentKind, model: str | None, server: ModelServer, worktree: Path, tmp_path: Path
) -> None:
    """The CLI's own tools edit the worktree and write a valid result file; exit 0; usage and message parsed."""
    server.script = complete_script(worktree)
    cfg = cli_setup(kind, server, tmp_path / "home", model=model)
    run = await run_cli(kind, cfg, worktree, tmp_path, case=f"complete-{model or 'default'}")
    out, report = run.output, run.report

    assert run.outcome.exit_code == 0, out[-3000:]
    results = server.tool_results(PROVIDERS[kind])
    assert len(results) == 3 and "hello" in results[0], results  # the read, the write, the shell command
    assert (worktree / "greeting.txt").read_text() == "hello, world\n", results
    assert read_contract(worktree / ".agent_result.md").status == "complete"
    assert git_status(worktree) == sorted([" M greeting.txt", "?? .agent_result.md"])

    replies = model_replies(server)
    tools = [r for r in replies if r.startswith("tool:")]
    assert len(tools) == 3 and replies[-1] == "final", replies
    assert not report.is_error and report.failure is None, report
    assert report.final_message == FINAL

    # the prompt came in on stdin, and the model is the configured one
    main = [r for r in server.requests if r.reply.startswith("tool:")]
    assert PROMPT_MARK in json.dumps(main[0].body)
    if model is not None:
        assert all(model in (r.body.get("model") or r.path) for r in main)

    # tokens: the server reports 1200 in (200 of them cached) and 80 out per response
    s = server.script
    counted = len(replies)  # every model request of the run, side requests included
    if kind == "claude":  # modelUsage covers every request; `usage` only the main loop
        main_loop = len(tools) + 1
        assert main_loop * s.input_tokens <= report.tokens_in <= counted * s.input_tokens
        assert report.tokens_in % s.input_tokens == 0 and report.tokens_out % s.output_tokens == 0
        assert report.tokens_out == report.tokens_in // s.input_tokens * s.output_tokens
        assert report.cost_reported and report.cost_usd > 0
        assert report.turns == main_loop
    else:
        assert (report.tokens_in, report.tokens_out, report.tokens_cached) == (
            counted * s.input_tokens,
            counted * s.output_tokens,
            counted * s.cached_tokens,
        )
        assert not report.cost_reported and report.cost_usd == 0  # neither reports a price: "not measured"
        assert report.turns == (1 if kind == "codex" else len(tools) + 1)
    assert report.tokens_reported and report.tokens_cached > 0
    if kind == "claude":
        assert run.invocation.env.get("IS_SANDBOX") == ("1" if IS_ROOT else None)


async def test_claude_falls_back_to_a_non_streaming_request(
    server: ModelServer, worktree: Path, tmp_path: Path
) -> None:
    """A stream that breaks off after ``message_start``: Claude Code asks again without streaming and the run
    completes (the server's non-streaming Messages API, proven)."""
    server.script = complete_script(worktree)
    server.break_streams = 1
    run = await run_cli("claude", cli_setup("claude", server, tmp_path / "home"), worktree, tmp_path, case="fallback")
    assert run.outcome.exit_code == 0, run.output[-3000:]
    assert any(r.reply.startswith("tool:") and not r.body.get("stream") for r in server.requests), server.requests
    assert (worktree / "greeting.txt").read_text() == "hello, world\n"
    assert read_contract(worktree / ".agent_result.md").status == "complete"
    assert run.report.final_message == FINAL and run.report.failure is None


@pytest.mark.parametrize("kind", CLIS)
async def test_prompt_via_file_is_readable(
    kind: AgentKind, server: ModelServer, worktree: Path, tmp_path: Path
) -> None:
    """With ``prompt_via: file`` the CLI gets a pointer on stdin and reads the prompt with its own file tool, from
    the run directory outside the worktree (Gemini CLI only with ``--include-directories``, which the adapter adds)."""
    prompt_file = tmp_path / "run" / "prompt.md"
    server.script = Script(steps=[ReadFile(str(prompt_file))], final=FINAL)
    cfg = cli_setup(kind, server, tmp_path / "home").model_copy(update={"prompt_via": "file"})
    run = await run_cli(kind, cfg, worktree, tmp_path, case="prompt-file")
    assert run.outcome.exit_code == 0, run.output[-3000:]
    main = [r for r in server.requests if r.reply.startswith("tool:")]
    assert str(prompt_file) in json.dumps(main[0].body) and PROMPT_MARK not in json.dumps(main[0].body)
    [read] = server.tool_results(PROVIDERS[kind])
    assert PROMPT_MARK in read, read  # not "Path not in workspace"
    assert run.report.failure is None and run.report.final_message == FINAL


# ---------------------------------------------------------------- usage limits


def _minute(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


@pytest.mark.parametrize("kind", CLIS)
@pytest.mark.parametrize(
    "ahead", [timedelta(hours=2, minutes=17), timedelta(days=3, hours=5, minutes=41)], ids=["hours", "days"]
)
async def test_usage_limit_states_reset(
    kind: AgentKind, ahead: timedelta, server: ModelServer, worktree: Path, tmp_path: Path
) -> None:
    """A plan's usage limit: the CLI prints when it resets (a clock time, a date, or seconds) and the adapter
    reads it back: ``quota_limited`` with that ``reset_at``. Claude Code states it on a Claude plan only."""
    reset = _minute(datetime.now(UTC) + ahead)
    server.script = complete_script(worktree)
    server.fail("quota", reset_at=reset)
    cfg = cli_setup(kind, server, tmp_path / "home", oauth=True)
    run = await run_cli(kind, cfg, worktree, tmp_path, case="quota-days" if ahead.days else "quota-hours")

    assert run.outcome.exit_code not in (0, None)
    assert run.report.failure == "quota_limited", run.output[-3000:]
    assert run.report.reset_at is not None, run.report.detail
    assert abs(run.report.reset_at - reset) <= timedelta(seconds=90), (run.report.reset_at, reset, run.report.detail)
    assert git_status(worktree) == []  # nothing was done: no attempt to count


@pytest.mark.parametrize("kind", CLIS)
async def test_usage_limit_in_the_daemons_zone(
    kind: AgentKind, server: ModelServer, worktree: Path, tmp_path: Path
) -> None:
    """The daemon runs with ``TZ`` set: the agent gets it, so Codex's zone-less ``try again at 3:31 PM`` (and
    Claude's ``(America/Los_Angeles)``) mean the same instant to the CLI and to ``parse_output``."""
    reset = _minute(datetime.now(UTC) + timedelta(hours=5, minutes=3))
    server.script = complete_script(worktree)
    server.fail("quota", reset_at=reset)
    cfg = cli_setup(kind, server, tmp_path / "home", oauth=True)
    run = await run_cli(kind, cfg, worktree, tmp_path, case="quota-tz", tz="America/Los_Angeles")
    assert run.invocation.env["TZ"] == "America/Los_Angeles"
    assert run.report.failure == "quota_limited", run.output[-3000:]
    assert run.report.reset_at is not None, run.report.detail
    assert abs(run.report.reset_at - reset) <= timedelta(seconds=90), (run.report.reset_at, reset, run.report.detail)


@pytest.mark.parametrize("kind", CLIS)
async def test_quota_without_reset(kind: AgentKind, server: ModelServer, worktree: Path, tmp_path: Path) -> None:
    """A quota the CLI states no reset for (Anthropic credit balance, OpenAI ``insufficient_quota``, Gemini's
    daily free-tier quota): ``quota_limited`` without ``reset_at``, so the agent's cool-down applies."""
    server.script = complete_script(worktree)
    server.fail("billing")
    run = await run_cli(kind, cli_setup(kind, server, tmp_path / "home"), worktree, tmp_path, case="no-reset")
    assert run.outcome.exit_code not in (0, None)
    assert run.report.failure == "quota_limited", run.output[-3000:]
    assert run.report.reset_at is None


async def test_claude_api_key_rate_limit(server: ModelServer, worktree: Path, tmp_path: Path) -> None:
    """With an API key Claude Code prints the 429 without the reset time the headers carry: ``quota_limited``,
    cool-down."""
    server.script = complete_script(worktree)
    server.fail("quota", reset_at=datetime.now(UTC) + timedelta(hours=2))
    run = await run_cli(
        "claude", cli_setup("claude", server, tmp_path / "home"), worktree, tmp_path, case="quota-api-key"
    )
    assert run.outcome.exit_code == 1
    assert run.report.failure == "quota_limited", run.output[-3000:]
    assert "429" in run.report.detail and run.report.reset_at is None


# ---------------------------------------------------------------- rejected credentials


@pytest.mark.parametrize(
    ("kind", "oauth"),
    [("claude", False), ("claude", True), ("codex", False), ("gemini", False)],
    ids=["claude-api-key", "claude-oauth", "codex", "gemini"],
)
async def test_rejected_key(kind: AgentKind, oauth: bool, server: ModelServer, worktree: Path, tmp_path: Path) -> None:
    """The provider rejects the key (Anthropic/OpenAI 401, Gemini 400 API_KEY_INVALID) → ``missing_credentials``."""
    server.script = complete_script(worktree)
    server.fail("auth")
    cfg = cli_setup(kind, server, tmp_path / "home", oauth=oauth)
    run = await run_cli(kind, cfg, worktree, tmp_path, case="auth-oauth" if oauth else "auth")
    assert run.outcome.exit_code not in (0, None)
    assert run.report.failure == "missing_credentials", run.output[-3000:]
    assert run.report.reset_at is None and run.report.detail
    assert git_status(worktree) == []


# ---------------------------------------------------------------- Claude Code as root


@pytest.mark.skipif(not IS_ROOT, reason="Claude Code's root guard only applies when running as root")
async def test_claude_refuses_root_without_is_sandbox(server: ModelServer, worktree: Path, tmp_path: Path) -> None:
    """As root the real CLI refuses --dangerously-skip-permissions unless IS_SANDBOX=1, which the adapter sets
    (test_complete_run[claude] is the run that works); without it the attempt is a ``runner_failure``."""
    server.script = complete_script(worktree)
    cfg = cli_setup("claude", server, tmp_path / "home")
    run = await run_cli("claude", cfg, worktree, tmp_path, case="root-refusal", euid=0, drop_env=("IS_SANDBOX",))
    assert run.invocation.env["IS_SANDBOX"] == "1"  # what the adapter does as root
    assert run.outcome.exit_code == 1
    refusal = "--dangerously-skip-permissions cannot be used with root/sudo privileges for security reasons"
    assert refusal in run.output
    assert run.report.failure == "runner_failure" and refusal in run.report.detail
    assert model_replies(server) == [] and git_status(worktree) == []
