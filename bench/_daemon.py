"""The real daemon in this process, instrumented from the outside (no change to ``src/``).

:class:`Probe` is attached to a :class:`~agentos.daemon.Daemon` the way ``agentos demo`` watches one: an
``rt.listeners`` callback stamps every task event with ``time.perf_counter()``. It also wraps, for the
duration of a benchmark, four seams at class level:

- ``Workspace.run_tests``: each test-command run's own duration (``CommandResult.duration_s``), so it can
  be subtracted from the orchestration overhead;
- ``Workspace.remove``: when a merged task's worktree is gone (the end of the task's cleanup);
- ``Store.append``: every journal append (written and fsynced on the event loop) and its duration;
- ``asyncio.create_subprocess_exec``: every process the daemon spawns (git, hooks, tests, agents), to
  count them per task.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agentos.graph import Event

END_STATES = ("merged", "blocked", "retrying", "failed", "cancelled")


class Probe:
    """Timestamps of every task's events, plus test runs, worktree removals and spawned processes."""

    def __init__(self) -> None:
        self.times: dict[str, dict[str, float]] = defaultdict(dict)
        self.outcome: dict[str, str] = {}
        self.test_runs: list[tuple[float, float]] = []  # (ended at, duration s)
        self.removed: dict[str, float] = {}  # branch → when its worktree was removed
        self.spawns: list[tuple[float, tuple[str, ...]]] = []
        self.appends: list[tuple[float, float]] = []  # Store.append: (ended at, duration s), on the loop
        self._events: dict[tuple[str, str], asyncio.Event] = {}
        self.listener_calls = 0

    # ── the rt.listeners callback ──

    def __call__(self, event: Event) -> None:
        now = time.perf_counter()
        self.listener_calls += 1
        task = event.task
        if task is None:
            return
        key: str | None = None
        if event.type == "task_created":
            key = "created"
        elif event.type == "transition":
            key = str(event.data.get("to"))
        elif event.type in ("agent_started", "attempt_ended", "merged", "escalated"):
            key = event.type
        if key is None:
            return
        self.times[task].setdefault(key, now)
        self._signal(task, key)
        if key in END_STATES and task not in self.outcome:
            self.outcome[task] = key
            self._signal(task, "end")

    def _event(self, task: str, key: str) -> asyncio.Event:
        ev = self._events.get((task, key))
        if ev is None:
            ev = self._events[(task, key)] = asyncio.Event()
        return ev

    def _signal(self, task: str, key: str) -> None:
        self._event(task, key).set()

    async def wait(self, task: str, key: str, timeout: float) -> None:
        try:
            await asyncio.wait_for(self._event(task, key).wait(), timeout)
        except TimeoutError:
            raise TimeoutError(f"{task}: no {key!r} within {timeout:g}s (events: {dict(self.times[task])})") from None

    def tests_between(self, start: float, end: float) -> float:
        return sum(d for at, d in self.test_runs if start <= at <= end)

    def appends_between(self, start: float, end: float) -> tuple[int, float]:
        """How many journal appends (each fsynced) ended in the window, and their total time."""
        inside = [d for at, d in self.appends if start <= at <= end]
        return len(inside), sum(inside)

    def spawns_between(self, start: float, end: float) -> Counter[str]:
        kinds: Counter[str] = Counter()
        for at, argv in self.spawns:
            if start <= at <= end:
                kinds[_kind(argv)] += 1
        return kinds

    # ── the seams ──

    @contextmanager
    def installed(self) -> Iterator[None]:
        from agentos.store import Store
        from agentos.workspace import Workspace

        probe = self
        orig_append: Callable[..., Any] = Store.append
        orig_tests: Callable[..., Any] = Workspace.run_tests
        orig_remove: Callable[..., Any] = Workspace.remove
        orig_exec = asyncio.create_subprocess_exec

        async def run_tests(self: Workspace, *args: Any, **kwargs: Any) -> Any:
            res = await orig_tests(self, *args, **kwargs)
            probe.test_runs.append((time.perf_counter(), float(getattr(res, "duration_s", 0.0))))
            return res

        async def remove(self: Workspace, branch: str, *args: Any, **kwargs: Any) -> Any:
            res = await orig_remove(self, branch, *args, **kwargs)
            probe.removed[branch] = time.perf_counter()
            probe._signal(branch, "removed")
            return res

        async def create_subprocess_exec(program: Any, *args: Any, **kwargs: Any) -> Any:
            probe.spawns.append((time.perf_counter(), (str(program), *map(str, args))))
            return await orig_exec(program, *args, **kwargs)

        def append(self: Store, *args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return orig_append(self, *args, **kwargs)
            finally:
                end = time.perf_counter()
                probe.appends.append((end, end - t))

        Workspace.run_tests = run_tests  # type: ignore[method-assign]
        Workspace.remove = remove  # type: ignore[method-assign]
        Store.append = append  # type: ignore[method-assign]
        asyncio.create_subprocess_exec = create_subprocess_exec
        try:
            yield
        finally:
            Workspace.run_tests = orig_tests  # type: ignore[method-assign]
            Workspace.remove = orig_remove  # type: ignore[method-assign]
            Store.append = orig_append  # type: ignore[method-assign]
            asyncio.create_subprocess_exec = orig_exec


def _kind(argv: tuple[str, ...]) -> str:
    """``git fetch``, ``git worktree``, ``sh (test/hook)``, ``agent`` … for a spawned argv."""
    prog = Path(argv[0]).name
    if prog == "git":
        rest = list(argv[1:])
        while rest and rest[0] == "-c":
            rest = rest[2:]
        while rest and rest[0].startswith("-"):
            rest = rest[1:]
        return f"git {rest[0]}" if rest else "git"
    if prog == "sh" and len(argv) > 2 and argv[1] == "-c":
        return "sh -c (test/hook)"
    return prog


async def start_daemon(config_path: Path, socket_path: Path) -> tuple[Any, asyncio.Task[int], Probe]:
    """Load the config and start the real daemon in this loop; return it once it is ready."""
    from agentos.config import load_config
    from agentos.daemon import Daemon

    config, path = load_config(config_path)
    daemon = Daemon(config, path, socket_path=socket_path)
    runner = asyncio.get_running_loop().create_task(daemon.run())
    ready = asyncio.ensure_future(daemon.ready.wait())
    await asyncio.wait({runner, ready}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    if not daemon.ready.is_set():
        ready.cancel()
        if runner.done():
            raise RuntimeError(f"the daemon exited during start-up with {runner.result()}")
        raise RuntimeError("the daemon did not become ready within 60s")
    probe = Probe()
    assert daemon.rt is not None
    daemon.rt.listeners.append(probe)
    return daemon, runner, probe


async def stop_daemon(daemon: Any, runner: asyncio.Task[int]) -> None:
    daemon.request_stop()
    await asyncio.wait_for(runner, 60)


async def idle(daemon: Any, timeout: float = 30.0) -> None:
    """Wait until no attempt runs and no job is running."""
    rt = daemon.rt
    deadline = time.monotonic() + timeout
    while rt.running or (rt.scheduler is not None and rt.scheduler.busy()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"daemon still busy after {timeout:g}s: running={list(rt.running)}")
        await asyncio.sleep(0.005)
