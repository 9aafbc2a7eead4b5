"""What every benchmark shares: statistics, figures with baselines and targets, tables, JSON, and fixtures.

A :class:`Figure` is one measured quantity: its samples (median and p95 are taken over them), the samples
of a baseline measured in the same run, and targets. A target is only reported (met / missed), never
asserted. A :class:`BenchResult` is one benchmark's figures plus its parameters and notes; ``__main__``
prints it as a table and writes it to ``bench/results/latest.json``.

Fixtures: throwaway git repositories standing for a user's repository, a config file for the local forge,
a stand-in agent (a shell script that makes one edit, writes ``.agent_result.md`` and exits), the plain
shell script that does the same git work as agentos for the baselines, and an event-loop lag sampler.
"""

from __future__ import annotations

import asyncio
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

Stat = Literal["median", "p95", "p99", "max", "value"]

GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@agentos.invalid",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@agentos.invalid",
    "GIT_TERMINAL_PROMPT": "0",
    "LC_ALL": "C",
}
"""The environment of every git command a benchmark runs itself (set-up and baselines)."""

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"


# ── statistics ───────────────────────────────────────────────────────────────────────────────────────


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0–100) by linear interpolation between closest ranks; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return float(ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo))


def stat(values: Sequence[float], which: Stat) -> float:
    if which in ("median", "value"):
        return percentile(values, 50)
    if which == "p95":
        return percentile(values, 95)
    if which == "p99":
        return percentile(values, 99)
    return float(max(values)) if values else math.nan


