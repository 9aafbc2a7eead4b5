"""GitHub API budget: requests that count against the rate limit, idle (10 repositories) and per completed task.

The real daemon runs in this process (``bench/_daemon.py``) with ``forge: github`` against the fake GitHub
(``tests/fakes/github_server.py``) on 127.0.0.1, over real HTTP and real git smart HTTP. Its jobs are
triggered by hand (``scheduler.run_now``), so the cost of each job run is exact; the hour is extrapolated from
the default triggers: ``dispatch`` every 60 s (the poll), ``pr_monitor`` every 5 minutes (12 an hour).

Two set-ups, one after the other, over the same 10 repositories of 10 open issues each (100 in all):

- **label mode** (no board): in each repo one issue carries the ready label, put there by a read-only user,
  so it is judged once (untrusted) and the verdict cached;
- **board mode**: the same 100 issues as cards of one Projects v2 board (Todo, In Progress, In Review, Done,
  Blocked; the one per repo made ready is in Ready, moved there by the read-only user).

*Idle*: after a cold first poll, ``rounds`` × (one dispatch tick, one pr_monitor tick). Counted = every
response but a 304 (``GitHubForge.stats.counted``, cross-checked with the fake's request log). Per repo and
hour = (counted per dispatch tick × 60 + counted per pr_monitor tick × 12) / 10. Baseline, in the same run
after each round: a second forge on the same fake polls every repo the way a poller without conditional
requests and without a shared board read would pay for it (every request counted, each repo reading the
board itself).

*Per task*: a maintainer makes an issue ready; the daemon (stand-in ``sh`` agent, ``test_command: true``, no
CI checks) runs it to a squash merge; counted requests from "made ready" to "merged, card Done, daemon idle",
including the polls the daemon made meanwhile (subtracted in the "attributable" row). Baseline: the fewest
REST/GraphQL calls that reach the same outcome with the same checks (who made it ready, their permission,
the body's edit time, labels and board moves, PR, comment, checks, squash merge, branch deletion, close),
sent by a plain httpx script on another issue.

*Poll latency*: a third daemon with ``github.poll_interval_s`` = 2 s (the dispatch job runs on that implied
interval, no ``jobs.dispatch`` entry, nothing poked) and the label-mode repos. Each iteration waits for the
daemon to be idle, sleeps a random fraction of the interval (so the label lands at a random phase of the
poll cycle), labels a new issue ready as a maintainer, and times the wall clock from the label to the stand-in
agent's first line (``date +%s%N``), then waits for the merge. Target: median ≤ the interval; with a uniform
phase the expected wait is about interval / 2 plus the dispatch pass and the spawn, printed as the baseline.

Run alone with ``python -m bench.github_idle [--quick]``.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench._common import (
    BenchResult,
    Context,
    Figure,
    at_most,
    configure_logging,
    run_alone,
    write_agent,
)
from bench._daemon import idle, start_daemon, stop_daemon

NAME = "github_idle"
TITLE = "GitHub API budget: counted (non-304) requests, idle with 10 repos and per task; poll latency (fake GitHub)"

REPOS = 10
ISSUES_PER_REPO = 9  # plus one made ready by a read-only user: 10 per repo, 100 cards on the board
POLLS_PER_HOUR = 3600 / 60.0  # jobs.dispatch default interval_s: 60
MONITOR_PER_HOUR = 12.0  # jobs.pr_monitor default cron: */5 * * * *
TARGET_PER_REPO_HOUR = 10.0  # issue 10
POLL_S = 2.0  # github.poll_interval_s for the poll-latency daemon
OWNER = "bench"
MAINTAINER, GUEST = "maya", "gus"
READY = "agentos:ready"
BOARD_STATUSES = ("Todo", "Todo", "Todo", "In Progress", "In Review", "Done", "Done", "Blocked", "Todo")

Q_READY_EDITS = """query AgentosReadyEdits($owner: String!, $name: String!, $labels: [String!], $cursor: String) {
  repository(owner: $owner, name: $name) { issues(first: 100, after: $cursor, states: [OPEN], labels: $labels) {
    pageInfo { hasNextPage endCursor } nodes { number lastEditedAt } } } }"""
Q_BOARD = """query AgentosBoardItems($project: ID!, $field: String!, $cursor: String) {
  node(id: $project) { ... on ProjectV2 { items(first: 100, after: $cursor) { pageInfo { hasNextPage endCursor }
    nodes { id fieldValueByName(name: $field) { ... on ProjectV2ItemFieldSingleSelectValue { name updatedAt
      creator { login } } } content { ... on Issue { number state lastEditedAt repository { nameWithOwner } } } } } } }
}"""
M_SET_STATUS = """mutation AgentosSetStatus($project: ID!, $item: ID!, $field: ID!, $option: String!) {
  updateProjectV2ItemFieldValue(input: {projectId: $project, itemId: $item, fieldId: $field,
    value: {singleSelectOptionId: $option}}) { projectV2Item { id } } }"""


def run(ctx: Context) -> BenchResult:
    res = BenchResult(NAME, TITLE)
    asyncio.run(_run(ctx, res))
    return res


def repo_name(i: int) -> str:
    return f"{OWNER}/r{i}"


@dataclass
class Window:
    """What the fake and the daemon's client saw between two moments."""

    counted: int
    graphql: int
    total: int
    client_counted: int
    routes: Counter[str]


