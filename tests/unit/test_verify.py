"""The work verifier and PR risk: pure functions of a PR's diff."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from agentos.config import DEFAULT_PROTECTED_PATHS
from agentos.jobs.verify import (
    FileChange,
    JudgeVerdict,
    PRDiff,
    assess_risk,
    is_protected,
    is_test_path,
    judge_finding,
    judge_findings,
    judge_prompt,
    parse_added_lines,
    parse_numstat,
    verify,
)
from agentos.redact import Redactor

TOKEN = "ghp_" + "a1B2c3D4" * 5


def diff(*files: tuple[str, int], added: tuple[tuple[str, str], ...] = ()) -> PRDiff:
    return PRDiff(tuple(FileChange(path, n, 0) for path, n in files), added)


def codes(d: PRDiff, task_type: str = "implementation", max_lines: int = 2000) -> list[str]:
    found = verify(d, task_type=task_type, protected_paths=DEFAULT_PROTECTED_PATHS, max_diff_lines=max_lines)
    return [f.code for f in found]


class TestPaths:
    @pytest.mark.parametrize(
        ("path", "expected"),
        [
            pytest.param(".github/workflows/ci.yml", ".github/workflows/", id="workflow"),
            pytest.param("sub/.github/workflows/x.yml", ".github/workflows/", id="nested-dir"),
            pytest.param("config/.env", ".env", id="dotenv-by-name"),
            pytest.param("certs/server.pem", "*.pem", id="glob-on-name"),
            pytest.param("secrets.yaml", "secrets.*", id="secrets-file"),
            pytest.param("src/app.py", None, id="ordinary"),
            pytest.param(".github/CODEOWNERS", None, id="other-github-file"),
        ],
    )
    def test_protected(self, path: str, expected: str | None) -> None:
        """A `dir/` pattern protects everything under that directory; other patterns glob the path or name."""
        assert is_protected(path, DEFAULT_PROTECTED_PATHS) == expected

    @pytest.mark.parametrize(
        ("path", "expected"),
        [
            ("tests/test_app.py", True),
            ("test_app.py", True),
            ("pkg/app_test.go", True),
            ("web/app.spec.ts", True),
            ("src/__tests__/a.js", True),
            ("src/FooTest.java", True),
            ("src/app.py", False),
            ("latest.py", False),
        ],
    )
    def test_test_paths(self, path: str, expected: bool) -> None:
        """Test files are recognised by the usual directory and file-name conventions."""
        assert is_test_path(path) is expected


class TestVerify:
    def test_a_small_tested_change_has_no_finding(self) -> None:
        """Code with a test, under the size limit, touching nothing protected: no finding, low risk."""
        d = diff(("src/app.py", 10), ("tests/test_app.py", 12))
        assert codes(d) == []
        assert assess_risk(d, [], max_diff_lines=2000) == "low"

    def test_protected_path_blocks_with_the_path_named(self) -> None:
        """A change under .github/workflows/ is a blocking finding that names the path and the pattern."""
        d = diff((".github/workflows/ci.yml", 3), ("tests/test_a.py", 1))
        [finding] = verify(d, task_type="docs", protected_paths=DEFAULT_PROTECTED_PATHS, max_diff_lines=2000)
        assert finding.code == "protected_path" and finding.blocking
        assert "`.github/workflows/ci.yml` (matches `.github/workflows/`)" in finding.detail
        assert assess_risk(d, [finding], max_diff_lines=2000) == "high"

    def test_secret_in_an_added_line_blocks_without_quoting_it(self) -> None:
        """A token shape (or a configured secret) in an added line blocks; the finding names the file only."""
        d = diff(("src/conf.py", 1), ("tests/t_test.py", 1), added=(("src/conf.py", f"TOKEN = '{TOKEN}'"),))
        found = verify(d, task_type="implementation", protected_paths=(), max_diff_lines=2000)
        assert [f.code for f in found] == ["secret"]
        assert TOKEN not in found[0].detail and "`src/conf.py`" in found[0].detail
        configured = Redactor(["hunter2-very-secret"])
        d2 = diff(("a.txt", 1), added=(("a.txt", "pw=hunter2-very-secret"),))
        assert [
            f.code for f in verify(d2, task_type="docs", protected_paths=(), max_diff_lines=9, redactor=configured)
        ] == ["secret"]

    def test_size_limit_and_empty_diff(self) -> None:
        """Over max_diff_lines blocks; so does a PR that changes nothing."""
        assert codes(diff(("README.md", 2001)), task_type="docs") == ["too_large"]
        assert codes(PRDiff(())) == ["empty_diff"]

    def test_implementation_without_tests_is_a_note(self) -> None:
        """Code changed by an implementation task with no test change is medium risk, not a block."""
        d = diff(("src/app.py", 5))
        [finding] = verify(d, task_type="implementation", protected_paths=(), max_diff_lines=2000)
        assert (finding.code, finding.blocking) == ("no_tests", False)
        assert assess_risk(d, [finding], max_diff_lines=2000) == "medium"
        assert codes(d, task_type="docs") == []
        assert codes(diff(("notes.txt", 5), ("CODEBASE.md", 4))) == [], "no code changed: no test needed"

    @pytest.mark.parametrize(
        ("files", "risk"),
        [
            pytest.param((("a.txt", 10),), "low", id="small"),
            pytest.param((("a.txt", 501),), "medium", id="over-a-quarter-of-the-limit"),
            pytest.param(tuple((f"f{i}.txt", 1) for i in range(21)), "medium", id="many-files"),
            pytest.param((("pyproject.toml", 1),), "medium", id="manifest"),
            pytest.param((("web/package-lock.lock", 1),), "medium", id="lock-file"),
        ],
    )
    def test_risk(self, files: tuple[tuple[str, int], ...], risk: str) -> None:
        """Size, file count and dependency manifests raise risk to medium."""
        assert assess_risk(diff(*files), [], max_diff_lines=2000) == risk


class TestParsing:
    def test_numstat(self) -> None:
        """`git diff --numstat -z` records: counts per file, `-` for binary files."""
        text = "3\t1\tsrc/a.py\x00-\t-\timg.png\x0010\t0\tdir with space/b.txt\x00"
        assert parse_numstat(text) == (
            FileChange("src/a.py", 3, 1),
            FileChange("img.png", 0, 0, binary=True),
            FileChange("dir with space/b.txt", 10, 0),
        )

    def test_added_lines(self) -> None:
        """Added lines are attributed to their file; an added line starting with `++ ` is not a header."""
        text = (
            "diff --git a/x.py b/x.py\n--- a/x.py\n+++ b/x.py\n@@ -1 +1,2 @@\n-old\n+new\n+++ tricky\n"
            "diff --git a/gone.txt b/gone.txt\n--- a/gone.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-bye\n"
        )
        assert parse_added_lines(text) == (("x.py", "new"), ("x.py", "++ tricky"))


class TestJudge:
    @pytest.mark.parametrize(
        ("answer", "blocks"),
        [
            pytest.param({"verdict": "block", "reasons": ["deletes tests"]}, True, id="block"),
            pytest.param({"verdict": "ok", "reasons": ["fine"]}, False, id="ok"),
            pytest.param({"verdict": "approve"}, False, id="unknown-verdict"),
            pytest.param({"reasons": ["no verdict"]}, False, id="missing-verdict"),
            pytest.param({"verdict": "block", "reasons": "not a list"}, False, id="bad-reasons"),
            pytest.param(None, False, id="no-answer"),
        ],
    )
    def test_only_a_valid_block_verdict_is_a_finding(self, answer: dict[str, object] | None, blocks: bool) -> None:
        """The judge can only add a blocking finding; anything but a valid ``block`` adds nothing (fail-open)."""
        try:
            verdict = None if answer is None else JudgeVerdict.model_validate(answer)
        except ValidationError:
            verdict = None  # what Llm.ask gives when the judge answers this twice
        found = judge_finding(verdict, "judge")
        assert (found is not None) is blocks
        if found is not None:
            assert (found.code, found.blocking) == ("llm_judge", True)
            assert found.detail == "the LLM judge (judge) blocks it: deletes tests"

    def test_reasons_are_redacted_and_the_prompt_is_bounded(self) -> None:
        """A token in the judge's reasons never reaches the PR; a huge diff is cut in the prompt."""
        found = judge_finding(JudgeVerdict(verdict="block", reasons=[f"leaks {TOKEN}"]), "judge")
        assert found is not None and TOKEN not in found.detail
        big = diff(("a.py", 100_000), added=tuple(("a.py", "x = 1" * 20) for _ in range(5000)))
        prompt = judge_prompt("Add a flag", "implementation", big)
        assert "Task (implementation): Add a flag" in prompt and "- a.py (+100000 -0)" in prompt
        assert "… (cut)" in prompt and len(prompt) < 14_000

    @pytest.mark.parametrize(
        ("criteria", "unmet"),
        [
            pytest.param([{"criterion": 1, "met": True}], [], id="met"),
            pytest.param([{"criterion": 2, "met": False, "reason": "no"}], [2], id="one-unmet"),
            pytest.param([{"criterion": 3, "met": False}], [], id="unknown-number-ignored"),
            pytest.param([], [], id="no-criteria-answer"),
        ],
    )
    def test_a_criterion_judged_unmet_is_a_blocking_finding(
        self, criteria: list[dict[str, object]], unmet: list[int]
    ) -> None:
        """Per listed criterion the judge said unmet, one blocking llm_judge finding naming it; a number the
        prompt did not list is ignored."""
        verdict = JudgeVerdict.model_validate({"verdict": "ok", "criteria": criteria})
        found = judge_findings(verdict, "judge", ["it adds", "it subtracts"])
        assert [f.detail.split("criterion ")[1][0] for f in found] == [str(n) for n in unmet]
        assert all(f.blocking and f.code == "llm_judge" for f in found)

    def test_a_bad_criteria_answer_is_no_verdict(self) -> None:
        """A criterion verdict that does not validate (no ``met``) fails the whole answer: fail-open."""
        with pytest.raises(ValidationError):
            JudgeVerdict.model_validate({"verdict": "ok", "criteria": [{"criterion": 1}]})
        assert judge_findings(None, "judge", ["it adds"]) == []

    def test_the_prompt_numbers_the_criteria_only_when_there_are_some(self) -> None:
        d = diff(("a.py", 1))
        assert "Acceptance criteria" not in judge_prompt("Add", "implementation", d)
        prompt = judge_prompt("Add", "implementation", d, ["it adds", "it subtracts"])
        assert "Acceptance criteria of the issue:\n1. it adds\n2. it subtracts" in prompt
