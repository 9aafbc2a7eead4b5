"""The node's side of a Ray attempt: one detached actor per attempt, named after it (``ray_runner`` starts it).

:meth:`AttemptActor.have` says which commits the node's cache of the repo holds (so the daemon ships only what
is past them); :meth:`AttemptActor.start` (idempotent) fetches the shipped bundle into that cache, clones it into
a private folder on the node and runs the agent there with :func:`~agentos.agents.runner.run_process`: the same
limits, the node's own bubblewrap sandbox and egress proxy (``sandbox.mode: bubblewrap``), an environment filtered
from the node's own (the daemon's, with the forge token, never leaves the daemon). :meth:`read_log` hands out the
log in chunks while it runs;
:meth:`result` waits for the end (again after a daemon restart) and returns what the agent did as bundles, with
the repo's ``test_command`` run there when the agent's result says ``complete``;
:meth:`stop` kills the agent's process group; :meth:`close` removes the folder before the daemon kills the actor.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

import ray

import agentos
from agentos.agents.adapters import build_invocation
from agentos.agents.contract import RESULT_FILE, ContractError, read_contract, read_result_bytes
from agentos.agents.runner import RunOutcome, RunSpec, run_process
from agentos.config import RepoConfig
from agentos.proc import CommandResult, run_shell, scrubbed_env
from agentos.runners.attempt_egress import agent_allow, egress_proxy, egress_session, session_id
from agentos.runners.bundle import cached_tips, clone_cached, pack_work
from agentos.runners.policy import agent_spec, command_spec
from agentos.runners.port import AttemptSpec

__all__ = ["AttemptActor", "NodeInfo", "RemoteResult"]

_LOG_CHUNK = 256 * 1024


@dataclass(frozen=True)
class NodeInfo:
    """Where the actor runs and with which versions (the daemon refuses a node whose versions differ)."""

    node: str
    host: str
    agentos: str
    ray: str


@dataclass
class RemoteResult:
    """What came back: how the run ended, the agent's commits and uncommitted changes, its result file."""

    outcome: RunOutcome
    commits: bytes | None
    patch: bytes
    result: bytes | None
    denied: list[str]
    egress: str
    tests: CommandResult | None = None
    tests_egress: str = ""


