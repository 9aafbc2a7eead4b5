"""``python -m bench [--quick] [--only NAME] [--keep]``: run the benchmarks, print tables, write JSON.

Every figure is printed next to a baseline measured in the same run and, where issue 10 sets one, its
target marked met or MISSED. A missed target never fails the run; a benchmark that crashes does (exit 1).
Results go to ``bench/results/latest.json`` (and a timestamped copy); with ``--only`` the other
benchmarks' entries already in ``latest.json`` are kept.
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench._common import RESULTS_DIR, BenchResult, Context, cores, machine_info, render

BENCHMARKS = (
    "overhead",
    "dispatch",
    "throughput",
    "loop_health",
    "state_scale",
    "github_idle",
    "webhook",
    "egress",
    "sandbox",
    "ray",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs (about 2 minutes on 2 cores)")
    parser.add_argument(
        "--only", action="append", default=[], metavar="NAME", help=f"run only these ({', '.join(BENCHMARKS)})"
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (repos, state, logs)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "latest.json", help="where to write the JSON")
    args = parser.parse_args(argv)

    names = [n for item in args.only for n in item.split(",") if n] or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")

    mode = "quick" if args.quick else "full"
    workdir = Path(tempfile.mkdtemp(prefix="agentos-bench-"))
    log_dir = RESULTS_DIR / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    ctx = Context(quick=args.quick, workdir=workdir, log_dir=log_dir, cores=cores())
    machine = machine_info(workdir)
    print(
        f"agentos bench ({mode}): {machine['cores']} cores ({machine['cpu'] or 'unknown cpu'}), "
        f"python {machine['python']}, {machine['git']}, scratch {workdir} ({machine['workdir_fs']})",
        flush=True,
    )
    started = time.perf_counter()
    results: list[BenchResult] = []
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        t0 = time.perf_counter()
        try:
            result: BenchResult = module.run(ctx)
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            result = BenchResult(name, getattr(module, "TITLE", name))
            result.error = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        result.duration_s = time.perf_counter() - t0
        results.append(result)
        print("\n" + render(result, ctx.cores, mode), flush=True)
    total = time.perf_counter() - started

    _write(args.out, mode, machine, results, total)
    print(f"\n{len(results)} benchmarks in {total:.0f}s; JSON in {args.out}; logs in {log_dir}")
    if args.keep:
        print(f"scratch kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if any(r.error for r in results) else 0


def _write(out: Path, mode: str, machine: dict[str, Any], results: list[BenchResult], total: float) -> None:
    now = datetime.now(UTC).isoformat(timespec="seconds")
    doc: dict[str, Any] = {"schema": 1, "benchmarks": {}}
    if out.is_file():
        try:
            old = json.loads(out.read_text())
            if isinstance(old, dict) and old.get("mode") == mode:
                doc["benchmarks"] = dict(old.get("benchmarks", {}))
        except ValueError:
            pass
    doc.update({"written_at": now, "mode": mode, "machine": machine, "total_s": round(total, 1)})
    for r in results:
        doc["benchmarks"][r.name] = {**r.to_json(), "ran_at": now, "mode": mode}
    out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    out.write_text(text)
    stamp = now.replace(":", "").replace("-", "")
    (out.parent / f"{stamp}-{mode}.json").write_text(text)


if __name__ == "__main__":
    sys.exit(main())
