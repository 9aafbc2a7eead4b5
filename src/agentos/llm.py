"""One-shot prompts through a configured agent CLI, with a JSON answer or nothing.

The loops work fully without it: every caller has a deterministic fallback and uses an answer only to
name, explain or propose. :meth:`Llm.ask_json` never raises for a failed run; it returns ``None`` (the
agent is missing, timed out, crashed, or answered without a JSON object) and logs why.

The prompt is redacted before it leaves the process. The agent runs in a scratch directory under the
state dir (``llm/``) with the same scrubbed environment and limits as a task attempt, only shorter.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from agentos import logging as alog
from agentos.agents.adapters import AgentNotInstalled, build_invocation, parse_output
from agentos.agents.runner import RunSpec, run_process
from agentos.config import AgentConfig, Config
from agentos.redact import redact

__all__ = ["JsonAsker", "Llm", "from_config", "last_json_object"]

log = alog.get_logger("agentos.llm")

_DECODER = json.JSONDecoder()
_INSTRUCTION = "\n\nAnswer with exactly one JSON object and nothing else. Do not edit any file, run no command."


class JsonAsker(Protocol):
    """What the loops need from an LLM: one prompt in, one JSON object (or None) out."""

    async def ask_json(self, prompt: str) -> dict[str, Any] | None: ...


def last_json_object(text: str) -> dict[str, Any] | None:
    """The last top-level JSON object in ``text`` (prose and ```json fences around it are fine)."""
    found: dict[str, Any] | None = None
    pos = text.find("{")
    while pos >= 0:
        try:
            obj, stop = _DECODER.raw_decode(text, pos)
        except ValueError:
            pos = text.find("{", pos + 1)
            continue
        if isinstance(obj, dict):
            found = obj
        pos = text.find("{", stop)
    return found


class Llm:
    """Asks one configured agent CLI a question and reads a JSON object from its answer."""

    def __init__(
        self,
        name: str,
        cfg: AgentConfig,
        *,
        workdir: Path,
        timeout_s: float = 180.0,
        base_env: Mapping[str, str] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.name = name
        self.cfg = cfg
        self.workdir = Path(workdir)
        self.timeout_s = timeout_s
        self.base_env = dict(os.environ if base_env is None else base_env)
        self.clock = clock
        self.asked = 0
        self.answered = 0

    def __repr__(self) -> str:
        return f"<Llm {self.name} asked={self.asked} answered={self.answered}>"

    async def ask_json(self, prompt: str) -> dict[str, Any] | None:
        self.asked += 1
        run_id = uuid.uuid4().hex[:12]
        self.workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        text = redact(prompt) + _INSTRUCTION
        prompt_file = self.workdir / f"{run_id}.prompt.md"
        log_path = self.workdir / f"{run_id}.log"
        prompt_file.write_text(text, encoding="utf-8")
        try:
            try:
                inv = build_invocation(
                    self.name,
                    self.cfg,
                    prompt=text,
                    prompt_file=prompt_file,
                    worktree=self.workdir,
                    task_id=f"llm-{run_id}",
                    base_env=self.base_env,
                )
            except AgentNotInstalled as exc:
                log.warning("llm_unavailable", agent=self.name, error=str(exc))
                return None
            outcome = await run_process(
                RunSpec(
                    argv=inv.argv,
                    cwd=self.workdir,
                    env=inv.env,
                    stdin=inv.stdin,
                    log_path=log_path,
                    idle_timeout_s=self.timeout_s,
                    max_runtime_s=self.timeout_s,
                    kill_grace_s=5.0,
                    max_log_bytes=1024 * 1024,
                )
            )
            output = log_path.read_text(encoding="utf-8", errors="replace") if log_path.exists() else ""
        finally:
            prompt_file.unlink(missing_ok=True)
        if outcome.timed_out or outcome.exit_code != 0:
            log.warning("llm_failed", agent=self.name, exit_code=outcome.exit_code, timed_out=outcome.timed_out)
            return None
        report = parse_output(self.cfg.kind, output, outcome.exit_code, now=self.clock())
        answer = last_json_object(report.final_message)
        if answer is None:
            log.warning("llm_no_json", agent=self.name, tail=redact(report.final_message[-300:]))
            return None
        log_path.unlink(missing_ok=True)
        self.answered += 1
        return answer


def from_config(config: Config, agent: str | None, state_dir: Path) -> Llm | None:
    """The :class:`Llm` for ``agent`` (a name in ``agents:``), or None when unset or unknown."""
    if not agent:
        return None
    cfg = config.agents.get(agent)
    if cfg is None:
        log.warning("llm_agent_unknown", agent=agent, known=sorted(config.agents))
        return None
    return Llm(agent, cfg, workdir=state_dir / "llm")
