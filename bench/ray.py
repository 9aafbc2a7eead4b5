"""``python -m bench --only ray``: what running an attempt on a Ray cluster costs, against running it here.

A real cluster on this machine (``tests/ray_cluster.py``: a head and worker nodes, each its own raylet). The same
attempt (the fake command agent: it edits a file, commits, writes its result file) goes through both runners
of the seam, alternating: :class:`~agentos.runners.local.LocalRunner` and
:class:`~agentos.runners.ray_runner.RayRunner` (bundle out, detached actor, clone, run, bundle back, fetch into
the worktree). The figure is the wall time of ``Runner.run``; the baseline is the local run.

The repo has a few hundred commits (``HISTORY``). A node keeps a cache of the repo, so after its first attempt
only what it lacks is shipped: the same attempt with the node's cache removed first (the whole branch shipped,
as before the cache) and right after, main one commit further (a thin bundle: that commit and the branch), alternating;
the bytes shipped and the wall time.

Then 20 attempts queued at once (each agent sleeps 1 s first) on 1, 2 and 3 worker nodes of ``{"agentos": 2}``:
the time until all 20 came back, and per attempt.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from agentos.config import AgentConfig, RunnerConfig, SandboxConfig
from agentos.runners.local import LocalRunner
from agentos.runners.port import AttemptSpec, Runner
from agentos.testing import RecordingNotifier
from bench._common import BenchResult, Context, Figure, Target

NAME = "ray"
TITLE = "ray: one attempt through the Ray runner vs the local runner; 20 queued attempts on 1-3 nodes"
ROOT = Path(__file__).resolve().parents[1]
AGENT = ROOT / "tests" / "fakes" / "agents" / "command_agent.py"
QUEUED = 20
HISTORY = 300


def run(ctx: Context) -> BenchResult:
    res = BenchResult(NAME, TITLE)
    try:
        import ray  # noqa: F401
    except ImportError:
        res.notes.append("not measured: ray is not installed (pip install 'agentos[ray]')")
        return res
    from tests.ray_cluster import RayCluster

    n = 6 if ctx.quick else 15
    res.params = {"attempts": n, "queued": QUEUED, "nodes": [1, 2, 3], "history_commits": HISTORY}
    root = ctx.scratch("ray")
    cluster = RayCluster(root / "cluster")
    (root / "cluster").mkdir(exist_ok=True)
    try:
        cluster.start({"w1": {"agentos": 2}})
        asyncio.run(_measure(res, cluster, root, n))
    finally:
        cluster.stop()
    res.notes.append(
        "The Ray figure includes the actor's own worker process start (Ray starts one per actor), the bundle "
        "both ways and the fetch into the worktree; on this machine the nodes share its cores with the daemon."
    )
    return res


async def _measure(res: BenchResult, cluster: object, root: Path, n: int) -> None:
    from agentos.runners.ray_runner import RayRunner
    from tests.ray_cluster import RayCluster

    assert isinstance(cluster, RayCluster)
    repo = _repo(root / "repo")
    local = LocalRunner(journal=None, egress=None)  # type: ignore[arg-type]  # no sandbox: no egress session
    remote = RayRunner(
        RunnerConfig(kind="ray", address=cluster.address, namespace="bench"),
        notify=RecordingNotifier(),
        fallback=None,
    )
    remote.ready()
    while not remote.connected:
        if remote.problem:
            raise RuntimeError(remote.problem)
        await asyncio.sleep(0.05)
    await _one(remote, repo, root, "warm", _agent())  # the first actor also loads agentos into the node
    local_s: list[float] = []
    ray_s: list[float] = []
    for i in range(n):
        local_s.append(await _one(local, repo, root, f"l{i}", _agent()))
        ray_s.append(await _one(remote, repo, root, f"r{i}", _agent()))
    res.add(
        Figure(
            "one attempt, Ray runner",
            "ms",
            [t * 1000 for t in ray_s],
            [t * 1000 for t in local_s],
            "the same attempt, local runner",
            targets=[Target("<=", 1500, label="median added ≤ 1.5 s")],
        )
    )
    added = [(r - lo) * 1000 for r, lo in zip(ray_s, local_s, strict=True)]
    res.add(Figure("added by Ray per attempt", "ms", added, targets=[Target("<=", 1500)]))
    await _thin(res, remote, cluster, repo, root, n)
    slow = _agent(sleep_s=1.0)
    for nodes in (1, 2, 3):
        while len([x for x in cluster.nodes.values() if x.resources]) < nodes:
            cluster.add_worker(f"w{nodes}", {"agentos": 2})
        trees = [_worktree(repo, root, f"q{nodes}-{i}") for i in range(QUEUED)]
        started = time.perf_counter()
        times = await asyncio.gather(*(_one(remote, repo, root, t, slow, fresh=False) for t in trees))
        total = time.perf_counter() - started
        res.add(Figure(f"{QUEUED} queued, {nodes} node(s): all done", "s", [total], group="scale", single=True))
        res.add(Figure(f"{QUEUED} queued, {nodes} node(s): per attempt", "s", list(times), group="scale"))
    await remote.close()


async def _thin(res: BenchResult, remote: Any, cluster: Any, repo: Path, root: Path, n: int) -> None:
    """The same attempt with the node's cache of the repo removed first (the whole branch shipped) and with it
    warm (only what the node lacks); ``RayRunner._ship`` reports the bytes it sent."""
    shipped: list[int] = []
    ship = remote._ship

    async def recorded(actor: Any, spec: AttemptSpec) -> int:
        size: int = await ship(actor, spec)
        shipped.append(size)
        return size

    remote._ship = recorded
    cold_s: list[float] = []
    warm_s: list[float] = []
    cold_b: list[float] = []
    warm_b: list[float] = []
    for i in range(n):
        shutil.rmtree(cluster.temp / "tmp" / "agentos-cache", ignore_errors=True)
        cold_s.append(await _one(remote, repo, root, f"c{i}", _agent()))
        cold_b.append(shipped[-1] / 1024)
        (repo / "module0.py").write_text(f"merged_meanwhile = {i}\n")  # main moved on by one commit since
        _git(repo, "commit", "-qam", f"merged meanwhile {i}")
        warm_s.append(await _one(remote, repo, root, f"w{i}", _agent()))
        warm_b.append(shipped[-1] / 1024)
    remote._ship = ship
    cold, warm = "node cache cold: whole branch", "node cache warm: thin bundle"
    res.add(Figure(f"bundle shipped, {warm}", "KiB", warm_b, cold_b, cold, group="thin bundles"))
    res.add(
        Figure(
            f"one attempt, {warm}",
            "ms",
            [t * 1000 for t in warm_s],
            [t * 1000 for t in cold_s],
            cold,
            group="thin bundles",
        )
    )


def _agent(sleep_s: float = 0.0) -> AgentConfig:
    argv = [str(AGENT), "{prompt_file}"]
    if sleep_s:
        argv = ["/bin/sh", "-c", f"sleep {sleep_s} && exec {AGENT} {{prompt_file}}"]
    return AgentConfig(kind="command", argv=argv, env={"FAKE_AGENT_MODE": "complete"})


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def _repo(path: Path) -> Path:
    path.mkdir(parents=True)
    _git(path, "init", "-q", "-b", "main")
    _git(path, "config", "user.name", "bench")
    _git(path, "config", "user.email", "bench@agentos.invalid")
    (path / "README.md").write_text("# bench\n" + "line\n" * 2000)
    _git(path, "add", "-A")
    _git(path, "commit", "-qm", "initial")
    for i in range(HISTORY):  # a history worth shipping: each commit rewrites one of 20 files
        (path / f"module{i % 20}.py").write_text("".join(f"value_{i}_{j} = {i * j}\n" for j in range(100)))
        _git(path, "add", "-A")
        _git(path, "commit", "-qm", f"change {i}")
    return path


def _worktree(repo: Path, root: Path, name: str) -> str:
    _git(repo, "worktree", "add", "-q", "-b", f"agentos/{name}", str(root / "trees" / name), "main")
    return name


async def _one(runner: Runner, repo: Path, root: Path, name: str, agent: AgentConfig, *, fresh: bool = True) -> float:
    """One attempt of ``agent`` on a worktree of its own; the wall time of ``runner.run``."""
    if fresh:
        await asyncio.to_thread(_worktree, repo, root, name)
    tree = root / "trees" / name
    run_dir = root / "runs" / name
    run_dir.mkdir(parents=True)
    (run_dir / "prompt.md").write_text("bench")
    spec = AttemptSpec(
        task_id=f"bench#{name}",
        attempt=1,
        agent="bench",
        agent_cfg=agent,
        prompt="bench",
        prompt_file=run_dir / "prompt.md",
        worktree=tree,
        branch=f"agentos/{name}",
        start_sha=_git(tree, "rev-parse", "HEAD"),
        run_dir=run_dir,
        idle_timeout_s=60,
        max_runtime_s=120,
        kill_grace_s=1,
        max_log_bytes=1 << 20,
        sandbox=SandboxConfig(mode="off"),
        state_dir=root / "state",
        marker=f"bench/{name}",
        env={"PATH": "/usr/bin:/bin", "HOME": str(root)},
    )
    started = time.perf_counter()
    done = await runner.run(spec, lambda _placed: None)
    took = time.perf_counter() - started
    assert done.outcome.exit_code == 0, done.outcome.log_tail
    assert _git(tree, "rev-parse", "HEAD") != spec.start_sha, f"{name}: the agent's commit did not come back"
    return took
