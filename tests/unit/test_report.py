"""What each CLI's output means: tokens, cost, turns, the final message and failure codes (an AgentReport)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from agentos.agents.adapters import parse_output, split_json

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


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
