"""Agents that misbehave, each contained with the right blocker code and nothing outside its worktree changed.

Every test runs the real daemon (the e2e ``Loop``) with fake agents in a hostile mode, then checks that what
lies outside the agent's worktree is as it was: the user's repository (its refs but ``main`` and the task
branches, its working tree), agentos's clone (no branch but the task's, ``origin/main`` as in the user repo,
hooks and config as created) and a sentinel file next to them.

What agentos can and cannot do without a sandbox (docs/security.md): an agent runs with the daemon user's
permissions, so it *can* write anywhere that user can. agentos cannot prevent that; it contains what it owns:

* processes: the agent's process group, and anything carrying the attempt's ``AGENTOS_ATTEMPT`` marker (a
  child that left the group with ``setsid``), are killed when the attempt ends;
* output: the log is capped; the daemon reads the pipe without blocking its loop;
* the result file: read without following a symlink, never from a FIFO, never more than 256 KiB;
* the worktree's ``.git`` link: put back before agentos runs any git command there (never a git command
  that falls through to a repository around the state directory);
* agentos's clone: its config, hooks and info files are restored and the attempt fails with
  ``workspace_violation`` (escalated); hooks and fsmonitor never run in agentos's git commands anyway;
* the user's repository (local forge): a push of the attempt's commits to any ref but its task branch is
  detected (``workspace_violation``, escalated) but not undone;
* the branch: HEAD must stay on the task branch and the branch must descend from where the attempt began
  (``history_rewritten``: the work is saved as a patch, the branch is reset, the next agent goes on);
* secrets: a push that would publish a secret-shaped string or a configured secret value is refused
  (``secret_detected``, escalated).

A plain file written elsewhere (``$HOME``, a sentinel next to the state directory) is not detected.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agentos.forge.base import BLOCKED_LABEL
from tests.e2e.conftest import REPO, Loop, alive, pid_list

from .conftest import claude, command

MakeLoop = Callable[..., Loop]
Agents = dict[str, dict[str, Any]]
SECRET = "ghp_" + "Z9y8X7w6V5u4T3s2R1q0" + "PpOoNnMmLlKkJjIiHh"  # what the fake's ``secret`` mode commits


def git(cwd: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_NOSYSTEM="1", HOME=str(cwd))
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def refs(repo: Path) -> dict[str, str]:
    out = git(repo, "for-each-ref", "--format=%(refname) %(objectname)")
    return {ref: sha for ref, _, sha in (line.partition(" ") for line in out.splitlines())}


def sentinel(loop: Loop) -> Path:
    return loop.root / "outside" / "sentinel.txt"


def snapshot(loop: Loop) -> dict[str, Any]:
    """What must not change outside the agent's worktree (see the module doc)."""
    user = refs(loop.repo)
    return {
        "user_refs": {
            r: s for r, s in user.items() if r != "refs/heads/main" and not r.startswith("refs/heads/agentos/")
        },
        "user_main": user["refs/heads/main"],
        "user_status": git(loop.repo, "status", "--porcelain", "--untracked-files=all"),
        "sentinel": sentinel(loop).read_bytes(),
    }


def clone(loop: Loop) -> Path:
    return loop.state / "clones" / REPO


def assert_untouched(loop: Loop, before: dict[str, Any], *, merged: bool, branch: str | None) -> None:
    after = snapshot(loop)
    for key in ("user_refs", "user_status", "sentinel"):
        assert after[key] == before[key], key
    if merged:  # one squash commit on top of the old main, nothing else
        assert git(loop.repo, "rev-parse", "main~1").strip() == before["user_main"]
    else:
        assert after["user_main"] == before["user_main"]
    allowed = {f"refs/heads/{branch}"} if branch else set()

    def heads() -> set[str]:
        return {r for r in refs(clone(loop)) if r.startswith("refs/heads/")}

    # A merged task's branch goes right after the merge is journalled: wait for it rather than race it.
    loop.wait_for(lambda: heads() <= allowed or None, what=f"no branch in the clone but {allowed}", timeout=10)
    git(clone(loop), "fetch", "-q", "origin")
    assert refs(clone(loop))["refs/remotes/origin/main"] == after["user_main"]
    hooks = sorted(p.name for p in (clone(loop) / "hooks").iterdir())
    assert all(name.endswith(".sample") for name in hooks), hooks
    assert "hookspath" not in (clone(loop) / "config").read_text().lower()


