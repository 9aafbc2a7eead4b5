"""The HTTP client under :class:`~agentos.forge.github.GitHubForge`: REST and GraphQL over one httpx client.

What it does for every request: bearer auth (a token, or a GitHub App installation token minted from a
JWT and refreshed before it expires), the API version and a real User-Agent, one structured log line
(``github_request``: method, route template, status, ms, remaining; never a token), rate-limit waits,
and retries. Policies, as GitHub documents them (LESSONS #14, #15):

* **Conditional GETs.** Every GET keeps its ``ETag`` and sends ``If-None-Match``; a 304 is served from
  the cache (and costs nothing against the primary limit). ETags are per token: the cache is cleared
  when the token changes.
* **Rate limits.** 403/429 with ``retry-after`` waits that long; 403/429 with
  ``x-ratelimit-remaining: 0`` waits until ``x-ratelimit-reset``; a 429 (or a 403 that says "secondary
  rate limit") without either waits 60 s, doubling on repeats. A plain 403 is a permission error and is
  raised at once. A wait longer than ``max_rate_wait`` raises :class:`RateLimited` instead. A resource
  seen at ``remaining: 0`` is waited out *before* the next request is sent.
* **Retries.** 5xx, timeouts and dropped connections are retried with exponential backoff and jitter for
  idempotent requests only (GET, PUT, PATCH, DELETE, GraphQL queries). A POST that creates something is
  retried only when it provably never left (connect errors); otherwise :class:`OutcomeUnknown` is
  raised, and the forge looks for what it may have created before trying again.

Exceptions::

    ForgeError                      forge/base.py
     ├── NotFound                   a 404 (or a GraphQL NOT_FOUND)
     └── GitHubError                any other failed request: status, method, route, message
          ├── RateLimited           the wait would be longer than max_rate_wait, or waits ran out
          └── OutcomeUnknown        a non-idempotent request may or may not have been applied
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeAlias

import httpx
import structlog

from agentos import __version__
from agentos.forge.base import ForgeError, NotFound
from agentos.redact import get_default

if TYPE_CHECKING:  # PyJWT and cryptography (8 MB resident) load only for GitHub App auth, in AppAuth
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

__all__ = [
    "API_VERSION",
    "JSON",
    "AppAuth",
    "Auth",
    "ClientStats",
    "GitHubClient",
    "GitHubError",
    "OutcomeUnknown",
    "RateLimited",
    "TokenAuth",
    "backoff_delay",
    "load_app_key",
    "rate_limit_wait",
    "route_of",
]

JSON: TypeAlias = dict[str, "JSON"] | list["JSON"] | str | int | float | bool | None
Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]
Exchange = Callable[[str, str], Awaitable[JSON]]

API_VERSION = "2022-11-28"
DEFAULT_BASE_URL = "https://api.github.com"
SECONDARY_DEFAULT_WAIT = 60.0
_ETAG_CACHE_SIZE = 4096
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "PATCH", "DELETE"})

_log = structlog.get_logger("agentos.forge.github")


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


# ---------------------------------------------------------------------------------------------- policies


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


# ---------------------------------------------------------------------------------------------- auth


class Auth(Protocol):
    """Something that yields a bearer token. ``exchange(path, jwt)`` POSTs with another bearer (App auth)."""

    async def token(self, exchange: Exchange, now: float) -> str: ...

    def invalidate(self) -> bool:
        """Forget a cached token after a 401; True when a fresh one can be had (and the request retried)."""
        ...


class TokenAuth:
    """A fixed token: a fine-grained or classic PAT, or ``GITHUB_TOKEN``."""

    def __init__(self, token: str) -> None:
        if not token.strip():
            raise ForgeError("GitHub token is empty")
        self._token = token.strip()

    def __repr__(self) -> str:
        return "TokenAuth(token=***)"

    async def token(self, exchange: Exchange, now: float) -> str:
        return self._token

    def invalidate(self) -> bool:
        return False


def load_app_key(value: str) -> str:
    """The PEM text of a GitHub App private key given as PEM text or as the path of a ``.pem`` file.

    A PEM pasted into an environment variable with literal ``\\n`` escapes is accepted too. Errors
    never echo the value: it may be the key itself.
    """
    text = value.strip()
    if "-----BEGIN" not in text:
        path = Path(text).expanduser()
        if "\n" in text or not path.is_file():
            raise ForgeError(
                "GitHub App key (GITHUB_APP_KEY / credential github_app_key) is neither a PEM "
                "private key nor the path of a readable file"
            )
        try:
            text = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ForgeError(f"GitHub App key file {path} cannot be read: {exc.__class__.__name__}") from None
    elif "\n" not in text and "\\n" in text:
        text = text.replace("\\n", "\n")
    return text


def _rsa_key(private_key_pem: str) -> RSAPrivateKey:
    """The RSA private key of ``private_key_pem``, or a one-line :class:`ForgeError` saying what is wrong."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

    try:
        key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    except TypeError:
        raise ForgeError("GitHub App private key is encrypted; give the unencrypted PEM GitHub generated") from None
    except (ValueError, UnsupportedAlgorithm):
        raise ForgeError(
            "GitHub App private key is not a readable PEM private key (the .pem file GitHub generated for the app)"
        ) from None
    if not isinstance(key, RSAPrivateKey):
        raise ForgeError("GitHub App private key is not an RSA key (GitHub signs apps with RS256)")
    return key


