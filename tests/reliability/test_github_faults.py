"""The GitHub half of the soak: the loop through ``GitHubForge`` and the executor against the fake GitHub,
with a fifth of API requests failing in every way GitHub fails.

tests/e2e/test_github_daemon.py (TestFaults) runs the real daemon with 20% of requests answering 502. This
goes further in-process, where the client's timeout can be short: each faulty request is, at random (seeded),
a 5xx, a 429 or a 403 secondary limit (both with ``retry-after``), a dropped connection, or a request that is
applied and then answered too late for the client (a timeout whose outcome is unknown to it). Issues with
mixed agent plans (see test_soak.py) must end as planned, with one PR and one squash commit per merged issue,
no comment twice, no agent left running, and a state directory that loads.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from agentos.assembly import build_core
from agentos.config import Config
from agentos.errors import ControlError
from agentos.forge.base import BLOCKED_LABEL, READY_LABEL
from agentos.forge.github import GitHubClient, GitHubForge, TokenAuth
from agentos.graph import TaskStatus
from agentos.ops.notify import Notifier
from agentos.runtime import Runtime, StateSeenStore
from agentos.store import Store
from tests.e2e.conftest import TEST_FILE
from tests.fakes.github_server import FakeGitHub, Fault, fake_github  # noqa: F401
from tests.waiting import wait_until_async

from .conftest import claude, command, wait_no_marked

REPO = "acme/app"
KEY = re.compile(r"<!-- agentos:key=(.*?) -->")
CLIENT_TIMEOUT_S = 1.0
RATE = 0.2
KINDS = ("5xx", "429", "secondary", "drop", "timeout")
PLANS: list[tuple[str, ...]] = [
    ("complete",),
    ("partial", "complete"),
    ("crash", "complete"),
    ("noresult", "complete"),
    ("complete",),
    ("crash", "noresult", "crash", "crash"),  # escalated
]
MAX_ATTEMPTS = 4
SEED = int(os.environ.get("AGENTOS_SOAK_SEED", "0"))


class Chaos:
    """A share of the fake's API requests fail, each in one of :data:`KINDS` (seeded)."""

    def __init__(self, fake: FakeGitHub, *, rate: float, seed: int, kinds: tuple[str, ...] = KINDS) -> None:
        self.fake, self.rate, self.rng, self.kinds = fake, rate, random.Random(seed), kinds
        self.counts: Counter[str] = Counter()
        self.on = False
        take, faulty = fake.state.take_fault, fake._faulty

        def take_fault(method: str, path: str) -> Fault | None:
            fault = take(method, path)
            if fault is not None or not self.on or self.rng.random() >= self.rate:
                return fault
            kind = self.rng.choice(self.kinds)
            self.counts[kind] += 1
            if kind == "5xx":
                return Fault("status", 1, status=self.rng.choice([500, 502, 503, 504]))
            if kind == "429":
                return Fault("status", 1, status=429, seconds=1)
            if kind == "secondary":
                return Fault("secondary", 1, status=403, seconds=1)
            if kind == "drop":
                return Fault("drop", 1)
            return Fault("stall_after", 1, seconds=CLIENT_TIMEOUT_S + 0.5)

        def faulty_with_retry_after(request: web.Request, fault: Fault, resource: str) -> web.Response:
            if fault.kind == "status" and fault.status == 429:  # GitHub sends retry-after with its 429s
                return web.json_response(
                    {"message": "You have exceeded a secondary rate limit."}, status=429, headers={"retry-after": "1"}
                )
            return faulty(request, fault, resource)

        fake.state.take_fault = take_fault  # type: ignore[method-assign]
        fake._faulty = faulty_with_retry_after  # type: ignore[method-assign]


def body(index: int, steps: tuple[str, ...]) -> str:
    return f"## Goal\n\nFault soak issue {index}.\n\nsoak-plan: gh-{index}.txt {','.join(steps)}\n"


