"""The pure parts of setting up a Projects v2 board (``agentos.forge.github``)."""

from __future__ import annotations

import pytest

from agentos.forge.github import BoardOption, ProjectConfig, missing_status_options, options_with

BOARD = ProjectConfig(owner="octo", number=3)


def names(options: list[BoardOption]) -> list[str]:
    return [o.name for o in options]


class TestMissingStatusOptions:
    @pytest.mark.parametrize(
        ("have", "expected"),
        [
            pytest.param(["Todo", "In Progress", "Done"], ["Ready", "In Review", "Blocked"], id="github-default"),
            pytest.param(["ready", "IN PROGRESS", "in review", "Blocked", "done"], [], id="case-insensitive"),
            pytest.param([], ["Ready", "In Progress", "In Review", "Blocked", "Done"], id="empty"),
        ],
    )
    def test_names_what_agentos_needs_in_its_order(self, have: list[str], expected: list[str]) -> None:
        """The statuses agentos moves cards to that the field lacks, matched case-insensitively, in agentos's order."""
        assert missing_status_options(BOARD, have) == expected

    def test_follows_status_values(self) -> None:
        """A mapped status is looked for under the board's own name."""
        board = ProjectConfig(owner="octo", number=3, status_values={"In Progress": "Doing"})
        assert missing_status_options(board, ["Ready", "Doing", "In Review", "Blocked", "Done"]) == []
        assert missing_status_options(board, ["Ready", "In Progress", "In Review", "Blocked", "Done"]) == ["Doing"]


class TestOptionsWith:
    @pytest.mark.parametrize(
        ("have", "expected"),
        [
            pytest.param(
                ["Todo", "In Progress", "Done"],
                ["Todo", "Ready", "In Progress", "In Review", "Blocked", "Done"],
                id="github-default",
            ),
            pytest.param(["Backlog"], ["Backlog", "Ready", "In Progress", "In Review", "Blocked", "Done"], id="none"),
            pytest.param(["Done", "Ready"], ["In Progress", "In Review", "Blocked", "Done", "Ready"], id="odd-order"),
        ],
    )
    def test_places_each_missing_option_before_the_next_status_present(
        self, have: list[str], expected: list[str]
    ) -> None:
        """A missing option goes before the next agentos status the board has, else at the end."""
        existing = [BoardOption(f"id-{n}", n) for n in have]
        merged = options_with(BOARD, existing, missing_status_options(BOARD, have))
        assert names(merged) == expected

    def test_keeps_existing_options_as_they_are_and_styles_new_ones(self) -> None:
        """Existing options keep id, colour and description; added ones have no id and agentos's colour."""
        todo = BoardOption("a1", "Todo", "GREEN", "not yet")
        merged = options_with(BOARD, [todo], ["Ready"])
        assert merged == [todo, BoardOption(None, "Ready", "GREEN", "agentos may pick this issue up")]