class AppAuth:
    """A GitHub App installation: a JWT (RS256, 9 minutes) buys an installation token (1 hour).

    The token is cached and replaced ``refresh_margin`` seconds (default 5 minutes) before its
    ``expires_at``, or after a 401. ``private_key`` is the app's PEM (see :func:`load_app_key`); a key
    that cannot sign raises :class:`ForgeError` here, not at the first request. Every minted token is
    given to the process-wide redactor. ``permissions`` are those GitHub granted the last token.
    """

    def __init__(
        self, app_id: int | str, private_key: str, installation_id: int, *, refresh_margin: float = 300.0
    ) -> None:
        self.app_id = str(app_id)
        self.installation_id = installation_id
        self.permissions: dict[str, str] = {}
        self.minted = 0
        self._key = _rsa_key(private_key)
        self._margin = refresh_margin
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        token = "***" if self._token else None
        return (
            f"AppAuth(app_id={self.app_id}, installation_id={self.installation_id}, token={token}, "
            f"minted={self.minted})"
        )

    @property
    def expires_at(self) -> float:
        """When the cached token expires (epoch seconds; 0 before the first)."""
        return self._expires_at

    def app_jwt(self, now: float) -> str:
        """The app's JWT: issued a minute in the past (clock drift), valid for 9 minutes, ``iss`` the app id."""
        import jwt

        claims = {"iat": int(now) - 60, "exp": int(now) + 540, "iss": self.app_id}
        return jwt.encode(claims, self._key, algorithm="RS256")

    async def token(self, exchange: Exchange, now: float) -> str:
        async with self._lock:
            if self._token is not None and now < self._expires_at - self._margin:
                return self._token
            route = "/app/installations/{id}/access_tokens"
            try:
                data = await exchange(f"/app/installations/{self.installation_id}/access_tokens", self.app_jwt(now))
            except NotFound:
                raise GitHubError(
                    f"installation {self.installation_id} of GitHub App {self.app_id} not found: "
                    "check github.installation_id (the number at the end of the installation's settings URL)",
                    status=404,
                    method="POST",
                    route=route,
                ) from None
            except GitHubError as exc:
                if exc.status != 401:
                    raise
                raise GitHubError(
                    f"GitHub refused the JWT of app {self.app_id} ({exc.message}): check github.app_id, "
                    "the private key and this machine's clock",
                    status=401,
                    method="POST",
                    route=route,
                ) from None
            if not isinstance(data, dict) or not isinstance(data.get("token"), str):
                raise GitHubError("installation token response has no token", method="POST", route=route)
            token = data["token"]
            assert isinstance(token, str)
            get_default().add(token)
            self._expires_at = _expiry(data.get("expires_at"), default=now + 3600)
            granted = data.get("permissions")
            self.permissions = {str(k): str(v) for k, v in granted.items()} if isinstance(granted, dict) else {}
            self._token = token
            self.minted += 1
            _log.info(
                "github_app_token_minted",
                app_id=self.app_id,
                installation_id=self.installation_id,
                expires_in=round(self._expires_at - now),
            )
            return token

    def invalidate(self) -> bool:
        self._token = None
        return True


