"""Specification of ``.agent_result.md`` parsing (DESIGN §6)."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from pydantic import ValidationError

from agentos.agents.contract import (
    AGENT_BLOCKER_CODES,
    BLOCKER_CODES,
    CONTRACT_TEMPLATE,
    FIELD_NAMES,
    PERMANENT_CODES,
    ContractError,
    ResultContract,
    field_at,
    parse_contract,
    read_contract,
    render_contract,
)
from agentos.errors import AgentosError

FULL = """\
STATUS: partial
BLOCKER_CODE: test_failure
SUMMARY: Added the parser.
DONE: parser, tests
BLOCKERS: one flaky test
NEXT_STEP: fix the flaky test
FILES_CHANGED: src/a.py
TESTS_RUN: pytest -q (1 failed)
DECISIONS: kept it pure
RISKS: none known
ATTEMPTED_APPROACHES: regex first, then a line scanner
MANUAL_STEPS: none
"""


class TestBlockerCodes:
    def test_codes_are_the_documented_set(self) -> None:
        """BLOCKER_CODES is the agent's codes from DESIGN §6 plus the three agentos assigns."""
        assert frozenset({
            "none", "missing_context", "missing_credentials", "environment_failure", "dependency_blocked",
            "quota_limited", "runner_failure", "timeout", "test_failure", "manual_intervention_required",
            "fallback_exhausted", "invalid_result_contract", "no_diff_produced", "prompt_too_large",
            "resource_limit",
        }) == BLOCKER_CODES  # fmt: skip

    def test_permanent_codes(self) -> None:
        """Only manual intervention and an oversized prompt are permanent."""
        assert {"manual_intervention_required", "prompt_too_large"} == PERMANENT_CODES
        assert PERMANENT_CODES <= BLOCKER_CODES


class TestFieldAt:
    @pytest.mark.parametrize(
        ("line", "expected"),
        [
            pytest.param("STATUS: complete", ("STATUS", " complete"), id="plain"),
            pytest.param("status: complete", ("STATUS", " complete"), id="lower-case"),
            pytest.param("Next_Step:x", ("NEXT_STEP", "x"), id="mixed-case-no-space"),
            pytest.param("- SUMMARY: s", ("SUMMARY", " s"), id="bullet"),
            pytest.param("* SUMMARY: s", ("SUMMARY", " s"), id="star-bullet"),
            pytest.param("## SUMMARY: s", ("SUMMARY", " s"), id="heading"),
            pytest.param("**SUMMARY:** s", ("SUMMARY", " s"), id="bold-with-colon"),
            pytest.param("**SUMMARY**: s", ("SUMMARY", " s"), id="bold-before-colon"),
            pytest.param("- **RISKS**: r", ("RISKS", " r"), id="bullet-and-bold"),
            pytest.param("BLOCKERS: b", ("BLOCKERS", " b"), id="blockers-is-not-blocker-code"),
            pytest.param("DONE :", ("DONE", ""), id="space-before-colon"),
            pytest.param("  STATUS: complete", None, id="indented"),
            pytest.param("> STATUS: complete", None, id="quoted"),
            pytest.param("STATUS complete", None, id="no-colon"),
            pytest.param("STATUSES: x", None, id="longer-word"),
            pytest.param("The STATUS: x", None, id="not-at-start"),
            pytest.param("ſTATUS: complete", None, id="non-ascii-case-fold"),
        ],
    )
    def test_field_start(self, line: str, expected: tuple[str, str] | None) -> None:
        """A field starts only at column 0, with tolerated markdown decoration, on a known name and a colon."""
        assert field_at(line) == expected


