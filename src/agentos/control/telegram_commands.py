"""The chat commands of the Telegram bot: parsing, running against the controller, formatting the replies.

:func:`parse_command` turns a message into a :class:`Command` (or a :class:`ParseError` whose text is the
reply); :func:`execute` runs it against a :class:`ControllerPort` and returns short plain text. Nothing here
touches the network or imports aiogram, so tests and the hostile-input suite drive it directly;
:mod:`agentos.control.telegram` is the bot around it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, assert_never, cast

from agentos.errors import ControlError
from agentos.graph import TaskStatus
from agentos.redact import redact

__all__ = [
    "PROTECTED_JOB",
    "Command",
    "CommandName",
    "ControllerPort",
    "NotACommand",
    "ParseError",
    "execute",
    "format_issue",
    "help_text",
    "parse_command",
]

JSON = Mapping[str, object]

PROTECTED_JOB = "telegram"
"""The job that ``/job off`` refuses to disable: the operator would lock themselves out of the chat."""


class ControllerPort(Protocol):
    """The Controller's command surface as the bot uses it; every method raises ``ControlError`` on bad input."""

    async def status(self) -> JSON: ...
    async def pause(self) -> JSON: ...
    async def resume(self) -> JSON: ...
    async def jobs(self) -> Sequence[JSON]: ...
    async def set_job(self, name: str, enabled: bool) -> JSON: ...
    async def run_job(self, name: str) -> JSON: ...
    async def repos(self) -> Sequence[JSON]: ...
    async def set_repo(self, name: str, enabled: bool) -> JSON: ...
    async def set_repo_mode(self, name: str, mode: str) -> JSON: ...
    async def set_repo_cadence(self, name: str, days: int) -> JSON: ...
    async def tasks(self, repo: str | None = None, status: str | None = None) -> Sequence[JSON]: ...
    async def task(self, task_id: str) -> JSON: ...
    async def issue(self, task_id: str) -> JSON: ...
    async def retry(self, task_id: str) -> JSON: ...
    async def cancel(self, task_id: str) -> JSON: ...
    async def approve(self, ref: str) -> JSON: ...
    async def reject(self, ref: str) -> JSON: ...
    async def agents(self) -> Sequence[JSON]: ...
    async def resume_agent(self, name: str) -> JSON: ...


# ---------------------------------------------------------------- commands: parsing

CommandName = Literal[
    "status", "on", "off", "jobs", "job", "run", "repos", "repo",
    "tasks", "task", "retry", "cancel", "approve", "reject", "agents", "agent", "help",
]  # fmt: skip

# name → (usage, description for setMyCommands); the order is the /help order.
_SPECS: dict[str, tuple[str, str]] = {
    "status": ("/status", "Daemon state, counts, uptime"),
    "on": ("/on", "Resume: start new work again"),
    "off": ("/off", "Pause: start no new work"),
    "jobs": ("/jobs", "The job table"),
    "job": ("/job on|off NAME", "Enable or disable a job"),
    "run": ("/run JOB", "Run a job now"),
    "repos": ("/repos", "Watched repositories"),
    "repo": (
        "/repo on|off NAME · /repo mode NAME full|dispatcher · /repo cadence NAME DAYS",
        "Enable a repo, set its mode or grooming cadence",
    ),
    "tasks": ("/tasks [REPO] [STATUS]", "List tasks"),
    "task": ("/task ID", "One task in full"),
    "retry": ("/retry ID", "Re-queue a task"),
    "cancel": ("/cancel ID", "Cancel a task"),
    "approve": ("/approve PR", "Approve a waiting high-risk PR (repo#12 or 12)"),
    "reject": ("/reject PR", "Reject a waiting high-risk PR"),
    "agents": ("/agents", "Agents: paused until when and why, month spend vs limits"),
    "agent": ("/agent resume NAME", "Lift an agent's pause now"),
    "help": ("/help", "This list"),
}
_ALIASES = {"start": "help", "pause": "off", "resume": "on"}
_NO_ARGS = frozenset({"status", "on", "off", "jobs", "repos", "agents"})
_ONE_ID = frozenset({"run", "task", "retry", "cancel", "approve", "reject"})
_STATUSES = frozenset(s.value for s in TaskStatus)
_MODES = {"full": "full", "dispatcher": "dispatcher_only", "dispatcher_only": "dispatcher_only"}
_DAYS = re.compile(r"[0-9]{1,4}")
_MAX_TOKEN = 200