def fit_line(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Least-squares ``(slope, intercept)`` of ``y = slope·x + intercept``."""
    n = len(xs)
    if n < 2:
        return math.nan, math.nan
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return math.nan, math.nan
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    return slope, my - slope * mx


def growth_exponent(xs: Sequence[float], ys: Sequence[float]) -> float:
    """The fitted ``k`` of ``y ∝ x^k`` (log-log slope): 1 is linear, 0 is constant, 2 is quadratic."""
    pairs = [(math.log(x), math.log(y)) for x, y in zip(xs, ys, strict=True) if x > 0 and y > 0]
    if len(pairs) < 2:
        return math.nan
    return fit_line([p[0] for p in pairs], [p[1] for p in pairs])[0]


# ── figures ──────────────────────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class Target:
    """A goal for one statistic of a figure: ``stat`` of the samples (or of the ratio) ≤ or ≥ ``value``."""

    op: Literal["<=", ">="]
    value: float
    stat: Stat = "median"
    of: Literal["value", "ratio"] = "value"
    label: str = ""

    def text(self, unit: str) -> str:
        if self.label:
            return self.label
        sign = "≤" if self.op == "<=" else "≥"
        if self.of == "ratio":
            return f"{self.stat} {sign} {self.value:g}× baseline"
        return f"{self.stat} {sign} {self.value:g} {unit}".rstrip()

    def check(self, fig: Figure) -> bool | None:
        if self.of == "ratio":
            base = fig.baseline_stat(self.stat)
            got = fig.stat(self.stat) / base if base and not math.isnan(base) else math.nan
        else:
            got = fig.stat(self.stat)
        if math.isnan(got):
            return None
        return got <= self.value if self.op == "<=" else got >= self.value


def at_most(value: float, stat: Stat = "median", label: str = "") -> Target:
    return Target("<=", value, stat, "value", label)


def at_least(value: float, stat: Stat = "median", label: str = "") -> Target:
    return Target(">=", value, stat, "value", label)


def ratio_at_most(value: float, stat: Stat = "median", label: str = "") -> Target:
    return Target("<=", value, stat, "ratio", label)


@dataclass
class Figure:
    """One measured quantity, its same-run baseline and its targets.

    ``single`` figures (one value: a rate, a fitted slope) print their value in the median column and
    leave p95 empty. ``group`` separates the rows of a table (main figures, a breakdown, …).
    """

    name: str
    unit: str
    samples: list[float]
    baseline: list[float] | None = None
    baseline_name: str = ""
    targets: list[Target] = field(default_factory=list)
    note: str = ""
    group: str = ""
    single: bool = False

    def stat(self, which: Stat) -> float:
        return stat(self.samples, which)

    def baseline_stat(self, which: Stat) -> float:
        return stat(self.baseline, which) if self.baseline else math.nan

    @property
    def median(self) -> float:
        return self.stat("median")

    @property
    def p95(self) -> float:
        return self.stat("p95")

    @property
    def ratio(self) -> float:
        base = self.baseline_stat("median")
        return self.median / base if base and not math.isnan(base) else math.nan

    def verdicts(self) -> list[tuple[str, bool | None]]:
        return [(t.text(self.unit), t.check(self)) for t in self.targets]

    @property
    def met(self) -> bool | None:
        results = [ok for _, ok in self.verdicts()]
        if not results:
            return None
        if any(ok is False for ok in results):
            return False
        return None if any(ok is None for ok in results) else True

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "group": self.group,
            "unit": self.unit,
            "n": len(self.samples),
            "median": _num(self.median),
            "p95": None if self.single else _num(self.p95),
            "max": _num(self.stat("max")),
            "baseline": None
            if self.baseline is None
            else {
                "name": self.baseline_name,
                "n": len(self.baseline),
                "median": _num(self.baseline_stat("median")),
                "p95": None if self.single else _num(self.baseline_stat("p95")),
                "samples": [round(v, 6) for v in self.baseline],
            },
            "ratio": _num(self.ratio),
            "targets": [{"target": text, "met": ok} for text, ok in self.verdicts()],
            "met": self.met,
            "note": self.note,
            "samples": [round(v, 6) for v in self.samples],
        }


def stat_figures(
    name: str,
    unit: str,
    samples: Sequence[float],
    baseline: Sequence[float] | None = None,
    baseline_name: str = "",
    *,
    stats: Sequence[tuple[str, Stat]] = (("p50", "median"), ("p99", "p99"), ("max", "max")),
    targets: dict[str, Target] | None = None,
    group: str = "",
) -> list[Figure]:
    """One single-valued row per statistic of a sample set (for distributions such as loop lag, where the
    target is on p99): ``<name> p50``, ``<name> p99``, ``<name> max``, each next to the baseline's same stat."""
    out = []
    for label, which in stats:
        target = (targets or {}).get(label)
        if target is not None and not target.label:
            sign = "≤" if target.op == "<=" else "≥"
            target = replace(target, label=f"{label} {sign} {target.value:g} {unit}")
        out.append(
            Figure(
                f"{name} {label}",
                unit,
                [stat(samples, which)],
                None if baseline is None else [stat(baseline, which)],
                baseline_name,
                [target] if target else [],
                group=group,
                single=True,
            )
        )
    return out


def _num(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 6)


@dataclass
class BenchResult:
    name: str
    title: str
    params: dict[str, Any] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0
    error: str | None = None

    def add(self, fig: Figure) -> Figure:
        self.figures.append(fig)
        return fig

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "params": self.params,
            "duration_s": round(self.duration_s, 2),
            "error": self.error,
            "figures": [f.to_json() for f in self.figures],
            "notes": self.notes,
            "extra": self.extra,
        }


@dataclass
class Context:
    """What a benchmark is given: the mode, a scratch directory, and where to put logs."""

    quick: bool
    workdir: Path
    log_dir: Path
    cores: int

    def scratch(self, name: str) -> Path:
        path = self.workdir / name
        path.mkdir(parents=True, exist_ok=True)
        return path


# ── tables ───────────────────────────────────────────────────────────────────────────────────────────


def fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    mag = abs(value)
    if mag >= 1000:
        return f"{value:,.0f}"
    if mag >= 100:
        return f"{value:.0f}"
    if mag >= 10:
        return f"{value:.1f}"
    if mag >= 1:
        return f"{value:.2f}"
    if mag == 0:
        return "0"
    return f"{value:.3g}"


