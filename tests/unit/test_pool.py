"""The agent pool: routing past paused and failed agents, usage-limit and budget pauses, lifting one by hand,
and the per-agent view; first over in-memory ports with explicit datetimes, then over a daemon's real store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agentos.agents.pool import AgentPool
from agentos.config import parse_config
from agentos.errors import ControlError
from agentos.graph import TaskStatus
from agentos.store import DaemonState
from agentos.task_graph import TaskGraph
from agentos.testing import MemoryJournal, MemorySettings, RecordingNotifier, SettableClock
from tests.unit.test_budget import CONFIG, NOW, attempt, runtime, spend, task

POOL_CONFIG = """\
state_dir: /nonexistent/state
repos:
  - {name: calc, path: /nonexistent/calc, test_command: "true"}
agents:
  claude: {kind: claude, cooldown_minutes: 30}
  codex: {kind: codex}
  gemini: {kind: gemini}
routing: {default: [claude, codex, gemini]}
timezone: Europe/Berlin
"""


class Pool:
    """An :class:`AgentPool` over in-memory ports, with the stand-ins at hand."""

    def __init__(self, now: datetime = NOW) -> None:
        self.clock = SettableClock(now)
        self.graph = TaskGraph()
        self.state = DaemonState()
        self.journal = MemoryJournal(self.graph, self.clock)
        self.notify = RecordingNotifier()
        self.settings = MemorySettings(parse_config(POOL_CONFIG))
        self.pool = AgentPool(
            settings=self.settings,
            journal=self.journal,
            notify=self.notify,
            clock=self.clock,
            state=self.state,
            graph=self.graph,
        )


class TestChoose:
    def test_the_chain_in_order_then_past_the_agents_that_failed(self) -> None:
        """A new task gets the chain's first agent; after a failure the next one; an interrupted attempt is
        no failure of the agent."""
        pool = Pool().pool
        assert pool.choose(task(status=TaskStatus.QUEUED)) == "claude"
        assert pool.choose(task(attempt(1, "claude", outcome="partial"))) == "codex"
        assert pool.choose(task(attempt(1, "claude", outcome="interrupted"))) == "claude"

    def test_the_issues_preferred_agent_goes_first(self) -> None:
        """An issue that names an agent gets it before the chain."""
        t = task(status=TaskStatus.QUEUED)
        t.agent = "gemini"
        assert Pool().pool.choose(t) == "gemini"

    def test_when_every_agent_failed_the_chain_rotates(self) -> None:
        """After the whole chain failed the task, the attempts so far pick who goes next."""
        tried = [attempt(n, agent, outcome="failed") for n, agent in enumerate(["claude", "codex", "gemini"], 1)]
        assert Pool().pool.choose(task(*tried)) == "claude"
        assert Pool().pool.choose(task(*tried, attempt(4, "claude", outcome="blocked"))) == "codex"

    def test_paused_agents_are_skipped_until_their_pause_ends(self) -> None:
        """A paused agent is passed over while its pause lasts; with all paused there is no agent."""
        p = Pool()
        p.state.paused_agents = {"claude": NOW + timedelta(hours=1), "codex": NOW - timedelta(seconds=1)}
        assert p.pool.choose(task(status=TaskStatus.QUEUED)) == "codex"
        p.state.paused_agents = {a: NOW + timedelta(hours=1) for a in ("claude", "codex", "gemini")}
        assert p.pool.choose(task(status=TaskStatus.QUEUED)) is None
        p.clock.now = NOW + timedelta(hours=1, seconds=1)
        assert p.pool.choose(task(status=TaskStatus.QUEUED)) == "claude"


class TestPauseForQuota:
    def test_paused_until_the_stated_reset_with_one_notice(self) -> None:
        """A usage limit with a reset time pauses the agent until then, saves the state and says so (sev2)."""
        p = Pool()
        reset = datetime(2025, 3, 14, 17, 30, tzinfo=UTC)
        assert p.pool.pause_for_quota("codex", reset, "You've hit your usage limit") == reset
        assert p.state.paused_agents == {"codex": reset} and p.journal.saves == 1
        text = "Agent codex hit its usage limit; paused until 2025-03-14 17:30 UTC."
        assert [(n.severity, n.key, n.text) for n in p.notify.sent] == [(2, f"quota:codex:{reset.isoformat()}", text)]

    def test_without_a_reset_time_the_agents_cooldown(self) -> None:
        """A usage limit that states no reset time pauses the agent for its ``cooldown_minutes``."""
        p = Pool()
        p.pool.pause_for_quota("claude", None)
        assert p.state.paused_agents == {"claude": NOW + timedelta(minutes=30)}
        assert p.pool.paused() == {"claude": NOW + timedelta(minutes=30)}


class TestResume:
    def test_a_usage_limit_pause_ends_now_and_is_journalled(self) -> None:
        """Resuming a paused agent ends the pause, says why it was paused, and journals the lift."""
        p = Pool()
        p.pool.pause_for_quota("claude", NOW + timedelta(hours=2))
        result = p.pool.resume("claude")
        assert result == {
            "agent": "claude",
            "resumed": True,
            "was_paused_until": (NOW + timedelta(hours=2)).isoformat(),
            "why": "usage limit reported by the CLI (until 2025-03-14 15:00 Europe/Berlin)",
        }
        assert p.state.paused_agents == {} and p.journal.types() == ["agent_pause_lifted"]

    @pytest.mark.parametrize(
        ("name", "paused_for", "held", "error"),
        [
            pytest.param("nobody", None, None, "no agent named 'nobody'; agents: claude, codex, gemini", id="unknown"),
            pytest.param("codex", None, None, "agent codex is not paused", id="not-paused"),
            pytest.param("codex", timedelta(seconds=-1), None, "agent codex is not paused", id="pause-over"),
            pytest.param("codex", timedelta(hours=1), "the disk is full", "state writes are held", id="held"),
        ],
    )
    def test_refused(self, name: str, paused_for: timedelta | None, held: str | None, error: str) -> None:
        """An unknown agent, one not paused (or no longer), and any while state writes are held are refused."""
        p = Pool()
        if paused_for is not None:
            p.state.paused_agents[name] = NOW + paused_for
        p.journal.hold = held
        with pytest.raises(ControlError, match=error):
            p.pool.resume(name)


class TestView:
    def test_one_row_per_agent_with_its_pause_and_why(self) -> None:
        """Every configured agent has a row; a paused one shows until when (in the config's zone) and why."""
        p = Pool()
        p.pool.pause_for_quota("codex", datetime(2025, 3, 14, 17, tzinfo=UTC))
        rows = {row["agent"]: row for row in p.pool.view()}
        assert list(rows) == ["claude", "codex", "gemini"]
        assert rows["claude"]["paused_until"] is None and rows["claude"]["limits"] == "none"
        codex = rows["codex"]
        assert codex["paused_until_local"] == "2025-03-14 18:00 Europe/Berlin"
        assert codex["why"].startswith("usage limit reported by the CLI")
        assert codex["month"] == "2025-03" and codex["month_attempts"] == 0

    def test_a_paused_agent_no_longer_configured_still_shows(self) -> None:
        """An agent removed from the config while paused keeps a row, so its pause can be seen and lifted (this
        raised a KeyError before the pool: the budget made no verdicts for an agent without a config)."""
        p = Pool()
        p.state.paused_agents["old"] = NOW + timedelta(hours=1)
        row = p.pool.view()[-1]
        assert (row["agent"], row["kind"], row["limits"]) == ("old", None, "not in the config")


class TestEnforceAgentBudgets:
    def test_soft_limit_warns_once_even_across_a_restart(self, tmp_path: Path) -> None:
        """Past monthly_warn_usd one sev2 notice goes out; later checks, and a restarted daemon, send none."""
        clock = SettableClock(NOW)
        rt = runtime(tmp_path, clock)
        spend(rt, 6.0, NOW, 1)
        AgentPool.from_runtime(rt).enforce_budgets()
        AgentPool.from_runtime(rt).enforce_budgets()
        sent = rt.notifier.sent  # type: ignore[union-attr]
        assert [(n.severity, n.key) for n in sent] == [(2, "agent_budget_warning:claude:2025-03")]
        assert "spent 1,000 tokens / $6.00 over 1 attempt in 2025-03; limit $5.00" in sent[0].text
        assert rt.state.paused_agents == {}
        rt.store.close()

        again = runtime(tmp_path, clock)
        AgentPool.from_runtime(again).enforce_budgets()
        assert again.notifier.sent == []  # type: ignore[union-attr]

    def test_hard_limit_pauses_until_the_first_of_next_month_then_the_chain_moves_on(self, tmp_path: Path) -> None:
        """Past monthly_max_usd the agent is paused until the 1st, 00:00 in the budget time zone, with one sev1
        notice; its tasks go to the next agent of the chain, and the next month it runs again."""
        clock = SettableClock(NOW)
        rt = runtime(tmp_path, clock)
        spend(rt, 6.0, NOW - timedelta(days=3), 1)
        spend(rt, 4.5, NOW, 2)
        AgentPool.from_runtime(rt).enforce_budgets()
        AgentPool.from_runtime(rt).enforce_budgets()
        until = datetime(2025, 3, 31, 22, tzinfo=UTC)  # 1 April 00:00 in Berlin (CEST)
        assert rt.state.paused_agents == {"claude": until}
        sent = rt.notifier.sent  # type: ignore[union-attr]
        assert [(n.severity, n.key) for n in sent] == [(1, "agent_budget_paused:claude:2025-03")]
        assert "$10.50 over 2 attempts in 2025-03; limit $10.00" in sent[0].text
        assert "paused until 2025-04-01 00:00 Europe/Berlin" in sent[0].text
        assert [e.type for e in rt.store.iter_events(NOW - timedelta(days=1)) if e.type.startswith("agent_")] == [
            "agent_budget_paused"
        ]
        pool = AgentPool.from_runtime(rt)
        assert pool.choose(task(issue=3, status=TaskStatus.QUEUED)) == "backup"

        clock.now = until + timedelta(seconds=1)
        assert pool.choose(task(issue=3, status=TaskStatus.QUEUED)) == "claude"

    def test_raising_the_limit_lifts_the_pause(self, tmp_path: Path) -> None:
        """A pause the budget set ends as soon as the reloaded config no longer puts the agent over a limit."""
        clock = SettableClock(NOW)
        rt = runtime(tmp_path, clock)
        spend(rt, 11.0, NOW, 1)
        AgentPool.from_runtime(rt).enforce_budgets()
        assert "claude" in rt.state.paused_agents
        rt.config = parse_config(
            CONFIG.replace("monthly_max_usd: 10", "monthly_max_usd: 20").format(state=tmp_path / "s", repo="r")
        )
        AgentPool.from_runtime(rt).enforce_budgets()
        assert rt.state.paused_agents == {}
        assert [n.key for n in rt.notifier.sent] == [  # type: ignore[union-attr]
            "agent_budget_paused:claude:2025-03",
            "agent_budget_warning:claude:2025-03",  # still past the warning level: said once, now
        ]
        assert [e.type for e in rt.store.iter_events(NOW - timedelta(days=1)) if e.type.startswith("agent_")] == [
            "agent_budget_paused",
            "agent_budget_resumed",
            "agent_budget_warning",
        ]

    def test_a_usage_limit_pause_is_left_alone(self, tmp_path: Path) -> None:
        """An agent paused by its CLI's usage limit is not resumed by a budget check."""
        clock = SettableClock(NOW)
        rt = runtime(tmp_path, clock)
        rt.state.paused_agents["claude"] = NOW + timedelta(hours=2)
        AgentPool.from_runtime(rt).enforce_budgets()
        assert rt.state.paused_agents == {"claude": NOW + timedelta(hours=2)}


class TestLiftByHand:
    """``agent resume``: an operator lifts a pause; a budget lift holds for the period at the same limits."""

    def test_a_lifted_budget_pause_holds_for_the_period_across_a_restart(self, tmp_path: Path) -> None:
        """Lifted by hand, an agent over its monthly max runs on: later checks, a restarted daemon and more spend
        do not pause it again in that month; the lift is journalled; the next month starts clean."""
        clock = SettableClock(NOW)
        rt = runtime(tmp_path, clock)
        spend(rt, 11.0, NOW, 1)
        AgentPool.from_runtime(rt).enforce_budgets()
        until = rt.state.paused_agents["claude"]

        lifted = AgentPool.from_runtime(rt).resume("claude")
        assert lifted["was_paused_until"] == until.isoformat() and "still over budget for 2025-03" in lifted["budget"]
        assert lifted["why"] == "monthly budget: spent 1,000 tokens / $11.00 over 1 attempt in 2025-03; limit $10.00"
        assert rt.state.paused_agents == {}
        [event] = [e for e in rt.store.iter_events(NOW - timedelta(days=1)) if e.type == "agent_pause_lifted"]
        assert event.data["agent"] == "claude" and event.data["waived"] == ["2025-03"]

        spend(rt, 5.0, NOW, 2)
        AgentPool.from_runtime(rt).enforce_budgets()
        assert rt.state.paused_agents == {}
        rt.store.close()
        again = runtime(tmp_path, clock)
        AgentPool.from_runtime(again).enforce_budgets()
        assert again.state.paused_agents == {}
        assert [n.key for n in rt.notifier.sent] == ["agent_budget_paused:claude:2025-03"]  # type: ignore[union-attr]

        clock.now = datetime(2025, 4, 2, tzinfo=UTC)  # a new month: nothing spent in it yet
        assert [v.stop for v in AgentPool.from_runtime(again).enforce_budgets() if v.agent == "claude"] == [[]]
        again.store.close()

    def test_a_changed_limit_is_a_new_breach(self, tmp_path: Path) -> None:
        """After a lift, a reloaded config whose limit the agent is still over pauses it again."""
        clock = SettableClock(NOW)
        rt = runtime(tmp_path, clock)
        spend(rt, 11.0, NOW, 1)
        AgentPool.from_runtime(rt).enforce_budgets()
        AgentPool.from_runtime(rt).resume("claude")
        rt.config = parse_config(
            CONFIG.replace("monthly_max_usd: 10", "monthly_max_usd: 8").format(state=tmp_path / "s", repo="r")
        )
        AgentPool.from_runtime(rt).enforce_budgets()
        assert rt.state.paused_agents == {"claude": datetime(2025, 3, 31, 22, tzinfo=UTC)}
        rt.store.close()

    def test_a_usage_limit_pause_is_lifted_without_waiving_a_budget(self, tmp_path: Path) -> None:
        """A usage-limit pause is named as such; lifting it marks no budget breach."""
        rt = runtime(tmp_path, SettableClock(NOW))
        rt.state.paused_agents["backup"] = NOW + timedelta(hours=2)
        lifted = AgentPool.from_runtime(rt).resume("backup")
        assert lifted["why"] == "usage limit reported by the CLI (until 2025-03-14 15:00 Europe/Berlin)"
        assert "budget" not in lifted and not [k for k in rt.state.notified if k.startswith("budget:lift:")]
        assert rt.state.paused_agents == {}
        rt.store.close()
