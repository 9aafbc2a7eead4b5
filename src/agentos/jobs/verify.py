"""The work verifier: deterministic checks of a PR's diff before it may merge, and the PR's risk.

Pure: the PR monitor reads the diff (``git diff --numstat`` and the added lines of the merge-base diff)
and passes it in; nothing here does I/O. A *blocking* finding makes the PR high risk, and a high-risk
PR merges only after an operator approves it (``agentos ctl approve repo#N``, the Telegram button):

==================  ========  ===============================================================
finding             blocking  when
==================  ========  ===============================================================
``empty_diff``      yes       the PR changes nothing (against the merge base)
``protected_path``  yes       a changed path matches ``repos[].protected_paths``
``secret``          yes       an added line holds a configured secret or a token shape
``too_large``       yes       more than ``repos[].max_diff_lines`` lines added + deleted
``no_tests``        no        an implementation task changes source code but no test file
``llm_judge``       yes       the optional LLM judge (``repos[].llm_judge``) answered ``block``, or judged
                              one of the issue's acceptance criteria unmet (one finding per criterion)
==================  ========  ===============================================================

The **LLM judge** can only add a blocking finding, never remove one or approve a PR: its answer is
validated as a :class:`JudgeVerdict` (asked again once if it does not); no valid answer blocks nothing
(fail-open, logged; docs/pr-monitor.md explains why). When the issue lists criteria (``## Success criteria``
or ``## Acceptance criteria``), the prompt numbers them and the judge may give a :class:`CriterionVerdict` per
criterion; one judged unmet blocks, named on the PR. :func:`judge_prompt` and :func:`judge_findings` are
pure; the monitor asks the agent through :mod:`agentos.llm`, once per PR head commit.

Risk: ``high`` with any blocking finding; ``medium`` with a non-blocking one, a diff over a quarter of
``max_diff_lines`` or over 20 files, or a changed build/dependency manifest; else ``low``.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from agentos import logging as alog
from agentos.redact import Redactor, get_default, redact

__all__ = [
    "MAX_CRITERIA",
    "CriterionVerdict",
    "FileChange",
    "Finding",
    "JudgeVerdict",
    "PRDiff",
    "Risk",
    "assess_risk",
    "is_protected",
    "is_test_path",
    "judge_finding",
    "judge_findings",
    "judge_prompt",
    "parse_added",
    "parse_added_lines",
    "parse_numstat",
    "verify",
]

Risk = Literal["low", "medium", "high"]
FindingCode = Literal[
    "empty_diff",
    "protected_path",
    "secret",
    "too_large",
    "no_tests",
    "llm_judge",
    # the stricter checks of agentos.jobs.findings (repos[].verifier)
    "stub",
    "skip_marker",
    "todo",
    "commented_code",
    "mock",
    "small_diff",
    "tests_missing",
]
log = alog.get_logger("agentos.verify")
JUDGE_DIFF_CHARS = 12_000

MAX_SCANNED_LINES = 50_000
MANY_FILES = 20
CODE_SUFFIXES = frozenset(
    [
        ".py",
        ".pyi",
        ".js",
        ".jsx",
        ".mjs",
        ".ts",
        ".tsx",
        ".go",
        ".rs",
        ".java",
        ".kt",
        ".kts",
        ".rb",
        ".php",
        ".c",
        ".cc",
        ".cpp",
        ".h",
        ".hpp",
        ".cs",
        ".swift",
        ".scala",
        ".m",
        ".sh",
        ".lua",
        ".ex",
        ".exs",
        ".erl",
        ".clj",
        ".dart",
        ".vue",
        ".svelte",
    ]
)
MANIFESTS = frozenset(
    [
        "pyproject.toml",
        "setup.py",
        "setup.cfg",
        "package.json",
        "go.mod",
        "go.sum",
        "cargo.toml",
        "gemfile",
        "dockerfile",
        "makefile",
        "pom.xml",
        "build.gradle",
        "build.gradle.kts",
    ]
)
_TEST_PATH = re.compile(
    r"(?:^|/)(?:tests?|spec|specs|__tests__|testing)/"  # a test directory
    r"|(?:^|/)test_[^/]+$|_test\.[a-z]+$|\.(?:test|spec)\.[a-z]+$|(?:^|/)[^/]*Tests?\.[a-z]+$"
)


@dataclass(frozen=True)
class FileChange:
    path: str
    added: int
    deleted: int
    binary: bool = False


@dataclass(frozen=True)
class PRDiff:
    """What a PR changes against its merge base: files with line counts, and the added lines."""

    files: tuple[FileChange, ...]
    added_lines: tuple[tuple[str, str], ...] = ()  # (path, line), at most MAX_SCANNED_LINES
    added_at: tuple[int, ...] = ()  # the new file's line number of each added line (parallel; may be absent)

    @property
    def lines(self) -> int:
        return sum(f.added + f.deleted for f in self.files)

    @property
    def paths(self) -> list[str]:
        return [f.path for f in self.files]


@dataclass(frozen=True)
class Finding:
    code: FindingCode
    detail: str
    blocking: bool = True
    path: str = ""  # the file and line it is about, when it is about one
    line: int = 0

    @property
    def where(self) -> str:
        """``path:line`` (or ``path``, or nothing) for a comment."""
        return f"{self.path}:{self.line}" if self.path and self.line else self.path


def is_protected(path: str, patterns: Iterable[str]) -> str | None:
    """The pattern ``path`` matches, if any: ``dir/`` is a prefix, anything else a glob on the path or its name."""
    name = path.rsplit("/", 1)[-1]
    for pattern in patterns:
        if not pattern:
            continue
        if pattern.endswith("/"):
            if path.startswith(pattern) or f"/{pattern}" in f"/{path}":
                return pattern
        elif fnmatch.fnmatchcase(path, pattern) or fnmatch.fnmatchcase(name, pattern):
            return pattern
    return None


def is_test_path(path: str) -> bool:
    return bool(_TEST_PATH.search(path))


def _is_code(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return "." in name and name[name.rindex(".") :].lower() in CODE_SUFFIXES


def verify(
    diff: PRDiff,
    *,
    task_type: str,
    protected_paths: Sequence[str],
    max_diff_lines: int,
    redactor: Redactor | None = None,
) -> list[Finding]:
    """Every finding of the checks in the module docstring, blocking ones first."""
    found: list[Finding] = []
    if not diff.files:
        found.append(Finding("empty_diff", "the PR changes nothing against its base"))
    hits = [(f.path, pattern) for f in diff.files if (pattern := is_protected(f.path, protected_paths))]
    if hits:
        shown = ", ".join(f"`{path}` (matches `{pattern}`)" for path, pattern in hits[:10])
        found.append(Finding("protected_path", f"it changes protected paths: {shown}"))
    scanner = redactor or get_default()
    leaks = sorted({path for path, line in diff.added_lines if scanner.spans(line)})
    if leaks:
        shown = ", ".join(f"`{path}`" for path in leaks[:10])
        found.append(Finding("secret", f"added lines look like secrets (tokens, keys) in {shown}"))
    if diff.lines > max_diff_lines:
        found.append(Finding("too_large", f"{diff.lines} lines changed, over the limit of {max_diff_lines}"))
    if task_type == "implementation":
        code = [p for p in diff.paths if _is_code(p) and not is_test_path(p)]
        if code and not any(is_test_path(p) for p in diff.paths):
            shown = ", ".join(f"`{p}`" for p in code[:5])
            found.append(Finding("no_tests", f"it changes code ({shown}) but adds or changes no test", blocking=False))
    return found


def assess_risk(diff: PRDiff, findings: Sequence[Finding], *, max_diff_lines: int) -> Risk:
    """``low``, ``medium`` or ``high`` (see the module docstring)."""
    if any(f.blocking for f in findings):
        return "high"
    manifests = any(p.rsplit("/", 1)[-1].lower() in MANIFESTS or p.endswith(".lock") for p in diff.paths)
    if findings or manifests or diff.lines > max_diff_lines // 4 or len(diff.files) > MANY_FILES:
        return "medium"
    return "low"


class CriterionVerdict(BaseModel):
    """The judge's verdict on one acceptance criterion of the issue, by its number in the prompt."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    criterion: int = Field(ge=1)
    met: bool
    reason: str = ""


