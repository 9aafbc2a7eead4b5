"""Specification of the weekly, hourly and daily loops: analyzer, scorer, groomer, planner, digest, llm."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pytest
from pydantic import BaseModel, Field

from agentos.config import AgentConfig, Config, RepoConfig, SandboxConfig, load_config
from agentos.forge.base import BLOCKED_LABEL, READY_LABEL, Issue
from agentos.forge.local import LocalForge
from agentos.graph import Task, TaskStatus
from agentos.jobs import loop_jobs
from agentos.jobs._loops import LoopSettings, settings_for
from agentos.jobs.analysis import (
    always_timeout,
    flaky_tests,
    iso_week,
    propose_order,
    weak_agents,
    worst_pair,
)
from agentos.jobs.digest import window
from agentos.jobs.groomer import DUPLICATE_LABEL, STALE_LABEL, find_duplicates, similar_titles
from agentos.jobs.planner import SPRINT_LABEL, pick_sprint
from agentos.llm import CORRECTION_CHARS, Llm, last_json_object
from agentos.ops.metrics import History, read_history
from agentos.ops.notify import MemorySeenStore, Message, Notifier
from agentos.store import DaemonState, Store
from agentos.testing import LoopRig, SettableClock, build_loops, end_attempt, start_attempt, transition

M = TypeVar("M", bound=BaseModel)

FAKE_LLM = Path(__file__).parents[1] / "fakes" / "agents" / "json_answer.py"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday, ISO week 2026-W10


CONFIG = """\
# agentos test config: the comments must survive auto-tuning
state_dir: {state}
repos:
  - name: calc
    path: {repo}
    test_command: "true"
agents:
  claude:
    kind: claude
  codex:
    kind: codex
routing:
  fallbacks:                        # the chain per task type
    implementation: [claude, codex]
  auto_tune: {auto}                 # the scorer may edit this file
"""


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock(T0)


class Env:
    """The loops' in-memory ports (:class:`LoopRig`) on the real LocalForge, built per test; a real store
    for the jobs that prune its files."""

    def __init__(self, tmp_path: Path, clock: SettableClock) -> None:
        self.tmp = tmp_path
        self.clock = clock
        self.stores: list[Store] = []

    def runtime(
        self,
        *,
        modes: dict[str, str] | None = None,
        cadence: dict[str, int] | None = None,
        config_file: str | None = None,
    ) -> LoopRig:
        path: Path | None = None
        if config_file is not None:
            (self.tmp / "calc").mkdir(exist_ok=True)
            path = self.tmp / "agentos.yaml"
            path.write_text(config_file)
            config, _ = load_config(path)
        else:
            repos = []
            for name, mode in (modes or {"calc": "full"}).items():
                (self.tmp / name).mkdir(exist_ok=True)
                for doc in ("NORTH_STAR.md", "STRATEGY.md", "CODEBASE.md"):  # no bootstrap issues
                    (self.tmp / name / doc).write_text(f"# {doc}\n")
                repos.append(
                    RepoConfig(
                        name=name,
                        path=str(self.tmp / name),
                        test_command="true",
                        automation_mode=mode,  # type: ignore[arg-type]
                        groom_cadence_days=(cadence or {}).get(name),
                    )
                )
            # the fake planner CLIs record their prompts outside any sandbox (tests/integration: the sandboxed one)
            config = Config(state_dir=str(self.tmp / "state"), repos=repos, sandbox=SandboxConfig(mode="off"))
        forge = LocalForge(self.tmp / "state", {r.name: r for r in config.repos}, clock=self.clock)
        return build_loops(config, forge, clock=self.clock, config_path=path)

    def store(self) -> Store:
        """A real store under the state dir (closed after the test)."""
        store = Store(self.tmp / "state", fsync=False)
        store.lock()
        store.load()
        self.stores.append(store)
        return store

    def close(self) -> None:
        for store in self.stores:
            store.close()


@pytest.fixture
def env(tmp_path: Path, clock: SettableClock) -> Iterator[Env]:
    made = Env(tmp_path, clock)
    yield made
    made.close()


def run(
    rt: LoopRig, repo: str, issue: int, agent: str, ok: bool, blocker: str = "", error: str = "", **kw: Any
) -> Task:
    """One attempt as the executor journals it: complete → validating → pr_open, or failed → retrying."""
    task = rt.graph.latest_for_issue(repo, issue)
    now = rt.clock()
    if task is None:
        task = Task(
            id=Task.make_id(repo, issue),
            repo=repo,
            issue=issue,
            title=kw.get("title", f"issue {issue}"),
            type=kw.get("type", "implementation"),
            created_at=now,
            updated_at=now,
        )
    _, started = start_attempt(task, agent, now)
    if ok:
        events = [end_attempt(task, now, outcome="complete", cost_usd=0.25, tokens_in=100)]
        events.append(transition(task, TaskStatus.VALIDATING, now))
        events.append(transition(task, TaskStatus.PR_OPEN, now, pr=100 + issue))
        task.pr = 100 + issue
    else:
        events = [end_attempt(task, now, outcome="failed", blocker_code=blocker or "runner_failure", error=error)]
        events.append(transition(task, TaskStatus.RETRYING, now, blocker=blocker or "runner_failure"))
    rt.journal.commit([started, *events], [task])
    return task


def merge(rt: LoopRig, task: Task) -> None:
    ev = transition(task, TaskStatus.MERGED, rt.clock(), sha="abc", pr=task.pr)
    rt.journal.commit(
        [ev, rt.journal.event("merged", task.id, pr=task.pr, sha="abc", attempts=len(task.attempts))], [task]
    )


def escalate(rt: LoopRig, task: Task, blocker: str) -> None:
    task.last_blocker = blocker
    ev = transition(task, TaskStatus.BLOCKED, rt.clock(), reason="max_attempts", blocker=blocker)
    rt.journal.commit(
        [ev, rt.journal.event("escalated", task.id, blocker=blocker, attempts=len(task.attempts))], [task]
    )


def history(rt: LoopRig, days: float = 7) -> History:
    since = rt.clock() - timedelta(days=days)
    return read_history(list(rt.journal.iter_events(since)), rt.graph, since=since, until=rt.clock())


def events_of(rt: LoopRig, type_: str) -> list[Any]:
    return [e for e in rt.journal.iter_events(T0 - timedelta(days=60)) if e.type == type_]


def week_of_work(rt: LoopRig) -> None:
    """claude fails implementation 4 of 5 times; codex succeeds 4 of 4; claude does docs well."""
    for n in range(1, 6):
        if n == 1:
            run(rt, "calc", n, "claude", True)
        else:
            run(rt, "calc", n, "claude", False, "test_failure", f"`pytest` exit 1:\nFAILED test_{n}.py - assert {n}")
    for n in range(6, 10):
        merge(rt, run(rt, "calc", n, "codex", True))
    for n in range(10, 13):
        run(rt, "calc", n, "claude", True, type="docs")


# ---------------------------------------------------------------- log analyzer


class TestFindings:
    def test_the_worst_pair_and_a_weak_agent(self, env: Env) -> None:
        """claude on implementation is the worst pair, far below codex on the same type."""
        rt = env.runtime()
        week_of_work(rt)
        h = history(rt)
        worst = worst_pair(h)
        assert worst is not None and worst.key == "claude on implementation"
        (finding,) = weak_agents(h, min_attempts=3, gap=0.3)
        assert (finding.subject, finding.repo) == ("claude:implementation", "calc")
        assert "20%" in finding.title and "peers 100%" in finding.title

    def test_tasks_that_always_time_out(self, env: Env) -> None:
        """Two or more attempts, all timeouts: a finding; one success among them: none."""
        rt = env.runtime()
        for agent in ("claude", "codex"):
            run(rt, "calc", 1, agent, False, "timeout", "idle limit reached")
        run(rt, "calc", 2, "claude", False, "timeout", "idle limit reached")
        run(rt, "calc", 2, "codex", True)
        assert [f.subject for f in always_timeout(history(rt))] == ["calc#1"]

    def test_a_test_failure_that_does_not_stop_merges_is_flaky(self, env: Env) -> None:
        """One failing-test signature hitting two tasks that merged anyway marks the repo's test flaky."""
        rt = env.runtime()
        for n in (1, 2, 3):
            run(
                rt,
                "calc",
                n,
                "claude",
                False,
                "test_failure",
                f"exit 1:\nFAILED tests/test_net.py::test_fetch - Timeout {n}s",
            )
        for n in (1, 2):
            merge(rt, run(rt, "calc", n, "codex", True))
        (finding,) = flaky_tests(history(rt))
        assert finding.repo == "calc" and "calc#1" in finding.detail and "calc#3" not in finding.detail

    def test_checks_red_then_green_on_the_same_commit_are_flaky(self, env: Env) -> None:
        """A PR's checks failing then passing on one head commit is a flaky test; a fix on a new commit is not."""
        rt = env.runtime()
        flaky, fixed = run(rt, "calc", 1, "claude", True), run(rt, "calc", 2, "claude", True)
        red = "red:tests:0123456789ab"
        for task, green_sha in ((flaky, "aaa111"), (fixed, "bbb222-fix")):
            rt.journal.commit(
                [rt.journal.event("pr_blocked", task.id, pr=task.pr, kind="red", signature=red, sha=task.id + "aaa111")]
            )
            rt.journal.commit([rt.journal.event("pr_unblocked", task.id, pr=task.pr, sha=task.id + green_sha)])
        (finding,) = flaky_tests(history(rt))
        assert (finding.kind, finding.repo, finding.subject) == ("flaky_tests", "calc", "calc:0123456789ab")
        assert finding.title == "Flaky test in calc: tests failed then passed on the same commit"
        assert "`calc#1` at `calc#1aaa111`" in finding.detail and "calc#2" not in finding.detail


