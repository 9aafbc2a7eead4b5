"""One-shot prompts through a configured agent CLI, answered with a JSON object validated by a pydantic model.

The loops work fully without it: every caller has a deterministic fallback and uses an answer only to
name, explain or propose. :meth:`Llm.ask` never raises for a failed run; it returns ``None`` (the agent is
missing, timed out or crashed, or answered twice without a JSON object that validates) and logs why, once.

An answer with no JSON object, or one the model rejects, is asked about once more: the same prompt with a
short correction appended (the validation error, redacted and cut to :data:`CORRECTION_CHARS`, and the
model's JSON schema). A second bad answer gives ``None``; a run that failed outright is not retried.

The prompt is redacted before it leaves the process. The agent runs in a scratch directory under the
state dir (``llm/<run>``, empty) with the same scrubbed environment and limits as a task attempt, only shorter,
and with its CLI's read-only switch (``build_invocation(read_only=True)``): it answers, it edits nothing.

With ``sandbox.mode: bubblewrap`` it runs in the same sandbox as an attempt (:func:`agentos.runners.policy.agent_spec`:
the scratch directory as its worktree, the prompt file read-only, a private ``HOME`` seeded from
``agents.<name>.home``, the state directory and the operator's home not there, the resource limits) and its only
way out is an egress session of its own (its kind's API host, ``sandbox.allow_hosts``, ``agents.<name>.allow_hosts``;
what is refused is logged as ``llm_egress_denied``). The question is all it sees of the repository: the callers
put the context into the prompt. The CLIs' read-only switches stay on inside it (Codex's own bubblewrap sandbox
nests in ours: ``tests/realcli/test_llm_real.py``).

Each run gets a temporary directory of its own (``TMPDIR``, removed afterwards) under the scratch directory. Codex's
read-only switch is its own sandbox, which re-executes codex as ``codex-linux-sandbox`` through a directory of
aliases it creates under ``$CODEX_HOME/tmp``; it refuses to create them when ``CODEX_HOME`` lies inside ``TMPDIR``
(a ``HOME`` under ``/tmp``), and then every command fails with ``bwrap: execvp codex-linux-sandbox``.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from agentos import logging as alog
from agentos.agents.adapters import AgentNotInstalled, build_invocation, parse_output
from agentos.agents.runner import RunOutcome, RunSpec, run_process
from agentos.config import AgentConfig, Config, SandboxConfig
from agentos.redact import redact
from agentos.runners.attempt_egress import agent_allow, egress_proxy, egress_session
from agentos.runners.policy import agent_spec
from agentos.runners.sandbox import SandboxSpec

__all__ = ["CORRECTION_CHARS", "Llm", "ModelAsker", "from_config", "last_json_object"]

log = alog.get_logger("agentos.llm")

_DECODER = json.JSONDecoder()
_INSTRUCTION = "\n\nAnswer with exactly one JSON object and nothing else. Do not edit any file, run no command."
CORRECTION_CHARS = 500
"""How much of a validation error the correction quotes back to the agent."""

M = TypeVar("M", bound=BaseModel)


class ModelAsker(Protocol):
    """What the loops need from an LLM: one prompt in, one validated ``model`` (or None) out."""

    async def ask(self, prompt: str, model: type[M]) -> M | None: ...


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
        sandbox: SandboxConfig | None = None,
        state_dir: Path | None = None,
    ) -> None:
        self.name = name
        self.cfg = cfg
        self.workdir = Path(workdir)
        self.sandbox = sandbox if sandbox is not None and sandbox.mode == "bubblewrap" else None
        self.state_dir = (Path(state_dir) if state_dir is not None else self.workdir.parent).resolve()
        self.timeout_s = timeout_s
        self.base_env = dict(os.environ if base_env is None else base_env)
        self.clock = clock
        self.asked = 0
        self.answered = 0

    def __repr__(self) -> str:
        return f"<Llm {self.name} asked={self.asked} answered={self.answered}>"

    async def ask(self, prompt: str, model: type[M]) -> M | None:
        """The agent's answer to ``prompt`` as a validated ``model``; asked at most twice; None when it fails."""
        self.asked += 1
        text = await self._run(prompt)
        if text is None:
            return None
        answer, error = _validate(text, model)
        if answer is None:
            schema = json.dumps(model.model_json_schema(), separators=(",", ":"))
            correction = (
                f"\n\nYour previous answer was not valid: {_cut(redact(error), CORRECTION_CHARS)}\n"
                f"Answer with one JSON object that matches this JSON schema: {schema}"
            )
            text = await self._run(prompt + correction)
            if text is None:
                return None
            answer, error = _validate(text, model)
        if answer is None:
            log.warning(
                "llm_invalid_answer", agent=self.name, model=model.__name__, tries=2, error=_cut(redact(error), 300)
            )
            return None
        self.answered += 1
        return answer

    async def _run(self, prompt: str) -> str | None:
        """The agent's final message, or None (logged) when it could not run or failed."""
        run_id = uuid.uuid4().hex[:12]
        self.workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        text = redact(prompt) + _INSTRUCTION
        prompt_file = self.workdir / f"{run_id}.prompt.md"
        log_path = self.workdir / f"{run_id}.log"
        tmp_dir = self.workdir / f"{run_id}.tmp"
        scratch = self.workdir / run_id  # the cwd: empty, the only folder a sandboxed run may write
        prompt_file.write_text(text, encoding="utf-8")
        tmp_dir.mkdir(mode=0o700)
        scratch.mkdir(mode=0o700)
        try:
            try:
                inv = build_invocation(
                    self.name,
                    self.cfg,
                    prompt=text,
                    prompt_file=prompt_file,
                    worktree=scratch,
                    task_id=f"llm-{run_id}",
                    base_env={**self.base_env, "TMPDIR": str(tmp_dir)},
                    read_only=True,
                )
            except AgentNotInstalled as exc:
                log.warning("llm_unavailable", agent=self.name, error=str(exc))
                return None
            outcome = await self._spawn(inv.argv, inv.env, inv.stdin, scratch, prompt_file, log_path, tmp_dir)
            output = log_path.read_text(encoding="utf-8", errors="replace") if log_path.exists() else ""
        finally:
            prompt_file.unlink(missing_ok=True)
            for folder in (tmp_dir, scratch):
                shutil.rmtree(folder, ignore_errors=True)
        if outcome.refused:
            log.warning("llm_unavailable", agent=self.name, error=outcome.refused)
            return None
        if outcome.timed_out or outcome.exit_code != 0:
            log.warning("llm_failed", agent=self.name, exit_code=outcome.exit_code, timed_out=outcome.timed_out)
            return None
        log_path.unlink(missing_ok=True)
        return parse_output(self.cfg.kind, output, outcome.exit_code, now=self.clock()).final_message

    async def _spawn(
        self,
        argv: list[str],
        env: dict[str, str],
        stdin: bytes | None,
        scratch: Path,
        prompt_file: Path,
        log_path: Path,
        run_dir: Path,
    ) -> RunOutcome:
        """One run of the CLI in ``scratch``; sandboxed (with an egress session of its own) when configured."""

        def spec(sandbox: SandboxSpec | None) -> RunSpec:
            return RunSpec(
                argv=argv,
                cwd=scratch,
                env=env,
                stdin=stdin,
                log_path=log_path,
                idle_timeout_s=self.timeout_s,
                max_runtime_s=self.timeout_s,
                kill_grace_s=5.0,
                max_log_bytes=1024 * 1024,
                sandbox=sandbox,
            )

        if self.sandbox is None:
            return await run_process(spec(None))
        proxy = egress_proxy()

        def denied(_session: str, host: str) -> None:
            log.warning("llm_egress_denied", agent=self.name, host=host)

        try:
            allow = agent_allow(self.sandbox, self.cfg, env)
            async with egress_session(proxy, f"llm/{scratch.name}", allow, on_denied=denied) as door:
                box = agent_spec(
                    self.sandbox,
                    self.cfg,
                    argv=argv,
                    worktree=scratch,
                    run_dir=run_dir,
                    prompt_file=prompt_file,
                    state_dir=self.state_dir,
                    env=self.base_env,
                    proxy_socket=door.socket_path if door is not None else None,
                )
                return await run_process(spec(box))
        finally:
            shutil.rmtree(proxy.socket_dir, ignore_errors=True)


def _validate(text: str, model: type[M]) -> tuple[M | None, str]:
    """``text``'s last JSON object as a ``model``, or None and what is wrong with it."""
    found = last_json_object(text)
    if found is None:
        tail = text.strip()[-120:]
        return None, f"no JSON object in the answer (it ended: {tail!r})" if tail else "the answer was empty"
    try:
        return model.model_validate(found), ""
    except ValidationError as exc:
        return None, "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors(include_url=False)
        )


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def from_config(config: Config, agent: str | None, state_dir: Path) -> Llm | None:
    """The :class:`Llm` for ``agent`` (a name in ``agents:``), or None when unset or unknown."""
    if not agent:
        return None
    cfg = config.agents.get(agent)
    if cfg is None:
        log.warning("llm_agent_unknown", agent=agent, known=sorted(config.agents))
        return None
    return Llm(agent, cfg, workdir=state_dir / "llm", sandbox=config.sandbox, state_dir=state_dir)
