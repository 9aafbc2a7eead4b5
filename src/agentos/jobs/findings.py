"""The stricter verifier: deterministic findings on the lines a PR adds, and on its scope.

Pure: :func:`scan` reads a :class:`~agentos.jobs.verify.PRDiff` (only its ADDED lines count) and the issue's
goal and success criteria. Every finding blocks, so the PR is held for an operator's approval
(``agentos ctl approve repo#N`` overrides; docs/pr-monitor.md). A test file is told from other files by its
path (:func:`~agentos.jobs.verify.is_test_path`)::

    stub            raise NotImplementedError, or a new function whose body is only pass / ... / return
                    (non-test code; Python's ast on each run of added lines, else the lines themselves)
    skip_marker     @pytest.mark.skip, pytest.skip(, @unittest.skip, it.skip( / describe.skip( / test.skip(, xit(
    todo            a new TODO / FIXME / XXX
    commented_code  three or more consecutive added comment lines that read as code
    mock            unittest.mock, MagicMock, jest.fn in non-test code
    small_diff      an issue with many success criteria and a diff too small to meet them
    tests_missing   the issue asks for tests and the PR changes no test file

Each check yields at most :data:`PER_CHECK` findings (the comment lists them; more say nothing new).
"""

from __future__ import annotations

import ast
import re
import textwrap
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import groupby

from agentos.config import StrictCheck, VerifierConfig
from agentos.jobs.verify import Finding, FindingCode, PRDiff, is_test_path

__all__ = ["AddedLine", "added_lines", "asks_for_tests", "scan"]

PER_CHECK = 5
COMMENT_RUN = 3
MAX_COMMENT_CHARS = 300

_SKIP = re.compile(
    r"@pytest\.mark\.skip\b(?!if)|\bpytest\.skip\(|@unittest\.skip\b(?!If|Unless)"
    r"|\b(?:it|describe|test)\.skip\(|(?<![\w.])x(?:it|describe|test)\("
)
_TODO = re.compile(r"\b(TODO|FIXME|XXX)\b")
_MOCK = re.compile(r"\bunittest\.mock\b|\bfrom unittest import mock\b|\bMagicMock\b|\bjest\.fn\b")
_NOT_IMPLEMENTED = re.compile(r"^\s*raise\s+NotImplementedError\b")
_ONE_LINE_STUB = re.compile(
    r"^\s*(?:async\s+)?def\s+\w+\s*\(.*\)\s*(?:->\s*[^:]+)?:\s*(?:pass|\.\.\.|return)\s*(?:#.*)?$"
)
_DEF = re.compile(r"^(\s*)(?:async\s+)?def\s+\w+\s*\(.*:\s*(?:#.*)?$")
_EMPTY_BODY = re.compile(r"^\s*(?:pass|\.\.\.|return)\s*(?:#.*)?$")
_HASH_COMMENT = re.compile(r"^\s*#(?!!)\s?(.*)$")
_SLASH_COMMENT = re.compile(r"^\s*//\s?(.*)$")
_C_LIKE_CODE = re.compile(
    r"[;{}]\s*$|^\s*(?:return|if|for|while|const|let|var|func|fn)\b.*[({=;]|\w\s*=\s*\S|\w\(.*\)\s*;?$"
)
_TEST_WORD = re.compile(r"(?i)\btest(?:s|ed|ing)?\b")
_PASSING = re.compile(r"(?i)\btests?\b[^.;]*\b(?:pass|passes|passing|green|still)\b")
_HASH_SUFFIXES = (".py", ".pyi", ".sh", ".rb", ".pl", ".r", ".yaml", ".yml", ".toml")
_SLASH_SUFFIXES = (".js", ".jsx", ".mjs", ".ts", ".tsx", ".go", ".rs", ".java", ".kt", ".c", ".cc", ".cpp", ".h")
_ABSTRACT = frozenset({"abstractmethod", "overload", "abc.abstractmethod", "typing.overload"})
_PROTOCOL_BASES = frozenset({"Protocol", "ABC", "typing.Protocol", "abc.ABC"})


@dataclass(frozen=True)
class AddedLine:
    path: str
    number: int  # in the new file; 0 when the diff did not say
    text: str


def added_lines(diff: PRDiff) -> list[AddedLine]:
    """The PR's added lines with their line numbers."""
    numbers = diff.added_at if len(diff.added_at) == len(diff.added_lines) else (0,) * len(diff.added_lines)
    return [AddedLine(path, n, text) for (path, text), n in zip(diff.added_lines, numbers, strict=True)]


