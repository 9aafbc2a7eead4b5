"""The GitHub HTTP client over ``httpx.MockTransport``: headers, pages, ETags, rate limits, retries, logs, auth."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from structlog.testing import capture_logs

from agentos.forge.base import ForgeError, NotFound
from agentos.forge.github import (
    API_VERSION,
    AppAuth,
    GitHubClient,
    GitHubError,
    GitHubForge,
    OutcomeUnknown,
    RateLimited,
    TokenAuth,
    backoff_delay,
    check_run_state,
    combine_states,
    load_app_key,
    rate_limit_wait,
    ready_verdict,
    route_of,
)
from tests.fakes.github_server import app_key_pair

TOKEN = "ghp_" + "S3cr3tT0ken" * 4
BASE = "https://api.github.test"
NOW = 1_750_000_000.0


class Clock:
    """A fake clock whose ``sleep`` records the wait and moves time on, instantly."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


Handler = Callable[[httpx.Request], httpx.Response]


def make_client(handler: Handler, clock: Clock | None = None, **kw: Any) -> tuple[GitHubClient, Clock]:
    clock = clock or Clock()
    kw.setdefault("auth", TokenAuth(TOKEN))
    client = GitHubClient(
        BASE, transport=httpx.MockTransport(handler), sleep=clock.sleep, clock=clock, jitter=lambda: 0.5, **kw
    )
    return client, clock


def json_response(body: Any, status: int = 200, /, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


class Recorder:
    """A MockTransport handler that replays scripted responses and records the requests."""

    def __init__(self, *responses: httpx.Response | Exception) -> None:
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        item = self.responses.pop(0) if len(self.responses) > 1 else self.responses[0]
        if isinstance(item, Exception):
            raise item
        return item


class TestRateLimitWait:
    """The pure rate-limit policy."""

    @pytest.mark.parametrize(
        ("status", "headers", "body", "repeats", "expected"),
        [
            pytest.param(200, {}, "", 0, None, id="ok"),
            pytest.param(403, {"retry-after": "3"}, "", 0, 3.0, id="secondary-retry-after"),
            pytest.param(429, {"retry-after": "7"}, "", 0, 7.0, id="429-retry-after"),
            pytest.param(
                403,
                {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) + 120)},
                "",
                0,
                121.0,
                id="primary",
            ),
            pytest.param(
                403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) - 5)}, "", 0, 1.0, id="reset-past"
            ),
            pytest.param(403, {}, "You have exceeded a secondary rate limit", 0, 60.0, id="secondary-no-header"),
            pytest.param(403, {}, "You have exceeded a secondary rate limit", 2, 240.0, id="secondary-repeats-double"),
            pytest.param(429, {}, "", 0, 60.0, id="429-bare"),
            pytest.param(
                403, {"x-ratelimit-remaining": "17"}, "Resource not accessible by integration", 0, None, id="plain-403"
            ),
            pytest.param(404, {"retry-after": "3"}, "", 0, None, id="404-is-not-a-limit"),
        ],
    )
    def test_table(self, status: int, headers: dict[str, str], body: str, repeats: int, expected: float | None) -> None:
        """Each response maps to the documented wait, and a plain 403 to none."""
        assert rate_limit_wait(status, headers, body, now=NOW, repeats=repeats) == expected


class TestBackoffDelay:
    """Exponential backoff with jitter."""

    @pytest.mark.parametrize(
        ("attempt", "rand", "expected"),
        [(1, 0.0, 0.5), (1, 1.0, 1.0), (3, 0.0, 2.0), (3, 1.0, 4.0), (10, 1.0, 30.0), (10, 0.0, 15.0)],
    )
    def test_table(self, attempt: int, rand: float, expected: float) -> None:
        """The delay doubles per attempt, is capped at 30 s, and jitter keeps at least half of it."""
        assert backoff_delay(attempt, rand) == pytest.approx(expected)