class JudgeVerdict(BaseModel):
    """The LLM judge's answer: ``block`` with reasons, or ``ok`` (which approves nothing); per criterion of the
    issue, optionally, whether the change meets it (an unmet one blocks, a met one approves nothing)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    verdict: Literal["ok", "block"]
    reasons: list[str] = Field(default_factory=list, max_length=10)
    criteria: list[CriterionVerdict] = Field(default_factory=list, max_length=50)


MAX_CRITERIA = 20
"""Criteria numbered in the judge's prompt (an issue with more has the rest judged as a whole)."""


def judge_prompt(title: str, task_type: str, diff: PRDiff, criteria: Sequence[str] = ()) -> str:
    """The judge's question: the task, its acceptance criteria (numbered), the changed files and the added
    lines (cut to 12,000 characters)."""
    files = "\n".join(f"- {f.path} (+{f.added} -{f.deleted})" for f in diff.files[:200])
    added = "\n".join(f"{path}: {line}" for path, line in diff.added_lines)
    if len(added) > JUDGE_DIFF_CHARS:
        added = added[:JUDGE_DIFF_CHARS] + "\n… (cut)"
    listed = "\n".join(f"{n}. {c[:500]}" for n, c in enumerate(criteria[:MAX_CRITERIA], 1))
    asked = f"\n\nAcceptance criteria of the issue:\n{listed}" if listed else ""
    answer = '{"verdict": "ok" | "block", "reasons": ["..."]'
    if listed:
        answer += ', "criteria": [{"criterion": 1, "met": true | false, "reason": "..."}, ...]'
    return (
        "You review a pull request written by a coding agent before it is merged automatically. Its tests "
        "pass. Block it only for a concrete problem: it does not do what the task asks, it deletes or weakens "
        "tests, it adds something dangerous (credentials, disabled security checks, destructive commands), "
        "or it changes unrelated code. Otherwise answer ok."
        + (" Say for each acceptance criterion, by its number, whether the change meets it." if listed else "")
        + f"\n\nTask ({task_type}): {title}{asked}\n\nChanged files:\n{files or '(none)'}\n\n"
        f"Added lines:\n{added or '(none)'}\n\nAnswer as {answer}}}."
    )


