"""Claude Code: ``claude -p --output-format json --dangerously-skip-permissions [--model M] …``, prompt on stdin.

Read-only (the one-shot questions of :mod:`agentos.llm`): ``--tools ""`` instead of the bypass, no tools at all.
Claude Code refuses ``--dangerously-skip-permissions`` as root unless ``IS_SANDBOX=1`` says it runs in a sandbox;
agentos runs agents in disposable worktrees, so as root it sets ``IS_SANDBOX=1``. Its output is one JSON
``result`` object (the last one wins). ``CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1``: its telemetry, error reports
and update checks would only be denied by the sandbox's egress allowlist.
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Literal

from agentos.agents.invocation import Invocation, Launch, cli_invocation, option
from agentos.agents.report import AgentReport, ParsedOutput, as_dict, as_int, as_str, judge, message_of, split_json

__all__ = ["ClaudeAdapter", "parse_claude"]


class ClaudeAdapter:
    kind: Literal["claude"] = "claude"
    install_hint = "npm install -g @anthropic-ai/claude-code"

    def invocation(self, launch: Launch) -> Invocation:
        cfg = launch.cfg
        mode = ["--tools", ""] if launch.read_only else ["--dangerously-skip-permissions"]
        flags = ["-p", "--output-format", "json", *mode, *option("--model", cfg.model), *cfg.extra_args]
        launch.env.setdefault("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")  # no telemetry for the allowlist to deny
        if not launch.read_only and launch.euid == 0:
            launch.env.setdefault("IS_SANDBOX", "1")  # Claude Code refuses the bypass as root without it
        return cli_invocation(launch, flags, self.install_hint)

    def parse(
        self, output: str, exit_code: int | None, *, now: datetime, local_tz: tzinfo | None = None
    ) -> AgentReport:
        objects, noise = split_json(output)
        return judge(parse_claude(objects), noise, exit_code, now=now, local_tz=local_tz)


def parse_claude(objects: list[dict[str, object]]) -> ParsedOutput:
    p = ParsedOutput()
    results = [o for o in objects if o.get("type") == "result"]
    if not results:
        return p
    r = results[-1]
    p.found = True
    p.final = as_str(r.get("result"))
    p.is_error = bool(r.get("is_error")) or str(r.get("subtype", "")).startswith("error")
    p.turns = as_int(r.get("num_turns"))
    cost = r.get("total_cost_usd", r.get("cost_usd"))
    if isinstance(cost, int | float) and not isinstance(cost, bool):
        p.cost_usd, p.cost_reported = float(cost), True
    usage = as_dict(r.get("usage"))
    if usage:
        cached = as_int(usage.get("cache_read_input_tokens"))
        p.tokens_in = as_int(usage.get("input_tokens")) + as_int(usage.get("cache_creation_input_tokens")) + cached
        p.tokens_out, p.tokens_cached, p.tokens_reported = as_int(usage.get("output_tokens")), cached, True
    # `usage` covers the main loop only; `modelUsage` every API call of the run (the session title, subagents), the
    # calls `total_cost_usd` is the price of. Claude Code 2.1.197 against a scripted server: usage 3,000 in,
    # modelUsage 4,000 (the title request). The larger of the two is what the run consumed.
    models = [as_dict(m) for m in as_dict(r.get("modelUsage")).values()]
    if models:
        cached = sum(as_int(m.get("cacheReadInputTokens")) for m in models)
        tokens_in = cached + sum(
            as_int(m.get("inputTokens")) + as_int(m.get("cacheCreationInputTokens")) for m in models
        )
        tokens_out = sum(as_int(m.get("outputTokens")) for m in models)
        if tokens_in >= p.tokens_in and tokens_out >= p.tokens_out and (tokens_in, tokens_out) != (0, 0):
            p.tokens_in, p.tokens_out, p.tokens_cached, p.tokens_reported = tokens_in, tokens_out, cached, True
    if p.is_error:
        errors = r.get("errors")
        p.errors.append(p.final or str(r.get("subtype", "error")))
        p.errors += [message_of(e) for e in errors if e] if isinstance(errors, list) else []
    return p
