"""What a task's attempts reported: the newest result file that parses, and the manual steps it names.

Reads the run directories only; imported by the daemon (:mod:`agentos.notices`, the controller) and by the
CLI's offline views alike, so it imports nothing of the daemon.
"""

from __future__ import annotations

from pathlib import Path

from agentos.agents.contract import RESULT_FILE, ContractError, ResultContract, read_contract
from agentos.graph import Task


def last_contract(task: Task) -> ResultContract | None:
    """The newest result file an attempt of ``task`` left that parses."""
    for attempt in reversed(task.attempts):
        if attempt.run_dir:
            try:
                return read_contract(Path(attempt.run_dir) / RESULT_FILE)
            except ContractError:
                continue
    return None


def manual_steps_of(task: Task) -> str:
    """The MANUAL_STEPS of the task's newest result (bounded); empty when it says none, n/a or nothing."""
    contract = last_contract(task)
    steps = contract.manual_steps.strip() if contract else ""
    return "" if steps.lower().rstrip(".") in ("", "none", "n/a", "-", "no") else steps[-1500:]
