"""Resource limits and the environment boundary, over real git, a real store and a real (tmpfs) full disk.

* **environment**: git, what git runs (a local remote's hooks), hooks and the repo's test command get an
  allowlist of the daemon's environment; ``GITHUB_TOKEN``, ``TELEGRAM_BOT_TOKEN`` and an agent's API key stay out
  unless a ``pass_env`` names them;
* **disk full**: a state write that hits ``ENOSPC`` leaves the last good state on disk, alerts once (sev1 and a
  log line naming the disk and its free space), holds dispatch without crashing, and resumes when space returns;
* **worktree budget**: the oldest worktrees of finished tasks go first (their unsaved work saved as a patch),
  never a live task's; when that is not enough, the repo's new tasks wait and the operator is told once.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from agentos.agents.adapters import build_invocation
from agentos.assembly import build_core
from agentos.config import AgentConfig, Config, RepoConfig
from agentos.gitutil import git, git_environ
from agentos.graph import Task, TaskStatus
from agentos.jobs.dispatch import Dispatcher
from agentos.jobs.watchdog import StallWatchdog
from agentos.ops.notify import Message, Notifier
from agentos.runtime import Runtime, StateSeenStore
from agentos.store import StateError, Store
from agentos.testing import start_attempt
from agentos.workspace import Finished, Workspace
from tests.integration.test_workspace import GIT_ENV, commit_file, origin, run  # noqa: F401

TOKENS = {
    "GITHUB_TOKEN": "ghp_" + "Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2Rr1Qq0PpOoNn",
    "TELEGRAM_BOT_TOKEN": "123456:AAH" + "tele-secret-value-xyz",
    "ANTHROPIC_API_KEY": "sk-ant-" + "api03-secret-value",
}
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def tokens(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in TOKENS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DATABASE_URL", "postgres://tests")
    return TOKENS


def dumped(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def assert_no_token(env_dump: Path) -> None:
    text = env_dump.read_text()
    for name, value in TOKENS.items():
        assert value not in text, f"{name} leaked into {env_dump.name}"
    assert "PATH" in dumped(env_dump)


# ---------------------------------------------------------------- environment


class TestEnvironment:
    def test_git_gets_an_allowlist(self, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
        """git keeps PATH, the ssh agent and the user's git config location; tokens and GIT_DIR stay out."""
        monkeypatch.setenv("SSH_AUTH_SOCK", "/run/user/1000/ssh-agent")
        monkeypatch.setenv("GIT_DIR", "/elsewhere/.git")
        env = git_environ({"AGENTOS_GIT_TOKEN": "given-by-us"})
        assert env["SSH_AUTH_SOCK"] == "/run/user/1000/ssh-agent" and env["PATH"] == os.environ["PATH"]
        assert env["AGENTOS_GIT_TOKEN"] == "given-by-us"  # what agentos itself hands to git still arrives
        assert not set(tokens) & set(env) and "GIT_DIR" not in env and "DATABASE_URL" not in env

    async def test_a_hook_of_the_remote_sees_no_token(
        self,
        tmp_path: Path,
        origin: Path,  # noqa: F811
        tokens: dict[str, str],
    ) -> None:
        """A push runs the local remote's pre-receive hook in git's environment: it finds no token there."""
        dump = tmp_path / "hook-env.txt"
        hook = origin / ".git" / "hooks" / "pre-receive"
        hook.write_text(f"#!/bin/sh\nenv > '{dump}'\n")
        hook.chmod(0o755)
        await run("config", "receive.denyCurrentBranch", "updateInstead", cwd=origin)
        repo = RepoConfig(name="calc", path=str(origin), test_command="true")
        ws = Workspace(tmp_path / "state", repo, remote_url=str(origin), git_env=GIT_ENV)
        tree = await ws.prepare("agentos/1-env")
        (tree / "new.txt").write_text("new\n")
        await ws.commit_all(tree, "a change")
        await ws.push(tree, "agentos/1-env")
        assert dump.exists(), "the remote's hook did not run"
        assert_no_token(dump)

    async def test_the_test_command_sees_no_token_unless_passed(
        self,
        tmp_path: Path,
        origin: Path,  # noqa: F811
        tokens: dict[str, str],
    ) -> None:
        """The repo's test command gets the agents' allowlist plus its pass_env, never the daemon's tokens."""
        dump = tmp_path / "test-env.txt"
        repo = RepoConfig(name="calc", path=str(origin), test_command=f"env > '{dump}'", pass_env=["DATABASE_URL"])
        ws = Workspace(tmp_path / "state", repo, remote_url=str(origin), git_env=GIT_ENV)
        tree = await ws.prepare("agentos/2-tests")
        assert (await ws.run_tests(tree)).ok
        assert_no_token(dump)
        assert dumped(dump)["DATABASE_URL"] == "postgres://tests"
        agent = build_invocation(
            "tester",
            AgentConfig(kind="command", argv=["true"]),
            prompt="p",
            prompt_file=tree / "p.md",
            worktree=tree,
            task_id="calc#2",
            base_env=os.environ,
        )
        shared = {k for k in agent.env if k not in ("AGENTOS_ATTEMPT",)}
        assert shared <= set(dumped(dump)), "the test command lacks a variable every agent gets"

    async def test_a_token_reaches_the_tests_when_configured(
        self,
        tmp_path: Path,
        origin: Path,  # noqa: F811
        tokens: dict[str, str],
    ) -> None:
        """Listing a token in the repo's pass_env is the one way to give it to the test command."""
        dump = tmp_path / "test-env.txt"
        repo = RepoConfig(name="calc", path=str(origin), test_command=f"env > '{dump}'", pass_env=["GITHUB_TOKEN"])
        ws = Workspace(tmp_path / "state", repo, remote_url=str(origin), git_env=GIT_ENV)
        assert (await ws.run_tests(await ws.prepare("agentos/3-pass"))).ok
        assert dumped(dump)["GITHUB_TOKEN"] == tokens["GITHUB_TOKEN"]
        assert tokens["TELEGRAM_BOT_TOKEN"] not in dump.read_text()