class TestLogAnalyzer:
    async def test_one_weekly_report_naming_the_worst_pair_plus_fix_issues(self, env: Env) -> None:
        """The report names the worst agent/type pair and links the fix issue; a second run changes nothing."""
        rt = env.runtime()
        week_of_work(rt)
        analyzer = rt.log_analyzer()
        await analyzer.tick()
        await analyzer.tick()
        issues = await rt.forge.list_issues("calc")
        (report,) = [i for i in issues if i.title == f"agentos weekly report {iso_week(T0)}"]
        (fix,) = [i for i in issues if i.labels == ["autonomous-fix"]]
        assert len(issues) == 2
        assert "**Worst agent/type pair:** claude on implementation" in report.body
        assert f"(#{fix.number} in calc)" in report.body
        assert fix.title.startswith("Agent claude succeeds on 20% of implementation attempts")
        assert [e.data["week"] for e in events_of(rt, "weekly_report_filed")] == ["2026-W10"]
        assert len(events_of(rt, "finding_reported")) == 1

    async def test_a_quiet_week_files_no_report(self, env: Env) -> None:
        """No attempts and no merges: no report issue, nothing journalled."""
        rt = env.runtime()
        await rt.log_analyzer().tick()
        assert await rt.forge.list_issues("calc") == []
        assert events_of(rt, "weekly_report_filed") == []

    async def test_a_finding_still_open_next_week_gets_a_comment(self, env: Env, clock: SettableClock) -> None:
        """Next week's run comments on the open fix issue instead of filing another."""
        rt = env.runtime()
        week_of_work(rt)
        await rt.log_analyzer().tick()
        clock.advance(days=7)
        week_of_work_again = [run(rt, "calc", n, "claude", False, "test_failure", "boom") for n in range(20, 24)]
        for n in range(30, 33):
            merge(rt, run(rt, "calc", n, "codex", True))
        assert week_of_work_again
        await rt.log_analyzer().tick()
        issues = await rt.forge.list_issues("calc")
        (fix,) = [i for i in issues if i.labels == ["autonomous-fix"]]
        comments = await rt.forge.comments("calc", fix.number)
        assert len(comments) == 1 and "Still seen in 2026-W11" in comments[0].body
        assert len([i for i in issues if i.title.startswith("agentos weekly report")]) == 2

    async def test_the_report_has_causes_retry_storms_week_over_week_and_objectives(
        self, env: Env, clock: SettableClock
    ) -> None:
        """Week 2 against week 1: blocker codes counted, the share of tasks needing ≥ 3 attempts, the deltas of
        the main figures, and the objectives measured this week."""
        rt = env.runtime()
        week_of_work(rt)  # week 1: 12 attempts, 8 successful, 4 merged
        clock.advance(days=7, hours=1)
        for _ in range(3):
            stormy = run(rt, "calc", 40, "claude", False, "timeout", "timed out")
        escalate(rt, stormy, "timeout")
        for n in (41, 42):
            merge(rt, run(rt, "calc", n, "codex", True))
        data = {"repo": "calc", "metric": "coverage", "direction": "up", "weight": 1, "before": 80, "after": 88}
        rt.journal.record("outcome_measured", "calc#41", **data, change_pct=10.0, verdict="improved")

        await rt.log_analyzer().tick()

        [report] = [i for i in await rt.forge.list_issues("calc") if i.title.startswith("agentos weekly report")]
        body = report.body
        assert "| attempts | 5 | 12 | -7 |" in body and "| success rate | 40% | 67% | -27 pts |" in body
        assert "| merged | 2 | 4 | -2 |" in body and "| escalated | 1 | 0 | +1 |" in body
        assert "| tasks needing ≥ 3 attempts | 33% | 0% | +33 pts |" in body
        assert "| `timeout` | 3 | 1 |" in body
        assert "1 of 3 tasks (33%) needed 3 or more attempts." in body and "- `calc#40`: 3 attempts" in body
        objective = "- calc / coverage (up, weight 1): 1 improved; score +1.00; last calc#41: 80 → 88 (+10%), improved"
        assert objective in body