class ParseError(ControlError):
    """Text that is not a valid command; ``str(error)`` is the one-line reply (usually the usage)."""


class NotACommand(ParseError):
    """Text that does not start with ``/``; answered in private chats only."""


@dataclass(frozen=True, slots=True)
class Command:
    """A validated command: canonical ``name``, normalised ``args``, and the ``@bot`` it was addressed to."""

    name: CommandName
    args: tuple[str, ...] = ()
    mention: str | None = None


def _usage(name: str) -> ParseError:
    return ParseError(f"usage: {_SPECS[name][0]}")


def _token(value: str) -> bool:
    return 0 < len(value) <= _MAX_TOKEN and value.isprintable()


def _task_filters(args: Sequence[str]) -> tuple[str | None, str | None]:
    """``/tasks`` arguments → ``(repo, status)``: a word that is a task status is the status filter."""
    repo: str | None = None
    status: str | None = None
    for arg in args:
        if arg.lower() in _STATUSES and status is None:
            status = arg.lower()
        elif repo is None:
            repo = arg
        else:
            raise ValueError(arg)
    return repo, status


def _check_args(name: str, args: tuple[str, ...]) -> tuple[str, ...]:
    """Validate and normalise ``args`` for command ``name``; raise the usage as :class:`ParseError`."""
    if name == "help":
        return ()
    if not all(_token(a) for a in args):
        raise _usage(name)
    if name in _NO_ARGS:
        if args:
            raise _usage(name)
        return ()
    if name in _ONE_ID:
        if len(args) != 1:
            raise _usage(name)
        return args
    if name == "job":
        if len(args) != 2 or args[0].lower() not in ("on", "off"):
            raise _usage(name)
        return (args[0].lower(), args[1])
    if name == "agent":
        if len(args) != 2 or args[0].lower() != "resume":
            raise _usage(name)
        return ("resume", args[1])
    if name == "tasks":
        if len(args) > 2:
            raise _usage(name)
        try:
            _task_filters(args)
        except ValueError:
            raise _usage(name) from None
        return args
    if name == "repo":
        verb = args[0].lower() if args else ""
        if verb in ("on", "off") and len(args) == 2:
            return (verb, args[1])
        if verb == "mode" and len(args) == 3 and args[2].lower() in _MODES:
            return (verb, args[1], _MODES[args[2].lower()])
        if verb == "cadence" and len(args) == 3 and _DAYS.fullmatch(args[2]) and int(args[2]) > 0:
            return (verb, args[1], str(int(args[2])))
        raise _usage(name)
    raise _usage(name)  # pragma: no cover - every name in _SPECS is handled above


def parse_command(text: str) -> Command:
    """Parse a chat message into a :class:`Command`; any other outcome is a :class:`ParseError`.

    ``/Job@agentos_bot off dispatch`` → ``Command("job", ("off", "dispatch"), mention="agentos_bot")``.
    Pure and total: for every string it returns a ``Command`` or raises ``ParseError``.
    """
    words = text.split()
    if not words or not words[0].startswith("/"):
        raise NotACommand("Not a command. Send /help for the list.")
    head, *rest = words
    name, _, mention = head[1:].partition("@")
    name = name.lower()
    name = _ALIASES.get(name, name)
    if name not in _SPECS:
        raise ParseError("Unknown command. Send /help for the list.")
    args = _check_args(name, tuple(rest))
    return Command(cast(CommandName, name), args, mention or None)


def help_text() -> str:
    """The ``/help`` reply: every command with its usage."""
    lines = ["agentos commands:"]
    for usage, description in _SPECS.values():
        lines.append(f"{usage} — {description}")
    return "\n".join(lines)


# ---------------------------------------------------------------- commands: execution and replies


