"""One adapter per agent kind: the command line that runs a CLI unattended, and what its output means.

:func:`build_invocation` turns an agent's config into an argv, a scrubbed environment and the bytes for stdin:

=========  =====================================================================================  ===============
kind       argv                                                                                   prompt
=========  =====================================================================================  ===============
claude     ``claude -p --output-format json --dangerously-skip-permissions [--model M] …``         stdin
codex      ``codex exec --dangerously-bypass-approvals-and-sandbox --skip-git-repo-check --json    stdin (``-``)
           [-m M] … -``
gemini     ``gemini -p "" [-m M] --output-format json --approval-mode yolo …``                     stdin
command    the configured ``argv`` with ``{prompt_file}``, ``{worktree}``, ``{task_id}`` filled in  stdin or file
=========  =====================================================================================  ===============

With ``read_only=True`` (the one-shot questions of :mod:`agentos.llm`) the bypass flag is replaced by the CLI's
read-only switch: ``--tools ""`` (claude: no tools at all), ``--sandbox read-only`` (codex),
``--approval-mode plan --policy <gemini-read-only.toml>`` (gemini: plan mode alone can be left by the model, so a
policy denies every tool).

Claude Code refuses ``--dangerously-skip-permissions`` as root unless ``IS_SANDBOX=1`` says it runs in a
sandbox; agentos runs agents in disposable worktrees, so as root it sets ``IS_SANDBOX=1`` for claude only.
Gemini CLI refuses to run headless in a folder it does not trust (every new worktree), so gemini gets
``GEMINI_CLI_TRUST_WORKSPACE=true``; its file tools refuse paths outside the worktree, so with ``prompt_via: file``
it also gets ``--include-directories <the prompt's run dir>``.

:func:`parse_output` reads what the CLI printed (stdout and stderr, in any mix) into an :class:`AgentReport`:
tokens, cost, turns, the final message, and a failure code when the run failed for a reason agentos handles
itself: ``quota_limited`` (with the reset time when the CLI states one), ``missing_credentials`` and
``runner_failure``. The recognisers are the table :data:`FAILURE_RULES`.
"""

from __future__ import annotations

import calendar
import json
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agentos.agents.runner import scrubbed_env
from agentos.config import AgentConfig, AgentKind
from agentos.errors import AgentosError

FailureCode = Literal["quota_limited", "missing_credentials", "runner_failure"]

INSTALL_HINTS: dict[str, str] = {
    "claude": "npm install -g @anthropic-ai/claude-code",
    "codex": "npm install -g @openai/codex",
    "gemini": "npm install -g @google/gemini-cli",
}

_FINAL_MESSAGE_CHARS = 4000
_DETAIL_CHARS = 600


class AgentNotInstalled(AgentosError):
    """The agent's program is not on the agent's PATH (or not executable). ``hint`` says how to install it."""

    def __init__(self, agent: str, binary: str, hint: str) -> None:
        self.agent = agent
        self.binary = binary
        self.hint = hint
        super().__init__(f"agent {agent!r}: {binary!r} is not installed or not executable; {hint}")


@dataclass(frozen=True)
class Invocation:
    argv: list[str]
    env: dict[str, str]
    stdin: bytes | None


# ---------------------------------------------------------------- command lines


# Each CLI's own switch for a one-shot answer that edits nothing and runs nothing (``read_only=True``), checked
# against each CLI's --help and run with a model that tries to write (tests/realcli/test_llm_real.py): Claude Code 2.1
# ``--tools ""`` ("Use "" to disable all tools"), Codex 0.169 ``--sandbox read-only``. Gemini CLI 0.61's plan mode
# ("read-only mode") alone is not: headless, the model's ``exit_plan_mode`` is auto-approved and switches to YOLO, so
# a policy that denies every tool (``--policy``, GEMINI_READ_ONLY_POLICY) goes with it.
GEMINI_READ_ONLY_POLICY = Path(__file__).with_name("gemini-read-only.toml")
_WRITE = {
    "claude": ["--dangerously-skip-permissions"],
    "codex": ["--dangerously-bypass-approvals-and-sandbox"],
    "gemini": ["--approval-mode", "yolo"],
}
_READ_ONLY = {
    "claude": ["--tools", ""],
    "codex": ["--sandbox", "read-only"],
    "gemini": ["--approval-mode", "plan", "--policy", str(GEMINI_READ_ONLY_POLICY)],
}