# ---------------------------------------------------------------- agent scorer


class TestProposeOrder:
    @pytest.mark.parametrize(
        ("chain", "counts", "margin", "expected"),
        [
            pytest.param(["a", "b"], {"a": (0, 4), "b": (4, 4)}, 0.1, ["b", "a"], id="swap"),
            pytest.param(["a", "b"], {"a": (0, 2), "b": (4, 4)}, 0.1, None, id="too-few-attempts"),
            pytest.param(["a", "b", "c"], {"a": (0, 4), "c": (4, 4)}, 0.1, ["c", "b", "a"], id="unscored-keeps-slot"),
            pytest.param(["a", "b"], {"a": (3, 4), "b": (4, 4)}, 0.1, ["b", "a"], id="small-but-enough"),
            pytest.param(["a", "b"], {"a": (3, 4), "b": (4, 4)}, 0.2, None, id="below-margin"),
            pytest.param(["a", "b"], {"a": (4, 4), "b": (0, 4)}, 0.1, None, id="already-best-first"),
        ],
    )
    def test_order_by_smoothed_success(
        self, chain: list[str], counts: dict[str, tuple[int, int]], margin: float, expected: list[str] | None
    ) -> None:
        """Scored agents are sorted by (s+1)/(n+2) within their slots, when the gain reaches the margin."""
        assert propose_order(chain, counts, min_attempts=3, margin=margin) == expected


class TestAgentScorer:
    def config(self, env: Env, auto: bool) -> str:
        return CONFIG.format(state=env.tmp / "state", repo=env.tmp / "calc", auto=str(auto).lower())

    async def test_without_auto_tune_it_only_proposes(self, env: Env) -> None:
        """auto_tune off: the file is untouched and the proposal is journalled once over two runs."""
        text = self.config(env, False)
        rt = env.runtime(config_file=text)
        week_of_work(rt)
        scorer = rt.agent_scorer()
        await scorer.tick()
        await scorer.tick()
        assert (env.tmp / "agentos.yaml").read_text() == text
        (proposal,) = events_of(rt, "routing_proposed")
        assert proposal.data["current"] == ["claude", "codex"]
        assert proposal.data["proposed"] == ["codex", "claude"]
        assert proposal.data["applied"] is False

    async def test_with_auto_tune_it_edits_the_file_keeping_comments(self, env: Env) -> None:
        """auto_tune on: the chain is reordered in the file, comments stay, a second run changes nothing."""
        rt = env.runtime(config_file=self.config(env, True))
        week_of_work(rt)
        scorer = rt.agent_scorer()
        await scorer.tick()
        text = (env.tmp / "agentos.yaml").read_text()
        assert "implementation: [codex, claude]" in text
        assert "# agentos test config: the comments must survive auto-tuning" in text
        assert "# the chain per task type" in text and "# the scorer may edit this file" in text
        assert rt.config.routing.fallbacks["implementation"] == ["codex", "claude"]
        await scorer.tick()
        assert (env.tmp / "agentos.yaml").read_text() == text
        assert len(events_of(rt, "routing_tuned")) == 1
        assert len(events_of(rt, "routing_proposed")) == 1

    async def test_auto_tune_without_a_config_file_is_skipped(self, env: Env) -> None:
        """No config file to edit: the proposal is journalled, nothing else changes."""
        rt = env.runtime()
        rt.settings.config = Config(
            state_dir=str(env.tmp / "state"),
            repos=rt.config.repos,
            agents={"claude": AgentConfig(kind="claude"), "codex": AgentConfig(kind="codex")},
            routing={"fallbacks": {"implementation": ["claude", "codex"]}, "auto_tune": True},  # type: ignore[arg-type]
        )
        week_of_work(rt)
        await rt.agent_scorer().tick()
        assert rt.config.routing.fallbacks["implementation"] == ["claude", "codex"]
        assert [e.data["applied"] for e in events_of(rt, "routing_proposed")] == [False]
        assert events_of(rt, "routing_tuned") == []


# ---------------------------------------------------------------- backlog groomer


async def new_issue(rt: LoopRig, title: str, body: str = "", labels: tuple[str, ...] = (), repo: str = "calc") -> Issue:
    assert isinstance(rt.forge, LocalForge)
    return await rt.forge.new_issue(repo, title, body, labels, author="alice")


class TestTitles:
    @pytest.mark.parametrize(
        ("a", "b", "same"),
        [
            pytest.param("Add a --verbose flag", "add a verbose flag!", True, id="punctuation"),
            pytest.param("[cli] Add a verbose flag", "fix: add a verbose flag", True, id="prefixes"),
            pytest.param("Support exporting reports as CSV", "Support exporting report as CSV", True, id="near"),
            pytest.param("Fix crash in parser 12", "Fix crash in parser 13", False, id="different-numbers"),
            pytest.param("Add login page", "Add logout page", False, id="short-and-different"),
            pytest.param("Speed up the build", "Document the release process", False, id="unrelated"),
        ],
    )
    def test_similar_titles(self, a: str, b: str, same: bool) -> None:
        """Equal normalised titles or ≥ 0.9 alike with the same numbers are duplicates."""
        assert similar_titles(a, b) is same


