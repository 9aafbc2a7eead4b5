"""The PR monitor end to end, on both forges.

Local forge: the real daemon process (the :class:`~tests.e2e.conftest.Loop` harness). To make CI red on
the merge result while the branch's own tests pass, a ``before_run`` hook commits a stricter test to the
user's ``main`` during the first attempt, as a colleague's push would: the branch was cut before it.

GitHub: the daemon's parts in this process (store, ``GitHubForge`` over real HTTP, workspace pushing over
git smart HTTP, executor running the fake agent CLI, the monitor) against the fake GitHub, whose check
runs and statuses the tests set; the monitor's clock is injected, so the wedge timer needs no waiting.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from agentos.assembly import build_core
from agentos.config import Config, RepoConfig
from agentos.executor import Executor
from agentos.forge.base import BLOCKED_LABEL, REVIEW_LABEL
from agentos.forge.github import GitHubClient, GitHubForge, TokenAuth
from agentos.graph import Event, Task, TaskStatus
from agentos.jobs.pr_monitor import PRMonitor
from agentos.runtime import Runtime
from agentos.store import Store
from agentos.testing import SettableClock
from tests.fakes.github_server import FakeGitHub, fake_github  # noqa: F401

from .conftest import REPO, TEST_FILE, Loop, claude_agent, command_agent

MakeLoop = Callable[..., Loop]
KEY = re.compile(r"<!-- agentos:key=(.*?) -->")

CI_WANTS_TWO = """import pathlib
import unittest


class TestCI(unittest.TestCase):
    def test_output_has_two_lines(self) -> None:
        path = pathlib.Path("agent_output.txt")
        lines = len(path.read_text().splitlines()) if path.exists() else 0
        self.assertGreaterEqual(lines, 2, f"agent_output.txt has {lines} lines; CI wants 2")
"""
CI_WANTS_MAGIC = """import pathlib
import unittest


class TestCI(unittest.TestCase):
    def test_output_is_magic(self) -> None:
        path = pathlib.Path("agent_output.txt")
        if "magic" not in (path.read_text() if path.exists() else ""):
            self.fail("agent_output.txt lacks the magic word")
"""
PUSH_ONCE = """import pathlib
import subprocess
import sys

repo, flag, test = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3])
if not flag.exists():
    flag.write_text("pushed")
    (repo / "test_ci.py").write_text(test.read_text())
    subprocess.run(["git", "add", "test_ci.py"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "CI gets stricter"], cwd=repo, check=True)
"""


def stricter_ci_during_first_attempt(loop: Loop, test: str, **repo: Any) -> None:
    """Configure the repo so that the first attempt's ``before_run`` hook commits ``test`` to main."""
    (loop.root / "ci_test.py.txt").write_text(test)
    hook = loop.root / "push_once.py"
    hook.write_text(PUSH_ONCE)
    spec = loop.root / "ci_test.py.txt"
    loop.overrides["repos"] = [
        {
            "name": REPO,
            "path": str(loop.repo),
            "test_command": "python3 -m unittest -q",
            "test_timeout_s": 60,
            "hooks": {"before_run": f"{sys.executable} {hook} {loop.repo} {loop.root / 'pushed'} {spec}"},
            **repo,
        }
    ]
    loop.write_config()


def run_job(loop: Loop, name: str) -> None:
    """``ctl run NAME``: a run that starts after this call (it waits out one already under way)."""
    loop.ctl("run", {"name": name})


def pr_comments(loop: Loop, number: int) -> list[str]:
    return [c["body"] for c in next(p for p in loop.pulls() if p["number"] == number)["comments"]]


