"""Outcome attribution (issue #18): the verdict of a metric's before/after readings, the ``outcome_check`` job over a
synthetic journal, the score per objective, and the metric reader on real files and a real loopback HTTP server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from agentos.config import AgentConfig, Config, RepoConfig
from agentos.context import Metric, Objectives, parse_objectives
from agentos.forge.local import LocalForge
from agentos.graph import Event
from agentos.jobs._loops import LoopSettings
from agentos.jobs._metric_reader import Reading, RepoMetrics
from agentos.jobs._prose_judge import ProseVerdict
from agentos.jobs.outcome_check import OutcomeChecker, incident_key
from agentos.llm import Llm, M
from agentos.outcomes import (
    PROSE_CHARS,
    classify,
    objectives_problems,
    outcome_lines,
    parse_number,
    prose_text,
    score_objectives,
)
from agentos.testing import LoopRig, SettableClock, build_loops
from agentos.workspace_registry import WorkspaceRegistry

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
FAKES = Path(__file__).parents[1] / "fakes" / "agents"
OBJECTIVES = """\
primary_outcome: a faster, better tested app
metrics:
  - {name: coverage, direction: up, weight: 2, command: "python3 cov.py"}
  - {name: p95_ms, direction: down, file: perf.json, pointer: /p95}
  - {name: errors, direction: down, file: errors.txt}
  - {name: signups, direction: up, file: signups.txt}