class TestRouteOf:
    """Route templates for logs."""

    @pytest.mark.parametrize(
        ("path", "route"),
        [
            ("/repos/o/r/issues", "/repos/{owner}/{repo}/issues"),
            ("/repos/o/r/issues/12/comments", "/repos/{owner}/{repo}/issues/{number}/comments"),
            ("/repos/o/r/issues/12/labels/agentos%3Aready", "/repos/{owner}/{repo}/issues/{number}/labels/{name}"),
            ("/repos/o/r/collaborators/alice/permission", "/repos/{owner}/{repo}/collaborators/{user}/permission"),
            ("/repos/o/r/git/refs/heads/agentos/4-fix", "/repos/{owner}/{repo}/git/refs/heads/{ref}"),
            ("/repos/o/r/commits/" + "a" * 40 + "/check-runs", "/repos/{owner}/{repo}/commits/{ref}/check-runs"),
            ("/app/installations/99/access_tokens", "/app/installations/{id}/access_tokens"),
            ("/graphql", "/graphql"),
        ],
    )
    def test_table(self, path: str, route: str) -> None:
        """Owner, repo, numbers, users, refs and shas become placeholders."""
        assert route_of(path) == route


T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
T1 = datetime(2025, 3, 1, 12, 5, tzinfo=UTC)


class TestReadyVerdict:
    """Who may make an issue ready, and when an edit revokes it."""

    @pytest.mark.parametrize(
        ("ready_at", "actor", "role", "edited_at", "verdict"),
        [
            pytest.param(T0, "maint", "triage", None, "ready", id="triage"),
            pytest.param(T0, "maint", "admin", T0, "ready", id="edit-at-same-moment"),
            pytest.param(T1, "maint", "write", T0, "ready", id="edited-before-ready"),
            pytest.param(T0, "maint", "write", T1, "edited_after_ready", id="edited-after-ready"),
            pytest.param(T0, "guest", "read", None, "untrusted", id="read-only"),
            pytest.param(T0, "stranger", "none", None, "untrusted", id="stranger"),
            pytest.param(None, None, "none", None, "no_ready_event", id="no-event"),
        ],
    )
    def test_table(
        self, ready_at: datetime | None, actor: str | None, role: str, edited_at: datetime | None, verdict: str
    ) -> None:
        """Triage or more, and no body edit after the ready moment."""
        got = ready_verdict(ready_at=ready_at, actor=actor, role=role, trusted_permission="triage", edited_at=edited_at)
        assert got == verdict

    def test_trusted_actor_needs_no_role(self) -> None:
        """A login in ``trusted_actors`` passes without a permission."""
        got = ready_verdict(
            ready_at=T0, actor="agentos[bot]", role="none", trusted_permission="write", edited_at=None,
            trusted_actors=frozenset({"agentos[bot]"}),
        )  # fmt: skip
        assert got == "ready"


class TestCheckStates:
    """Check-run conclusions and their combination."""

    @pytest.mark.parametrize(
        ("status", "conclusion", "state"),
        [
            ("queued", None, "pending"),
            ("in_progress", None, "pending"),
            ("completed", "success", "success"),
            ("completed", "skipped", "success"),
            ("completed", "neutral", "success"),
            ("completed", "failure", "failure"),
            ("completed", "timed_out", "failure"),
            ("completed", "cancelled", "failure"),
            ("completed", "action_required", "pending"),
        ],
    )
    def test_run_state(self, status: str, conclusion: str | None, state: str) -> None:
        """Only completed runs decide; success, neutral and skipped pass."""
        assert check_run_state(status, conclusion) == state

    def test_combine(self) -> None:
        """Failure beats pending beats success; nothing at all is None."""
        assert combine_states(["success", "pending", "failure"]) == "failure"
        assert combine_states(["success", "pending"]) == "pending"
        assert combine_states(["success"]) == "success"
        assert combine_states([]) is None


class TestHeaders:
    """What every request carries."""

    async def test_standard_headers(self) -> None:
        """Accept, API version, User-Agent and bearer token are sent."""
        rec = Recorder(json_response({}))
        client, _ = make_client(rec)
        await client.get("/repos/o/r")
        headers = rec.requests[0].headers
        assert headers["accept"] == "application/vnd.github+json"
        assert headers["x-github-api-version"] == API_VERSION
        assert headers["user-agent"].startswith("agentos/")
        assert headers["authorization"] == f"Bearer {TOKEN}"


