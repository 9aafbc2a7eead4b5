"""Adapters: the command line and environment per agent kind, and what each CLI's output means."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from agentos.agents.adapters import (
    GEMINI_READ_ONLY_POLICY,
    AgentNotInstalled,
    Invocation,
    build_invocation,
    parse_output,
    split_json,
)
from agentos.agents.runner import scrubbed_env
from agentos.config import AgentConfig

FAKES = Path(__file__).resolve().parents[1] / "fakes" / "agents"
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)

BASE_ENV = {
    "PATH": f"{FAKES}:/usr/bin:/bin",
    "HOME": "/home/agentos",
    "LANG": "C.UTF-8",
    "USER": "agentos",
    "ANTHROPIC_API_KEY": "sk-ant-secret",
    "AGENTOS_TELEGRAM_TOKEN": "123:telegram-secret",
    "GH_TOKEN": "ghp_secret",
    "NOTIFY_SOCKET": "/run/systemd/notify",
    "WATCHDOG_USEC": "30000000",
    "LISTEN_FDS": "1",
}


def invoke(cfg: AgentConfig, *, euid: int = 1000, tmp: Path = Path("/tmp"), name: str = "a") -> Invocation:
    return build_invocation(
        name,
        cfg,
        prompt="Fix the bug ✓",
        prompt_file=tmp / "prompt.md",
        worktree=tmp,
        task_id="t-42",
        base_env=BASE_ENV,
        euid=euid,
    )


# ---------------------------------------------------------------- environment


class TestScrubbedEnv:
    def test_only_the_allowlist_and_listed_names_pass(self) -> None:
        """Only PATH/HOME/LANG/… and names in pass_env reach the agent; GIT_TERMINAL_PROMPT is always 0."""
        env = scrubbed_env(["ANTHROPIC_API_KEY", "NOT_SET"], {"FOO": "bar"}, BASE_ENV)
        assert env == {
            "PATH": BASE_ENV["PATH"],
            "HOME": "/home/agentos",
            "LANG": "C.UTF-8",
            "USER": "agentos",
            "ANTHROPIC_API_KEY": "sk-ant-secret",
            "FOO": "bar",
            "GIT_TERMINAL_PROMPT": "0",
        }

    def test_systemd_variables_never_pass_even_when_listed(self) -> None:
        """NOTIFY_SOCKET, WATCHDOG_* and LISTEN_* are dropped even from pass_env and literal env."""
        env = scrubbed_env(["NOTIFY_SOCKET", "WATCHDOG_USEC", "LISTEN_FDS"], {"LISTEN_PID": "1"}, BASE_ENV)
        assert not {"NOTIFY_SOCKET", "WATCHDOG_USEC", "LISTEN_FDS", "LISTEN_PID"} & env.keys()

    def test_literal_env_overrides_the_daemon(self) -> None:
        """A value set in the agent's config wins over the daemon's."""
        assert scrubbed_env([], {"LANG": "de_DE.UTF-8"}, BASE_ENV)["LANG"] == "de_DE.UTF-8"


# ---------------------------------------------------------------- command lines


class TestBuildInvocation:
    def test_claude_command_line(self) -> None:
        """Claude Code runs in print mode with JSON output, permissions bypassed, the prompt on stdin."""
        inv = invoke(AgentConfig(kind="claude"))
        assert inv.argv == [
            str(FAKES / "claude"),
            "-p",
            "--output-format",
            "json",
            "--dangerously-skip-permissions",
        ]
        assert inv.stdin == "Fix the bug ✓".encode()

    def test_claude_model_and_extra_args(self) -> None:
        """The model goes in --model and extra_args follow the built-in flags."""
        inv = invoke(AgentConfig(kind="claude", model="opus", extra_args=["--max-turns", "30"]))
        assert inv.argv[-4:] == ["--model", "opus", "--max-turns", "30"]

    def test_claude_as_root_gets_is_sandbox(self) -> None:
        """As root, claude gets IS_SANDBOX=1 (it refuses --dangerously-skip-permissions otherwise)."""
        assert invoke(AgentConfig(kind="claude"), euid=0).env["IS_SANDBOX"] == "1"

    def test_claude_as_a_user_gets_no_is_sandbox(self) -> None:
        """Not root: the guard does not apply and IS_SANDBOX is not set."""
        assert "IS_SANDBOX" not in invoke(AgentConfig(kind="claude"), euid=1000).env

    def test_is_sandbox_is_claude_only(self) -> None:
        """Other kinds never get IS_SANDBOX, even as root."""
        assert "IS_SANDBOX" not in invoke(AgentConfig(kind="codex"), euid=0).env

    def test_codex_command_line(self) -> None:
        """codex exec bypasses approvals and sandbox, emits JSON events and reads the prompt from stdin (-)."""
        inv = invoke(AgentConfig(kind="codex", model="gpt-5-codex", extra_args=["-c", "a=b"]))
        assert inv.argv == [
            str(FAKES / "codex"),
            "exec",
            "--dangerously-bypass-approvals-and-sandbox",
            "--skip-git-repo-check",
            "--json",
            "-m",
            "gpt-5-codex",
            "-c",
            "a=b",
            "-",
        ]
        assert inv.stdin == "Fix the bug ✓".encode()

    def test_gemini_command_line(self) -> None:
        """gemini runs headless (-p "") with JSON output and yolo approvals; the prompt is on stdin."""
        inv = invoke(AgentConfig(kind="gemini", model="gemini-2.5-pro"))
        assert inv.argv == [
            str(FAKES / "gemini"),
            "-p",
            "",
            "-m",
            "gemini-2.5-pro",
            "--output-format",
            "json",
            "--approval-mode",
            "yolo",
        ]

    @pytest.mark.parametrize(
        ("kind", "switch", "bypass"),
        [
            pytest.param("claude", ["--tools", ""], "--dangerously-skip-permissions", id="claude"),
            pytest.param("codex", ["--sandbox", "read-only"], "--dangerously-bypass-approvals-and-sandbox", id="codex"),
            pytest.param(
                "gemini",
                ["--approval-mode", "plan", "--policy", str(GEMINI_READ_ONLY_POLICY)],
                "yolo",
                id="gemini",
            ),
        ],
    )
    def test_read_only_uses_the_clis_own_switch(self, kind: str, switch: list[str], bypass: str) -> None:
        """A one-shot question runs with the CLI's read-only switch and never its permission bypass."""
        cfg = AgentConfig.model_validate({"kind": kind, "model": "m1"})
        inv = build_invocation(
            "a",
            cfg,
            prompt="q",
            prompt_file=Path("/tmp/p.md"),
            worktree=Path("/tmp"),
            task_id="t",
            base_env=BASE_ENV,
            euid=0,
            read_only=True,
        )
        at = inv.argv.index(switch[0])
        assert inv.argv[at : at + len(switch)] == switch and bypass not in inv.argv
        assert "m1" in inv.argv and "IS_SANDBOX" not in inv.env and inv.stdin == b"q"

    def test_read_only_leaves_a_command_agents_argv_alone(self) -> None:
        """A `command` agent's argv is the user's own: read_only adds nothing to it."""
        cfg = AgentConfig(kind="command", argv=["/bin/echo", "{prompt_file}"])
        inv = build_invocation(
            "a",
            cfg,
            prompt="q",
            prompt_file=Path("/tmp/p.md"),
            worktree=Path("/tmp"),
            task_id="t",
            base_env=BASE_ENV,
            read_only=True,
        )
        assert inv.argv == ["/bin/echo", "/tmp/p.md"]

    def test_gemini_trusts_the_worktree(self) -> None:
        """Gemini CLI refuses headless runs in an untrusted (new) folder, so the worktree is trusted by env."""
        assert invoke(AgentConfig(kind="gemini")).env["GEMINI_CLI_TRUST_WORKSPACE"] == "true"
        assert "GEMINI_CLI_TRUST_WORKSPACE" not in invoke(AgentConfig(kind="claude")).env

    def test_secrets_pass_only_when_listed(self) -> None:
        """The daemon's tokens are not in the agent's environment unless its pass_env names them."""
        env = invoke(AgentConfig(kind="claude")).env
        assert not {"ANTHROPIC_API_KEY", "AGENTOS_TELEGRAM_TOKEN", "GH_TOKEN", "NOTIFY_SOCKET"} & env.keys()
        env = invoke(AgentConfig(kind="claude", pass_env=["ANTHROPIC_API_KEY"])).env
        assert env["ANTHROPIC_API_KEY"] == "sk-ant-secret"
        assert "GH_TOKEN" not in env

    def test_absolute_binary(self, tmp_path: Path) -> None:
        """An absolute binary path is used as is."""
        binary = tmp_path / "my-claude"
        binary.write_text("#!/bin/sh\n")
        binary.chmod(0o755)
        assert invoke(AgentConfig(kind="claude", binary=str(binary))).argv[0] == str(binary)

    @pytest.mark.parametrize(
        ("kind", "hint"),
        [
            ("claude", "npm install -g @anthropic-ai/claude-code"),
            ("codex", "npm install -g @openai/codex"),
            ("gemini", "npm install -g @google/gemini-cli"),
        ],
    )
    def test_missing_binary_names_the_install_command(self, kind: str, hint: str) -> None:
        """A CLI that is not on the agent's PATH raises AgentNotInstalled with the npm command."""
        with pytest.raises(AgentNotInstalled) as err:
            invoke(AgentConfig(kind=kind, binary="no-such-cli-anywhere"), name="main")  # type: ignore[arg-type]
        assert err.value.hint == hint
        assert hint in str(err.value)
        assert err.value.agent == "main"

    def test_missing_absolute_binary(self, tmp_path: Path) -> None:
        """An absolute path that does not exist is not installed either."""
        with pytest.raises(AgentNotInstalled):
            invoke(AgentConfig(kind="codex", binary=str(tmp_path / "codex")))

    def test_command_template_is_filled(self, tmp_path: Path) -> None:
        """{prompt_file}, {worktree} and {task_id} are substituted; other braces are left alone."""
        cfg = AgentConfig(
            kind="command",
            argv=["command_agent.py", "{prompt_file}", "--task-id", "{task_id}", "--cfg={worktree}/{x}"],
        )
        inv = invoke(cfg, tmp=tmp_path)
        assert inv.argv == [
            str(FAKES / "command_agent.py"),
            str(tmp_path / "prompt.md"),
            "--task-id",
            "t-42",
            f"--cfg={tmp_path}/{{x}}",
        ]
        assert inv.stdin == "Fix the bug ✓".encode()

    def test_command_prompt_via_file_sends_no_stdin(self) -> None:
        """prompt_via: file means the agent reads the file; nothing is written to its stdin."""
        cfg = AgentConfig(kind="command", argv=["command_agent.py", "{prompt_file}"], prompt_via="file")
        assert invoke(cfg).stdin is None

    def test_command_relative_program_is_found_in_the_worktree(self, tmp_path: Path) -> None:
        """A relative path with a slash is looked up in the worktree (where it will run)."""
        script = tmp_path / "tools" / "agent.sh"
        script.parent.mkdir()
        script.write_text("#!/bin/sh\n")
        script.chmod(0o755)
        inv = invoke(AgentConfig(kind="command", argv=["tools/agent.sh"]), tmp=tmp_path)
        assert inv.argv == [str(script)]

    def test_command_missing_program(self) -> None:
        """A command agent whose program is missing points at its argv in the config."""
        with pytest.raises(AgentNotInstalled, match=r"agents\.aider\.argv\[0\]"):
            invoke(AgentConfig(kind="command", argv=["aider-not-installed"]), name="aider")

    def test_builtin_with_prompt_via_file_points_at_the_file(self) -> None:
        """A built-in CLI with prompt_via: file gets a one-line pointer to the prompt file on stdin."""
        inv = invoke(AgentConfig(kind="claude", prompt_via="file"))
        assert inv.stdin is not None
        assert b"/tmp/prompt.md" in inv.stdin

    def test_gemini_with_prompt_via_file_may_read_the_run_dir(self, tmp_path: Path) -> None:
        """Gemini CLI's read_file refuses paths outside its workspace (the worktree): with prompt_via: file the
        prompt's directory is added to it; with stdin the workspace stays the worktree alone."""
        runs = tmp_path / "runs" / "t-42" / "1"

        def argv(cfg: AgentConfig) -> list[str]:
            return build_invocation(
                "g",
                cfg,
                prompt="Fix",
                prompt_file=runs / "prompt.md",
                worktree=tmp_path,
                task_id="t",
                base_env=BASE_ENV,
            ).argv

        by_file = argv(AgentConfig(kind="gemini", prompt_via="file", extra_args=["--debug"]))
        assert by_file[-3:] == ["--include-directories", str(runs), "--debug"]
        assert "--include-directories" not in argv(AgentConfig(kind="gemini"))