def _cli_flags(kind: AgentKind, model: str | None, extra: list[str], read_only: bool = False) -> list[str]:
    mode = (_READ_ONLY if read_only else _WRITE).get(kind, [])
    if kind == "claude":
        return ["-p", "--output-format", "json", *mode, *_opt("--model", model), *extra]
    if kind == "codex":
        return ["exec", *mode, "--skip-git-repo-check", "--json", *_opt("-m", model), *extra, "-"]
    if kind == "gemini":
        return ["-p", "", *_opt("-m", model), "--output-format", "json", *mode, *extra]
    raise ValueError(f"no built-in command line for kind {kind!r}")


def _opt(flag: str, value: str | None) -> list[str]:
    return [flag, value] if value else []


def _resolve(agent: str, program: str, env: Mapping[str, str], cwd: Path, hint: str) -> str:
    """An absolute path to ``program``: looked up on the agent's own PATH, or relative to the worktree."""
    if "/" in program:
        path = Path(program).expanduser()
        path = path if path.is_absolute() else cwd / path
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
        raise AgentNotInstalled(agent, program, hint)
    found = shutil.which(program, path=env.get("PATH") or os.defpath)
    if found is None:
        raise AgentNotInstalled(agent, program, hint)
    return found


def build_invocation(
    agent_name: str,
    cfg: AgentConfig,
    *,
    prompt: str,
    prompt_file: Path,
    worktree: Path,
    task_id: str,
    base_env: Mapping[str, str],
    euid: int | None = None,
    read_only: bool = False,
) -> Invocation:
    """The argv, environment and stdin that run ``cfg`` on ``prompt`` in ``worktree``.

    The caller has already written ``prompt`` to ``prompt_file``. The environment is
    :func:`~agentos.agents.runner.scrubbed_env` of ``base_env`` (the daemon's environment) with the agent's
    ``pass_env`` and ``env``. ``euid`` defaults to :func:`os.geteuid` (injectable for tests).
    ``read_only`` (one-shot questions, :mod:`agentos.llm`) swaps the permission bypass for the CLI's own switch
    that lets it edit nothing and run nothing; a ``command`` agent's argv is the user's and is left as it is.
    Raises :class:`AgentNotInstalled` when the program cannot be found.
    """
    env = scrubbed_env(list(cfg.pass_env), dict(cfg.env), base_env)
    if "TZ" in base_env:  # Codex prints a reset time without a zone; parse_output reads it in the daemon's zone
        env.setdefault("TZ", base_env["TZ"])
    if cfg.kind == "command":
        assert cfg.argv, "AgentConfig guarantees argv for kind 'command'"
        values = {"{prompt_file}": str(prompt_file), "{worktree}": str(worktree), "{task_id}": task_id}
        argv = [_fill(arg, values) for arg in cfg.argv] + list(cfg.extra_args)
        argv[0] = _resolve(agent_name, argv[0], env, worktree, f"check agents.{agent_name}.argv[0] in the config")
        return Invocation(argv, env, None if cfg.prompt_via == "file" else prompt.encode("utf-8"))
    binary = _resolve(agent_name, cfg.binary or cfg.kind, env, worktree, INSTALL_HINTS[cfg.kind])
    extra = list(cfg.extra_args)
    if cfg.kind == "gemini" and cfg.prompt_via == "file":  # read_file refuses paths outside the worktree
        extra = ["--include-directories", str(prompt_file.parent), *extra]
    argv = [binary, *_cli_flags(cfg.kind, cfg.model, extra, read_only)]
    if cfg.kind == "claude" and not read_only and (os.geteuid() if euid is None else euid) == 0:
        env.setdefault("IS_SANDBOX", "1")  # Claude Code refuses --dangerously-skip-permissions as root without it
    if cfg.kind == "gemini":
        env.setdefault("GEMINI_CLI_TRUST_WORKSPACE", "true")  # headless runs refuse an untrusted (new) folder
    if cfg.prompt_via == "file":  # the built-in CLIs read stdin; point them at the file instead
        return Invocation(argv, env, f"Your task is in the file {prompt_file}. Read it and do it.\n".encode())
    return Invocation(argv, env, prompt.encode("utf-8"))


