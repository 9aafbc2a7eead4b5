"""Pure policies of the PR monitor: blocker signatures, the wedge clock, the follow-up's CI context, texts.

No I/O and no clock: callers pass ``now`` (STYLE rule 4), so every rule here is tested with explicit times.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from agentos.forge.base import Checks, PullRequest, QueueDrop
from agentos.graph import Task
from agentos.jobs.verify import Finding, Risk
from agentos.redact import redact

BlockerKind = Literal["pending", "red", "conflict", "refused"]
CI_CONTEXT_CHARS = 3000

_PATH = re.compile(r"(?:[A-Za-z]:)?(?:/[^\s/:'\"()]+)+/")
_SHA = re.compile(r"\b[0-9a-f]{7,64}\b")
_NUMBER = re.compile(r"\d+(?:[.,:]\d+)*")
_ERRORISH = re.compile(r"(?i)error|fail|exception|assert|traceback|panic|fatal|denied|refused|conflict|timed out")


def normalise(text: str) -> str:
    """Text with what changes from run to run (directories, hashes, numbers, spacing) made constant."""
    text = _PATH.sub("", text).lower()
    text = _SHA.sub("<sha>", text)
    text = _NUMBER.sub("<n>", text)
    return " ".join(text.split())


def error_lines(text: str, limit: int = 5) -> list[str]:
    """The last ``limit`` lines of ``text`` that read like an error, normalised."""
    return [normalise(line) for line in text.splitlines() if _ERRORISH.search(line)][-limit:]


@dataclass(frozen=True)
class Blocker:
    """Why a PR cannot merge now; two blockers with one :attr:`signature` are the same problem."""

    kind: BlockerKind
    names: tuple[str, ...] = ()
    lines: tuple[str, ...] = ()

    @property
    def signature(self) -> str:
        names = sorted({normalise(n) for n in self.names})
        digest = hashlib.sha256(json.dumps([self.kind, names, list(self.lines)]).encode()).hexdigest()[:12]
        return f"{self.kind}:{','.join(names)[:100]}:{digest}"


def red_blocker(checks: Checks) -> Blocker:
    lines: list[str] = []
    for run in checks.failing:
        lines += error_lines(run.summary, 2) + error_lines(run.log_tail, 5)
    return Blocker("red", tuple(r.name for r in checks.failing), tuple(lines))


def pending_blocker(checks: Checks) -> Blocker:
    return Blocker("pending", tuple(r.name for r in checks.runs if r.state == "pending"))


def is_wedged(since: datetime | None, now: datetime, hours: float) -> bool:
    """Blocked on one signature for longer than ``hours``?"""
    return since is not None and now - since > timedelta(hours=hours)


def ci_context(checks: Checks, limit: int = CI_CONTEXT_CHARS) -> str:
    """What the follow-up attempt is told: each failing check's name, summary and log tail, redacted."""
    head = f"CI failed on the PR (head {checks.sha[:12] or '?'}); fix what these checks report:\n"
    failing = checks.failing
    if not failing:
        return head + "- (the forge named no failing check)"
    budget = max(300, (limit - len(head)) // len(failing))
    blocks = []
    for run in failing:
        summary = " ".join(redact(run.summary).split())[:300] or "(no summary)"
        block = f"- {run.name}: {summary}"
        tail = redact(run.log_tail).strip()
        room = budget - len(block) - 1
        if tail and room > 80:
            block += "\n" + tail[-room:]
        blocks.append(block)
    return (head + "\n".join(blocks))[:limit]


def group_failed(drop: QueueDrop, limit: int = CI_CONTEXT_CHARS) -> tuple[Blocker, str]:
    """The blocker and the follow-up's context of a PR the host's merge queue dropped for its group's checks."""
    checks = drop.checks if drop.checks is not None and drop.checks.failing else None
    blocker = red_blocker(checks) if checks else Blocker("red", (), (normalise(drop.reason),))
    head = (
        f"GitHub's merge queue dropped the PR ({drop.reason}): the checks of its merge group (the base, the PRs "
        "queued ahead of it and this PR, merged together) failed.\n"
    )
    context = ci_context(checks, limit - len(head)) if checks else "- (the failing checks of the group are not known)"
    return blocker, head + context


def wedge_key(task: Task) -> str:
    return f"wedged:{task.id}"


def fenced(text: str) -> str:
    text = text.strip() or "(none)"
    bar = "`" * max(3, max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    return f"{bar}\n{text[-1500:]}\n{bar}"


def verify_comment(task: Task, pr: PullRequest, risk: Risk, findings: list[Finding]) -> str:
    lines = [f"**agentos verifier**: risk **{risk}** for task `{task.id}`.", ""]
    lines += [
        f"- {'blocks' if f.blocking else 'note'} · `{f.code}`{f' at `{f.where}`' if f.where else ''}: {f.detail}"
        for f in findings
    ]
    if risk == "high":
        ref = f"{task.repo}#{pr.number}"
        lines += [
            "",
            f"This PR will not merge on its own. `agentos ctl approve {ref}` (or the Approve button) overrides "
            f"these findings and merges it once its checks are green; `agentos ctl reject {ref}` closes it.",
        ]
    return "\n".join(lines)


def wedged_comment(task: Task, pr: PullRequest, blocker: Blocker, hours: float, base: str, *, escalate: bool) -> str:
    what = {
        "pending": "checks that never finished",
        "red": "the same failing checks",
        "conflict": f"a conflict with `{base}` that rebasing did not clear",
        "refused": "a merge the forge kept refusing",
    }[blocker.kind]
    names = ", ".join(f"`{n}`" for n in blocker.names) or "-"
    lines = [
        f"**agentos**: this PR has been blocked on {what} for {hours:.1f} h "
        f"(signature `{task.last_signature}`, checks: {names}).",
        "",
    ]
    if blocker.lines:
        lines += [fenced("\n".join(blocker.lines)), ""]
    if escalate:
        lines.append(
            "An earlier attempt at this issue was wedged and restarted already, so agentos stops here: the PR "
            "stays open and the issue is escalated for a human."
        )
    else:
        lines.append(
            f"Closing it and deleting its branch; the task restarts from the current `{base}` as a new "
            "generation on a new branch."
        )
    return "\n".join(lines)


def next_generation(task: Task, now: datetime) -> Task:
    """The task again, from scratch: a new id and branch, no attempts, no PR (a re-spawn)."""
    return Task(
        id=Task.make_id(task.repo, task.issue, task.generation + 1),
        repo=task.repo,
        issue=task.issue,
        generation=task.generation + 1,
        title=task.title,
        goal=task.goal,
        success_criteria=list(task.success_criteria),
        constraints=list(task.constraints),
        type=task.type,
        priority=task.priority,
        agent=task.agent,
        normalised=task.normalised,
        acceptance=task.acceptance.model_copy(update={"passed_at": None}, deep=True),
        parent=task.id,
        created_at=task.created_at,
        updated_at=now,
        note=f"re-spawned: PR #{task.pr} of {task.id} was wedged",
    )
