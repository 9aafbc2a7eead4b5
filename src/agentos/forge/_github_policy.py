"""What GitHub's answers mean, as pure functions: the errors, how long a rate limit says to wait, the retry
backoff, a request's route template (for logs), and an error response's message.

Exceptions::

    ForgeError                      forge/base.py
     ├── NotFound                   a 404 (or a GraphQL NOT_FOUND)
     └── GitHubError                any other failed request: status, method, route, message
          ├── RateLimited           the wait would be longer than max_rate_wait, or waits ran out
          └── OutcomeUnknown        a non-idempotent request may or may not have been applied
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import TypeAlias

import httpx

from agentos.forge.base import ForgeError

__all__ = [
    "JSON",
    "SECONDARY_DEFAULT_WAIT",
    "Exchange",
    "GitHubError",
    "OutcomeUnknown",
    "RateLimited",
    "backoff_delay",
    "rate_limit_wait",
    "route_of",
]

JSON: TypeAlias = dict[str, "JSON"] | list["JSON"] | str | int | float | bool | None
Exchange = Callable[[str, str], Awaitable[JSON]]
"""``exchange(path, jwt)``: POST ``path`` with the App's JWT as bearer (minting an installation token)."""

SECONDARY_DEFAULT_WAIT = 60.0


class GitHubError(ForgeError):
    """A GitHub request failed. ``status`` is None when no response arrived (timeout, connection)."""

    def __init__(self, message: str, *, status: int | None = None, method: str = "", route: str = "") -> None:
        self.message = " ".join(message.split())
        self.status = status
        self.method = method
        self.route = route
        super().__init__(f"GitHub {method} {route} → {status if status is not None else 'no response'}: {self.message}")


class RateLimited(GitHubError):
    """GitHub asked us to wait longer than we are willing to (or kept asking); try again at ``retry_at``."""

    def __init__(self, message: str, *, retry_at: float, status: int | None, method: str, route: str) -> None:
        self.retry_at = retry_at
        super().__init__(message, status=status, method=method, route=route)


class OutcomeUnknown(GitHubError):
    """A non-idempotent request (a create) timed out or failed after it was sent: it may have been applied."""


def rate_limit_wait(
    status: int, headers: Mapping[str, str], body: str, *, now: float, repeats: int = 0
) -> float | None:
    """Seconds to wait before retrying a rate-limited response, or None when it is not a rate limit.

    ``repeats`` is how many secondary-limit waits without ``retry-after`` already happened for this
    request (the default 60 s doubles each time). A 403 without any rate-limit signal returns None.
    """
    if status not in (403, 429):
        return None
    retry_after = headers.get("retry-after")
    if retry_after is not None:
        try:
            return max(0.0, float(retry_after))  # seconds
        except ValueError:
            try:
                return max(0.0, float(parsedate_to_datetime(retry_after).timestamp()) - now)
            except (TypeError, ValueError):
                pass
    if headers.get("x-ratelimit-remaining") == "0" and "x-ratelimit-reset" in headers:
        try:
            return max(0.0, float(headers["x-ratelimit-reset"]) - now) + 1.0
        except ValueError:
            pass
    if status == 429 or "rate limit" in body.lower():
        return SECONDARY_DEFAULT_WAIT * 2.0**repeats
    return None


def backoff_delay(attempt: int, rand: float, *, base: float = 1.0, cap: float = 30.0) -> float:
    """Exponential backoff with jitter for retry ``attempt`` (1-based): ``min(cap, base·2^(n-1)) · [0.5, 1)``."""
    return min(cap, base * 2.0 ** (attempt - 1)) * (0.5 + rand / 2)


def route_of(path: str) -> str:
    """The route template of ``path`` for logs.

    ``/repos/o/r/issues/7/comments`` → ``/repos/{owner}/{repo}/issues/{number}/comments``.
    """
    parts = [p for p in path.split("?", 1)[0].split("/") if p]
    out: list[str] = []
    index = 0
    if parts[:1] == ["repos"] and len(parts) >= 3:
        out, index = ["repos", "{owner}", "{repo}"], 3
    while index < len(parts):
        segment, prev = parts[index], (out[-1] if out else "")
        if prev == "heads":
            out.append("{ref}")
            break
        if prev in ("collaborators", "users"):
            out.append("{user}")
        elif prev in ("commits", "statuses"):
            out.append("{ref}")
        elif prev == "labels" and out[-2:-1] == ["{number}"]:
            out.append("{name}")
        elif segment.isdigit():
            out.append("{number}" if prev in ("issues", "pulls") else "{id}")
        else:
            out.append(segment)
        index += 1
    return "/" + "/".join(out)


def _json_of(resp: httpx.Response) -> JSON:
    if resp.status_code == 204 or not resp.content:
        return None
    try:
        body: JSON = resp.json()
    except ValueError:
        return resp.text
    return body


def _message_of(resp: httpx.Response) -> str:
    """GitHub's error ``message`` plus the first validation ``errors`` entries, as one line."""
    try:
        body = resp.json()
    except ValueError:
        return re.sub(r"\s+", " ", resp.text[:200]) or resp.reason_phrase
    if not isinstance(body, dict):
        return resp.reason_phrase
    message = str(body.get("message") or resp.reason_phrase)
    details: list[str] = []
    for err in body.get("errors") or []:
        if isinstance(err, dict):
            details.append(str(err.get("message") or err.get("code") or ""))
        else:
            details.append(str(err))
    details = [d for d in details if d][:3]
    return f"{message} ({'; '.join(details)})" if details else message