class TestParseContract:
    def test_full_file(self) -> None:
        """Every field is read into its attribute, stripped."""
        contract = parse_contract(FULL)
        assert contract == ResultContract(
            status="partial",
            blocker_code="test_failure",
            summary="Added the parser.",
            done="parser, tests",
            blockers="one flaky test",
            next_step="fix the flaky test",
            files_changed="src/a.py",
            tests_run="pytest -q (1 failed)",
            decisions="kept it pure",
            risks="none known",
            attempted_approaches="regex first, then a line scanner",
            manual_steps="none",
        )

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            pytest.param("STATUS: complete", {"blocker_code": "none"}, id="complete-without-code-is-none"),
            pytest.param("STATUS: Complete.", {"status": "complete"}, id="status-case-and-period"),
            pytest.param("STATUS: `blocked`\nBLOCKER_CODE: **timeout**", {"blocker_code": "timeout"}, id="decorated"),
            pytest.param(
                "SUMMARY: s\nSTATUS: complete\nDONE: d", {"summary": "s", "done": "d"}, id="any-order-no-swallowing"
            ),
            pytest.param(
                "STATUS: complete\nSUMMARY: first\n\n  - second\nthird\n\nDONE: d",
                {"summary": "first\n\n  - second\nthird", "done": "d"},
                id="multi-line-value",
            ),
            pytest.param(
                "STATUS: complete\nSUMMARY:\n  STATUS: quoted in an indented line",
                {"summary": "STATUS: quoted in an indented line"},
                id="indented-field-name-stays-in-value",
            ),
            pytest.param(
                "# Result\n\nSome preamble.\n\nSTATUS: complete\nSUMMARY: s", {"summary": "s"}, id="preamble-ignored"
            ),
            pytest.param(
                "- **Status:** blocked\n- **Blocker_code:** missing_credentials\n- **Summary:** no token",
                {"status": "blocked", "blocker_code": "missing_credentials", "summary": "no token"},
                id="markdown-list-and-bold",
            ),
            pytest.param("```markdown\nSTATUS: complete\nSUMMARY: s\n```\n", {"summary": "s"}, id="whole-file-fenced"),
            pytest.param("STATUS: complete\r\nSUMMARY: a\r\nb\r\n", {"summary": "a\nb"}, id="crlf"),
            pytest.param(
                "STATUS: complete\nBLOCKER_CODE: no_diff_produced",
                {"blocker_code": "no_diff_produced"},
                id="agentos-code",
            ),
            pytest.param("STATUS: complete\nBLOCKER_CODE:", {"blocker_code": "none"}, id="empty-code-on-complete"),
        ],
    )
    def test_valid(self, text: str, expected: dict[str, str]) -> None:
        """Tolerated variations parse to the expected values."""
        contract = parse_contract(text)
        for attribute, value in expected.items():
            assert getattr(contract, attribute) == value

    def test_permanent_flag(self) -> None:
        """A manual-intervention result is permanent; a timeout is not."""
        manual = parse_contract("STATUS: blocked\nBLOCKER_CODE: manual_intervention_required")
        timeout = parse_contract("STATUS: blocked\nBLOCKER_CODE: timeout")
        assert manual.is_permanent
        assert not timeout.is_permanent


class TestParseErrors:
    @pytest.mark.parametrize(
        ("text", "message"),
        [
            pytest.param(
                "STATUS: blocked\nSUMMARY: s\nBLOCKER_CODE: oops",
                ".agent_result.md: line 3: unknown BLOCKER_CODE 'oops'",
                id="unknown-code",
            ),
            pytest.param("", ".agent_result.md: no STATUS field", id="empty"),
            pytest.param("SUMMARY: s\nDONE: d", ".agent_result.md: no STATUS field", id="missing-status"),
            pytest.param(
                "STATUS: complete\nSUMMARY: a\nsummary: b",
                ".agent_result.md: line 3: duplicate field SUMMARY (first on line 2)",
                id="duplicate",
            ),
            pytest.param(
                "STATUS: done",
                ".agent_result.md: line 1: STATUS must be complete, partial or blocked, not 'done'",
                id="unknown-status",
            ),
            pytest.param(
                "STATUS: complete\n\nmore words\nSUMMARY: s",
                ".agent_result.md: line 1: STATUS must be complete, partial or blocked, not 'complete\\n\\nmore words'",
                id="multi-line-status",
            ),
            pytest.param(
                "STATUS: partial",
                ".agent_result.md: line 1: STATUS partial needs a BLOCKER_CODE other than none",
                id="partial-without-code",
            ),
            pytest.param(
                "STATUS: blocked\nBLOCKER_CODE: none",
                ".agent_result.md: line 2: STATUS blocked needs a BLOCKER_CODE other than none",
                id="blocked-with-none",
            ),
            pytest.param(
                "STATUS: <complete|partial|blocked>\nBLOCKER_CODE: none",
                ".agent_result.md: line 1: STATUS is a template placeholder '<complete|partial|blocked>'",
                id="echoed-status-placeholder",
            ),
            pytest.param(
                "STATUS: complete\nSUMMARY: <what you did, in a few sentences>",
                ".agent_result.md: line 2: SUMMARY is a template placeholder '<what you did, in a few sentences>'",
                id="echoed-summary-placeholder",
            ),
        ],
    )
    def test_invalid(self, text: str, message: str) -> None:
        """A broken file raises ContractError with a one-line message naming the problem and line."""
        with pytest.raises(ContractError) as caught:
            parse_contract(text)
        assert str(caught.value) == message
        assert "\n" not in str(caught.value)

    def test_echoed_template(self) -> None:
        """The template shown to agents, echoed back verbatim, is rejected."""
        with pytest.raises(ContractError, match="template placeholder"):
            parse_contract(CONTRACT_TEMPLATE)

    def test_long_value_is_shortened_in_message(self) -> None:
        """An error message quotes at most a short prefix of a long value."""
        with pytest.raises(ContractError) as caught:
            parse_contract("STATUS: " + "x" * 5000)
        assert len(str(caught.value)) < 200

    def test_error_is_agentos_error_with_code_and_line(self) -> None:
        """ContractError belongs to the agentos tree, carries its blocker code and the line number."""
        with pytest.raises(AgentosError) as caught:
            parse_contract("STATUS: complete\nBLOCKER_CODE: nope")
        assert isinstance(caught.value, ContractError)
        assert caught.value.blocker_code == "invalid_result_contract"
        assert caught.value.line == 2