class Meter:
    """Counts requests on the fake (server side) and on the daemon's forge (client side)."""

    def __init__(self, fake: Any, forge: Any) -> None:
        self.fake, self.forge = fake, forge
        self._mark = (0, 0)

    def mark(self) -> None:
        self._mark = (len(self.fake.state.requests), self.forge.stats.counted)

    def window(self) -> Window:
        start, client0 = self._mark
        recs = self.fake.state.requests[start:]
        counted = [r for r in recs if r.status != 304]
        routes: Counter[str] = Counter(f"{r.method} {_route(r.path)}" for r in counted)
        return Window(
            counted=len(counted),
            graphql=sum(1 for r in counted if r.path == "/graphql"),
            total=len(recs),
            client_counted=self.forge.stats.counted - client0,
            routes=routes,
        )


def _route(path: str) -> str:
    from agentos.forge.github import route_of

    return route_of(path)


@contextmanager
def tick_counter() -> Iterator[Counter[str]]:
    """Count dispatch and pr_monitor ticks (class-level wrappers, only for the benchmark)."""
    from agentos.jobs.dispatch import Dispatcher
    from agentos.jobs.pr_monitor import PRMonitor

    counts: Counter[str] = Counter()
    orig_d, orig_m = Dispatcher.tick, PRMonitor.tick

    async def d_tick(self: Dispatcher) -> None:
        counts["dispatch"] += 1
        await orig_d(self)

    async def m_tick(self: PRMonitor) -> None:
        counts["pr_monitor"] += 1
        await orig_m(self)

    Dispatcher.tick = d_tick  # type: ignore[method-assign]
    PRMonitor.tick = m_tick  # type: ignore[method-assign]
    try:
        yield counts
    finally:
        Dispatcher.tick = orig_d  # type: ignore[method-assign]
        PRMonitor.tick = orig_m  # type: ignore[method-assign]


async def _seed(fake: Any) -> Any:
    """10 repos × 10 open issues, one of them made ready by a read-only user; one board with all 100."""
    project = fake.add_project(OWNER, 1)
    for i in range(REPOS):
        name = repo_name(i)
        await fake.add_repo(name, files={"README.md": f"# r{i}\n", "app.py": "def hello():\n    return 1\n"})
        fake.add_user(MAINTAINER, repo=name, role="triage")
        fake.add_user(GUEST, repo=name, role="read")
        for n in range(ISSUES_PER_REPO):
            issue = fake.add_issue(name, f"Backlog item {n} of r{i}", "Some work.\n", author="alice")
            fake.set_card_status(project, name, issue.number, BOARD_STATUSES[n], actor=MAINTAINER)
        untrusted = fake.add_issue(name, f"Drive-by request for r{i}", "Please.\n", author="gus")
        fake.label_issue(name, untrusted.number, READY, actor=GUEST)
        fake.set_card_status(project, name, untrusted.number, "Ready", actor=GUEST)
    return project


def _naive_forge(fake: Any, *, board: bool) -> Any:
    """A forge on the same fake whose every repo reads the board itself (the baseline's poller)."""
    from agentos.forge.github import GitHubClient, GitHubForge, ProjectConfig, TokenAuth

    projects = {repo_name(i): ProjectConfig(owner=OWNER, number=1) for i in range(REPOS)} if board else {}
    return GitHubForge(GitHubClient(fake.url, auth=TokenAuth(fake.token)), projects=projects, board_ttl=0.0)


