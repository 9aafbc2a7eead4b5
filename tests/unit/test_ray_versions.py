"""The Ray runner refuses a node whose agentos or Ray version differs from the daemon's, in one line, told once."""

from __future__ import annotations

import pytest

pytest.importorskip("ray", reason="ray is not installed: pip install 'agentos[ray]'")

import ray

import agentos
from agentos.config import RunnerConfig
from agentos.runners.port import RunnerUnavailable
from agentos.runners.ray_actor import NodeInfo
from agentos.runners.ray_runner import RayRunner, probe
from agentos.testing import RecordingNotifier


def test_version_skew_is_refused_in_one_line_and_told_once() -> None:
    notes = RecordingNotifier()
    runner = RayRunner(RunnerConfig(kind="ray"), notify=notes, fallback=None)
    old = NodeInfo(node="f" * 56, host="worker-2", agentos="0.0.1", ray=ray.__version__)
    for _ in range(2):
        with pytest.raises(RunnerUnavailable) as caught:
            runner._check_versions(old)
    line = str(caught.value)
    assert "\n" not in line and "worker-2" in line and "0.0.1" in line and agentos.__version__ in line
    assert len(notes.sent) == 1 and runner.problem == line
    assert not runner.connected
    runner._check_versions(NodeInfo(node="a", host="h", agentos=agentos.__version__, ray=ray.__version__))


def test_a_head_that_takes_no_connection_is_named_in_seconds() -> None:
    assert probe("127.0.0.1:1") is not None
    assert probe("ray://127.0.0.1:1") is not None
    assert probe("auto") is None