def prepared(
    make_loop: MakeLoop, agents: Agents | Callable[[Loop], Agents], **overrides: Any
) -> tuple[Loop, dict[str, Any]]:
    """A started loop whose agents are tried in order, and the snapshot of what they must not touch."""
    loop = make_loop({}, start=False, **overrides)
    sentinel(loop).parent.mkdir()
    sentinel(loop).write_text("the operator's own file\n")
    made = agents(loop) if callable(agents) else agents
    loop.agents.update(made)
    loop.overrides["routing"] = {"default": list(made), "max_attempts": len(made), **overrides.get("routing", {})}
    loop.write_config()
    before = snapshot(loop)
    loop.start()
    return loop, before


def outcomes(task: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    return [(a["agent"], a["outcome"], a["blocker_code"]) for a in task["attempts"]]


def comments(loop: Loop, number: int) -> str:
    return "\n".join(c.body for c in loop.issue(number)[1])


class TestProcesses:
    def test_agent_that_forks_escapes_its_group_and_ignores_sigterm_leaves_nothing(self, make_loop: MakeLoop) -> None:
        """An agent deaf to SIGTERM, with a child in its group and a grandchild that left it with setsid(): at
        the idle limit all three are killed (the grandchild by the attempt's marker); the attempt is a timeout."""
        pids_file = Path("/tmp") / f"escape-{os.getpid()}-{time.monotonic_ns()}.pids"
        loop, before = prepared(
            make_loop,
            {"escaper": claude("escape", FAKE_AGENT_PID_FILE=str(pids_file))},
            limits={"idle_timeout_minutes": 0.02, "kill_grace_s": 0.5},
        )
        try:
            number = loop.new_issue("Fork and hide")
            pids = loop.wait_for(lambda: len(pid_list(pids_file)) >= 3 and pid_list(pids_file), what="three pids")
            task = loop.wait_status(f"{REPO}#{number}", "blocked")
            assert outcomes(task) == [("escaper", "failed", "timeout")]
            assert [pid for pid in pids if alive(pid)] == [], "a process of the agent outlived its attempt"
            assert_untouched(loop, before, merged=False, branch=task["branch"])
        finally:
            pids_file.unlink(missing_ok=True)

    def test_a_restart_kills_what_an_agent_left_outside_its_group(self, make_loop: MakeLoop) -> None:
        """The daemon is SIGKILLed while that agent runs: on restart the journalled pid's group is killed, and
        the grandchild that left the group is found by the attempt's marker and killed too."""
        pids_file = Path("/tmp") / f"escape-{os.getpid()}-{time.monotonic_ns()}.pids"
        loop, before = prepared(
            make_loop,
            {"escaper": claude("escape", FAKE_AGENT_PID_FILE=str(pids_file)), "finisher": command("complete")},
            limits={"idle_timeout_minutes": 0.05, "kill_grace_s": 0.3},
        )
        try:
            number = loop.new_issue("Outlive the daemon")
            pids = loop.wait_for(lambda: len(pid_list(pids_file)) >= 3 and pid_list(pids_file), what="three pids")
            loop.kill9()
            assert all(alive(pid) for pid in pids)  # nobody supervises them now
            loop.start()
            loop.wait_for(lambda: not any(alive(pid) for pid in pids), what="the agent's processes gone", timeout=10)
            task = loop.wait_status(f"{REPO}#{number}", "merged")
            assert outcomes(task) == [
                ("escaper", "interrupted", None),
                ("escaper", "failed", "timeout"),  # it escapes again, and is killed at the idle limit
                ("finisher", "complete", None),
            ]
            assert [pid for pid in pid_list(pids_file) if alive(pid)] == []
            assert_untouched(loop, before, merged=True, branch=None)
        finally:
            pids_file.unlink(missing_ok=True)

    @pytest.mark.slow
    def test_a_flood_of_output_is_capped_and_the_daemon_keeps_answering(self, make_loop: MakeLoop) -> None:
        """200 MB of output (1 GB scaled down) with a 1 MiB log cap: the log stays within the cap, the end of
        the output survives, the daemon answers `ctl status` promptly throughout, and the work merges."""
        cap = 1024 * 1024
        loop, before = prepared(
            make_loop, {"flooder": claude("chatty", FAKE_AGENT_MB="200")}, limits={"max_log_bytes": cap}
        )
        number = loop.new_issue("Say a lot")
        task_id = f"{REPO}#{number}"
        loop.wait_status(task_id, "running")
        slowest = 0.0
        while (status := loop.task(task_id)["status"]) == "running":
            started = time.monotonic()
            loop.ctl("status")
            slowest = max(slowest, time.monotonic() - started)
            time.sleep(0.05)
        task = loop.wait_status(task_id, "merged", timeout=60)
        assert status != "blocked" and outcomes(task) == [("flooder", "complete", None)]
        assert slowest < 1.0, f"ctl status took {slowest:.2f}s during the flood"
        log = loop.run_path(task_id, 1) / "agent.log"
        assert log.stat().st_size <= cap + 512
        text = log.read_text(errors="replace")
        assert "bytes of output dropped" in text and '"type": "result"' in text  # the CLI's final report survived
        assert_untouched(loop, before, merged=True, branch=None)


class TestWorktree:
    @pytest.mark.parametrize("how", ["rm", "reinit"])
    def test_agent_that_deletes_git_is_contained(self, make_loop: MakeLoop, how: str) -> None:
        """`rm .git` (and `git init` over it) in the worktree: agentos puts the link back before any git command
        of its own (none reaches the repository around the state dir), saves the work as a patch, and the next
        agent goes on from where the attempt began (environment_failure)."""
        loop, before = prepared(
            make_loop, {"wrecker": claude("rmgit", FAKE_AGENT_RMGIT=how), "finisher": command("complete")}
        )
        git(loop.root, "init", "-q")  # a repository around everything: a git run without .git would land here
        git(loop.root, "add", "outside/sentinel.txt")
        git(loop.root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "around")
        around = (git(loop.root, "rev-parse", "HEAD"), git(loop.root, "status", "--porcelain", "--untracked-files=no"))
        number = loop.new_issue("Delete the git link")
        task = loop.wait_status(f"{REPO}#{number}", "merged")
        assert outcomes(task) == [("wrecker", "failed", "environment_failure"), ("finisher", "complete", None)]
        assert "deleted or replaced the worktree's .git" in task["attempts"][0]["error"]
        assert "edited by the fake agent" in Path(task["attempts"][0]["patch_path"]).read_text()
        assert len(loop.show("agent_output.txt").splitlines()) == 1  # only the finisher's line landed
        assert (
            git(loop.root, "rev-parse", "HEAD"),
            git(loop.root, "status", "--porcelain", "--untracked-files=no"),
        ) == around
        assert_untouched(loop, before, merged=True, branch=None)

    def test_agent_that_writes_outside_its_worktree_is_refused(self, make_loop: MakeLoop) -> None:
        """Hooks and core.hooksPath planted in agentos's clone never run (the pwned file never appears) and are
        removed; the push of its commits to the user's repo is detected: workspace_violation, escalated at
        once. Not prevented (no sandbox): the pushed branch stays, and the file it wrote elsewhere is there."""
        pwned = Path("/tmp") / f"pwned-{os.getpid()}-{time.monotonic_ns()}"
        loop, before = prepared(
            make_loop,
            lambda loop: {
                "trespasser": claude(
                    "outside", FAKE_AGENT_PWNED=str(pwned), FAKE_AGENT_OUTSIDE_FILE=str(sentinel(loop))
                ),
                "finisher": command("complete"),
            },
        )
        try:
            number = loop.new_issue("Reach outside")
            task = loop.wait_status(f"{REPO}#{number}", "blocked")
            assert outcomes(task) == [("trespasser", "failed", "workspace_violation")]
            error = task["attempts"][0]["error"]
            assert "changed agentos's clone" in error and "hooks/post-commit" in error and "config" in error
            assert "refs/heads/agent-shortcut" in error
            loop.wait_for(lambda: "escalated this issue" in comments(loop, number), what="the escalation comment")
            assert BLOCKED_LABEL in loop.issue(number)[0].labels
            assert not pwned.exists(), "a hook planted by the agent ran in agentos's git"
            assert loop.pulls() == []
            # Detected, not undone: the branch it pushed and the file it wrote are the operator's to judge.
            assert "refs/heads/agent-shortcut" in refs(loop.repo)
            assert "written by the fake agent" in sentinel(loop).read_text()
            before["user_refs"]["refs/heads/agent-shortcut"] = refs(loop.repo)["refs/heads/agent-shortcut"]
            before["sentinel"] = sentinel(loop).read_bytes()
            assert_untouched(loop, before, merged=False, branch=task["branch"])
        finally:
            pwned.unlink(missing_ok=True)


class TestResultFile:
    @pytest.mark.parametrize("mode", ["garbage", "bigresult", "fiforesult", "symresult"])
    def test_hostile_result_file_is_invalid_and_nothing_leaks(self, make_loop: MakeLoop, mode: str) -> None:
        """Garbage, 10 MB, a FIFO (reading would block the daemon) or a symlink to a secret outside: each is
        invalid_result_contract, read without blocking and without following the link; the next agent merges."""
        secret_file = Path("/tmp") / f"secret-{os.getpid()}-{time.monotonic_ns()}"
        secret_file.write_text("the operator's private token: hunter2-hunter2-hunter2\n")
        prompts = Path("/tmp") / f"prompts-{os.getpid()}-{time.monotonic_ns()}"
        try:
            loop, before = prepared(
                make_loop,
                {
                    "scribbler": claude(mode, FAKE_AGENT_LINK_TARGET=str(secret_file)),
                    "finisher": command("complete", FAKE_AGENT_PROMPT_LOG=str(prompts)),
                },
            )
            number = loop.new_issue("Write a bad result")
            task_id = f"{REPO}#{number}"
            task = loop.wait_status(task_id, "merged")
            assert outcomes(task) == [
                ("scribbler", "failed", "invalid_result_contract"),
                ("finisher", "complete", None),
            ]
            error = task["attempts"][0]["error"]
            expected = {"garbage": "no STATUS", "bigresult": "too large", "fiforesult": "not a regular file"}
            assert expected.get(mode, "cannot open") in error
            run = loop.run_path(task_id, 1)
            copied = run / ".agent_result.md"
            assert not copied.exists() or copied.stat().st_size <= 256 * 1024
            assert "hunter2" not in (copied.read_text(errors="replace") if copied.exists() else "")
            assert "hunter2" not in prompts.read_text()
            loop.ctl("status")
            assert_untouched(loop, before, merged=True, branch=None)
        finally:
            secret_file.unlink(missing_ok=True)
            prompts.unlink(missing_ok=True)


class TestBranch:
    def test_a_committed_secret_is_never_pushed(self, make_loop: MakeLoop) -> None:
        """An agent commits a GitHub token and reports complete: the pre-push scan refuses the branch
        (secret_detected, escalated at once); no ref of the user's repo ever holds it, no PR is opened, the
        comment names the file but not the token, and the branch is emptied back to main."""
        loop, before = prepared(make_loop, {"leaker": claude("secret"), "finisher": command("complete")})
        number = loop.new_issue("Leak a token")
        task = loop.wait_status(f"{REPO}#{number}", "blocked")
        assert outcomes(task) == [("leaker", "failed", "secret_detected")]
        error = task["attempts"][0]["error"]
        assert "settings.py" in error and "GitHub token" in error and SECRET not in error
        assert loop.pulls() == []
        assert SECRET not in git(loop.repo, "log", "--all", "-p")
        loop.wait_for(lambda: "escalated this issue" in comments(loop, number), what="the escalation comment")
        assert SECRET not in comments(loop, number) and "settings.py" in comments(loop, number)
        assert SECRET not in loop.log.read_text()
        branch = task["branch"]
        main = git(loop.repo, "rev-parse", "main")
        # Reset after the escalation is journalled and announced (so a crash in between re-escalates, never pushes).
        loop.wait_for(
            lambda: git(clone(loop), "rev-parse", f"refs/heads/{branch}") == main, what="the branch emptied", timeout=10
        )
        assert SECRET in (loop.run_path(f"{REPO}#{number}", 1) / "secret.patch").read_text()
        assert_untouched(loop, before, merged=False, branch=branch)

    @pytest.mark.parametrize("how", ["amend", "squash"])
    def test_rewritten_history_is_detected_and_undone(self, make_loop: MakeLoop, how: str) -> None:
        """After a partial attempt committed its half, an agent amends that commit or squashes the branch down
        to its fork point: history_rewritten; its work is kept as a patch, the branch goes back to the partial
        commit, and the next agent builds on that (the rewriter's line never lands)."""
        loop, before = prepared(
            make_loop,
            {
                "half": claude("partial"),
                "rewriter": claude("rewrite", FAKE_AGENT_REWRITE=how),
                "finisher": command("complete"),
            },
        )
        number = loop.new_issue("Rewrite the past")
        task = loop.wait_status(f"{REPO}#{number}", "merged")
        assert outcomes(task) == [
            ("half", "partial", "test_failure"),
            ("rewriter", "failed", "history_rewritten"),
            ("finisher", "complete", None),
        ]
        assert "no longer descends from" in task["attempts"][1]["error"]
        assert Path(task["attempts"][1]["patch_path"]).is_file()
        assert len(loop.show("agent_output.txt").splitlines()) == 2  # the half and the finisher
        assert_untouched(loop, before, merged=True, branch=None)

    def test_work_on_a_detached_head_is_put_back_on_the_branch(self, make_loop: MakeLoop) -> None:
        """An agent that commits on a detached HEAD (or a branch of its own) loses nothing: its commits still
        descend from the attempt's start, so the task branch is moved to them and the attempt goes on."""
        loop, before = prepared(
            make_loop, {"half": claude("partial"), "detacher": claude("rewrite", FAKE_AGENT_REWRITE="detach")}
        )
        number = loop.new_issue("Detach the head")
        task = loop.wait_status(f"{REPO}#{number}", "merged")
        assert outcomes(task) == [("half", "partial", "test_failure"), ("detacher", "complete", None)]
        assert len(loop.show("agent_output.txt").splitlines()) == 2
        assert_untouched(loop, before, merged=True, branch=None)


def test_snapshot_helpers_see_a_change(make_loop: MakeLoop) -> None:
    """The checks above can fail: a branch added to the user's repo or a sentinel edit is seen."""
    loop, before = prepared(make_loop, {"noop": claude("complete")})
    git(loop.repo, "branch", "stray")
    with pytest.raises(AssertionError):
        assert_untouched(loop, before, merged=False, branch=None)
    git(loop.repo, "branch", "-D", "stray")
    sentinel(loop).write_text("changed\n")
    with pytest.raises(AssertionError):
        assert_untouched(loop, before, merged=False, branch=None)
    assert re.search(r"refs/heads/main", "\n".join(refs(loop.repo)))