def _config(root: Path, fake: Any, agent: Path, *, board: bool, poll_s: float | None = None) -> Path:
    """The daemon's config; with ``poll_s`` dispatch runs on the interval ``github.poll_interval_s`` implies."""
    repos: list[dict[str, Any]] = []
    for i in range(REPOS):
        repo: dict[str, Any] = {"name": repo_name(i), "test_command": "true", "test_timeout_s": 60}
        if board:
            repo["project"] = {"owner": OWNER, "number": 1}
        repos.append(repo)
    loops = ("incident_scan", "log_analysis", "agent_scoring", "backlog_groom", "sprint_plan", "daily_digest")
    github: dict[str, Any] = {"api_url": fake.url, "git_url": fake.url, "checks_grace_s": 0}
    jobs: dict[str, Any] = {"dispatch": {"interval_s": 3600}, "pr_monitor": {"interval_s": 3600}}
    if poll_s is not None:
        github["poll_interval_s"] = poll_s
        del jobs["dispatch"]
    config = {
        "state_dir": str(root / "state"),
        "forge": "github",
        "github": github,
        "max_parallel_workers": 2,
        "repos": repos,
        "agents": {"bench": {"kind": "command", "argv": ["/bin/sh", str(agent), "{task_id}"]}},
        "routing": {"default": ["bench"], "max_attempts": 1},
        "limits": {"idle_timeout_minutes": 2, "max_runtime_minutes": 5, "kill_grace_s": 2, "shutdown_grace_s": 5},
        "jobs": {**jobs, **{name: {"enabled": False} for name in loops}},
        "log_level": "info",
        "sandbox": {"mode": "off"},  # the agent times itself outside its worktree; the sandbox's cost: `sandbox`
    }
    path = root / "agentos.yaml"
    path.write_text(json.dumps(config, indent=2) + "\n")  # JSON is YAML
    return path


async def _idle_rounds(daemon: Any, meter: Meter, naive: Any, rounds: int) -> dict[str, list[float]]:
    """Per round: counted per repo-hour, the naive baseline, GraphQL per hour, client/server agreement.

    ``naive`` is a second forge on the same fake that reads the board once per repo (``board_ttl=0``); its
    poll of every repo, every request counted (304s too), is the baseline round.
    """
    sched = daemon.rt.scheduler
    out: dict[str, list[float]] = {"per_repo_hour": [], "naive_per_repo_hour": [], "graphql_hour": [], "mismatch": []}
    repos = [repo_name(i) for i in range(REPOS)]
    for name in repos:  # the baseline poller's own cold poll
        await naive.ready_issues(name)
    for _ in range(rounds):
        meter.mark()
        await sched.run_now("dispatch")
        d = meter.window()
        meter.mark()
        await sched.run_now("pr_monitor")
        m = meter.window()
        hour = d.counted * POLLS_PER_HOUR + m.counted * MONITOR_PER_HOUR
        out["per_repo_hour"].append(hour / REPOS)
        out["graphql_hour"].append(d.graphql * POLLS_PER_HOUR + m.graphql * MONITOR_PER_HOUR)
        out["mismatch"].append(abs(d.counted - d.client_counted) + abs(m.counted - m.client_counted))
        start = len(meter.fake.state.requests)
        for name in repos:
            await naive.ready_issues(name)
        naive_total = len(meter.fake.state.requests) - start
        out["naive_per_repo_hour"].append((naive_total * POLLS_PER_HOUR + m.total * MONITOR_PER_HOUR) / REPOS)
    return out


async def _one_task(daemon: Any, probe: Any, meter: Meter, fake: Any, project: Any, n: int, *, board: bool) -> Window:
    from agentos.graph import Task

    repo = repo_name(n % REPOS)
    issue = fake.add_issue(repo, f"Bench change {n}", "## Goal\n\nMake a one-line change.\n", author="alice")
    await idle(daemon)
    meter.mark()
    if board:
        fake.set_card_status(project, repo, issue.number, "Ready", actor=MAINTAINER)
    else:
        fake.label_issue(repo, issue.number, READY, actor=MAINTAINER)
    await daemon.rt.scheduler.run_now("dispatch")
    tid = Task.make_id(repo, issue.number)
    await probe.wait(tid, "end", 120)
    if probe.outcome[tid] != "merged":
        task = daemon.rt.graph.find(tid)
        raise RuntimeError(f"{tid} ended {probe.outcome[tid]}: {task.last_blocker if task else '?'}")
    deadline = time.monotonic() + 30
    while board and fake.card_status(project, repo, issue.number) != "Done":
        if time.monotonic() > deadline:
            raise RuntimeError(f"{tid}: the card never reached Done")
        await asyncio.sleep(0.01)
    await idle(daemon)
    return meter.window()


