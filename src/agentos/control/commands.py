"""The operator's commands, each declared once: the socket, ``agentos ctl`` and Telegram are adapters over it.

A :class:`~agentos.control.command_spec.CommandSpec` names a command (its wire name, ``{"cmd": "job",
"args": {...}}``), its arguments (:class:`~agentos.control.command_spec.Arg`), the controller call, its
help, how ``agentos ctl`` and the chat spell it (:class:`~agentos.control.command_spec.Form`), and how its
answer reads in a chat and in a terminal (:mod:`agentos.control.replies`); those types live in
:mod:`agentos.control.command_spec`, this module is the table written in them::

    TABLE ──► socket: validate(spec, args) → spec.call(controller, args) → {"ok": true, "result": …}
          ├─► agentos ctl: one typer command per ctl Form, help included → socket request → spec.terminal
          └─► Telegram: /words args → Form → validate → spec.call → spec.chat

This module imports neither pydantic nor the daemon: ``agentos ctl`` reads the table to build its command
line and must start fast. :mod:`agentos.control.arguments` checks a request's arguments against a pydantic
model built from the command's :class:`~agentos.control.command_spec.Arg` list on first use (daemon side).
"""

from __future__ import annotations

from collections.abc import Sequence

from agentos.control import replies
from agentos.control.command_spec import Arg, CommandSpec, ControllerPort, Form

__all__ = [
    "GROUPS",
    "TABLE",
    "Arg",
    "CommandSpec",
    "ControllerPort",
    "Form",
    "issue_problem",
]


ISSUE_TITLE_MAX = 256
ISSUE_BODY_MAX = 65_536
"""GitHub's limits (characters)."""
LABEL_MAX = 50
LABELS_MAX = 20


def issue_problem(title: str, body: str, labels: Sequence[str]) -> str | None:
    """What is wrong with an issue to file, in one line, or None: the daemon and the CLI check the same."""
    if not title.strip():
        return "the title must not be empty"
    if len(title) > ISSUE_TITLE_MAX:
        return f"the title has {len(title)} characters; at most {ISSUE_TITLE_MAX}"
    if len(body) > ISSUE_BODY_MAX:
        return f"the body has {len(body)} characters; at most {ISSUE_BODY_MAX}"
    if len(labels) > LABELS_MAX:
        return f"{len(labels)} labels; at most {LABELS_MAX}"
    for label in labels:
        if not label.strip() or len(label) > LABEL_MAX or not label.isprintable():
            return f"label {_short(label, 60)} must be 1 to {LABEL_MAX} printable characters"
    return None


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _task_status(word: str) -> str | None:
    from agentos.graph import TaskStatus  # daemon side only: the chat parser calls this

    return word.lower() if word.lower() in {s.value for s in TaskStatus} else None


MODES = {"full": "full", "dispatcher": "dispatcher_only", "dispatcher_only": "dispatcher_only"}

JOB = Arg("name", "str", "The job's name (see `jobs`).", metavar="JOB")
JOB_NAME = Arg("name", "str", "The job's name (see `jobs`).")
REPO = Arg("name", "str", "The repository's name as in the config.")
TASK = Arg("id", "str", "The task id, like repo#12.", metavar="ID")
PR = Arg("ref", "str", "The PR, repo#N (or N with one repo).", metavar="PR")
PLAN_REPO = Arg("repo", "text", "The repository (optional when one plan waits).", required=False)
SHOWN_REPO = Arg(
    "repo",
    "text",
    "Only this repository's plan.",
    required=False,
    pick=lambda word: None if word.lower() in {"approve", "skip"} else word,  # `/plan approve` is not a repo
)
SIGNATURE = Arg("signature", "str", "The incident's signature, or its first 4+ characters (see `incidents`).")
BY_CTL = {"by": "ctl"}
BY_CHAT = {"by": "telegram"}
BY = Arg("by", "str", "Who decided (the surface: ctl or telegram).", required=False, default="operator")
ISSUE_REF = Arg("ref", "str", "The issue, repo#N (or N with one repo).", metavar="ISSUE")