def render(result: BenchResult, cores: int, mode: str) -> str:
    """The benchmark as a plain-text table (stable in logs and CI output, no terminal codes)."""
    head = ["figure", "unit", "median", "p95", "baseline", "base p95", "ratio", "target", "met"]
    rows: list[list[str]] = []
    groups: list[int] = []
    last_group: str | None = None
    for fig in result.figures:
        if last_group is not None and fig.group != last_group:
            groups.append(len(rows))
        last_group = fig.group
        verdicts = fig.verdicts()
        target = "; ".join(text for text, _ in verdicts) or ""
        met = fig.met
        mark = "" if not verdicts else ("yes" if met else ("MISSED" if met is False else "?"))
        name = f"{fig.group}: {fig.name}" if fig.group else fig.name
        rows.append(
            [
                name,
                fig.unit,
                fmt(fig.median),
                "" if fig.single else fmt(fig.p95),
                "" if fig.baseline is None else fmt(fig.baseline_stat("median")),
                "" if fig.baseline is None or fig.single else fmt(fig.baseline_stat("p95")),
                "" if fig.baseline is None else (fmt(fig.ratio) + "×" if not math.isnan(fig.ratio) else "—"),
                target,
                mark,
            ]
        )
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    right = {2, 3, 4, 5, 6}

    def line(cells: list[str]) -> str:
        out = []
        for i, cell in enumerate(cells):
            out.append(cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]))
        return "  ".join(out).rstrip()

    sep = "  ".join("-" * w for w in widths)
    title = f"== {result.name}: {result.title}  [{mode}, {cores} cores, {result.duration_s:.1f}s] =="
    out = [title]
    if result.params:
        out.append("   " + ", ".join(f"{k}={v}" for k, v in result.params.items()))
    if result.error:
        out.append(f"   ERROR: {result.error}")
    if rows:
        out += [line(head), sep]
        for i, row in enumerate(rows):
            if i in groups:
                out.append("")
            out.append(line(row))
    for fig in result.figures:
        if fig.note:
            out.append(f"   * {fig.name}: {fig.note}")
    for note in result.notes:
        out.append(f"   - {note}")
    return "\n".join(out)


# ── machine ──────────────────────────────────────────────────────────────────────────────────────────


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def machine_info(workdir: Path) -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_mb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_mb = int(line.split()[1]) // 1024
    except OSError:
        pass
    git_version = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.strip()
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=BENCH_DIR.parent, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no", "src"],
        cwd=BENCH_DIR.parent,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return {
        "cores": cores(),
        "cpu_count": os.cpu_count(),
        "cpu": cpu,
        "mem_mb": mem_mb,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "git": git_version,
        "agentos_commit": head + ("+dirty" if dirty else ""),
        "workdir": str(workdir),
        "workdir_fs": filesystem_of(workdir),
    }


def filesystem_of(path: Path) -> str:
    """The filesystem type holding ``path`` (fsync costs depend on it), from /proc/mounts."""
    best, kind = "", "?"
    try:
        target = str(path.resolve())
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if not (len(parts) >= 3 and len(parts[1]) >= len(best)):
                continue
            if target == parts[1] or target.startswith(parts[1].rstrip("/") + "/"):
                best, kind = parts[1], parts[2]
    except OSError:
        pass
    return kind


def rss_mb(pid: int | str = "self") -> float:
    """Resident set size of a process in MB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


# ── git fixtures ─────────────────────────────────────────────────────────────────────────────────────


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=repo, env={**os.environ, **GIT_ENV}, check=True, capture_output=True, text=True
    )
    return done.stdout


def make_user_repo(path: Path, name: str = "bench") -> Path:
    """A user's repository: ``main`` checked out, one commit, pushes to ``main`` update its tree."""
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    (path / "README.md").write_text(f"# {name}\n\nA repository for agentos benchmarks.\n")
    (path / "app.py").write_text('def hello() -> str:\n    return "hello"\n')
    git(path, "add", "-A")
    git(path, "commit", "-qm", "initial commit")
    git(path, "config", "receive.denyCurrentBranch", "updateInstead")
    return path