@contextmanager
def poll_times() -> Iterator[list[float]]:
    """Wall-clock start of every dispatch tick (a class-level wrapper, only for the benchmark)."""
    from agentos.jobs.dispatch import Dispatcher

    starts: list[float] = []
    orig = Dispatcher.tick

    async def tick(self: Dispatcher) -> None:
        starts.append(time.time())
        await orig(self)

    Dispatcher.tick = tick  # type: ignore[method-assign]
    try:
        yield starts
    finally:
        Dispatcher.tick = orig  # type: ignore[method-assign]


async def _poll_latency(
    daemon: Any, probe: Any, fake: Any, times: Path, ticks: list[float], iterations: int
) -> list[tuple[float, float]]:
    """Per iteration: (label → agent's first line, label → the poll that started it), in seconds."""
    from agentos.graph import Task

    rng = random.Random(10)
    out: list[tuple[float, float]] = []
    for n in range(iterations):
        repo = repo_name(n % REPOS)
        issue = fake.add_issue(repo, f"Poll change {n}", "## Goal\n\nMake a one-line change.\n", author="alice")
        await idle(daemon)
        await asyncio.sleep(rng.uniform(0, POLL_S))
        t0 = time.time()
        fake.label_issue(repo, issue.number, READY, actor=MAINTAINER)
        tid = Task.make_id(repo, issue.number)
        await probe.wait(tid, "end", 60 + 2 * POLL_S)
        if probe.outcome[tid] != "merged":
            task = daemon.rt.graph.find(tid)
            raise RuntimeError(f"{tid} ended {probe.outcome[tid]}: {task.last_blocker if task else '?'}")
        safe = "".join(c if c.isalnum() else "_" for c in tid)
        first = int((times / safe).read_text().split()[0]) / 1e9
        poll = max((t for t in ticks if t <= first), default=t0)  # the last tick before the agent started
        out.append((first - t0, poll - t0))
    await idle(daemon)
    return out


async def _minimal_script(fake: Any, project: Any, n: int, *, board: bool) -> int:
    """The fewest calls reaching the same outcome with the same checks, by hand; how many were counted."""
    repo = repo_name((n + 1) % REPOS)
    issue = fake.add_issue(repo, f"Baseline change {n}", "Make a one-line change.\n", author="alice")
    if board:
        fake.set_card_status(project, repo, issue.number, "Ready", actor=MAINTAINER)
    else:
        fake.label_issue(repo, issue.number, READY, actor=MAINTAINER)
    branch = f"baseline/{n}-{int(board)}"  # the push is git, not the API: made directly in the bare repo
    sha = await fake.git(repo, "commit-tree", "main^{tree}", "-p", "main", "-m", "baseline change")
    await fake.git(repo, "update-ref", f"refs/heads/{branch}", sha)
    owner, name = repo.split("/")
    start = len(fake.state.requests)
    headers = {"Authorization": f"Bearer {fake.token}", "Accept": "application/vnd.github+json"}
    async with httpx.AsyncClient(base_url=fake.url, headers=headers) as gh:

        async def call(method: str, path: str, body: Any = None) -> Any:
            resp = await gh.request(method, path, json=body)
            resp.raise_for_status()
            return resp.json() if resp.content else None

        async def board_status(status: str) -> None:
            item = next(i for i in project.items if i.repo == repo and i.number == issue.number)
            variables = {"project": project.id, "item": item.id, "field": project.field_id}
            variables["option"] = project.options[status]
            await call("POST", "/graphql", {"query": M_SET_STATUS, "variables": variables})

        base = f"/repos/{repo}"
        if board:
            await call("POST", "/graphql", {"query": Q_BOARD, "variables": {"project": project.id, "field": "Status"}})
        else:
            await call("GET", f"{base}/issues?state=open&labels={READY}")
            await call("GET", f"{base}/issues/{issue.number}/events")
            variables = {"owner": owner, "name": name, "labels": [READY]}
            await call("POST", "/graphql", {"query": Q_READY_EDITS, "variables": variables})
        await call("GET", f"{base}/collaborators/{MAINTAINER}/permission")
        await call("POST", f"{base}/issues/{issue.number}/labels", {"labels": ["agentos:running"]})
        if board:
            await board_status("In Progress")
        body = {"title": issue.title, "head": branch, "base": "main", "body": f"Closes #{issue.number}"}
        pr = await call("POST", f"{base}/pulls", body)
        await call("POST", f"{base}/issues/{issue.number}/comments", {"body": f"PR #{pr['number']} is open."})
        if board:
            await board_status("In Review")
        await call("GET", f"{base}/commits/{sha}/check-runs")
        await call("GET", f"{base}/commits/{sha}/status")
        await call("PUT", f"{base}/pulls/{pr['number']}/merge", {"merge_method": "squash", "sha": sha})
        await call("DELETE", f"{base}/git/refs/heads/{branch}")
        await call("PATCH", f"{base}/issues/{issue.number}", {"state": "closed"})
        await call("DELETE", f"{base}/issues/{issue.number}/labels/agentos:running")
        if board:
            await board_status("Done")
    return sum(1 for r in fake.state.requests[start:] if r.status != 304)