class TestBacklogGroomer:
    async def test_a_stale_issue_gets_a_label_and_one_comment(self, env: Env, clock: SettableClock) -> None:
        """30 days without activity: labelled and commented once; a repeated pass writes nothing."""
        rt = env.runtime()
        stale = await new_issue(rt, "Old idea")
        active = await new_issue(rt, "Being worked on", labels=(READY_LABEL,))
        clock.advance(days=40)
        fresh = await new_issue(rt, "New idea")
        groomer = rt.backlog_groomer()
        await groomer.tick()
        await groomer.tick()  # gated by the cadence
        s = LoopSettings()
        await groomer.groom(rt.config.repos[0], await rt.forge.list_issues("calc", state="all"), s, clock.now)
        assert STALE_LABEL in (await rt.forge.get_issue("calc", stale.number)).labels
        assert len(await rt.forge.comments("calc", stale.number)) == 1
        for other in (active, fresh):
            assert await rt.forge.comments("calc", other.number) == []
        assert [e.data["stale"] for e in events_of(rt, "backlog_groomed")] == [[stale.number]]

    async def test_a_stale_issue_is_closed_only_when_enabled_and_untouched(
        self, env: Env, clock: SettableClock
    ) -> None:
        """With close_stale_days, an issue nobody touched after the note is closed; a reply keeps it open."""
        rt = env.runtime()
        quiet = await new_issue(rt, "Quiet one")
        answered = await new_issue(rt, "Answered one")
        clock.advance(days=31)
        s = LoopSettings(close_stale_days=7)
        groomer = rt.backlog_groomer(s)
        await groomer.tick()
        clock.advance(days=1)
        await rt.forge.comment("calc", answered.number, "Still wanted!", key="user-reply")
        clock.advance(days=7)
        await groomer.tick()
        assert (await rt.forge.get_issue("calc", quiet.number)).state == "closed"
        assert (await rt.forge.get_issue("calc", answered.number)).state == "open"
        assert events_of(rt, "backlog_groomed")[-1].data["closed"] == [quiet.number]

    async def test_likely_duplicates_are_cross_linked(self, env: Env) -> None:
        """The newer issue is labelled and points at the older; the older points back; nothing closes."""
        rt = env.runtime()
        older = await new_issue(rt, "Add a --verbose flag")
        await new_issue(rt, "Fix crash in parser 12")
        await new_issue(rt, "Fix crash in parser 13")
        newer = await new_issue(rt, "add a verbose flag")
        assert [(n.number, o.number) for n, o in find_duplicates(await rt.forge.list_issues("calc"))] == [
            (newer.number, older.number)
        ]
        groomer = rt.backlog_groomer()
        await groomer.tick()
        await groomer.groom(
            rt.config.repos[0], await rt.forge.list_issues("calc", state="all"), LoopSettings(), rt.clock()
        )
        (note,) = await rt.forge.comments("calc", newer.number)
        assert f"duplicate of #{older.number}" in note.body
        (back,) = await rt.forge.comments("calc", older.number)
        assert f"#{newer.number} may duplicate" in back.body
        assert DUPLICATE_LABEL in (await rt.forge.get_issue("calc", newer.number)).labels
        assert all(i.state == "open" for i in await rt.forge.list_issues("calc", state="all"))

    async def test_a_quota_limited_escalation_is_made_ready_again(self, env: Env, clock: SettableClock) -> None:
        """A transient blocker older than a day: blocked → ready, once; a real blocker stays blocked."""
        rt = env.runtime()
        transient = await new_issue(rt, "Hit a usage limit", labels=(BLOCKED_LABEL,))
        real = await new_issue(rt, "Tests fail", labels=(BLOCKED_LABEL,))
        escalate(rt, run(rt, "calc", transient.number, "claude", False, "quota_limited"), "quota_limited")
        escalate(rt, run(rt, "calc", real.number, "claude", False, "test_failure"), "test_failure")
        clock.advance(hours=25)
        groomer = rt.backlog_groomer()
        await groomer.tick()
        await groomer.groom(
            rt.config.repos[0], await rt.forge.list_issues("calc", state="all"), LoopSettings(), rt.clock()
        )
        labels = (await rt.forge.get_issue("calc", transient.number)).labels
        assert READY_LABEL in labels and BLOCKED_LABEL not in labels
        assert len(await rt.forge.comments("calc", transient.number)) == 1
        assert (await rt.forge.get_issue("calc", real.number)).labels == [BLOCKED_LABEL]
        assert events_of(rt, "backlog_groomed")[0].data["rereadied"] == [transient.number]

    async def test_blocker_triage_rereadies_a_runner_failure_after_the_cooldown_within_the_cap(
        self, env: Env, clock: SettableClock
    ) -> None:
        """runner_failure is triaged every run, not only on the weekly pass: not before the cooldown, then once
        (journalled), and not again past ``max_rereadies``; a test_failure stays blocked."""
        rt = env.runtime()
        crashed = await new_issue(rt, "Crashed agent", labels=(BLOCKED_LABEL,))
        real = await new_issue(rt, "Tests fail", labels=(BLOCKED_LABEL,))
        task = run(rt, "calc", crashed.number, "claude", False, "runner_failure")
        escalate(rt, task, "runner_failure")
        escalate(rt, run(rt, "calc", real.number, "claude", False, "test_failure"), "test_failure")
        s = LoopSettings(reready_after_hours=2, max_rereadies=1, target_backlog_depth=0)
        groomer = rt.backlog_groomer(s)
        await groomer.tick()  # the weekly pass: too early
        clock.advance(hours=1)
        await groomer.tick()
        assert (await rt.forge.get_issue("calc", crashed.number)).labels == [BLOCKED_LABEL]
        clock.advance(hours=1, minutes=1)
        await groomer.tick()  # not the weekly pass: the triage runs anyway
        labels = (await rt.forge.get_issue("calc", crashed.number)).labels
        assert READY_LABEL in labels and BLOCKED_LABEL not in labels
        (event,) = events_of(rt, "blocker_rereadied")
        assert (event.task, event.data["blocker"], event.data["count"]) == (task.id, "runner_failure", 1)
        assert (await rt.forge.get_issue("calc", real.number)).labels == [BLOCKED_LABEL]

        await rt.forge.remove_label("calc", crashed.number, READY_LABEL)  # it ran and crashed again
        await rt.forge.add_labels("calc", crashed.number, [BLOCKED_LABEL])
        clock.advance(hours=3)
        await groomer.tick()
        assert (await rt.forge.get_issue("calc", crashed.number)).labels == [BLOCKED_LABEL]
        assert len(events_of(rt, "blocker_rereadied")) == 1

    async def test_the_evidence_reaches_the_question_and_without_an_agent_becomes_typed_candidates(
        self, env: Env
    ) -> None:
        """Known Issues, a result's RISKS, a partial outcome, a finding and the last sprint's next focus are in the
        planner agent's question; with no agent the same evidence gives typed, prioritised candidates."""
        rt = env.runtime()
        (env.tmp / "calc" / "CODEBASE.md").write_text("# Code\n\n## Known Issues\n\n- Parser drops trailing commas\n")
        run_dir = env.tmp / "runs" / "calc-7"
        run_dir.mkdir(parents=True)
        (run_dir / ".agent_result.md").write_text(
            "STATUS: partial\nBLOCKER_CODE: missing_context\nSUMMARY: half of the export is done\n"
            "RISKS: the CSV writer ignores the locale's decimal separator\n"
        )
        task = run(rt, "calc", 7, "claude", False, "missing_context", title="Export reports")
        assert task.current_attempt is not None
        task.current_attempt.run_dir, task.current_attempt.outcome = str(run_dir), "partial"
        task.current_attempt.summary = "half of the export is done"
        await rt.forge.create_issue("calc", "Flaky tests in test_api", "body", [], key="finding:flaky:calc")
        rt.journal.record("sprint_reported", None, repo="calc", sprint="s1", next_focus=["unblock #3 Login (timeout)"])

        class Planner:
            asked: list[str] = []

            async def ask(self, prompt: str, model: type[M]) -> M | None:
                self.asked.append(prompt)
                return None

        llm = Planner()
        await rt.backlog_groomer(LoopSettings(target_backlog_depth=4), llm=llm).tick()
        (question,) = llm.asked
        for evidence in (
            "- Parser drops trailing commas",
            "calc#7: the CSV writer ignores the locale's decimal separator",
            "calc#7 partial (missing_context): Export reports: half of the export is done",
            "- Flaky tests in test_api",
            "- unblock #3 Login (timeout)",
        ):
            assert evidence in question, evidence
        filed = {i.title: sorted(i.labels) for i in await rt.forge.list_issues("calc") if "proposed" in str(i.labels)}
        assert filed == {
            "Parser drops trailing commas": ["agentos:proposed", "prio:normal", "type:debugging"],
            "Finish the rest of #7: Export reports": ["agentos:proposed", "prio:normal", "type:implementation"],
            "Address a risk from calc#7: the CSV writer ignores the locale's decimal separator": [
                "agentos:proposed",
                "prio:low",
                "type:implementation",
            ],
        }

    async def test_refill_to_the_target_depth_never_repeats_a_title(self, env: Env) -> None:
        """Proposals fill the backlog to its target; one that repeats an existing title is dropped."""

        class Planner:
            asked: list[str] = []

            async def ask(self, prompt: str, model: type[M]) -> M | None:
                self.asked.append(prompt)
                return model.model_validate(
                    {
                        "issues": [
                            {"title": "Add login page", "body": "again"},
                            {"title": "Write the API docs", "body": "## Goal\nDocs"},
                            {"title": "x", "body": "too short"},
                            {"title": "Add CSV export", "body": "## Goal\nCSV"},
                            {"title": "One too many", "body": "over the target"},
                        ]
                    }
                )

        rt = env.runtime()
        (env.tmp / "calc" / "OBJECTIVES.md").write_text("Make reporting great.\n")
        (env.tmp / "calc" / "NORTH_STAR.md").write_text("Every team reads its numbers daily.\n")
        await new_issue(rt, "Add login page")
        llm = Planner()
        groomer = rt.backlog_groomer(LoopSettings(target_backlog_depth=3), llm=llm)
        await groomer.tick()
        titles = sorted(i.title for i in await rt.forge.list_issues("calc"))
        assert titles == ["Add CSV export", "Add login page", "Write the API docs"]
        assert "Make reporting great." in llm.asked[0]
        result = await groomer.groom(
            rt.config.repos[0],
            await rt.forge.list_issues("calc", state="all"),
            LoopSettings(target_backlog_depth=3),
            rt.clock(),
        )
        assert (result.refill, result.proposed, len(llm.asked)) == ("full", [], 1)

    async def test_refill_without_an_llm_is_skipped(self, env: Env) -> None:
        """No LLM agent configured: the target is noted as not reached, nothing is invented."""
        rt = env.runtime()
        await rt.backlog_groomer(LoopSettings(target_backlog_depth=3)).tick()
        assert events_of(rt, "backlog_groomed")[0].data["refill"] == "no_llm"
        assert await rt.forge.list_issues("calc") == []

    def planner(self, env: Env, rt: LoopRig, answer: str, **loops: Any) -> Path:
        """Configure ``loops.llm_agent`` as the fake one-shot CLI answering ``answer``; the prompt log's path."""
        from agentos.config import LoopsConfig

        (env.tmp / "answer.txt").write_text(answer)
        log = env.tmp / "prompts.log"
        argv = [sys.executable, str(FAKE_LLM), "{prompt_file}", str(env.tmp / "answer.txt"), str(log)]
        rt.settings.config = rt.config.model_copy(
            update={
                "agents": {"planner": AgentConfig(kind="command", argv=argv)},
                "loops": LoopsConfig(llm_agent="planner", **loops),
            }
        )
        return log

    async def closed_duplicate(self, rt: LoopRig, title: str) -> Issue:
        issue = await new_issue(rt, title, labels=(DUPLICATE_LABEL,))
        await rt.forge.close_issue("calc", issue.number)
        return issue

    async def test_refill_asks_the_configured_agent_with_objectives_and_failures(self, env: Env) -> None:
        """The planner CLI gets objectives and failure signatures; valid new titles are filed, a closed one never."""
        rt = env.runtime()
        (env.tmp / "calc" / "OBJECTIVES.md").write_text("Make reporting great.\n")
        (env.tmp / "calc" / "NORTH_STAR.md").write_text("Every team reads its numbers daily.\n")
        await new_issue(rt, "Add login page")
        await self.closed_duplicate(rt, "Export reports as CSV")
        for n in (7, 8):
            run(rt, "calc", n, "claude", False, "test_failure", f"FAILED tests/test_api.py::test_auth - KeyError {n}")
        answer = {
            "issues": [
                {"title": "Export reports as CSV", "body": "closed as a duplicate before"},
                {"title": "two\nlines", "body": "not a title"},
                {"body": "no title at all"},
                {"title": 42},
                {"title": "Write the API docs", "body": "## Goal\nDocs"},
                {"title": "Fix the KeyError in test_auth", "body": "## Goal\nNo more KeyError"},
            ]
        }
        log = self.planner(env, rt, json.dumps(answer), target_backlog_depth=4)
        await rt.backlog_groomer().tick()
        prompt = log.read_text()
        assert "Make reporting great." in prompt and "- Export reports as CSV" in prompt
        assert "# Product context" in prompt
        assert "## NORTH_STAR.md\n\n```\nEvery team reads its numbers daily." in prompt
        assert "`test_failure` ×2: failed <path>::test_auth - keyerror <n>" in prompt
        open_titles = sorted(i.title for i in await rt.forge.list_issues("calc"))
        assert open_titles == ["Add login page", "Fix the KeyError in test_auth", "Write the API docs"]
        (event,) = events_of(rt, "backlog_groomed")
        assert event.data["refill"] == "asked" and len(event.data["proposed"]) == 2

    async def test_refill_falls_back_to_the_objectives_without_a_working_agent(self, env: Env) -> None:
        """An agent answering garbage (or none at all): open objective items and uncovered failures, no repeats."""
        rt = env.runtime()
        (env.tmp / "calc" / "OBJECTIVES.md").write_text(
            "# Objectives\n- [x] Ship the first release\n- [ ] Export reports as CSV\n"
            "- Add a dark mode toggle.\n* Document the release process\n"
        )
        await self.closed_duplicate(rt, "Export reports as CSV")
        for n in (7, 8):
            run(rt, "calc", n, "claude", False, "timeout", "idle limit reached")
        log = self.planner(env, rt, "I think you should add more tests.", target_backlog_depth=5)
        groomer = rt.backlog_groomer()
        await groomer.tick()
        first, second = log.read_text().split("\n=====\n")[:-1]  # garbage twice: asked once more, then the fallback
        assert "not valid" not in first and "Your previous answer was not valid: no JSON object" in second
        titles = sorted(i.title for i in await rt.forge.list_issues("calc"))
        assert titles == [
            "Add a dark mode toggle",
            "Document the release process",
            "Fix recurring timeout failures: idle limit reached",
        ]
        assert events_of(rt, "backlog_groomed")[0].data["refill"] == "deterministic"
        s = LoopSettings(target_backlog_depth=5)  # no agent at all: the same proposals, none filed twice
        result = await groomer.groom(rt.config.repos[0], await rt.forge.list_issues("calc", state="all"), s, rt.clock())
        assert (result.refill, result.proposed) == ("deterministic", [])

    async def test_the_cadence_is_per_repo_and_dispatcher_only_repos_are_skipped(
        self, env: Env, clock: SettableClock
    ) -> None:
        """calc (every 2 days) is groomed again after 2 days; lib (dispatcher_only) never."""
        rt = env.runtime(modes={"calc": "full", "lib": "dispatcher_only"}, cadence={"calc": 2})
        groomer = rt.backlog_groomer()
        await groomer.tick()
        clock.advance(days=1)
        await groomer.tick()
        clock.advance(days=1)
        await groomer.tick()
        assert [e.data["repo"] for e in events_of(rt, "backlog_groomed")] == ["calc", "calc"]