class TestResultContract:
    def test_frozen(self) -> None:
        """A parsed contract cannot be changed."""
        contract = parse_contract("STATUS: complete")
        with pytest.raises(ValidationError):
            contract.status = "blocked"  # type: ignore[misc]

    def test_unknown_code_rejected(self) -> None:
        """The model itself refuses an unknown blocker code."""
        with pytest.raises(ValidationError):
            ResultContract(status="blocked", blocker_code="oops")

    def test_code_required_unless_complete(self) -> None:
        """The model itself refuses a partial result without a blocker code."""
        with pytest.raises(ValidationError):
            ResultContract(status="partial")


class TestTemplate:
    def test_lists_fields_and_codes(self) -> None:
        """The template names every field and every code an agent may write."""
        for name in FIELD_NAMES:
            assert f"\n{name}: <" in CONTRACT_TEMPLATE
        for code in AGENT_BLOCKER_CODES:
            assert code in CONTRACT_TEMPLATE
        assert "complete|partial|blocked" in CONTRACT_TEMPLATE

    def test_prose_lines_start_no_field(self) -> None:
        """Only the field lines of the template start a field; its prose does not."""
        starts = [line for line in CONTRACT_TEMPLATE.splitlines() if field_at(line)]
        assert [field_at(line)[0] for line in starts] == list(FIELD_NAMES)  # type: ignore[index]


class TestReadContract:
    def test_reads_file(self, tmp_path: Path) -> None:
        """A valid UTF-8 file is parsed."""
        path = tmp_path / ".agent_result.md"
        path.write_text("STATUS: complete\nSUMMARY: héllo\n", encoding="utf-8")
        assert read_contract(path).summary == "héllo"

    def test_missing(self, tmp_path: Path) -> None:
        """A missing file is a ContractError."""
        with pytest.raises(ContractError, match=r"^\.agent_result\.md: missing"):
            read_contract(tmp_path / ".agent_result.md")

    def test_oversize(self, tmp_path: Path) -> None:
        """A file over max_bytes is a ContractError; one exactly at the limit is read."""
        path = tmp_path / ".agent_result.md"
        text = "STATUS: complete\nSUMMARY: " + "x" * 100
        path.write_text(text, encoding="utf-8")
        assert read_contract(path, max_bytes=len(text)).status == "complete"
        with pytest.raises(ContractError, match="too large"):
            read_contract(path, max_bytes=len(text) - 1)

    def test_not_utf8(self, tmp_path: Path) -> None:
        """Bytes that are not UTF-8 are a ContractError."""
        path = tmp_path / ".agent_result.md"
        path.write_bytes(b"STATUS: complete\nSUMMARY: \xff\xfe\n")
        with pytest.raises(ContractError, match="not UTF-8"):
            read_contract(path)

    def test_symlink_refused(self, tmp_path: Path) -> None:
        """A symlink is refused, so a repository cannot point the file at a secret."""
        target = tmp_path / "secret"
        target.write_text("STATUS: complete\nMANUAL_STEPS: token\n", encoding="utf-8")
        link = tmp_path / ".agent_result.md"
        link.symlink_to(target)
        with pytest.raises(ContractError):
            read_contract(link)

    def test_directory_refused(self, tmp_path: Path) -> None:
        """A directory in place of the file is a ContractError."""
        (tmp_path / ".agent_result.md").mkdir()
        with pytest.raises(ContractError):
            read_contract(tmp_path / ".agent_result.md")

    @pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
    def test_fifo_refused_without_blocking(self, tmp_path: Path) -> None:
        """A FIFO is refused at once instead of blocking the reader."""
        path = tmp_path / ".agent_result.md"
        os.mkfifo(path)
        with pytest.raises(ContractError, match="not a regular file"):
            read_contract(path)

    def test_contract_errors_pass_through(self, tmp_path: Path) -> None:
        """A readable file that breaks the contract raises the parser's error."""
        path = tmp_path / ".agent_result.md"
        path.write_text("STATUS: maybe\n", encoding="utf-8")
        with pytest.raises(ContractError, match="STATUS must be"):
            read_contract(path)