# ---------------------------------------------------------------- JSON in noisy output


class TestSplitJson:
    def test_noise_before_a_pretty_printed_object(self) -> None:
        """Non-JSON lines before a multi-line object are noise; the object is found whole."""
        text = 'Loaded cached credentials.\n{\n  "response": "ok",\n  "stats": {}\n}\n'
        objects, noise = split_json(text)
        assert objects == [{"response": "ok", "stats": {}}]
        assert noise == ["Loaded cached credentials."]

    def test_jsonl_with_a_cut_line(self) -> None:
        """JSON lines are found one by one; a line cut off mid-object is noise, not an error."""
        text = '{"type": "a"}\n{"type": "b", "x": [1, 2\n{"type": "c"}\n'
        objects, noise = split_json(text)
        assert [o["type"] for o in objects] == ["a", "c"]
        assert noise == ['{"type": "b", "x": [1, 2']

    def test_non_object_json_is_noise(self) -> None:
        """Only objects count: a bare list or number is noise."""
        assert split_json("[1, 2]\n42\n") == ([], ["[1, 2]", "42"])


# ---------------------------------------------------------------- success reports


def claude_result(**overrides: object) -> str:
    result: dict[str, object] = {
        "type": "result",
        "subtype": "success",
        "is_error": False,
        "duration_ms": 48211,
        "num_turns": 7,
        "result": "Fixed the parser and added a test.",
        "session_id": "0b6d…",
        "total_cost_usd": 0.0912,
        "usage": {
            "input_tokens": 14,
            "cache_creation_input_tokens": 5213,
            "cache_read_input_tokens": 48120,
            "output_tokens": 934,
        },
    }
    result.update(overrides)
    return json.dumps(result)