# ---------------------------------------------------------------- sprint planner


class TestSprintPlanner:
    async def backlog(self, rt: LoopRig) -> dict[str, Issue]:
        return {
            "polish": await new_issue(rt, "Polish the UI", labels=("prio:low",)),
            "core": await new_issue(rt, "Core API", labels=("prio:high",)),
            "feature": await new_issue(rt, "Feature on top", "Depends on #4"),
            "base": await new_issue(rt, "Base layer"),
            "running": await new_issue(rt, "Already going", labels=(READY_LABEL,)),
            "newest": await new_issue(rt, "Newest normal"),
        }

    async def test_it_is_off_unless_enabled(self, env: Env) -> None:
        """The default settings never make a backlog run."""
        rt = env.runtime()
        await self.backlog(rt)
        await rt.sprint_planner().tick()
        assert [i.number for i in await rt.forge.ready_issues("calc")] == [5]

    async def test_picks_by_priority_and_age_after_dependencies(self, env: Env) -> None:
        """With sprint_auto_approve, plan_size issues are made ready: high first, then by age, each after what it
        depends on."""
        rt = env.runtime()
        b = await self.backlog(rt)
        assert b["base"].number == 4
        picked = pick_sprint(await rt.forge.list_issues("calc", state="all"), 3)
        assert [i.title for i in picked] == ["Core API", "Base layer", "Feature on top"]
        planner = rt.sprint_planner(LoopSettings(sprint_enabled=True, sprint_auto_approve=True, plan_size=3))
        await planner.tick()
        await planner.tick()
        ready = sorted(i.number for i in await rt.forge.ready_issues("calc"))
        assert ready == sorted([b["core"].number, b["base"].number, b["feature"].number, b["running"].number])
        (note,) = [i for i in await rt.forge.list_issues("calc") if SPRINT_LABEL in i.labels]
        assert note.title == "Sprint 2026-03-02" and READY_LABEL not in note.labels
        assert f"#{b['core'].number} Core API (high)" in note.body
        assert [e.data["issues"] for e in events_of(rt, "sprint_planned")] == [[2, 4, 3]]

    async def test_the_next_sprint_reports_the_previous_outcome(self, env: Env, clock: SettableClock) -> None:
        """A week later the new note says what became of the last sprint, and the old note is closed."""
        rt = env.runtime()
        b = await self.backlog(rt)
        s = LoopSettings(sprint_enabled=True, sprint_auto_approve=True, plan_size=2)
        await rt.sprint_planner(s).tick()
        merge(rt, run(rt, "calc", b["core"].number, "codex", True))
        await rt.forge.close_issue("calc", b["core"].number)
        clock.advance(days=7)
        await rt.sprint_planner(s).tick()
        notes = [i for i in await rt.forge.list_issues("calc", state="all") if SPRINT_LABEL in i.labels]
        old, new = sorted(notes, key=lambda i: i.number)
        assert old.state == "closed" and new.state == "open"
        assert "### Previous sprint (2026-03-02)" in new.body
        assert f"#{b['core'].number} Core API: merged" in new.body
        assert f"#{b['base'].number} Base layer: carried over" in new.body


