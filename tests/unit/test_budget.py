"""Budgets: spend per issue and per agent period, and the verdicts (the pool applies them: test_pool.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from agentos.assembly import build_core
from agentos.budget import (
    BUDGET_CODE,
    Spend,
    agent_verdicts,
    cost_cell,
    issue_breach,
    issue_spend,
    limits_text,
    period_bounds,
    task_cost_cell,
)
from agentos.config import AgentConfig, Config, ConfigError, Limits, RepoConfig, parse_config
from agentos.control.task_rows import task_row
from agentos.executor import Executor
from agentos.forge.local import LocalForge
from agentos.graph import Attempt, Task, TaskStatus
from agentos.notices import escalation_comment as _escalation_comment
from agentos.runtime import Runtime
from agentos.store import Store
from agentos.testing import RecordingNotifier
from agentos.testing import SettableClock as Clock

NOW = datetime(2025, 3, 14, 12, 0, tzinfo=UTC)
BERLIN = ZoneInfo("Europe/Berlin")


def attempt(
    n: int,
    agent: str = "claude",
    *,
    tokens: int = 0,
    cost: float | None = 0.0,
    at: datetime = NOW,
    outcome: str = "partial",
) -> Attempt:
    """An ended attempt; ``cost=None`` is one whose CLI reported no cost (Codex, Gemini, command)."""
    return Attempt(
        number=n,
        agent=agent,
        started_at=at - timedelta(minutes=5),
        ended_at=None if outcome == "running" else at,
        outcome=outcome,  # type: ignore[arg-type]
        tokens_in=tokens // 2,
        tokens_out=tokens - tokens // 2,
        cost_usd=cost or 0.0,
        cost_reported=None if outcome == "running" else cost is not None,
        tokens_reported=None if outcome == "running" else True,
    )


def task(*attempts: Attempt, issue: int = 4, generation: int = 1, status: TaskStatus = TaskStatus.RETRYING) -> Task:
    return Task(
        id=Task.make_id("calc", issue, generation),
        repo="calc",
        issue=issue,
        generation=generation,
        title="Fix it",
        status=status,
        attempts=list(attempts),
        created_at=NOW,
        updated_at=NOW,
    )


class TestSpend:
    def test_every_generation_of_the_issue_counts_and_a_running_attempt_not_yet(self) -> None:
        """The issue's spend sums every ended attempt of every generation; a running one has no figures yet."""
        first = task(attempt(1, tokens=60_000, cost=1.5), attempt(2, tokens=40_000, cost=0.7))
        second = task(attempt(1, "codex", tokens=23_456, cost=None), attempt(2, outcome="running"), generation=2)
        spend = issue_spend([first, second])
        assert spend == Spend(tokens=123_456, cost_usd=pytest.approx(2.2), attempts=3, unmeasured=1)  # type: ignore[arg-type]
        assert spend.describe() == ("123,456 tokens / $2.20 over 3 attempts (1 with no cost reported: not measured)")

    @pytest.mark.parametrize(
        ("spend", "text"),
        [
            pytest.param(Spend(), "0 tokens / $0.00 over 0 attempts", id="nothing"),
            pytest.param(Spend(54_281, 0.0912, 1), "54,281 tokens / $0.09 over 1 attempt", id="one"),
            pytest.param(
                Spend(900, 0.0, 2, unmeasured=2), "900 tokens / cost not measured over 2 attempts", id="codex-only"
            ),
            pytest.param(
                Spend(0, 0.0, 1, unmeasured=1, untokened=1),
                "tokens not measured / cost not measured over 1 attempt",
                id="command-only",
            ),
        ],
    )
    def test_describe_never_shows_an_unreported_figure_as_zero(self, spend: Spend, text: str) -> None:
        """A figure no attempt reported reads "not measured", never $0.00 or 0 tokens."""
        assert spend.describe() == text