CODEX_OK = "\n".join(
    [
        "Reading prompt from stdin...",
        '{"type":"thread.started","thread_id":"0199a213-81c0-7800-8aa1-bbab2a035a53"}',
        '{"type":"turn.started"}',
        '{"type":"item.completed","item":{"id":"item_0","type":"reasoning","text":"**Planning**"}}',
        '{"type":"item.completed","item":{"id":"item_1","type":"command_execution","command":"bash -lc ls",'
        '"aggregated_output":"README.md\\n","exit_code":0,"status":"completed"}}',
        '{"type":"item.completed","item":{"id":"item_2","type":"agent_message","text":"Done: fixed it."}}',
        '{"type":"turn.completed","usage":{"input_tokens":24763,"cached_input_tokens":24448,"output_tokens":122}}',
    ]
)

GEMINI_OK = (
    "Loaded cached credentials.\n"
    + json.dumps(
        {
            "response": "All done.",
            "stats": {
                "models": {
                    "gemini-2.5-pro": {
                        "api": {"totalRequests": 2, "totalErrors": 0, "totalLatencyMs": 5053},
                        "tokens": {"prompt": 24939, "candidates": 20, "total": 25113, "cached": 21263, "thoughts": 154},
                    },
                    "gemini-2.5-flash": {
                        "api": {"totalRequests": 1},
                        "tokens": {"prompt": 1000, "candidates": 10, "total": 1010, "cached": 0, "thoughts": 0},
                    },
                },
                "tools": {"totalCalls": 1},
            },
        },
        indent=2,
    )
    + "\n"
)