def _fill(arg: str, values: Mapping[str, str]) -> str:
    for key, value in values.items():  # not str.format: other braces (JSON, shell) pass through untouched
        arg = arg.replace(key, value)
    return arg


# ---------------------------------------------------------------- failure recognition


@dataclass(frozen=True)
class FailureRule:
    failure: FailureCode
    pattern: re.Pattern[str]
    what: str


def _rule(failure: FailureCode, pattern: str, what: str) -> FailureRule:
    return FailureRule(failure, re.compile(pattern, re.IGNORECASE), what)


FAILURE_RULES: tuple[FailureRule, ...] = (
    _rule("quota_limited", r"usage limit", "usage limit reached (Claude Code, Codex)"),
    _rule(
        "quota_limited",
        r"you['’]?ve (?:hit|reached) your [\w .-]{0,40}?limit",
        "Claude Code 'You've hit your session limit · resets …', Codex 'You’ve hit your usage limit'",
    ),
    _rule("quota_limited", r"\bout of (?:extra )?usage\b", "Claude Code 'You're out of usage credits'"),
    _rule("quota_limited", r"\b\d+-hour limit reached|\b(?:weekly|daily|session) limit reached", "plan window"),
    _rule(
        "quota_limited",
        r"rate[ _-]?limit(?:_error|ed\b| reached| exceeded| hit)|exceed your (?:account's |organization's )?rate limit",
        "provider rate limit",
    ),
    _rule(
        "quota_limited",
        r"insufficient_quota|exceeded your current quota|quota exceeded|credit balance is too low",
        "billing quota (OpenAI insufficient_quota, Anthropic credits)",
    ),
    _rule("quota_limited", r"resource[_ ]exhausted|resource has been exhausted", "Gemini RESOURCE_EXHAUSTED"),
    _rule("quota_limited", r"(?:status|code|error|http)\W{0,12}429\b|too many requests", "HTTP 429"),
    _rule(
        "missing_credentials",
        r"invalid (?:api[ _-]?key|x-api-key|bearer token|credentials)|incorrect api key|api key not valid",
        "rejected API key",
    ),
    _rule(
        "missing_credentials",
        r"authentication_error|authentication (?:failed|required|error)|failed to authenticate|\bunauthenticated\b",
        "authentication error",
    ),
    _rule("missing_credentials", r"(?:status|code|error|http)\W{0,12}401\b|\bunauthorized\b", "HTTP 401"),
    _rule(
        "missing_credentials",
        r"please run /login|not logged in|please log ?in|codex login|login required",
        "CLI not logged in",
    ),
    _rule("missing_credentials", r"oauth token (?:has )?expired|token has expired|invalid_grant", "expired login"),
    _rule(
        "missing_credentials",
        r"please set an auth method|must specify the \w+_API_KEY|missing bearer|no api key (?:found|provided|set)",
        "no credentials configured (Gemini CLI, Codex)",
    ),
)


def classify_failure(texts: list[str]) -> tuple[FailureRule, str] | None:
    """The first rule (in table order) that matches any of ``texts``, with the text it matched."""
    for rule in FAILURE_RULES:
        for text in texts:
            if rule.pattern.search(text):
                return rule, text
    return None


# ---------------------------------------------------------------- reset times

_UNIT_S = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_UNIT = r"(?:days?|d|hours?|hrs?|h|minutes?|mins?|m|seconds?|secs?|s)\b"
_PART = re.compile(rf"(\d+(?:\.\d+)?)\s*({_UNIT})", re.IGNORECASE)
_RELATIVE = re.compile(
    rf"(?:try again|retry|resets?|available again)\s+(?:in|after)\s+((?:\d+(?:\.\d+)?\s*{_UNIT}[\s,]*(?:and\s+)?)+)",
    re.IGNORECASE,
)
_RETRY_DELAY = re.compile(r"retryDelay\W+(\d+(?:\.\d+)?)s", re.IGNORECASE)
_EPOCH = re.compile(r"(?:\||resets?_at\W{1,4})\s*(\d{10})(?!\d)", re.IGNORECASE)
_MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_abbr) if name}
_CLOCK = re.compile(
    r"(?:resets?|try again|available again)\s+(?:at\s+|on\s+)?"
    r"(?:(?P<mon>jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\s+(?P<day>\d{1,2})(?:st|nd|rd|th)?"
    r"(?:,?\s+(?P<year>\d{4}))?,?\s+(?:at\s+)?)?"
    r"(?P<hour>\d{1,2})(?::(?P<minute>\d{2}))?\s*(?P<ampm>[ap]\.?m\b\.?)?"
    r"(?:\s*\((?P<tz>[\w+\-/]+)\))?",
    re.IGNORECASE,
)


