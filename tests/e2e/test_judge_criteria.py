"""The LLM judge's per-criterion verdicts through the real daemon on the local forge: the issue's success
criteria (parsed from its body) are numbered in the judge's prompt; a scripted judge (a ``command`` agent
answering JSON) that marks one unmet holds the PR with that criterion on it; a clean verdict does not."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentos.forge.base import REVIEW_LABEL
from tests.e2e.conftest import FAKES, REPO, Loop

MakeLoop = Callable[..., Loop]

BODY = "Add an adder.\n\n## Success criteria\n- add(a, b) returns the sum\n- negative numbers work too\n"


def judged_loop(make_loop: MakeLoop, answer: dict[str, Any]) -> tuple[Loop, Path]:
    """A writer agent that commits calc.py, and a judge that answers ``answer``; its prompts logged."""
    writer = {
        "kind": "command",
        "argv": [str(FAKES / "writer_agent.py"), "{prompt_file}"],
        "env": {"FAKE_WRITE_PATH": "calc.py", "FAKE_WRITE_TEXT": "def add(a, b):\n    return a + b\n"},
    }
    loop = make_loop({"writer": writer}, start=False)
    (loop.root / "answer.json").write_text(json.dumps(answer))
    prompts = loop.root / "judge-prompts.log"
    argv = [sys.executable, str(FAKES / "json_answer.py"), "{prompt_file}", str(loop.root / "answer.json")]
    loop.agents["judge"] = {"kind": "command", "argv": [*argv, str(prompts)]}
    loop.overrides["routing"] = {"default": ["writer"]}
    loop.overrides["repos"] = [
        {
            "name": REPO,
            "path": str(loop.repo),
            "test_command": "python3 -m unittest -q",
            "test_timeout_s": 60,
            "llm_judge": "judge",
        }
    ]
    loop.write_config()
    loop.start()
    return loop, prompts


class TestJudgeCriteria:
    def test_a_criterion_judged_unmet_holds_the_pr_with_it(self, make_loop: MakeLoop) -> None:
        """Criterion 2 unmet: the PR waits for approval, its comment names the criterion and the judge's reason."""
        answer = {
            "verdict": "ok",
            "criteria": [
                {"criterion": 1, "met": True, "reason": "it adds"},
                {"criterion": 2, "met": False, "reason": "negative inputs are rejected"},
            ],
        }
        loop, prompts = judged_loop(make_loop, answer)
        number = loop.new_issue("Add an adder", BODY)

        def held() -> dict[str, Any] | None:
            pulls = loop.pulls()
            return pulls[0] if pulls and REVIEW_LABEL in pulls[0]["labels"] else None

        pull = loop.wait_for(held, what="the PR to be held for review")
        assert loop.task(f"{REPO}#{number}")["status"] == "pr_open" and "risk:high" in pull["labels"]
        bodies = [c["body"] for c in pull["comments"]]
        assert any(
            "finds criterion 2 unmet: “negative numbers work too”: negative inputs are rejected" in b for b in bodies
        ), bodies
        assert not any("criterion 1 unmet" in b for b in bodies)
        prompt = prompts.read_text()
        assert "1. add(a, b) returns the sum\n2. negative numbers work too" in prompt

    def test_a_clean_verdict_merges(self, make_loop: MakeLoop) -> None:
        """Every criterion met: no review label, merged."""
        answer = {"verdict": "ok", "criteria": [{"criterion": 1, "met": True}, {"criterion": 2, "met": True}]}
        loop, prompts = judged_loop(make_loop, answer)
        number = loop.new_issue("Add an adder", BODY)

        loop.wait_status(f"{REPO}#{number}", "merged")

        [pull] = loop.pulls()
        assert REVIEW_LABEL not in pull["labels"]
        assert "2. negative numbers work too" in prompts.read_text()  # the judge was asked, with the criteria