class TestParseSuccess:
    def test_claude_tokens_cost_turns(self) -> None:
        """Claude's result: cost and turns as reported; cache tokens count as input, cache reads as cached."""
        r = parse_output("claude", claude_result(), 0, now=NOW)
        assert (r.tokens_in, r.tokens_out, r.tokens_cached) == (14 + 5213 + 48120, 934, 48120)
        assert (r.cost_usd, r.cost_reported, r.turns) == (0.0912, True, 7)
        assert r.final_message == "Fixed the parser and added a test."
        assert not r.is_error and r.failure is None

    def test_claude_result_after_stderr_noise(self) -> None:
        """Warnings before the JSON do not hide it."""
        r = parse_output("claude", "(node:123) Warning: something\n" + claude_result(), 0, now=NOW)
        assert r.cost_reported and r.turns == 7

    def test_claude_error_subtype(self) -> None:
        """An error subtype (max turns) is an error without a failure code: the result file decides."""
        out = claude_result(subtype="error_max_turns", is_error=True, result=None)
        r = parse_output("claude", out, 1, now=NOW)
        assert r.is_error and r.failure is None
        assert "error_max_turns" in r.detail

    def test_codex_events(self) -> None:
        """Codex: tokens from turn.completed, the final agent_message, no cost (not measured)."""
        r = parse_output("codex", CODEX_OK, 0, now=NOW)
        assert (r.tokens_in, r.tokens_out, r.tokens_cached, r.tokens_reported) == (24763, 122, 24448, True)
        assert (r.cost_usd, r.cost_reported) == (0.0, False)
        assert r.final_message == "Done: fixed it."
        assert r.turns == 1 and not r.is_error

    def test_codex_recovered_stream_error_is_not_a_failure(self) -> None:
        """A transient error event followed by a completed turn is a success."""
        out = '{"type":"error","message":"stream error: retrying 1/5 in 200ms"}\n' + CODEX_OK
        r = parse_output("codex", out, 0, now=NOW)
        assert not r.is_error and r.failure is None

    def test_codex_legacy_events(self) -> None:
        """The older `msg` event format still yields the message and cumulative tokens."""
        out = "\n".join(
            [
                '{"id":"0","msg":{"type":"token_count","input_tokens":100,"output_tokens":5}}',
                '{"id":"0","msg":{"type":"token_count","info":{"total_token_usage":'
                '{"input_tokens":900,"cached_input_tokens":300,"output_tokens":70}}}}',
                '{"id":"0","msg":{"type":"task_complete","last_agent_message":"ok, done"}}',
            ]
        )
        r = parse_output("codex", out, 0, now=NOW)
        assert (r.tokens_in, r.tokens_out, r.tokens_cached) == (900, 70, 300)
        assert r.final_message == "ok, done"

    def test_gemini_stats_summed_over_models(self) -> None:
        """Gemini: tokens summed over models (thoughts are output), requests are turns, no cost."""
        r = parse_output("gemini", GEMINI_OK, 0, now=NOW)
        assert (r.tokens_in, r.tokens_out, r.tokens_cached) == (25939, 184, 21263)
        assert (r.turns, r.cost_reported, r.final_message) == (3, False, "All done.")

    def test_command_output_is_the_message(self) -> None:
        """A command agent's plain output is its final message; nothing is measured."""
        r = parse_output("command", "working\nall done\n", 0, now=NOW)
        assert r.final_message == "working\nall done"
        assert not r.tokens_reported and not r.cost_reported

    def test_success_mentioning_limits_is_not_paused(self) -> None:
        """A successful run whose summary talks about rate limits is not quota_limited."""
        out = claude_result(result="Added handling for 'rate limit reached' and HTTP 429 responses.")
        assert parse_output("claude", out, 0, now=NOW).failure is None


