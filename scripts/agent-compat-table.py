#!/usr/bin/env python3
"""Print the compatibility table of `make test-agents-latest` from the real-CLI tests' JUnit report.

    scripts/agent-compat-table.py REPORT.xml claude=PINNED:LATEST codex=PINNED:LATEST gemini=PINNED:LATEST

A test counts for a CLI when its id names it (``test_complete_run[codex-None]``, ``TestClaudeOneShot``); a test
that names none (one that runs several CLIs in turn) is counted on its own row. Exit status 1 when any test failed
or errored, 2 when the report is missing or holds no test.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

SEVERAL = "(several)"


def outcomes(report: Path) -> list[tuple[str, str]]:
    """(test id, passed|failed|skipped) for every test case in the report."""
    cases = []
    for case in ET.parse(report).getroot().iter("testcase"):
        test_id = f"{case.get('classname', '')}::{case.get('name', '')}"
        if case.find("failure") is not None or case.find("error") is not None:
            cases.append((test_id, "failed"))
        elif case.find("skipped") is not None:
            cases.append((test_id, "skipped"))
        else:
            cases.append((test_id, "passed"))
    return cases


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    report = Path(argv[0])
    versions = dict(arg.split("=", 1) for arg in argv[1:])
    if not report.exists():
        print(f"agent-compat-table: no test report at {report}", file=sys.stderr)
        return 2
    cases = outcomes(report)
    counts: dict[str, Counter[str]] = {cli: Counter() for cli in [*versions, SEVERAL]}
    failed = []
    for test_id, outcome in cases:
        named = [cli for cli in versions if cli in test_id.lower()]
        for cli in named or [SEVERAL]:
            counts[cli][outcome] += 1
        if outcome == "failed":
            failed.append(test_id)
    rows = [("CLI", "pinned", "latest", "passed", "failed", "skipped")]
    for cli, c in counts.items():
        if cli == SEVERAL and not c:
            continue
        pinned, latest = versions[cli].split(":", 1) if cli in versions else ("", "")
        rows.append((cli, pinned, latest, str(c["passed"]), str(c["failed"]), str(c["skipped"])))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print()
    for n, row in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))
    total = Counter(outcome for _, outcome in cases)
    print(f"\n{total['passed']} passed, {total['failed']} failed, {total['skipped']} skipped of {len(cases)}")
    for test_id in failed:
        print(f"FAILED {test_id}")
    if not cases:
        return 2
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