async def _run(ctx: Context, res: BenchResult) -> None:
    root = ctx.scratch(NAME)
    rounds, tasks, poll_runs = (10, 1, 5) if ctx.quick else (30, 3, 10)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.fakes, when run from elsewhere
    from tests.fakes.github_server import FakeGitHub

    configure_logging(ctx.log_dir / f"{NAME}.log")
    agent = write_agent(root / "agent.sh", root / "agent-times")
    fake = FakeGitHub(root / "fake-github")
    await fake.start()
    old_token = os.environ.get("GITHUB_TOKEN")
    os.environ["GITHUB_TOKEN"] = fake.token
    res.params = {
        "repos": REPOS,
        "issues": REPOS * (ISSUES_PER_REPO + 1),
        "idle_rounds": rounds,
        "tasks_per_mode": tasks,
        "poll_s": 3600 / POLLS_PER_HOUR,
        "pr_monitor_per_hour": MONITOR_PER_HOUR,
        "poll_latency_iterations": poll_runs,
        "poll_latency_interval_s": POLL_S,
    }
    results: dict[str, dict[str, Any]] = {}
    try:
        project = await _seed(fake)
        for mode in ("label", "board"):
            board = mode == "board"
            mode_root = root / mode
            mode_root.mkdir()
            config = _config(mode_root, fake, agent, board=board)
            with tick_counter() as ticks:
                daemon, runner, probe = await start_daemon(config, mode_root / "agentos.sock")
                try:
                    meter = Meter(fake, daemon.rt.forge)
                    await idle(daemon)  # the start-up poke: the cold first poll
                    cold = meter.window()  # the mark is at the start: everything so far
                    naive = _naive_forge(fake, board=board)
                    try:
                        idle_stats = await _idle_rounds(daemon, meter, naive, rounds)
                    finally:
                        await naive.aclose()
                    per_task: list[Window] = []
                    attributable: list[float] = []
                    idle_tick = statistics.median(_per_tick(idle_stats["per_repo_hour"]))
                    for n in range(tasks):
                        before = Counter(ticks)
                        window = await _one_task(daemon, probe, meter, fake, project, n, board=board)
                        polls = ticks["dispatch"] - before["dispatch"]
                        per_task.append(window)
                        attributable.append(window.counted - polls * idle_tick)
                    baseline = [float(await _minimal_script(fake, project, n, board=board)) for n in range(tasks)]
                finally:
                    await stop_daemon(daemon, runner)
            results[mode] = {
                "cold": cold,
                "idle": idle_stats,
                "tasks": per_task,
                "attributable": attributable,
                "baseline": baseline,
            }
            fake.state.requests.clear()
        poll_root = root / "poll"
        poll_root.mkdir()
        config = _config(poll_root, fake, agent, board=False, poll_s=POLL_S)
        with poll_times() as ticks:
            daemon, runner, probe = await start_daemon(config, poll_root / "agentos.sock")
            try:
                await idle(daemon)
                poll_latency = await _poll_latency(daemon, probe, fake, root / "agent-times", ticks, poll_runs)
            finally:
                await stop_daemon(daemon, runner)
    finally:
        if old_token is None:
            os.environ.pop("GITHUB_TOKEN", None)
        else:
            os.environ["GITHUB_TOKEN"] = old_token
        await fake.stop()

    target = [at_most(TARGET_PER_REPO_HOUR, label=f"≤ {TARGET_PER_REPO_HOUR:g} per repo-hour")]
    naive_name = "no ETags, one board read per repo"
    for mode, label in (("label", "label mode"), ("board", "board mode, one 100-item board")):
        idle_stats = results[mode]["idle"]
        res.add(
            Figure(
                f"counted requests per repo-hour ({label})",
                "req",
                idle_stats["per_repo_hour"],
                idle_stats["naive_per_repo_hour"],
                naive_name,
                target,
                group="idle",
            )
        )
        res.add(
            Figure(
                f"GraphQL queries (≈ points) per hour, 10 repos ({label})",
                "req",
                idle_stats["graphql_hour"],
                group="idle",
            )
        )
        cold = results[mode]["cold"]
        res.notes.append(f"first poll ({label}): {cold.counted} counted, {cold.graphql} of them GraphQL")
        res.add(
            Figure(
                f"first poll after start: counted requests, 10 repos ({label})",
                "req",
                [float(cold.counted)],
                group="idle",
                single=True,
            )
        )
    for mode, label in (("label", "label mode"), ("board", "board mode")):
        windows: list[Window] = results[mode]["tasks"]
        base: list[float] = results[mode]["baseline"]
        res.add(
            Figure(
                f"counted requests, ready → merged ({label})",
                "req",
                [float(w.counted) for w in windows],
                base,
                "fewest calls by hand",
                group="per task",
            )
        )
        res.add(
            Figure(
                f"attributable: minus the idle cost of the polls meanwhile ({label})",
                "req",
                results[mode]["attributable"],
                base,
                "fewest calls by hand",
                group="per task",
            )
        )
        res.add(Figure(f"of which GraphQL ({label})", "req", [float(w.graphql) for w in windows], group="per task"))
        routes: Counter[str] = Counter()
        for w in windows:
            routes.update(w.routes)
        top = ", ".join(f"{k} ×{v / len(windows):g}" for k, v in routes.most_common())
        res.notes.append(f"per task ({label}), counted by route: {top}")
        res.extra[f"routes_per_task_{mode}"] = {k: v / len(windows) for k, v in routes.items()}
        mismatch = sum(results[mode]["idle"]["mismatch"]) + sum(abs(w.counted - w.client_counted) for w in windows)
        if mismatch:
            res.notes.append(f"{label}: the client's stats.counted and the fake's log differ by {mismatch} requests")
    interval_ms = POLL_S * 1000
    res.add(
        Figure(
            f"label → agent's first line, github.poll_interval_s {POLL_S:g}",
            "ms",
            [lat * 1000 for lat, _ in poll_latency],
            [interval_ms / 2],
            "expected: interval / 2",
            [at_most(interval_ms, label=f"median ≤ the poll interval ({interval_ms:g} ms)")],
            group="poll latency",
        )
    )
    res.add(
        Figure(
            "label → the poll that picked it up",
            "ms",
            [wait * 1000 for _, wait in poll_latency],
            group="poll latency",
        )
    )
    res.add(
        Figure(
            "that poll's start → agent's first line",
            "ms",
            [(lat - wait) * 1000 for lat, wait in poll_latency],
            group="poll latency",
        )
    )
    res.notes.append(
        f"poll latency: {len(poll_latency)} issues labelled ready at a random phase of a {POLL_S:g} s poll cycle "
        "(10 repos polled per tick), nothing poked; the label's worst case is the interval plus the dispatch pass"
    )
    res.notes.append(
        "per hour = counted per dispatch tick × 60 (jobs.dispatch interval_s 60) + per pr_monitor tick × 12 "
        "(cron */5); the improvement loops (disabled here) add a few list requests per repo per groom cadence"
    )
    res.notes.append(f"daemon log: {ctx.log_dir / f'{NAME}.log'}")


def _per_tick(per_repo_hour: list[float]) -> list[float]:
    """Counted requests per dispatch tick, back from per-repo-hour (pr_monitor ticks cost nothing when idle)."""
    return [v * REPOS / POLLS_PER_HOUR for v in per_repo_hour]


def main(argv: list[str] | None = None) -> int:
    return run_alone(run, argv)


if __name__ == "__main__":
    sys.exit(main())