class TestPagination:
    """``paginate`` follows Link headers."""

    async def test_follows_next_links(self) -> None:
        """Pages are followed by their absolute next URL; per_page=100 goes only on the first request."""

        def handler(request: httpx.Request) -> httpx.Response:
            page = int(request.url.params.get("page", "1"))
            headers = {}
            if page < 3:
                headers["link"] = f'<{BASE}/repos/o/r/issues?state=open&per_page=100&page={page + 1}>; rel="next"'
            return httpx.Response(200, json=[{"n": page * 10 + i} for i in range(2)], headers=headers)

        seen: list[httpx.Request] = []

        def recording(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return handler(request)

        client, _ = make_client(recording)
        items = await client.paginate("/repos/o/r/issues", params={"state": "open"})
        assert items == [{"n": 10}, {"n": 11}, {"n": 20}, {"n": 21}, {"n": 30}, {"n": 31}]
        assert [r.url.params.get("page") for r in seen] == [None, "2", "3"]
        assert seen[0].url.params["per_page"] == "100"

    async def test_items_key(self) -> None:
        """An object response is paginated through its named list (check runs)."""
        rec = Recorder(json_response({"total_count": 1, "check_runs": [{"id": 1}]}))
        client, _ = make_client(rec)
        assert await client.paginate("/repos/o/r/commits/abc/check-runs", items_key="check_runs") == [{"id": 1}]


class TestConditionalRequests:
    """ETags: 304s are served from the cache."""

    async def test_304_served_from_cache(self) -> None:
        """The second GET sends If-None-Match and a 304 returns the first body."""
        rec = Recorder(
            json_response([{"number": 1}], etag='W/"abc"'),
            httpx.Response(304, headers={"etag": 'W/"abc"'}),
        )
        client, _ = make_client(rec)
        first = await client.get("/repos/o/r/issues")
        second = await client.get("/repos/o/r/issues")
        assert first == second == [{"number": 1}]
        assert "if-none-match" not in rec.requests[0].headers
        assert rec.requests[1].headers["if-none-match"] == 'W/"abc"'
        assert client.stats.not_modified == 1
        assert client.stats.counted == 1

    async def test_pages_are_cached_with_their_links(self) -> None:
        """A 304 on the first page still leads to the next page."""
        link = {"link": f'<{BASE}/x?page=2>; rel="next"'}
        responses = {
            (None, False): json_response([1], etag='"p1"', **link),
            ("2", False): json_response([2], etag='"p2"'),
            (None, True): httpx.Response(304),
            ("2", True): httpx.Response(304),
        }

        def handler(request: httpx.Request) -> httpx.Response:
            return responses[(request.url.params.get("page"), "if-none-match" in request.headers)]

        client, _ = make_client(handler)
        assert await client.paginate("/x") == [1, 2]
        assert await client.paginate("/x") == [1, 2]
        assert client.stats.not_modified == 2

    async def test_new_token_clears_cache(self) -> None:
        """ETags are per token: after a token change no If-None-Match is sent."""

        class Rotating:
            value = "token-one-123456"

            async def token(self, exchange: Any, now: float) -> str:
                return self.value

            def invalidate(self) -> bool:
                return False

        auth = Rotating()
        rec = Recorder(json_response({"a": 1}, etag='"e"'))
        client, _ = make_client(rec, auth=auth)
        await client.get("/r")
        auth.value = "token-two-123456"
        await client.get("/r")
        assert "if-none-match" not in rec.requests[1].headers


class TestRateLimits:
    """Primary and secondary limits are waited out (recorded, not slept); a plain 403 is an error."""

    async def test_secondary_limit_waits_retry_after_and_succeeds(self) -> None:
        """403 with retry-after: 3 → one 3 s wait, then the retry succeeds."""
        rec = Recorder(
            json_response({"message": "You have exceeded a secondary rate limit."}, 403, **{"retry-after": "3"}),
            json_response({"ok": True}),
        )
        client, clock = make_client(rec)
        assert await client.get("/repos/o/r") == {"ok": True}
        assert clock.sleeps == [3.0]
        assert len(rec.requests) == 2

    async def test_primary_limit_waits_until_reset(self) -> None:
        """403 with remaining 0 waits until x-ratelimit-reset (plus a second)."""
        reset = str(int(NOW) + 90)
        rec = Recorder(
            json_response(
                {"message": "API rate limit exceeded"},
                403,
                **{"x-ratelimit-remaining": "0", "x-ratelimit-reset": reset},
            ),
            json_response({"ok": True}),
        )
        client, clock = make_client(rec)
        assert await client.get("/repos/o/r") == {"ok": True}
        assert clock.sleeps == [91.0]

    async def test_exhausted_budget_is_waited_before_sending(self) -> None:
        """After a 200 that said remaining 0, the next request waits for the reset first."""
        reset = str(int(NOW) + 30)
        rec = Recorder(
            json_response({}, 200, **{"x-ratelimit-remaining": "0", "x-ratelimit-reset": reset}),
            json_response({}, 200, **{"x-ratelimit-remaining": "4999", "x-ratelimit-reset": reset}),
        )
        client, clock = make_client(rec)
        await client.get("/a")
        await client.get("/b")
        assert clock.sleeps == [31.0]
        assert len(rec.requests) == 2

    async def test_plain_403_is_not_retried(self) -> None:
        """A 403 without rate-limit signals raises at once, with no wait and one request."""
        rec = Recorder(
            json_response(
                {"message": "Resource not accessible by integration"}, 403, **{"x-ratelimit-remaining": "4000"}
            )
        )
        client, clock = make_client(rec)
        with pytest.raises(GitHubError) as info:
            await client.get("/repos/o/r/issues")
        assert not isinstance(info.value, RateLimited)
        assert info.value.status == 403
        assert "Resource not accessible" in str(info.value)
        assert "/repos/{owner}/{repo}/issues" in str(info.value)
        assert clock.sleeps == []
        assert len(rec.requests) == 1

    async def test_too_long_wait_raises_rate_limited(self) -> None:
        """A wait beyond max_rate_wait raises RateLimited with retry_at instead of sleeping."""
        reset = str(int(NOW) + 3000)
        rec = Recorder(
            json_response({"message": "x"}, 403, **{"x-ratelimit-remaining": "0", "x-ratelimit-reset": reset})
        )
        client, clock = make_client(rec, max_rate_wait=600)
        with pytest.raises(RateLimited) as info:
            await client.get("/r")
        assert info.value.retry_at == pytest.approx(NOW + 3001)
        assert clock.sleeps == []

    async def test_rate_limited_post_is_retried(self) -> None:
        """A rate-limited create was not applied, so it is retried after the wait."""
        rec = Recorder(
            json_response({"message": "secondary rate limit"}, 403, **{"retry-after": "2"}),
            json_response({"id": 5}, 201),
        )
        client, clock = make_client(rec)
        assert await client.post("/repos/o/r/issues/1/comments", json={"body": "x"}) == {"id": 5}
        assert clock.sleeps == [2.0]


class TestRetries:
    """5xx and transport failures: idempotent requests retry, creates do not."""

    async def test_5xx_burst_is_retried(self) -> None:
        """Three 502s, then a 200: the GET succeeds after three backoff waits."""
        rec = Recorder(*(json_response({"message": "bad gateway"}, 502) for _ in range(3)), json_response({"ok": 1}))
        client, clock = make_client(rec)
        assert await client.get("/r") == {"ok": 1}
        assert clock.sleeps == [0.75, 1.5, 3.0]
        assert client.stats.retries == 3

    async def test_retries_run_out(self) -> None:
        """After max_retries the 5xx is raised."""
        rec = Recorder(json_response({"message": "unavailable"}, 503))
        client, _ = make_client(rec, max_retries=2)
        with pytest.raises(GitHubError) as info:
            await client.get("/r")
        assert info.value.status == 503
        assert len(rec.requests) == 3

    async def test_timeout_on_get_is_retried(self) -> None:
        """A read timeout on a GET is retried."""
        rec = Recorder(httpx.ReadTimeout("slow"), json_response({"ok": 1}))
        client, _ = make_client(rec)
        assert await client.get("/r") == {"ok": 1}

    async def test_5xx_on_create_is_outcome_unknown(self) -> None:
        """A 502 to a POST is not retried: it may have been applied."""
        rec = Recorder(json_response({"message": "bad gateway"}, 502), json_response({"id": 1}, 201))
        client, clock = make_client(rec)
        with pytest.raises(OutcomeUnknown):
            await client.post("/repos/o/r/issues", json={"title": "t"})
        assert len(rec.requests) == 1
        assert clock.sleeps == []

    async def test_timeout_on_create_is_outcome_unknown(self) -> None:
        """A read timeout on a POST is not retried."""
        rec = Recorder(httpx.ReadTimeout("slow"), json_response({"id": 1}, 201))
        client, _ = make_client(rec)
        with pytest.raises(OutcomeUnknown):
            await client.post("/repos/o/r/pulls", json={})
        assert len(rec.requests) == 1

    async def test_connect_error_on_create_is_retried(self) -> None:
        """A POST that never left (connect error) is safe to retry."""
        rec = Recorder(httpx.ConnectError("refused"), json_response({"id": 1}, 201))
        client, _ = make_client(rec)
        assert await client.post("/repos/o/r/issues", json={}) == {"id": 1}
        assert len(rec.requests) == 2

    async def test_idempotent_post_is_retried(self) -> None:
        """A POST marked idempotent (adding labels) is retried on 5xx."""
        rec = Recorder(json_response({}, 500), json_response([], 200))
        client, _ = make_client(rec)
        assert await client.post("/repos/o/r/issues/1/labels", json={"labels": ["a"]}, idempotent=True) == []


class TestErrors:
    """Errors are typed and one line."""

    async def test_404_is_not_found(self) -> None:
        """A 404 raises the forge's NotFound."""
        client, _ = make_client(Recorder(json_response({"message": "Not Found"}, 404)))
        with pytest.raises(NotFound):
            await client.get("/repos/o/r/issues/9")

    async def test_validation_errors_in_message(self) -> None:
        """A 422 carries GitHub's message and the first validation errors."""
        body = {"message": "Validation Failed", "errors": [{"message": "A pull request already exists for o:b."}]}
        client, _ = make_client(Recorder(json_response(body, 422)))
        with pytest.raises(GitHubError) as info:
            await client.post("/repos/o/r/pulls", json={})
        assert info.value.message == "Validation Failed (A pull request already exists for o:b.)"
        assert "\n" not in str(info.value)

    async def test_graphql_errors_raise_on_200(self) -> None:
        """GraphQL errors raise even with HTTP 200; NOT_FOUND is NotFound."""
        client, _ = make_client(
            Recorder(json_response({"data": None, "errors": [{"type": "NOT_FOUND", "message": "no"}]}))
        )
        with pytest.raises(NotFound):
            await client.graphql("query Q { viewer { login } }")
        client, _ = make_client(Recorder(json_response({"errors": [{"message": "Field 'x' doesn't exist"}]})))
        with pytest.raises(GitHubError, match="doesn't exist"):
            await client.graphql("query Q { x }")

    async def test_graphql_query_retried_mutation_not(self) -> None:
        """A GraphQL query is retried on 502; a mutation is not."""
        rec = Recorder(json_response({}, 502), json_response({"data": {"ok": 1}}))
        client, _ = make_client(rec)
        assert await client.graphql("query Q { ok }") == {"ok": 1}
        rec = Recorder(json_response({}, 502), json_response({"data": {"ok": 1}}))
        client, _ = make_client(rec)
        with pytest.raises(OutcomeUnknown):
            await client.graphql("mutation M { ok }")
        assert len(rec.requests) == 1


class TestLogging:
    """One structured line per request; never a token."""

    async def test_one_line_per_request(self) -> None:
        """github_request carries method, route, status, ms and remaining."""
        rec = Recorder(
            json_response([], 200, **{"x-ratelimit-remaining": "4321", "x-ratelimit-reset": str(int(NOW) + 60)})
        )
        client, _ = make_client(rec)
        with capture_logs() as logs:
            await client.get("/repos/acme/calc/issues/7/comments")
        lines = [e for e in logs if e["event"] == "github_request"]
        assert len(lines) == 1
        assert lines[0]["method"] == "GET"
        assert lines[0]["route"] == "/repos/{owner}/{repo}/issues/{number}/comments"
        assert lines[0]["status"] == 200
        assert lines[0]["remaining"] == 4321
        assert isinstance(lines[0]["ms"], float)

    async def test_token_never_logged(self) -> None:
        """Across success, rate limits, retries and failures, no log line or error contains the token."""
        rec = Recorder(
            json_response({"message": "secondary rate limit"}, 403, **{"retry-after": "1"}),
            json_response({}, 502),
            httpx.ReadTimeout("slow"),
            json_response({"ok": 1}),
            json_response({"message": "Bad credentials"}, 401),
        )
        client, _ = make_client(rec)
        with capture_logs() as logs:
            await client.get("/r")
            with pytest.raises(GitHubError) as info:
                await client.get("/s")
        assert logs
        assert TOKEN not in repr(logs)
        assert TOKEN not in str(info.value)
        assert TOKEN not in repr(client)
        assert TOKEN not in repr(TokenAuth(TOKEN))


def app_handler(clock: Clock, minted: list[str], *, ttl: float = 3600.0) -> Handler:
    """GitHub's token exchange: the JWT is verified with the app's public key; other routes want the last token."""
    _, public = app_key_pair()

    def handler(request: httpx.Request) -> httpx.Response:
        auth = request.headers["authorization"].removeprefix("Bearer ")
        if request.url.path == "/app/installations/42/access_tokens":
            claims = jwt.decode(auth, public, algorithms=["RS256"], options={"verify_exp": False, "verify_iat": False})
            assert jwt.get_unverified_header(auth)["alg"] == "RS256"
            assert claims == {"iss": "7", "iat": int(clock.now) - 60, "exp": int(clock.now) + 540}
            token = f"ghs_installation{len(minted)}_" + "x" * 20
            minted.append(token)
            expires = datetime.fromtimestamp(clock.now + ttl, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            return json_response({"token": token, "expires_at": expires, "permissions": {"issues": "write"}}, 201)
        if auth != minted[-1]:
            return json_response({"message": "Bad credentials"}, 401)
        return json_response({"who": auth})

    return handler


def app_auth() -> AppAuth:
    return AppAuth(7, app_key_pair()[0], 42)


class TestAppAuth:
    """GitHub App installation tokens: minted from a JWT, cached, refreshed before expiry."""

    async def test_mints_and_caches(self) -> None:
        """The first request mints a token with an RS256 JWT (iss = app id as a string); later requests reuse it."""
        clock, minted = Clock(), list[str]()
        auth = app_auth()
        client, _ = make_client(app_handler(clock, minted), clock, auth=auth)
        assert await client.get("/a") == {"who": minted[0]}
        assert await client.get("/b") == {"who": minted[0]}
        assert len(minted) == 1
        assert auth.permissions == {"issues": "write"}
        assert auth.expires_at == clock.now + 3600

    async def test_refreshes_five_minutes_before_expiry(self) -> None:
        """At 56 minutes into a 60-minute token a new one is minted."""
        clock, minted = Clock(), list[str]()
        client, _ = make_client(app_handler(clock, minted), clock, auth=app_auth())
        await client.get("/a")
        clock.now += 54 * 60
        await client.get("/a")
        assert len(minted) == 1
        clock.now += 2 * 60
        assert await client.get("/a") == {"who": minted[1]}

    async def test_401_reminted_once(self) -> None:
        """A 401 with a cached token drops it and retries with a fresh one."""
        clock, minted = Clock(), list[str]()
        client, _ = make_client(app_handler(clock, minted), clock, auth=app_auth())
        await client.get("/a")
        minted.append("ghs_revoked_elsewhere")  # the cached token no longer works
        assert await client.get("/a") == {"who": minted[2]}
        assert len(minted) == 3

    async def test_401_with_fixed_token_raises(self) -> None:
        """A fixed token cannot be refreshed: a 401 raises after one request."""
        rec = Recorder(json_response({"message": "Bad credentials"}, 401))
        client, _ = make_client(rec)
        with pytest.raises(GitHubError) as info:
            await client.get("/a")
        assert info.value.status == 401
        assert len(rec.requests) == 1

    @pytest.mark.parametrize(
        ("key", "message"),
        [
            pytest.param(
                "-----BEGIN RSA PRIVATE KEY-----\nnot base64\n-----END RSA PRIVATE KEY-----",
                "not a readable",
                id="garbled",
            ),
            pytest.param("ec", "not an RSA key", id="ec-key"),
            pytest.param("encrypted", "encrypted", id="encrypted"),
        ],
    )
    def test_a_bad_key_is_one_line(self, key: str, message: str) -> None:
        """A key that cannot sign fails at construction with one line that names the problem, never the key."""
        if key == "ec":
            key = (
                ec.generate_private_key(ec.SECP256R1())
                .private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                )
                .decode()
            )
        elif key == "encrypted":
            key = (
                serialization.load_pem_private_key(app_key_pair()[0].encode(), None)
                .private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.BestAvailableEncryption(b"hunter2hunter2"),
                )
                .decode()
            )
        with pytest.raises(ForgeError, match=message) as info:
            AppAuth(7, key, 42)
        assert "\n" not in str(info.value) and "BEGIN" not in str(info.value)


