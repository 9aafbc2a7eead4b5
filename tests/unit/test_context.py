"""The context layer: which documents a repo's product context holds, how they are cut, objectives.yaml."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from agentos.context import (
    ObjectivesInvalid,
    directory_reader,
    git_reader,
    parse_objectives,
    read_context,
    readme_goal,
)
from agentos.gitutil import git


def files_reader(files: dict[str, str]):  # type: ignore[no-untyped-def]
    async def read(name: str) -> str | None:
        return files.get(name)

    return read


def context_of(files: dict[str, str], **kwargs):  # type: ignore[no-untyped-def]
    return asyncio.run(read_context("calc", files_reader(files), **kwargs))


class TestReadmeGoal:
    @pytest.mark.parametrize(
        ("readme", "kept", "dropped"),
        [
            ("# Calc\n\nBadges.\n\n## Install\n\npip\n\n## Goal\n\nAdd numbers fast.\n\n## License\n\nMIT\n",
             "Add numbers fast.", "pip"),
            ("# Calc\n\n## Why calc?\n\nBecause adding is hard.\n\n### Detail\n\nmore why\n\n## Usage\n\nrun it\n",
             "more why", "run it"),
            ("# Calc\n\n## Vision\n\nEvery number added.\n", "Every number added.", "# Calc"),
            ("# Calc\n\nA calculator for people.\n\nIt adds.\n\n## Install\n\npip install calc\n",
             "It adds.", "pip install"),
        ],
    )
    def test_goal_section_or_first_paragraphs(self, readme: str, kept: str, dropped: str) -> None:
        goal = readme_goal(readme)
        assert kept in goal
        assert dropped not in goal

    def test_goal_heading_inside_code_is_code(self) -> None:
        readme = "# Calc\n\nIntro.\n\n```\n## Goal\nfake\n```\n\n## Usage\n\nrun\n"
        assert "fake" not in readme_goal(readme)


class TestReadContext:
    def test_documents_in_order_missing_skipped(self) -> None:
        ctx = context_of({"STRATEGY.md": "Win.", "README.md": "# C\n\nAdds numbers.\n", "OBJECTIVES.md": " "})
        assert [d.name for d in ctx.docs] == ["README.md", "STRATEGY.md"]
        assert ctx.docs[0].text == "Adds numbers."

    def test_no_files_no_context(self) -> None:
        assert not context_of({})

    def test_each_file_and_the_whole_are_capped(self) -> None:
        files = {"NORTH_STAR.md": "a\n" * 500, "STRATEGY.md": "b\n" * 500, "OBJECTIVES.md": "c\n" * 500}
        ctx = context_of(files, file_chars=300, max_chars=700)
        assert all(len(d.text) <= 300 for d in ctx.docs)
        assert ctx.size <= 700
        assert "cut to" in ctx.docs[0].note
        assert ctx.docs[-1].text == "" or len(ctx.docs[-1].text) < 300

    def test_over_the_whole_cap_a_file_is_left_out_with_a_note(self) -> None:
        files = {"NORTH_STAR.md": "a" * 200, "STRATEGY.md": "b" * 200}
        ctx = context_of(files, file_chars=200, max_chars=200)
        assert ctx.docs[1].text == ""
        assert "left out" in ctx.docs[1].note

    def test_valid_objectives(self) -> None:
        text = (
            "primary_outcome: more sums per second\n"
            "metrics:\n"
            "  - {name: speed, weight: 2, direction: up, command: ./bench.sh}\n"
            "  - {name: bugs, direction: down, file: reports/bugs.json, pointer: /open}\n"
        )
        ctx = context_of({"objectives.yaml": text})
        assert ctx.objectives is not None
        assert [m.name for m in ctx.objectives.metrics] == ["speed", "bugs"]
        assert not ctx.problems
        assert "speed: up (weight 2)" in ctx.objectives.describe()

    def test_invalid_objectives_is_one_line_problem_not_a_crash(self) -> None:
        ctx = context_of({"objectives.yaml": "primary_outcome: x\nmetrics:\n  - name: speed\n    direction: sideways\n"
                          "    command: ./b\n"})
        assert ctx.objectives is None
        assert len(ctx.problems) == 1
        assert ctx.problems[0].startswith("objectives.yaml:4: metrics[0].direction:")
        assert "\n" not in ctx.problems[0]
        assert [d.name for d in ctx.docs] == ["objectives.yaml"]  # still shown, as untrusted text

    def test_unreadable_file_counts_as_missing(self) -> None:
        async def read(name: str) -> str | None:
            raise OSError("permission denied")

        assert not asyncio.run(read_context("calc", read))


class TestObjectives:
    @pytest.mark.parametrize(
        ("text", "problem"),
        [
            ("primary_outcome: [unclosed\n", "objectives.yaml:2: invalid YAML"),
            ("- a list\n", "objectives.yaml:1: the file must be a mapping"),
            ("metrics: []\n", "objectives.yaml:1: primary_outcome: field required"),
            ("primary_outcome: x\nmetrics:\n  - {name: a, direction: up}\n", "exactly one of command, file or url"),
            ("primary_outcome: x\nmetrics:\n  - {name: a, direction: up, command: c, file: f}\n", "exactly one"),
            ("primary_outcome: x\nmetrics:\n  - {name: a, direction: up, file: ../etc/passwd}\n", "inside the repo"),
            ("primary_outcome: x\nmetrics:\n  - {name: a, direction: up, url: 'http://h.example/x'}\n", "https://"),
            ("primary_outcome: x\nmetrics:\n  - {name: a, direction: up, url: 'https://evil.example/x'}\n",
             "not in loops.objective_url_hosts"),
            ("primary_outcome: x\nmetrics:\n  - {name: a, direction: up, file: f.json, pointer: total}\n",
             "JSON pointer"),
            ("primary_outcome: x\nmetrics:\n  - {name: a, direction: up, command: c, pointer: /x}\n",
             "pointer goes with file or url"),
            ("primary_outcome: x\nmetrics:\n  - {name: a, direction: up, command: c}\n"
             "  - {name: a, direction: down, command: d}\n", "unique"),
            ("primary_outcome: x\nmetrics:\n  - {name: a, direction: up, command: c, weight: 0}\n", "greater than 0"),
            ("primary_outcome: x\nsecret_sauce: 1\n", "objectives.yaml:2: secret_sauce"),
        ],
    )
    def test_problems(self, text: str, problem: str) -> None:
        with pytest.raises(ObjectivesInvalid) as exc:
            parse_objectives(text, url_hosts=["metrics.example"])
        assert problem in str(exc.value)
        assert "\n" not in str(exc.value)

    def test_allow_listed_url(self) -> None:
        text = (
            "primary_outcome: x\nmetrics:\n"
            "  - {name: a, direction: up, url: 'https://Metrics.example/v', pointer: /n}\n"
        )
        objectives = parse_objectives(text, url_hosts=["metrics.example"])
        assert objectives.metrics[0].source == "url https://Metrics.example/v#/n"


class TestReaders:
    def test_directory_reader_stays_inside(self, tmp_path: Path) -> None:
        (tmp_path / "repo").mkdir()
        (tmp_path / "outside.md").write_text("secret")
        (tmp_path / "repo" / "NORTH_STAR.md").symlink_to(tmp_path / "outside.md")
        (tmp_path / "repo" / "STRATEGY.md").write_text("Win.")
        read = directory_reader(tmp_path / "repo")
        assert asyncio.run(read("NORTH_STAR.md")) is None
        assert asyncio.run(read("../outside.md")) is None
        assert asyncio.run(read("STRATEGY.md")) == "Win."

    def test_git_reader_reads_the_ref_not_the_tree(self, tmp_path: Path) -> None:
        def run(*args: str) -> None:
            subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

        run("init", "-q", "-b", "main")
        (tmp_path / "STRATEGY.md").write_text("Committed.\n")
        (tmp_path / "docs").mkdir()
        (tmp_path / "docs" / "x.md").write_text("x")
        (tmp_path / "link.md").symlink_to("STRATEGY.md")
        run("add", "-A")
        run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
        (tmp_path / "STRATEGY.md").write_text("Edited in the tree.\n")

        class Clone:
            async def git(self, *args: str, cwd: Path | None = None, check: bool = True, timeout: float = 120):  # type: ignore[no-untyped-def]
                return await git(*args, cwd=cwd or tmp_path, check=check, timeout=timeout)

        read = git_reader(Clone(), "main")
        assert asyncio.run(read("STRATEGY.md")) == "Committed.\n"
        assert asyncio.run(read("NORTH_STAR.md")) is None
        assert asyncio.run(read("docs")) is None
        assert asyncio.run(read("link.md")) is None
        assert asyncio.run(read("../x")) is None
        assert asyncio.run(read("docs/x.md")) == "x"  # a file in a folder: that folder listed
        assert asyncio.run(read("docs/y.md")) is None


class TestBaseCommitFromFiles:
    def test_a_ref_is_read_loose_then_packed_and_none_when_missing(self, tmp_path: Path) -> None:
        """The executor re-reads a repo's context only when its base moved: the base commit comes from git's files
        (the loose ref, else packed-refs) with no git process; an unknown ref says None (then it always reads)."""
        from agentos._worktree import ref_from_files

        def run(*args: str) -> str:
            return subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True, text=True).stdout

        run("init", "-q", "-b", "main")
        (tmp_path / "a.txt").write_text("a")
        run("add", "-A")
        run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
        head = run("rev-parse", "HEAD").strip()
        git_dir = tmp_path / ".git"
        assert ref_from_files(git_dir, "refs/heads/main") == head
        run("pack-refs", "--all")
        assert not (git_dir / "refs/heads/main").exists()
        assert ref_from_files(git_dir, "refs/heads/main") == head
        assert ref_from_files(git_dir, "refs/heads/other") is None
        assert ref_from_files(git_dir, "refs/heads/../../config") is None