# ---------------------------------------------------------------- daily digest


class TestDailyDigest:
    async def test_the_digest_has_the_days_merges_escalations_and_batched_items(
        self, env: Env, clock: SettableClock
    ) -> None:
        """One sev2 message with merges, escalations, cost and the sev3 batch; once per date."""
        rt = env.runtime()
        sent: list[Message] = []

        async def send(message: Message) -> None:
            sent.append(message)

        notifier = Notifier(send, seen=MemorySeenStore())
        merge(rt, run(rt, "calc", 1, "codex", True, title="Add the adder"))
        escalate(rt, run(rt, "calc", 2, "claude", False, "timeout", title="Huge refactor"), "timeout")
        run(rt, "calc", 3, "codex", True, title="Waiting for review")
        notifier.notify(3, "merged:calc#1", "Merged calc#101: Add the adder")
        clock.advance(hours=23)
        digest = rt.daily_digest(notify=notifier)
        await digest.tick()
        notifier.notify(3, "later", "arrives after the digest")
        await digest.tick()
        await notifier.aclose()
        (message,) = sent
        assert (message.severity, message.key) == (2, "digest:2026-03-03")
        text = message.text
        assert "Merged (1):" in text and "calc#1 PR #101: Add the adder" in text
        assert "Escalated (1):" in text and "calc#2 (timeout): Huge refactor" in text
        assert "PRs waiting: 1" in text and "cost $0.50" in text
        assert "Notifications (1):" in text and "Merged calc#101: Add the adder" in text
        assert [e.data["date"] for e in events_of(rt, "digest_sent")] == ["2026-03-03"]
        assert [m.key for m in notifier.drain_digest()] == ["later"]  # not drained by the skipped run

    async def test_the_window_is_yesterday_08_00_to_08_00_local_across_dst(
        self, env: Env, clock: SettableClock
    ) -> None:
        """With `timezone: Europe/Berlin`, the 08:00 digest the morning the clocks go forward covers 08:00 CET
        to 08:00 CEST (23 h): a merge at 07:30 CET the day before is not in it, one at 08:30 CET is, and
        the digest is keyed by the Berlin date."""
        rt = env.runtime()
        rt.config.timezone = "Europe/Berlin"
        clock.now = datetime(2026, 3, 28, 6, 30, tzinfo=UTC)  # 07:30 CET: the previous digest's day
        merge(rt, run(rt, "calc", 1, "codex", True, title="Before the window"))
        clock.now = datetime(2026, 3, 28, 7, 30, tzinfo=UTC)  # 08:30 CET
        merge(rt, run(rt, "calc", 2, "codex", True, title="Inside the window"))
        clock.now = datetime(2026, 3, 29, 6, tzinfo=UTC)  # 08:00 CEST, when `0 8 * * *` fires in Berlin
        await rt.daily_digest().tick()
        (event,) = events_of(rt, "digest_sent")
        assert event.data["date"] == "2026-03-29"
        assert event.data["merged"] == 1
        text = event.data["text"]
        assert text.splitlines()[:2] == [
            "agentos daily digest 2026-03-29",
            "2026-03-28 08:00 to 2026-03-29 08:00 Europe/Berlin",
        ]
        assert "Inside the window" in text and "Before the window" not in text

    @pytest.mark.parametrize(
        ("now", "zone", "since", "day"),
        [
            pytest.param(
                datetime(2026, 3, 29, 6, tzinfo=UTC),
                "Europe/Berlin",
                datetime(2026, 3, 28, 7, tzinfo=UTC),
                "2026-03-29",
                id="spring-forward-23h",
            ),
            pytest.param(
                datetime(2026, 10, 25, 7, tzinfo=UTC),
                "Europe/Berlin",
                datetime(2026, 10, 24, 6, tzinfo=UTC),
                "2026-10-25",
                id="fall-back-25h",
            ),
            pytest.param(
                datetime(2026, 3, 2, 23, tzinfo=UTC),
                "Asia/Tokyo",
                datetime(2026, 3, 1, 23, tzinfo=UTC),
                "2026-03-03",
                id="local-date-ahead-of-utc",
            ),
            pytest.param(
                datetime(2026, 3, 3, 8, tzinfo=UTC),
                "UTC",
                datetime(2026, 3, 2, 8, tzinfo=UTC),
                "2026-03-03",
                id="utc",
            ),
        ],
    )
    def test_the_digest_window_in_a_zone(self, now: datetime, zone: str, since: datetime, day: str) -> None:
        """`digest_window_hours` (24) back on the zone's wall clock, and the zone's date."""
        assert window(now, 24, ZoneInfo(zone)) == (since, day)

    async def test_without_a_notifier_the_digest_is_journalled(self, env: Env) -> None:
        """No Telegram: the text still lands in the journal."""
        rt = env.runtime()
        await rt.daily_digest().tick()
        (event,) = events_of(rt, "digest_sent")
        assert "Merged (0):" in event.data["text"]