def judge_finding(verdict: JudgeVerdict | None, agent: str) -> Finding | None:
    """A blocking ``llm_judge`` finding when the judge said ``block``; None for ``ok`` or no (valid) answer.

    :meth:`agentos.llm.Llm.ask` has already validated the answer (retrying once) and logged a bad one.
    """
    if verdict is None:
        log.warning("llm_judge_no_answer", agent=agent, effect="not blocking")
        return None
    if verdict.verdict == "ok":
        return None
    reasons = "; ".join(redact(r)[:300] for r in verdict.reasons if r) or "no reason given"
    return Finding("llm_judge", f"the LLM judge ({agent}) blocks it: {reasons}")


def judge_findings(verdict: JudgeVerdict | None, agent: str, criteria: Sequence[str] = ()) -> list[Finding]:
    """The judge's blocking findings: its ``block`` (:func:`judge_finding`), then one per criterion it judged
    unmet, naming the criterion. A verdict on a number the prompt did not list is ignored (logged)."""
    found = judge_finding(verdict, agent)
    findings = [found] if found is not None else []
    if verdict is None:
        return findings
    listed = criteria[:MAX_CRITERIA]
    for c in verdict.criteria:
        if c.criterion > len(listed):
            log.warning("llm_judge_unknown_criterion", agent=agent, criterion=c.criterion, listed=len(listed))
            continue
        if not c.met:
            why = redact(c.reason)[:300] or "no reason given"
            text = redact(listed[c.criterion - 1])[:300]
            findings.append(
                Finding("llm_judge", f"the LLM judge ({agent}) finds criterion {c.criterion} unmet: “{text}”: {why}")
            )
    return findings


def parse_numstat(text: str) -> tuple[FileChange, ...]:
    """Files of ``git diff --numstat -z --no-renames`` (``-`` counts are a binary file)."""
    changes = []
    for record in text.split("\0"):
        parts = record.split("\t", 2)
        if len(parts) != 3 or not parts[2]:
            continue
        added, deleted, path = parts
        binary = added == "-" or deleted == "-"
        changes.append(FileChange(path.strip("\n"), 0 if binary else int(added), 0 if binary else int(deleted), binary))
    return tuple(changes)


_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,\d+)? @@")


def parse_added_lines(text: str, limit: int = MAX_SCANNED_LINES) -> tuple[tuple[str, str], ...]:
    """``(path, line)`` of every added line of a unified diff (``git diff -U0``), up to ``limit``."""
    return parse_added(text, limit)[0]


def parse_added(text: str, limit: int = MAX_SCANNED_LINES) -> tuple[tuple[tuple[str, str], ...], tuple[int, ...]]:
    """``(path, line)`` of every added line of a unified diff, up to ``limit``, and each one's line number in
    the new file (from the hunk headers; 0 when a hunk header is missing)."""
    out: list[tuple[str, str]] = []
    numbers: list[int] = []
    path = ""
    previous = ""
    at = 0
    for line in text.splitlines():
        if line.startswith("+++ ") and previous.startswith("--- "):  # a file header, not an added "++ …"
            target = line[4:].strip('"')
            path = target[2:] if target.startswith("b/") else target
            at = 0
        elif line.startswith("@@") and (hunk := _HUNK.match(line)):
            at = int(hunk.group(1))
        elif line.startswith("+") and path and path != "/dev/null":
            out.append((path, line[1:]))
            numbers.append(at)
            at += 1 if at else 0
            if len(out) >= limit:
                break
        elif line.startswith(" ") and at:  # a context line (with -U1 or more)
            at += 1
        previous = line
    return tuple(out), tuple(numbers)
