"""A repo whose folder is gone, through the real daemon: refused (nothing starts there), said once, taken back.

Issue #21 problem 6: a deleted or moved repository used to cost every attempt a "Could not read from remote
repository" failure until the task escalated. The daemon now looks at each repo's ``path`` at start, on reload
and before each dispatch pass.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from .conftest import REPO, Loop, claude_agent

MakeLoop = Callable[..., Loop]


def journal(loop: Loop) -> list[dict[str, Any]]:
    paths = [*sorted((loop.state / "events").glob("events-*.jsonl")), loop.state / "journal.jsonl"]
    lines = [line for p in paths if p.exists() for line in p.read_text().splitlines() if line.strip()]
    return [json.loads(line) for line in lines]


def refusal_notices(loop: Loop) -> list[dict[str, Any]]:
    return [e for e in journal(loop) if e.get("type") == "notification_sent" and '"repo_refused:' in json.dumps(e)]


def log_events(loop: Loop, name: str) -> list[dict[str, Any]]:
    """The daemon's JSON log lines for the event ``name`` (a line may carry a journald ``<N>`` prefix)."""
    found = []
    for line in loop.log_tail(1_000_000).splitlines():
        start = line.find("{")
        if start < 0:
            continue
        try:
            entry = json.loads(line[start:])
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("event") == name:
            found.append(entry)
    return found


class TestRepoRefused:
    @pytest.mark.slow
    def test_a_deleted_repo_starts_nothing_says_why_and_comes_back_when_restored(self, make_loop: MakeLoop) -> None:
        loop = make_loop({"claude": claude_agent("complete")})
        away = loop.root / "repo-moved-away"
        loop.repo.rename(away)

        number = loop.new_issue("Add a greeting")
        for _ in range(3):
            loop.ctl("run", {"name": "dispatch"})

        assert loop.tasks() == [], "no task, no attempt for a repo that is not there"
        status = loop.ctl("status")
        assert status["repos_refused"] == {REPO: f"{loop.repo} does not exist"}
        [row] = loop.ctl("repos")
        assert row["refused"] == f"{loop.repo} does not exist"
        [refused] = log_events(loop, "repo_refused")
        assert refused["repo"] == REPO and refused["path"] == str(loop.repo)
        assert refused["problem"] == f"{loop.repo} does not exist"
        assert len(refusal_notices(loop)) == 1, "one sev2 notice for the problem, not one per pass"

        away.rename(loop.repo)
        loop.ctl("run", {"name": "dispatch"})
        task = loop.wait_status(f"{REPO}#{number}", "merged")
        assert [a["outcome"] for a in task["attempts"]] == ["complete"], "its one attempt, nothing burnt before it"
        assert loop.ctl("status")["repos_refused"] == {}
        assert [e["repo"] for e in log_events(loop, "repo_restored")] == [REPO]

    @pytest.mark.slow
    def test_a_folder_that_is_not_a_git_repository_is_refused_from_the_start(self, make_loop: MakeLoop) -> None:
        loop = make_loop({"claude": claude_agent("complete")}, start=False)
        plain = loop.root / "plain"
        plain.mkdir()
        loop.overrides["repos"] = [{"name": REPO, "path": str(plain), "test_command": "true"}]
        loop.write_config()
        loop.start()

        assert loop.ctl("status")["repos_refused"] == {REPO: f"{plain} is not a git repository"}
        loop.new_issue("Never started")
        loop.ctl("run", {"name": "dispatch"})
        assert loop.tasks() == []

    @pytest.mark.slow
    def test_a_reload_that_points_a_repo_at_a_missing_folder_refuses_it_at_once(self, make_loop: MakeLoop) -> None:
        loop = make_loop({"claude": claude_agent("complete")})
        loop.ctl("pause")  # no dispatch pass looks: the reload itself does
        gone = loop.root / "gone"
        loop.overrides["repos"] = [{"name": REPO, "path": str(gone), "test_command": "true"}]
        loop.write_config()

        loop.ctl("reload")

        assert loop.ctl("status")["repos_refused"] == {REPO: f"{gone} does not exist"}
