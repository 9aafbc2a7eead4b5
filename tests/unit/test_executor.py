"""The executor's policies and bookkeeping: agent choice, counted attempts, escalation notes, recovery."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agentos.config import Config
from agentos.executor import counted_attempts, safe_id
from agentos.forge.base import marker
from agentos.graph import Attempt, Task, TaskStatus
from agentos.notices import escalation_comment as _escalation_comment
from agentos.running import RunningAttempts
from agentos.testing import Rig, build, start_attempt

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def attempt(n: int, agent: str, outcome: str, blocker: str | None = None, **fields: Any) -> Attempt:
    return Attempt(number=n, agent=agent, started_at=NOW, outcome=outcome, blocker_code=blocker, **fields)  # type: ignore[arg-type]


def make_task(*attempts: Attempt, status: TaskStatus = TaskStatus.RETRYING, **fields: Any) -> Task:
    return Task(
        id="calc#4",
        repo="calc",
        issue=4,
        title="Fix it",
        status=status,
        attempts=list(attempts),
        created_at=NOW,
        updated_at=NOW,
        **fields,
    )


class RecordingAttempts(RunningAttempts):
    """Records what would be launched instead of running it."""

    def __init__(self) -> None:
        super().__init__()
        self.launched: list[str] = []

    def launch(self, task_id: str, coro: Any) -> None:
        self.launched.append(task_id)
        coro.close()


def make_rig(tmp_path: Path, running: RunningAttempts | None = None) -> Rig:
    config = Config.model_validate(
        {
            "state_dir": str(tmp_path / "state"),
            "repos": [{"name": "calc", "path": str(tmp_path / "calc"), "test_command": "true"}],
            "agents": {name: {"kind": "claude"} for name in ("claude", "codex", "gemini")},
            "routing": {"default": ["claude", "codex", "gemini"]},
        }
    )
    rig = build(config, now=NOW, running=running)
    rig.forge.add_issue("calc", 4, "Fix it")
    return rig


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return make_rig(tmp_path)


class TestCountedAttempts:
    def test_interruptions_and_usage_limits_burn_no_attempt(self) -> None:
        """A daemon restart, a running attempt or a usage limit does not count toward max_attempts."""
        task = make_task(
            attempt(1, "claude", "failed", "quota_limited"),
            attempt(2, "codex", "interrupted"),
            attempt(3, "codex", "partial", "test_failure"),
            attempt(4, "codex", "failed", "timeout"),
            attempt(5, "gemini", "running"),
        )
        assert counted_attempts(task) == 2


class TestChooseAgent:
    def test_the_next_agent_after_the_ones_that_failed(self, rig: Rig) -> None:
        """The chain is walked in order: an agent that failed this task is not asked again while others remain."""
        ex = rig.executor
        assert ex.choose_agent(make_task()) == "claude"
        assert ex.choose_agent(make_task(attempt(1, "claude", "partial", "test_failure"))) == "codex"
        assert ex.choose_agent(make_task(attempt(1, "claude", "interrupted"))) == "claude"

    def test_the_preferred_agent_goes_first(self, rig: Rig) -> None:
        """`Agent: gemini` in the issue puts gemini at the head of the chain."""
        assert rig.executor.choose_agent(make_task(agent="gemini")) == "gemini"

    def test_paused_agents_are_skipped_until_their_reset(self, rig: Rig) -> None:
        """An agent paused by a usage limit is skipped; with every agent paused there is none."""
        ex = rig.executor
        rig.state.paused_agents = {"claude": NOW + timedelta(hours=1), "codex": NOW - timedelta(seconds=1)}
        assert ex.choose_agent(make_task()) == "codex"
        rig.state.paused_agents = {a: NOW + timedelta(hours=1) for a in ("claude", "codex", "gemini")}
        assert ex.choose_agent(make_task()) is None

    def test_when_every_agent_failed_the_chain_rotates(self, rig: Rig) -> None:
        """After the whole chain failed, attempts rotate through it again."""
        ex = rig.executor
        tried = [attempt(i + 1, a, "blocked", "missing_context") for i, a in enumerate(["claude", "codex", "gemini"])]
        assert ex.choose_agent(make_task(*tried)) == "claude"
        assert ex.choose_agent(make_task(*tried, attempt(4, "claude", "blocked", "x"))) == "codex"


class TestStart:
    @pytest.mark.parametrize(("generation", "branch"), [(1, "agentos/4-fix-it"), (3, "agentos/4-fix-it-g3")])
    def test_branch_per_generation(self, tmp_path: Path, generation: int, branch: str) -> None:
        """The first generation works on agentos/<issue>-<slug>; a later one on a fresh branch of its own."""
        attempts = RecordingAttempts()
        rig = make_rig(tmp_path, attempts)
        ex = rig.executor
        task = make_task(status=TaskStatus.QUEUED, generation=generation)
        assert ex.start(task)
        assert task.branch == branch
        assert task.status is TaskStatus.RUNNING
        assert task.attempts[0].run_dir == str(rig.config.state_path / "runs" / "calc-4" / "1")
        assert attempts.launched == ["calc#4"]
        assert rig.journal.types() == ["->running"]


class TestEscalationComment:
    def test_what_was_tried_the_blockers_and_the_next_steps(self, tmp_path: Path) -> None:
        """The note has a row per attempt, the last error, the agent's manual and next steps, and how to retry."""
        run = tmp_path / "2"
        run.mkdir()
        (run / ".agent_result.md").write_text(
            "STATUS: blocked\nBLOCKER_CODE: missing_credentials\nSUMMARY: no key\n"
            "NEXT_STEP: add the key\nMANUAL_STEPS: create a deploy key | paste it\n"
        )
        task = make_task(
            attempt(1, "claude", "failed", "timeout", error="idle limit reached; last output: a | b"),
            attempt(2, "codex", "blocked", "missing_credentials", error="no key", run_dir=str(run)),
            status=TaskStatus.BLOCKED,
            last_blocker="missing_credentials",
        )
        note = _escalation_comment(task)
        assert "after 2 attempts" in note
        assert "| 1 | `claude` | failed | `timeout` | idle limit reached; last output: a \\| b |" in note
        assert "| 2 | `codex` | blocked | `missing_credentials` | no key |" in note
        assert "Last error:" in note and "no key" in note
        assert "**Manual steps** (from the agent):" in note and "create a deploy key | paste it" in note
        assert "**The agent's next step:** add the key" in note
        assert "agentos ctl task retry calc#4" in note

    def test_no_result_file_no_steps(self) -> None:
        """Without a result file the note still says what was tried and how to retry."""
        note = _escalation_comment(make_task(attempt(1, "claude", "failed", "invalid_result_contract")))
        assert "Manual steps" not in note and "agent's next step" not in note
        assert "`invalid_result_contract`" in note


class TestRecover:
    async def test_a_running_attempt_is_interrupted_and_the_task_requeued(self, rig: Rig) -> None:
        """An attempt that was running when the daemon died ends as interrupted; its task is queued again."""
        task = make_task(status=TaskStatus.QUEUED)
        start_attempt(task, "claude", NOW)
        rig.graph.put(task)
        await rig.executor.recover()
        assert task.status is TaskStatus.QUEUED
        assert task.attempts[0].outcome == "interrupted"
        assert counted_attempts(task) == 0

    async def test_an_unannounced_escalation_is_announced_once(self, rig: Rig) -> None:
        """A task that was escalated but whose comment was never posted (crash) gets it at start, once."""
        task = make_task(attempt(1, "claude", "blocked", "missing_context"), status=TaskStatus.BLOCKED)
        rig.graph.put(task)
        await rig.executor.recover()
        await rig.executor.recover()
        [comment] = rig.forge.comment_bodies("calc", 4)
        assert marker("escalation:calc#4:1") in comment
        assert [c for c in rig.forge.changes if c[0] == "comment"] == [("comment", "calc", "4", "escalation:calc#4:1")]
        assert (rig.config.state_path / "runs" / safe_id(task.id) / "escalated-1").is_file()
