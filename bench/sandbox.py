"""``python -m bench --only sandbox`` (or ``python -m bench.sandbox [N]``): what the bubblewrap sandbox adds to
one spawn.

Runs ``/bin/true`` N times (20 by default, 10 with ``--quick``) three ways in one run, through the same process
layer agents use (:func:`agentos.agents.runner.run_process`): bare, in the sandbox
(:func:`agentos.runners.sandbox.wrap`), in the sandbox with its cgroup (created, joined and removed per
spawn, as for an attempt), and in the sandbox in a task's linked worktree (its private view of a clone with 50
branches made and taken back per spawn). Prints the median and p95 of each against the bare spawn. Without a
usable bwrap the benchmark reports that and measures nothing.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from agentos.agents.runner import RunSpec, run_process
from agentos.runners import cgroups
from agentos.runners.policy import git_paths
from agentos.runners.sandbox import SandboxSpec, probe
from bench._common import BenchResult, Context, Figure

NAME = "sandbox"
TITLE = "sandbox: one spawn of /bin/true in bubblewrap (and its cgroup) vs bare"


def run(ctx: Context) -> BenchResult:
    res = BenchResult(NAME, TITLE)
    n = 10 if ctx.quick else 20
    res.params = {"spawns": n}
    if problem := probe():
        res.notes.append(f"not measured: bubblewrap cannot run here: {problem}")
        return res
    root = ctx.scratch("sandbox")
    bare = asyncio.run(spawn_times(n, root, None))
    boxed = asyncio.run(spawn_times(n, root, SandboxSpec(worktree=root, tmp_mb=64)))
    base = "bare spawn (run_process)"
    res.add(Figure("spawn in bubblewrap", "ms", [t * 1000 for t in boxed], [t * 1000 for t in bare], base))
    limits = cgroups.unavailable_reason()
    if limits is None:
        limited = SandboxSpec(worktree=root, tmp_mb=64, memory_mb=512, max_processes=64)
        full = asyncio.run(spawn_times(n, root, limited))
        res.add(Figure("spawn in bubblewrap + cgroup", "ms", [t * 1000 for t in full], [t * 1000 for t in bare], base))
    else:
        res.notes.append(f"bubblewrap + cgroup not measured: {limits}")
    worktree = linked_worktree(root / "git", branches=50)
    rw, clone = git_paths(worktree)
    in_git = asyncio.run(spawn_times(n, worktree, SandboxSpec(worktree=worktree, rw_paths=rw, inner_ro_paths=clone)))
    res.add(
        Figure("spawn in bubblewrap in a task worktree (git view)", "ms", [t * 1000 for t in in_git],
               [t * 1000 for t in bare], base)
    )  # fmt: skip
    res.notes.append("What an attempt, a hook or a test command pays once per start, through the same runner.")
    return res


async def spawn_times(n: int, root: Path, sandbox: SandboxSpec | None) -> list[float]:
    times = []
    for i in range(n):
        spec = RunSpec(
            argv=["/bin/true"],
            cwd=root,
            env={"PATH": "/usr/bin:/bin"},
            stdin=None,
            log_path=root / "logs" / f"{i}.log",
            idle_timeout_s=60,
            max_runtime_s=60,
            kill_grace_s=1,
            max_log_bytes=1 << 16,
            sandbox=sandbox,
        )
        started = time.perf_counter()
        outcome = await run_process(spec)
        times.append(time.perf_counter() - started)
        assert outcome.exit_code == 0, outcome.log_tail
    return times


def linked_worktree(root: Path, *, branches: int) -> Path:
    """A bare clone with one commit and ``branches`` branches, and a linked worktree of one of them: a sandbox
    there pays for its private view of the clone (:mod:`agentos.runners.git_view`: the refs copied, then read)."""
    env = {"PATH": "/usr/bin:/bin", "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(root)}
    ident = ["-c", "user.name=b", "-c", "user.email=b@b", "-c", "init.defaultBranch=main"]

    def git(*args: str, cwd: Path) -> None:
        subprocess.run(["git", *ident, *args], cwd=cwd, env=env, check=True, capture_output=True)

    source, clone = root / "source", root / "clone.git"
    source.mkdir(parents=True)
    git("init", "-q", cwd=source)
    git("commit", "-q", "--allow-empty", "-m", "first", cwd=source)
    git("clone", "-q", "--bare", str(source), str(clone), cwd=root)
    for i in range(branches):
        git("branch", f"task-{i}", "main", cwd=clone)
    git("worktree", "add", "-q", str(root / "worktree"), "task-0", cwd=clone)
    return root / "worktree"


def row(name: str, times: list[float]) -> str:
    p95 = sorted(times)[max(0, round(0.95 * len(times)) - 1)]
    return f"{name:<22} median {statistics.median(times) * 1000:7.1f} ms   p95 {p95 * 1000:7.1f} ms"


async def main(n: int) -> int:
    if problem := probe():
        print(f"bubblewrap cannot run here: {problem}")
        return 1
    with tempfile.TemporaryDirectory(prefix="agentos-bench-sandbox-") as tmp:
        root = Path(tmp)
        bare = await spawn_times(n, root, None)
        boxed = await spawn_times(n, root, SandboxSpec(worktree=root, tmp_mb=64))
        limits = cgroups.unavailable_reason()
        limited = SandboxSpec(worktree=root, tmp_mb=64, memory_mb=512, max_processes=64)
        full = await spawn_times(n, root, limited) if limits is None else None
    print(f"{n} spawns of /bin/true each, through run_process")
    print(row("bare", bare))
    print(row("bubblewrap", boxed))
    if full is not None:
        print(row("bubblewrap + cgroup", full))
    else:
        print(f"bubblewrap + cgroup    skipped: {limits}")
    added = statistics.median(full or boxed) - statistics.median(bare)
    print(f"added per spawn (median): {added * 1000:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)))