class TestLocalForge:
    def test_red_ci_goes_back_to_the_agent_with_its_output_and_the_fix_merges(self, make_loop: MakeLoop) -> None:
        """Red on the merge result → the follow-up attempt's prompt has the failing check's output → green → merged."""
        loop = make_loop({"claude": claude_agent("complete")}, start=False)
        prompts = loop.root / "prompts.log"
        loop.agents["claude"]["env"]["FAKE_AGENT_PROMPT_LOG"] = str(prompts)
        stricter_ci_during_first_attempt(loop, CI_WANTS_TWO)
        loop.start()
        number = loop.new_issue("Write output")
        task_id = f"{REPO}#{number}"

        task = loop.wait_status(task_id, "merged")

        assert [(a["outcome"], a["blocker_code"]) for a in task["attempts"]] == [("complete", None)] * 2
        assert task["ci_fix_attempts"] == 1
        second = prompts.read_text().split("=== end of prompt ===")[1]
        assert "CI failed on the PR" in second and "- tests: exit 1" in second
        assert "agent_output.txt has 1 lines; CI wants 2" in second
        [pull] = loop.pulls()
        assert pull["state"] == "merged"
        assert len(loop.show("agent_output.txt").splitlines()) == 2 and "test_ci.py" in loop.git("ls-files")

    def test_red_past_the_fix_budget_escalates_and_leaves_the_pr_open(self, make_loop: MakeLoop) -> None:
        """CI stays red: after max_ci_fix_attempts the issue is escalated; the PR stays open with a comment."""
        loop = make_loop({"claude": claude_agent("complete")}, routing={"max_ci_fix_attempts": 1}, start=False)
        stricter_ci_during_first_attempt(loop, CI_WANTS_MAGIC)
        loop.start()
        number = loop.new_issue("Never magic")
        task_id = f"{REPO}#{number}"

        task = loop.wait_status(task_id, "blocked")

        assert [a["outcome"] for a in task["attempts"]] == ["complete", "complete"]
        [pull] = loop.pulls()
        assert pull["state"] == "open"
        comments = pr_comments(loop, pull["number"])
        assert any("CI stayed red after 1 fix attempts" in c and "lacks the magic word" in c for c in comments)
        issue, issue_comments = loop.issue(number)
        assert BLOCKED_LABEL in issue.labels
        loop.wait_for(lambda: any("escalated this issue" in c.body for c in loop.issue(number)[1]), what="escalation")
        assert not [c for c in issue_comments if "wedged" in c.body]

    def test_wedged_pr_is_closed_and_the_task_restarts_once_from_main(self, make_loop: MakeLoop) -> None:
        """The same red twice past wedged_after_hours (0 here): PR closed with a comment, branch deleted, one
        new generation on a new branch from main, and no loop."""
        loop = make_loop({"claude": claude_agent("complete")}, routing={"wedged_after_hours": 0}, start=False)
        stricter_ci_during_first_attempt(loop, CI_WANTS_MAGIC)
        loop.start()
        number = loop.new_issue("Wedge me")
        first_id, second_id = f"{REPO}#{number}", f"{REPO}#{number}.2"

        first = loop.wait_status(first_id, "cancelled")
        second = loop.wait_status(second_id, "blocked")  # from main (with the strict test): its own tests fail

        assert [a["outcome"] for a in first["attempts"]] == ["complete", "complete"]
        [pull] = loop.pulls()
        assert pull["state"] == "closed" and pull["head"] == first["branch"]
        [wedged] = [c for c in pr_comments(loop, pull["number"]) if "blocked on the same failing checks" in c]
        assert "restarts from the current `main`" in wedged
        assert first["branch"] not in loop.git("branch", "--list")
        assert second["parent"] == first_id and second["branch"] == first["branch"] + "-g2"
        assert [a["blocker_code"] for a in second["attempts"]] == ["test_failure", "test_failure"]
        for _ in range(2):
            run_job(loop, "pr_monitor")
            run_job(loop, "dispatch")
        assert sorted(t["id"] for t in loop.tasks()) == [first_id, second_id]

    def test_a_conflict_with_a_concurrent_merge_is_rebased_and_merged(self, make_loop: MakeLoop) -> None:
        """Two PRs cut from one main both add a CODEBASE.md entry: after the first merges, the second conflicts,
        is rebased onto the new main (the entries kept as a union) with a lease push, re-checked and merged,
        each on its first attempt: no conflict storm, nothing sent back to an agent."""
        loop = make_loop(
            {
                "a": claude_agent("slow", FAKE_AGENT_SLOW_S="1", FAKE_AGENT_FILE="a.txt"),
                "b": command_agent("slow", FAKE_AGENT_SLOW_S="1", FAKE_AGENT_FILE="b.txt"),
            }
        )
        one = loop.new_issue("First change", "Agent: a\n")
        two = loop.new_issue("Second change", "Agent: b\n")

        a = loop.wait_status(f"{REPO}#{one}", "merged")
        b = loop.wait_status(f"{REPO}#{two}", "merged")

        spans = sorted((t["attempts"][0]["started_at"], t["attempts"][0]["ended_at"]) for t in (a, b))
        assert spans[1][0] < spans[0][1], "the attempts overlapped: both branches were cut from the old main"
        assert len(a["attempts"]) == len(b["attempts"]) == 1
        rebased = [json.loads(line[3:]) for line in loop.log.read_text().splitlines() if '"pr_rebased"' in line]
        assert [(e["task"], e["reason"]) for e in rebased] == [(max(a, b, key=lambda t: t["pr"])["id"], "conflict")]
        merges = [s for s, _ in loop.main_log() if "(#" in s]
        assert sorted(s.split(" (#")[0] for s in merges) == ["First change", "Second change"]
        memory = loop.show("CODEBASE.md")
        assert f"## #{one} First change" in memory and f"## #{two} Second change" in memory
        assert "<<<<<<<" not in memory and loop.show("a.txt") and loop.show("b.txt")

    def test_protected_path_waits_for_approval_then_merges(self, make_loop: MakeLoop) -> None:
        """A PR touching a protected path is labelled high risk with the reason and never merges on its own;
        `agentos ctl approve` merges it."""
        loop = make_loop({"claude": claude_agent("complete")}, start=False)
        loop.overrides["repos"] = [
            {
                "name": REPO,
                "path": str(loop.repo),
                "test_command": "python3 -m unittest -q",
                "protected_paths": ["agent_output.txt"],
            }
        ]
        loop.write_config()
        loop.start()
        number = loop.new_issue("Touch the protected file")
        task_id = f"{REPO}#{number}"

        def labelled() -> dict[str, Any] | None:
            pulls = loop.pulls()
            return pulls[0] if pulls and REVIEW_LABEL in pulls[0]["labels"] else None

        pull = loop.wait_for(labelled, what="the PR to wait for review")
        for _ in range(2):
            run_job(loop, "pr_monitor")
        assert loop.task(task_id)["status"] == "pr_open"
        pull = loop.pulls()[0]
        assert pull["state"] == "open" and "risk:high" in pull["labels"]
        [comment] = pr_comments(loop, pull["number"])
        assert "`agent_output.txt` (matches `agent_output.txt`)" in comment

        result = loop.ctl("approve", {"ref": f"{REPO}#{pull['number']}"})

        assert result["result"] == "merged"
        assert loop.task(task_id)["status"] == "merged"
        assert loop.main_log()[0][0] == f"Touch the protected file (#{pull['number']})"


