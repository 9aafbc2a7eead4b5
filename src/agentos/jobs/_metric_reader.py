"""Reading ``objectives.yaml`` and its metrics for the ``outcome_check`` job.

* the file itself: as committed at a ref, in the repo's clone (:func:`agentos.context.git_reader`), validated by
  :func:`agentos.context.parse_objectives`; a bad file is its one-line problem, never an exception;
* a ``command`` metric: ``/bin/sh -c`` in a detached worktree of that ref, its environment scrubbed, in the
  sandbox when ``sandbox.mode`` is ``bubblewrap`` (as acceptance commands run), limited to
  ``loops.outcome_timeout_s``; the number is the last non-empty line of its output;
* a ``file`` metric: read in that worktree; the number is its last non-empty line, or the value at ``pointer``;
* a ``url`` metric: fetched now (no redirects, 30 s at most) only when its host is in
  ``loops.objective_url_hosts``; the number is the value at ``pointer`` of the JSON answer (or the body).

A ``kind: prose`` metric is read the same way, but its reading is text (:func:`agentos.outcomes.prose_text`: the
output, file or body, or the value at ``pointer``; redacted; the end of a command's output, the start of the rest).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol
from urllib.parse import urlsplit

import httpx

from agentos import logging as alog
from agentos.config import RepoConfig, SandboxConfig
from agentos.context import OBJECTIVES_FILE, Metric, Objectives, ObjectivesInvalid, git_reader, parse_objectives
from agentos.errors import AgentosError
from agentos.jobs._loops import LoopSettings
from agentos.outcomes import parse_number, prose_text
from agentos.ports import Workspaces
from agentos.proc import run_shell, scrubbed_env
from agentos.runners.policy import command_spec

__all__ = ["MetricReader", "Reading", "RepoMetrics", "objectives_path"]

log = alog.get_logger("agentos.outcomes")

_URL_TIMEOUT_S = 30.0
_MAX_FILE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Reading:
    """One metric read once: its number (a prose metric: its ``text``), or None and why there is none."""

    value: float | None
    detail: str = ""
    text: str | None = None


class MetricReader(Protocol):
    """What the job needs to read a repo's objectives and metrics (a fake in the unit tests)."""

    async def objectives(self, repo: RepoConfig, ref: str, s: LoopSettings) -> tuple[Objectives | None, str]:
        """The objectives committed at ``ref`` (None when there is no file), and a one-line problem ("" if none)."""
        ...

    async def read(self, repo: RepoConfig, metrics: Sequence[Metric], ref: str, s: LoopSettings) -> dict[str, Reading]:
        """Each metric's reading by name: ``command`` and ``file`` at ``ref``, ``url`` now."""
        ...


def objectives_path(s: LoopSettings) -> str:
    """Where ``objectives.yaml`` is: the first of ``loops.context_files`` named so, else the top level."""
    return next((f for f in s.context_files if PurePosixPath(f).name == OBJECTIVES_FILE), OBJECTIVES_FILE)


class RepoMetrics:
    """The real reader, over the daemon's clones (see the module docstring)."""

    def __init__(self, *, workspaces: Workspaces, http: Callable[[], httpx.AsyncClient] | None = None) -> None:
        self.workspaces = workspaces
        self.http = http or (lambda: httpx.AsyncClient(timeout=_URL_TIMEOUT_S, follow_redirects=False))

    def __repr__(self) -> str:
        return "<RepoMetrics>"

    async def objectives(self, repo: RepoConfig, ref: str, s: LoopSettings) -> tuple[Objectives | None, str]:
        ws = self.workspaces.workspace(repo)
        await ws.fetch()
        name = objectives_path(s)
        text = await git_reader(ws, ref)(name)
        if text is None or not text.strip():
            return None, ""
        try:
            return parse_objectives(text, name=name, url_hosts=s.objective_url_hosts), ""
        except ObjectivesInvalid as exc:
            return None, str(exc)

    async def read(self, repo: RepoConfig, metrics: Sequence[Metric], ref: str, s: LoopSettings) -> dict[str, Reading]:
        out = {m.name: await self._url(m, s) for m in metrics if m.url is not None}
        local = [m for m in metrics if m.url is None]
        if not local:
            return out
        ws = self.workspaces.workspace(repo)
        try:
            await ws.fetch()
            async with ws.scratch(ref) as tree:
                for metric in local:
                    out[metric.name] = await self._local(metric, tree, ws.sandbox, ws.root, repo, s)
        except AgentosError as exc:  # the ref is not there (a first commit has no parent), or git failed
            for metric in local:
                out.setdefault(metric.name, Reading(None, f"cannot check out {ref[:40]}: {str(exc)[:200]}"))
        return out

    async def _local(
        self, metric: Metric, tree: Path, sandbox: SandboxConfig | None, root: Path, repo: RepoConfig, s: LoopSettings
    ) -> Reading:
        if metric.file is not None:
            path = (tree / metric.file).resolve()
            if not path.is_relative_to(tree.resolve()) or not path.is_file():
                return Reading(None, f"{metric.file} does not exist")
            if path.stat().st_size > _MAX_FILE_BYTES:
                return Reading(None, f"{metric.file} is over 1 MiB")
            return _reading(metric, path.read_text(encoding="utf-8", errors="replace"), metric.file)
        assert metric.command is not None
        res = await run_shell(
            metric.command,
            cwd=tree,
            env=scrubbed_env(repo.pass_env),
            timeout=s.outcome_timeout_s,
            sandbox=command_spec(sandbox, tree, root),
        )
        if not res.ok:
            how = "timed out" if res.timed_out else f"exit code {res.code}"
            return Reading(None, f"the command failed ({how}): {res.output_tail[-200:].strip()}")
        return _reading(metric, res.output_tail, "its output", keep_end=True)

    async def _url(self, metric: Metric, s: LoopSettings) -> Reading:
        assert metric.url is not None
        host = (urlsplit(metric.url).hostname or "").lower()
        if host not in {h.lower() for h in s.objective_url_hosts}:
            return Reading(None, f"the host {host} is not in loops.objective_url_hosts")
        try:
            async with self.http() as client:
                response = await client.get(metric.url)
        except httpx.HTTPError as exc:
            return Reading(None, f"the request failed: {type(exc).__name__}: {exc}"[:300])
        if response.status_code != 200:
            return Reading(None, f"HTTP {response.status_code}")
        return _reading(metric, response.text, metric.url)


def _reading(metric: Metric, text: str, what: str, *, keep_end: bool = False) -> Reading:
    if metric.kind == "number":
        return _number(text, metric.pointer, what)
    prose = prose_text(text, metric.pointer, keep_end=keep_end)
    at = f" at {metric.pointer}" if metric.pointer else ""
    return Reading(None, text=prose) if prose else Reading(None, f"no text{at} in {what}")


def _number(text: str, pointer: str | None, what: str) -> Reading:
    value = parse_number(text, pointer)
    if value is not None:
        return Reading(value)
    at = f" at {pointer}" if pointer else ""
    return Reading(None, f"no number{at} in {what}: {text.strip()[-80:]!r}")
