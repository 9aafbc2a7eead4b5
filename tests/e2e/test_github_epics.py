"""An epic on ``forge: github``: the real daemon against the fake GitHub files the planner's parts as ready
issues through the REST API (the bot's own ready label counts), runs them in order and closes the epic."""

from __future__ import annotations

import json
import sys

from agentos.forge.base import READY_LABEL
from tests.fakes.github_server import BOT_LOGIN, fake_github  # noqa: F401

from .conftest import FAKES, claude_agent
from .test_github_daemon import REPO, MakeDaemon, make_daemon  # noqa: F401

SPLIT = {
    "parts": [{"title": f"Step {k}", "goal": f"Step {k}.", "success_criteria": [f"step {k} done"]} for k in (1, 2)]
}


async def test_an_epic_is_split_into_ready_issues_on_github_and_closes(make_daemon: MakeDaemon) -> None:  # noqa: F811
    """Labelled `epic` and made ready by a maintainer → 2 issues filed by the bot, `Part of #N`, the second
    `Depends on` the first, each ready; both merge in order; the epic closes with one comment listing them."""
    planner = {"kind": "command", "argv": [sys.executable, str(FAKES / "json_answer.py"), "{prompt_file}", "A"]}
    d = await make_daemon(
        {"claude": claude_agent("complete"), "planner": planner},
        board=False,
        start=False,
        routing={"default": ["claude"]},
        loops={"llm_agent": "planner"},
    )
    answer = d.root / "answer.json"
    answer.write_text(json.dumps(SPLIT))
    d.agents["planner"]["argv"][3] = str(answer)
    await d.start()
    epic = d.new_issue("Export everything", "## Goal\n\nAll exports.\n")
    d.fake.label_issue(REPO, epic, "epic", actor="maya")
    d.make_ready(epic)

    def parts() -> list[int]:
        found = [n for n, i in d.repo.issues.items() if i.body.startswith(f"Part of #{epic} ")]
        return sorted(found) if len(found) == 2 else []

    first, second = await d.wait_for(parts, what="the parts")
    assert f"Depends on #{first}" in d.repo.issues[second].body
    for n in (first, second):
        assert d.label_events(n, READY_LABEL)[0] == ("labeled", BOT_LOGIN)
    one = await d.wait_merged(f"{REPO}#{first}", first, timeout=90)
    two = await d.wait_merged(f"{REPO}#{second}", second, timeout=90)
    merged = {p.head: p.merged_at or "" for p in d.repo.pulls.values()}  # the fake's own clock
    assert merged[one["branch"]] < merged[two["branch"]] and one["pr"] < two["pr"]
    await d.wait_for(lambda: d.repo.issues[epic].state == "closed", what="the epic closed")
    keys = d.comment_keys(epic)
    assert keys.count(f"epic-split:{REPO}#{epic}") == 1 and keys.count(f"epic-done:{REPO}#{epic}") == 1
