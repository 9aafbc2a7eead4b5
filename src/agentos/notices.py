"""The texts agentos writes about a task's fate: issue and PR comments, operator notices.

Pure functions of a task (and the figures the caller passes): :mod:`agentos.lifecycle` decides, this module
words it. Every text here is redacted by its caller before it leaves the daemon.
"""

from __future__ import annotations

from agentos.agents.contract import ResultContract
from agentos.agents.prompt import fence
from agentos.budget import BUDGET_CODE
from agentos.graph import NO_NODE_BLOCKER, Attempt, Task
from agentos.issue_text import strip_hidden
from agentos.jobs._pr_policy import fenced
from agentos.redact import redact
from agentos.results import last_contract, manual_steps_of


def safe_id(task_id: str) -> str:
    """A task id as a file name (``owner/repo#12.2`` → ``owner_repo-12.2``)."""
    return task_id.replace("/", "_").replace("#", "-")


def manual_steps_comment(task: Task, steps: str) -> str:
    """On the issue of a merged task whose result names manual steps; whether anything waits for them."""
    ref = f"{task.repo}#{task.issue}"
    tail = (
        f"The task waits in `merged` until an operator confirms: `agentos ctl accept {ref}`."
        if task.acceptance.needs_human
        else "Nothing waits for them (an issue asks for a confirmation with a `human:` item under `## Acceptance`)."
    )
    return f"**agentos**: the merged change needs these manual steps:\n\n{fence(steps)}\n\n{tail}"


def acceptance_unreadable_comment(problem: str) -> str:
    """On an issue whose ``## Acceptance`` section could not be read: the problem; the task runs without checks."""
    return (
        f"**agentos**: the `## Acceptance` section of this issue could not be read: {problem}.\n\n"
        "The task runs without acceptance checks, so its merge closes the issue. The section takes items such as "
        "`- command: make test`, `- file: path`, `- url: https://…` (with `json: /pointer` and `equals: value`) "
        "and `- human: what an operator confirms`, or the same as a fenced YAML list."
    )


def _cell(text: str, limit: int = 160) -> str:
    return " ".join(text.split()).replace("|", "\\|")[:limit]


def escalation_comment(task: Task, figures: str = "") -> str:
    """What was tried by whom, the blocker codes, what it cost, the last error, the next step, the manual steps."""
    lines = [
        f"**agentos escalated this issue** after {len(task.attempts)} attempts; it needs a human.",
        "",
        f"Task `{task.id}`, last blocker: `{task.last_blocker or '-'}`.",
        "",
    ]
    if figures:
        lines += [f"Budget: {figures}.", ""]
    if task.last_blocker == BUDGET_CODE:
        lines += [
            "The issue reached its token or cost ceiling (`limits.max_task_tokens`, `limits.max_task_cost_usd`), "
            "so agentos stopped retrying it. A retry runs one more attempt; raise the limit for more.",
            "",
        ]
    lines += [
        "| # | agent | outcome | blocker | note |",
        "|---|---|---|---|---|",
    ]
    for a in task.attempts:
        note = _cell(a.error or a.summary) + (f" ({_cell(a.egress_denied)})" if a.egress_denied else "")
        lines.append(f"| {a.number} | `{a.agent}` | {a.outcome} | `{a.blocker_code or '-'}` | {note} |")
    last = task.attempts[-1] if task.attempts else None
    if last and last.error.strip():
        lines += ["", "Last error:", "", fence(last.error.strip()[-1500:])]
    contract = last_contract(task)
    next_step = contract.next_step.strip() if contract else ""
    manual = manual_steps_of(task)
    if manual:
        lines += ["", "**Manual steps** (from the agent):", "", fence(manual[-1500:])]
    if next_step and next_step.lower() not in ("none", "n/a", "-"):
        lines += ["", f"**The agent's next step:** {_cell(next_step, 500)}"]
    lines += [
        "",
        "**Next step:** fix the blocker above (or clarify the issue), then make the issue ready again "
        f"(`agentos issue ready {task.issue}` on the local forge) or run `agentos ctl task retry {task.id}`.",
    ]
    return "\n".join(lines)


def escalation_notice(task: Task, figures: str) -> str:
    blocked = [f"attempt {a.number} egress {a.egress_denied}" for a in task.attempts if a.egress_denied]
    text = f"Escalated {task.id}: {task.title}\nblocker: {task.last_blocker}\nattempts: {len(task.attempts)}\n{figures}"
    last = task.attempts[-1] if task.attempts else None
    why = [last.error] if last is not None and last.blocker_code == NO_NODE_BLOCKER else []
    return "\n".join([text, *why, *blocked])


