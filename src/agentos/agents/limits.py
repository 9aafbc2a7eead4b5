"""What a failed CLI run's messages mean: a usage limit (and when it resets), a credentials problem.

:data:`FAILURE_RULES` is one table for every CLI, in precedence order (a usage limit beats an auth error): the
CLIs' messages overlap, and a ``command`` agent may wrap any of them. :func:`parse_reset_time` reads when a usage
limit ends from the many ways the CLIs and their providers state it.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["FAILURE_RULES", "FailureCode", "FailureRule", "classify_failure", "parse_reset_time"]

FailureCode = Literal["quota_limited", "missing_credentials", "runner_failure"]


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
