"""The stricter verifier through the real daemon on the local forge (issue #18).

A fake agent writes a chosen file: a stub, a skip marker or a TODO holds the green PR for approval with the
finding on the PR; ``agentos ctl approve`` merges it and the journal records the override; a clean PR merges
on its own.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from agentos.forge.base import REVIEW_LABEL

from .conftest import FAKES, REPO, Loop

MakeLoop = Callable[..., Loop]
KEY = re.compile(r"<!-- agentos:key=(verify:[^ ]*) -->")


def writer_agent(path: str, text: str) -> dict[str, Any]:
    """An agent that writes ``text`` to ``path`` and commits it."""
    return {
        "kind": "command",
        "argv": [str(FAKES / "writer_agent.py"), "{prompt_file}"],
        "env": {"FAKE_WRITE_PATH": path, "FAKE_WRITE_TEXT": text},
    }


def journal(loop: Loop) -> list[dict[str, Any]]:
    """Every journal line the daemon wrote (rotated history first)."""
    paths = [*sorted((loop.state / "events").glob("events-*.jsonl")), loop.state / "journal.jsonl"]
    lines = [line for p in paths if p.exists() for line in p.read_text().splitlines() if line.strip()]
    return [json.loads(line) for line in lines]


def comments(loop: Loop, number: int) -> list[str]:
    return [c["body"] for c in next(p for p in loop.pulls() if p["number"] == number)["comments"]]


STUB = "def add(a, b):\n    raise NotImplementedError\n"
SKIP = """import unittest


class TestAdd(unittest.TestCase):
    @unittest.skip("later")
    def test_add(self):
        self.assertEqual(1, 1)
"""
TODO = "def add(a, b):\n    # TODO: handle floats\n    return a + b\n"


class TestHeld:
    @pytest.mark.parametrize(
        ("path", "text", "kind", "where"),
        [
            pytest.param("calc.py", STUB, "stub", "calc.py:2", id="not-implemented"),
            pytest.param("test_add.py", SKIP, "skip_marker", "test_add.py:5", id="skip-marker"),
            pytest.param("calc.py", TODO, "todo", "calc.py:2", id="todo"),
        ],
    )
    def test_a_finding_holds_the_pr_until_approved(
        self, make_loop: MakeLoop, path: str, text: str, kind: str, where: str
    ) -> None:
        """Held with the finding on the PR (one comment over passes); `ctl approve` merges and is journalled."""
        loop = make_loop({"writer": writer_agent(path, text)})
        number = loop.new_issue("Add an adder")
        task_id = f"{REPO}#{number}"

        def held() -> dict[str, Any] | None:
            pulls = loop.pulls()
            return pulls[0] if pulls and REVIEW_LABEL in pulls[0]["labels"] else None

        pull = loop.wait_for(held, what="the PR to be held for review")
        for _ in range(2):
            loop.ctl("run", {"name": "pr_monitor"})
        assert loop.task(task_id)["status"] == "pr_open"
        pull = next(p for p in loop.pulls() if p["number"] == pull["number"])
        assert pull["state"] == "open" and "risk:high" in pull["labels"]
        [comment] = [c for c in comments(loop, pull["number"]) if KEY.search(c)]
        assert f"`{kind}` at `{where}`" in comment and f"agentos ctl approve {REPO}#{pull['number']}" in comment

        result = loop.ctl("approve", {"ref": f"{REPO}#{pull['number']}"})

        assert result["result"] == "merged" and loop.task(task_id)["status"] == "merged"
        [approved] = [e for e in journal(loop) if e.get("type") == "pr_approved"]
        data = approved.get("data", approved)
        assert data["override"] is True and data["by"] == "ctl"
        assert [(f["kind"], f"{f['file']}:{f['line']}") for f in data["findings"]] == [(kind, where)]
        assert loop.show(path) == text


class TestClean:
    def test_a_clean_pr_merges_without_approval(self, make_loop: MakeLoop) -> None:
        """Nothing found: no review label, no approval, merged; the journal has no approval."""
        loop = make_loop({"writer": writer_agent("calc.py", "def add(a, b):\n    return a + b\n")})
        number = loop.new_issue("Add an adder")

        loop.wait_status(f"{REPO}#{number}", "merged")

        [pull] = loop.pulls()
        assert REVIEW_LABEL not in pull["labels"] and not [e for e in journal(loop) if e.get("type") == "pr_approved"]