# ---------------------------------------------------------------- disk full


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs, unmounted afterwards; skipped (with the reason) where mounting is not allowed."""
    point = tmp_path / "disk"
    point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(point)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs for the disk-full test (needs root): {done.stderr.strip()}")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False)


def fill(disk: Path) -> Path:
    """Write a file that takes every free byte of ``disk``."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 16, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    return filler


def make_task(number: int, status: TaskStatus = TaskStatus.QUEUED, *, repo: str = "calc", age_min: int = 0) -> Task:
    task = Task(
        id=Task.make_id(repo, number),
        repo=repo,
        issue=number,
        title=f"task {number}",
        created_at=NOW - timedelta(minutes=age_min),
        updated_at=NOW - timedelta(minutes=age_min),
    )
    task.status = status
    return task


class RecordingExecutor:
    """Starts a task the way the executor does (RUNNING, a live slot in ``rt.running``), without an agent."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.started: list[str] = []

    def running(self) -> dict[str, Any]:
        return self.rt.running

    def start(self, task: Task) -> bool:
        start_attempt(task, "claude", self.rt.now())
        self.rt.running[task.id] = asyncio.get_running_loop().create_future()  # type: ignore[assignment]
        self.started.append(task.id)
        return True


class Outbox(list[Message]):
    """What the notifier delivered; :meth:`until` waits on deliveries instead of counting event-loop turns."""

    def __init__(self) -> None:
        super().__init__()
        self._arrived = asyncio.Event()

    async def send(self, message: Message) -> None:
        self.append(message)
        self._arrived.set()

    async def until(self, seen: Callable[[list[Message]], bool], timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while not seen(self):
                self._arrived.clear()
                await self._arrived.wait()


def parts(rt: Runtime, executor: RecordingExecutor) -> tuple[Dispatcher, StallWatchdog]:
    """The dispatcher and the watchdog of a core whose executor only records what it starts."""
    core = build_core(rt)
    dispatcher = Dispatcher(
        settings=rt,
        journal=rt,
        clock=rt.now,
        graph=rt.graph,
        forge=rt.forge,
        workspaces=rt,
        executor=executor,
        lifecycle=core.lifecycle,
        pool=core.pool,
        paused=lambda: rt.state.paused,
        stopping=lambda: rt.stopping,
    )
    return dispatcher, core.watchdog


def make_runtime(state_dir: Path, repos: list[dict[str, Any]] | None = None) -> tuple[Runtime, Outbox]:
    config = Config.model_validate(
        {
            "state_dir": str(state_dir),
            "repos": repos or [{"name": "calc", "path": "/srv/calc", "test_command": "true"}],
            "agents": {"claude": {"kind": "claude"}},
            "max_parallel_workers": 8,
            "max_parallel_per_repo": 8,
        }
    )
    store = Store(state_dir)
    store.lock()
    graph, state = store.load()
    remote = lambda r: (r.path or "", {})  # noqa: E731
    rt = Runtime(config, None, store, graph, state, forge=None, remote_for=remote, clock=lambda: NOW)  # type: ignore[arg-type]
    sent = Outbox()
    rt.notifier = Notifier(sent.send, seen=StateSeenStore(rt.state, rt.save_state))
    return rt, sent


def on_disk(state_dir: Path) -> dict[str, Any]:
    """The state a restart would load: a read-only view of the files."""
    graph, state = Store(state_dir).load()
    return {"tasks": {t.id: t.model_dump(mode="json") for t in graph}, "paused": state.paused}


class TestDiskFull:
    async def test_full_disk_keeps_the_last_good_state_alerts_holds_and_resumes(self, small_disk: Path) -> None:
        """ENOSPC on a journal write: disk state unchanged, one sev1 and a log line naming the disk and its free
        space, no dispatch and no exception loop while full, and a full save plus dispatch once space returns."""
        rt, sent = make_runtime(small_disk)
        executor = RecordingExecutor(rt)
        dispatcher, watchdog = parts(rt, executor)
        rt.state.paused = True  # nothing starts before the disk is full
        rt.save_state()
        tasks = [make_task(n) for n in (1, 2, 3)]
        rt.commit([rt.event("task_created", t.id) for t in tasks], tasks)
        good = on_disk(small_disk)
        journal_size = rt.store.journal_path.stat().st_size

        filler = fill(small_disk)
        rt.state.paused = False
        tasks[0].title = "renamed while the disk was full"
        tasks[0].goal = "a goal longer than the page the journal still has room in " * 300  # tmpfs pages are 4 KiB
        with capture_logs() as logs, pytest.raises(StateError, match="No space left"):
            rt.commit([rt.event("task_renamed", tasks[0].id)], [tasks[0]])
        await sent.until(lambda msgs: any(m.severity == 1 for m in msgs))

        assert rt.write_failure is not None and rt.write_failure.disk_full
        assert on_disk(small_disk) == good, "the last good state changed"
        assert rt.store.journal_path.stat().st_size == journal_size, "a partial line was left in the journal"
        line = next(e for e in logs if e["event"] == "state_write_failed")
        assert line["log_level"] == "critical" and str(small_disk) in line["mount"] and line["free_bytes"] < 4096
        alerts = [m for m in sent if m.severity == 1]
        assert len(alerts) == 1 and "disk is full" in alerts[0].text and str(small_disk) in alerts[0].text

        # Held: nothing starts, later writes are refused without touching the disk, bookkeeping does not raise.
        assert dispatcher.start_ready() == 0 and executor.started == []
        await dispatcher.tick()  # returns before asking the forge (there is none here)
        with pytest.raises(StateError, match="held"):
            rt.commit([rt.event("task_touched", tasks[1].id)], [tasks[1]])
        rt.record("job_failed", job="x", error="y")
        rt.save_job_state()
        await watchdog.tick()  # still full: tries the write, stays held, raises nothing
        assert rt.write_failure is not None and len([m for m in sent if m.severity == 1]) == 1
        assert on_disk(small_disk) == good and executor.started == []

        filler.unlink()
        await watchdog.tick()
        await sent.until(lambda msgs: "saves its state again" in msgs[-1].text)
        assert rt.write_failure is None
        saved = on_disk(small_disk)
        assert saved["tasks"][tasks[0].id]["title"] == "renamed while the disk was full"
        assert saved["paused"] is False
        assert "saves its state again" in sent[-1].text
        assert dispatcher.start_ready() == 3 and len(executor.started) == 3
        rt.store.close()

    def test_fill_really_fills(self, small_disk: Path) -> None:
        """The fixture's disk is full after fill(): a 1-byte write fails with ENOSPC (the test above is real)."""
        fill(small_disk)
        with pytest.raises(OSError) as info, open(small_disk / "one-more", "wb") as f:
            f.write(b"x" * 8192)
            f.flush()
            os.fsync(f.fileno())
        assert info.value.errno == errno.ENOSPC