GROUPS: dict[str, str] = {
    "job": "Enable or disable a job.",
    "repo": "Repositories: on, off, mode, cadence.",
    "task": "One task: show, retry, cancel, close.",
    "agent": "One agent: resume (lift its pause).",
    "plan": "The sprint plan: show, approve, skip.",
    "offer": "A loop-filed issue offered with one tap: make it ready, or dismiss it.",
}
"""The help of a word that several commands share (``ctl job on|off``, ``/repo on|off|mode|cadence``)."""

TABLE: dict[str, CommandSpec] = {
    spec.name: spec
    for spec in (
        CommandSpec(
            "status",
            "Daemon state: running or paused, work in flight, paused agents, a state-write hold, the status page.",
            lambda c, a: c.status(),
            ctl=(Form(("status",)),),
            chat=(Form(("status",)),),
            chat_reply=lambda a, r: replies.chat_status(r),
            terminal=replies.terminal_status,
        ),
        CommandSpec(
            "pause",
            "Pause: start no new work (the kill switch); running attempts finish.",
            lambda c, a: c.pause(),
            ctl=(Form(("pause",)),),
            chat=(Form(("off",)),),
            chat_reply=lambda a, r: "⏸ Paused: no new work starts. /on resumes.",
        ),
        CommandSpec(
            "resume",
            "Resume: start new work again.",
            lambda c, a: c.resume(),
            ctl=(Form(("resume",)),),
            chat=(Form(("on",)),),
            chat_reply=lambda a, r: "▶ Resumed: new work starts again.",
        ),
        CommandSpec(
            "reload",
            "Re-read the config file (same as SIGHUP); a bad file changes nothing.",
            lambda c, a: c.reload(),
            ctl=(Form(("reload",)),),
        ),
        CommandSpec(
            "jobs",
            "The job table: triggers, next runs (with the `timezone` offset), last runs, errors.",
            lambda c, a: c.jobs(),
            ctl=(Form(("jobs",)),),
            chat=(Form(("jobs",)),),
            chat_reply=lambda a, r: replies.chat_jobs(r),
            terminal=replies.terminal_jobs,
        ),
        CommandSpec(
            "job",
            "Enable or disable a job.",
            lambda c, a: c.set_job(a["name"], a["enabled"]),
            args=(JOB_NAME, Arg("enabled", "bool", "true to enable, false to disable.")),
            ctl=(
                Form(("job", "on"), {"enabled": True}, "Let a job run on its schedule again."),
                Form(
                    ("job", "off"),
                    {"enabled": False},
                    "Skip a job's scheduled runs (survives a restart; `ctl run` still runs it).",
                ),
            ),
            chat=(Form(("job", "on"), {"enabled": True}), Form(("job", "off"), {"enabled": False})),
            chat_reply=lambda a, r: f"Job {a['name']} {'enabled' if a['enabled'] else 'disabled'}.",
        ),
        CommandSpec(
            "run",
            "Run a job now and wait for it.",
            lambda c, a: c.run_job(a["name"]),
            args=(JOB,),
            ctl=(Form(("run",)),),
            chat=(Form(("run",)),),
            chat_reply=lambda a, r: f"Job {a['name']} started.",
            timeout_s=3600.0,  # a dispatch or a PR sweep may take that long
        ),
        CommandSpec(
            "poke",
            "Wake a job now without waiting for it (the webhook's nudge).",
            lambda c, a: c.poke(a["job"] or "dispatch"),
            args=(Arg("job", "text", "The job to wake (default: dispatch).", required=False),),
        ),
        CommandSpec(
            "repos",
            "Watched repositories: enabled, mode, grooming cadence, base branch, path, keys held in the state.",
            lambda c, a: c.repos(),
            ctl=(Form(("repos",)),),
            chat=(Form(("repos",)),),
            chat_reply=lambda a, r: replies.chat_repos(r),
            terminal=lambda r: [replies.Table(r, ["name", "enabled", "mode", "cadence_days", "base", "path", "held"])],
        ),
        CommandSpec(
            "repo",
            "Enable or disable a repository (survives a restart).",
            lambda c, a: c.set_repo(a["name"], a["enabled"]),
            args=(REPO, Arg("enabled", "bool", "true to enable, false to disable.")),
            ctl=(
                Form(("repo", "on"), {"enabled": True}, "Watch a repository again."),
                Form(
                    ("repo", "off"), {"enabled": False}, "Stop dispatching a repository's issues (survives a restart)"
                ),
            ),
            chat=(Form(("repo", "on"), {"enabled": True}), Form(("repo", "off"), {"enabled": False})),
            chat_reply=lambda a, r: f"Repo {a['name']} {'enabled' if a['enabled'] else 'disabled'}.",
        ),
        CommandSpec(
            "repo_mode",
            "full (auto-merge on green) or dispatcher (PRs wait for approval); edits the config file "
            "(or holds it in the state when the file is read-only).",
            lambda c, a: c.set_repo_mode(a["name"], a["mode"]),
            args=(REPO, Arg("mode", "str", "full or dispatcher.", metavar="full|dispatcher", choices=MODES)),
            ctl=(Form(("repo", "mode")),),
            chat=(Form(("repo", "mode")),),
            chat_reply=lambda a, r: f"Repo {a['name']}: mode {a['mode']}.",
        ),
        CommandSpec(
            "repo_cadence",
            "How often the groomer reviews a repository's backlog, in days; edits the config file "
            "(or holds it in the state).",
            lambda c, a: c.set_repo_cadence(a["name"], a["days"]),
            args=(REPO, Arg("days", "int", "Days between grooming runs (≥ 1).", minimum=1)),
            ctl=(Form(("repo", "cadence")),),
            chat=(Form(("repo", "cadence")),),
            chat_reply=lambda a, r: f"Repo {a['name']}: grooming every {a['days']} days.",
        ),
        CommandSpec(
            "tasks",
            "Tasks, newest first; narrow by repository and status.",
            lambda c, a: c.tasks(a["repo"], a["status"]),
            args=(
                Arg("repo", "text", "Only this repository's tasks.", required=False, option=True),
                Arg("status", "text", "Only tasks in this status.", required=False, option=True, pick=_task_status),
            ),
            ctl=(Form(("tasks",)),),
            chat=(Form(("tasks",)),),
            chat_reply=lambda a, r: replies.chat_tasks(r),
            terminal=lambda r: [replies.Table(r, ["id", "status", "attempts", "agent", "pr", "blocker", "title"])],
        ),
        CommandSpec(
            "task",
            "One task in full, with its attempts.",
            lambda c, a: c.task(a["id"]),
            args=(TASK,),
            ctl=(Form(("task", "show")),),
            chat=(Form(("task",)),),
            chat_reply=lambda a, r: replies.chat_task(r),
            terminal=replies.terminal_task,
        ),
        CommandSpec(
            "retry",
            "Re-queue a task that stopped (blocked, failed, cancelled); --agent NAME reroutes it to that agent.",
            lambda c, a: c.retry(a["id"], a["agent"] or None),
            args=(
                TASK,
                Arg("agent", "text", "The agent to run the next attempt (see `agents`).", required=False, option=True),
            ),
            ctl=(Form(("task", "retry")),),
            chat=(Form(("retry",)),),
            chat_reply=replies.chat_retry,
        ),
        CommandSpec(
            "cancel",
            "Cancel a task; a running attempt is stopped and the issue loses its ready label.",
            lambda c, a: c.cancel(a["id"]),
            args=(TASK,),
            ctl=(Form(("task", "cancel")),),
            chat=(Form(("cancel",)),),
            chat_reply=lambda a, r: f"Task {a['id']} cancelled.",
        ),
        CommandSpec(
            "approve",
            "Approve a high-risk PR that waits for review: merge it once green (repo#N, or N with one repo).",
            lambda c, a: c.approve(a["ref"]),
            args=(PR,),
            ctl=(Form(("approve",)),),
            chat=(Form(("approve",)),),
            chat_reply=lambda a, r: f"PR {a['ref']} approved.",
        ),
        CommandSpec(
            "reject",
            "Reject a high-risk PR that waits for review: close it (repo#N, or N with one repo).",
            lambda c, a: c.reject(a["ref"]),
            args=(PR,),
            ctl=(Form(("reject",)),),
            chat=(Form(("reject",)),),
            chat_reply=lambda a, r: f"PR {a['ref']} rejected.",
        ),
        CommandSpec(
            "agents",
            "Agents: paused until when and why, this month's spend against their limits.",
            lambda c, a: c.agents(),
            ctl=(Form(("agents",)),),
            chat=(Form(("agents",)),),
            chat_reply=lambda a, r: replies.chat_agents(r),
            terminal=replies.terminal_agents,
        ),
        CommandSpec(
            "agent_resume",
            "Lift an agent's pause now (a usage limit's or a budget's; a budget lift lasts the period).",
            lambda c, a: c.resume_agent(a["name"]),
            args=(Arg("name", "str", "The agent's name (see `agents`)."),),
            ctl=(Form(("agent", "resume")),),
            chat=(Form(("agent", "resume")),),
            chat_reply=replies.chat_agent_resumed,
        ),
        CommandSpec(
            "issue_new",
            "File an issue on the local forge (`agentos issue new`); the key makes a retry return the same one.",
            lambda c, a: c.issue_new(
                repo=a["repo"],
                title=a["title"],
                body=a["body"],
                labels=a["labels"],
                ready=a["ready"],
                key=a["key"],
                config=a["config"],
            ),
            check=lambda a: issue_problem(a["title"], a["body"], a["labels"]),
            args=(
                Arg("title", "str", "The title."),
                Arg("body", "text", "The body.", required=False, default=""),
                Arg("labels", "labels", "Labels to add.", required=False, default=()),
                Arg("ready", "bool", "Label it ready for agentos at once."),
                Arg("key", "key", "Idempotency key: a retry with the same key returns the same issue."),
                Arg("repo", "text", "The repository (optional with one repo).", required=False),
                Arg("config", "text", "The config file the CLI read (must be the daemon's).", required=False),
            ),
        ),
        CommandSpec(
            "issue_ready",
            "Label a local-forge issue ready and wake the dispatcher (`agentos issue ready`).",
            lambda c, a: c.issue_ready(a["repo"], a["number"], a["config"]),
            args=(
                Arg("number", "issue_number", "The issue number."),
                Arg("repo", "text", "The repository (optional with one repo).", required=False),
                Arg("config", "text", "The config file the CLI read (must be the daemon's).", required=False),
            ),
        ),
        CommandSpec(
            "accept",
            "Sign off a merged issue's acceptance (its human checks, its manual steps): accepted, issue closed.",
            lambda c, a: c.accept(a["ref"]),
            args=(Arg("ref", "str", "The issue, repo#N (or N with one repo).", metavar="ISSUE"),),
            ctl=(Form(("accept",)),),
            chat=(Form(("accept",)),),
            chat_reply=lambda a, r: f"{a['ref']}: {r.get('result', 'accepted')}.",
        ),
        CommandSpec(
            "plan_show",
            "The sprint plan waiting for approval: its picks with their rationale, and its deadline.",
            lambda c, a: c.plan_show(a["repo"]),
            args=(SHOWN_REPO,),
            ctl=(Form(("plan", "show")),),
            chat=(Form(("plan",)),),
            chat_reply=lambda a, r: replies.chat_plans(r),
            terminal=replies.terminal_plans,
        ),
        CommandSpec(
            "plan_approve",
            "Approve the pending sprint plan: its issues are made ready and run.",
            lambda c, a: c.plan_approve(a["repo"]),
            args=(PLAN_REPO,),
            ctl=(Form(("plan", "approve")),),
            chat=(Form(("plan", "approve")),),
            chat_reply=lambda a, r: (
                f"Sprint plan {r['plan']} for {r['repo']} approved: {len(r['ready'])} issues ready."
            ),
        ),
        CommandSpec(
            "plan_skip",
            "Skip the pending sprint plan: nothing runs, and the next plan does not pick the same issues.",
            lambda c, a: c.plan_skip(a["repo"]),
            args=(PLAN_REPO,),
            ctl=(Form(("plan", "skip")),),
            chat=(Form(("plan", "skip")),),
            chat_reply=lambda a, r: f"Sprint plan {r['plan']} for {r['repo']} skipped.",
        ),
        CommandSpec(
            "issue_make_ready",
            "Make a loop-filed issue (an incident or finding fix) ready: an agent runs it.",
            lambda c, a: c.issue_make_ready(a["ref"]),
            args=(ISSUE_REF,),
            ctl=(Form(("offer", "ready")),),
            chat=(Form(("offer", "ready")),),
            chat_reply=lambda a, r: f"{a['ref']} made ready.",
        ),
        CommandSpec(
            "issue_dismiss",
            "Dismiss a loop-filed issue's offer: it stays open and not ready.",
            lambda c, a: c.issue_dismiss(a["ref"]),
            args=(ISSUE_REF,),
            ctl=(Form(("offer", "dismiss")),),
            chat=(Form(("offer", "dismiss")),),
            chat_reply=lambda a, r: f"{a['ref']} dismissed.",
        ),
        CommandSpec(
            "incidents",
            "Open incidents: signature, blocker, count, first and last seen, fix issue, acked.",
            lambda c, a: c.incidents(),
            ctl=(Form(("incidents",)),),
            chat=(Form(("incidents",)),),
            chat_reply=lambda a, r: replies.chat_incidents(r),
            terminal=replies.terminal_incidents,
        ),
        CommandSpec(
            "incident_ack",
            "Acknowledge an incident: no more notices for its signature until it is resolved.",
            lambda c, a: c.incident_ack(a["signature"], a["by"] or "operator"),
            args=(SIGNATURE, BY),
            ctl=(Form(("ack",), BY_CTL),),
            chat=(Form(("ack",), BY_CHAT),),
            chat_reply=lambda a, r: f"Incident {r['signature']} acked: its notices are silenced.",
        ),
        CommandSpec(
            "incident_resolve",
            "Resolve an incident: its fix issue is closed; a recurrence is reported again.",
            lambda c, a: c.incident_resolve(a["signature"], a["by"] or "operator"),
            args=(SIGNATURE, BY),
            ctl=(Form(("resolve",), BY_CTL),),
            chat=(Form(("resolve",), BY_CHAT),),
            chat_reply=lambda a, r: (
                f"Incident {r['signature']} resolved" + (f"; {r['fix_issue']} closed." if r.get("closed") else ".")
            ),
        ),
        CommandSpec(
            "close",
            "Close a task for good: the issue closed with the reason as a comment, an open PR closed and its "
            "branch deleted; --wontfix marks it won't fix.",
            lambda c, a: c.close(a["id"], a["wontfix"], a["reason"] or ""),
            args=(
                TASK,
                Arg(
                    "wontfix",
                    "bool",
                    "Mark it won't fix (a `wontfix` label).",
                    required=False,
                    default=False,
                    option=True,
                ),
                Arg("reason", "text", "Why, posted on the issue.", required=False, option=True),
            ),
            ctl=(Form(("task", "close")),),
            chat=(
                Form(("close",), {"wontfix": False, "reason": None}),
                Form(("wontfix",), {"wontfix": True, "reason": None}, "Close a task as won't fix (issue, PR, branch)."),
            ),
            chat_reply=lambda a, r: f"Task {a['id']} closed{' as won’t fix' if a['wontfix'] else ''}.",
        ),
    )
}
