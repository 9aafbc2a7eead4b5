"""Outcome attribution through the real daemon on the local forge (issue #18).

The daemon runs in this test's event loop (``Daemon(..., clock=clock)``) so that its clock can be moved past the
measurement window; everything else is real: the control socket, ``agentos issue new`` and ``agentos stats``
as processes, the local forge, git, the fake agent as a process, the metric command in the user's repository.

The repository's ``objectives.yaml`` has four metrics. ``errors`` (down) is read by ``python3 errors.py``, which
prints the number in ``errors.txt`` (10); the fake agent writes 25 there. During the window someone else
raises ``coverage.json``'s ``/total`` (up) from 80 to 90 and adds ``latency.txt`` (missing at the baseline);
``uptime.txt`` stays. Merge → the baseline (read on the commit before the merge) → the clock moves 8 days →
``ctl run outcome_check`` → ``outcome_measured``: errors regressed, coverage improved, latency inconclusive,
uptime unchanged; shown in ``agentos stats``, and one incident issue citing the PR and the commit; a second run
files no other. A fifth metric, ``feedback``, is prose (``FEEDBACK.md``, rewritten during the window): the
``loops.llm_agent`` (a scripted ``command`` agent answering JSON, run through ``agentos.llm``) gets both texts and
judges it improved, journalled with ``method: llm`` and its reason; the numbers never reach it.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agentos.config import load_config
from agentos.control.socket import request
from agentos.daemon import Daemon
from agentos.errors import ControlError
from agentos.forge.local import parse_issue_file
from agentos.graph import Event
from agentos.store import Store
from agentos.testing import SettableClock
from tests.daemon_process import AGENTOS, FAKES, daemon_env, git, init_repo, write_gitconfig
from tests.waiting import wait_until_async

REPO = "app"
OBJECTIVES = """\
primary_outcome: fewer errors for our users
metrics:
  - name: errors
    direction: down
    command: python3 errors.py
  - {name: coverage, direction: up, weight: 2, file: coverage.json, pointer: /total}
  - {name: latency, direction: down, file: latency.txt}
  - {name: uptime, direction: up, file: uptime.txt}
  - name: feedback
    kind: prose
    direction: up
    description: how happy users sound about saving their work
    file: FEEDBACK.md
