"""The Ray runner: each attempt a detached actor on a node of a Ray cluster; the daemon stays the coordinator.

::

    daemon                                          node (placed by {"agentos": 1} + agents.<name>.ray_resources)
    pack_thin(worktree, have()) ─ object store ─► AttemptActor "<marker>" start(bundle): via the node's cache
                                                       of the repo (only what it lacks is shipped), clone, run
    agent.log  ◄──────────── read_log(offset) every 0.25 s (``agentos logs -f``; the idle limit runs on the node)
    unpack_work(worktree) ◄─ result(): commits bundle + patch + result file ─┘   close(), ray.kill
    … then the same verdict and hand-off as a local run: the daemon pushes, the node never sees the forge token.

Faults: a restarted daemon finds the actor by its name (:meth:`RayRunner.reattach`) and keeps waiting; an actor
whose node died raises :class:`RunnerLost` (the attempt is re-queued, not counted); while the head cannot be
reached no attempt starts (connection retried with backoff, one notice), or the local runner takes them with
``runner.fallback_local``; a node whose agentos or Ray version differs from the daemon's is refused; an agent
whose resources no live node offers is :class:`NoNodeFits` before any actor is made (checked again while its
actor waits for a busy node), which the executor retries a few times and then escalates.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import socket
import time
from collections.abc import Callable
from typing import Any

import ray
import structlog
from ray.exceptions import GetTimeoutError, RayActorError, RaySystemError, RayTaskError

import agentos
from agentos.agents.contract import RESULT_FILE
from agentos.config import RunnerConfig
from agentos.fsutil import atomic_write_bytes
from agentos.ports import Notify
from agentos.runners.bundle import pack_branch, pack_thin, unpack_work
from agentos.runners.port import (
    AttemptRun,
    AttemptSpec,
    NoNodeFits,
    Placement,
    Runner,
    RunnerKind,
    RunnerLost,
    RunnerUnavailable,
)
from agentos.runners.ray_actor import AttemptActor, NodeInfo, RemoteResult

__all__ = ["RayRunner", "actor_name", "connect", "unplaceable"]

log = structlog.get_logger(__name__)

_LOG_POLL_S = 0.25
_BACKOFF_S = (1.0, 2.0, 5.0, 15.0, 30.0, 60.0)
_CONNECT_TIMEOUT_S = 20.0
_STOP_S = 10.0
_PLACE_CHECK_S = 15.0
_ACTOR: Any = ray.remote(AttemptActor)


def actor_name(spec: AttemptSpec) -> str:
    """The attempt's actor: its marker (state directory, task, attempt), unique across daemons sharing a cluster."""
    return f"agentos-attempt/{spec.marker}"


