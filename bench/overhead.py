"""Orchestration overhead per task: wall time from "issue made ready" to "merged", minus agent and tests.

The real daemon runs in this process on the local forge, with a stand-in agent (a shell script that makes
one edit, writes ``.agent_result.md`` and exits) and ``test_command: true``. Issues are filed one at a
time through the daemon's own forge and dispatch is poked (what ``agentos issue new --ready`` does). For
each task::

    overhead = (merged − ready) − agent's own runtime (timed inside the script) − test-command runs

The test command runs twice per task (before the PR opens, and on the merge result as the local forge's
check); both runs are subtracted. Baseline, interleaved with the tasks: ``baseline.sh`` doing the same
git work by hand (fetch, worktree add, commit, push the branch, squash-merge onto main in a scratch
worktree, push main to the user repo, delete the branch, remove the worktrees).
"""

from __future__ import annotations

import asyncio
import resource
import time
from collections import Counter
from pathlib import Path

from bench._common import (
    BenchResult,
    Context,
    Figure,
    agent_seconds,
    at_most,
    baseline_env,
    configure_logging,
    make_bare_clone,
    make_user_repo,
    ratio_at_most,
    run_cmd,
    write_agent,
    write_baseline_script,
    write_config,
)
from bench._daemon import idle, start_daemon, stop_daemon

NAME = "overhead"
TITLE = "orchestration overhead per task (local forge, instant agent, test command `true`)"

TARGET_MS = 300.0
TARGET_RATIO = 2.0


def run(ctx: Context) -> BenchResult:
    res = BenchResult(NAME, TITLE)
    asyncio.run(_run(ctx, res))
    return res


def _cpu_self() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


