"""The stricter verifier: findings on the lines a PR adds (stubs, skips, TODOs, commented-out code, mocks, scope)."""

from __future__ import annotations

import pytest

from agentos.config import VerifierConfig
from agentos.jobs.findings import asks_for_tests, scan
from agentos.jobs.verify import FileChange, Finding, PRDiff, parse_added

ON = VerifierConfig()


def added(path: str, text: str, *, start: int = 1) -> PRDiff:
    """A PR that adds ``text`` to ``path`` from line ``start``."""
    lines = text.splitlines()
    return PRDiff(
        (FileChange(path, len(lines), 0),),
        tuple((path, line) for line in lines),
        tuple(range(start, start + len(lines))),
    )


def found(
    diff: PRDiff, *, goal: str = "Do it.", criteria: tuple[str, ...] = (), config: VerifierConfig = ON
) -> list[Finding]:
    return scan(diff, goal=goal, criteria=criteria, config=config)


def kinds(diff: PRDiff, **kw: object) -> list[str]:
    return [f.code for f in found(diff, **kw)]  # type: ignore[arg-type]


class TestStubs:
    @pytest.mark.parametrize(
        ("path", "text", "expected"),
        [
            pytest.param("src/app.py", "def f():\n    raise NotImplementedError\n", ["stub"], id="not-implemented"),
            pytest.param("src/app.py", "def f(x: int) -> int:\n    pass\n", ["stub"], id="pass-body"),
            pytest.param("src/app.py", "def f():\n    ...\n", ["stub"], id="ellipsis-body"),
            pytest.param("src/app.py", "def f():\n    return\n", ["stub"], id="bare-return"),
            pytest.param("src/app.py", 'def f():\n    """Later."""\n', ["stub"], id="docstring-only"),
            pytest.param("src/app.py", 'def f():\n    """Doc."""\n    pass\n', ["stub"], id="docstring-then-pass"),
            pytest.param("src/app.py", "    def method(self):\n        pass\n", ["stub"], id="indented-method"),
            pytest.param("src/app.py", "async def f(): ...\n", ["stub"], id="one-line-async"),
            pytest.param("src/app.py", "def f():\n    return 1\n", [], id="real-body"),
            pytest.param("src/app.py", "def f():\n    if x:\n        return\n    g()\n", [], id="early-return"),
            pytest.param("src/app.py", "class P(Protocol):\n    def f(self) -> int: ...\n", [], id="protocol"),
            pytest.param("src/app.py", "@abstractmethod\ndef f(self) -> int:\n    pass\n", [], id="abstract"),
            pytest.param("src/app.pyi", "def f() -> int: ...\n", [], id="stub-file"),
            pytest.param("tests/test_app.py", "def helper():\n    pass\n", [], id="test-code"),
            pytest.param("tests/test_app.py", "    raise NotImplementedError\n", [], id="test-not-implemented"),
        ],
    )
    def test_stub(self, path: str, text: str, expected: list[str]) -> None:
        """Only new stubs in non-test code count; abstract and Protocol methods and .pyi files are meant empty."""
        assert kinds(added(path, text)) == expected

    def test_partial_function_falls_back_to_lines(self) -> None:
        """Added lines that do not parse alone (an unclosed bracket elsewhere) are still read line by line."""
        text = "def f(a,\n      b):\n    pass\nx = (\n"
        assert kinds(added("src/app.py", "def g():\n    pass\nx = (\n")) == ["stub"]
        assert kinds(added("src/app.py", text)) == []

    def test_finding_names_the_line(self) -> None:
        """A finding says where: the file and the new file's line number."""
        [finding] = found(added("src/app.py", "x = 1\n\ndef f():\n    pass\n", start=10))
        assert (finding.path, finding.line, finding.where) == ("src/app.py", 12, "src/app.py:12")
        assert "`f`" in finding.detail

    def test_removed_lines_do_not_count(self) -> None:
        """Only added lines are read: a diff that deletes a stub has nothing to say."""
        text = "--- a/src/app.py\n+++ b/src/app.py\n@@ -3,2 +2,0 @@\n-def f():\n-    pass\n"
        lines, numbers = parse_added(text)
        assert kinds(PRDiff((FileChange("src/app.py", 0, 2),), lines, numbers)) == []


class TestMarkers:
    @pytest.mark.parametrize(
        ("path", "line", "expected"),
        [
            pytest.param("tests/test_a.py", "@pytest.mark.skip(reason='flaky')", ["skip_marker"], id="pytest-mark"),
            pytest.param("tests/test_a.py", "    pytest.skip('later')", ["skip_marker"], id="pytest-skip-call"),
            pytest.param("tests/test_a.py", "@unittest.skip('later')", ["skip_marker"], id="unittest"),
            pytest.param("web/a.test.js", "it.skip('works', () => {})", ["skip_marker"], id="it-skip"),
            pytest.param("web/a.test.js", "describe.skip('suite', () => {})", ["skip_marker"], id="describe-skip"),
            pytest.param("web/a.test.js", "xit('works', () => {})", ["skip_marker"], id="xit"),
            pytest.param(
                "tests/test_a.py", "@pytest.mark.skipif(sys.platform == 'win32', reason='posix')", [], id="skipif"
            ),
            pytest.param("src/a.py", "sys.exit(1)", [], id="exit-is-no-xit"),
            pytest.param("src/a.py", "# TODO: handle errors", ["todo"], id="todo"),
            pytest.param("src/a.py", "x = 1  # FIXME", ["todo"], id="fixme"),
            pytest.param("tests/test_a.py", "# XXX later", ["todo"], id="xxx-in-tests-too"),
            pytest.param("src/a.py", "todo_list = []", [], id="lowercase-word"),
            pytest.param("src/a.py", "from unittest.mock import patch", ["mock"], id="unittest-mock"),
            pytest.param("src/a.py", "client = MagicMock()", ["mock"], id="magicmock"),
            pytest.param("web/a.js", "const f = jest.fn()", ["mock"], id="jest-fn"),
            pytest.param("tests/test_a.py", "client = MagicMock()", [], id="mock-in-tests"),
        ],
    )
    def test_marker(self, path: str, line: str, expected: list[str]) -> None:
        """Skips and TODOs count everywhere; a mock only outside test files."""
        assert kinds(added(path, line + "\n")) == expected


