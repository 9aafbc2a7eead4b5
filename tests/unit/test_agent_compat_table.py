"""`make test-agents-latest`'s compatibility table (scripts/agent-compat-table.py), read from a JUnit report."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "agent-compat-table.py"
VERSIONS = ["claude=2.1.197:2.1.332", "codex=0.169.0:0.171.0", "gemini=0.61.0:0.61.0"]


def table(tmp_path: Path, cases: str) -> subprocess.CompletedProcess[str]:
    report = tmp_path / "report.xml"
    report.write_text(f"<testsuites><testsuite>{cases}</testsuite></testsuites>")
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(report), *VERSIONS], capture_output=True, text=True, check=False
    )


def row(out: str, cli: str) -> list[str]:
    return next(line.split() for line in out.splitlines() if line.startswith(cli + " "))


def test_counts_each_cli_and_exits_zero_when_all_pass(tmp_path: Path) -> None:
    done = table(
        tmp_path,
        '<testcase classname="tests.realcli.test_llm_real.TestClaudeOneShot" name="test_retry"/>'
        '<testcase classname="tests.realcli.test_real_clis" name="test_complete_run[codex-None]"/>'
        '<testcase classname="tests.realcli.test_real_clis" name="test_complete_run[gemini-None]"><skipped/></testcase>'
        '<testcase classname="tests.realcli.test_daemon_real_clis" name="test_usage_limit_pauses"/>',
    )
    assert done.returncode == 0, done.stderr
    assert row(done.stdout, "claude") == ["claude", "2.1.197", "2.1.332", "1", "0", "0"]
    assert row(done.stdout, "codex") == ["codex", "0.169.0", "0.171.0", "1", "0", "0"]
    assert row(done.stdout, "gemini") == ["gemini", "0.61.0", "0.61.0", "0", "0", "1"]
    assert row(done.stdout, "(several)") == ["(several)", "1", "0", "0"]  # a test that names no CLI


def test_a_failed_test_is_named_and_fails_the_run(tmp_path: Path) -> None:
    done = table(
        tmp_path,
        '<testcase classname="tests.realcli.test_real_clis" name="test_rejected_key[codex]">'
        '<failure message="boom"/></testcase>'
        '<testcase classname="tests.realcli.test_real_clis" name="test_rejected_key[claude-oauth]"/>',
    )
    assert done.returncode == 1
    assert row(done.stdout, "codex")[3:] == ["0", "1", "0"]
    assert "FAILED tests.realcli.test_real_clis::test_rejected_key[codex]" in done.stdout


def test_a_missing_report_is_an_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path / "none.xml"), *VERSIONS], capture_output=True, text=True
    )
    assert done.returncode == 2 and "no test report" in done.stderr
