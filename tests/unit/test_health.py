"""The agent health gate: rolling success per (agent, task type) from a synthetic task history with explicit
datetimes, the verdicts at the configured thresholds, and the pool skipping (and failing open) with the
figures journalled."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agentos.agents.health import AgentHealth, Window, assess, gate_chain, health_table
from agentos.config import HealthGate
from agentos.graph import Attempt, Task, TaskStatus, TaskType
from tests.unit.test_pool import Pool

NOW = datetime(2025, 3, 14, 12, 0, tzinfo=UTC)
GATE = HealthGate()


def run(
    agent: str, outcome: str = "failed", *, ago: timedelta = timedelta(hours=1), blocker: str | None = None
) -> Attempt:
    """One ended attempt ``ago`` before NOW."""
    ended = NOW - ago
    if blocker is None and outcome != "complete":
        blocker = "missing_context"
    return Attempt(
        number=1,
        agent=agent,
        started_at=ended - timedelta(minutes=5),
        ended_at=ended,
        outcome=outcome,  # type: ignore[arg-type]
        blocker_code=blocker,
    )


def history(*runs: Attempt, type_: TaskType = "implementation", start: int = 1) -> list[Task]:
    """One task per attempt (issues ``start``…), each updated when its attempt ended."""
    tasks = []
    for n, attempt in enumerate(runs, start):
        assert attempt.ended_at is not None
        tasks.append(
            Task(
                id=f"calc#{n}",
                repo="calc",
                issue=n,
                title=f"Task {n}",
                type=type_,
                status=TaskStatus.BLOCKED,
                attempts=[attempt],
                created_at=attempt.started_at,
                updated_at=attempt.ended_at,
            )
        )
    return tasks


class TestHealthTable:
    def test_three_failures_this_week_gate_the_agent_for_that_type_only(self) -> None:
        """0 of 3 in 7 days is at or under 25% over 3+ attempts: gated for implementation, not for docs."""
        tasks = history(*(run("claude", ago=timedelta(days=d)) for d in (2, 3, 6)))
        tasks += history(run("claude", "complete"), type_="docs", start=10)
        table = health_table(tasks, NOW, GATE)
        impl = table[("claude", "implementation")]
        assert impl.week == Window(3, 0) and impl.day == Window(0, 0)
        assert impl.reason == "last 7 days 0/3 (0%) succeeded: at or under 25% over 3+ attempts"
        assert not table[("claude", "docs")].gated

    @pytest.mark.parametrize(
        ("outcomes", "gated"),
        [
            pytest.param(["failed", "failed"], False, id="two-attempts-too-few"),
            pytest.param(["failed", "failed", "failed", "complete"], True, id="1-of-4-is-25pc"),
            pytest.param(["failed", "failed", "complete"], False, id="1-of-3-is-33pc"),
            pytest.param(["partial", "blocked", "failed"], True, id="partial-is-no-success"),
        ],
    )
    def test_the_week_threshold(self, outcomes: list[str], gated: bool) -> None:
        """At or under week_max_rate over at least week_min_attempts, and nothing else, gates."""
        tasks = history(*(run("codex", o, ago=timedelta(days=2)) for o in outcomes))
        assert health_table(tasks, NOW, GATE)[("codex", "implementation")].gated is gated

    def test_older_than_a_week_does_not_count(self) -> None:
        """Attempts that ended more than 7 days ago are out of every window."""
        tasks = history(*(run("claude", ago=timedelta(days=7, minutes=1)) for _ in range(3)))
        tasks += history(run("claude", ago=timedelta(days=6)), start=10)
        assert health_table(tasks, NOW, GATE)[("claude", "implementation")].week == Window(1, 0)

    @pytest.mark.parametrize(
        "attempt",
        [
            pytest.param(run("claude", blocker="quota_limited"), id="usage-limit"),
            pytest.param(run("claude", blocker="environment_failure"), id="environment"),
            pytest.param(run("claude", blocker="runner_lost"), id="runner-lost"),
            pytest.param(run("claude", "interrupted", blocker=None), id="interrupted"),
            pytest.param(Attempt(number=1, agent="claude", started_at=NOW), id="running"),
        ],
    )
    def test_transient_failures_are_not_counted(self, attempt: Attempt) -> None:
        """A usage limit, the environment, a lost runner, a restart or a running attempt says nothing of the
        agent: three of them leave it with no counted attempt."""
        tasks = [
            Task(id=f"calc#{n}", repo="calc", issue=n, title="t", attempts=[attempt], created_at=NOW, updated_at=NOW)
            for n in (1, 2, 3)
        ]
        assert health_table(tasks, NOW, GATE) == {}

    def test_the_day_threshold_needs_its_own_count(self) -> None:
        """5 of 10 in the last 24 h is at or under 50% over 10+ attempts; 9 attempts are too few."""
        outcomes = ["complete"] * 5 + ["failed"] * 5
        tasks = history(*(run("gemini", o, ago=timedelta(hours=2)) for o in outcomes))
        health = health_table(tasks, NOW, GATE)[("gemini", "implementation")]
        assert health.day == Window(10, 5)
        assert health.reason == "last 24 h 5/10 (50%) succeeded: at or under 50% over 10+ attempts"
        assert not health_table(tasks[1:], NOW, GATE)[("gemini", "implementation")].gated

    def test_thresholds_come_from_the_settings(self) -> None:
        """A stricter week_min_attempts lets the same figures through; a higher rate gates a better agent."""
        tasks = history(*(run("claude", o) for o in ("failed", "failed", "complete")))
        assert not health_table(tasks, NOW, HealthGate(week_min_attempts=4))[("claude", "implementation")].gated
        assert health_table(tasks, NOW, HealthGate(week_max_rate=0.5))[("claude", "implementation")].gated

    def test_assess_reads_the_day_when_the_week_passes(self) -> None:
        """The week over its rate, the day under its own: gated for the day."""
        assert assess(Window(20, 10), Window(10, 4), GATE) is not None
        assert assess(Window(20, 10), Window(10, 6), GATE) is None


class TestGateChain:
    def table(self, *gated: str) -> dict[tuple[str, str], AgentHealth]:
        return {
            (a, "implementation"): AgentHealth(
                a, "implementation", Window(3, 0), Window(), "why" if a in gated else None
            )
            for a in ("claude", "codex")
        }

    def test_a_gated_agent_is_skipped(self) -> None:
        gate = gate_chain(["claude", "codex"], "implementation", self.table("claude"))
        assert gate.usable == ["codex"] and [h.agent for h in gate.skipped] == ["claude"] and not gate.opened

    def test_every_agent_gated_opens_the_gate(self) -> None:
        """When the gate would leave no agent it skips none and says it opened."""
        gate = gate_chain(["claude", "codex"], "implementation", self.table("claude", "codex"))
        assert gate.usable == ["claude", "codex"] and gate.opened and len(gate.skipped) == 2

    def test_another_type_is_not_gated(self) -> None:
        assert gate_chain(["claude"], "docs", self.table("claude")).usable == ["claude"]


def failing(p: Pool, agent: str, n: int = 3) -> None:
    for t in history(*(run(agent, ago=timedelta(hours=k + 1)) for k in range(n)), start=100 + len(p.graph)):
        p.graph.put(t)


def queued(issue: int = 1) -> Task:
    return Task(id=f"calc#{issue}", repo="calc", issue=issue, title="New", created_at=NOW, updated_at=NOW)


class TestPoolGate:
    def test_the_pool_skips_a_failing_agent_and_journals_the_figures(self) -> None:
        """claude failed 3 of 3: the next task goes to codex, and agent_gated carries claude's figures."""
        p = Pool(NOW)
        failing(p, "claude")
        assert p.pool.choose(queued()) == "codex"
        [event] = [e for e in p.journal.events if e.type == "agent_gated"]
        assert event.task == "calc#1"
        assert event.data["agent"] == "claude" and event.data["action"] == "skipped"
        assert (event.data["week_attempts"], event.data["week_successes"]) == (3, 0)
        assert p.notify.sent == []

    def test_every_agent_failing_opens_the_gate_and_says_so_once_a_day(self) -> None:
        """All three agents failing: the chain's first runs anyway, agent_gated says opened, one notice a day."""
        p = Pool(NOW)
        for agent in ("claude", "codex", "gemini"):
            failing(p, agent)
        assert p.pool.choose(queued(1)) == "claude"
        assert p.pool.choose(queued(2)) == "claude"
        events = [e for e in p.journal.events if e.type == "agent_gated"]
        assert len(events) == 6 and {e.data["action"] for e in events} == {"opened"}
        assert len(p.notify.sent) == 1 and "Every agent for implementation tasks is failing" in p.notify.sent[0].text
        p.clock.now = NOW + timedelta(days=1)
        failing(p, "claude")  # still failing the next day (the older ones still in the week)
        p.pool.choose(queued(3))
        assert len(p.notify.sent) == 2

    def test_disabled_gate_and_an_operators_pick_are_not_gated(self) -> None:
        """routing.health_gate.enabled false routes as before; `task retry --agent` wins over the gate."""
        p = Pool(NOW)
        failing(p, "claude")
        rerouted = queued()
        rerouted.reroute = "claude"
        assert p.pool.choose(rerouted) == "claude"
        config = p.settings.config
        p.settings.config = config.model_copy(
            update={"routing": config.routing.model_copy(update={"health_gate": HealthGate(enabled=False)})}
        )
        assert p.pool.choose(queued()) == "claude"
        assert [e for e in p.journal.events if e.type == "agent_gated"] == []

    def test_the_view_shows_each_agents_figures_and_gate(self) -> None:
        """`ctl agents` rows carry per task type the figures and whether the gate skips the agent."""
        p = Pool(NOW)
        failing(p, "claude")
        rows = {r["agent"]: r for r in p.pool.view()}
        [health] = rows["claude"]["health"]
        assert health["type"] == "implementation" and health["week"] == "0/3 (0%)" and health["gate"] == "skipped"
        assert health["reason"].startswith("last 7 days 0/3")
        assert rows["codex"]["health"] == []


class TestAgentsReply:
    def test_the_chat_and_the_terminal_show_the_gate(self) -> None:
        """/agents lists each type's figures with the gate's state; `ctl agents` adds a health table with why."""
        from agentos.control.replies import Table, chat_agents, terminal_agents

        p = Pool(NOW)
        failing(p, "claude")
        rows = p.pool.view()
        text = chat_agents(rows)
        assert "    implementation: 7d 0/3 (0%) · 24h 0/3 (0%) · ⛔ skipped" in text
        [_, health] = terminal_agents(rows)
        assert isinstance(health, Table) and health.title == "health (routing.health_gate)"
        [row] = health.rows
        assert (row["agent"], row["7 days"], row["gate"]) == ("claude", "0/3 (0%)", "skipped")
        assert row["why"].startswith("last 7 days 0/3")