class TestLoadAppKey:
    """The app key secret may be the PEM itself or the path of the .pem file."""

    def test_pem_path_and_escaped_newlines(self, tmp_path: Any) -> None:
        """A PEM, the path of one and a PEM with literal \\n escapes all give the same PEM."""
        pem = app_key_pair()[0].strip()
        (tmp_path / "app.pem").write_text(pem + "\n")
        assert load_app_key(pem) == pem
        assert load_app_key(str(tmp_path / "app.pem")) == pem
        assert load_app_key(pem.replace("\n", "\\n")) == pem

    def test_neither_pem_nor_file(self, tmp_path: Any) -> None:
        """A value that is neither says so without echoing it."""
        with pytest.raises(ForgeError, match="neither a PEM private key nor the path") as info:
            load_app_key(str(tmp_path / "missing.pem"))
        assert "missing.pem" not in str(info.value)


class TestGitCredentials:
    """The push credentials never put the token in argv, URLs or files."""

    async def test_env_helper_answers_git(self, tmp_path: Any) -> None:
        """``git credential fill`` with the env yields the token, which appears nowhere but AGENTOS_GIT_TOKEN."""
        client, _ = make_client(Recorder(json_response({})))
        forge = GitHubForge(client)
        url, env = await forge.git_credentials("acme/calc")
        assert url == "https://api.github.test/acme/calc.git"
        assert TOKEN not in url
        assert [k for k, v in env.items() if TOKEN in v] == ["AGENTOS_GIT_TOKEN"]
        proc = await asyncio.create_subprocess_exec(
            "git", "credential", "fill",
            env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), "GIT_CONFIG_GLOBAL": os.devnull, **env},
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await proc.communicate(b"protocol=https\nhost=github.com\npath=acme/calc.git\n\n")
        assert f"password={TOKEN}" in out.decode()
        assert "username=x-access-token" in out.decode()

    def test_default_git_base(self) -> None:
        """api.github.com pushes to github.com; GHES drops /api/v3."""
        for api, git in [
            ("https://api.github.com", "https://github.com"),
            ("https://ghe.corp/api/v3", "https://ghe.corp"),
        ]:
            client = GitHubClient(api, auth=TokenAuth(TOKEN))
            assert GitHubForge(client).git_base_url == git