def fixes_exhausted_comment(task: Task, reason: str, fixes: int) -> str:
    """On a PR whose fix budget is spent: it stays open for a human."""
    what = "CI stayed red" if reason == "ci_failed" else "the branch kept conflicting with its base"
    return (
        f"**agentos** stopped sending this PR back to an agent: {what} after {fixes} fix attempts "
        f"(`routing.max_ci_fix_attempts`). The PR stays open for a human: fix and merge it, or close it. "
        f"`agentos ctl task retry {task.id}` gives the task to an agent again.\n\n"
        f"Last report:\n\n{fenced(task.current_attempt.error if task.current_attempt else '')}"
    )


def cancelled_pr_comment(task: Task) -> str:
    """On the PR of a task an operator cancelled: closed, its branch kept."""
    return (
        f"**agentos**: task `{task.id}` was cancelled by the operator, so this PR is closed. Its branch "
        f"`{task.branch}` is kept. `agentos ctl task retry {task.id}` gives the task to an agent again."
    )


def review_rounds_comment(task: Task, rounds: int) -> str:
    """On a PR whose reviewers asked for changes once more than ``routing.max_review_rounds`` allows."""
    return (
        f"**agentos**: this PR went back to an agent for review {rounds} times (`routing.max_review_rounds`), so "
        f"task `{task.id}` is escalated and the PR left open for a human. `agentos ctl task retry {task.id}` "
        "gives it to an agent again with a fresh budget of review rounds."
    )


def review_reply_comment(attempt: Attempt) -> str:
    """On a PR after an agent addressed its review: what changed, in the agent's words."""
    return (
        f"**agentos**: attempt {attempt.number} by `{attempt.agent}` addressed the review and pushed to this "
        f"branch. What changed:\n\n{attempt.summary.strip() or '(no summary)'}"
    )


def closed_issue_comment(task: Task, *, wontfix: bool, reason: str, by: str) -> str:
    """On the issue of a task an operator closed for good (``task close [--wontfix]``)."""
    what = "won't fix" if wontfix else "closed"
    because = f": {reason.strip()}" if reason.strip() else "."
    return f"**agentos**: {what} by the operator ({by}){because}"


def closed_pr_comment(task: Task, *, wontfix: bool) -> str:
    """On the open PR of a task an operator closed for good: the PR is closed and its branch deleted."""
    what = "won't fix" if wontfix else "closed"
    return f"**agentos**: task `{task.id}` was marked {what} by the operator; this PR is closed and its branch deleted."


def commit_message(task: Task, summary: str, *, partial: bool = False) -> str:
    first = (redact(summary).strip().splitlines() or [task.title])[0][:72]  # commits are pushed: no secrets
    prefix = "partial: " if partial else ""
    return f"{prefix}{first}\n\nagentos task {task.id} (issue #{task.issue})"


def issue_ref(task: Task) -> str:
    """How a task's PR names its issue: ``Closes #N``, or ``Refs #N`` when acceptance checks hold the close
    (the issue is closed when they pass, not by the merge)."""
    return f"{'Refs' if task.acceptance.checks else 'Closes'} #{task.issue}"


def pr_body(task: Task, attempt: Attempt, files: int) -> str:
    denied = attempt.egress_denied
    egress = f"\n\nEgress {_cell(denied)} (not on the sandbox's allowlist)" if denied else ""
    return (
        f"{issue_ref(task)}\n\n"
        f"{redact(attempt.summary) or task.title}\n\n"
        f"---\nagentos task `{task.id}` · attempt {attempt.number} by `{attempt.agent}` · {files} files changed"
        f"{egress}"
    )


def attempt_comment(task: Task, attempt: Attempt, pr: int) -> str:
    return (
        f"**agentos**: attempt {attempt.number} by `{attempt.agent}` is complete; PR #{pr} is open.\n\n"
        f"{attempt.summary or '(no summary)'}"
    )


def answer_comment(task: Task, attempt: Attempt, contract: ResultContract | None) -> str:
    """A task done without a change: its result's summary, what was done and the decisions, as the issue's answer.

    The agent's text is shown as a reader would see it (no hidden markup), never as a fenced block: it is the answer.
    """
    head = (
        f"**agentos**: this {task.type} task was answered by `{attempt.agent}` (attempt {attempt.number}) without "
        "a code change, so no pull request was opened. The issue is closed; reopen it and make it ready again "
        "to have it worked on further."
    )
    summary = contract.summary if contract is not None and contract.summary else attempt.summary
    parts = [head, f"### Summary\n\n{strip_hidden(summary).strip() or '(no summary)'}"]
    if contract is not None:
        for title, text in (("Done", contract.done), ("Decisions", contract.decisions), ("Risks", contract.risks)):
            if strip_hidden(text).strip():
                parts.append(f"### {title}\n\n{strip_hidden(text).strip()}")
    return "\n\n".join(parts)