# ---------------------------------------------------------------- housekeeping


class TestHousekeeping:
    async def test_rotated_journals_past_the_retention_are_pruned_by_the_daily_job(
        self, env: Env, clock: SettableClock
    ) -> None:
        """A day's rotated journal is kept for event_retention_days, then deleted by the job, not at start-up."""
        rt = env.runtime()
        rt.settings.config = rt.config.model_copy(
            update={"limits": rt.config.limits.model_copy(update={"event_retention_days": 30})}
        )
        store = env.store()
        merge(rt, run(rt, "calc", 1, "codex", True))
        store.append(rt.journal.events)
        store.snapshot(rt.graph, DaemonState())  # rotates the journal into events/events-2026-03-02.jsonl
        old_day = store.events_dir / "events-2026-03-02.jsonl"
        assert old_day.is_file()
        job = rt.housekeeping(store)
        clock.advance(days=30)
        await job.tick()
        assert old_day.is_file(), "still inside the retention"
        clock.advance(days=1, hours=1)
        await job.tick()
        await job.tick()
        assert not old_day.exists()
        assert [e.data for e in events_of(rt, "events_pruned")] == [{"before": "2026-03-03", "files": 1}]
        assert repr(job) == "<Housekeeping pruned=1>"


# ---------------------------------------------------------------- llm


