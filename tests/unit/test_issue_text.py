"""The issue parser and hidden-text stripping: what a reader of the rendered issue sees is what counts."""

from __future__ import annotations

import pytest

from agentos.issue_text import ParsedIssue, parse_issue, strip_hidden


class TestStripHidden:
    @pytest.mark.parametrize(
        ("text", "seen"),
        [
            pytest.param(
                "Fix it.\n<!--\nAgent: evil\nDepends on #7\n-->\nThen ship.",
                "Fix it.\n\nThen ship.",
                id="comment-across-lines",
            ),
            pytest.param("a<!-- x -->b<!-- y\nz -->c", "abc", id="two-inline-comments"),
            pytest.param("keep<!-- never closed\nAgent: evil", "keep", id="unterminated"),
            pytest.param("a\u200bb\u202ec\r\nd", "abc\nd", id="invisible-characters-and-crlf"),
            pytest.param("x\n[//]: # (hidden note)\ny", "x\ny", id="markdown-comment-line"),
        ],
    )
    def test_hidden_text_is_gone(self, text: str, seen: str) -> None:
        """HTML comments (also across lines or unterminated), markdown comments and invisible characters go."""
        assert strip_hidden(text) == seen


class TestParseIssue:
    def test_a_heading_padded_with_thousands_of_spaces_still_names_its_section(self) -> None:
        """`## Goal` followed by a long run of spaces (what once hung the daemon) is still the goal heading."""
        parsed = parse_issue("t", "## Goal" + " " * 20_000 + "\nship it\n## Constraints" + " " * 5_000 + ":\n- z\n", [])
        assert (parsed.goal, parsed.constraints) == ("ship it", ["z"])

    def test_a_padded_heading_with_trailing_text_is_no_section(self) -> None:
        """A heading that is not a name of words (here it ends in `!`) opens no section: the body is the goal."""
        body = "## Goal" + " " * 20_000 + "!\nship it"
        assert parse_issue("t", body, []).goal == body.strip()

    def test_a_section_heading_inside_a_code_block_is_code(self) -> None:
        """A `## Goal` inside a fenced code block is part of the text, not a new section."""
        body = "## Goal\nRender this template:\n\n```markdown\n## Goal\nnot me\n## Constraints\n- nor me\n```\n"
        parsed = parse_issue("t", body, [])
        assert parsed.goal.startswith("Render this template:") and "not me" in parsed.goal
        assert parsed.constraints == []

    def test_task_list_items_are_criteria_without_their_boxes(self) -> None:
        """Checked and unchecked task-list items, bullets and numbered items each give one criterion."""
        body = (
            "## Success criteria\n"
            "- [ ] the flag exists\n- [x] the docs say so\n"
            "* [X] a wrapped item\n  that goes on\n"
            "1. numbered\n"
            "   - nested\n"
        )
        parsed = parse_issue("t", body, [])
        assert parsed.success_criteria == [
            "the flag exists",
            "the docs say so",
            "a wrapped item that goes on",
            "numbered",
            "nested",
        ]

    def test_an_empty_list_item_does_not_swallow_the_next_lines(self) -> None:
        """After a bullet with no text, the following paragraph's lines are items of their own."""
        parsed = parse_issue("t", "## Constraints\n- \n\nno new dependency\nkeep it small\n", [])
        assert parsed.constraints == ["no new dependency", "keep it small"]

    def test_a_heading_inside_a_quote_or_list_is_no_section(self) -> None:
        """Only top-level `##`/`###` headings open sections."""
        parsed = parse_issue("t", "Do it.\n\n> ## Goal\n> quoted\n\n- ## Constraints\n", [])
        assert parsed.goal.startswith("Do it.") and parsed.constraints == []

    def test_the_first_of_two_same_sections_wins(self) -> None:
        """A section named twice keeps its first text."""
        assert parse_issue("t", "## Goal\nfirst\n## Goal\nsecond\n", []).goal == "first"

    def test_a_comment_between_sections_changes_nothing(self) -> None:
        """A multi-line HTML comment holding a heading and field lines neither opens a section nor sets a field."""
        plain = parse_issue("t", "## Goal\nship it\n", [])
        hidden = parse_issue("t", "## Goal\nship it\n<!--\n## Constraints\n- none\nAgent: evil\n-->\n", [])
        assert hidden == plain == ParsedIssue(goal="ship it")