def probe(address: str, timeout: float = 3.0) -> str | None:
    """Why the head at ``address`` (``host:port``, ``ray://host:port``) takes no TCP connection, or None. Ray's own
    connect waits minutes for a head that is down; this answers in seconds (``auto`` is left to Ray)."""
    if address == "auto":
        return None
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            return None
    except (OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"


def connect(config: RunnerConfig) -> None:
    """Join the cluster as a driver (blocking); raises :class:`RunnerUnavailable` with one line when it cannot."""
    if ray.is_initialized():
        return
    if problem := probe(config.address):
        raise RunnerUnavailable(f"the Ray cluster at {config.address} cannot be reached: {problem}")
    try:
        ray.init(
            address=config.address,
            namespace=config.namespace,
            log_to_driver=False,
            logging_level=logging.ERROR,
            configure_logging=False,
        )
    except Exception as exc:  # ray raises ConnectionError, RuntimeError (a version mismatch), ValueError…
        line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "version" in str(exc).lower():
            line = f"Ray version skew: the daemon has ray {ray.__version__}; {line}"
        raise RunnerUnavailable(f"the Ray cluster at {config.address} cannot be reached: {line}") from exc


def unplaceable(need: dict[str, float], nodes: list[dict[str, Any]]) -> str | None:
    """Why no live node of ``nodes`` (``ray.nodes()``) can take an actor needing ``need``: one line naming what
    is missing and how to offer it; None when one can (it may be busy now)."""
    alive = [n for n in nodes if n.get("Alive")]
    if any(all(n["Resources"].get(k, 0) >= v for k, v in need.items()) for n in alive):
        return None
    missing = {k: v for k, v in need.items() if not any(n["Resources"].get(k, 0) >= v for n in alive)}

    def shown(resources: dict[str, float]) -> str:
        return json.dumps({k: int(v) if float(v).is_integer() else v for k, v in resources.items()})

    what = shown(missing) if missing else f"{shown(need)} together"
    return f"no Ray node offers {what}: start a worker with --resources '{shown(need)}'"


class RayRunner:
    """Attempts on a Ray cluster (see the module doc)."""

    kind: RunnerKind = "ray"

    def __init__(self, config: RunnerConfig, *, notify: Notify, fallback: Runner | None) -> None:
        self.config = config
        self.notify = notify
        self.fallback = fallback
        self.problem: str | None = None
        """Why attempts cannot go to the cluster now (None: connected, or not tried yet)."""
        self._failures = 0
        self._next_try = 0.0
        self._connecting: asyncio.Task[None] | None = None
        self._detached = False

    def __repr__(self) -> str:
        return f"<RayRunner {self.config.address} {'connected' if self.connected else self.problem or 'idle'}>"

    @property
    def connected(self) -> bool:
        return ray.is_initialized() and self.problem is None and self._connecting is None

    # ------------------------------------------------------------ the connection

    def ready(self) -> bool:
        if self.connected:
            return True
        if self._connecting is None and time.monotonic() >= self._next_try:
            self._connecting = asyncio.get_running_loop().create_task(self._connect())
        return self.fallback is not None

    async def _connect(self) -> None:
        if self.problem is not None and ray.is_initialized():
            await asyncio.to_thread(ray.shutdown)
        try:
            await asyncio.wait_for(asyncio.to_thread(connect, self.config), _CONNECT_TIMEOUT_S)
        except (RunnerUnavailable, TimeoutError) as exc:
            text = str(exc) or f"the Ray cluster at {self.config.address} did not answer in {_CONNECT_TIMEOUT_S:g}s"
            self._unreachable(text)
        else:
            if self.problem is not None:
                log.info("ray_cluster_reachable_again", address=self.config.address)
            self.problem = None  # the failure count goes back to 0 once an attempt starts on a node
            log.info("ray_connected", address=self.config.address, namespace=self.config.namespace)
        finally:
            self._connecting = None

    def _unreachable(self, text: str) -> None:
        """Wait before the next try (backoff); the operator is told once per outage. The driver is dropped, so
        the next try connects afresh."""
        first = self._failures == 0
        self.problem = text
        self._next_try = time.monotonic() + _BACKOFF_S[min(self._failures, len(_BACKOFF_S) - 1)]
        self._failures += 1
        log.warning("ray_unreachable", error=text, retry_in_s=self._next_try - time.monotonic())
        if first:
            then = "attempts run here meanwhile" if self.fallback else "attempts wait for it"
            self.notify.notify(2, "ray_unreachable", f"{text}; {then} (runner.fallback_local)")

    # ------------------------------------------------------------ one attempt

    async def run(self, spec: AttemptSpec, on_start: Callable[[Placement], None]) -> AttemptRun:
        if not self.connected:
            if self.fallback is None:
                raise RunnerUnavailable(self.problem or "the Ray cluster is not connected yet")
            return await self.fallback.run(spec, on_start)
        resources = {"agentos": 1.0, **spec.agent_cfg.ray_resources}
        if line := unplaceable(resources, await asyncio.to_thread(ray.nodes)):
            log.warning("ray_no_node_fits", agent=spec.agent, detail=line)
            raise NoNodeFits(line)
        shipped = dataclasses.replace(spec, env={})  # the daemon's environment (the forge token) stays here
        actor = _ACTOR.options(
            name=actor_name(spec),
            namespace=self.config.namespace,
            lifetime="detached",
            resources=resources,
            num_cpus=0,
            max_restarts=0,
            get_if_exists=True,
        ).remote(shipped)
        placed = False
        try:
            try:
                info = await self._placement(actor, resources)
            except RunnerLost as exc:  # its node could not make it (no agentos importable there?)
                line = f"the Ray cluster could not start an attempt needing {resources} ({exc}); see `agentos doctor`"
                self._unreachable(line)
                raise RunnerUnavailable(line) from exc
            self._check_versions(info)
            self._failures = 0
            shipped_bytes = await self._ship(actor, spec)
            on_start(Placement("ray", node=info.node))
            placed = True
            log.info("ray_attempt_placed", actor=actor_name(spec), node=info.node, host=info.host, bundle=shipped_bytes)
            run = await self._follow(actor, spec)
            assert run is not None, "a started actor has a result"
            return run
        except asyncio.CancelledError:
            if not (self._detached and placed):  # a daemon stopping leaves a started agent to its next start
                await self._end(actor)
            raise
        except BaseException:
            await self._end(actor)
            raise

    async def _ship(self, actor: Any, spec: AttemptSpec) -> int:
        """Send the node what its cache of the repo lacks (the whole branch when it has nothing, or when the thin
        bundle is refused: the cache changed since it was asked); the bytes shipped."""
        have: list[str] = await self._call(actor.have.remote())
        bundle = await asyncio.to_thread(pack_thin, spec.worktree, spec.branch, have)
        try:
            await self._call(actor.start.remote(ray.put(bundle)))
        except RayTaskError as exc:
            if not have:
                raise
            log.warning("ray_thin_bundle_refused", error=str(exc).strip().splitlines()[-1][:300])
            bundle = await asyncio.to_thread(pack_branch, spec.worktree, spec.branch)
            await self._call(actor.start.remote(ray.put(bundle)))
        return len(bundle)

    async def _placement(self, actor: Any, need: dict[str, float]) -> NodeInfo:
        """The node Ray placed the actor on. It waits as long as a live node offers ``need`` (busy with other
        attempts); :class:`NoNodeFits` once none does (the node that did left the cluster)."""
        placed = asyncio.wrap_future(actor.info.remote().future())
        try:
            while not (await asyncio.wait({placed}, timeout=_PLACE_CHECK_S))[0]:
                if line := unplaceable(need, await asyncio.to_thread(ray.nodes)):
                    raise NoNodeFits(line)
            info: NodeInfo = placed.result()
            return info
        except (RayActorError, RaySystemError) as exc:
            raise RunnerLost(f"the attempt's Ray actor did not start: {str(exc).strip().splitlines()[0]}") from exc
        finally:
            if not placed.done():
                placed.cancel()

    async def reattach(self, spec: AttemptSpec) -> AttemptRun | None:
        """Find the attempt's actor by name and follow it again (None: it is gone)."""
        for _ in range(3):
            if self.connected:
                break
            await (self._connecting or self._connect())
        if not self.connected:
            raise RunnerLost(f"cannot reach the Ray cluster to find the attempt again: {self.problem}")
        try:
            actor = await asyncio.to_thread(ray.get_actor, actor_name(spec), self.config.namespace)
        except ValueError:
            return None
        try:
            return await self._follow(actor, spec)
        except asyncio.CancelledError:
            if not self._detached:
                await self._end(actor)
            raise
        except BaseException:
            await self._end(actor)
            raise

    async def _follow(self, actor: Any, spec: AttemptSpec) -> AttemptRun | None:
        """Copy the actor's log into ``spec.log_path`` while it runs; then bring its work into the worktree
        (None: the actor never started the agent)."""
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        offset = spec.log_path.stat().st_size if spec.log_path.exists() else 0
        done = asyncio.ensure_future(self._call(actor.result.remote(), timeout=None))
        try:
            with open(spec.log_path, "ab", buffering=0) as sink:
                while True:
                    chunk: bytes = await self._call(actor.read_log.remote(offset))
                    sink.write(chunk)
                    offset += len(chunk)
                    if chunk:
                        continue
                    if done.done():
                        break
                    await asyncio.wait({done}, timeout=_LOG_POLL_S)
            result: RemoteResult | None = done.result()
        finally:
            if not done.done():
                done.cancel()
        if result is None:
            await self._end(actor)
            return None
        await asyncio.to_thread(self._unpack, spec, result)
        await self._end(actor)
        return AttemptRun(
            result.outcome, result.egress, result.denied, tests=result.tests, tests_egress=result.tests_egress
        )

    def _unpack(self, spec: AttemptSpec, result: RemoteResult) -> None:
        unpack_work(spec.worktree, spec.start_sha, result.commits, result.patch)
        if result.result is not None:
            atomic_write_bytes(spec.worktree / RESULT_FILE, result.result)

    def _check_versions(self, info: NodeInfo) -> None:
        if (info.agentos, info.ray) != (agentos.__version__, ray.__version__):
            line = (
                f"version skew: node {info.host} ({info.node[:12]}) runs agentos {info.agentos} with ray {info.ray}, "
                f"the daemon agentos {agentos.__version__} with ray {ray.__version__}; install the same on both"
            )
            log.error("ray_version_skew", node=info.node, host=info.host, detail=line)
            self._unreachable(line)
            raise RunnerUnavailable(line)

    async def _call(self, ref: Any, timeout: float | None = 60.0) -> Any:
        """Await one remote call; an actor that died with its node is :class:`RunnerLost`."""
        try:
            return await asyncio.wait_for(asyncio.wrap_future(ref.future()), timeout)
        except (RayActorError, RaySystemError) as exc:
            raise RunnerLost(f"the attempt's Ray node went away: {str(exc).strip().splitlines()[0]}") from exc
        except (TimeoutError, GetTimeoutError) as exc:
            raise RunnerLost("the attempt's Ray actor stopped answering") from exc

    async def _end(self, actor: Any) -> None:
        """Stop the agent's process group (on a cancel or a limit), remove the node's folder, kill the actor."""
        with contextlib.suppress(Exception):
            await asyncio.shield(asyncio.wait_for(asyncio.wrap_future(actor.close.remote().future()), _STOP_S))
        with contextlib.suppress(Exception):
            ray.kill(actor, no_restart=True)

    def detach(self) -> None:
        """A graceful stop: attempts stopped from now on whose agent started on a node keep running there (the
        next start finds them by name, as after a crash); the others, and the fallback's local ones, are stopped
        as always."""
        self._detached = True

    async def close(self) -> None:
        """The daemon stops: its attempts keep running on the cluster (a restart finds them); only the driver goes."""
        if ray.is_initialized():
            await asyncio.to_thread(ray.shutdown)
