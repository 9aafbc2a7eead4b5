"""How an agent is started: the :class:`Invocation` (argv, environment, stdin), what an adapter is given to build it
(:class:`Launch`), the :class:`Adapter` protocol every CLI's module implements, and the steps they share.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Protocol

from agentos.agents.report import AgentReport
from agentos.config import AgentConfig, AgentKind
from agentos.errors import AgentosError

__all__ = ["Adapter", "AgentNotInstalled", "Invocation", "Launch", "cli_invocation", "option", "resolve_program"]


class AgentNotInstalled(AgentosError):
    """The agent's program is not on the agent's PATH (or not executable). ``hint`` says how to install it."""

    def __init__(self, agent: str, binary: str, hint: str) -> None:
        self.agent = agent
        self.binary = binary
        self.hint = hint
        super().__init__(f"agent {agent!r}: {binary!r} is not installed or not executable; {hint}")


@dataclass(frozen=True)
class Invocation:
    argv: list[str]
    env: dict[str, str]
    stdin: bytes | None


@dataclass(frozen=True)
class Launch:
    """One run to build a command line for. ``env`` is already scrubbed; an adapter may add its own variables."""

    agent: str
    cfg: AgentConfig
    prompt: str
    prompt_file: Path
    worktree: Path
    task_id: str
    env: dict[str, str]
    euid: int
    read_only: bool


class Adapter(Protocol):
    """One agent CLI: how to run it unattended, and what its output means."""

    @property
    def kind(self) -> AgentKind: ...

    @property
    def install_hint(self) -> str:
        """How to install the CLI ("" for a ``command`` agent, whose program is the user's)."""
        ...

    def invocation(self, launch: Launch) -> Invocation: ...

    def parse(
        self, output: str, exit_code: int | None, *, now: datetime, local_tz: tzinfo | None = None
    ) -> AgentReport: ...


def option(flag: str, value: str | None) -> list[str]:
    """``[flag, value]``, or nothing when ``value`` is unset."""
    return [flag, value] if value else []


def resolve_program(agent: str, program: str, env: Mapping[str, str], cwd: Path, hint: str) -> str:
    """An absolute path to ``program``: looked up on the agent's own PATH, or relative to the worktree."""
    if "/" in program:
        path = Path(program).expanduser()
        path = path if path.is_absolute() else cwd / path
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
        raise AgentNotInstalled(agent, program, hint)
    found = shutil.which(program, path=env.get("PATH") or os.defpath)
    if found is None:
        raise AgentNotInstalled(agent, program, hint)
    return found


def cli_invocation(launch: Launch, flags: list[str], install_hint: str) -> Invocation:
    """A built-in CLI run as ``<binary> <flags>``, the prompt on stdin (or, with ``prompt_via: file``, where it is)."""
    cfg = launch.cfg
    binary = resolve_program(launch.agent, cfg.binary or cfg.kind, launch.env, launch.worktree, install_hint)
    if cfg.prompt_via == "file":  # the built-in CLIs read stdin; point them at the file instead
        stdin = f"Your task is in the file {launch.prompt_file}. Read it and do it.\n".encode()
        return Invocation([binary, *flags], launch.env, stdin)
    return Invocation([binary, *flags], launch.env, launch.prompt.encode("utf-8"))