class AttemptActor:
    """One attempt on one node (see the module doc)."""

    def __init__(self, spec: AttemptSpec) -> None:
        self.spec = spec
        self.root = Path(tempfile.mkdtemp(prefix="agentos-attempt-"))
        self.run_dir = self.root / "run"
        self.run_dir.mkdir(mode=0o700)
        self.repo = self.root / "repo"
        self._task: asyncio.Task[RemoteResult] | None = None
        self._start: str | None = None

    @property
    def cache(self) -> Path:
        """The node's cache of the attempt's repo: one per daemon (state directory) and repo, in the node's temp
        folder, shared by the attempts placed there (removing it only makes the next bundle a full one)."""
        repo = self.spec.task_id.rpartition("#")[0] or self.spec.task_id
        key = hashlib.sha256(f"{self.spec.marker.split('/')[0]}/{repo}".encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / "agentos-cache" / f"{key}.git"

    def info(self) -> NodeInfo:
        node = ray.get_runtime_context().get_node_id()
        return NodeInfo(node=node, host=socket.gethostname(), agentos=agentos.__version__, ray=ray.__version__)

    def have(self) -> list[str]:
        """The newest commits the node's cache of the repo holds (none: the daemon ships the whole branch)."""
        return cached_tips(self.cache)

    async def start(self, bundle: bytes) -> bool:
        """Clone ``bundle`` through the node's cache and begin the run (once: a second call, from a restarted
        daemon, changes nothing); whether it began now. A thin bundle the cache cannot take raises
        :class:`~agentos.runners.bundle.BundleError` (the daemon then sends the whole branch)."""
        if self._task is not None:
            return False
        if self._start is None:
            spec = self.spec
            self._start = await asyncio.to_thread(
                clone_cached, self.cache, bundle, spec.branch, spec.start_sha, self.repo
            )
        self._task = asyncio.get_running_loop().create_task(self._run(self._start))
        return True

    async def result(self) -> RemoteResult | None:
        """What the agent did, once it is done (None: never started, the daemon died before it asked)."""
        return None if self._task is None else await asyncio.shield(self._task)

    def read_log(self, offset: int) -> bytes:
        """The log from ``offset`` on (at most 256 KiB; ``b""``: nothing new)."""
        try:
            with open(self.run_dir / "agent.log", "rb") as file:
                file.seek(offset)
                return file.read(_LOG_CHUNK)
        except OSError:
            return b""

    async def stop(self) -> None:
        """Cancel the run: :func:`run_process` kills the agent's process group (and its marked escapees)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def close(self) -> None:
        await self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    async def _run(self, start: str) -> RemoteResult:
        spec = self.spec
        prompt_file = self.run_dir / "prompt.md"
        prompt_file.write_text(spec.prompt, encoding="utf-8")
        inv = build_invocation(
            spec.agent,
            spec.agent_cfg,
            prompt=spec.prompt,
            prompt_file=prompt_file,
            worktree=self.repo,
            task_id=spec.task_id,
            base_env=os.environ,
        )
        denied: list[str] = []
        sandboxed = spec.sandbox.mode == "bubblewrap"
        proxy = egress_proxy() if sandboxed else None
        try:
            async with egress_session(
                proxy,
                session_id(spec.task_id, spec.attempt),
                agent_allow(spec.sandbox, spec.agent_cfg, inv.env),
                on_denied=lambda _session, host: denied.append(host),
            ) as door:
                outcome = await run_process(
                    RunSpec(
                        argv=inv.argv,
                        cwd=self.repo,
                        env=inv.env,
                        stdin=inv.stdin,
                        log_path=self.run_dir / "agent.log",
                        idle_timeout_s=spec.idle_timeout_s,
                        max_runtime_s=spec.max_runtime_s,
                        kill_grace_s=spec.kill_grace_s,
                        max_log_bytes=spec.max_log_bytes,
                        marker=f"ray/{spec.marker}",  # not the daemon's prefix: its restart sweep must spare it
                        sandbox=agent_spec(
                            spec.sandbox,
                            spec.agent_cfg,
                            argv=inv.argv,
                            worktree=self.repo,
                            run_dir=self.run_dir,
                            prompt_file=prompt_file,
                            state_dir=self.root / "state",
                            proxy_socket=door.socket_path if door is not None else None,
                        ),
                    )
                )
                egress = door.summary() if door is not None else ""
        finally:
            if proxy is not None:
                await proxy.aclose()
        result = None
        with contextlib.suppress(ContractError, OSError):
            result = await asyncio.to_thread(read_result_bytes, self.repo / RESULT_FILE, 256 * 1024, truncate=True)
        commits, patch = await asyncio.to_thread(pack_work, self.repo, start)
        done = RemoteResult(outcome, commits, patch, result, denied, egress)
        if spec.repo is not None and _complete(self.repo / RESULT_FILE):
            done.tests, done.tests_egress = await self._tests(spec.repo, proxy_needed=sandboxed)
        return done

    async def _tests(self, repo: RepoConfig, *, proxy_needed: bool) -> tuple[CommandResult, str]:
        """The repo's ``test_command`` in the agent's clone, as the hand-off would run it on the daemon's machine:
        its sandbox, its time limit, ``pass_env`` from the node's environment, only ``test_allow_hosts`` reachable
        (none listed: no network). Also what the node's proxy refused them (``"tests blocked: …"``, or ``""``)."""
        (self.repo / RESULT_FILE).unlink(missing_ok=True)  # the hand-off's tests run on the committed work
        proxy = egress_proxy() if proxy_needed and repo.test_allow_hosts else None
        session = session_id(self.spec.task_id, self.spec.attempt, tests=True)
        try:
            async with egress_session(proxy, session, repo.test_allow_hosts, always=False) as door:
                tests = await run_shell(
                    repo.test_command,
                    cwd=self.repo,
                    env=scrubbed_env(repo.pass_env),
                    timeout=repo.test_timeout_s,
                    sandbox=command_spec(
                        self.spec.sandbox,
                        self.repo,
                        self.root / "state",
                        proxy_socket=door.socket_path if door is not None else None,
                    ),
                )
                refused = f"tests {door.summary()}" if door is not None and door.denied else ""
        finally:
            if proxy is not None:
                await proxy.aclose()
        return tests, refused


def _complete(result: Path) -> bool:
    """The agent's result file says ``complete`` (the tests are worth running here)."""
    try:
        return read_contract(result).status == "complete"
    except ContractError:
        return False