def _text(value: object, default: str = "-", limit: int = 300) -> str:
    """``value`` as one line of at most ``limit`` characters, redacted *before* it is cut.

    A cut first could keep the head of a token too short to still look like one: ``ghp_`` and 15 of its
    characters would then reach the chat, as redacting the whole reply later no longer catches them.
    """
    if value is None or value == "":
        return default
    if isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, list | tuple):
        text = ", ".join(_text(v, default, limit) for v in value) or default
    elif isinstance(value, Mapping):
        text = ", ".join(f"{k}={_text(v, default, limit)}" for k, v in value.items()) or default
    else:
        text = str(value)
    text = redact(text)
    text = " ".join(text.split()) if "\n" in text else text
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _when(value: object) -> str:
    """An ISO timestamp shortened to minutes (``2026-11-25 08:00``); anything else as text."""
    text = _text(value)
    match = re.match(r"(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d)", text)
    return f"{match.group(1)} {match.group(2)}" if match else text


def _duration(seconds: object) -> str:
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds != seconds:
        return "?"
    total = int(max(0.0, min(float(seconds), 1e9)))
    days, rem = divmod(total, 86400)
    hours, rem = divmod(rem, 3600)
    minutes = rem // 60
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m"


def _format_status(status: JSON) -> str:
    paused = status.get("paused") is True
    head = "⏸ Paused: no new work starts (/on resumes)" if paused else "▶ Running"
    lines = [
        f"{head} · {_int(status.get('running'))} running · {_int(status.get('queued'))} queued"
        f" · up {_duration(status.get('uptime_s'))}"
    ]
    counts = status.get("counts")
    if isinstance(counts, Mapping) and counts:
        lines.append("tasks: " + ", ".join(f"{k} {_text(v)}" for k, v in counts.items()))
    agents = status.get("paused_agents")
    if isinstance(agents, Mapping) and agents:
        lines.append("paused agents: " + ", ".join(f"{k} until {_when(v)}" for k, v in agents.items()))
    if status.get("state_writes_held"):
        lines.append(f"⚠ state writes held: {_text(status.get('state_writes_held'))}")
    return "\n".join(lines)


def _format_agents(agents: Sequence[JSON]) -> str:
    if not agents:
        return "No agents."
    lines = []
    for agent in agents:
        name = _text(agent.get("agent"), "?")
        if agent.get("paused_until"):
            until = agent.get("paused_until_local") or _when(agent.get("paused_until"))
            lines.append(f"⏸ {name} · paused until {_text(until)} · /agent resume {name}")
        else:
            lines.append(f"✓ {name}")
        if agent.get("why"):
            lines.append(f"    why: {_text(agent.get('why'))}")
        lines.append(
            f"    {_text(agent.get('month'))}: {_text(agent.get('month_spend'))} · limits {_text(agent.get('limits'))}"
        )
    return "\n".join(lines)


def _format_jobs(jobs: Sequence[JSON]) -> str:
    if not jobs:
        return "No jobs."
    lines = []
    for job in jobs:
        mark = "✓" if job.get("enabled") is not False else "✗"
        line = (
            f"{mark} {_text(job.get('name'), '?')} · next {_when(job.get('next_run'))}"
            f" · runs {_int(job.get('runs'))} · failures {_int(job.get('failures'))}"
        )
        if job.get("last_error"):
            line += f"\n    last error: {_text(job.get('last_error'), limit=160)}"
        lines.append(line)
    return "\n".join(lines)


def _format_repos(repos: Sequence[JSON]) -> str:
    if not repos:
        return "No repos."
    lines = []
    for repo in repos:
        mark = "✓" if repo.get("enabled") is not False else "✗"
        cadence = repo.get("cadence_days")
        grooming = f"groom every {_text(cadence)}d" if cadence else "no grooming cadence"
        lines.append(f"{mark} {_text(repo.get('name'), '?')} · {_text(repo.get('mode'))} · {grooming}")
    return "\n".join(lines)


_MAX_TASK_LINES = 30


def _format_tasks(tasks: Sequence[JSON]) -> str:
    if not tasks:
        return "No tasks."
    lines = []
    for task in tasks[:_MAX_TASK_LINES]:
        line = (
            f"{_text(task.get('id'), '?')} · {_text(task.get('status'))} · {_text(task.get('agent'))}"
            f" · try {_int(task.get('attempts'))} · {_text(task.get('title'), '', 60)}"
        )
        if task.get("pr"):
            line += f" · PR {_text(task.get('pr'))}"
        lines.append(line)
    if len(tasks) > _MAX_TASK_LINES:
        lines.append(f"… and {len(tasks) - _MAX_TASK_LINES} more (narrow with /tasks REPO STATUS)")
    return "\n".join(lines)


_ATTEMPT_KEYS = ("number", "agent", "outcome", "blocker_code", "duration_s")