@pytest.mark.slow
async def test_github_fault_soak(
    fake_github: FakeGitHub,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every issue ends as planned through 5xx, 429, secondary limits, dropped connections and timeouts;
    nothing is opened, merged or commented twice."""
    fake = fake_github
    await fake.add_repo(REPO, files={"README.md": "# app\n", "test_app.py": TEST_FILE, ".gitignore": "__pycache__/\n"})
    fake.add_user("maya", repo=REPO, role="triage")
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text("[user]\n\tname = fault soak\n\temail = soak@agentos.invalid\n")
    for name in [k for k in os.environ if k.startswith(("GIT_", "FAKE_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    numbers = []
    for index, steps in enumerate(PLANS):
        number = fake.add_issue(REPO, f"Fault soak issue {index}", body(index, steps), author="alice").number
        fake.label_issue(REPO, number, READY_LABEL, actor="maya")
        numbers.append(number)

    config = Config.model_validate(
        {
            "state_dir": str(tmp_path / "state"),
            "forge": "github",
            "github": {"api_url": fake.url, "git_url": fake.url, "checks_grace_s": 0},
            "max_parallel_workers": 3,
            "repos": [{"name": REPO, "test_command": "python3 -m unittest -q", "test_timeout_s": 60}],
            "agents": {"claude": claude("plan"), "script": command("plan")},
            "routing": {
                "default": ["claude", "script"],
                "max_attempts": MAX_ATTEMPTS,
                "max_ci_fix_attempts": 10,
                "backoff_base_s": 0,
                "backoff_cap_s": 0,
            },
            "limits": {"idle_timeout_minutes": 0.5, "max_runtime_minutes": 2, "kill_grace_s": 0.3},
        }
    )
    store = Store(config.state_path)
    store.lock()
    graph, state = store.load()
    # Waits are the client's own (retry-after, backoff), shortened fourfold so the soak stays short.
    client = GitHubClient(
        fake.url, auth=TokenAuth(fake.token), timeout=CLIENT_TIMEOUT_S, sleep=lambda s: asyncio.sleep(s / 4)
    )
    forge = GitHubForge(client, git_base_url=fake.url, checks_grace=0)

    def remote(repo: Any) -> tuple[str, dict[str, str]]:
        return f"{forge.git_base_url}/{repo.name}.git", {}

    rt = Runtime(config, None, store, graph, state, forge, remote)
    rt.notifier = Notifier(None, seen=StateSeenStore(rt.state, rt.save_state))
    core = build_core(rt)
    executor, dispatcher, monitor = core.executor, core.dispatcher, core.monitor
    chaos = Chaos(fake, rate=RATE, seed=7 + SEED)
    started = time.monotonic()
    try:
        await executor.recover()
        chaos.on = True
        while True:
            await dispatcher.tick()
            await monitor.tick()
            done = [t for t in graph if t.status in (TaskStatus.MERGED, TaskStatus.BLOCKED)]
            if len(graph) == len(PLANS) and len(done) == len(PLANS) and not rt.running:
                break
            assert time.monotonic() - started < 240, f"not finished: {[(t.id, t.status.value) for t in graph]}"
            await asyncio.sleep(0.2)
    finally:
        chaos.on = False
        for running in list(rt.running.values()):
            running.cancel()
        await asyncio.gather(*rt.running.values(), return_exceptions=True)
        await rt.notifier.aclose()
        await client.aclose()
        store.close()
    seconds = time.monotonic() - started

    repo = fake.state.repos[REPO]
    merges = 0
    for number, steps in zip(numbers, PLANS, strict=True):
        [task] = graph.for_issue(REPO, number)
        expected = "merged" if "complete" in steps[:MAX_ATTEMPTS] else "blocked"
        assert task.status.value == expected, (
            number,
            steps,
            [(a.outcome, a.blocker_code, a.error) for a in task.attempts],
        )
        pulls = [p for p in repo.pulls.values() if p.head == task.branch]
        issue = repo.issues[number]
        keys = [k for c in issue.comments for k in KEY.findall(c.body)]
        assert len(keys) == len(set(keys)) == len(issue.comments), keys
        if expected == "merged":
            assert len(pulls) == 1 and pulls[0].merged_at is not None, pulls
            assert issue.state == "closed"
            merges += 1
            pr_keys = [k for c in repo.issues[pulls[0].number].comments for k in KEY.findall(c.body)]
            assert len(pr_keys) == len(set(pr_keys))
        else:
            assert pulls == [] and BLOCKED_LABEL in issue.labels
            assert [k for k in keys if k.startswith("escalation:")] == [f"escalation:{task.id}:{len(task.attempts)}"]
    subjects = (await fake.git(REPO, "log", "--format=%s", "main")).splitlines()
    assert sum(1 for s in subjects if re.search(r"\(#\d+\)$", s)) == merges
    assert all(chaos.counts[kind] > 0 for kind in KINDS), chaos.counts
    reloaded, _ = Store(config.state_path).load()
    assert {t.id: t.status for t in reloaded} == {t.id: t.status for t in graph}
    assert wait_no_marked(timeout=5) == []
    if os.environ.get("AGENTOS_SOAK") == "full":
        with capsys.disabled():
            print(
                f"\ngithub fault soak: {seconds:.1f}s, {len(PLANS)} issues, {merges} merged, "
                f"{len(PLANS) - merges} escalated, {client.stats.requests} responses, {client.stats.failures} "
                f"failures, {client.stats.retries} retries, {client.stats.rate_limit_waits} rate-limit waits; "
                f"faults injected: {dict(sorted(chaos.counts.items()))}; duplicates 0, orphans 0"
            )


# ---------------------------------------------------------------- the same, through the real daemon, with kills

DAEMON_KINDS = ("5xx", "429", "secondary", "drop")  # the daemon's client waits 30 s for an answer: no stalls


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("AGENTOS_SOAK") != "full", reason="runs with AGENTOS_SOAK=full (make soak)")
async def test_github_fault_soak_through_the_daemon_with_kills(
    fake_github: FakeGitHub,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`agentos run` on forge: github, 20% of API requests failing and the daemon SIGKILLed at random
    moments: every issue ends as planned, one PR and one squash commit per merged issue, no comment twice."""
    import json
    import shutil
    import signal
    import subprocess
    import tempfile

    from agentos.control.socket import request
    from tests.daemon_process import daemon_env, spawn_daemon

    fake = fake_github
    await fake.add_repo(REPO, files={"README.md": "# app\n", "test_app.py": TEST_FILE, ".gitignore": "__pycache__/\n"})
    fake.add_user("maya", repo=REPO, role="triage")
    plans = [*PLANS[:4], ("hang", "complete"), ("complete",), ("crash", "noresult", "crash", "crash")]
    root = tmp_path / "daemon"
    home = root / "home"
    home.mkdir(parents=True)
    (home / ".gitconfig").write_text("[user]\n\tname = fault soak\n\temail = soak@agentos.invalid\n")
    run_dir = Path(tempfile.mkdtemp(prefix="aghk-", dir="/tmp"))
    sock = run_dir / "agentos.sock"
    env = daemon_env(home, run_dir, drop=("GITHUB_TOKEN",), drop_prefixes=("FAKE_",), GITHUB_TOKEN=fake.token)
    state = root / "state"
    config = {
        "state_dir": str(state),
        "forge": "github",
        "github": {"api_url": fake.url, "git_url": fake.url, "checks_grace_s": 0},
        "max_parallel_workers": 3,
        "repos": [{"name": REPO, "test_command": "python3 -m unittest -q", "test_timeout_s": 60}],
        "agents": {"claude": claude("plan", FAKE_PLAN_FORK="1"), "script": command("plan", FAKE_PLAN_FORK="1")},
        "routing": {
            "default": ["claude", "script"],
            "max_attempts": MAX_ATTEMPTS,
            "max_ci_fix_attempts": 10,
            "backoff_base_s": 0,
            "backoff_cap_s": 0,
        },
        "limits": {
            "idle_timeout_minutes": 2 / 60,
            "max_runtime_minutes": 2,
            "kill_grace_s": 0.3,
            "shutdown_grace_s": 1,
        },
        "jobs": {
            "dispatch": {"interval_s": 0.3},
            "pr_monitor": {"interval_s": 0.3},
            "stall_watchdog": {"interval_s": 1},
        },
    }
    (root / "agentos.yaml").write_text(json.dumps(config))
    log = root / "daemon.log"
    proc: subprocess.Popen[bytes] | None = None

    def spawn() -> subprocess.Popen[bytes]:
        return spawn_daemon(root / "agentos.yaml", env, log)

    async def ctl(cmd: str, args: dict[str, Any] | None = None) -> Any:
        return await asyncio.to_thread(request, sock, cmd, args, timeout=10)

    def log_tail() -> str:
        return log.read_text()[-5000:]

    async def answers() -> bool:
        assert proc is not None and proc.poll() is None, log_tail()
        await ctl("status")
        return True

    async def answering() -> None:
        await wait_until_async(
            answers, what="the daemon to answer", timeout=30, poll=0.1, retry=(ControlError, OSError), context=log_tail
        )

    async def all_finished() -> list[dict[str, Any]] | None:
        assert proc is not None and proc.poll() is None, log_tail()
        rows: list[dict[str, Any]] = await ctl("tasks")
        done = [r for r in rows if r["status"] in ("merged", "blocked")]
        return rows if len(rows) == len(plans) == len(done) else None

    numbers = []
    for index, steps in enumerate(plans):
        number = fake.add_issue(REPO, f"Fault soak issue {index}", body(index, steps), author="alice").number
        fake.label_issue(REPO, number, READY_LABEL, actor="maya")
        numbers.append(number)
    chaos = Chaos(fake, rate=RATE, seed=11 + SEED, kinds=DAEMON_KINDS)
    rng = random.Random(23 + SEED)
    kills = 0
    started = time.monotonic()
    try:
        chaos.on = True
        for _ in range(6):
            proc = spawn()
            await answering()
            if await all_finished():
                break
            await asyncio.sleep(rng.uniform(0.5, 3.0))
            os.kill(proc.pid, signal.SIGKILL)
            await asyncio.to_thread(proc.wait)
            kills += 1
        if proc is None or proc.poll() is not None:
            proc = spawn()
            await answering()
        rows = await wait_until_async(
            all_finished,
            what="every task to finish",
            timeout=300,
            poll=0.2,
            retry=(ControlError, OSError),
            context=log_tail,
        )
        tasks = [await ctl("task", {"id": row["id"]}) for row in rows]
        chaos.on = False
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 20) == 0
    finally:
        chaos.on = False
        if proc is not None and proc.poll() is None:
            proc.kill()
        shutil.rmtree(run_dir, ignore_errors=True)
    seconds = time.monotonic() - started

    repo = fake.state.repos[REPO]
    merges = 0
    for number, steps in zip(numbers, plans, strict=True):
        [task] = [t for t in tasks if t["issue"] == number]
        expected = "merged" if "complete" in steps[:MAX_ATTEMPTS] else "blocked"
        assert task["status"] == expected, (number, steps, task["attempts"])
        counted = [a for a in task["attempts"] if a["outcome"] != "interrupted"]
        assert [a["blocker_code"] for a in counted][: len(steps)] == [
            {
                "complete": None,
                "partial": "test_failure",
                "crash": "runner_failure",
                "noresult": "invalid_result_contract",
                "hang": "timeout",
            }[s]
            for s in steps
        ][: len(counted)]
        pulls = [p for p in repo.pulls.values() if p.head == task["branch"]]
        issue = repo.issues[number]
        keys = [k for c in issue.comments for k in KEY.findall(c.body)]
        assert len(keys) == len(set(keys)) == len(issue.comments), keys
        if expected == "merged":
            assert len(pulls) == 1 and pulls[0].merged_at is not None, pulls
            merges += 1
        else:
            assert pulls == [] and BLOCKED_LABEL in issue.labels
    subjects = (await fake.git(REPO, "log", "--format=%s", "main")).splitlines()
    assert sum(1 for s in subjects if re.search(r"\(#\d+\)$", s)) == merges
    assert all(chaos.counts[kind] > 0 for kind in DAEMON_KINDS), chaos.counts
    Store(state).load()
    assert wait_no_marked(timeout=5) == []
    with capsys.disabled():
        print(
            f"\ngithub daemon soak: {seconds:.1f}s, {kills} kills, {len(plans)} issues, {merges} merged, "
            f"{len(plans) - merges} escalated; faults injected: {dict(sorted(chaos.counts.items()))}; "
            "duplicates 0, orphans 0"
        )