def _expiry(value: JSON, *, default: float) -> float:
    """Epoch seconds of an ISO-8601 ``expires_at`` (``2025-01-01T01:00:00Z``), else ``default``."""
    if not isinstance(value, str):
        return default
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return default


# ---------------------------------------------------------------------------------------------- client


@dataclass
class ClientStats:
    """Live counters: ``requests`` are responses received, ``not_modified`` the 304s among them."""

    requests: int = 0
    not_modified: int = 0
    retries: int = 0
    rate_limit_waits: int = 0
    failures: int = 0

    @property
    def counted(self) -> int:
        """Requests that count against the primary rate limit (everything but 304s)."""
        return self.requests - self.not_modified


@dataclass
class _Cached:
    etag: str
    body: JSON
    next_url: str | None


class GitHubClient:
    """One keep-alive httpx client for GitHub's REST and GraphQL APIs (see the module docstring).

    ``transport`` replaces the network (``httpx.MockTransport`` in tests); ``sleep`` and ``clock`` are
    the only sources of waiting and of time, so tests record waits instead of sleeping.
    ``max_retries`` bounds retries of failures and, separately, rate-limit waits per request.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        auth: Auth,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.time,
        max_retries: int = 5,
        timeout: float = 30.0,
        max_rate_wait: float = 900.0,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.sleep = sleep
        self.clock = clock
        self.stats = ClientStats()
        self._auth = auth
        self._max_retries = max_retries
        self._max_rate_wait = max_rate_wait
        self._jitter = jitter
        self._base_path = httpx.URL(self.base_url).path.rstrip("/")
        self._etags: OrderedDict[str, _Cached] = OrderedDict()
        self._etag_token: str | None = None
        self._limits: dict[str, tuple[int, float]] = {}
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            transport=transport,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            headers={
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": API_VERSION,
                "User-Agent": f"agentos/{__version__}",
            },
        )

    def __repr__(self) -> str:
        s = self.stats
        limits = ", ".join(f"{k}={v[0]}" for k, v in sorted(self._limits.items()))
        return (
            f"<GitHubClient {self.base_url} requests={s.requests} not_modified={s.not_modified} retries={s.retries} "
            f"rate_waits={s.rate_limit_waits} remaining[{limits}]>"
        )

    @property
    def auth(self) -> Auth:
        return self._auth

    async def aclose(self) -> None:
        await self._http.aclose()

    async def token(self) -> str:
        """The current bearer token (minting or refreshing an App installation token if needed)."""
        return await self._auth.token(self._exchange, self.clock())

    # -- public verbs ---------------------------------------------------------------------------------

    async def get(self, path: str, *, params: Mapping[str, str | int] | None = None) -> JSON:
        """GET ``path`` conditionally: a 304 returns the cached body."""
        body, _ = await self._get_page(path, params)
        return body

    async def paginate(
        self, path: str, *, params: Mapping[str, str | int] | None = None, items_key: str | None = None
    ) -> list[JSON]:
        """Every item of a list endpoint, 100 per page, following ``Link: rel="next"`` (each page conditional).

        ``items_key`` names the list inside an object response (``check_runs`` of the check-runs endpoint).
        """
        items: list[JSON] = []
        url: str | None = path
        page_params: Mapping[str, str | int] | None = {"per_page": 100, **(params or {})}
        while url is not None:
            body, url = await self._get_page(url, page_params)
            page_params = None
            if items_key is not None:
                body = body.get(items_key) if isinstance(body, dict) else None
            if not isinstance(body, list):
                raise GitHubError("expected a list", status=200, method="GET", route=route_of(path))
            items.extend(body)
        return items

    async def response(self, path: str, *, params: Mapping[str, str | int] | None = None) -> httpx.Response:
        """GET ``path`` unconditionally and return the response whatever its status (doctor reads headers)."""
        return await self._send("GET", path, params=params, idempotent=True)

    async def get_text(self, path: str) -> str:
        """GET a text resource, following redirects (Actions job logs redirect to blob storage)."""
        resp = await self._send("GET", path, idempotent=True, follow_redirects=True)
        self._raise_for_status(resp, "GET", path)
        return resp.text

    async def post(self, path: str, *, json: JSON = None, idempotent: bool = False) -> JSON:
        """POST; not retried after it may have arrived unless ``idempotent`` (e.g. adding labels)."""
        return await self._call("POST", path, json=json, idempotent=idempotent)

    async def put(self, path: str, *, json: JSON = None) -> JSON:
        return await self._call("PUT", path, json=json, idempotent=True)

    async def patch(self, path: str, *, json: JSON = None) -> JSON:
        return await self._call("PATCH", path, json=json, idempotent=True)

    async def delete(self, path: str) -> None:
        await self._call("DELETE", path, json=None, idempotent=True)

    async def graphql(
        self, query: str, variables: Mapping[str, JSON] | None = None, *, idempotent: bool | None = None
    ) -> dict[str, JSON]:
        """Run a GraphQL document; returns ``data``. An ``errors`` array raises even on HTTP 200.

        Queries are retried like GETs; mutations are not, unless ``idempotent=True`` (setting a field value).
        """
        if idempotent is None:
            idempotent = not query.lstrip().startswith("mutation")
        payload: JSON = {"query": query, "variables": dict(variables or {})}
        body = await self._call("POST", "/graphql", json=payload, idempotent=idempotent)
        if not isinstance(body, dict):
            raise GitHubError("GraphQL response is not an object", status=200, method="POST", route="/graphql")
        errors = body.get("errors")
        if isinstance(errors, list) and errors:
            first = errors[0] if isinstance(errors[0], dict) else {}
            message = str(first.get("message", "GraphQL error"))
            kind = first.get("type")
            if kind == "NOT_FOUND":
                raise NotFound(f"GitHub POST /graphql → NOT_FOUND: {message}")
            if kind == "RATE_LIMITED":
                reset = self._limits.get("graphql", (0, self.clock() + SECONDARY_DEFAULT_WAIT))[1]
                raise RateLimited(message, retry_at=reset, status=200, method="POST", route="/graphql")
            raise GitHubError(f"{kind or 'GraphQL'}: {message}", status=200, method="POST", route="/graphql")
        data = body.get("data")
        if not isinstance(data, dict):
            raise GitHubError("GraphQL response has no data", status=200, method="POST", route="/graphql")
        return data

    # -- internals ------------------------------------------------------------------------------------

    async def _exchange(self, path: str, jwt: str) -> JSON:
        resp = await self._send("POST", path, idempotent=True, bearer=jwt)
        self._raise_for_status(resp, "POST", path)
        return _json_of(resp)

    async def _call(self, method: str, path: str, *, json: JSON, idempotent: bool) -> JSON:
        resp = await self._send(method, path, json=json, idempotent=idempotent)
        self._raise_for_status(resp, method, path)
        return _json_of(resp)

    async def _get_page(self, url: str, params: Mapping[str, str | int] | None) -> tuple[JSON, str | None]:
        key = str(self._http.build_request("GET", url, params=params).url)
        resp = await self._send("GET", url, params=params, idempotent=True, cache_key=key)
        if resp.status_code == 304:
            cached = self._etags.get(key)
            if cached is not None:
                self._etags.move_to_end(key)
                return cached.body, cached.next_url
            resp = await self._send("GET", url, params=params, idempotent=True)  # cache lost in between
        self._raise_for_status(resp, "GET", url)
        body = _json_of(resp)
        next_url = resp.links.get("next", {}).get("url")
        etag = resp.headers.get("etag")
        if etag:
            self._etags[key] = _Cached(etag, body, next_url)
            self._etags.move_to_end(key)
            while len(self._etags) > _ETAG_CACHE_SIZE:
                self._etags.popitem(last=False)
        return body, next_url

    def _route(self, url: str) -> str:
        path = httpx.URL(url).path if "://" in url else url
        if self._base_path and path.startswith(self._base_path + "/"):
            path = path[len(self._base_path) :]
        return route_of(path)

    @staticmethod
    def _resource(route: str) -> str:
        if route == "/graphql":
            return "graphql"
        return "search" if route.startswith("/search") else "core"

    async def _wait_for_budget(self, resource: str, method: str, route: str) -> None:
        remaining, reset = self._limits.get(resource, (1, 0.0))
        now = self.clock()
        if remaining > 0 or reset <= now:
            return
        wait = reset - now + 1.0
        if wait > self._max_rate_wait:
            raise RateLimited(f"{resource} budget exhausted", retry_at=reset, status=None, method=method, route=route)
        _log.warning("github_rate_limit_wait", method=method, route=route, wait=round(wait, 3), reason="exhausted")
        self.stats.rate_limit_waits += 1
        await self.sleep(wait)
        self._limits.pop(resource, None)

    def _note_limits(self, resp: httpx.Response, resource: str) -> int | None:
        remaining = resp.headers.get("x-ratelimit-remaining")
        reset = resp.headers.get("x-ratelimit-reset")
        if remaining is None or reset is None:
            return None
        try:
            value = int(remaining)
            self._limits[resp.headers.get("x-ratelimit-resource", resource)] = (value, float(reset))
        except ValueError:
            return None
        return value

    async def _send(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str | int] | None = None,
        json: JSON = None,
        idempotent: bool,
        cache_key: str | None = None,
        bearer: str | None = None,
        follow_redirects: bool = False,
    ) -> httpx.Response:
        route = self._route(url)
        resource = self._resource(route)
        failures = rate_waits = secondary = 0
        refreshed = False
        while True:
            await self._wait_for_budget(resource, method, route)
            token = bearer if bearer is not None else await self._auth.token(self._exchange, self.clock())
            headers = {"Authorization": f"Bearer {token}"}
            if bearer is None and token != self._etag_token:
                self._etags.clear()  # ETags are per token: a new token gets 200s, never stale 304s
                self._etag_token = token
            if cache_key is not None and (cached := self._etags.get(cache_key)) is not None:
                headers["If-None-Match"] = cached.etag
            started = time.perf_counter()
            try:
                resp = await self._http.request(
                    method,
                    url,
                    params=params,
                    json=json if method != "GET" else None,
                    headers=headers,
                    follow_redirects=follow_redirects,
                )
            except httpx.TransportError as exc:
                ms = round((time.perf_counter() - started) * 1000, 1)
                never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
                _log.warning("github_request", method=method, route=route, status=None, ms=ms, error=type(exc).__name__)
                self.stats.failures += 1
                if (idempotent or never_sent) and failures < self._max_retries:
                    failures += 1
                    self.stats.retries += 1
                    await self.sleep(backoff_delay(failures, self._jitter()))
                    continue
                error = GitHubError if (idempotent or never_sent) else OutcomeUnknown
                raise error(f"{type(exc).__name__}: {exc}", status=None, method=method, route=route) from exc
            ms = round((time.perf_counter() - started) * 1000, 1)
            remaining = self._note_limits(resp, resource)
            self.stats.requests += 1
            if resp.status_code == 304:
                self.stats.not_modified += 1
            _log.info("github_request", method=method, route=route, status=resp.status_code, ms=ms, remaining=remaining)
            wait = rate_limit_wait(resp.status_code, resp.headers, resp.text, now=self.clock(), repeats=secondary)
            if wait is not None:
                if "retry-after" not in resp.headers and resp.headers.get("x-ratelimit-remaining") != "0":
                    secondary += 1
                if wait > self._max_rate_wait or rate_waits >= self._max_retries:
                    raise RateLimited(
                        _message_of(resp),
                        retry_at=self.clock() + wait,
                        status=resp.status_code,
                        method=method,
                        route=route,
                    )
                rate_waits += 1
                self.stats.rate_limit_waits += 1
                self._limits.pop(resource, None)  # this wait covers it; do not wait twice
                _log.warning(
                    "github_rate_limit_wait", method=method, route=route, status=resp.status_code, wait=round(wait, 3)
                )
                await self.sleep(wait)
                continue
            if resp.status_code >= 500:
                self.stats.failures += 1
                if idempotent and failures < self._max_retries:
                    failures += 1
                    self.stats.retries += 1
                    await self.sleep(backoff_delay(failures, self._jitter()))
                    continue
                error = GitHubError if idempotent else OutcomeUnknown
                raise error(_message_of(resp), status=resp.status_code, method=method, route=route)
            if resp.status_code == 401 and bearer is None and not refreshed and self._auth.invalidate():
                refreshed = True
                continue
            return resp

    def _raise_for_status(self, resp: httpx.Response, method: str, url: str) -> None:
        if resp.status_code < 400:
            return
        route = self._route(url)
        if resp.status_code == 404:
            raise NotFound(f"GitHub {method} {route} → 404: {_message_of(resp)}")
        raise GitHubError(_message_of(resp), status=resp.status_code, method=method, route=route)


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