"""
FEEDBACK_BEFORE = "Users say saving is slow and sometimes times out."
FEEDBACK_AFTER = "Users say saving is instant now; no time-outs reported this week."
VERDICT = {"verdict": "improved", "reason": "Saving went from slow with time-outs to instant."}
ERRORS_PY = "print('counting errors')\nprint(open('errors.txt').read().strip())\n"


class InProcessDaemon:
    """One user repository and config, and ``Daemon.run()`` as a task of this event loop."""

    def __init__(self, root: Path, run_dir: Path) -> None:
        self.root, self.run_dir = root, run_dir
        self.clock = SettableClock(datetime.now(UTC))
        self.env = daemon_env(root / "home", run_dir)
        self.task: asyncio.Task[int] | None = None
        self.daemon: Daemon | None = None

    @property
    def repo(self) -> Path:
        return self.root / "repo"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def socket(self) -> Path:
        return self.run_dir / "agentos.sock"

    @property
    def llm_files(self) -> tuple[str, str]:
        """The scripted LLM's answer and the log of the prompts it got."""
        return str(self.root / "answer.json"), str(self.root / "prompts.log")

    def setup(self) -> Path:
        write_gitconfig(self.root / "home", default_branch="main")
        init_repo(self.repo, self.env, REPO)
        (self.repo / "objectives.yaml").write_text(OBJECTIVES)
        (self.repo / "errors.py").write_text(ERRORS_PY)
        (self.repo / "errors.txt").write_text("10\n")
        (self.repo / "coverage.json").write_text('{"total": 80}')
        (self.repo / "uptime.txt").write_text("99.9\n")
        (self.repo / "FEEDBACK.md").write_text(f"# Feedback\n\n{FEEDBACK_BEFORE}\n")
        (self.root / "answer.json").write_text(json.dumps(VERDICT))
        git(self.repo, "add", "-A", env=self.env)
        git(self.repo, "commit", "-q", "-m", "objectives: errors", env=self.env)
        writer = {
            "kind": "command",
            "argv": [str(FAKES / "writer_agent.py"), "{prompt_file}"],
            "env": {"FAKE_WRITE_PATH": "errors.txt", "FAKE_WRITE_TEXT": "25\n"},
        }
        judge = {  # the LLM: records its prompts outside its scratch folder, hence no sandbox below
            "kind": "command",
            "argv": [sys.executable, str(FAKES / "json_answer.py"), "{prompt_file}", *self.llm_files],
        }
        config = {
            "state_dir": str(self.state),
            "forge": "local",
            "repos": [{"name": REPO, "path": str(self.repo), "test_command": "true", "test_timeout_s": 60}],
            "agents": {"writer": writer, "judge": judge},
            "routing": {"default": ["writer"], "max_attempts": 1},
            "limits": {"idle_timeout_minutes": 0.25, "max_runtime_minutes": 2, "shutdown_grace_s": 1},
            "jobs": {"dispatch": {"interval_s": 0.5}, "pr_monitor": {"interval_s": 0.5}},
            "loops": {"measurement_window_days": 7, "outcome_noise_pct": 5, "llm_agent": "judge"},
            "sandbox": {"mode": "off"},
        }
        path = self.root / "agentos.yaml"
        path.write_text(json.dumps(config, indent=2))
        return path

    async def start(self, config_path: Path) -> None:
        config, path = load_config(str(config_path))
        self.daemon = Daemon(config, path, socket_path=self.socket, clock=self.clock)
        self.task = asyncio.create_task(self.daemon.run())
        answers = (OSError, ControlError)  # NotRunning until the socket listens
        await wait_until_async(lambda: self.ctl("status"), what="the control socket", timeout=30, retry=answers)

    async def stop(self) -> None:
        if self.daemon is not None and self.task is not None and not self.task.done():
            self.daemon.request_stop()
            assert await asyncio.wait_for(self.task, 30) == 0

    async def ctl(self, cmd: str, args: dict[str, Any] | None = None) -> Any:
        if self.task is not None and self.task.done():
            raise AssertionError(f"the daemon ended: {self.task.result()}")
        return await asyncio.to_thread(request, self.socket, cmd, args, timeout=60)

    async def cli(self, *args: str, input: str | None = None) -> str:
        done = await asyncio.to_thread(
            subprocess.run, [str(AGENTOS), *args], env=self.env, input=input, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, f"agentos {' '.join(args)}: {done.stdout}{done.stderr}"
        return done.stdout

    def events(self, type_: str) -> list[Event]:
        store = Store(self.state, fsync=False)
        return [e for e in store.iter_events(datetime(2000, 1, 1, tzinfo=UTC)) if e.type == type_]

    def incidents(self) -> list[str]:
        folder = self.state / "local-forge" / REPO / "issues"
        issues = [parse_issue_file(p.read_text(), REPO, p)[0] for p in sorted(folder.glob("*.md"))]
        return [f"{i.title}\n{i.body}" for i in issues if "agentos:key=incident:outcome:" in i.body]


@pytest.fixture
async def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[InProcessDaemon]:
    run_dir = Path(tempfile.mkdtemp(prefix="aout-", dir="/tmp"))  # short: a socket path has 108 bytes
    made = InProcessDaemon(tmp_path, run_dir)
    for key in list(os.environ):
        if key not in made.env:
            monkeypatch.delenv(key)  # the daemon runs in this process: its environment is the daemon's
    for key, value in made.env.items():
        monkeypatch.setenv(key, value)
    try:
        yield made
    finally:
        await made.stop()
        shutil.rmtree(run_dir, ignore_errors=True)


async def test_a_regressing_merge_is_measured_after_the_window_shown_in_stats_and_files_one_incident(
    rig: InProcessDaemon,
) -> None:
    """merge → baseline → +8 days → outcome_check: each verdict as set up, in `agentos stats`, one incident issue."""
    config = rig.setup()
    await rig.start(config)
    out = await rig.cli(
        "issue", "new", "--repo", REPO, "--title", "Log more errors", "--ready", "--json", "--config", str(config),
        "--body-file", "-", input="## Goal\n\nWrite 25 into errors.txt.\n",
    )  # fmt: skip
    number = int(json.loads(out[out.find("{") :])["number"])
    task_id = f"{REPO}#{number}"

    async def merged() -> dict[str, Any] | None:
        task: dict[str, Any] = await rig.ctl("task", {"id": task_id})
        return task if task["status"] == "merged" else None

    task = await wait_until_async(merged, what=f"{task_id} merged", timeout=60, retry=(ControlError,))
    [base] = await wait_until_async(lambda: rig.events("outcome_baseline"), what="the baseline", timeout=30)
    assert base.task == task_id and base.data["pr"] == task["pr"]
    readings = [(m["name"], m["value"]) for m in base.data["metrics"]]
    assert readings == [("errors", 10.0), ("coverage", 80.0), ("latency", None), ("uptime", 99.9), ("feedback", None)]
    assert base.data["metrics"][4]["text"] == f"# Feedback\n\n{FEEDBACK_BEFORE}"
    assert git(rig.repo, "show", "main:errors.txt") == "25\n"

    await rig.ctl("run", {"name": "outcome_check"})  # inside the window: nothing measured yet
    assert rig.events("outcome_measured") == []
    (rig.repo / "coverage.json").write_text('{"total": 90}')
    (rig.repo / "latency.txt").write_text("120\n")
    (rig.repo / "FEEDBACK.md").write_text(f"# Feedback\n\n{FEEDBACK_AFTER}\n")
    git(rig.repo, "add", "-A", env=rig.env)
    git(rig.repo, "commit", "-q", "-m", "meanwhile: more tests, a latency probe", env=rig.env)
    rig.clock.advance(days=8)
    await rig.ctl("run", {"name": "outcome_check"})

    measured = {e.data["metric"]: e for e in rig.events("outcome_measured")}
    assert {
        m: (e.data["before"], e.data["after"], e.data["verdict"], e.data["method"]) for m, e in measured.items()
    } == {
        "errors": (10.0, 25.0, "regressed", "rule"),
        "coverage": (80.0, 90.0, "improved", "rule"),
        "latency": (None, 120.0, "inconclusive", "rule"),
        "uptime": (99.9, 99.9, "unchanged", "rule"),
        "feedback": (None, None, "improved", "llm"),
    }
    assert measured["feedback"].data["reason"] == VERDICT["reason"]
    assert measured["feedback"].data["after_text"] == f"# Feedback\n\n{FEEDBACK_AFTER}"
    [prompt] = [p for p in Path(rig.llm_files[1]).read_text().split("=====") if "Metric: feedback" in p]
    assert FEEDBACK_BEFORE in prompt and FEEDBACK_AFTER in prompt and "how happy users sound" in prompt
    assert "errors.py" not in prompt and "coverage" not in prompt
    assert measured["errors"].task == task_id and measured["errors"].data["change_pct"] == 150.0
    assert measured["latency"].data["detail"] == "latency.txt does not exist"
    [incident] = rig.incidents()
    assert incident.startswith(f"Regression after {task_id}: errors\n")
    assert f"PR #{task['pr']}" in incident and f"`{base.data['sha'][:12]}`" in incident

    await rig.ctl("run", {"name": "outcome_check"})
    assert len(rig.incidents()) == 1 and len(rig.events("outcome_measured")) == 5
    assert [e.data["action"] for e in rig.events("outcome_incident")] == ["filed"]

    stats = await rig.cli("stats", "--since", "30d", "--config", str(config))
    assert f"{REPO} / errors (down, weight 1): 1 regressed; score -1.00; last {task_id}: 10 → 25 (+150%)" in stats
    assert f"{REPO} / feedback (up, weight 1): 1 improved; score +1.00; last {task_id}: improved (llm: Saving" in stats
    as_json = json.loads(await rig.cli("stats", "--since", "30d", "--json", "--config", str(config)))
    scores = {o["metric"]: o["score"] for o in as_json["outcomes"]}
    assert scores == {"coverage": 1.0, "errors": -1.0, "latency": None, "uptime": 0.0, "feedback": 1.0}