# ---------------------------------------------------------------------------------------------- GitHub

GH_REPO = "acme/app"
EPOCH = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@dataclass
class GhRig:
    """The daemon's parts in this process against the fake GitHub: store, forge, executor, monitor."""

    fake: FakeGitHub
    rt: Runtime
    executor: Executor
    monitor: PRMonitor
    clock: SettableClock
    events: list[Event] = field(default_factory=list)
    notes: list[tuple[int, str, str]] = field(default_factory=list)

    async def new_task(self, title: str, **issue: Any) -> Task:
        """An issue on the fake and its task, run by the fake agent up to an open PR."""
        number = self.fake.add_issue(GH_REPO, title, "Do it.", **issue).number
        now = self.clock()
        task = Task(
            id=Task.make_id(GH_REPO, number), repo=GH_REPO, issue=number, title=title, created_at=now, updated_at=now
        )
        self.rt.commit([self.rt.event("task_created", task.id, issue=number, generation=1)], [task])
        await self.attempt(task)
        assert task.status is TaskStatus.PR_OPEN, task
        return task

    async def attempt(self, task: Task, agent: str = "claude") -> None:
        """One attempt of the executor (fake agent CLI, worktree, push over HTTP, PR), to its end."""
        assert self.executor.start(task), "no agent available"
        async with asyncio.timeout(60):
            while self.rt.running:
                await asyncio.gather(*self.rt.running.values(), return_exceptions=True)

    async def head(self, task: Task) -> str:
        """The tip of the task's branch on the fake (the PR's head)."""
        assert task.branch is not None
        sha = await self.fake.branch_sha(GH_REPO, task.branch)
        assert sha is not None, f"no branch {task.branch}"
        return sha

    def check(self, sha: str, conclusion: str | None = "success", name: str = "ci", **kw: Any) -> None:
        status = "completed" if conclusion else "in_progress"
        self.fake.add_check_run(GH_REPO, sha, name, status=status, conclusion=conclusion, **kw)

    def finish(self, sha: str, conclusion: str = "success") -> None:
        for run in self.fake.state.repos[GH_REPO].check_runs[sha]:
            run.update(status="completed", conclusion=conclusion)

    def merges(self) -> int:
        return len(self.fake.requests_to("PUT", r"/pulls/\d+/merge$"))

    def pr_comments(self, task: Task) -> list[str]:
        assert task.pr is not None
        return [c.body for c in self.fake.state.repos[GH_REPO].issues[task.pr].comments]