class TestCommentedCode:
    @pytest.mark.parametrize(
        ("path", "text", "expected"),
        [
            pytest.param("src/a.py", "# x = compute()\n# if x:\n#     print(x)\n", ["commented_code"], id="python"),
            pytest.param("src/a.py", "# x = compute()\n# y = 2\n", [], id="two-lines"),
            pytest.param("src/a.py", "# This explains\n# what the code\n# below does.\n", [], id="prose"),
            pytest.param("src/a.py", "# Args:\n#     x: the value\n# Returns: it\n", [], id="labels"),
            pytest.param("web/a.ts", "// const x = 1;\n// foo(x);\n// return x;\n", ["commented_code"], id="slashes"),
            pytest.param("web/a.ts", "// Keep this short\n// because users\n// read it\n", [], id="slash-prose"),
            pytest.param("README.md", "# x = 1\n# y = 2\n# z = 3\n", [], id="markdown-heading"),
        ],
    )
    def test_commented_code(self, path: str, text: str, expected: list[str]) -> None:
        """Three or more consecutive comment lines that read as code; prose and docs are not code."""
        assert kinds(added(path, text)) == expected


class TestScope:
    CRITERIA = ("a flag", "a help text", "a changelog entry")

    def test_small_diff(self) -> None:
        """Three criteria met by a one-line change: held; the same change for a one-criterion issue is fine."""
        diff = added("src/a.py", "x = 1\n")
        assert kinds(diff, criteria=self.CRITERIA) == ["small_diff"]
        assert kinds(diff, criteria=self.CRITERIA[:1]) == []
        big = added("src/a.py", "x = 1\n" * 9)
        assert kinds(big, criteria=self.CRITERIA) == []

    def test_small_diff_configurable(self) -> None:
        diff = added("src/a.py", "x = 1\n" * 9)
        strict = VerifierConfig(min_diff_lines_per_criterion=10)
        assert kinds(diff, criteria=self.CRITERIA, config=strict) == ["small_diff"]
        assert kinds(diff, criteria=self.CRITERIA, config=VerifierConfig(min_diff_lines_per_criterion=0)) == []

    def test_tests_missing(self) -> None:
        """An issue asking for tests needs a changed test file."""
        code = added("src/a.py", "x = 1\n")
        assert kinds(code, goal="Add a flag with tests.") == ["tests_missing"]
        assert kinds(code, criteria=("a unit test covers it",)) == ["tests_missing"]
        with_test = PRDiff(
            (FileChange("src/a.py", 1, 0), FileChange("tests/test_a.py", 1, 0)), (("src/a.py", "x = 1"),)
        )
        assert kinds(with_test, goal="Add a flag with tests.") == []

    @pytest.mark.parametrize(
        ("text", "asks"),
        [
            ("Add tests for the parser", True),
            ("covered by a regression test", True),
            ("the existing tests still pass", False),
            ("all tests pass", False),
            ("make the latest build work", False),
        ],
    )
    def test_asks_for_tests(self, text: str, asks: bool) -> None:
        """Asking that tests keep passing is not asking for tests."""
        assert asks_for_tests(text, []) is asks


class TestConfig:
    def test_disabled(self) -> None:
        assert kinds(added("src/a.py", "# TODO\n"), config=VerifierConfig(enabled=False)) == []

    def test_ignore(self) -> None:
        diff = added("src/a.py", "# TODO\nraise NotImplementedError\n")
        assert kinds(diff, config=VerifierConfig(ignore=["todo"])) == ["stub"]

    def test_at_most_five_per_check(self) -> None:
        assert kinds(added("src/a.py", "# TODO\nx = 1\n" * 20)) == ["todo"] * 5

    def test_clean(self) -> None:
        """An ordinary change has nothing to say."""
        text = "def area(w: int, h: int) -> int:\n    # width times height\n    return w * h\n"
        assert found(added("src/geometry.py", text)) == []


class TestLineNumbers:
    def test_hunk_headers(self) -> None:
        text = (
            "diff --git a/x.py b/x.py\n--- a/x.py\n+++ b/x.py\n@@ -1,0 +2,2 @@\n+a\n+b\n@@ -9 +11 @@\n-c\n+d\n"
            "--- /dev/null\n+++ b/new.py\n@@ -0,0 +1 @@\n+e\n"
        )
        lines, numbers = parse_added(text)
        assert lines == (("x.py", "a"), ("x.py", "b"), ("x.py", "d"), ("new.py", "e"))
        assert numbers == (2, 3, 11, 1)