def make_bare_clone(user_repo: Path, clone: Path) -> Path:
    """A bare clone with ``origin`` = the user repo and remote-tracking refs, as agentos keeps one."""
    clone.parent.mkdir(parents=True, exist_ok=True)
    git(clone.parent, "init", "--bare", "-q", "--initial-branch=main", str(clone))
    git(clone, "remote", "add", "origin", str(user_repo))
    git(clone, "fetch", "-q", "origin")
    return clone


AGENT_SH = """#!/bin/sh
# A stand-in agent for benchmarks: one edit, a result file, exit. Its own runtime goes to TIMES/<id>.
start=$(date +%s%N)
id=$(printf %s "$1" | tr -c 'A-Za-z0-9' '_')
printf 'change for %s\\n' "$1" > "bench-$id.txt"
printf 'STATUS: complete\\nBLOCKER_CODE: none\\nSUMMARY: one-line change for %s\\n' "$1" > .agent_result.md
end=$(date +%s%N)
echo "$start $end" > "@TIMES@/$id"
"""


def write_agent(path: Path, times_dir: Path) -> Path:
    """The stand-in agent script; run as ``/bin/sh PATH {task_id}`` in the worktree."""
    times_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(AGENT_SH.replace("@TIMES@", str(times_dir)))
    path.chmod(0o755)
    return path


def agent_seconds(times_dir: Path, task_id: str) -> float | None:
    """The agent's own runtime (first to last instruction of the script) for ``task_id``."""
    safe = "".join(c if c.isalnum() else "_" for c in task_id)
    try:
        start, end = (Path(times_dir) / safe).read_text().split()
    except (OSError, ValueError):
        return None
    return (int(end) - int(start)) / 1e9


BASELINE_SH = r"""#!/bin/bash
# The git work agentos does for one task, by hand: worktree add, the edit, commit, push the branch,
# squash-merge onto main in a scratch worktree, push main to the user repo, remove both worktrees and
# the branch. Usage: baseline.sh CLONE WORKTREES_DIR ID LOCKING(0|1)
# With LOCKING=1 (parallel jobs) the clone's shared operations take a per-clone flock, and merges a
# per-repo one (a merge queue), as agentos serialises them.
set -euo pipefail
clone=$1; dir=$2; id=$3; locking=$4
br="bench/$id"; wt="$dir/wt-$id"; scratch="$dir/scratch-$id"
lock() { [ "$locking" = 1 ] || return 0; eval "exec $1>\"$2\""; flock "$1"; }
unlock() { [ "$locking" = 1 ] || return 0; eval "exec $1>&-"; }

lock 9 "$clone.lock"
git -C "$clone" fetch -q --prune origin
git -C "$clone" worktree add -q --no-track -B "$br" "$wt" refs/remotes/origin/main
unlock 9
printf 'change for %s\n' "$id" > "$wt/bench-$id.txt"
git -C "$wt" add -A
git -C "$wt" -c commit.gpgsign=false commit -q --no-verify -m "change $id"
lock 9 "$clone.lock"
git -C "$clone" push -q origin "$br:refs/heads/$br"
unlock 9

lock 8 "$clone.merge.lock"
lock 9 "$clone.lock"
git -C "$clone" fetch -q origin
git -C "$clone" worktree add -q --detach "$scratch" refs/remotes/origin/main
unlock 9
git -C "$scratch" merge --squash -q "$br"
git -C "$scratch" -c commit.gpgsign=false commit -q --no-verify -m "change $id (#$id)"
lock 9 "$clone.lock"
git -C "$scratch" push -q origin HEAD:refs/heads/main
git -C "$clone" push -q origin ":refs/heads/$br"
git -C "$clone" worktree remove --force "$scratch"
git -C "$clone" worktree remove --force "$wt"
git -C "$clone" branch -D -q "$br"
unlock 9
unlock 8
"""


def write_baseline_script(path: Path) -> Path:
    path.write_text(BASELINE_SH)
    path.chmod(0o755)
    return path


def baseline_env() -> dict[str, str]:
    return {**os.environ, **GIT_ENV}