class TestIssueBreach:
    def test_no_ceiling_no_breach(self) -> None:
        """Without limits.max_task_* an issue is never over budget, whatever it spent."""
        assert issue_breach([task(attempt(1, tokens=10**9, cost=10**6))], Limits()) is None

    def test_the_token_ceiling_names_the_figures(self) -> None:
        """At or past max_task_tokens the breach says what was spent, over how many attempts, and the limit."""
        tasks = [task(attempt(1, tokens=54_281, cost=0.0912), attempt(2, tokens=54_281, cost=0.0912))]
        assert issue_breach(tasks, Limits(max_task_tokens=100_000)) == (
            "spent 108,562 tokens / $0.18 over 2 attempts; limit 100,000 tokens"
        )
        assert issue_breach(tasks, Limits(max_task_tokens=108_562)) is not None  # reaching it is enough
        assert issue_breach(tasks, Limits(max_task_tokens=108_563)) is None

    def test_unmeasured_attempts_count_tokens_but_no_cost(self) -> None:
        """An attempt with no reported cost adds its tokens to the token ceiling and nothing to the cost one."""
        tasks = [task(attempt(1, "codex", tokens=500_000, cost=None), attempt(2, tokens=1_000, cost=3.0))]
        assert issue_breach(tasks, Limits(max_task_cost_usd=4.0)) is None
        breach = issue_breach(tasks, Limits(max_task_cost_usd=3.0, max_task_tokens=400_000))
        assert breach == (
            "spent 501,000 tokens / $3.00 over 2 attempts (1 with no cost reported: not measured); "
            "limit 400,000 tokens and $3.00"
        )


class TestPeriodBounds:
    @pytest.mark.parametrize(
        ("now", "zone", "period", "start", "end", "label"),
        [
            pytest.param(
                NOW,
                "UTC",
                "month",
                datetime(2025, 3, 1, tzinfo=UTC),
                datetime(2025, 4, 1, tzinfo=UTC),
                "2025-03",
                id="utc-month",
            ),
            pytest.param(
                datetime(2025, 12, 31, 23, 30, tzinfo=UTC),
                "UTC",
                "month",
                datetime(2025, 12, 1, tzinfo=UTC),
                datetime(2026, 1, 1, tzinfo=UTC),
                "2025-12",
                id="december",
            ),
            # 23:30 UTC on 31 March is already April in Berlin (CEST, +2).
            pytest.param(
                datetime(2025, 3, 31, 23, 30, tzinfo=UTC),
                "Europe/Berlin",
                "month",
                datetime(2025, 3, 31, 22, tzinfo=UTC),
                datetime(2025, 4, 30, 22, tzinfo=UTC),
                "2025-04",
                id="berlin-april",
            ),
            # The day the clocks go forward in Berlin is 23 hours long.
            pytest.param(
                datetime(2025, 3, 30, 12, tzinfo=UTC),
                "Europe/Berlin",
                "day",
                datetime(2025, 3, 29, 23, tzinfo=UTC),
                datetime(2025, 3, 30, 22, tzinfo=UTC),
                "2025-03-30",
                id="berlin-dst-day",
            ),
        ],
    )
    def test_bounds_in_the_budget_time_zone(
        self, now: datetime, zone: str, period: Any, start: datetime, end: datetime, label: str
    ) -> None:
        """A period runs from local midnight to local midnight (the first of the month for months)."""
        assert period_bounds(now, ZoneInfo(zone), period) == (start, end, label)


