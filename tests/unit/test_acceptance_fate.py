"""A merged task's acceptance on in-memory ports: accepted, waiting for an operator, sent back, escalated."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from agentos.acceptance import AcceptanceCheck, AcceptanceState
from agentos.acceptance_fate import AcceptanceFate, CheckResult
from agentos.caller import calling
from agentos.config import Config
from agentos.errors import ControlError
from agentos.forge.base import BLOCKED_LABEL, READY_LABEL
from agentos.graph import Task, TaskStatus
from agentos.jobs.acceptance_check import AcceptanceChecker
from agentos.testing import T0, Rig, build

REPO = "calc"


def config(tmp_path: Path, **acceptance: Any) -> Config:
    return Config.model_validate(
        {
            "state_dir": str(tmp_path / "state"),
            "repos": [{"name": REPO, "path": str(tmp_path / "calc"), "test_command": "true"}],
            "agents": {"claude": {"kind": "claude"}},
            "acceptance": {"url_hosts": ["status.example.com"], "max_fix_attempts": 1, **acceptance},
        }
    )


def merged_task(*checks: AcceptanceCheck, fixes: int = 0, **fields: Any) -> Task:
    fields = {"status": TaskStatus.MERGED, **fields}
    return Task(
        id=f"{REPO}#7",
        repo=REPO,
        issue=7,
        title="Bump it",
        goal="Bump the version.",
        pr=3,
        acceptance=AcceptanceState(checks=list(checks), fixes=fixes),
        created_at=T0,
        updated_at=T0,
        **fields,
    )


COMMAND = AcceptanceCheck(kind="command", value="make smoke")
HUMAN = AcceptanceCheck(kind="human", value="the chart shows")


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    made = build(config(tmp_path))
    made.forge.add_issue(REPO, 7, "Bump it", labels=[READY_LABEL])
    return made


def fate(rig: Rig) -> AcceptanceFate:
    return AcceptanceFate(lifecycle=rig.lifecycle)


async def test_a_merge_with_checks_leaves_the_issue_open_and_wakes_the_check(rig: Rig) -> None:
    task = merged_task(COMMAND, status=TaskStatus.PR_OPEN)
    rig.graph.put(task)
    await rig.lifecycle.merged(task, "abc")
    assert (await rig.forge.get_issue(REPO, 7)).state == "open"
    assert "acceptance_check" in rig.wakes.jobs


async def test_passing_checks_accept_the_task_and_close_the_issue(rig: Rig) -> None:
    task = merged_task(COMMAND)
    rig.graph.put(task)
    await fate(rig).passed(task)
    assert task.status is TaskStatus.ACCEPTED
    assert (await rig.forge.get_issue(REPO, 7)).state == "closed"
    assert "accepted" in rig.journal.types(task.id)


async def test_a_human_item_waits_for_the_operator_who_is_journalled(rig: Rig) -> None:
    task = merged_task(COMMAND, HUMAN)
    rig.graph.put(task)
    with pytest.raises(ControlError, match="have not passed yet"):
        await fate(rig).accept(REPO, 7)
    await fate(rig).passed(task)
    await fate(rig).passed(task)  # a second pass changes nothing
    assert task.status is TaskStatus.MERGED and (await rig.forge.get_issue(REPO, 7)).state == "open"
    [note] = [n for n in rig.notes.sent if n.key == f"acceptance:{task.id}"]
    assert note.severity == 2 and [a.kind for a in note.actions] == ["accept", "show"]
    assert note.actions[0].ref == f"{REPO}#7"
    with calling("telegram:42"):
        result = await fate(rig).accept(REPO, 7)
    assert result["result"] == "accepted" and task.status is TaskStatus.ACCEPTED
    [accepted] = [e for e in rig.journal.events if e.type == "accepted"]
    assert accepted.data["by"] == "telegram:42"


async def test_a_failed_check_starts_a_new_generation_with_the_output(rig: Rig) -> None:
    task = merged_task(COMMAND)
    rig.graph.put(task)
    fresh = await fate(rig).failed(task, [CheckResult("command: make smoke", False, "exit code 2\nboom")])
    assert fresh.id == f"{REPO}#7.2" and fresh.status is TaskStatus.QUEUED
    assert fresh.acceptance.checks == [COMMAND] and fresh.acceptance.fixes == 1
    assert fresh.goal.startswith("Bump the version.") and "boom" in fresh.goal
    assert not fate(rig).pending(task) and fate(rig).pending(fresh) is False  # queued, not merged
    comments = await rig.forge.comments(REPO, 7)
    assert any("boom" in c.body for c in comments)


async def test_past_the_fix_budget_the_new_generation_is_escalated(rig: Rig) -> None:
    """The merge stands; the next generation carries the output, blocked until an operator retries it."""
    task = merged_task(COMMAND, fixes=1)
    rig.graph.put(task)
    fresh = await fate(rig).failed(task, [CheckResult("command: make smoke", False, "no")])
    assert task.status is TaskStatus.MERGED and not fate(rig).pending(task)
    assert fresh.status is TaskStatus.BLOCKED and fresh.last_blocker == "acceptance_failed"
    assert rig.graph.latest_for_issue(REPO, 7) is fresh and BLOCKED_LABEL in rig.forge.labels(REPO, 7)
    rig.lifecycle.retry(fresh)
    assert fresh.status is TaskStatus.QUEUED and fresh.branch is None


def checker(rig: Rig, handler: Any) -> AcceptanceChecker:
    return AcceptanceChecker(
        settings=rig.settings,
        graph=rig.graph,
        workspaces=rig.lifecycle.workspaces,
        fate=fate(rig),
        stopping=lambda: False,
        http=lambda: httpx.AsyncClient(transport=httpx.MockTransport(handler)),
    )


async def test_a_url_check_reads_a_json_value(rig: Rig) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"status": {"items": [{"ok": True}]}})

    url = "https://status.example.com/health"
    good = AcceptanceCheck(kind="url", value=url, json_pointer="/status/items/0/ok", equals="true")
    bad = AcceptanceCheck(kind="url", value=url, json_pointer="/status/items/0/ok", equals="false")
    results = await checker(rig, answer).run(merged_task(good, bad))
    assert [r.passed for r in results] == [True, False]
    assert "not 'false'" in results[1].detail


async def test_a_url_on_a_host_not_allowed_escalates_at_once(rig: Rig) -> None:
    task = merged_task(AcceptanceCheck(kind="url", value="https://evil.example.net/x"))
    rig.graph.put(task)
    await checker(rig, lambda request: httpx.Response(200)).tick()
    fresh = rig.graph.latest_for_issue(REPO, 7)
    assert fresh is not None and fresh is not task and fresh.status is TaskStatus.BLOCKED
    assert "not in acceptance.url_hosts" in fresh.goal
