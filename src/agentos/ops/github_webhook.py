"""GitHub's webhook deliveries: ``POST /github/webhook`` runs the job an event is about now, not at the next poll.

::

    no X-Hub-Signature-256 ──────────────► 401 unsigned        (body not read)
    Content-Length (or body) > 1 MiB ────► 413 too_large       (body not read past the cap)
    HMAC-SHA256 of the body ≠ signature ─► 401 bad_signature   (hmac.compare_digest: constant time)
    no event or delivery id, bad JSON ───► 400 malformed
    X-GitHub-Delivery seen before ───────► 409 replayed        (the last 4096 ids, in memory)
    ping, an event about nothing we run ─► 202 ignored
    issues · issue_comment · pull_request(_review, _review_comment) · check_suite · check_run · status ·
    merge_group on a configured repo, projects_v2_item ──► 202 accepted, the jobs of :func:`jobs_for` poked

A delivery carries no state: it only pokes the readiness poll (``dispatch``) or the ``pr_monitor``, which then
read GitHub as on every poll. A lost, late or repeated delivery therefore changes nothing the next poll would not;
polling stays. The ids seen are not persisted: after a restart a replayed delivery pokes a job once more, which
costs one poll. Refusals are counted by reason (:attr:`GitHubWebhook.counts`, on ``/metrics``) and logged
(``github_webhook_refused``, at most one line per reason every :data:`LOG_EVERY_S`, with how many since), never
with the body or the signature.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Collection, Mapping
from typing import Any

from aiohttp import web

from agentos import logging as alog
from agentos.config import ConfigError, GitHubWebhookConfig
from agentos.ports import Wake

__all__ = ["MAX_BODY", "OUTCOMES", "PATH", "GitHubWebhook", "jobs_for", "signature_ok"]

log = alog.get_logger("agentos.github_webhook")

PATH = "/github/webhook"
MAX_BODY = 1024 * 1024
"""GitHub caps payloads at 25 MB; the events agentos reads are a few KB (an issue body is at most 64 KB)."""
SEEN = 4096
"""How many delivery ids are remembered to refuse replays."""
LOG_EVERY_S = 10.0
OUTCOMES = ("accepted", "ignored", "unsigned", "bad_signature", "too_large", "malformed", "replayed")
_PR_EVENTS = frozenset(
    {
        "pull_request",
        "pull_request_review",
        "pull_request_review_comment",
        "check_suite",
        "check_run",
        "status",
        "merge_group",
    }
)


def signature_ok(secret: bytes, body: bytes, header: str) -> bool:
    """Whether ``header`` (``sha256=<hex>``) is the HMAC-SHA256 of ``body`` under ``secret``, compared in constant
    time."""
    expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), header.strip().encode("ascii", "replace"))


def jobs_for(event: str, payload: Mapping[str, Any]) -> tuple[str, ...]:
    """The jobs an event is news for: issue changes → the readiness poll; PRs, reviews and checks → the PR monitor.

    A comment on a PR is review feedback (the PR monitor); on an issue it goes to the readiness poll, which costs
    little (its reads are conditional) and sees the issue as it is now.
    ``merge_group`` checks concern the PRs in GitHub's merge queue (the PR monitor).
    """
    if event in ("issues", "projects_v2_item"):  # a label, or a card moved on a board (an organization's hook)
        return ("dispatch",)
    if event == "issue_comment":
        issue = payload.get("issue")
        on_pr = isinstance(issue, Mapping) and issue.get("pull_request") is not None
        return ("pr_monitor",) if on_pr else ("dispatch",)
    if event == "pull_request" and payload.get("action") == "closed":
        return ("pr_monitor", "dispatch")  # a merge may release the issues that depend on it
    if event in _PR_EVENTS:
        return ("pr_monitor",)
    return ()


class GitHubWebhook:
    """The HTTP side: ``start()`` binds, ``stop()`` closes; a verified delivery only pokes ``wake``."""

    def __init__(
        self,
        cfg: GitHubWebhookConfig,
        *,
        secret: str | None,
        wake: Wake,
        repos: Callable[[], Collection[str]],
    ) -> None:
        if secret is None:
            env = cfg.secret_credential.upper()
            raise ConfigError(
                [
                    f"github.webhook.enabled: true needs the shared secret: run `agentos init`, or set ${env} or the "
                    f"credential {cfg.secret_credential} (the same text as the webhook's secret on GitHub)"
                ]
            )
        self.cfg = cfg
        self._secret = secret.encode()
        self._wake = wake
        self._repos = repos
        self.counts: Counter[str] = Counter({outcome: 0 for outcome in OUTCOMES})
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._unlogged: Counter[str] = Counter()
        self._logged_at: dict[str, float] = {}
        self._runner: web.AppRunner | None = None
        self.url: str | None = None

    def __repr__(self) -> str:
        return f"<GitHubWebhook {self.url or 'stopped'} {dict(self.counts)}>"

    async def start(self) -> str:
        """Bind and serve; returns the webhook's URL. Raises OSError when the address cannot be bound."""
        app = web.Application()
        app.router.add_post(PATH, self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.cfg.host, self.cfg.port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self.url = f"http://{'[' + host + ']' if ':' in host else host}:{port}{PATH}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ------------------------------------------------------------ one delivery

    async def _handle(self, request: web.Request) -> web.Response:
        event = request.headers.get("X-GitHub-Event", "")
        delivery = request.headers.get("X-GitHub-Delivery", "")
        signature = request.headers.get("X-Hub-Signature-256", "")
        if not signature:
            return self._refuse(request, 401, "unsigned", event, delivery)
        if request.content_length is not None and request.content_length > MAX_BODY:
            return self._refuse(request, 413, "too_large", event, delivery)
        body = await _read_capped(request)
        if body is None:
            return self._refuse(request, 413, "too_large", event, delivery)
        if not signature_ok(self._secret, body, signature):
            return self._refuse(request, 401, "bad_signature", event, delivery)
        if not event or not delivery:
            return self._refuse(request, 400, "malformed", event, delivery)
        if delivery in self._seen:
            return self._refuse(request, 409, "replayed", event, delivery)
        self._seen[delivery] = None
        while len(self._seen) > SEEN:
            self._seen.popitem(last=False)
        try:
            payload = json.loads(body)
        except ValueError:
            return self._refuse(request, 400, "malformed", event, delivery)
        if not isinstance(payload, dict):
            return self._refuse(request, 400, "malformed", event, delivery)
        repository = payload.get("repository")
        repo = repository.get("full_name") if isinstance(repository, dict) else None
        ours = (  # GitHub names are case-insensitive; a board's item carries no repository
            isinstance(repo, str) and repo.lower() in {name.lower() for name in self._repos()}
        ) or (repo is None and event == "projects_v2_item")
        jobs = jobs_for(event, payload) if ours else ()
        for job in jobs:
            self._wake(job)
        outcome = "accepted" if jobs else "ignored"
        self.counts[outcome] += 1
        log.info(
            "github_webhook_received",
            github_event=event,
            action=str(payload.get("action") or ""),
            delivery=delivery[:64],
            repo=str(repo or ""),
            jobs=list(jobs),
        )
        return web.Response(status=202, text=f"{outcome}\n")

    def _refuse(self, request: web.Request, status: int, reason: str, event: str, delivery: str) -> web.Response:
        """Count the refusal and log it (at most once per reason every :data:`LOG_EVERY_S`; never the body)."""
        self.counts[reason] += 1
        self._unlogged[reason] += 1
        now = time.monotonic()
        if now - self._logged_at.get(reason, -LOG_EVERY_S) >= LOG_EVERY_S:
            self._logged_at[reason] = now
            log.warning(
                "github_webhook_refused",
                reason=reason,
                status=status,
                github_event=event[:64],
                delivery=delivery[:64],
                remote=request.remote or "",
                content_length=request.content_length,
                refused=self._unlogged.pop(reason),
            )
        response = web.Response(status=status, text=f"{status}: {reason.replace('_', ' ')}\n")
        if reason in ("unsigned", "too_large"):
            response.force_close()  # the body was not read: not worth keeping the connection for
        return response


async def _read_capped(request: web.Request) -> bytes | None:
    """The body, or None once it grows past :data:`MAX_BODY` (a chunked upload has no Content-Length)."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(64 * 1024):
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