"""


class TestClassify:
    @pytest.mark.parametrize(
        ("before", "after", "direction", "verdict", "pct"),
        [
            pytest.param(80.0, 88.0, "up", "improved", 10.0, id="up-and-up"),
            pytest.param(80.0, 72.0, "up", "regressed", -10.0, id="up-but-down"),
            pytest.param(200.0, 150.0, "down", "improved", -25.0, id="down-and-down"),
            pytest.param(200.0, 260.0, "down", "regressed", 30.0, id="down-but-up"),
            pytest.param(80.0, 84.0, "up", "unchanged", 5.0, id="at-the-noise-margin"),
            pytest.param(80.0, 84.01, "up", "improved", 5.01, id="just-past-the-noise"),
            pytest.param(0.0, 0.0, "down", "unchanged", None, id="zero-stays-zero"),
            pytest.param(0.0, 2.0, "down", "regressed", None, id="from-zero"),
            pytest.param(None, 84.0, "up", "inconclusive", None, id="no-baseline"),
            pytest.param(80.0, None, "up", "inconclusive", None, id="no-reading"),
        ],
    )
    def test_a_verdict_follows_the_direction_and_the_noise_margin(
        self, before: float | None, after: float | None, direction: str, verdict: str, pct: float | None
    ) -> None:
        """Before/after against the direction; within 5 % of the baseline unchanged; a missing side inconclusive."""
        assert classify(before, after, direction, 5.0) == (verdict, pct)

    @pytest.mark.parametrize(
        ("text", "pointer", "value"),
        [
            ("collected 12\nTOTAL coverage\n87.5\n\n", None, 87.5),
            ("87.5%", None, 87.5),
            ('{"p95": {"ms": 210}}', "/p95/ms", 210.0),
            ('{"p95": "1,200"}', "/p95", 1200.0),
            ("all good", None, None),
            ('{"p95": true}', "/p95", None),
            ('{"p95": 1}', "/p99", None),
            ("nan", None, None),
            ("not json", "/p95", None),
        ],
    )
    def test_a_number_is_the_last_line_or_the_json_value(
        self, text: str, pointer: str | None, value: float | None
    ) -> None:
        """A command's or a file's number: its last non-empty line, or the value at the pointer; else none."""
        assert parse_number(text, pointer) == value


class FakeReader:
    """Readings as configured per ref: ``{ref_kind: {metric: value}}`` (``before`` for ``sha^``, ``after`` else)."""

    def __init__(self, objectives: Objectives | None, before: dict[str, Any], after: dict[str, Any], problem: str = ""):
        self._objectives = objectives
        self.values = {"before": before, "after": after}
        self.problem = problem
        self.reads: list[str] = []

    async def objectives(self, repo: RepoConfig, ref: str, s: LoopSettings) -> tuple[Objectives | None, str]:
        return self._objectives, self.problem

    async def read(self, repo: RepoConfig, metrics: Sequence[Metric], ref: str, s: LoopSettings) -> dict[str, Reading]:
        self.reads.append(ref)
        values = self.values["before" if ref.endswith("^") else "after"]
        out = {}
        for m in metrics:
            value = values.get(m.name)
            if isinstance(value, Reading):
                out[m.name] = value
            else:
                out[m.name] = Reading(value) if isinstance(value, float) else Reading(None, str(value))
        return out


@pytest.fixture
def rig(tmp_path: Path) -> LoopRig:
    clock = SettableClock(T0)
    (tmp_path / "app").mkdir()
    repo = RepoConfig(name="app", path=str(tmp_path / "app"), test_command="true")
    config = Config(state_dir=str(tmp_path / "state"), repos=[repo], loops={"outcome_noise_pct": 5})  # type: ignore[arg-type]
    forge = LocalForge(tmp_path / "state", {"app": repo}, clock=clock)
    return build_loops(config, forge, clock=clock)


def checker(rig: LoopRig, reader: FakeReader, llm: Any = None) -> OutcomeChecker:
    return OutcomeChecker(
        llm=llm,
        settings=rig.settings,
        journal=rig.journal,
        clock=rig.clock,
        graph=rig.graph,
        forge=rig.forge,
        store=rig.journal,
        stopping=lambda: False,
        reader=reader,
    )


def merge(rig: LoopRig, number: int, sha: str) -> None:
    rig.journal.record("merged", f"app#{number}", pr=number + 100, sha=sha, attempts=1)


def measured(rig: LoopRig) -> dict[str, str]:
    return {str(e.data["metric"]): str(e.data["verdict"]) for e in rig.journal.events if e.type == "outcome_measured"}


class TestOutcomeCheck:
    async def test_a_synthetic_journal_gives_each_verdict_as_configured(self, rig: LoopRig) -> None:
        """Baseline at the merge, nothing before the window, then improved / regressed / unchanged / inconclusive."""
        reader = FakeReader(
            parse_objectives(OBJECTIVES),
            before={"coverage": 80.0, "p95_ms": 200.0, "errors": 4.0, "signups": "no number in signups.txt"},
            after={"coverage": 90.0, "p95_ms": 260.0, "errors": 4.1, "signups": 12.0},
        )
        job = checker(rig, reader)
        merge(rig, 7, "a" * 40)

        await job.tick()
        [base] = [e for e in rig.journal.events if e.type == "outcome_baseline"]
        assert base.data["sha"] == "a" * 40 and reader.reads == ["a" * 40 + "^"]
        assert [m["value"] for m in base.data["metrics"]] == [80.0, 200.0, 4.0, None]
        rig.clock.advance(days=6, hours=23)
        await job.tick()
        assert measured(rig) == {}

        rig.clock.advance(hours=2)
        await job.tick()

        assert measured(rig) == {
            "coverage": "improved",
            "p95_ms": "regressed",
            "errors": "unchanged",
            "signups": "inconclusive",
        }
        assert reader.reads[-1] == "refs/remotes/origin/main"
        signups = next(e for e in rig.journal.events if e.data.get("metric") == "signups")
        assert signups.data["detail"] == "no number in signups.txt" and signups.data["before"] is None

    async def test_a_regression_files_one_incident_citing_the_merge_and_a_second_run_none(self, rig: LoopRig) -> None:
        """One issue with the PR and the commit; the next run (and one after the event is lost) files nothing."""
        reader = FakeReader(parse_objectives(OBJECTIVES), before={"errors": 1.0}, after={"errors": 9.0})
        job = checker(rig, reader)
        merge(rig, 3, "b" * 40)
        await job.tick()
        rig.clock.advance(days=8)

        await job.tick()
        await job.tick()

        issues = await rig.forge.list_issues("app", state="all")
        [issue] = [i for i in issues if incident_key("app", "b" * 40) in i.body]
        assert issue.title == "Regression after app#3: errors"
        assert (
            "PR #103" in issue.body and "`bbbbbbbbbbbb`" in issue.body and "| errors | down | 1.0 | 9.0 |" in issue.body
        )
        assert [e.data["action"] for e in rig.journal.events if e.type == "outcome_incident"] == ["filed"]
        rig.journal.events = [e for e in rig.journal.events if e.type != "outcome_incident"]
        await job.tick()
        assert len([i for i in await rig.forge.list_issues("app", state="all") if "incident:outcome" in i.body]) == 1
        assert [e.data["action"] for e in rig.journal.events if e.type == "outcome_incident"] == ["found"]

    async def test_a_bad_objectives_file_is_one_line_and_nothing_is_measured(self, rig: LoopRig) -> None:
        """An invalid objectives.yaml: the baseline carries its one-line problem; no reading, no crash."""
        reader = FakeReader(
            None, {}, {}, problem="objectives.yaml:3: metrics[0].direction: Input should be 'up' or 'down'"
        )
        job = checker(rig, reader)
        merge(rig, 4, "c" * 40)

        await job.tick()
        rig.clock.advance(days=8)
        await job.tick()

        [base] = [e for e in rig.journal.events if e.type == "outcome_baseline"]
        assert base.data["problem"].startswith("objectives.yaml:3: metrics[0].direction")
        assert base.data["metrics"] == [] and reader.reads == [] and measured(rig) == {}
        assert objectives_problems(rig.journal.events) == {"app": base.data["problem"]}
        reader.problem, reader._objectives = "", parse_objectives(OBJECTIVES)  # fixed: the next merge reads it
        merge(rig, 6, "e" * 40)
        await job.tick()
        assert objectives_problems(rig.journal.events) == {}

    async def test_a_merge_past_the_lookback_or_in_a_disabled_repo_is_left_alone(self, rig: LoopRig) -> None:
        """Only enabled repos are read (`ctl repo off` stops the job for a repo)."""
        reader = FakeReader(parse_objectives(OBJECTIVES), {"errors": 1.0}, {"errors": 1.0})
        rig.settings.disabled.add("app")
        merge(rig, 5, "d" * 40)
        await checker(rig, reader).tick()
        assert not [e for e in rig.journal.events if e.type == "outcome_baseline"]


class TestScores:
    def test_each_objective_gets_its_counts_score_and_last_measurement(self) -> None:
        """Per repo and metric: verdict counts, (improved − regressed) / conclusive, the newest reading."""

        def ev(metric: str, verdict: str, day: int, before: float, after: float) -> Event:
            data = {"repo": "app", "metric": metric, "verdict": verdict, "direction": "up", "weight": 2}
            data |= {"before": before, "after": after, "change_pct": round(100 * (after - before) / before, 2)}
            return Event(type="outcome_measured", task=f"app#{day}", ts=T0 + timedelta(days=day), data=data)

        events = [ev("coverage", "improved", 1, 80, 84), ev("coverage", "regressed", 2, 84, 70)]
        events += [ev("coverage", "improved", 3, 70, 90), ev("coverage", "inconclusive", 4, 90, 90)]
        [score] = score_objectives(events)
        assert score.counts == {"improved": 2, "unchanged": 0, "regressed": 1, "inconclusive": 1}
        assert score.score == pytest.approx(1 / 3)
        assert outcome_lines([score]) == [
            "- app / coverage (up, weight 2): 2 improved, 1 regressed, 1 inconclusive; score +0.33; last app#4: "
            "90 → 90 (+0%), inconclusive"
        ]


# ---------------------------------------------------------------- prose metrics

PROSE = """\
primary_outcome: happier users
metrics:
  - {name: errors, direction: down, file: errors.txt}
  - name: feedback
    kind: prose
    direction: down
    description: complaints in the weekly user feedback summary
    file: FEEDBACK.md
