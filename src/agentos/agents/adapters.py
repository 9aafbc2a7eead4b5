"""The agent adapters by ``kind``, and the two calls the executor and :mod:`agentos.llm` make through them.

=========  =====================================================================================  ===============
kind       argv (module)                                                                          prompt
=========  =====================================================================================  ===============
claude     ``claude -p --output-format json --dangerously-skip-permissions …`` (:mod:`.claude`)   stdin
codex      ``codex exec --dangerously-bypass-approvals-and-sandbox … --json -`` (:mod:`.codex`)   stdin (``-``)
gemini     ``gemini -p "" --output-format json --approval-mode yolo …`` (:mod:`.gemini`)          stdin
command    the configured ``argv`` with its placeholders filled in (:mod:`.command`)              stdin or file
=========  =====================================================================================  ===============

:func:`build_invocation` scrubs the environment and asks the kind's adapter for the command line;
:func:`parse_output` asks it what the CLI's output means (an :class:`AgentReport`; failure rules and reset times
are :mod:`agentos.agents.limits`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime, tzinfo
from pathlib import Path

from agentos.agents.claude import ClaudeAdapter
from agentos.agents.codex import CodexAdapter
from agentos.agents.command import CommandAdapter
from agentos.agents.gemini import GEMINI_READ_ONLY_POLICY, GeminiAdapter
from agentos.agents.invocation import Adapter, AgentNotInstalled, Invocation, Launch
from agentos.agents.limits import FAILURE_RULES, FailureCode, FailureRule, classify_failure, parse_reset_time
from agentos.agents.report import AgentReport, split_json
from agentos.agents.runner import scrubbed_env
from agentos.config import AgentConfig, AgentKind

__all__ = [  # the names the executor, llm.py, doctor and the tests import from here
    "ADAPTERS", "FAILURE_RULES", "GEMINI_READ_ONLY_POLICY", "INSTALL_HINTS", "Adapter", "AgentNotInstalled",
    "AgentReport", "FailureCode", "FailureRule", "Invocation", "adapter_for", "build_invocation",
    "classify_failure", "parse_output", "parse_reset_time", "split_json",
]  # fmt: skip

ADAPTERS: dict[AgentKind, Adapter] = {
    a.kind: a for a in (ClaudeAdapter(), CodexAdapter(), GeminiAdapter(), CommandAdapter())
}
INSTALL_HINTS: dict[str, str] = {kind: a.install_hint for kind, a in ADAPTERS.items() if a.install_hint}


def adapter_for(kind: AgentKind) -> Adapter:
    return ADAPTERS[kind]


def build_invocation(
    agent_name: str,
    cfg: AgentConfig,
    *,
    prompt: str,
    prompt_file: Path,
    worktree: Path,
    task_id: str,
    base_env: Mapping[str, str],
    euid: int | None = None,
    read_only: bool = False,
) -> Invocation:
    """The argv, environment and stdin that run ``cfg`` on ``prompt`` (already written to ``prompt_file``).

    The environment is :func:`~agentos.agents.runner.scrubbed_env` of ``base_env`` (the daemon's) with the
    agent's ``pass_env`` and ``env``. ``euid`` defaults to :func:`os.geteuid` (injectable for tests).
    ``read_only`` (one-shot questions, :mod:`agentos.llm`) swaps the permission bypass for the CLI's own switch
    that lets it edit nothing and run nothing. Raises :class:`AgentNotInstalled` when the program is not found.
    """
    env = scrubbed_env(list(cfg.pass_env), dict(cfg.env), base_env)
    if "TZ" in base_env:  # Codex prints a reset time without a zone; parse_output reads it in the daemon's zone
        env.setdefault("TZ", base_env["TZ"])
    launch = Launch(
        agent=agent_name,
        cfg=cfg,
        prompt=prompt,
        prompt_file=prompt_file,
        worktree=worktree,
        task_id=task_id,
        env=env,
        euid=os.geteuid() if euid is None else euid,
        read_only=read_only,
    )
    return adapter_for(cfg.kind).invocation(launch)


def parse_output(
    kind: AgentKind, output: str, exit_code: int | None, *, now: datetime, local_tz: tzinfo | None = None
) -> AgentReport:
    """Read a CLI's combined stdout/stderr into an :class:`AgentReport` (see :func:`agentos.agents.report.judge`)."""
    return adapter_for(kind).parse(output, exit_code, now=now, local_tz=local_tz)
