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
