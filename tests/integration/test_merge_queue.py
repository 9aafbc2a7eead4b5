"""The merge queue's cost on the real local forge: N queued PRs take about N rebases and 2N test runs.

Every PR appends to ``CODEBASE.md`` (as every task does), so each one conflicts with the base once the PR
ahead of it has merged; only the head of the queue is rebased and re-checked, the others wait untouched.
The test command appends a line to a file, so the count of test runs is read from real processes.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agentos.assembly import build_core
from agentos.config import Config, RepoConfig
from agentos.forge.local import LocalForge
from agentos.gitutil import git
from agentos.graph import Attempt, Task, TaskStatus
from agentos.jobs.pr_monitor import PRMonitor
from agentos.runtime import Runtime
from agentos.store import Store
from agentos.workspace_registry import WorkspaceRegistry

GIT_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
N = 6


async def run(*args: str, cwd: Path) -> str:
    return (await git(*args, cwd=cwd, env=GIT_ENV)).out.strip()


@dataclass
class Queue:
    rt: Runtime
    monitor: PRMonitor
    runs_log: Path
    tasks: list[Task]

    def test_command_runs(self) -> int:
        """How often the repo's test command ran (each run appends a line to ``runs_log``)."""
        return len(self.runs_log.read_text().splitlines()) if self.runs_log.exists() else 0


@pytest.fixture
async def queue(tmp_path: Path) -> AsyncIterator[Queue]:
    """N green PRs opened at once from one base, each adding its own file and a CODEBASE.md entry."""
    user = tmp_path / "calc"
    user.mkdir()
    await run("-c", "init.defaultBranch=main", "init", "-q", cwd=user)
    (user / "app.py").write_text("x = 1\n")
    (user / "CODEBASE.md").write_text("# Codebase\n")
    await run("add", "-A", cwd=user)
    await run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "initial", cwd=user)
    runs_log = tmp_path / "test-runs.log"
    repo = RepoConfig(name="calc", path=str(user), test_command=f"echo run >> {runs_log}")
    config = Config(state_dir=str(tmp_path / "state"), repos=[repo])
    store = Store(config.state_path, fsync=False)
    store.lock()
    graph, state = store.load()
    workspaces = WorkspaceRegistry(config.state_path, lambda r: (str(user), GIT_ENV))
    forge = LocalForge(config.state_path, {"calc": repo}, git_env=GIT_ENV, workspaces=workspaces)
    remote = workspaces.remote_for
    rt = Runtime(config, None, store, graph, state, forge, remote, clock=lambda: NOW, workspace_registry=workspaces)
    ws = rt.workspace(repo)  # one clone, one lock, shared with the forge, as in the daemon
    tasks = []
    for n in range(1, N + 1):
        branch = f"agentos/{n}-change-{n}"
        tree = await ws.prepare(branch)
        (tree / f"file{n}.txt").write_text(f"change {n}\n")
        with (tree / "CODEBASE.md").open("a") as memory:
            memory.write(f"\n## calc#{n}\nAdded file{n}.txt.\n")
        await ws.commit_all(tree, f"Work on #{n}")
        await ws.push(tree, branch)
        pr = await forge.open_pr("calc", head=branch, base="main", title=f"Change {n}", body=f"Closes #{n}")
        task = Task(
            id=Task.make_id("calc", n),
            repo="calc",
            issue=n,
            title=f"Change {n}",
            status=TaskStatus.PR_OPEN,
            pr=pr.number,
            branch=branch,
            attempts=[Attempt(number=1, agent="claude", started_at=NOW, outcome="complete")],
            created_at=NOW,
            updated_at=NOW,
        )
        rt.commit([rt.event("task_created", task.id, issue=n, generation=1)], [task])
        tasks.append(task)
    yield Queue(rt, build_core(rt).monitor, runs_log, tasks)
    store.close()


class TestMergeQueue:
    async def test_n_queued_prs_cost_about_n_rebases_and_2n_test_runs(self, queue: Queue) -> None:
        """All N PRs merge in order with at most N rebases and 2N test runs (not N²/2 of each)."""
        passes = 0
        while any(t.status is TaskStatus.PR_OPEN for t in queue.tasks) and passes < 4 * N:
            await queue.monitor.tick()
            passes += 1

        assert [t.status for t in queue.tasks] == [TaskStatus.MERGED] * N
        merged = [e for e in queue.rt.store.iter_events(NOW) if e.type == "merged"]
        assert [e.task for e in merged] == [t.id for t in queue.tasks], "merged oldest first"
        rebases, runs = queue.monitor.counts["rebased"], queue.test_command_runs()
        assert rebases <= N, f"{rebases} rebases for {N} PRs"
        assert runs <= 2 * N, f"{runs} test runs for {N} PRs"
        assert queue.monitor.waited > 0, "PRs behind the head waited without being checked"
        user = Path(queue.rt.config.repos[0].path or "")
        memory = (user / "CODEBASE.md").read_text()
        assert all(f"## calc#{n}\n" in memory for n in range(1, N + 1)), "every entry kept by the union"

    async def test_a_pass_over_a_waiting_queue_runs_no_checks(self, queue: Queue) -> None:
        """Once every PR has been checked, a pass re-checks only the head, never the PRs waiting behind it."""
        await queue.monitor.tick()  # checks all N once, merges the first
        after_first = queue.test_command_runs()
        assert after_first == N
        await queue.monitor.tick()  # the head conflicts on CODEBASE.md: rebased, the rest wait
        assert queue.test_command_runs() == after_first and queue.monitor.counts["rebased"] == 1
        await queue.monitor.tick()  # the rebased head is checked (one run) and merged
        assert queue.test_command_runs() == after_first + 1
        assert [t.status for t in queue.tasks[:2]] == [TaskStatus.MERGED] * 2