def parse_reset_time(text: str, now: datetime, local_tz: tzinfo | None = None) -> datetime | None:
    """When a usage limit stated in ``text`` resets, as an aware UTC datetime; ``None`` if it states none.

    Understands an epoch (``Claude AI usage limit reached|1750000000``), a duration (``try again in 2h 5m``,
    ``try again in 5 days 22 hours 11 minutes``, ``Please retry in 41.5s``) and a wall-clock time
    (``resets 3pm (America/New_York)``, ``resets Apr 23 at 4pm (UTC)``, ``try again at Jul 5th, 2026 8:19 PM``).
    A clock time with no zone is read in ``local_tz`` (default: this machine's zone, where the CLI ran).
    """
    now = now if now.tzinfo else now.replace(tzinfo=UTC)
    if m := _EPOCH.search(text):
        return datetime.fromtimestamp(int(m.group(1)), UTC)
    if m := _RELATIVE.search(text):
        seconds = sum(float(n) * _UNIT_S[unit[0].lower()] for n, unit in _PART.findall(m.group(1)))
        return (now + timedelta(seconds=seconds)).astimezone(UTC)
    if m := _RETRY_DELAY.search(text):
        return (now + timedelta(seconds=float(m.group(1)))).astimezone(UTC)
    for m in _CLOCK.finditer(text):
        at = _clock_time(m, now, local_tz)
        if at is not None:
            return at
    return None


def _clock_time(m: re.Match[str], now: datetime, local_tz: tzinfo | None) -> datetime | None:
    hour, minute, ampm = int(m["hour"]), int(m["minute"] or 0), (m["ampm"] or "").lower()
    if not ampm and m["minute"] is None:
        return None  # a bare number ("resets 3 times") is not a time
    if ampm:
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if ampm.startswith("p") else 0)
    if hour > 23 or minute > 59:
        return None
    zone = _zone(m["tz"]) or local_tz or datetime.now().astimezone().tzinfo or UTC
    local_now = now.astimezone(zone)
    if m["mon"]:
        year = int(m["year"]) if m["year"] else local_now.year
        try:
            at = datetime(year, _MONTHS[m["mon"].lower()[:3]], int(m["day"]), hour, minute, tzinfo=zone)
        except ValueError:
            return None
        if not m["year"] and at < local_now - timedelta(days=1):
            at = at.replace(year=year + 1)
    else:
        at = local_now.replace(hour=hour, minute=minute, second=0, microsecond=0)
        if at <= local_now:
            at += timedelta(days=1)
    return at.astimezone(UTC)


def _zone(name: str | None) -> tzinfo | None:
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


# ---------------------------------------------------------------- output parsing


@dataclass(frozen=True)
class AgentReport:
    """What a CLI reported about its run.

    ``tokens_in`` counts every prompt token, cached ones included (``tokens_cached`` is that share).
    ``cost_reported``/``tokens_reported`` are False when the CLI reported nothing: the attempt is then
    "not measured", never guessed (Codex and Gemini CLI report tokens but no cost).
    """

    tokens_in: int
    tokens_out: int
    cost_usd: float
    turns: int
    final_message: str
    is_error: bool
    failure: FailureCode | None
    reset_at: datetime | None
    detail: str
    tokens_cached: int = 0
    cost_reported: bool = False
    tokens_reported: bool = False


@dataclass
class _Parsed:
    found: bool = False
    tokens_in: int = 0
    tokens_out: int = 0
    tokens_cached: int = 0
    tokens_reported: bool = False
    cost_usd: float = 0.0
    cost_reported: bool = False
    turns: int = 0
    final: str = ""
    is_error: bool = False
    errors: list[str] = field(default_factory=list)