class TestCreateOnce:
    """The forge's create path when every create may or may not have landed."""

    async def test_gives_up_after_three_looks(self) -> None:
        """Three ambiguous POSTs, each preceded by a look that finds nothing, then OutcomeUnknown."""
        posts: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            if request.method == "POST":
                posts.append(request)
                return json_response({"message": "bad gateway"}, 502)
            return json_response([])

        client, clock = make_client(handler)
        with pytest.raises(OutcomeUnknown):
            await GitHubForge(client).comment("acme/calc", 1, "hi", key="k")
        assert len(posts) == 3
        assert clock.sleeps == [0.75, 1.5]

    async def test_comment_is_redacted_and_marked(self) -> None:
        """The posted body has secrets redacted and ends with the hidden marker."""
        bodies: list[str] = []

        def handler(request: httpx.Request) -> httpx.Response:
            if request.method == "POST":
                bodies.append(json.loads(request.content)["body"])
                return json_response({"id": 1, "body": bodies[-1], "created_at": "2025-01-01T00:00:00Z"}, 201)
            return json_response([])

        client, _ = make_client(handler)
        await GitHubForge(client).comment("acme/calc", 1, f"token was {TOKEN}", key="k")
        assert TOKEN not in bodies[0]
        assert bodies[0].endswith("<!-- agentos:key=k -->")


class TestExports:
    """The public face of ``agentos.forge.github``."""

    def test_all_names_exist(self) -> None:
        """Every name in ``__all__`` is defined, and the Forge methods are all there."""
        import agentos.forge.github as module
        from agentos.forge.base import Forge

        assert all(hasattr(module, name) for name in module.__all__)
        protocol = {n for n in vars(Forge) if not n.startswith("_") and callable(getattr(Forge, n))}
        assert protocol <= set(dir(module.GitHubForge))