async def _run(ctx: Context, res: BenchResult) -> None:
    from agentos.forge.base import READY_LABEL
    from agentos.graph import Task

    warmup, reps = (1, 8) if ctx.quick else (2, 30)
    root = ctx.scratch(NAME)
    repo = make_user_repo(root / "repo")
    times = root / "agent-times"
    agent = write_agent(root / "agent.sh", times)
    config = write_config(
        root / "agentos.yaml",
        state_dir=root / "state",
        repos=[("bench", repo)],
        agent_argv=["/bin/sh", str(agent), "{task_id}"],
    )
    base_repo = make_user_repo(root / "baseline-repo")
    base_clone = make_bare_clone(base_repo, root / "baseline-clone")
    script = write_baseline_script(root / "baseline.sh")
    configure_logging(ctx.log_dir / f"{NAME}.log")
    res.params = {"tasks": reps, "warmup": warmup, "agent": "sh script", "test_command": "true"}

    daemon, runner, probe = await start_daemon(config, root / "agentos.sock")
    rt, sched = daemon.rt, daemon.rt.scheduler
    rows: list[dict[str, float]] = []
    baseline: list[float] = []
    spawn_counts: list[Counter[str]] = []
    try:
        with probe.installed():
            for i in range(warmup + reps):
                await idle(daemon)
                cpu0 = _cpu_self()
                t0 = time.perf_counter()
                issue = await rt.forge.new_issue("bench", f"Bench change {i}", "Make a one-line change.", [READY_LABEL])
                sched.poke("dispatch")
                tid = Task.make_id("bench", issue.number)
                await probe.wait(tid, "end", 60)
                if probe.outcome[tid] != "merged":
                    task = rt.graph.find(tid)
                    last = task.current_attempt if task else None
                    raise RuntimeError(
                        f"{tid} ended {probe.outcome[tid]} instead of merged: "
                        f"{task.last_blocker if task else '?'} {last.error[-500:] if last else ''}"
                    )
                branch = rt.graph.get(tid).branch or ""
                await probe.wait(branch, "removed", 30)
                await idle(daemon)
                cpu = _cpu_self() - cpu0
                t = probe.times[tid]
                agent_s = agent_seconds(times, tid)
                if agent_s is None:
                    raise RuntimeError(f"the agent of {tid} left no timing in {times}")
                t_merged, t_removed = t["merged"], probe.removed[branch]
                tests_s = probe.tests_between(t0, t_merged)
                spawns = probe.spawns_between(t0, t_removed)
                journal_n, journal_s = probe.appends_between(t0, t_removed)
                base_s = await run_cmd(
                    [str(script), str(base_clone), str(root / "baseline-wt"), f"b{i}", "0"], env=baseline_env()
                )
                if i < warmup:
                    continue
                baseline.append(base_s * 1000)
                spawn_counts.append(spawns)
                rows.append(
                    {
                        "to_merged": (t_merged - t0 - agent_s - tests_s) * 1000,
                        "to_clean": (t_removed - t0 - agent_s - probe.tests_between(t0, t_removed)) * 1000,
                        "wall": (t_merged - t0) * 1000,
                        "agent": agent_s * 1000,
                        "tests": tests_s * 1000,
                        "dispatch": (t["created"] - t0) * 1000,
                        "start": (t["running"] - t["created"]) * 1000,
                        "prepare": (t["agent_started"] - t["running"]) * 1000,
                        "agent_phase": (t["attempt_ended"] - t["agent_started"]) * 1000,
                        "handoff": (t["pr_open"] - t["attempt_ended"]) * 1000,
                        "merge": (t_merged - t["pr_open"]) * 1000,
                        "cleanup": (t_removed - t_merged) * 1000,
                        "cpu": cpu * 1000,
                        "spawns": float(sum(spawns.values())),
                        "journal_n": float(journal_n),
                        "journal_ms": journal_s * 1000,
                    }
                )
    finally:
        await stop_daemon(daemon, runner)

    def col(key: str) -> list[float]:
        return [r[key] for r in rows]

    targets = [at_most(TARGET_MS), ratio_at_most(TARGET_RATIO)]
    res.add(
        Figure(
            "overhead ready → merged",
            "ms",
            col("to_merged"),
            baseline,
            "baseline.sh (same git work)",
            targets,
            note="wall minus the agent's own runtime minus both test-command runs",
        )
    )
    res.add(Figure("overhead ready → worktree removed", "ms", col("to_clean"), baseline, "baseline.sh", targets))
    res.add(Figure("wall ready → merged (incl. agent+tests)", "ms", col("wall")))
    g = "breakdown"
    res.add(Figure("agent's own runtime", "ms", col("agent"), group=g))
    res.add(Figure("test command (2 runs)", "ms", col("tests"), group=g))
    res.add(Figure("ready → task created (poke, dispatch)", "ms", col("dispatch"), group=g))
    res.add(Figure("task created → running", "ms", col("start"), group=g))
    res.add(Figure("running → agent spawned (worktree, prompt)", "ms", col("prepare"), group=g))
    res.add(Figure("agent spawned → attempt ended", "ms", col("agent_phase"), group=g))
    res.add(Figure("attempt ended → PR open (commit, tests, push)", "ms", col("handoff"), group=g))
    res.add(Figure("PR open → merged (checks, squash, push)", "ms", col("merge"), group=g))
    res.add(Figure("merged → worktree removed", "ms", col("cleanup"), group=g))
    res.add(Figure("daemon CPU per task (this process)", "ms", col("cpu"), group=g))
    res.add(Figure("journal appends (fsync each) per task", "count", col("journal_n"), group=g))
    res.add(Figure("time in journal appends per task (blocks the loop)", "ms", col("journal_ms"), group=g))
    res.add(Figure("processes spawned per task", "count", col("spawns"), [14.0], "baseline.sh git commands", group=g))
    if spawn_counts:
        total: Counter[str] = Counter()
        for c in spawn_counts:
            total.update(c)
        per_task = {k: round(v / len(spawn_counts), 1) for k, v in total.most_common()}
        res.extra["spawns_per_task"] = per_task
        res.notes.append("processes per task: " + ", ".join(f"{k} ×{v:g}" for k, v in per_task.items()))
    res.notes.append(f"state, worktrees and logs under {Path(root)}")