# ---------------------------------------------------------------- failures


def claude_error(text: str) -> str:
    return claude_result(is_error=True, result=text, num_turns=1, total_cost_usd=0, usage={})


GEMINI_QUOTA = json.dumps(
    {
        "error": {
            "type": "Error",
            "message": '[API Error: {"error":{"code":429,"message":"You exceeded your current quota, please check '
            "your plan and billing details.\\n* Quota exceeded for metric: "
            "generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 50\\n"
            'Please retry in 41.570521962s.","status":"RESOURCE_EXHAUSTED"}}]',
            "code": 1,
        }
    },
    indent=2,
)


def codex_failed(message: str) -> str:
    event = json.dumps({"type": "error", "message": message})
    failed = json.dumps({"type": "turn.failed", "error": {"message": message}})
    return f'{{"type":"thread.started","thread_id":"x"}}\n{{"type":"turn.started"}}\n{event}\n{failed}\n'


FAILURES = [
    # Claude Code
    pytest.param(
        "claude",
        claude_error("Claude AI usage limit reached|1750636800"),
        1,
        "quota_limited",
        datetime(2025, 6, 23, 0, 0, tzinfo=UTC),
        id="claude-epoch",
    ),
    pytest.param(
        "claude",
        claude_error("You've hit your limit · resets 3pm (UTC)"),
        1,
        "quota_limited",
        datetime(2025, 6, 1, 15, 0, tzinfo=UTC),
        id="claude-hit-your-limit",
    ),
    pytest.param(
        "claude",
        claude_error("Claude usage limit reached. Your limit will reset at 9am (America/Chicago)."),
        1,
        "quota_limited",
        datetime(2025, 6, 1, 14, 0, tzinfo=UTC),
        id="claude-will-reset-at",
    ),
    pytest.param(
        "claude",
        claude_error("5-hour limit reached ∙ resets 3:30am (Europe/Moscow)"),
        1,
        "quota_limited",
        datetime(2025, 6, 2, 0, 30, tzinfo=UTC),
        id="claude-5-hour",
    ),
    pytest.param(
        "claude",
        'API Error: 429 {"type":"error","error":{"type":"rate_limit_error","message":"This request would exceed '
        "your account's rate limit. Please try again later.\"}}\n",
        1,
        "quota_limited",
        None,
        id="claude-429-no-reset",
    ),
    pytest.param(
        "claude", claude_error("Credit balance is too low"), 1, "quota_limited", None, id="claude-credit-balance"
    ),
    pytest.param(
        "claude", claude_error("Invalid API key · Please run /login"), 1, "missing_credentials", None, id="claude-key"
    ),
    pytest.param(
        "claude",
        claude_error(
            'API Error: 401 {"type":"error","error":{"type":"authentication_error","message":"OAuth token has '
            'expired. Please obtain a new token or refresh your existing token."}} · Please run /login'
        ),
        1,
        "missing_credentials",
        None,
        id="claude-oauth-expired",
    ),
    pytest.param("claude", "Not logged in · Please run /login\n", 1, "missing_credentials", None, id="claude-login"),
    pytest.param(
        "claude",
        "--dangerously-skip-permissions cannot be used with root/sudo privileges for security reasons\n",
        1,
        "runner_failure",
        None,
        id="claude-root-refusal",
    ),
    # Codex
    pytest.param(
        "codex",
        codex_failed(
            "You've hit your usage limit. Upgrade to Pro (https://openai.com/chatgpt/pricing) or try again in "
            "5 days 22 hours 11 minutes."
        ),
        1,
        "quota_limited",
        NOW + timedelta(days=5, hours=22, minutes=11),
        id="codex-usage-limit-in",
    ),
    pytest.param(
        "codex",
        "■ You've hit your usage limit. Upgrade to Plus to continue using Codex (https://chatgpt.com/explore/plus),"
        " or try again at Jul 5th, 2026 8:19 PM.\n",
        1,
        "quota_limited",
        datetime(2026, 7, 5, 20, 19, tzinfo=UTC),
        id="codex-usage-limit-at",
    ),
    pytest.param(
        "codex",
        codex_failed(
            "Rate limit reached for gpt-5 in organization org-abc on tokens per min (TPM): Limit 30000, "
            "Used 29544, Requested 1200. Please try again in 1.488s."
        ),
        1,
        "quota_limited",
        NOW + timedelta(seconds=1.488),
        id="codex-tpm",
    ),
    pytest.param(
        "codex",
        codex_failed("Quota exceeded. Check your plan and billing details."),
        1,
        "quota_limited",
        None,
        id="codex-quota-exceeded",
    ),
    pytest.param(
        "codex",
        codex_failed('unexpected status 429 Too Many Requests: {"error":{"type":"insufficient_quota"}}'),
        1,
        "quota_limited",
        None,
        id="codex-insufficient-quota",
    ),
    pytest.param(
        "codex",
        codex_failed("unexpected status 401 Unauthorized: Missing bearer or basic authentication in header"),
        1,
        "missing_credentials",
        None,
        id="codex-401",
    ),
    pytest.param(
        "codex",
        "Error: Incorrect API key provided: sk-proj-****abcd.\n",
        1,
        "missing_credentials",
        None,
        id="codex-bad-key",
    ),
    pytest.param(
        "codex",
        "thread 'main' panicked at core/src/exec.rs:42:5:\nindex out of bounds\n",
        101,
        "runner_failure",
        None,
        id="codex-panic",
    ),
    # Gemini CLI
    pytest.param(
        "gemini",
        "Loaded cached credentials.\n" + GEMINI_QUOTA,
        1,
        "quota_limited",
        NOW + timedelta(seconds=41.570521962),
        id="gemini-quota-retry-in",
    ),
    pytest.param(
        "gemini",
        '[API Error: {"error":{"message":"{\\n  \\"error\\": {\\n    \\"code\\": 429,\\n    \\"message\\": '
        '\\"Resource has been exhausted (e.g. check quota).\\",\\n    \\"status\\": \\"RESOURCE_EXHAUSTED\\"\\n'
        '  }\\n}\\n","code":429,"status":"Too Many Requests"}}]\n',
        1,
        "quota_limited",
        None,
        id="gemini-resource-exhausted",
    ),
    pytest.param(
        "gemini",
        json.dumps(
            {
                "error": {
                    "type": "FatalAuthenticationError",
                    "message": "Please set an Auth method in your /root/.gemini/settings.json or specify one of the "
                    "following environment variables before running: GEMINI_API_KEY, GOOGLE_GENAI_USE_VERTEXAI, "
                    "GOOGLE_GENAI_USE_GCA",
                    "code": 41,
                }
            }
        ),
        41,
        "missing_credentials",
        None,
        id="gemini-no-auth",
    ),
    pytest.param(
        "gemini",
        "[API Error: API key not valid. Please pass a valid API key.]\n",
        1,
        "missing_credentials",
        None,
        id="gemini-bad-key",
    ),
    pytest.param("gemini", "Segmentation fault (core dumped)\n", 139, "runner_failure", None, id="gemini-segv"),
    # command agents (aider via litellm, scripts)
    pytest.param(
        "command",
        "litellm.RateLimitError: AnthropicException - rate limit reached for requests. Please try again in 20m.\n",
        1,
        "quota_limited",
        NOW + timedelta(minutes=20),
        id="command-litellm-rate-limit",
    ),
    pytest.param(
        "command",
        "litellm.AuthenticationError: AnthropicException - invalid x-api-key\n",
        1,
        "missing_credentials",
        None,
        id="command-litellm-auth",
    ),
    pytest.param("command", "Traceback (most recent call last):\nKeyError: 'x'\n", 1, "runner_failure", None, id="cmd"),
]