_DECODER = json.JSONDecoder()
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def split_json(text: str) -> tuple[list[dict[str, object]], list[str]]:
    """The JSON objects in ``text`` (one per line, or pretty-printed over several) and the other lines."""
    objects: list[dict[str, object]] = []
    noise: list[str] = []
    pos, end = 0, len(text)
    while pos < end:
        eol = text.find("\n", pos)
        eol = end if eol < 0 else eol
        line = text[pos:eol]
        start = pos + len(line) - len(line.lstrip())
        if text.startswith("{", start):
            try:
                obj, stop = _DECODER.raw_decode(text, start)
            except ValueError:
                obj = None
            if isinstance(obj, dict):
                objects.append(obj)
                pos = stop
                continue
        if clean := _ANSI.sub("", line).strip():
            noise.append(clean)
        pos = eol + 1
    return objects, noise


def _int(value: object) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _dict(value: object) -> dict[str, object]:
    return value if isinstance(value, dict) else {}


def _message(value: object) -> str:
    if isinstance(value, str):
        return value
    return str(_dict(value).get("message") or "") or (json.dumps(value) if value else "")


def _parse_claude(objects: list[dict[str, object]]) -> _Parsed:
    p = _Parsed()
    results = [o for o in objects if o.get("type") == "result"]
    if not results:
        return p
    r = results[-1]
    p.found = True
    p.final = _str(r.get("result"))
    p.is_error = bool(r.get("is_error")) or str(r.get("subtype", "")).startswith("error")
    p.turns = _int(r.get("num_turns"))
    cost = r.get("total_cost_usd", r.get("cost_usd"))
    if isinstance(cost, int | float) and not isinstance(cost, bool):
        p.cost_usd, p.cost_reported = float(cost), True
    usage = _dict(r.get("usage"))
    if usage:
        cached = _int(usage.get("cache_read_input_tokens"))
        p.tokens_in = _int(usage.get("input_tokens")) + _int(usage.get("cache_creation_input_tokens")) + cached
        p.tokens_out, p.tokens_cached, p.tokens_reported = _int(usage.get("output_tokens")), cached, True
    # `usage` covers the main loop only; `modelUsage` every API call of the run (the session title, subagents), the
    # calls `total_cost_usd` is the price of. Claude Code 2.1.197 against a scripted server: usage 3,000 in,
    # modelUsage 4,000 (the title request). The larger of the two is what the run consumed.
    models = [_dict(m) for m in _dict(r.get("modelUsage")).values()]
    if models:
        cached = sum(_int(m.get("cacheReadInputTokens")) for m in models)
        tokens_in = cached + sum(_int(m.get("inputTokens")) + _int(m.get("cacheCreationInputTokens")) for m in models)
        tokens_out = sum(_int(m.get("outputTokens")) for m in models)
        if tokens_in >= p.tokens_in and tokens_out >= p.tokens_out and (tokens_in, tokens_out) != (0, 0):
            p.tokens_in, p.tokens_out, p.tokens_cached, p.tokens_reported = tokens_in, tokens_out, cached, True
    if p.is_error:
        errors = r.get("errors")
        p.errors.append(p.final or str(r.get("subtype", "error")))
        p.errors += [_message(e) for e in errors if e] if isinstance(errors, list) else []
    return p


def _parse_codex(objects: list[dict[str, object]]) -> _Parsed:
    p = _Parsed()
    completed = failed = False
    for o in objects:
        kind, msg = o.get("type"), _dict(o.get("msg"))  # `msg`: the event format of codex before 0.44
        if kind in ("turn.completed", "turn.failed"):
            p.found = True
            completed, failed = completed or kind == "turn.completed", failed or kind == "turn.failed"
            p.turns += 1
            usage = _dict(o.get("usage"))
            if usage:
                p.tokens_in += _int(usage.get("input_tokens"))
                p.tokens_cached += _int(usage.get("cached_input_tokens"))
                p.tokens_out += _int(usage.get("output_tokens"))
                p.tokens_reported = True
            if kind == "turn.failed":
                p.errors.append(_message(o.get("error")))
        elif kind == "item.completed":
            item = _dict(o.get("item"))
            if item.get("type") == "agent_message" and isinstance(item.get("text"), str):
                p.found, p.final = True, str(item["text"])
            elif item.get("type") == "error":
                p.errors.append(_message(item))
        elif kind == "error":
            p.found = True
            p.errors.append(_message(o))
        elif msg.get("type") in ("agent_message", "task_complete"):
            text = msg.get("message", msg.get("last_agent_message"))
            if isinstance(text, str) and text:
                p.found, completed, p.final = True, True, text
        elif msg.get("type") == "token_count":
            total = _dict(_dict(msg.get("info")).get("total_token_usage")) or msg  # cumulative: keep the last
            p.tokens_in, p.tokens_out = _int(total.get("input_tokens")), _int(total.get("output_tokens"))
            p.tokens_cached, p.tokens_reported = _int(total.get("cached_input_tokens")), True
        elif msg.get("type") in ("error", "stream_error"):
            p.found = True
            p.errors.append(_message(msg))
    p.is_error = failed or (bool(p.errors) and not completed)
    return p


