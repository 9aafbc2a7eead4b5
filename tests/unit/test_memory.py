"""CODEBASE.md upkeep: entries, folding under a size budget, and recording once per task."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from agentos import memory
from agentos.graph import Attempt, Task

NOW = datetime(2025, 1, 2, tzinfo=UTC)


def make_task(issue: int = 7, title: str = "Add a flag") -> Task:
    return Task(id=f"calc#{issue}", repo="calc", issue=issue, title=title, created_at=NOW, updated_at=NOW)


def make_entry(issue: int, lines: int = 5) -> str:
    body = "".join(f"- note {i} of #{issue}: {'x' * 40}\n" for i in range(lines))
    return f"## #{issue} Task {issue}\n\n{body}\n"


def document(*issues: int, human: str = "") -> str:
    return memory.HEADER + "\n" + human + "".join(make_entry(i) for i in issues)


class TestFold:
    def test_under_budget_nothing_changes(self) -> None:
        """A file within its budget is returned as it is."""
        text = document(1, 2, 3)
        assert memory.fold(text, budget=len(text)) == text

    def test_oldest_entries_fold_first_and_the_newest_stays_whole(self) -> None:
        """Over budget, the oldest entries shrink to their heading line until the text fits."""
        text = document(1, 2, 3, 4)
        budget = len(text) - 2 * len(make_entry(1)) + 60
        folded = memory.fold(text, budget=budget)
        assert len(folded) <= budget
        assert "## #1 Task 1 (folded)\n" in folded and "## #2 Task 2 (folded)\n" in folded
        assert make_entry(3) in folded and make_entry(4) in folded
        assert "note 0 of #1" not in folded

    def test_folding_is_idempotent(self) -> None:
        """Folding a folded file again changes nothing: no `(folded) (folded)` headings."""
        text = document(*range(1, 9))
        once = memory.fold(text, budget=len(text) // 2)
        assert memory.fold(once, budget=len(text) // 2) == once
        assert "(folded) (folded)" not in once

    def test_still_too_big_drops_the_oldest_folded_entries(self) -> None:
        """When folding is not enough the oldest entries go, but the newest is always kept."""
        text = document(*range(1, 30))
        folded = memory.fold(text, budget=len(make_entry(29)) + len(memory.HEADER) + 60)
        assert make_entry(29) in folded
        assert "## #1 " not in folded
        assert folded.startswith(memory.HEADER)

    def test_sections_a_person_wrote_are_never_folded(self) -> None:
        """Only agentos's `## #N` entries fold; a human `## Architecture` section stays whole."""
        human = "## Architecture\n\n" + "The core is in core.py and it is important.\n" * 20 + "\n"
        text = document(1, 2, 3, human=human)
        folded = memory.fold(text, budget=len(human) + len(memory.HEADER) + len(make_entry(3)) + 40)
        assert human in folded
        assert make_entry(3) in folded
        assert "note 0 of #1" not in folded


class TestEntry:
    def test_entry_names_files_decisions_and_risks(self) -> None:
        """An entry is a `## #N title` heading with files, decisions and risks on one line each."""
        task = make_task()
        text = memory.entry(task, Attempt(number=1, agent="claude", started_at=NOW), ["a.py", "b.py"], "Use X.", "Y")
        assert text == "## #7 Add a flag\n\n- files: `a.py`, `b.py`\n- decisions: Use X.\n- risks: Y\n\n"

    def test_entry_redacts_secrets(self) -> None:
        """A token an agent wrote into its decisions never reaches the repository."""
        token = "ghp_" + "a1B2c3D4" * 4 + "e5F6"
        text = memory.entry(make_task(), Attempt(number=1, agent="c", started_at=NOW), ["x"], f"used {token}")
        assert token not in text


class TestRecord:
    async def test_record_adds_the_entry_once_with_the_contract_fields(self, tmp_path: Path) -> None:
        """The task's entry is added once, with DECISIONS and RISKS from the attempt's result file."""
        run_dir = tmp_path / "run"
        run_dir.mkdir()
        (run_dir / ".agent_result.md").write_text(
            "STATUS: complete\nSUMMARY: did it\nDECISIONS: kept the API\nRISKS: slower start\n"
        )
        worktree = tmp_path / "wt"
        worktree.mkdir()
        attempt = Attempt(number=1, agent="claude", started_at=NOW, run_dir=str(run_dir))
        task = make_task()
        assert await memory.record(worktree, task, attempt, ["cli.py", memory.FILE])
        assert not await memory.record(worktree, task, attempt, ["cli.py"])
        text = (worktree / memory.FILE).read_text()
        assert text.startswith(memory.HEADER)
        assert text.count("## #7 Add a flag") == 1
        assert "- files: `cli.py`\n" in text  # CODEBASE.md itself is not listed
        assert "- decisions: kept the API" in text and "- risks: slower start" in text
        assert memory.read(worktree) == text

    async def test_record_appends_after_existing_content(self, tmp_path: Path) -> None:
        """An existing CODEBASE.md (even without a trailing blank line) keeps its text; the entry follows."""
        (tmp_path / memory.FILE).write_text("# Notes\nKeep me.")
        await memory.record(tmp_path, make_task(), Attempt(number=1, agent="c", started_at=NOW), ["a"])
        assert (tmp_path / memory.FILE).read_text().startswith("# Notes\nKeep me.\n\n## #7 Add a flag\n")

    @pytest.mark.parametrize("limit", [10, 100])
    def test_read_is_limited_and_missing_is_empty(self, tmp_path: Path, limit: int) -> None:
        """`read` returns at most the last ``limit`` characters, and "" when there is no file."""
        assert memory.read(tmp_path) == ""
        (tmp_path / memory.FILE).write_text("y" * 500)
        assert len(memory.read(tmp_path, limit)) == limit