class TestParseFailures:
    @pytest.mark.parametrize(("kind", "output", "exit_code", "failure", "reset_at"), FAILURES)
    def test_failure_code_and_reset_time(
        self, kind: str, output: str, exit_code: int, failure: str, reset_at: datetime | None
    ) -> None:
        """Each CLI's real quota, auth and crash output maps to its failure code and stated reset time."""
        r = parse_output(kind, output, exit_code, now=NOW, local_tz=UTC)  # type: ignore[arg-type]
        assert r.failure == failure
        assert r.reset_at == reset_at
        assert r.is_error
        assert r.detail

    def test_runner_failure_keeps_the_stderr_tail(self) -> None:
        """A crash keeps its last lines in detail for the attempt record."""
        out = "".join(f"line {i}\n" for i in range(50)) + "Error: ENOENT: no such file or directory, open 'x'\n"
        r = parse_output("claude", out, 1, now=NOW)
        assert r.failure == "runner_failure"
        assert r.detail.endswith("Error: ENOENT: no such file or directory, open 'x'")
        assert "line 0\n" not in r.detail

    def test_killed_run_gets_no_failure_code(self) -> None:
        """exit_code None (killed on a limit) is left to the caller: no runner_failure is guessed."""
        assert parse_output("claude", "", None, now=NOW).failure is None

    def test_quota_takes_precedence_over_auth(self) -> None:
        """A usage-limit message that also suggests /login is a quota limit."""
        out = "You've hit your usage limit. Please log in again after it resets in 1h.\n"
        r = parse_output("command", out, 1, now=NOW)
        assert r.failure == "quota_limited"
        assert r.reset_at == NOW + timedelta(hours=1)


