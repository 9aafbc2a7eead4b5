"""A ``command`` agent: any argv template with ``{prompt_file}``, ``{worktree}``, ``{task_id}`` filled in.

The prompt goes on stdin unless ``prompt_via: file`` (then the program reads the file it was given). Its argv is
the user's, so ``read_only`` changes nothing. Its output is free text: the last lines are its message.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, tzinfo
from typing import Literal

from agentos.agents.invocation import Invocation, Launch, resolve_program
from agentos.agents.report import FINAL_MESSAGE_CHARS, AgentReport, ParsedOutput, judge, split_json

__all__ = ["CommandAdapter"]


class CommandAdapter:
    kind: Literal["command"] = "command"
    install_hint = ""

    def invocation(self, launch: Launch) -> Invocation:
        cfg = launch.cfg
        assert cfg.argv, "AgentConfig guarantees argv for kind 'command'"
        values = {
            "{prompt_file}": str(launch.prompt_file),
            "{worktree}": str(launch.worktree),
            "{task_id}": launch.task_id,
        }
        argv = [_fill(arg, values) for arg in cfg.argv] + list(cfg.extra_args)
        hint = f"check agents.{launch.agent}.argv[0] in the config"
        argv[0] = resolve_program(launch.agent, argv[0], launch.env, launch.worktree, hint)
        return Invocation(argv, launch.env, None if cfg.prompt_via == "file" else launch.prompt.encode("utf-8"))

    def parse(
        self, output: str, exit_code: int | None, *, now: datetime, local_tz: tzinfo | None = None
    ) -> AgentReport:
        _, noise = split_json(output)
        parsed = ParsedOutput(final=output.strip()[-FINAL_MESSAGE_CHARS:])
        return judge(parsed, noise, exit_code, now=now, local_tz=local_tz)


def _fill(arg: str, values: Mapping[str, str]) -> str:
    for key, value in values.items():  # not str.format: other braces (JSON, shell) pass through untouched
        arg = arg.replace(key, value)
    return arg