def scan(diff: PRDiff, *, goal: str, criteria: Sequence[str], config: VerifierConfig) -> list[Finding]:
    """Every finding of the checks in the module docstring that ``config`` leaves on; none when disabled."""
    if not config.enabled:
        return []
    lines = added_lines(diff)
    checks: dict[StrictCheck, list[Finding]] = {
        "stub": _stubs(lines),
        "skip_marker": _matches(
            lines, _SKIP, ("skip", "xit(", "xdescribe(", "xtest("), "skip_marker", "adds a skip marker"
        ),
        "todo": _matches(lines, _TODO, ("TODO", "FIXME", "XXX"), "todo", "adds a {0}"),
        "commented_code": _commented_code(lines),
        "mock": _matches(
            lines, _MOCK, ("mock", "Mock", "jest.fn"), "mock", "uses a mock ({0}) outside the tests", code_only=True
        ),
        "small_diff": _small_diff(diff, criteria, config),
        "tests_missing": _tests_missing(diff, goal, criteria),
    }
    return [f for check, found in checks.items() if check not in config.ignore for f in found[:PER_CHECK]]


def asks_for_tests(goal: str, criteria: Sequence[str]) -> bool:
    """The goal or a criterion mentions tests, other than asking that the tests keep passing."""
    return any(_TEST_WORD.search(text) and not _PASSING.search(text) for text in [goal, *criteria])


def _code(path: str) -> bool:
    """Non-test code: what stubs and mocks are looked for in."""
    return not is_test_path(path)


def _shown(text: str, limit: int = 100) -> str:
    text = " ".join(text.split())
    return f"`{text[:limit]}{'…' if len(text) > limit else ''}`".replace("``", "`")


def _matches(
    lines: list[AddedLine],
    pattern: re.Pattern[str],
    hints: tuple[str, ...],
    code: FindingCode,
    what: str,
    *,
    code_only: bool = False,
) -> list[Finding]:
    """Lines ``pattern`` finds (only lines holding one of ``hints`` are searched: a minified file stays cheap)."""
    found = []
    for line in lines:
        if (code_only and not _code(line.path)) or not any(h in line.text for h in hints):
            continue
        if hit := pattern.search(line.text):
            detail = f"{what.format(hit.group(0))}: {_shown(line.text)}"
            found.append(Finding(code, detail, path=line.path, line=line.number))
    return found


def _runs(lines: list[AddedLine]) -> Iterator[list[AddedLine]]:
    """Consecutive added lines of one file (a gap in the line numbers ends a run)."""
    for _, of_file in groupby(lines, key=lambda line: line.path):
        run: list[AddedLine] = []
        for line in of_file:
            if run and line.number and run[-1].number and line.number != run[-1].number + 1:
                yield run
                run = []
            run.append(line)
        if run:
            yield run


def _stubs(lines: list[AddedLine]) -> list[Finding]:
    found: list[Finding] = []
    for run in _runs([line for line in lines if _code(line.path)]):
        for line in run:
            if _NOT_IMPLEMENTED.match(line.text):
                found.append(
                    Finding(
                        "stub", f"raises NotImplementedError: {_shown(line.text)}", path=line.path, line=line.number
                    )
                )
        if run[0].path.endswith(".py"):
            found += _empty_functions(run)
    return sorted(found, key=lambda f: (f.path, f.line))


def _empty_functions(run: list[AddedLine]) -> list[Finding]:
    """New functions whose body is only ``pass`` / ``...`` / ``return`` (a docstring aside): ast when the run
    parses on its own, else a ``def`` line followed by such a body line."""
    first = run[0]
    try:
        tree = ast.parse(textwrap.dedent("\n".join(line.text for line in run)))
    except SyntaxError:
        return _empty_functions_by_line(run)
    found = []
    for node, exempt in _functions(tree, exempt=False):
        if exempt or not _is_empty(node.body):
            continue
        line = first.number + node.lineno - 1 if first.number else 0
        detail = f"a new function `{node.name}` whose body does nothing (`{_body_word(node.body)}`)"
        found.append(Finding("stub", detail, path=first.path, line=line))
    return found