def gh_config(root: Path, fake: FakeGitHub, **routing: Any) -> Config:
    return Config.model_validate(
        {
            "state_dir": str(root / "state"),
            "forge": "github",
            "github": {"api_url": fake.url, "git_url": fake.url, "checks_grace_s": 3600},
            "repos": [{"name": GH_REPO, "test_command": "python3 -m unittest -q", "test_timeout_s": 60}],
            "agents": {"claude": command_agent("complete")},
            "routing": {"default": ["claude"], "max_attempts": 2, "backoff_base_s": 0, **routing},
            "limits": {"idle_timeout_minutes": 0.5, "max_runtime_minutes": 1, "kill_grace_s": 0.5},
            # The fake agent logs its prompts outside its worktree, which a sandbox hides: tests/e2e/test_sandbox_*
            # cover the sandbox; these cover the PR monitor.
            "sandbox": {"mode": "off"},
        }
    )


@pytest_asyncio.fixture
async def make_gh(
    fake_github: FakeGitHub,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Callable[..., Any]]:
    """``await make_gh(**routing)``: a rig on a fresh fake repo; ``reopen=rig`` builds a second one on its state."""
    await fake_github.add_repo(GH_REPO, files={"README.md": "# app\n", "test_app.py": TEST_FILE})
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text("[user]\n\tname = agentos e2e\n\temail = e2e@agentos.invalid\n")
    made: list[tuple[GhRig, GitHubClient]] = []

    async def make(*, mode: str = "full", reopen: GhRig | None = None, **routing: Any) -> GhRig:
        config = gh_config(tmp_path, fake_github, **routing)
        if mode != "full":
            config.repos[0].automation_mode = mode  # type: ignore[assignment]
        store = Store(config.state_path, fsync=False)
        if reopen is not None:
            reopen.rt.store.close()
        store.lock()
        graph, state = store.load()
        client = GitHubClient(fake_github.url, auth=TokenAuth(fake_github.token))
        forge = GitHubForge(client, checks_grace=3600)
        clock = reopen.clock if reopen is not None else SettableClock(datetime.now(UTC))

        def remote(repo: RepoConfig) -> tuple[str, dict[str, str]]:
            return f"{forge.git_base_url}/{repo.name}.git", {}

        rt = Runtime(config, None, store, graph, state, forge, remote, clock=clock)
        core = build_core(rt)
        rig = GhRig(fake_github, rt, core.executor, core.monitor, clock)
        rt.listeners.append(rig.events.append)

        class Notes:
            def notify(self, severity: int, key: str, text: str, buttons: Any = ()) -> bool:
                rig.notes.append((severity, key, text))
                return True

        rt.notifier = Notes()  # type: ignore[assignment]
        made.append((rig, client))
        return rig

    monkeypatch.setenv("HOME", str(home))  # the git identity of the agent's and the executor's commits
    try:
        yield make
    finally:
        for rig, client in made:
            rig.rt.stopping = True
            for running in list(rig.rt.running.values()):
                running.cancel()
            await client.aclose()
            rig.rt.store.close()