# ---------------------------------------------------------------- worktree budget


def budget_ws(tmp_path: Path, user_repo: Path, **budget: int) -> Workspace:
    repo = RepoConfig(name="calc", path=str(user_repo), test_command="true", **budget)
    return Workspace(tmp_path / "state", repo, remote_url=str(user_repo), git_env=GIT_ENV)


class TestWorktreeBudget:
    async def test_oldest_finished_go_first_with_their_work_saved(
        self,
        tmp_path: Path,
        origin: Path,  # noqa: F811
    ) -> None:
        """Over max_worktrees, the oldest finished worktrees are removed (uncommitted work saved as a patch,
        unmerged commits kept on the branch) until one more fits; a live task's worktree is never touched."""
        ws = budget_ws(tmp_path, origin, max_worktrees=2)
        old = await ws.prepare("agentos/1-old")
        (old / "unsaved.txt").write_text("work in progress\n")
        newer = await ws.prepare("agentos/2-newer")
        (newer / "committed.txt").write_text("kept on the branch\n")
        await ws.commit_all(newer, "unmerged work")
        live = await ws.prepare("agentos/3-live")
        assert not ws.has_room("agentos/4-new") and ws.has_room("agentos/3-live")  # reuse always fits
        patches = tmp_path / "patches"
        finished = {
            "agentos/1-old": Finished(1000.0, patches / "old.patch"),
            "agentos/2-newer": Finished(2000.0, patches / "newer.patch"),
        }
        report = await ws.enforce_budget(finished)
        assert report.removed == ("agentos/1-old", "agentos/2-newer") and report.count == 1 and report.full is None
        assert not old.exists() and not newer.exists() and live.is_dir()
        assert "work in progress" in (patches / "old.patch").read_text()
        assert not (patches / "newer.patch").exists()  # nothing uncommitted there
        assert await ws.rev("refs/heads/agentos/2-newer") is not None  # its commit is still on the branch
        assert ws.has_room("agentos/4-new")
        applied = await git("apply", "--check", str(patches / "old.patch"), cwd=live, env=GIT_ENV, check=False)
        assert applied.ok, applied.err  # the saved patch is a real one

    async def test_disk_budget_and_a_budget_cleanup_cannot_meet(
        self,
        tmp_path: Path,
        origin: Path,  # noqa: F811
    ) -> None:
        """Over max_worktree_disk_mb with only live worktrees, nothing is removed and the report says why."""
        ws = budget_ws(tmp_path, origin, max_worktree_disk_mb=1)
        tree = await ws.prepare("agentos/1-big")
        (tree / "big.bin").write_bytes(os.urandom(2 * 2**20))
        report = await ws.enforce_budget({})
        assert report.removed == () and report.full is not None and "max_worktree_disk_mb" in report.full
        assert tree.is_dir() and not ws.has_room("agentos/2-next")
        report = await ws.enforce_budget({"agentos/1-big": Finished(0.0, tmp_path / "p.patch", keep_branch=False)})
        assert report.removed == ("agentos/1-big",) and report.full is None and not tree.exists()
        assert await ws.rev("refs/heads/agentos/1-big") is None  # a merged task's branch goes with it
        assert "big.bin" in (tmp_path / "p.patch").read_text()

    async def test_dispatch_waits_and_the_operator_is_told_once(
        self,
        tmp_path: Path,
        origin: Path,  # noqa: F811
    ) -> None:
        """The watchdog cleans up finished worktrees; a repo whose live worktrees fill the budget gets no new
        task, one notification says so, and dispatch resumes when a task finishes and its worktree can go."""
        state = tmp_path / "state"
        repos = [{"name": "calc", "path": str(origin), "test_command": "true", "max_worktrees": 2}]
        rt, sent = make_runtime(state, repos)
        executor = RecordingExecutor(rt)
        dispatcher, watchdog = parts(rt, executor)
        ws = rt.workspace(rt.repo("calc"))
        ws.git_env = dict(GIT_ENV)
        merged, running, waiting = make_task(1, age_min=30), make_task(2), make_task(3)
        for task, status in ((merged, TaskStatus.MERGED), (running, TaskStatus.QUEUED)):
            task.branch = f"agentos/{task.issue}-x"
            await ws.prepare(task.branch)
            task.status = status
        rt.commit([], [merged, running, waiting])
        assert dispatcher.start_ready() == 1 and executor.started == [running.id]  # its worktree exists
        assert not ws.has_room(None)

        await watchdog.tick()  # the merged task's worktree goes: room for one
        assert not ws.worktree_for(merged.branch or "").exists()
        assert ws.worktree_for(running.branch or "").is_dir()
        assert dispatcher.start_ready() == 1 and executor.started[-1] == waiting.id
        waiting.branch = "agentos/3-x"
        await ws.prepare(waiting.branch)

        fourth = make_task(4)
        rt.commit([], [fourth])
        for _ in range(3):
            await watchdog.tick()
            assert dispatcher.start_ready() == 0
        await sent.until(lambda msgs: any("worktree budget" in m.text for m in msgs))
        told = [m for m in sent if "worktree budget" in m.text]
        assert len(told) == 1 and "calc" in told[0].text and "max_worktrees is 2" in told[0].text
        assert set(watchdog.over_budget) == {"calc"}

        rt.running.pop(waiting.id).cancel()  # type: ignore[union-attr]
        waiting.status = TaskStatus.CANCELLED
        rt.commit([], [waiting])
        await watchdog.tick()
        assert "calc" not in watchdog.over_budget and not ws.worktree_for(waiting.branch).exists()
        assert dispatcher.start_ready() == 1 and executor.started[-1] == fourth.id
        for fut in rt.running.values():
            fut.cancel()  # type: ignore[union-attr]
        rt.store.close()
