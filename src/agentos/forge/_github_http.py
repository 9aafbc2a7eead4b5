"""The HTTP client under :class:`~agentos.forge.github.GitHubForge`: REST and GraphQL over one httpx client.

What it does for every request: bearer auth (a token, or a GitHub App installation token minted from a
JWT and refreshed before it expires), the API version and a real User-Agent, one structured log line
(``github_request``: method, route template, status, ms, remaining; never a token), rate-limit waits,
and retries. Policies, as GitHub documents them:

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

The errors and the wait/backoff policies are in :mod:`agentos.forge._github_policy`, token and App auth in
:mod:`agentos.forge._github_auth`; this module re-exports their public names.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import httpx
import structlog

from agentos import __version__
from agentos.forge._github_auth import AppAuth, Auth, TokenAuth, load_app_key
from agentos.forge._github_policy import (
    JSON,
    SECONDARY_DEFAULT_WAIT,
    GitHubError,
    OutcomeUnknown,
    RateLimited,
    _json_of,
    _message_of,
    backoff_delay,
    rate_limit_wait,
    route_of,
)
from agentos.forge.base import NotFound

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

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]

API_VERSION = "2022-11-28"
DEFAULT_BASE_URL = "https://api.github.com"
_ETAG_CACHE_SIZE = 4096

_log = structlog.get_logger("agentos.forge.github")


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
class _Call:
    """One request's tries so far: each kind of retry has its own budget (``max_retries``)."""

    method: str
    route: str
    idempotent: bool
    failures: int = 0
    rate_waits: int = 0
    secondary: int = 0
    refreshed: bool = False


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
        """Send until GitHub answers for good: waits out rate limits, retries failures, refreshes a 401 once."""
        call = _Call(method, self._route(url), idempotent)
        resource = self._resource(call.route)
        while True:
            await self._wait_for_budget(resource, method, call.route)
            headers = await self._headers(bearer, cache_key)
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
                await self._retry_transport_error(call, exc, started)
                continue
            self._note_response(call, resp, resource, started)
            if await self._waited_for_rate_limit(call, resp, resource):
                continue
            if resp.status_code >= 500:
                await self._retry_server_error(call, resp)
                continue
            if resp.status_code == 401 and bearer is None and not call.refreshed and self._auth.invalidate():
                call.refreshed = True  # a revoked or expired App token: mint a new one, once
                continue
            return resp

    async def _headers(self, bearer: str | None, cache_key: str | None) -> dict[str, str]:
        """Authorization (the auth's token unless ``bearer`` is given) and ``If-None-Match`` for a cached GET."""
        token = bearer if bearer is not None else await self._auth.token(self._exchange, self.clock())
        headers = {"Authorization": f"Bearer {token}"}
        if bearer is None and token != self._etag_token:
            self._etags.clear()  # ETags are per token: a new token gets 200s, never stale 304s
            self._etag_token = token
        if cache_key is not None and (cached := self._etags.get(cache_key)) is not None:
            headers["If-None-Match"] = cached.etag
        return headers

    async def _retry_transport_error(self, call: _Call, exc: httpx.TransportError, started: float) -> None:
        """Back off before the next try, or raise: a request that may have arrived is retried only if idempotent
        (else :class:`OutcomeUnknown`); one that never left (connect errors) always is."""
        ms = round((time.perf_counter() - started) * 1000, 1)
        never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
        _log.warning(
            "github_request", method=call.method, route=call.route, status=None, ms=ms, error=type(exc).__name__
        )
        self.stats.failures += 1
        if (call.idempotent or never_sent) and call.failures < self._max_retries:
            await self._back_off(call)
            return
        error = GitHubError if (call.idempotent or never_sent) else OutcomeUnknown
        raise error(f"{type(exc).__name__}: {exc}", status=None, method=call.method, route=call.route) from exc

    async def _retry_server_error(self, call: _Call, resp: httpx.Response) -> None:
        """Back off before the next try of an idempotent request after a 5xx, or raise."""
        self.stats.failures += 1
        if call.idempotent and call.failures < self._max_retries:
            await self._back_off(call)
            return
        error = GitHubError if call.idempotent else OutcomeUnknown
        raise error(_message_of(resp), status=resp.status_code, method=call.method, route=call.route)

    async def _back_off(self, call: _Call) -> None:
        call.failures += 1
        self.stats.retries += 1
        await self.sleep(backoff_delay(call.failures, self._jitter()))

    def _note_response(self, call: _Call, resp: httpx.Response, resource: str, started: float) -> None:
        ms = round((time.perf_counter() - started) * 1000, 1)
        remaining = self._note_limits(resp, resource)
        self.stats.requests += 1
        if resp.status_code == 304:
            self.stats.not_modified += 1
        _log.info(
            "github_request", method=call.method, route=call.route, status=resp.status_code, ms=ms, remaining=remaining
        )

    async def _waited_for_rate_limit(self, call: _Call, resp: httpx.Response, resource: str) -> bool:
        """True after waiting out a rate-limited answer (send again); raises :class:`RateLimited` when the wait
        is longer than ``max_rate_wait`` or the waits ran out; False when the answer is not rate-limited."""
        now = self.clock()
        wait = rate_limit_wait(resp.status_code, resp.headers, resp.text, now=now, repeats=call.secondary)
        if wait is None:
            return False
        if "retry-after" not in resp.headers and resp.headers.get("x-ratelimit-remaining") != "0":
            call.secondary += 1
        if wait > self._max_rate_wait or call.rate_waits >= self._max_retries:
            raise RateLimited(
                _message_of(resp), retry_at=now + wait, status=resp.status_code, method=call.method, route=call.route
            )
        call.rate_waits += 1
        self.stats.rate_limit_waits += 1
        self._limits.pop(resource, None)  # this wait covers it; do not wait twice
        _log.warning(
            "github_rate_limit_wait", method=call.method, route=call.route, status=resp.status_code, wait=round(wait, 3)
        )
        await self.sleep(wait)
        return True

    def _raise_for_status(self, resp: httpx.Response, method: str, url: str) -> None:
        if resp.status_code < 400:
            return
        route = self._route(url)
        if resp.status_code == 404:
            raise NotFound(f"GitHub {method} {route} → 404: {_message_of(resp)}")
        raise GitHubError(_message_of(resp), status=resp.status_code, method=method, route=route)