GhFactory = Callable[..., Any]


class TestGitHub:
    async def test_pending_waits_then_green_merges_once(self, make_gh: GhFactory) -> None:
        """Pending checks wait; all green (check run + status) → one squash merge at that sha, branch deleted,
        issue closed; more passes change nothing."""
        rig: GhRig = await make_gh()
        task = await rig.new_task("Add a greeting")
        sha = await rig.head(task)
        rig.check(sha, None)
        rig.fake.add_status(GH_REPO, sha, "lint", "success")

        await rig.monitor.tick()
        seen = len(rig.events)
        await rig.monitor.tick()
        assert task.status is TaskStatus.PR_OPEN and rig.merges() == 0
        assert len(rig.events) == seen, "a second pass over pending checks journals nothing"

        rig.finish(sha)
        await rig.monitor.tick()

        assert task.status is TaskStatus.MERGED and rig.merges() == 1
        repo = rig.fake.state.repos[GH_REPO]
        assert task.pr is not None and repo.pulls[task.pr].head_sha == sha and repo.pulls[task.pr].merged_at
        assert repo.issues[task.issue].state == "closed"
        assert task.branch is not None and await rig.fake.branch_sha(GH_REPO, task.branch) is None
        assert [e.data["sha"] for e in rig.events if e.type == "merged"] == [repo.pulls[task.pr].merge_commit_sha]
        requests = len(rig.fake.state.requests)
        await rig.monitor.tick()
        assert len(rig.fake.state.requests) == requests, "no open PR: an idle pass asks GitHub nothing"

    async def test_red_goes_back_with_the_check_output_and_the_fix_merges(self, make_gh: GhFactory) -> None:
        """A failing check run: its name, summary and (redacted) Actions log reach the follow-up attempt's prompt;
        the fix lands on the same branch and PR, goes green and merges."""
        rig: GhRig = await make_gh()
        prompts = rig.rt.state_dir.parent / "prompts.log"
        rig.rt.config.agents["claude"].env["FAKE_AGENT_PROMPT_LOG"] = str(prompts)
        task = await rig.new_task("Make CI happy")
        pr, first = task.pr, await rig.head(task)
        token = "ghp_" + "Q1w2E3r4" * 5
        log = f"Run pytest\nE   AssertionError: expected 2 greetings, got 1\nleaked {token}\n##[error]exit 1"
        rig.check(first, "failure", title="pytest", summary="1 failed, 3 passed", log=log)

        await rig.monitor.tick()

        assert task.status is TaskStatus.RETRYING and task.ci_fix_attempts == 1
        await rig.attempt(task)
        prompt = prompts.read_text().split("=== end of prompt ===")[-2]
        assert "- ci: pytest: 1 failed, 3 passed" in prompt and "expected 2 greetings, got 1" in prompt
        assert token not in prompt and "[REDACTED]" in prompt
        assert task.status is TaskStatus.PR_OPEN and task.pr == pr
        second = await rig.head(task)
        assert second != first
        rig.check(second, "success")
        await rig.monitor.tick()
        assert task.status is TaskStatus.MERGED and rig.merges() == 1
        assert len(rig.fake.state.repos[GH_REPO].pulls) == 1

    async def test_red_past_the_budget_escalates_with_the_pr_left_open(self, make_gh: GhFactory) -> None:
        """Red again after the one allowed fix: escalated (issue labelled blocked), the PR open with a comment."""
        rig: GhRig = await make_gh(max_ci_fix_attempts=1)
        task = await rig.new_task("Stay red")
        rig.check(await rig.head(task), "failure", summary="boom")
        await rig.monitor.tick()
        await rig.attempt(task)
        rig.check(await rig.head(task), "failure", summary="boom")

        await rig.monitor.tick()

        assert task.status is TaskStatus.BLOCKED
        repo = rig.fake.state.repos[GH_REPO]
        assert task.pr is not None and repo.issues[task.pr].state == "open"
        assert any("CI stayed red after 1 fix attempts" in c for c in rig.pr_comments(task))
        assert BLOCKED_LABEL in repo.issues[task.issue].labels
        assert rig.merges() == 0

    async def test_a_concurrent_merge_is_followed_by_a_rebase_and_fresh_checks(self, make_gh: GhFactory) -> None:
        """Two PRs from one main (both add CODEBASE.md): the oldest merges; the other is rebased onto the new main
        with a lease push, merges only after checks on its new head, at that head's sha."""
        rig: GhRig = await make_gh()
        rig.rt.config.agents["claude"].env["FAKE_AGENT_FILE"] = "a.txt"
        first = await rig.new_task("First")
        rig.rt.config.agents["claude"].env["FAKE_AGENT_FILE"] = "b.txt"
        second = await rig.new_task("Second")
        old = await rig.head(second)
        rig.check(await rig.head(first), "success")
        rig.check(old, "success")

        await rig.monitor.tick()

        assert (first.status, second.status) == (TaskStatus.MERGED, TaskStatus.PR_OPEN)
        rebased = await rig.head(second)
        assert rebased != old and [e.data["reason"] for e in rig.events if e.type == "pr_rebased"] == ["queue"]
        main = await rig.fake.branch_sha(GH_REPO, "main")
        assert main is not None and main in await rig.fake.git(GH_REPO, "rev-list", rebased)
        rig.check(rebased, None)  # CI starts on the pushed head
        await rig.monitor.tick()
        assert second.status is TaskStatus.PR_OPEN and rig.merges() == 1, "no merge on the old head's checks"

        rig.finish(rebased)
        await rig.monitor.tick()

        assert second.status is TaskStatus.MERGED and rig.merges() == 2
        assert second.pr is not None and rig.fake.state.repos[GH_REPO].pulls[second.pr].head_sha == rebased
        memory = await rig.fake.git(GH_REPO, "show", "main:CODEBASE.md")
        assert f"## #{first.issue} First" in memory and f"## #{second.issue} Second" in memory
        assert "<<<<<<<" not in memory

    async def test_a_rebase_conflict_goes_back_to_an_agent_who_redoes_it_on_main(self, make_gh: GhFactory) -> None:
        """Two PRs edit one file: after the first merges, the second's rebase conflicts; the task goes back to an
        agent with the conflict, the redone branch is lease-pushed over the old one, and it merges."""
        rig: GhRig = await make_gh()
        first = await rig.new_task("First")
        second = await rig.new_task("Second")
        rig.check(await rig.head(first), "success")
        rig.check(await rig.head(second), "success")

        await rig.monitor.tick()

        assert first.status is TaskStatus.MERGED and second.status is TaskStatus.RETRYING
        assert "conflicts with main in: agent_output.txt" in second.attempts[-1].error
        assert second.attempts[-1].patch_path and Path(second.attempts[-1].patch_path).is_file()
        await rig.attempt(second)
        assert second.status is TaskStatus.PR_OPEN
        redone = await rig.head(second)
        main = await rig.fake.branch_sha(GH_REPO, "main")
        assert main is not None and main in await rig.fake.git(GH_REPO, "rev-list", redone)
        rig.check(redone, "success")
        await rig.monitor.tick()
        assert second.status is TaskStatus.MERGED

    async def test_dispatcher_only_asks_once_and_merges_only_when_approved(self, make_gh: GhFactory) -> None:
        """dispatcher_only: labelled agentos:review, one notification, no merge over passes; approve → merged."""
        rig: GhRig = await make_gh(mode="dispatcher_only")
        task = await rig.new_task("Review me")
        rig.check(await rig.head(task), "success")

        for _ in range(3):
            await rig.monitor.tick()

        assert task.status is TaskStatus.PR_OPEN and rig.merges() == 0
        assert task.pr is not None
        assert REVIEW_LABEL in rig.fake.state.repos[GH_REPO].issues[task.pr].labels
        assert [n[2] for n in rig.notes] == [f"PR {GH_REPO}#{task.pr} is green and waits for your approval: Review me"]
        assert (await rig.monitor.approve(GH_REPO, task.pr, True))["result"] == "merged"
        assert task.status is TaskStatus.MERGED and rig.merges() == 1

    async def test_wedged_pr_is_closed_and_respawned_once_then_escalated(self, make_gh: GhFactory) -> None:
        """Checks pending past wedged_after_hours (injected clock): closed with a comment, branch deleted, a new
        generation on a new branch; when that one wedges too, it is escalated and its PR left open."""
        rig: GhRig = await make_gh()
        task = await rig.new_task("Stuck CI")
        rig.check(await rig.head(task), None)
        await rig.monitor.tick()
        rig.clock.now += timedelta(hours=5)

        await rig.monitor.tick()

        repo = rig.fake.state.repos[GH_REPO]
        assert task.pr is not None and task.status is TaskStatus.CANCELLED
        assert repo.issues[task.pr].state == "closed" and repo.pulls[task.pr].merged_at is None
        assert any("blocked on checks that never finished for 5.0 h" in c for c in rig.pr_comments(task))
        assert task.branch is not None and await rig.fake.branch_sha(GH_REPO, task.branch) is None
        fresh = rig.rt.graph.get(f"{GH_REPO}#{task.issue}.2")
        assert fresh.status is TaskStatus.QUEUED and fresh.parent == task.id

        await rig.attempt(fresh)
        assert fresh.status is TaskStatus.PR_OPEN and fresh.pr != task.pr and fresh.branch == f"{task.branch}-g2"
        main = await rig.fake.branch_sha(GH_REPO, "main")
        assert main is not None and main in await rig.fake.git(GH_REPO, "rev-list", await rig.head(fresh))
        rig.check(await rig.head(fresh), None)
        await rig.monitor.tick()
        rig.clock.now += timedelta(hours=5)
        await rig.monitor.tick()

        assert fresh.status is TaskStatus.BLOCKED and fresh.pr is not None
        assert repo.issues[fresh.pr].state == "open"
        assert len(rig.rt.graph.for_issue(GH_REPO, task.issue)) == 2
        assert [e.data["action"] for e in rig.events if e.type == "pr_wedged"] == ["respawned", "escalated"]

    async def test_a_merge_the_journal_missed_is_reconciled_after_a_restart(self, make_gh: GhFactory) -> None:
        """The daemon merged and died before journalling it: after a restart the task is marked merged from the
        forge's state, and the PR is never merged a second time."""
        rig: GhRig = await make_gh()
        task = await rig.new_task("Merged before the crash")
        rig.check(await rig.head(task), "success")
        assert task.pr is not None
        sha = await rig.head(task)
        result = await rig.rt.forge.merge_pr(GH_REPO, task.pr, sha=sha, title="Merged", body=f"Closes #{task.issue}")
        assert result.merged and rig.merges() == 1  # ... and the daemon died here

        again: GhRig = await make_gh(reopen=rig)
        restored = again.rt.graph.get(task.id)
        assert restored.status is TaskStatus.PR_OPEN
        await again.monitor.tick()
        await again.monitor.tick()

        assert restored.status is TaskStatus.MERGED and rig.merges() == 1
        [merged] = [e for e in again.events if e.type == "merged"]
        assert merged.data["reconciled"] is True
        history = list(again.rt.store.iter_events(EPOCH - timedelta(days=365)))
        assert [e.type for e in history].count("merged") == 1