class TestAgentVerdicts:
    AGENTS = {
        "claude": AgentConfig(kind="claude", monthly_warn_usd=5, monthly_max_usd=10, max_cost_usd_per_day=4),
        "codex": AgentConfig(kind="codex", monthly_max_tokens=1_000_000),
        "free": AgentConfig(kind="command", argv=["x"]),
    }

    def test_warn_and_stop_per_period(self) -> None:
        """Only this month's (and today's) attempts count; soft limits warn, hard ones stop; no limit, no verdict."""
        t = task(
            attempt(1, tokens=10, cost=3.0, at=NOW - timedelta(days=40)),  # February: not counted
            attempt(2, tokens=10, cost=3.0, at=NOW - timedelta(days=2)),
            attempt(3, tokens=10, cost=2.5, at=NOW - timedelta(hours=1)),
            attempt(4, "codex", tokens=1_000_000, cost=None, at=NOW - timedelta(days=1)),
        )
        verdicts = {(v.agent, v.period): v for v in agent_verdicts([t], self.AGENTS, NOW, ZoneInfo("UTC"))}
        assert set(verdicts) == {("claude", "day"), ("claude", "month"), ("codex", "month")}
        day, month, codex = verdicts["claude", "day"], verdicts["claude", "month"], verdicts["codex", "month"]
        assert (day.spend.cost_usd, day.warn, day.stop) == (2.5, [], [])
        assert (month.spend.cost_usd, month.warn, month.stop) == (5.5, ["$5.00"], [])
        assert month.until == datetime(2025, 4, 1, tzinfo=UTC)
        assert codex.stop == ["1,000,000 tokens"] and codex.spend.unmeasured == 1


CONFIG = """\
state_dir: {state}
repos:
  - name: calc
    path: {repo}
    test_command: "true"
agents:
  claude: {{kind: claude, monthly_warn_usd: 5, monthly_max_usd: 10}}
  backup: {{kind: command, argv: [x]}}
routing: {{default: [claude, backup]}}
timezone: Europe/Berlin
limits: {{max_task_tokens: 100000}}
"""


def runtime(tmp: Path, clock: Clock, config_text: str = CONFIG) -> Runtime:
    """A Runtime on a real store (its state survives a "restart": a new Runtime over the same directory)."""
    config = parse_config(config_text.format(state=tmp / "state", repo=tmp / "calc"))
    store = Store(tmp / "state", fsync=False)
    store.lock()
    graph, state = store.load()
    forge = LocalForge(tmp / "state", {r.name: r for r in config.repos})

    def remote(repo: RepoConfig) -> tuple[str, dict[str, str]]:
        return str(repo.path), {}

    rt = Runtime(config, None, store, graph, state, forge, remote, clock=clock)
    rt.notifier = RecordingNotifier()  # type: ignore[assignment]
    return rt


def spend(rt: Runtime, cost: float, at: datetime, issue: int) -> None:
    rt.commit([rt.event("test_spend", f"calc#{issue}")], [task(attempt(1, tokens=1000, cost=cost, at=at), issue=issue)])


class TestLimitsText:
    def test_limits_text(self) -> None:
        """Limits read as the operator wrote them; an agent without any says none."""
        cfg = AgentConfig(kind="claude", monthly_warn_usd=5, monthly_max_usd=10, monthly_max_tokens=2_000_000)
        assert limits_text(cfg) == "month: warn $5.00, max 2,000,000 tokens / $10.00"
        assert limits_text(AgentConfig(kind="claude", max_cost_usd_per_day=3)) == "day: max $3.00"
        assert limits_text(AgentConfig(kind="claude")) == "none"


class TestPreDispatch:
    def _executor(self, tmp_path: Path, t: Task) -> Executor:
        rt = runtime(tmp_path, Clock(NOW))
        rt.graph.put(t)
        return build_core(rt).executor

    async def test_an_automatic_retry_past_the_ceiling_escalates_instead(self, tmp_path: Path) -> None:
        """A RETRYING task whose issue reached max_task_tokens starts no attempt: it is escalated."""
        t = task(attempt(1, tokens=60_000, cost=1.0), attempt(2, tokens=60_000, cost=1.0))
        ex = self._executor(tmp_path, t)
        assert ex.start(t) is False
        escalation = ex.running().get(t.id)
        assert escalation is not None
        await escalation
        assert len(t.attempts) == 2
        assert t.status is TaskStatus.BLOCKED and t.last_blocker == BUDGET_CODE

    async def test_an_operator_retry_runs_one_more_attempt(self, tmp_path: Path) -> None:
        """A QUEUED task (an operator's retry) past the ceiling still gets its attempt."""
        t = task(attempt(1, tokens=60_000, cost=1.0), attempt(2, tokens=60_000, cost=1.0), status=TaskStatus.QUEUED)
        ex = self._executor(tmp_path, t)
        assert ex.start(t) is True
        assert t.status is TaskStatus.RUNNING and len(t.attempts) == 3
        assert await ex.stop(t.id, "test_over")  # the attempt itself is not this test's business


