"""The loops on real parts: a journal made by the real executor with a crashing fake agent, issues as files.

The dispatcher and executor run three ready issues on a throwaway git repository with an agent that
always crashes; the incident scanner then files one ``autonomous-fix`` issue as a Markdown file in the
local forge, a fourth crash adds one comment to that file, and a repeated scan leaves it byte for byte.
``agentos stats --json`` reads the same state directory read-only.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from agentos.assembly import build_core
from agentos.cli.stats import stats_command
from agentos.config import AgentConfig, Config, RepoConfig
from agentos.forge.base import READY_LABEL
from agentos.forge.local import LocalForge, parse_issue_file
from agentos.gitutil import git
from agentos.graph import TaskStatus
from agentos.jobs.dispatch import Dispatcher
from agentos.jobs.incidents import IncidentScanner
from agentos.runtime import Runtime
from agentos.store import Store

FAKES = Path(__file__).resolve().parents[1] / "fakes" / "agents"
GIT_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}


async def make_repo(path: Path) -> None:
    path.mkdir()
    await git("-c", "init.defaultBranch=main", "init", "-q", cwd=path, env=GIT_ENV)
    (path / "README.md").write_text("# app\n")
    await git("add", "-A", cwd=path, env=GIT_ENV)
    await git("commit", "-q", "-m", "initial", cwd=path, env=GIT_ENV)


def make_config(tmp_path: Path) -> Config:
    return Config(
        state_dir=str(tmp_path / "state"),
        repos=[RepoConfig(name="app", path=str(tmp_path / "app"), test_command="true")],
        agents={
            "crasher": AgentConfig(
                kind="command",
                argv=[str(FAKES / "command_agent.py"), "{prompt_file}"],
                env={"FAKE_AGENT_MODE": "crash"},
            )
        },
        routing={"default": ["crasher"], "max_attempts": 1},  # type: ignore[arg-type]
        limits={"idle_timeout_minutes": 0.5, "max_runtime_minutes": 1, "kill_grace_s": 0.5},  # type: ignore[arg-type]
    )


@pytest.fixture
async def rt(tmp_path: Path) -> AsyncIterator[Runtime]:
    await make_repo(tmp_path / "app")
    config = make_config(tmp_path)
    store = Store(config.state_path, fsync=False)
    store.lock()
    graph, state = store.load()
    repos = {r.name: r for r in config.repos}
    forge = LocalForge(config.state_path, repos, git_env=GIT_ENV)

    def remote(repo: RepoConfig) -> tuple[str, dict[str, str]]:
        return str(Path(repo.path or "").resolve()), GIT_ENV

    runtime = Runtime(config, None, store, graph, state, forge, remote)
    yield runtime
    store.close()


async def crash_one(rt: Runtime, dispatcher: Dispatcher, title: str) -> str:
    """File a ready issue and let the real dispatcher and executor run it to its escalation."""
    assert isinstance(rt.forge, LocalForge)
    issue = await rt.forge.new_issue("app", title, "Make it so.", [READY_LABEL])
    await dispatcher.tick()
    async with asyncio.timeout(60):
        while rt.running:
            await asyncio.gather(*rt.running.values(), return_exceptions=True)
    task = rt.graph.latest_for_issue("app", issue.number)
    assert task is not None and task.status is TaskStatus.BLOCKED, task
    return task.id


def issues_dir(state: Path) -> Path:
    return state / "local-forge" / "app" / "issues"


def issue_files(state: Path) -> dict[int, str]:
    return {int(p.stem): p.read_text() for p in sorted(issues_dir(state).glob("*.md"))}


async def test_recurring_crashes_file_one_issue_then_one_comment(rt: Runtime, tmp_path: Path) -> None:
    """Three crashes file one autonomous-fix issue file; a fourth adds one comment; a rescan changes nothing."""
    dispatcher = build_core(rt).dispatcher
    for n in range(1, 4):
        await crash_one(rt, dispatcher, f"Task {n}")
    scanner = IncidentScanner(
        settings=rt,
        journal=rt,
        clock=rt.now,
        graph=rt.graph,
        forge=rt.forge,
        store=rt.store,
        stopping=lambda: rt.stopping,
    )
    await scanner.tick()

    state = rt.config.state_path
    incidents = {n: text for n, text in issue_files(state).items() if "autonomous-fix" in text}
    assert len(incidents) == 1
    ((number, text),) = incidents.items()
    issue, comments = parse_issue_file(text, "app", issues_dir(state) / f"{number}.md")
    assert issue.labels == ["autonomous-fix"] and issue.author == "agentos"
    assert all(f"`app#{n}`" in issue.body for n in (1, 2, 3))
    assert "Error: something broke" in issue.body and comments == []

    fourth = await crash_one(rt, dispatcher, "Task 4")
    await scanner.tick()
    before = issue_files(state)
    await scanner.tick()
    assert issue_files(state) == before
    issue, comments = parse_issue_file(before[number], "app", issues_dir(state) / f"{number}.md")
    assert len(comments) == 1 and f"`{fourth}`" in comments[0].body
    assert sum("autonomous-fix" in text for text in before.values()) == 1


async def test_stats_reads_the_state_dir_while_the_daemon_holds_it(rt: Runtime, tmp_path: Path) -> None:
    """``agentos stats --json`` loads the locked state read-only and reports the crashes."""
    dispatcher = build_core(rt).dispatcher
    await crash_one(rt, dispatcher, "Task 1")
    config_file = tmp_path / "agentos.yaml"
    config_file.write_text(json.dumps(make_config(tmp_path).model_dump(mode="json", exclude_defaults=True)))
    app = typer.Typer()
    app.command()(stats_command)
    result = await asyncio.to_thread(CliRunner().invoke, app, ["--since", "1d", "--json", "--config", str(config_file)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    (agent,) = report["by_agent"]
    assert (agent["key"], agent["attempts"], agent["escalated"], agent["success_rate"]) == ("crasher", 1, 1, 0.0)
    assert report["by_repo"][0]["key"] == "app"
    table = await asyncio.to_thread(CliRunner().invoke, app, ["--config", str(config_file)])
    assert table.exit_code == 0 and "crasher" in table.output