# --- properties -------------------------------------------------------------------------------------

_TRICKY_LINES = [
    "",
    "  STATUS: indented is not a field",
    "> DONE: quoted is not a field",
    "status report",
    "Note: not a field name",
    "- a bullet",
    "**bold** text",
    "```",
    "<div>html</div>",
    "BLOCKERS are listed below",
]
_LINE = st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=40)
_VALUE = st.lists(st.one_of(_LINE, st.sampled_from(_TRICKY_LINES)), max_size=6).map("\n".join).map(str.strip)


@st.composite
def _contracts(draw: st.DrawFn) -> ResultContract:
    status = draw(st.sampled_from(["complete", "partial", "blocked"]))
    codes = sorted(BLOCKER_CODES if status == "complete" else BLOCKER_CODES - {"none"})
    values = {name.lower(): draw(_VALUE) for name in FIELD_NAMES[2:]}
    for value in values.values():
        assume(not any(field_at(line) for line in value.split("\n")[1:]))
        assume(not re.fullmatch(r"<[^<>\n]*>", value))
    return ResultContract(status=status, blocker_code=draw(st.sampled_from(codes)), **values)


_FIELDISH_LINE = st.one_of(
    _LINE,
    st.builds(
        lambda prefix, name, rest: f"{prefix}{name}:{rest}",
        st.sampled_from(["", "- ", "**", "## ", "  "]),
        st.sampled_from([*FIELD_NAMES, "status", "Blocker_Code"]),
        st.one_of(_LINE, st.sampled_from([" complete", " partial", " blocked", " none", " oops", " <x>"])),
    ),
)


class TestProperties:
    @given(_contracts())
    def test_render_parse_round_trip(self, contract: ResultContract) -> None:
        """Rendering a contract and parsing it back gives the same contract."""
        assert parse_contract(render_contract(contract)) == contract

    @given(st.text())
    def test_arbitrary_text_raises_only_contract_error(self, text: str) -> None:
        """Any text either parses or raises ContractError, never anything else."""
        try:
            parse_contract(text)
        except ContractError:
            pass

    @given(st.lists(_FIELDISH_LINE, max_size=20).map("\n".join))
    def test_field_shaped_text_raises_only_contract_error(self, text: str) -> None:
        """Text built from field-like lines either parses to a valid contract or raises ContractError."""
        try:
            contract = parse_contract(text)
        except ContractError as exc:
            assert "\n" not in str(exc)
        else:
            assert contract.blocker_code in BLOCKER_CODES

    @given(st.binary(max_size=300))
    def test_arbitrary_bytes_raise_only_contract_error(self, data: bytes) -> None:
        """Any file content either parses or raises ContractError, never anything else."""
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / ".agent_result.md"
            path.write_bytes(data)
            try:
                read_contract(path, max_bytes=200)
            except ContractError:
                pass

    def test_render_indents_field_lines_inside_values(self) -> None:
        """A value line that would start a field is indented, so it cannot swallow or fake a field."""
        contract = ResultContract(status="complete", summary="x\nDONE: y")
        parsed = parse_contract(render_contract(contract))
        assert parsed.summary == "x\n  DONE: y"
        assert parsed.done == ""
