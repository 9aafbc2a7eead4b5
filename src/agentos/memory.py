"""CODEBASE.md upkeep: what each task learned, committed on the task's branch so it merges with the change.

Entries are appended newest last; when the file passes its size budget the oldest entries are folded
into one-line summaries, so the prompt that includes it stays small.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from pathlib import Path

from agentos.agents.contract import RESULT_FILE, ContractError, read_contract
from agentos.graph import Attempt, Task
from agentos.redact import redact

FILE = "CODEBASE.md"
HEADER = "# CODEBASE.md\n\nWhat agentos tasks learned about this repository, newest last.\n"
BUDGET = 12_000
ENTRY = re.compile(r"^## ", re.MULTILINE)
OURS = re.compile(r"## #\d+ ")
FOLDED = " (folded)"


def read(worktree: Path, limit: int = BUDGET) -> str:
    path = worktree / FILE
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-limit:]
    except OSError:
        return ""


def fold(text: str, budget: int = BUDGET) -> str:
    """Fit ``text`` in ``budget``: fold the oldest agentos entries to their heading, then drop them.

    Only agentos's own entries (``## #<issue> <title>``) are touched, never sections a person wrote, and
    the newest entry stays whole. Folding is idempotent: a folded entry is not folded again.
    """
    parts = ENTRY.split(text)
    head, sections = parts[0], ["## " + p for p in parts[1:]]
    ours = [i for i, section in enumerate(sections) if OURS.match(section)][:-1]

    def size() -> int:
        return len(head) + sum(map(len, sections))

    for i in ours:
        if size() <= budget:
            break
        sections[i] = _folded(sections[i])
    for i in ours:
        if size() <= budget:
            break
        sections[i] = ""
    return head + "".join(sections)


def _folded(section: str) -> str:
    first = section.splitlines()[0].rstrip()
    return (first if first.endswith(FOLDED) else first + FOLDED) + "\n"


def entry(task: Task, attempt: Attempt, files: Sequence[str], decisions: str = "", risks: str = "") -> str:
    shown = ", ".join(f"`{f}`" for f in list(files)[:12]) or "(none)"
    lines = [f"## #{task.issue} {task.title}", "", f"- files: {shown}"]
    if decisions.strip():
        lines.append(f"- decisions: {' '.join(decisions.split())[:400]}")
    if risks.strip():
        lines.append(f"- risks: {' '.join(risks.split())[:300]}")
    return redact("\n".join(lines)) + "\n\n"


def _update(worktree: Path, task: Task, attempt: Attempt, files: Sequence[str]) -> bool:
    path = worktree / FILE
    current = path.read_text(encoding="utf-8", errors="replace") if path.exists() else HEADER
    if f"## #{task.issue} {task.title}" in current:
        return False
    decisions = risks = ""
    if attempt.run_dir:
        try:
            contract = read_contract(Path(attempt.run_dir) / RESULT_FILE)
            decisions, risks = contract.decisions, contract.risks
        except ContractError:
            pass
    if not current.endswith("\n\n"):
        current = current.rstrip("\n") + "\n\n"
    path.write_text(fold(current + entry(task, attempt, files, decisions, risks)), encoding="utf-8")
    return True


async def record(worktree: Path, task: Task, attempt: Attempt, files: Sequence[str]) -> bool:
    """Add the task's entry (once); True when the file changed and needs committing."""
    return await asyncio.to_thread(_update, worktree, task, attempt, [f for f in files if f != FILE])