def _functions(node: ast.AST, *, exempt: bool) -> Iterator[tuple[ast.FunctionDef | ast.AsyncFunctionDef, bool]]:
    """Every function under ``node``; exempt: abstract, an overload, or in a Protocol / ABC class."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
            decorated = any(ast.unparse(d) in _ABSTRACT for d in child.decorator_list)
            yield child, exempt or decorated
            yield from _functions(child, exempt=exempt)
        elif isinstance(child, ast.ClassDef):
            protocol = any(ast.unparse(b) in _PROTOCOL_BASES for b in child.bases)
            yield from _functions(child, exempt=exempt or protocol)
        else:
            yield from _functions(child, exempt=exempt)


def _is_empty(body: list[ast.stmt]) -> bool:
    first = body[0] if body else None
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        if len(body) == 1:
            return True  # only a docstring
        body = body[1:]  # a docstring, then the stub
    if len(body) != 1:
        return False
    stmt = body[0]
    return (
        isinstance(stmt, ast.Pass)
        or (isinstance(stmt, ast.Return) and stmt.value is None)
        or (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and stmt.value.value is Ellipsis)
    )


def _body_word(body: list[ast.stmt]) -> str:
    last = body[-1]
    if isinstance(last, ast.Pass | ast.Return):
        return "pass" if isinstance(last, ast.Pass) else "return"
    docstring = (
        isinstance(last, ast.Expr) and isinstance(last.value, ast.Constant) and isinstance(last.value.value, str)
    )
    return "a docstring" if docstring else "..."


def _empty_functions_by_line(run: list[AddedLine]) -> list[Finding]:
    found = []
    for i, line in enumerate(run):
        one_line = _ONE_LINE_STUB.match(line.text)
        header = _DEF.match(line.text)
        body = run[i + 1].text if i + 1 < len(run) else ""
        after = run[i + 2].text if i + 2 < len(run) else ""
        ends = not after.strip() or (header is not None and _indent(after) <= len(header.group(1)))
        if one_line or (header and _EMPTY_BODY.match(body) and _indent(body) > len(header.group(1)) and ends):
            found.append(
                Finding(
                    "stub",
                    f"a new function whose body does nothing: {_shown(line.text)}",
                    path=line.path,
                    line=line.number,
                )
            )
    return found


def _indent(text: str) -> int:
    return len(text) - len(text.lstrip())


def _commented_code(lines: list[AddedLine]) -> list[Finding]:
    found = []
    for run in _runs(lines):
        streak: list[AddedLine] = []
        for line in [*run, None]:
            if line is not None and _comment_is_code(line):
                streak.append(line)
                continue
            if len(streak) >= COMMENT_RUN:
                first = streak[0]
                detail = f"{len(streak)} added comment lines that read as code, from {_shown(first.text)}"
                found.append(Finding("commented_code", detail, path=first.path, line=first.number))
            streak = []
    return found


def _comment_is_code(line: AddedLine) -> bool:
    if len(line.text) > MAX_COMMENT_CHARS:
        return False  # no one comments out a line this long by hand
    path = line.path.lower()
    if path.endswith(_HASH_SUFFIXES) and (m := _HASH_COMMENT.match(line.text)):
        text = m.group(1).strip()
        return _python_code(text) if path.endswith((".py", ".pyi")) else bool(text and _C_LIKE_CODE.search(text))
    if path.endswith(_SLASH_SUFFIXES) and (m := _SLASH_COMMENT.match(line.text)):
        text = m.group(1).strip()
        return bool(text and _C_LIKE_CODE.search(text))
    return False


def _python_code(text: str) -> bool:
    """A comment's text parses as a Python statement that is more than a word or a label (``Args: x``)."""
    if not text or _TODO.search(text):
        return False
    candidates = [text, text + " pass"] if text.endswith(":") else [text]
    for candidate in candidates:
        try:
            tree = ast.parse(candidate)
        except SyntaxError:
            continue
        if any(_code_like(stmt) for stmt in tree.body):
            return True
    return False


def _code_like(stmt: ast.stmt) -> bool:
    if isinstance(stmt, ast.Expr):
        return isinstance(stmt.value, ast.Call | ast.Await | ast.Subscript | ast.BinOp | ast.Compare)
    if isinstance(stmt, ast.AnnAssign):
        return stmt.value is not None
    return True


def _small_diff(diff: PRDiff, criteria: Sequence[str], config: VerifierConfig) -> list[Finding]:
    n = len(criteria)
    needed = n * config.min_diff_lines_per_criterion
    if n < config.scope_min_criteria or diff.lines >= needed or not diff.files:
        return []
    detail = (
        f"the issue has {n} success criteria but the PR changes only {diff.lines} lines (expected {needed} or more)"
    )
    return [Finding("small_diff", detail)]


def _tests_missing(diff: PRDiff, goal: str, criteria: Sequence[str]) -> list[Finding]:
    if not diff.files or not asks_for_tests(goal, criteria) or any(is_test_path(p) for p in diff.paths):
        return []
    return [Finding("tests_missing", "the issue asks for tests but the PR changes no test file")]
