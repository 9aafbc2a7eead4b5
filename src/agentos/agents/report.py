"""What a CLI reported about its run (:class:`AgentReport`), and the steps every adapter's parser shares.

An adapter reads the JSON objects its CLI printed into a :class:`ParsedOutput`; :func:`judge` then decides, the
same way for every CLI, whether the run failed and why (the rules of :mod:`agentos.agents.limits`).
:func:`split_json` separates the objects from the other lines (stderr noise, banners), in any mix.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, tzinfo

from agentos.agents.limits import FailureCode, classify_failure, parse_reset_time

__all__ = ["AgentReport", "ParsedOutput", "judge", "split_json"]

FINAL_MESSAGE_CHARS = 4000
_DETAIL_CHARS = 600


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
class ParsedOutput:
    """What one adapter's parser found in its CLI's JSON; ``found`` is False when it recognised nothing."""

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


def as_int(value: object) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def as_str(value: object) -> str:
    return value if isinstance(value, str) else ""


def as_dict(value: object) -> dict[str, object]:
    return value if isinstance(value, dict) else {}


def message_of(value: object) -> str:
    """An error's text: the string itself, its ``message`` field, or the JSON of it."""
    if isinstance(value, str):
        return value
    return str(as_dict(value).get("message") or "") or (json.dumps(value) if value else "")


def judge(
    p: ParsedOutput,
    noise: list[str],
    exit_code: int | None,
    *,
    now: datetime,
    local_tz: tzinfo | None = None,
) -> AgentReport:
    """The report of a run whose output parsed to ``p`` (plus the ``noise`` lines) and ended with ``exit_code``.

    Failure codes are only looked for when the run failed (the CLI reported an error or exited non-zero), so
    a successful agent whose summary mentions "rate limit" is not paused. A non-zero exit with nothing the
    adapter can parse, and no recognised message, is ``runner_failure`` with the output's last lines as
    ``detail``. ``exit_code=None`` (killed, never started) is left to the caller, which knows why.
    """
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
        final_message=p.final[-FINAL_MESSAGE_CHARS:],
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
