"""THE crash test: a writer process is SIGKILLed at random moments, and every change it had
acknowledged is still there when the state is loaded again.

The writer is a child forked from the test process (a fresh interpreter costs about 200 ms to
start and import, which would make 200+ rounds far too slow). It is its own process with its own
Store, lock and file descriptors, so a SIGKILL does to it exactly what it does to the daemon. It
prints ``<last seq> <lines> <daemon changed>`` on its stdout pipe after each append returns, and
``S``/``s`` around each snapshot so the parent can tell where a kill landed.

Seq ``s`` always sets task ``crash#<s % 37>``'s note to ``s``, so the parent can check any
acknowledged seq against the loaded state without knowing what the writer did.
"""

from __future__ import annotations

import os
import random
import secrets
import select
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agentos.graph import Event, Task
from agentos.store import NOTIFIED_KEEP, JobRun, Store

ROUNDS = 220
PHASE = 20  # rounds per phase; phases alternate append-heavy and snapshot-heavy
APPEND_HEAVY_EVERY = 300  # journal lines before a compaction
SNAPSHOT_HEAVY_EVERY = 2
N_TASKS = 37


def task_id(seq: int) -> str:
    return f"crash#{seq % N_TASKS}"


def writer(state_dir: Path, out: int, every: int, seed: int) -> None:
    """The child: load, then append random batches forever, acknowledging each one on ``out``."""
    rng = random.Random(seed)
    store = Store(state_dir)
    store.lock()
    graph, daemon = store.load()
    os.write(out, b"L\n")
    while True:
        base = store.seq
        lines = rng.randint(1, 4)
        upsert_last = lines >= 2 and rng.random() < 0.3
        now = datetime.now(UTC)
        events, tasks = [], []
        for i in range(1, lines + 1):
            seq = base + i
            task = graph.find(task_id(seq)) or Task(
                id=task_id(seq), repo="crash", issue=seq % N_TASKS, title="crash", created_at=now, updated_at=now
            )
            task.note = str(seq)
            task.updated_at = now
            graph.put(task)
            tasks.append(task)
            if not (upsert_last and i == lines):
                events.append(Event(type="touch", task=task.id, ts=now, data={"seq": seq}))
        last = base + lines
        daemon_changed = rng.random() < 0.3
        if daemon_changed:
            daemon.mark_notified(f"k{last}")
            daemon.job_runs["crash"] = JobRun(last_run=now, runs=last)
        if store.append(events, tasks, daemon if daemon_changed else None) != last:
            os._exit(3)
        os.write(out, f"{last} {lines} {int(daemon_changed)}\n".encode())
        if store.journal_lines > every:
            os.write(out, b"S\n")
            store.snapshot(graph, daemon)
            os.write(out, b"s\n")


def fork_writer(state_dir: Path, every: int, seed: int) -> tuple[int, int]:
    """Start a writer child; returns its pid and the read end of its stdout pipe."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(read_end)
            writer(state_dir, write_end, every, seed)
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    return pid, read_end


def read_until(fd: int, deadline: float) -> bytes:
    """Everything the child writes before ``deadline`` (monotonic), or until EOF."""
    chunks = []
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


@dataclass
class Tally:
    """What the rounds did, for the assertions on coverage and the failure messages."""

    acked: int = 0
    killed_loading: int = 0
    killed_appending: int = 0
    killed_snapshotting: int = 0
    floor: dict[str, int] = field(default_factory=dict)  # task id → highest acknowledged seq that set it
    daemon_floor: int = 0
    keys: list[str] = field(default_factory=list)  # acknowledged notification keys, oldest first


def one_round(state_dir: Path, every: int, rng: random.Random, tally: Tally, locked: bool, where: str) -> None:
    pid, out = fork_writer(state_dir, every, rng.getrandbits(32))
    try:
        output = read_until(out, time.monotonic() + rng.uniform(0.002, 0.05))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        output += read_all(out)
    finally:
        os.close(out)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, f"{where}: writer died on its own"

    state = "loading"
    for line in output.decode().splitlines():
        if line == "L":
            state = "appending"
        elif line == "S":
            state = "snapshotting"
        elif line == "s":
            state = "appending"
        else:
            last, lines, daemon_changed = map(int, line.split())
            tally.acked += 1
            for seq in range(last - lines + 1, last + 1):
                tally.floor[task_id(seq)] = max(tally.floor.get(task_id(seq), 0), seq)
            if daemon_changed:
                tally.daemon_floor = last
                tally.keys.append(f"k{last}")
    setattr(tally, f"killed_{state}", getattr(tally, f"killed_{state}") + 1)

    store = Store(state_dir)
    if locked:
        store.lock()  # a restarted daemon: repairs the tail as it loads
    try:
        graph, daemon = store.load()
    finally:
        store.close()
    assert store.seq >= max(tally.floor.values(), default=0), f"{where}: acknowledged seqs lost"
    for tid, seq in tally.floor.items():
        note = int(graph.get(tid).note)
        assert seq <= note <= store.seq, f"{where}: {tid} note {note}, acknowledged {seq}, store seq {store.seq}"
    if tally.daemon_floor:
        assert daemon.job_runs["crash"].runs >= tally.daemon_floor, f"{where}: daemon change lost"
        missing = set(tally.keys[-NOTIFIED_KEEP // 2 :]) - set(daemon.notified)
        assert not missing, f"{where}: notification keys lost: {sorted(missing)[:5]}"


@pytest.mark.slow
class TestStoreCrash:
    """The store under SIGKILL."""

    def test_acknowledged_changes_survive_sigkill(self, tmp_path: Path) -> None:
        """Across 220 random SIGKILLs in append-heavy and snapshot-heavy phases, the state always loads and
        holds every acknowledged change, and the history in events/ + journal has every seq exactly once."""
        seed = int(os.environ.get("AGENTOS_CRASH_SEED", secrets.randbits(32)))
        rng = random.Random(seed)
        state_dir = tmp_path / "state"
        tally = Tally()
        started = time.monotonic()
        for round_no in range(ROUNDS):
            every = SNAPSHOT_HEAVY_EVERY if (round_no // PHASE) % 2 else APPEND_HEAVY_EVERY
            where = f"seed {seed} round {round_no} (compact every {every})"
            one_round(state_dir, every, rng, tally, locked=round_no % 2 == 0, where=where)
        elapsed = time.monotonic() - started

        final = Store(state_dir)
        final.load()
        history = [r.seq for r in final.iter_records(datetime(2000, 1, 1, tzinfo=UTC), include_state=True)]
        assert history == list(range(1, final.seq + 1)), f"seed {seed}: history has holes or is out of order"
        rotated = [
            line.split(b",", 1)[0]
            for path in sorted((state_dir / "events").glob("events-*.jsonl"))
            for line in path.read_bytes().splitlines()
        ]
        assert len(rotated) == len(set(rotated)), f"seed {seed}: a seq was rotated into events/ twice"

        print(
            f"\ncrash test seed {seed}: {ROUNDS} kills in {elapsed:.1f} s, {tally.acked} acknowledged appends,"
            f" final seq {final.seq}; killed while loading {tally.killed_loading}, appending"
            f" {tally.killed_appending}, snapshotting {tally.killed_snapshotting}",
            file=sys.stderr,
        )
        assert tally.killed_appending >= ROUNDS // 4, f"seed {seed}: too few kills landed in appends"
        assert tally.killed_snapshotting >= 5, f"seed {seed}: too few kills landed in snapshots"