class TestShown:
    def test_the_escalation_note_carries_the_figures_and_the_way_out(self) -> None:
        """An issue escalated for its budget says what it spent, the limit, and what a retry does."""
        t = task(attempt(1, tokens=60_000, cost=1.0), status=TaskStatus.BLOCKED)
        t.last_blocker = BUDGET_CODE
        note = _escalation_comment(t, "spent 60,000 tokens / $1.00 over 1 attempt; limit 50,000 tokens")
        assert "Budget: spent 60,000 tokens / $1.00 over 1 attempt; limit 50,000 tokens." in note
        assert "`limits.max_task_tokens`" in note and "A retry runs one more attempt" in note

    def test_an_unreported_cost_is_not_measured_not_zero(self) -> None:
        """Tables show "not measured" for an attempt whose CLI reported no cost, and count them per task."""
        assert cost_cell(0.0, False) == "not measured"
        assert cost_cell(0.0912, True) == "$0.09"
        assert cost_cell(0.0, None) == ""  # nothing ran (or recorded before agentos kept the flag)
        t = task(attempt(1, tokens=10, cost=0.5), attempt(2, "codex", tokens=10, cost=None))
        row = task_row(t)
        assert (row["cost_usd"], row["not_measured"]) == (0.5, 1)
        assert task_cost_cell(row["cost_usd"], row["not_measured"]) == "$0.50 +1 not measured"
        assert task_cost_cell(0.0, 2) == "not measured"


class TestConfig:
    def test_a_warning_level_must_be_below_the_limit(self) -> None:
        """monthly_warn_usd at or above monthly_max_usd is refused with both figures named."""
        with pytest.raises(ConfigError, match=r"agents\.claude: monthly_warn_usd \(10\.0\) must be below"):
            parse_config("agents:\n  claude: {kind: claude, monthly_warn_usd: 10, monthly_max_usd: 10}\n")

    def test_the_old_budget_timezone_key_is_gone(self) -> None:
        """The zone is the top-level `timezone`; `limits.budget_timezone` is an unknown key."""
        with pytest.raises(ConfigError, match=r"x.yaml:2: limits.budget_timezone: unknown key"):
            parse_config("limits:\n  budget_timezone: Europe/Berlin\n", "x.yaml")

    def test_defaults_have_no_budget(self) -> None:
        """Out of the box nothing is limited and budgets are reckoned in UTC."""
        config = Config()
        assert config.timezone == "UTC" and config.limits.max_task_tokens is None

    def test_stats_count_unmeasured_attempts_apart(self) -> None:
        """`agentos stats` keeps attempts with no reported cost out of the dollars and says how many there were."""
        from agentos.cli.stats import _cost
        from agentos.graph import Event
        from agentos.ops.metrics import summarise

        def ended(n: int, agent: str, cost: float, reported: bool) -> Event:
            data = {"attempt": n, "agent": agent, "outcome": "partial", "tokens": 10, "cost_usd": cost}
            return Event(type="attempt_ended", task="calc#4", ts=NOW, data={**data, "cost_reported": reported})

        events = [ended(1, "claude", 0.5, True), ended(2, "codex", 0.0, False), ended(3, "codex", 0.0, False)]
        report = summarise(events, [task()], since=NOW - timedelta(days=1), until=NOW + timedelta(days=1))
        by_agent = {g.key: g for g in report.by_agent}
        assert (report.overall.cost_usd, report.overall.not_measured) == (0.5, 2)
        assert [_cost(g) for g in (report.overall, by_agent["claude"], by_agent["codex"])] == [
            "0.50 +2",
            "0.50",
            "not measured",
        ]
