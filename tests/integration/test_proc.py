"""The process layer over real processes: shell commands, their process groups, the kill policy."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from agentos.proc import run_shell
from tests.waiting import wait_until_async

ENV = {"PATH": os.defpath}


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def _gone(pid: int, within: float = 10) -> bool:
    return await wait_until_async(lambda: not _alive(pid), what=f"process {pid} to be gone", timeout=within)


class TestRunShell:
    async def test_timeout_kills_the_whole_group(self, tmp_path: Path) -> None:
        """A timed-out command's children die with it."""
        pid_file = tmp_path / "pid"
        # the limit leaves a loaded machine time to start the shell and write the pid before it is killed
        result = await run_shell(f"sleep 30 & echo $! > {pid_file}; wait", cwd=tmp_path, env=ENV, timeout=2)
        assert result.timed_out and result.code == -1
        assert await _gone(int(pid_file.read_text()))

    async def test_a_command_ignoring_sigterm_is_killed(self, tmp_path: Path) -> None:
        """A command that ignores SIGTERM is SIGKILLed after the grace period (the escalation is logged for the
        operator), and still reported as timed out."""
        ready = tmp_path / "ready"
        cmd = f"trap '' TERM; touch {ready}; while :; do sleep 1; done"
        with capture_logs() as logs:
            result = await run_shell(cmd, cwd=tmp_path, env=ENV, timeout=3, kill_grace_s=0.2)
        assert ready.exists(), "the command never started"
        assert result.timed_out and result.code == -1
        escalations = [e for e in logs if e["event"] == "process_kill_escalated"]
        assert [e["what"] for e in escalations] == ["command"]

    async def test_leftovers_of_a_finished_command_are_killed(self, tmp_path: Path) -> None:
        """What a command leaves running in the background is killed when it exits, and does not hold it up."""
        pid_file = tmp_path / "pid"
        cmd = f"sleep 30 > /dev/null 2>&1 & echo $! > {pid_file}; echo done"
        result = await run_shell(cmd, cwd=tmp_path, env=ENV, timeout=60)
        assert result.ok and "done" in result.output_tail
        assert result.duration_s < 30
        assert await _gone(int(pid_file.read_text()))

    async def test_a_background_child_holding_the_output_does_not_make_it_time_out(self, tmp_path: Path) -> None:
        """A child still holding stdout after the shell exited is killed; the command counts as finished."""
        result = await run_shell("sleep 30 & echo started", cwd=tmp_path, env=ENV, timeout=20)
        assert result.ok and not result.timed_out and "started" in result.output_tail

    async def test_output_tail_is_bounded(self, tmp_path: Path) -> None:
        """Only the tail of a long output is kept."""
        result = await run_shell("seq 1 100000", cwd=tmp_path, env=ENV, timeout=30, tail_bytes=1000)
        assert result.ok
        assert len(result.output_tail) <= 1000 and result.output_tail.rstrip().endswith("100000")

    async def test_exactly_the_given_environment(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """The command sees the environment it was given and nothing of the daemon's."""
        monkeypatch.setenv("AGENTOS_PROC_TEST_SECRET", "x")
        result = await run_shell("env", cwd=tmp_path, env={**ENV, "ONLY": "this"}, timeout=30)
        assert "ONLY=this" in result.output_tail and "AGENTOS_PROC_TEST_SECRET" not in result.output_tail