# ---------------------------------------------------------------- output captured from the real CLIs

# Captured in 2026-11 with Claude Code 2.1.197, codex-cli 0.169.0 and Gemini CLI 0.61.0 run with agentos's
# argv, an empty HOME and no network (trimmed, ids shortened).
REAL_CLAUDE_NOT_LOGGED_IN = (
    '{"type":"result","subtype":"success","is_error":true,"api_error_status":null,"duration_ms":101,'
    '"duration_api_ms":0,"num_turns":1,"result":"Not logged in · Please run /login","stop_reason":"stop_sequence",'
    '"session_id":"a20f1724","total_cost_usd":0,"usage":{"input_tokens":0,"cache_creation_input_tokens":0,'
    '"cache_read_input_tokens":0,"output_tokens":0,"server_tool_use":{"web_search_requests":0,'
    '"web_fetch_requests":0},"service_tier":"standard"},"modelUsage":{},"permission_denials":[],'
    '"terminal_reason":"completed","uuid":"baa17356"}\n'
)
REAL_CLAUDE_ROOT = "--dangerously-skip-permissions cannot be used with root/sudo privileges for security reasons\n"
REAL_GEMINI_NO_AUTH = (
    'YOLO mode is enabled. All tool calls will be automatically approved.\n{\n  "session_id": "243f8a1c",\n'
    '  "error": {\n    "type": "Error",\n    "message": "Please set an Auth method in your '
    "/tmp/realtest/home/.gemini/settings.json or specify one of the following environment variables before "
    'running: GEMINI_API_KEY, GOOGLE_GENAI_USE_VERTEXAI, GOOGLE_GENAI_USE_GCA",\n    "code": 41\n  }\n}\n'
)
REAL_GEMINI_UNTRUSTED = (
    "YOLO mode is enabled. All tool calls will be automatically approved.\n"
    'Approval mode overridden to "default" because the current folder is not trusted.\n'
    "\x1b[31mGemini CLI is not running in a trusted directory. To proceed, either use `--skip-trust`, set the "
    "`GEMINI_CLI_TRUST_WORKSPACE=true` environment variable, or trust this directory in interactive mode.\x1b[0m\n"
)
REAL_CODEX_OFFLINE = "\n".join(
    [
        "WARNING: proceeding, even though we could not create PATH aliases: Refusing to create helper binaries",
        '{"type":"thread.started","thread_id":"01a212c0"}',
        "2026-11-25T12:48:33.952507Z ERROR codex_api::endpoint::responses_websocket: failed to connect",
        '{"type":"item.completed","item":{"id":"item_0","type":"error","message":"Model metadata for `gpt-5` not '
        'found. Defaulting to fallback metadata; this can degrade performance and cause issues."}}',
        '{"type":"turn.started"}',
        '{"type":"error","message":"Reconnecting... 2/5 (stream disconnected before completion: failed to lookup '
        'address information: Name does not resolve)"}',
        '{"type":"error","message":"Reconnecting... waiting for network (Connection failed: error sending request)"}',
    ]
)