class TestLlm:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            pytest.param('{"a": 1}', {"a": 1}, id="bare"),
            pytest.param('Sure!\n```json\n{"a": {"b": [1, 2]}}\n```\nDone.', {"a": {"b": [1, 2]}}, id="fenced"),
            pytest.param('{"a": 1} then {"b": 2}', {"b": 2}, id="last-wins"),
            pytest.param("no json {here", None, id="none"),
            pytest.param("[1, 2]", None, id="not-an-object"),
        ],
    )
    def test_last_json_object(self, text: str, expected: dict[str, Any] | None) -> None:
        """The last top-level object in the answer, whatever prose surrounds it."""
        assert last_json_object(text) == expected

    def agent(self, tmp_path: Path, script: str) -> Llm:
        path = tmp_path / "agent.py"
        path.write_text(script)
        cfg = AgentConfig(kind="command", argv=[sys.executable, str(path), "{prompt_file}"])
        return Llm("helper", cfg, workdir=tmp_path / "llm", timeout_s=20)

    async def test_an_answer_is_read_from_the_agents_output(self, tmp_path: Path) -> None:
        """The prompt reaches the agent (redacted), its JSON comes back validated, nothing is left behind."""
        llm = self.agent(
            tmp_path,
            "import json, sys\n"
            "prompt = open(sys.argv[1]).read()\n"
            "print('thinking...')\n"
            "print(json.dumps({'echo': prompt.splitlines()[0]}))\n",
        )
        secret = "ghp_" + "Z" * 36
        assert await llm.ask(f"hello {secret}", Echo) == Echo(echo="hello [REDACTED]")
        assert list((tmp_path / "llm").iterdir()) == []
        assert (llm.asked, llm.answered) == (1, 1)

    async def test_each_run_has_a_temporary_folder_of_its_own(self, tmp_path: Path) -> None:
        """The agent's TMPDIR is a fresh folder under the scratch dir (not the daemon's: Codex's sandbox cannot
        start with its home inside TMPDIR), and it is gone afterwards with whatever the agent left there."""
        llm = self.agent(
            tmp_path,
            "import json, os, pathlib\n"
            "tmp = pathlib.Path(os.environ['TMPDIR'])\n"
            "(tmp / 'scratch.txt').write_text('x')\n"
            "print(json.dumps({'echo': str(tmp)}))\n",
        )
        answer = await llm.ask("where", Echo)
        assert answer is not None and Path(answer.echo).parent == tmp_path / "llm"
        assert not Path(answer.echo).exists() and list((tmp_path / "llm").iterdir()) == []

    def scripted(self, tmp_path: Path, *answers: str) -> tuple[Llm, Path]:
        """An agent that answers ``answers`` in turn (the last one again after that); the prompt log's path."""
        (tmp_path / "answers.json").write_text(json.dumps(answers))
        prompts = tmp_path / "prompts.json"
        script = (
            "import json, pathlib, sys\n"
            f"answers = json.loads(pathlib.Path({str(tmp_path / 'answers.json')!r}).read_text())\n"
            f"log = pathlib.Path({str(prompts)!r})\n"
            "seen = json.loads(log.read_text()) if log.exists() else []\n"
            "seen.append(open(sys.argv[1]).read())\n"
            "log.write_text(json.dumps(seen))\n"
            "print(answers[min(len(seen), len(answers)) - 1])\n"
        )
        return self.agent(tmp_path, script), prompts

    async def test_a_valid_first_answer_is_asked_once(self, tmp_path: Path) -> None:
        """A first answer that validates is the result; the agent is not asked again."""
        llm, prompts = self.scripted(tmp_path, 'Here: {"title": "Disk full", "count": 3}')
        assert await llm.ask("name it", Named) == Named(title="Disk full", count=3)
        assert len(json.loads(prompts.read_text())) == 1

    @pytest.mark.parametrize(
        ("first", "error"),
        [
            pytest.param("I am not sure what you want.", "no JSON object in the answer", id="no-json"),
            pytest.param(
                '{"title": "Disk full", "count": "many"}', "count: Input should be a valid integer", id="invalid"
            ),
        ],
    )
    async def test_a_bad_answer_is_asked_again_with_the_correction(
        self, tmp_path: Path, first: str, error: str
    ) -> None:
        """No JSON or a rejected one: asked once more, the second prompt carrying the error and the schema."""
        llm, prompts = self.scripted(tmp_path, first, '{"title": "Disk full", "count": 3}')
        assert await llm.ask("name it", Named) == Named(title="Disk full", count=3)
        one, two = json.loads(prompts.read_text())
        assert one.startswith("name it") and "not valid" not in one
        assert two.startswith("name it") and f"Your previous answer was not valid: {error}" in two
        assert json.dumps(Named.model_json_schema(), separators=(",", ":")) in two
        assert (llm.asked, llm.answered) == (1, 1)

    async def test_two_bad_answers_give_none_and_the_correction_is_redacted(self, tmp_path: Path) -> None:
        """Garbage twice: None after exactly two runs; a secret in the bad answer never goes back to the agent."""
        secret = "ghp_" + "Q" * 36
        llm, prompts = self.scripted(tmp_path, f"I would rather not. My token is {secret}")
        assert await llm.ask("name it", Named) is None
        _, two = json.loads(prompts.read_text())
        assert secret not in two and "My token is [REDACTED]" in two
        assert (llm.asked, llm.answered) == (1, 0)

    async def test_a_long_validation_error_is_cut(self, tmp_path: Path) -> None:
        """Hundreds of errors in the first answer: the correction quotes at most CORRECTION_CHARS of them."""
        llm, prompts = self.scripted(tmp_path, json.dumps({"values": ["x"] * 300}), '{"values": [1, 2]}')
        assert await llm.ask("list them", Values) == Values(values=[1, 2])
        _, two = json.loads(prompts.read_text())
        error = two.split("Your previous answer was not valid: ", 1)[1].split("\nAnswer with one JSON object", 1)[0]
        assert error.startswith("values.0: Input should be a valid integer") and error.endswith("…")
        assert len(error) == CORRECTION_CHARS

    async def test_a_failed_run_gives_none(self, tmp_path: Path) -> None:
        """A crash, a missing program or no JSON twice: None, never an exception; a crash is not retried."""
        counter = tmp_path / "runs"
        crash = (
            f"import pathlib, sys\np = pathlib.Path({str(counter)!r})\n"
            "p.write_text(p.read_text() + 'x' if p.exists() else 'x')\nsys.exit(3)\n"
        )
        assert await self.agent(tmp_path, crash).ask("q", Echo) is None
        assert counter.read_text() == "x"
        assert await self.agent(tmp_path, "print('no json here')\n").ask("q", Echo) is None
        missing = Llm("gone", AgentConfig(kind="claude", binary="/nonexistent/claude"), workdir=tmp_path / "x")
        assert await missing.ask("q", Echo) is None


class Echo(BaseModel):
    echo: str


class Named(BaseModel):
    title: str = Field(max_length=200)
    count: int


class Values(BaseModel):
    values: list[int]


# ---------------------------------------------------------------- settings


class TestSettings:
    def test_a_loops_config_section_is_read_on_every_tick(self, env: Env) -> None:
        """The config's ``loops:`` section overrides the defaults, and a reloaded config applies at once."""
        from agentos.config import LoopsConfig

        rt = env.runtime()
        assert settings_for(rt.settings) == LoopSettings()
        loops = LoopsConfig(incident_threshold=5, reready_codes=["quota_limited", "runner_failure"])
        rt.settings.config = rt.config.model_copy(update={"loops": loops})
        s = settings_for(rt.settings)
        assert (s.incident_threshold, s.reready_codes, s.stale_days) == (5, ("quota_limited", "runner_failure"), 30)
        assert settings_for(rt.settings, LoopSettings(stale_days=3)).stale_days == 3


class TestLoopJobs:
    async def test_every_loop_is_built_from_the_ports_and_runs(self, env: Env, clock: SettableClock) -> None:
        """``loop_jobs`` names each loop's job; built from the ports alone (no notifier), each one runs."""
        rt = env.runtime()
        jobs = loop_jobs(
            settings=rt.settings,
            journal=rt.journal,
            clock=clock,
            graph=rt.graph,
            forge=rt.forge,
            notify=None,
            store=env.store(),
            stopping=lambda: False,
        )
        assert sorted(jobs) == [
            "agent_scoring",
            "backlog_groom",
            "daily_digest",
            "housekeeping",
            "incident_scan",
            "log_analysis",
            "sprint_plan",
        ]
        for job in jobs.values():
            await job()
        assert [e.type for e in rt.journal.iter_events(T0 - timedelta(days=1))] == ["backlog_groomed", "digest_sent"]