"""
BEFORE = "Users like the new editor. One complaint about slow saves."
AFTER = "Many users complain that saving now fails and loses their work."


class FakeLlm:
    """A ``ModelAsker`` answering each question with the next of ``answers`` (None: no valid answer)."""

    def __init__(self, *answers: ProseVerdict | None) -> None:
        self.answers = list(answers)
        self.prompts: list[str] = []

    async def ask(self, prompt: str, model: type[M]) -> M | None:
        assert model is ProseVerdict
        self.prompts.append(prompt)
        answer = self.answers.pop(0)
        return None if answer is None else model.model_validate(answer.model_dump())


def prose(rig: LoopRig) -> Event:
    return next(e for e in rig.journal.events if e.type == "outcome_measured" and e.data["metric"] == "feedback")


async def measure_prose(rig: LoopRig, before: Any, after: Any, llm: Any) -> Event:
    reader = FakeReader(
        parse_objectives(PROSE), {"errors": 3.0, "feedback": before}, {"errors": 3.0, "feedback": after}
    )
    job = checker(rig, reader, llm)
    merge(rig, 8, "f" * 40)
    await job.tick()
    rig.clock.advance(days=8)
    await job.tick()
    return prose(rig)


class TestProseMetrics:
    async def test_the_llm_judges_the_texts_and_a_prose_regression_files_the_one_incident(self, rig: LoopRig) -> None:
        """Only the prose metric goes to the LLM (texts, description, direction); its verdict and reason are
        journalled with `method: llm`; the regression files one incident quoting both; numbers stay `rule`."""
        llm = FakeLlm(ProseVerdict(verdict="regressed", reason="Saving now fails; before only one complaint."))

        event = await measure_prose(rig, Reading(None, text=BEFORE), Reading(None, text=AFTER), llm)

        [prompt] = llm.prompts
        assert BEFORE in prompt and AFTER in prompt and "complaints in the weekly user feedback summary" in prompt
        assert "Direction: down (less of what the description names is better)" in prompt and "errors" not in prompt
        assert event.data["verdict"] == "regressed" and event.data["method"] == "llm" and event.data["kind"] == "prose"
        assert event.data["reason"] == "Saving now fails; before only one complaint."
        assert (event.data["before_text"], event.data["after_text"]) == (BEFORE, AFTER)
        [errors] = [e for e in rig.journal.events if e.type == "outcome_measured" and e.data["metric"] == "errors"]
        assert errors.data["method"] == "rule" and errors.data["verdict"] == "unchanged"
        await checker(rig, FakeReader(None, {}, {}), FakeLlm()).tick()
        [issue] = [i for i in await rig.forge.list_issues("app", state="all") if "incident:outcome" in i.body]
        assert issue.title == "Regression after app#8: feedback"
        assert "**feedback** (prose, down): Saving now fails" in issue.body and AFTER in issue.body
        assert [e.data["action"] for e in rig.journal.events if e.type == "outcome_incident"] == ["filed"]
        [line] = outcome_lines(score_objectives(rig.journal.events, "app"))[1:]
        assert line.endswith("last app#8: regressed (llm: Saving now fails; before only one complaint.)")

    @pytest.mark.parametrize("verdict", ["improved", "unchanged", "regressed", "inconclusive"])
    async def test_each_llm_verdict_is_the_events_verdict(self, rig: LoopRig, verdict: str) -> None:
        """The answer's verdict is taken as it is."""
        llm = FakeLlm(ProseVerdict.model_validate({"verdict": verdict, "reason": "because"}))
        event = await measure_prose(rig, Reading(None, text=BEFORE), Reading(None, text=AFTER), llm)
        assert (event.data["verdict"], event.data["method"], event.data["reason"]) == (verdict, "llm", "because")

    @pytest.mark.parametrize(
        ("before", "after", "llm", "verdict", "reason"),
        [
            pytest.param(BEFORE, AFTER, None, "inconclusive", "no loops.llm_agent is configured", id="no-agent"),
            pytest.param(
                BEFORE, AFTER, FakeLlm(None), "inconclusive", "the LLM gave no valid answer", id="bad-answers"
            ),
            pytest.param(BEFORE, f"  {BEFORE}\n", FakeLlm(), "unchanged", "the same text", id="same-text-no-question"),
            pytest.param(None, AFTER, FakeLlm(), "inconclusive", "no text before the merge", id="no-baseline-text"),
            pytest.param(BEFORE, None, FakeLlm(), "inconclusive", "no text now", id="no-text-now"),
        ],
    )
    async def test_without_an_answer_the_verdict_is_a_rule_and_says_why(
        self, rig: LoopRig, before: str | None, after: str | None, llm: Any, verdict: str, reason: str
    ) -> None:
        """No agent, no valid answer, a missing text: inconclusive; the same text: unchanged (nobody asked)."""

        def reading(text: str | None) -> Reading:
            return Reading(None, text=text) if text is not None else Reading(None, "FEEDBACK.md does not exist")

        event = await measure_prose(rig, reading(before), reading(after), llm)
        assert (event.data["verdict"], event.data["method"]) == (verdict, "rule")
        assert event.data["reason"].startswith(reason)
        assert not [i for i in await rig.forge.list_issues("app", state="all") if "incident:outcome" in i.body]

    async def test_a_real_agent_answering_garbage_twice_is_inconclusive(self, rig: LoopRig, tmp_path: Path) -> None:
        """Through :class:`agentos.llm.Llm` and a real process: no JSON twice → inconclusive, asked exactly twice."""
        answer, log = tmp_path / "answer.txt", tmp_path / "prompts.log"
        answer.write_text("I think it got worse, honestly.")
        argv = [sys.executable, str(FAKES / "json_answer.py"), "{prompt_file}", str(answer), str(log)]
        llm = Llm("judge", AgentConfig(kind="command", argv=argv), workdir=tmp_path / "llm", timeout_s=20)

        event = await measure_prose(rig, Reading(None, text=BEFORE), Reading(None, text=AFTER), llm)

        assert (event.data["verdict"], event.data["method"]) == ("inconclusive", "rule")
        assert log.read_text().count("=====") == 2 and "not valid" in log.read_text().split("=====")[1]

    def test_a_prose_reading_is_redacted_and_cut(self) -> None:
        """A secret never reaches the journal or the LLM; a command keeps its end, a file its start; a pointer."""
        secret = "ghp_" + "a1" * 18
        assert prose_text(f"token {secret} leaked\n") == "token [REDACTED] leaked"
        long = "head " + "x" * 2 * PROSE_CHARS + " tail"
        assert prose_text(long, keep_end=True).endswith(" tail") and len(prose_text(long) or "") == PROSE_CHARS
        assert prose_text(long).startswith("head ")  # type: ignore[union-attr]
        assert prose_text('{"summary": {"text": "fine"}}', "/summary/text") == "fine"
        assert prose_text('{"summary": {"n": 1}}', "/summary") == '{"n": 1}'
        assert prose_text("   \n") is None and prose_text("not json", "/a") is None

    def test_kind_is_number_or_prose(self) -> None:
        """`kind: prose` with a description parses; another kind is the usual one-line problem."""
        [_, feedback] = parse_objectives(PROSE).metrics
        assert feedback.kind == "prose" and feedback.description.startswith("complaints")  # type: ignore[union-attr]
        with pytest.raises(
            ValueError, match=r"objectives.yaml:5: metrics\[1\].kind: Input should be 'number' or 'prose'"
        ):
            parse_objectives(PROSE.replace("kind: prose", "kind: words"))