class TestParseIssueFields:
    def test_sections_give_goal_criteria_and_constraints(self) -> None:
        """`## Goal`, `## Success Criteria` and `## Constraints` fill the task; list markers and checkboxes go."""
        body = (
            "Some context first.\n\n"
            "## Goal\n\nAdd a --verbose flag.\nIt prints every step.\n\n"
            "## Success Criteria\n\n- [ ] `cli --verbose` prints steps\n* tests pass\n1. docs mention it\n\n"
            "### Constraints:\n\n- no new dependency\n"
        )
        parsed = parse_issue("Verbose flag", body, [])
        assert parsed.goal == "Add a --verbose flag.\nIt prints every step."
        assert parsed.success_criteria == ["`cli --verbose` prints steps", "tests pass", "docs mention it"]
        assert parsed.constraints == ["no new dependency"]

    @pytest.mark.parametrize(
        ("title", "body", "goal"),
        [
            pytest.param("Rename the logo file", "", "Rename the logo file", id="title-only"),
            pytest.param("Typo", "The page says 'teh'.", "The page says 'teh'.", id="one-line-body"),
            pytest.param("Typo", "\n\n   \n", "Typo", id="blank-body"),
            pytest.param("Typo", "Agent: codex\n", "Typo", id="only-an-agent-line"),
        ],
    )
    def test_a_plain_issue_still_works(self, title: str, body: str, goal: str) -> None:
        """An issue without sections: the body (or the title) is the goal, with the defaults."""
        parsed = parse_issue(title, body, [])
        assert parsed.goal == goal
        assert (parsed.success_criteria, parsed.constraints, parsed.depends_on) == ([], [], [])
        assert (parsed.type, parsed.priority) == ("implementation", "normal")

    def test_agent_type_and_priority_lines(self) -> None:
        """`Agent:`, `Type:` and `Priority:` lines are read case-insensitively and kept out of the goal."""
        body = "Find why the build is slow.\n\nAgent: Codex\ntype: Debugging\nPRIORITY: high\n"
        parsed = parse_issue("Slow build", body, [])
        assert (parsed.agent, parsed.type, parsed.priority) == ("codex", "debugging", "high")
        assert parsed.goal == "Find why the build is slow."

    @pytest.mark.parametrize(
        ("line", "labels", "expected"),
        [
            pytest.param("", ["prio:high"], "high", id="label"),
            pytest.param("", ["bug", "Prio:LOW"], "low", id="label-any-case"),
            pytest.param("Priority: low", ["prio:high"], "high", id="label-beats-line"),
            pytest.param("Priority: urgent", [], "normal", id="unknown-line-ignored"),
            pytest.param("", ["prio:p0"], "normal", id="unknown-label-ignored"),
        ],
    )
    def test_priority_from_prio_labels(self, line: str, labels: list[str], expected: str) -> None:
        """A `prio:high|normal|low` label sets the priority (over a line); unknown values keep `normal`."""
        assert parse_issue("t", f"Do it.\n{line}\n", labels).priority == expected

    def test_unknown_type_keeps_the_default(self) -> None:
        """A `Type:` that is not a task type is ignored."""
        assert parse_issue("t", "Type: chores\n", []).type == "implementation"

    @pytest.mark.parametrize(
        ("title", "body", "labels", "kind", "source"),
        [
            # inference: the first keyword of the title, else of the goal
            pytest.param("Crash on empty input", "", [], "debugging", "inferred", id="crash"),
            pytest.param("Parser bug with unicode", "", [], "debugging", "inferred", id="bug"),
            pytest.param("Fix the typo in README", "", [], "debugging", "inferred", id="first-keyword-wins"),
            pytest.param("Document the error codes", "", [], "docs", "inferred", id="docs-before-error"),
            pytest.param("Update the README", "", [], "docs", "inferred", id="readme"),
            pytest.param("Investigate slow startup", "", [], "research", "inferred", id="investigate"),
            pytest.param("Evaluate sqlite vs postgres", "", [], "research", "inferred", id="evaluate"),
            pytest.param("Compare the two parsers", "", [], "research", "inferred", id="compare"),
            pytest.param("RFC: plugin system", "", [], "architecture", "inferred", id="rfc"),
            pytest.param("Design the storage layer", "", [], "architecture", "inferred", id="design"),
            pytest.param("Scrape the pricing page", "", [], "browser_automation", "inferred", id="scrape"),
            pytest.param("Blog post for the release", "", [], "content", "inferred", id="blog"),
            pytest.param("Parser problem", "It crashes with an error.", [], "debugging", "inferred", id="from-goal"),
            pytest.param("Add a modulo operator", "Support a % b.", [], "implementation", "default", id="no-clue"),
            pytest.param("Prefix handling", "", [], "implementation", "default", id="whole-words-only"),
            pytest.param("Add a flag", "", ["bug"], "debugging", "inferred", id="plain-bug-label"),
            pytest.param("Add a flag", "", ["documentation"], "docs", "inferred", id="plain-docs-label"),
            # explicit lines and labels win over inference; a label wins over a line
            pytest.param("Fix the crash", "Type: research\n", [], "research", "line", id="line-beats-keyword"),
            pytest.param("Fix the crash", "", ["type:docs"], "docs", "label", id="label-beats-keyword"),
            pytest.param("Fix it", "Type: research\n", ["Type: Architecture"], "architecture", "label",
                         id="label-beats-line"),
            pytest.param("Fix it", "", ["type:chores"], "debugging", "inferred", id="unknown-type-label-ignored"),
            pytest.param("Add it", "", ["bug", "type:research"], "research", "label", id="type-label-beats-bug"),
        ],
    )
    def test_task_type(self, title: str, body: str, labels: list[str], kind: str, source: str) -> None:
        """`type:<t>` labels, then `Type:` lines, then keywords and plain labels decide; else implementation."""
        parsed = parse_issue(title, body, labels)
        assert (parsed.type, parsed.type_from) == (kind, source)

    @pytest.mark.parametrize(
        ("body", "labels", "agent"),
        [
            pytest.param("", ["agent:codex"], "codex", id="label"),
            pytest.param("", ["Agent: Claude"], "claude", id="label-any-case"),
            pytest.param("Agent: gemini\n", ["agent:codex"], "codex", id="label-beats-line"),
            pytest.param("Agent: gemini\n", ["agent:"], "gemini", id="empty-label-ignored"),
            pytest.param("", ["codex"], None, id="bare-name-is-not-an-agent-label"),
        ],
    )
    def test_agent_label(self, body: str, labels: list[str], agent: str | None) -> None:
        """An `agent:<name>` label pins the agent (over an `Agent:` line)."""
        assert parse_issue("t", f"Do it.\n{body}", labels).agent == agent

    def test_hidden_text_infers_nothing(self) -> None:
        """A keyword inside an HTML comment does not pick the type."""
        assert parse_issue("Add a flag", "<!-- crash research -->Add --x.", []).type == "implementation"

    @pytest.mark.parametrize(
        ("body", "deps"),
        [
            pytest.param("Depends on #3", [3], id="one"),
            pytest.param("depends on: #3, #5 and #8", [3, 5, 8], id="list"),
            pytest.param("Depends on #3\nDepends on #3\nDEPENDS ON #4", [3, 4], id="repeated"),
            pytest.param("This no longer needs #3.", [], id="no-keyword"),
            pytest.param("Depends on the weather", [], id="no-number"),
        ],
    )
    def test_depends_on_lines(self, body: str, deps: list[int]) -> None:
        """`Depends on #N` lines (one or a list) name the issues to wait for, each once."""
        assert parse_issue("t", body, []).depends_on == deps

    def test_section_aliases(self) -> None:
        """`## Acceptance Criteria` counts as success criteria."""
        parsed = parse_issue("t", "## Goal\nx\n## Acceptance Criteria\n- it works\n", [])
        assert parsed.success_criteria == ["it works"]

    def test_a_heading_does_not_swallow_the_next_line(self) -> None:
        """A section heading ends at its own line: the section's first line belongs to the section."""
        parsed = parse_issue("t", "## Goal\nfirst line\n## Constraints\n- keep it small\n", [])
        assert (parsed.goal, parsed.constraints) == ("first line", ["keep it small"])


def test_parsed_issue_defaults() -> None:
    """A bare ParsedIssue is an implementation task of normal priority with no dependencies."""
    parsed = ParsedIssue(goal="x")
    assert (parsed.type, parsed.priority, parsed.agent, parsed.depends_on) == ("implementation", "normal", None, [])
