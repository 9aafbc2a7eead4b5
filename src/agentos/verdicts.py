"""How one agent run becomes a :class:`Verdict`: the runner's outcome, the CLI's own report, the result file.

Pure: the caller acts on the verdict (a usage limit pauses the agent, lifecycle decides the task's fate).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agentos.agents.adapters import AgentReport
from agentos.agents.contract import ContractError, read_contract
from agentos.agents.runner import RunOutcome
from agentos.redact import redact

__all__ = ["Verdict", "judge"]


@dataclass
class Verdict:
    """How an attempt ended, before the task's status follows from it."""

    outcome: str  # complete | partial | blocked | failed
    blocker: str | None = None
    summary: str = ""
    error: str = ""
    keep_changes: bool = False


def judge(outcome: RunOutcome, report: AgentReport, result: Path) -> Verdict:
    """The verdict on one run: the runner's and the CLI's failures first, then the agent's result file."""
    tail = redact(outcome.log_tail[-2000:])
    if outcome.refused:
        return Verdict("failed", "environment_failure", error=outcome.refused)
    if outcome.resource_limit:
        error = f"the attempt went over its memory limit (sandbox.memory_mb); last output: {tail[-500:]}"
        return Verdict("failed", "resource_limit", error=error)
    if outcome.not_found:
        return Verdict("failed", "runner_failure", error=f"could not start the agent: {tail}")
    if report.failure == "quota_limited":
        return Verdict("failed", "quota_limited", error=report.detail or tail)
    if report.failure == "missing_credentials":
        return Verdict("failed", "missing_credentials", error=report.detail or tail)
    if outcome.timed_out:
        return Verdict("failed", "timeout", error=f"{outcome.timed_out} limit reached; last output: {tail[-500:]}")
    try:
        contract = read_contract(result)
    except ContractError as exc:
        if report.failure == "runner_failure" or (outcome.exit_code not in (0, None) and not result.exists()):
            return Verdict("failed", "runner_failure", error=f"exit {outcome.exit_code}: {tail[-1500:]}")
        return Verdict("failed", "invalid_result_contract", error=str(exc))
    if contract.status == "complete":
        return Verdict("complete", None, summary=contract.summary)
    return Verdict(
        contract.status,
        contract.blocker_code,
        summary=contract.summary,
        error=contract.blockers,
        keep_changes=contract.status == "partial",
    )
