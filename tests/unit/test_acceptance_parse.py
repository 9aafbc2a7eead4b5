"""The ``## Acceptance`` section of an issue: list items, a fenced YAML block, and malformed sections."""

from __future__ import annotations

import pytest

from agentos.acceptance import parse_acceptance
from agentos.graph import IllegalTransition, Task, TaskStatus
from agentos.issue_text import parse_issue


def test_list_items_give_each_kind_of_check() -> None:
    body = (
        "Add the smoke script.\n\n## Acceptance\n"
        "- command: `make smoke`\n"
        "- [ ] file: docs/guide.md\n"
        "- url: https://status.example.com/health\n"
        "  json: /status\n"
        "  equals: ok\n"
        "- human: the dashboard shows the chart\n\n"
        "## Constraints\n- keep it small\n"
    )
    parsed = parse_issue("Smoke", body, [])
    checks = parsed.acceptance.checks
    assert [(c.kind, c.value) for c in checks] == [
        ("command", "make smoke"),
        ("file", "docs/guide.md"),
        ("url", "https://status.example.com/health"),
        ("human", "the dashboard shows the chart"),
    ]
    assert (checks[2].json_pointer, checks[2].equals) == ("/status", "ok")
    assert parsed.acceptance.problem is None and parsed.acceptance.needs_human
    assert parsed.constraints == ["keep it small"]


def test_a_fenced_yaml_block_is_read() -> None:
    section = "```yaml\n- command: pytest -q tests/smoke\n- url: https://x.example/api\n  json: /n\n  equals: 3\n```\n"
    acceptance = parse_acceptance(section)
    assert acceptance.problem is None
    assert [c.kind for c in acceptance.checks] == ["command", "url"]
    assert acceptance.checks[1].equals == "3"


def test_no_section_means_no_checks() -> None:
    parsed = parse_issue("Fix it", "Just fix the bug.\n\n## Acceptance criteria\n- it works\n", [])
    assert parsed.acceptance.checks == [] and parsed.acceptance.problem is None
    assert parsed.success_criteria == ["it works"]


@pytest.mark.parametrize(
    ("section", "words"),
    [
        ("- run: make test\n", "unknown key `run`"),
        ("- make the tests pass\n", "not `kind: value`"),
        ("- url: ftp://example.com\n", "not an http(s) URL"),
        ("- command: make\n  json: /a\n", "json and equals belong to a url check"),
        ("- file: ../../etc/passwd\n", "inside the repository"),
        ("```yaml\n- command: [unclosed\n```\n", "does not parse"),
        ("```yaml\njust text\n```\n", "a list of checks"),
    ],
)
def test_a_malformed_section_names_its_problem_and_gives_no_checks(section: str, words: str) -> None:
    acceptance = parse_acceptance(section)
    assert acceptance.checks == []
    assert acceptance.problem is not None and words in acceptance.problem


def test_a_merged_task_with_checks_is_accepted_only_from_merged() -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 1, 1, tzinfo=UTC)
    task = Task(id="r#1", repo="r", issue=1, title="t", created_at=now, updated_at=now, status=TaskStatus.PR_OPEN)
    with pytest.raises(IllegalTransition):
        task.accept(now, "ctl")
    task.mark_merged(now, "abc")
    event = task.accept(now, "ctl")
    assert task.status is TaskStatus.ACCEPTED and event.data["by"] == "ctl"
