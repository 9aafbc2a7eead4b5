"""The groomer through the real daemon on the local forge: work that finds itself and blocker triage.

A short backlog and CODEBASE.md's Known Issues → the scripted planner agent (a ``command`` agent answering JSON)
proposes; each candidate is filed once with a type and a priority, one like an open issue becomes a pointer comment
on it, and a second run files nothing again. Without an agent the same evidence gives the deterministic candidates,
and a repo without NORTH_STAR/STRATEGY gets one bootstrap issue each, once. A task blocked with ``runner_failure``
is made ready again after the cooldown (the config's, reloaded: the daemon's clock is real), and not past the cap.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

from agentos.forge.base import BLOCKED_LABEL, READY_LABEL, Issue

from .conftest import FAKES, REPO, Loop, claude_agent
from .test_sprint_plan import file_issue

MakeLoop = Callable[..., Loop]
CODEBASE = """# Codebase

The greeter: `app.py` prints a greeting.

## Known Issues

- The greeting crashes on an empty name
- Unicode names are garbled in the output
- [x] Fixed long ago: the greeting had no newline

## Layout

- app.py: the greeter
"""


def commit(loop: Loop, files: dict[str, str]) -> None:
    for name, text in files.items():
        (loop.repo / name).write_text(text)
        loop.git("add", name, cwd=loop.repo)
    loop.git("commit", "-qm", "docs", cwd=loop.repo)


def issues(loop: Loop) -> list[Issue]:
    folder = loop.forge / "issues"
    return sorted((loop.issue(int(p.stem))[0] for p in folder.glob("*.md")), key=lambda i: i.number)


def planner_agent(loop: Loop) -> dict[str, Any]:
    return {
        "kind": "command",
        "argv": [
            sys.executable,
            str(FAKES / "json_answer.py"),
            "{prompt_file}",
            str(loop.root / "groom-answer.txt"),
            str(loop.root / "groomer-prompts.log"),
        ],
    }


class TestWorkGeneration:
    def test_known_issues_become_typed_candidates_once_and_a_match_gets_a_pointer(self, make_loop: MakeLoop) -> None:
        loop = make_loop(
            {"claude": claude_agent("complete")},
            loops={"plan_size": 2, "groom_max_per_run": 3},
            start=False,
        )
        loop.agents["planner"] = planner_agent(loop)
        loop.overrides["loops"]["llm_agent"] = "planner"
        loop.write_config()
        commit(loop, {"CODEBASE.md": CODEBASE, "NORTH_STAR.md": "# North star\n\nFriendly greetings.\n",
                      "STRATEGY.md": "# Strategy\n\nSmall steps.\n"})  # fmt: skip
        proposals = [
            {"title": "The greeting crashes on an empty name", "body": "## Goal\nNo crash.", "type": "debugging",
             "priority": "high"},
            {"title": "Unicode names are garbled in the output", "body": "## Goal\nUTF-8.", "type": "debugging"},
            {"title": "Add a --shout flag to the greeter", "body": "## Goal\nLoud.", "type": "implementation",
             "priority": "low"},
        ]  # fmt: skip
        (loop.root / "groom-answer.txt").write_text(json.dumps({"issues": proposals}))
        loop.start()
        existing = file_issue(loop, "Unicode names are garbled in the output")

        loop.ctl("run", {"name": "backlog_groom"})
        prompt = (loop.root / "groomer-prompts.log").read_text()
        assert "- The greeting crashes on an empty name" in prompt and "Fixed long ago" not in prompt
        assert "Friendly greetings." in prompt  # the product context
        filed = [i for i in issues(loop) if i.number != existing]
        assert [(i.title, sorted(i.labels)) for i in filed] == [
            ("The greeting crashes on an empty name", ["agentos:proposed", "prio:high", "type:debugging"]),
            ("Add a --shout flag to the greeter", ["agentos:proposed", "prio:low", "type:implementation"]),
        ]
        assert all(READY_LABEL not in i.labels for i in filed)  # auto_ready: none, they wait for a human
        _, comments = loop.issue(existing)
        assert len([c for c in comments if "backlog groomer found this candidate" in c.body]) == 1

        loop.ctl("run", {"name": "backlog_groom"})  # the same answer again: nothing new, no second pointer
        assert len(issues(loop)) == 3
        _, comments = loop.issue(existing)
        assert len([c for c in comments if "backlog groomer found this candidate" in c.body]) == 1
        assert loop.tasks() == []

    def test_without_an_agent_the_evidence_gives_candidates_and_bootstrap_issues_once(
        self, make_loop: MakeLoop
    ) -> None:
        loop = make_loop({"claude": claude_agent("complete")}, loops={"plan_size": 3}, start=False)
        commit(loop, {"CODEBASE.md": CODEBASE})
        loop.start()
        loop.ctl("run", {"name": "backlog_groom"})
        loop.ctl("run", {"name": "backlog_groom"})
        titles = sorted(i.title for i in issues(loop))
        assert titles == [
            "The greeting crashes on an empty name",
            "Unicode names are garbled in the output",
            "Write NORTH_STAR.md",
            "Write STRATEGY.md",
        ]
        bootstrap = next(i for i in issues(loop) if i.title == "Write NORTH_STAR.md")
        assert {"type:docs", "prio:high"} <= set(bootstrap.labels)


class TestBlockerTriage:
    def test_a_runner_failure_is_made_ready_after_the_cooldown_and_not_past_the_cap(self, make_loop: MakeLoop) -> None:
        loop = make_loop(
            {"crasher": claude_agent("crash")},
            routing={"default": ["crasher"], "max_attempts": 1},
            loops={"reready_after_hours": 24, "max_rereadies": 1, "target_backlog_depth": 0},
        )
        number = loop.new_issue("Greet in French")
        first = loop.wait_status(f"{REPO}#{number}", "blocked")
        assert first["last_blocker"] == "runner_failure"
        loop.ctl("run", {"name": "backlog_groom"})
        assert BLOCKED_LABEL in loop.issue(number)[0].labels  # the cooldown has not passed

        loop.overrides["loops"]["reready_after_hours"] = 0  # the cooldown is over (the daemon's clock is real)
        loop.write_config()
        loop.ctl("reload")
        loop.ctl("run", {"name": "backlog_groom"})
        second = loop.wait_status(f"{REPO}#{number}.2", "blocked")  # ready again: a new generation ran
        assert second["last_blocker"] == "runner_failure"
        loop.ctl("run", {"name": "backlog_groom"})
        issue, comments = loop.issue(number)
        assert BLOCKED_LABEL in issue.labels and READY_LABEL not in issue.labels  # the cap: once
        assert len([c for c in comments if "the issue is ready again" in c.body]) == 1
        assert [t["id"] for t in loop.tasks()] == [f"{REPO}#{number}.2", f"{REPO}#{number}"]
        journal = (loop.state / "journal.jsonl").read_text()
        assert journal.count('"blocker_rereadied"') == 1
