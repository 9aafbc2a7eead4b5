"""The user documentation stands on its own: links resolve, commands exist, nothing points outside the project.

Issue #21, problem 8: the docs referred to files users do not have and showed commands that do not exist.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tests.cli_tree import tree

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]\n]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
INLINE = re.compile(r"`((?:sudo )?agentos (?!is )[-a-z][^`]*)`")  # `agentos is not running` is output
FENCE = re.compile(r"^\s*(?:```|~~~)(\S*)")
SHELL = ("sh", "bash", "shell", "console")
TREE = tree()
OUTSIDE = re.compile(r"\bDESIGN\.md\b|\bLESSONS\b|\.\./shared|\bSTYLE\.md\b|\barchitecture-review\b")


def page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


def command_lines(text: str) -> list[tuple[int, str]]:
    """``agentos …`` command lines: inline code, and lines of shell code blocks (or ``$ agentos`` anywhere).

    Other lines of code blocks are output (``agentos is not running …``), not commands.
    """
    found: list[tuple[int, str]] = []
    block: str | None = None
    for number, line in enumerate(text.splitlines(), 1):
        fence = FENCE.match(line)
        if fence:
            block = None if block is not None else fence.group(1)
            continue
        if block is not None:
            prompt = re.match(r"\s*\$\s+", line)
            if prompt or block in SHELL:
                stripped = re.sub(r"^\s*(?:\$\s+)?(?:sudo )?", "", line)
                if stripped.startswith("agentos "):
                    found.append((number, stripped.split(" #", 1)[0].split(" && ", 1)[0].split(" | ", 1)[0]))
        else:
            found += [(number, m.group(1).removeprefix("sudo ")) for m in INLINE.finditer(line)]
    return found


def words(line: str) -> list[str]:
    try:
        return shlex.split(line)
    except ValueError:
        return line.split()


def unknown_part(line: str) -> str | None:
    """The first word of ``agentos …`` that names no subcommand, or an option the command does not have."""
    node = TREE
    naming = True  # still naming subcommands; after an argument or option, the rest are values
    for word in words(line)[1:]:
        if word.startswith("-") and len(word) > 1:
            name = word.split("=", 1)[0]
            if name not in node.options | {"-h", "--help"}:
                return f"option {name} of `{node.name}`"
            naming = False
            continue
        if not naming or not node.children:
            naming = False
            continue
        if word not in node.children:
            if re.fullmatch(r"[A-Z_<\[{.…].*|\S*[|…].*", word):
                return None  # a placeholder such as `agentos ctl job on|off NAME`
            return f"subcommand {word!r}"
        node = node.children[word]
    return None


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_relative_links_resolve(page: Path) -> None:
    """Every relative link of README.md and docs/*.md points to a file of the project."""
    dangling = []
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue
        path = (page.parent / target.split("#", 1)[0]).resolve()
        if not path.exists() or ROOT not in path.parents:
            dangling.append(target)
    assert dangling == []


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_no_reference_to_files_users_do_not_have(page: Path) -> None:
    hits = [m.group(0) for m in OUTSIDE.finditer(page.read_text(encoding="utf-8"))]
    assert hits == []


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_agentos_command_line_exists(page: Path) -> None:
    """Each `agentos …` line of the docs names subcommands (and options) the CLI has."""
    wrong = []
    for number, line in command_lines(page.read_text(encoding="utf-8")):
        problem = unknown_part(line)
        if problem:
            wrong.append(f"{page_id(page)}:{number}: {line}: no {problem}")
    assert wrong == []


def test_the_walker_catches_a_missing_subcommand_and_option() -> None:
    assert unknown_part("agentos issue show 3") is None
    assert unknown_part("agentos ctl pause") is None
    assert unknown_part("agentos isue list") == "subcommand 'isue'"
    assert unknown_part("agentos issue new --repo calc --bogus") == "option --bogus of `new`"