# ---------------------------------------------------------------- the real reader


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"stats": {"signups": 42}}).encode()
        self.send_response(200 if self.path == "/stats" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def git(cwd: Path, *args: str) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    done = subprocess.run(
        ["git", *args], cwd=cwd, env={**os.environ, **env}, check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


class TestRepoMetrics:
    async def test_command_file_and_loopback_url_metrics_are_read_at_a_commit(
        self, tmp_path: Path, server: str
    ) -> None:
        """A command's last line and a JSON file at a commit of the clone; a URL only on an allowed loopback host."""
        repo_dir = tmp_path / "app"
        repo_dir.mkdir()
        git(repo_dir, "init", "-q", "-b", "main")
        (repo_dir / "cov.py").write_text("print('coverage report')\nprint(open('cov.txt').read().strip())\n")
        (repo_dir / "cov.txt").write_text("81.5\n")
        (repo_dir / "perf.json").write_text('{"p95": 200}')
        yaml = OBJECTIVES.split("  - {name: errors")[0] + f"  - {{name: signups, direction: up, url: '{server}/stats', "
        yaml += "pointer: /stats/signups}\n  - {name: down, direction: up, url: '" + server + "/missing'}\n"
        (repo_dir / "objectives.yaml").write_text(yaml)
        git(repo_dir, "add", "-A")
        git(repo_dir, "commit", "-q", "-m", "one")
        (repo_dir / "cov.txt").write_text("90\n")
        git(repo_dir, "commit", "-q", "-am", "two")
        sha = git(repo_dir, "rev-parse", "HEAD")
        repo = RepoConfig(name="app", path=str(repo_dir), test_command="true")
        reader = RepoMetrics(workspaces=WorkspaceRegistry(tmp_path / "state", lambda _r: (str(repo_dir), {})))
        s = LoopSettings(objective_url_hosts=("127.0.0.1",))

        objectives, problem = await reader.objectives(repo, sha, s)
        assert problem == "" and objectives is not None
        before = await reader.read(repo, objectives.metrics, f"{sha}^", s)
        after = await reader.read(repo, objectives.metrics, sha, s)

        assert {k: r.value for k, r in before.items()} == {
            "coverage": 81.5,
            "p95_ms": 200.0,
            "signups": 42.0,
            "down": None,
        }
        assert after["coverage"].value == 90.0 and after["down"].detail == "HTTP 404"
        closed = await reader.read(repo, objectives.metrics, sha, LoopSettings())
        assert closed["signups"].detail == "the host 127.0.0.1 is not in loops.objective_url_hosts"
        _, invalid = await reader.objectives(repo, sha, LoopSettings())
        assert invalid.startswith("objectives.yaml:5: metrics[2].url: a metric's url must be an https:// URL")
        first = await reader.read(
            repo, objectives.metrics, f"{git(repo_dir, 'rev-list', '--max-parents=0', 'HEAD')}^", s
        )
        assert first["coverage"].value is None and first["coverage"].detail.startswith("cannot check out")

    async def test_a_prose_metric_reads_the_text_of_a_file_and_of_a_commands_output(self, tmp_path: Path) -> None:
        """The text at the commit, redacted; an empty output is no reading, with the reason."""
        repo_dir = tmp_path / "app"
        repo_dir.mkdir()
        git(repo_dir, "init", "-q", "-b", "main")
        (repo_dir / "FEEDBACK.md").write_text(f"# Feedback\n\n{BEFORE}\n")
        git(repo_dir, "add", "-A")
        git(repo_dir, "commit", "-q", "-m", "one")
        repo = RepoConfig(name="app", path=str(repo_dir), test_command="true")
        reader = RepoMetrics(workspaces=WorkspaceRegistry(tmp_path / "state", lambda _r: (str(repo_dir), {})))
        secret = "ghp_" + "b2" * 18
        metrics = [
            Metric(name="feedback", direction="down", kind="prose", file="FEEDBACK.md"),
            Metric(name="said", direction="up", kind="prose", command=f"echo 'the key is {secret}'"),
            Metric(name="silent", direction="up", kind="prose", command="true"),
        ]

        got = await reader.read(repo, metrics, git(repo_dir, "rev-parse", "HEAD"), LoopSettings())

        assert got["feedback"].text == f"# Feedback\n\n{BEFORE}" and got["feedback"].value is None
        assert got["said"].text == "the key is [REDACTED]"
        assert got["silent"].text is None and got["silent"].detail == "no text in its output"

    def test_plain_http_is_allowed_only_for_a_loopback_host_named_in_the_allow_list(self) -> None:
        """`http://` on a public host stays invalid even when the host is allowed."""
        text = "primary_outcome: x\nmetrics:\n  - {name: a, direction: up, url: 'http://h.example/x'}\n"
        with pytest.raises(ValueError, match="https://"):
            parse_objectives(text, url_hosts=["h.example"])
        local = text.replace("h.example", "127.0.0.1:8080")
        assert parse_objectives(local, url_hosts=["127.0.0.1"]).metrics[0].url == "http://127.0.0.1:8080/x"
