"""Codex: ``codex exec --dangerously-bypass-approvals-and-sandbox --skip-git-repo-check --json [-m M] … -``.

The prompt goes on stdin (the trailing ``-``). Read-only: ``--sandbox read-only`` instead of the bypass. Its
output is a JSON-lines event stream (``turn.completed``/``turn.failed``, ``item.completed``; before 0.44 events
wrapped in ``msg``). Codex prints a reset time without a zone, so the agent keeps the daemon's ``TZ``.
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Literal

from agentos.agents.invocation import Invocation, Launch, cli_invocation, option
from agentos.agents.report import AgentReport, ParsedOutput, as_dict, as_int, judge, message_of, split_json

__all__ = ["CodexAdapter", "parse_codex"]


class CodexAdapter:
    kind: Literal["codex"] = "codex"
    install_hint = "npm install -g @openai/codex"

    def invocation(self, launch: Launch) -> Invocation:
        cfg = launch.cfg
        mode = ["--sandbox", "read-only"] if launch.read_only else ["--dangerously-bypass-approvals-and-sandbox"]
        flags = ["exec", *mode, "--skip-git-repo-check", "--json", *option("-m", cfg.model), *cfg.extra_args, "-"]
        return cli_invocation(launch, flags, self.install_hint)

    def parse(
        self, output: str, exit_code: int | None, *, now: datetime, local_tz: tzinfo | None = None
    ) -> AgentReport:
        objects, noise = split_json(output)
        return judge(parse_codex(objects), noise, exit_code, now=now, local_tz=local_tz)


def parse_codex(objects: list[dict[str, object]]) -> ParsedOutput:
    p = ParsedOutput()
    completed = failed = False
    for o in objects:
        kind, msg = o.get("type"), as_dict(o.get("msg"))  # `msg`: the event format of codex before 0.44
        if kind in ("turn.completed", "turn.failed"):
            p.found = True
            completed, failed = completed or kind == "turn.completed", failed or kind == "turn.failed"
            p.turns += 1
            usage = as_dict(o.get("usage"))
            if usage:
                p.tokens_in += as_int(usage.get("input_tokens"))
                p.tokens_cached += as_int(usage.get("cached_input_tokens"))
                p.tokens_out += as_int(usage.get("output_tokens"))
                p.tokens_reported = True
            if kind == "turn.failed":
                p.errors.append(message_of(o.get("error")))
        elif kind == "item.completed":
            item = as_dict(o.get("item"))
            if item.get("type") == "agent_message" and isinstance(item.get("text"), str):
                p.found, p.final = True, str(item["text"])
            elif item.get("type") == "error":
                p.errors.append(message_of(item))
        elif kind == "error":
            p.found = True
            p.errors.append(message_of(o))
        elif msg.get("type") in ("agent_message", "task_complete"):
            text = msg.get("message", msg.get("last_agent_message"))
            if isinstance(text, str) and text:
                p.found, completed, p.final = True, True, text
        elif msg.get("type") == "token_count":
            total = as_dict(as_dict(msg.get("info")).get("total_token_usage")) or msg  # cumulative: keep the last
            p.tokens_in, p.tokens_out = as_int(total.get("input_tokens")), as_int(total.get("output_tokens"))
            p.tokens_cached, p.tokens_reported = as_int(total.get("cached_input_tokens")), True
        elif msg.get("type") in ("error", "stream_error"):
            p.found = True
            p.errors.append(message_of(msg))
    p.is_error = failed or (bool(p.errors) and not completed)
    return p
