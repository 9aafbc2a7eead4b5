"""cgroup v2 under a delegated unit (``Delegate=yes``): the daemon's cgroup may hand controllers to its children
only with no process in it, so the daemon first moves itself into a leaf (:func:`agentos.runners.cgroups._v2_parent`).

This host has cgroup v1 (tests/integration/test_sandbox.py runs the real limits there); here a folder stands in for
the v2 tree, with the kernel's one rule that matters (writing ``cgroup.subtree_control`` of a cgroup with
processes in it fails with ``EBUSY``) and the move of a pid between ``cgroup.procs`` files played by :func:`write`.
"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from agentos.runners import cgroups


@pytest.fixture
def unit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The unit's delegated cgroup with the daemon (and one git process) in it, nothing enabled for children."""
    root = tmp_path / "cgroup"
    unit = root / "system.slice" / "agentos.service"
    unit.mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpu memory pids\n")
    (unit / "cgroup.procs").write_text("100\n101\n")
    (unit / "cgroup.subtree_control").write_text("")
    monkeypatch.setattr(cgroups, "CGROUP_ROOT", root)
    monkeypatch.setattr(cgroups, "_own", lambda controller: _member(unit))
    monkeypatch.setattr(cgroups, "_ours", lambda pid: pid in (100, 101))  # the daemon and its git child

    def write(path: Path, value: str) -> None:
        if path.name == "cgroup.subtree_control" and (path.parent / "cgroup.procs").read_text().split():
            raise OSError(errno.EBUSY, "Device or resource busy")
        if path.name == "cgroup.procs":  # a move: the pid leaves its old cgroup
            for procs in root.rglob("cgroup.procs"):
                procs.write_text("".join(f"{p}\n" for p in procs.read_text().split() if p != value))
            value = (path.read_text() if path.exists() else "") + value + "\n"
        if path.name == "cgroup.subtree_control":
            value = " ".join(sorted({*path.read_text().split(), *(c[1:] for c in value.split())}))
        path.write_text(value)

    monkeypatch.setattr(cgroups, "_write", write)
    return unit


def _member(unit: Path) -> Path:
    """Where the daemon is: the leaf once it moved there."""
    leaf = unit / cgroups.DAEMON_LEAF
    return leaf if (leaf / "cgroup.procs").exists() and "100" in (leaf / "cgroup.procs").read_text() else unit


def test_the_daemon_moves_into_a_leaf_and_runs_get_limited_siblings(unit: Path) -> None:
    group = cgroups.create("app#1/1", memory_mb=64, max_processes=32)

    assert group is not None and group.version == 2
    [run] = group.dirs
    assert run.parent == unit and run.name.startswith("agentos-app-1-1-")
    assert (unit / cgroups.DAEMON_LEAF / "cgroup.procs").read_text().split() == ["100", "101"]
    assert (unit / "cgroup.procs").read_text().split() == []
    assert set((unit / "cgroup.subtree_control").read_text().split()) == {"memory", "pids"}
    assert (run / "memory.max").read_text() == str(64 << 20) and (run / "pids.max").read_text() == "32"


def test_the_second_run_finds_the_leaf_and_moves_nothing(unit: Path) -> None:
    first = cgroups.create("app#1/1", memory_mb=64, max_processes=32)
    second = cgroups.create("app#2/1", memory_mb=64, max_processes=32)

    assert first is not None and second is not None
    assert first.dirs[0].parent == second.dirs[0].parent == unit  # not under the leaf the daemon now sits in


def test_a_cgroup_holding_other_processes_is_left_alone(unit: Path) -> None:
    """Not the daemon's own cgroup (``agentos doctor`` in a login session, a unit without ``Delegate=``): a process
    that is not agentos's is in it, so nothing is moved and the limits are skipped (logged once)."""
    (unit / "cgroup.procs").write_text("100\n1\n")  # pid 1 exists, and is nobody agentos started

    assert cgroups.create("app#1/1", memory_mb=64, max_processes=32) is None
    assert (unit / "cgroup.procs").read_text().split() == ["100", "1"]
    assert not (unit / cgroups.DAEMON_LEAF).exists()
