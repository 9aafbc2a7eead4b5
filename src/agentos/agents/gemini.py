"""Gemini CLI: ``gemini -p "" [-m M] --output-format json --approval-mode yolo …``, prompt on stdin.

Read-only: ``--approval-mode plan --policy <gemini-read-only.toml>``. Gemini CLI 0.61's plan mode alone is not
read-only: headless, the model's ``exit_plan_mode`` is auto-approved and switches to YOLO, so a policy that denies
every tool (:data:`GEMINI_READ_ONLY_POLICY`) goes with it. Gemini CLI refuses to run headless in a folder it does
not trust (every new worktree), so it gets ``GEMINI_CLI_TRUST_WORKSPACE=true``; its file tools refuse paths outside
the worktree, so with ``prompt_via: file`` it also gets ``--include-directories <the prompt's run dir>``. Its output
is one JSON object with ``response``, ``stats`` and ``error``.
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from pathlib import Path
from typing import Literal

from agentos.agents.invocation import Invocation, Launch, cli_invocation, option
from agentos.agents.report import AgentReport, ParsedOutput, as_dict, as_int, as_str, judge, message_of, split_json

__all__ = ["GEMINI_READ_ONLY_POLICY", "GeminiAdapter", "parse_gemini"]

GEMINI_READ_ONLY_POLICY = Path(__file__).with_name("gemini-read-only.toml")


class GeminiAdapter:
    kind: Literal["gemini"] = "gemini"
    install_hint = "npm install -g @google/gemini-cli"

    def invocation(self, launch: Launch) -> Invocation:
        cfg = launch.cfg
        extra = list(cfg.extra_args)
        if cfg.prompt_via == "file":  # read_file refuses paths outside the worktree
            extra = ["--include-directories", str(launch.prompt_file.parent), *extra]
        if launch.read_only:
            mode = ["--approval-mode", "plan", "--policy", str(GEMINI_READ_ONLY_POLICY)]
        else:
            mode = ["--approval-mode", "yolo"]
        flags = ["-p", "", *option("-m", cfg.model), "--output-format", "json", *mode, *extra]
        launch.env.setdefault("GEMINI_CLI_TRUST_WORKSPACE", "true")  # headless runs refuse an untrusted (new) folder
        return cli_invocation(launch, flags, self.install_hint)

    def parse(
        self, output: str, exit_code: int | None, *, now: datetime, local_tz: tzinfo | None = None
    ) -> AgentReport:
        objects, noise = split_json(output)
        return judge(parse_gemini(objects), noise, exit_code, now=now, local_tz=local_tz)


def parse_gemini(objects: list[dict[str, object]]) -> ParsedOutput:
    p = ParsedOutput()
    reports = [o for o in objects if {"response", "stats", "error"} & o.keys()]
    if not reports:
        return p
    r = reports[-1]
    p.found = True
    p.final = as_str(r.get("response"))
    if r.get("error"):
        p.is_error = True
        p.errors.append(message_of(r["error"]))
    for model in as_dict(as_dict(r.get("stats")).get("models")).values():
        tokens = as_dict(as_dict(model).get("tokens"))
        p.tokens_in += as_int(tokens.get("prompt"))
        p.tokens_out += as_int(tokens.get("candidates")) + as_int(tokens.get("thoughts"))
        p.tokens_cached += as_int(tokens.get("cached"))
        p.tokens_reported = p.tokens_reported or bool(tokens)
        roles = as_dict(as_dict(model).get("roles"))
        if roles:  # 0.61: per role; "utility_router" and the like are side calls, not turns of the agent
            p.turns += as_int(as_dict(roles.get("main")).get("totalRequests"))
        else:
            p.turns += as_int(as_dict(as_dict(model).get("api")).get("totalRequests"))
    return p