def write_config(
    path: Path,
    *,
    state_dir: Path,
    repos: Sequence[tuple[str, Path]],
    agent_argv: Sequence[str],
    max_parallel_workers: int = 2,
    max_parallel_per_repo: int | None = None,
    jobs: dict[str, str] | None = None,
    log_level: str = "info",
    test_command: str = "true",
) -> Path:
    """A local-forge config: the repos, one ``command`` agent named ``bench``, and job triggers."""
    lines = [
        "# Written by `python -m bench`.",
        f"state_dir: {state_dir}",
        "forge: local",
        f"max_parallel_workers: {max_parallel_workers}",
    ]
    if max_parallel_per_repo is not None:
        lines.append(f"max_parallel_per_repo: {max_parallel_per_repo}")
    lines.append("repos:")
    for name, repo in repos:
        lines += [
            f"  - name: {name}",
            f"    path: {repo}",
            f'    test_command: "{test_command}"',
            "    test_timeout_s: 60",
        ]
    argv = ", ".join(f'"{a}"' for a in agent_argv)
    lines += [
        "agents:",
        "  bench:",
        "    kind: command",
        f"    argv: [{argv}]",
        "routing:",
        "  default: [bench]",
        "  max_attempts: 2",
        "  backoff_base_s: 1",
        "  backoff_cap_s: 2",
        "limits:",
        "  idle_timeout_minutes: 2",
        "  max_runtime_minutes: 5",
        "  kill_grace_s: 2",
        "  shutdown_grace_s: 5",
        "sandbox:",  # the agent times itself into a folder outside its worktree; the sandbox's cost is `sandbox`'s
        "  mode: 'off'",
    ]
    if jobs:
        lines.append("jobs:")
        lines += [f"  {name}: {spec}" for name, spec in jobs.items()]
    lines.append(f"log_level: {log_level}")
    path.write_text("\n".join(lines) + "\n")
    return path


# ── timing helpers ───────────────────────────────────────────────────────────────────────────────────


class LagSampler:
    """Event-loop lag: how late a 10 ms ``asyncio.sleep`` wakes up, sampled continuously while running."""

    def __init__(self, interval: float = 0.010) -> None:
        self.interval = interval
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        clock = time.perf_counter
        while True:
            t = clock()
            await asyncio.sleep(self.interval)
            self.samples.append(max(0.0, clock() - t - self.interval) * 1000)

    async def stop(self) -> list[float]:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        return self.samples

    def take(self) -> list[float]:
        """The samples so far, and start afresh."""
        out, self.samples = self.samples, []
        return out


async def run_cmd(argv: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None) -> float:
    """Run a command from the loop and return its wall time in seconds; raise on a non-zero exit."""
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} exited {proc.returncode}: {(err or out).decode()[-800:]}")
    return elapsed


async def wait_until(predicate: Callable[[], bool], timeout: float, what: str, step: float = 0.005) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(step)


def configure_logging(path: Path, level: str = "info") -> None:
    """Send the in-process daemon's structured log to a file (as under systemd, JSON lines at ``level``)."""
    from agentos import logging as alog

    path.parent.mkdir(parents=True, exist_ok=True)
    stream = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115  # lives as long as the process
    alog.configure(level, stream=stream, json=True)


def run_alone(run: Callable[[Context], BenchResult], argv: list[str] | None = None) -> int:
    """One benchmark on its own (``python -m bench.NAME [--quick]``): a scratch dir, removed after, and its table."""
    import shutil
    import tempfile

    args = argv if argv is not None else sys.argv[1:]
    quick = "--quick" in args
    workdir = Path(tempfile.mkdtemp(prefix="agentos-bench-"))
    log_dir = Path(__file__).resolve().parent / "results" / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    ctx = Context(quick=quick, workdir=workdir, log_dir=log_dir, cores=cores())
    t0 = time.perf_counter()
    try:
        result = run(ctx)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result.duration_s = time.perf_counter() - t0
    print(render(result, ctx.cores, "quick" if quick else "full"))
    return 0