class TestRealCliOutput:
    def test_claude_not_logged_in(self) -> None:
        """Claude Code with no credentials: an is_error result, exit 1 → missing_credentials."""
        r = parse_output("claude", REAL_CLAUDE_NOT_LOGGED_IN, 1, now=NOW)
        assert r.failure == "missing_credentials"
        assert r.detail == "Not logged in · Please run /login"
        assert r.cost_reported and r.cost_usd == 0

    def test_claude_root_guard(self) -> None:
        """Claude Code as root without IS_SANDBOX: plain stderr, exit 1 → runner_failure with the message."""
        r = parse_output("claude", REAL_CLAUDE_ROOT, 1, now=NOW)
        assert r.failure == "runner_failure"
        assert "root/sudo" in r.detail

    def test_gemini_no_auth(self) -> None:
        """Gemini CLI with no auth method: a JSON error, exit 41 → missing_credentials."""
        r = parse_output("gemini", REAL_GEMINI_NO_AUTH, 41, now=NOW)
        assert r.failure == "missing_credentials"
        assert r.detail.startswith("Please set an Auth method")

    def test_gemini_untrusted_folder(self) -> None:
        """Gemini CLI in an untrusted folder: colored text, exit 55 → runner_failure, colors stripped."""
        r = parse_output("gemini", REAL_GEMINI_UNTRUSTED, 55, now=NOW)
        assert r.failure == "runner_failure"
        assert r.detail.endswith("trust this directory in interactive mode.")

    def test_codex_offline_and_killed(self) -> None:
        """codex retrying without a network, then killed at a limit: an error, but no failure code is guessed."""
        r = parse_output("codex", REAL_CODEX_OFFLINE, None, now=NOW)
        assert r.is_error and r.failure is None
        assert "waiting for network" in r.detail


class TestRecordedOutputs:
    """Outputs captured from the real CLIs (tests/fakes/agents/recorded) parse as they did when recorded."""

    def test_every_recording_parses_to_its_stored_report(self) -> None:
        """A change to the parser that would misread a real CLI's output fails here."""
        recorded = Path(__file__).parent.parent / "fakes" / "agents" / "recorded"
        index = json.loads((recorded / "index.json").read_text())
        assert len(index) >= 20
        for name, want in index.items():
            report = parse_output(
                want["kind"],
                (recorded / name).read_text(),
                want["exit_code"],
                now=datetime.fromisoformat(want["now"]),
                local_tz=ZoneInfo(want["local_tz"]),
            )
            reset = report.reset_at.isoformat() if report.reset_at else None
            got = {
                "failure": report.failure,
                "reset_at": reset,
                "tokens_in": report.tokens_in,
                "tokens_out": report.tokens_out,
                "cost_usd": report.cost_usd,
            }
            expected = {k: want[k] for k in got} | {"cost_usd": want["cost_usd"] or 0.0}
            assert got == expected, name