def _parse_gemini(objects: list[dict[str, object]]) -> _Parsed:
    p = _Parsed()
    reports = [o for o in objects if {"response", "stats", "error"} & o.keys()]
    if not reports:
        return p
    r = reports[-1]
    p.found = True
    p.final = _str(r.get("response"))
    if r.get("error"):
        p.is_error = True
        p.errors.append(_message(r["error"]))
    for model in _dict(_dict(r.get("stats")).get("models")).values():
        tokens = _dict(_dict(model).get("tokens"))
        p.tokens_in += _int(tokens.get("prompt"))
        p.tokens_out += _int(tokens.get("candidates")) + _int(tokens.get("thoughts"))
        p.tokens_cached += _int(tokens.get("cached"))
        p.tokens_reported = p.tokens_reported or bool(tokens)
        roles = _dict(_dict(model).get("roles"))
        if roles:  # 0.61: per role; "utility_router" and the like are side calls, not turns of the agent
            p.turns += _int(_dict(roles.get("main")).get("totalRequests"))
        else:
            p.turns += _int(_dict(_dict(model).get("api")).get("totalRequests"))
    return p


_PARSERS = {"claude": _parse_claude, "codex": _parse_codex, "gemini": _parse_gemini}


def parse_output(
    kind: AgentKind,
    output: str,
    exit_code: int | None,
    *,
    now: datetime,
    local_tz: tzinfo | None = None,
) -> AgentReport:
    """Read a CLI's combined stdout/stderr into an :class:`AgentReport`.

    Failure codes are only looked for when the run failed (the CLI reported an error or exited non-zero), so
    a successful agent whose summary mentions "rate limit" is not paused. A non-zero exit with nothing the
    adapter can parse, and no recognised message, is ``runner_failure`` with the output's last lines as
    ``detail``. ``exit_code=None`` (killed, never started) is left to the caller, which knows why.
    """
    objects, noise = split_json(output)
    parser = _PARSERS.get(kind)
    p = parser(objects) if parser else _Parsed()
    if parser is None:  # kind "command": free text; its last lines are its message
        p.final = output.strip()[-_FINAL_MESSAGE_CHARS:]
    failed = p.is_error or (exit_code is not None and exit_code != 0)
    failure: FailureCode | None = None
    reset_at: datetime | None = None
    detail = ""
    if failed:
        texts = [t for t in p.errors if t] + noise + ([p.final] if p.is_error and p.final else [])
        match = classify_failure(texts)
        if match is not None:
            rule, text = match
            failure, detail = rule.failure, text
            if rule.failure == "quota_limited":
                reset_at = parse_reset_time(text, now, local_tz) or next(
                    (at for t in texts if (at := parse_reset_time(t, now, local_tz))), None
                )
        elif not p.found and exit_code not in (0, None):
            failure, detail = "runner_failure", "\n".join(noise[-10:])
        else:
            detail = "\n".join(p.errors[-3:]) or "\n".join(noise[-10:])
    return AgentReport(
        tokens_in=p.tokens_in,
        tokens_out=p.tokens_out,
        cost_usd=p.cost_usd,
        turns=p.turns,
        final_message=p.final[-_FINAL_MESSAGE_CHARS:],
        is_error=failed,
        failure=failure,
        reset_at=reset_at,
        detail=_tail(detail, _DETAIL_CHARS),
        tokens_cached=p.tokens_cached,
        cost_reported=p.cost_reported,
        tokens_reported=p.tokens_reported,
    )


def _tail(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else "…" + text[-limit:]