def _format_attempt(attempt: JSON) -> str:
    head = " · ".join(_text(attempt.get(k)) for k in _ATTEMPT_KEYS if attempt.get(k) not in (None, ""))
    detail = attempt.get("summary") or attempt.get("error")
    return f"  - {head}" + (f": {_text(detail, limit=120)}" if detail else "")


def _format_task(task: JSON) -> str:
    lines = []
    for key, value in task.items():
        if value in (None, "", [], {}, 0) and key != "issue":
            continue
        if isinstance(value, list) and all(isinstance(v, Mapping) for v in value):
            lines.append(f"{key}: {len(value)}")
            lines.extend(_format_attempt(cast(JSON, v)) for v in value[-5:])
        elif key.endswith("_at"):
            lines.append(f"{key}: {_when(value)}")
        else:
            lines.append(f"{key}: {_text(value)}")
    return "\n".join(lines) or "Empty task record."


def format_issue(issue: JSON) -> str:
    """The reply to "Open issue": title, state and labels, then the body (the split at the limit is the sender's)."""
    head = f"{_text(issue.get('issue'))}: {_text(issue.get('title'))}"
    labels = issue.get("labels")
    facts = [f"state: {_text(issue.get('state'))}", f"task: {_text(issue.get('status'))}"]
    if issue.get("blocker"):
        facts.append(f"blocker: {_text(issue.get('blocker'))}")
    if isinstance(labels, Sequence) and not isinstance(labels, str) and labels:
        facts.append("labels: " + ", ".join(str(label) for label in labels))
    body = str(issue.get("body") or "").strip() or "(no description)"
    return "\n".join([head, " · ".join(facts), "", body])


async def execute(command: Command, controller: ControllerPort) -> str:
    """Run ``command`` against ``controller`` and return the reply text (``ControlError`` propagates)."""
    args = command.args
    match command.name:
        case "status":
            return _format_status(await controller.status())
        case "on":
            await controller.resume()
            return "▶ Resumed: new work starts again."
        case "off":
            await controller.pause()
            return "⏸ Paused: no new work starts. /on resumes."
        case "jobs":
            return _format_jobs(await controller.jobs())
        case "job":
            switch, name = args
            if switch == "off" and name.lower() == PROTECTED_JOB:
                raise ControlError(f"Refused: disabling the {PROTECTED_JOB} job would lock you out of this chat.")
            await controller.set_job(name, switch == "on")
            return f"Job {name} {'enabled' if switch == 'on' else 'disabled'}."
        case "run":
            await controller.run_job(args[0])
            return f"Job {args[0]} started."
        case "repos":
            return _format_repos(await controller.repos())
        case "repo":
            verb, name, *rest = args
            if verb in ("on", "off"):
                await controller.set_repo(name, verb == "on")
                return f"Repo {name} {'enabled' if verb == 'on' else 'disabled'}."
            if verb == "mode":
                await controller.set_repo_mode(name, rest[0])
                return f"Repo {name}: mode {rest[0]}."
            await controller.set_repo_cadence(name, int(rest[0]))
            return f"Repo {name}: grooming every {rest[0]} days."
        case "tasks":
            repo, status = _task_filters(args)
            return _format_tasks(await controller.tasks(repo=repo, status=status))
        case "task":
            return _format_task(await controller.task(args[0]))
        case "retry":
            done = await controller.retry(args[0])
            budget = done.get("budget") if isinstance(done, dict) else None
            return f"Task {args[0]} re-queued." + (f"\n{budget}" if budget else "")
        case "cancel":
            await controller.cancel(args[0])
            return f"Task {args[0]} cancelled."
        case "approve":
            await controller.approve(args[0])
            return f"PR {args[0]} approved."
        case "reject":
            await controller.reject(args[0])
            return f"PR {args[0]} rejected."
        case "agents":
            return _format_agents(await controller.agents())
        case "agent":
            lifted = await controller.resume_agent(args[1])
            why = lifted.get("why")
            budget = lifted.get("budget")
            return (
                f"Agent {args[1]} resumed"
                + (f" (it was paused: {_text(why)})" if why else "")
                + "."
                + (f"\n{_text(budget)}" if budget else "")
            )
        case "help":
            return help_text()
        case _:  # pragma: no cover
            assert_never(command.name)
