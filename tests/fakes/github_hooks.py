"""The fake GitHub's webhook deliveries: signed POSTs to a configured URL, the way GitHub sends them.

:meth:`FakeGitHub.add_webhook` registers a URL and a secret; every change the fake records that GitHub would
announce (a label added or removed, a comment, a review, a check run, a commit status, a PR opened or merged)
is then POSTed there in the background, with GitHub's headers::

    X-GitHub-Event: issues                 X-GitHub-Delivery: <a fresh GUID>
    X-Hub-Signature-256: sha256=<HMAC-SHA256 of the body under the secret>
    X-Hub-Signature: sha1=<the legacy HMAC-SHA1>   User-Agent: GitHub-Hookshot/<7 hex>
    X-GitHub-Hook-ID, X-GitHub-Hook-Installation-Target-Type: repository, …-Target-ID
    Content-Type: application/json

and the payload shapes of GitHub's docs (``action``, the object, ``repository``, ``sender``). Each delivery is
kept (:attr:`WebhookSender.deliveries`) with the status it was answered with; :meth:`WebhookSender.lose_next`
drops the next deliveries on the floor (a delivery GitHub gave up on) and :meth:`WebhookSender.redeliver`
sends one again, same body and GUID (GitHub's "Redeliver" button, or a replay by whoever captured it).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp

__all__ = ["Delivery", "WebhookSender", "signed_headers"]

HOOKSHOT = "GitHub-Hookshot/" + secrets.token_hex(4)[:7]


def signed_headers(event: str, body: bytes, secret: str, *, delivery: str, hook_id: int = 1) -> dict[str, str]:
    """The headers GitHub sends with ``body`` of ``event``."""
    key = secret.encode()
    return {
        "Content-Type": "application/json",
        "User-Agent": HOOKSHOT,
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "X-GitHub-Hook-ID": str(hook_id),
        "X-GitHub-Hook-Installation-Target-Type": "repository",
        "X-GitHub-Hook-Installation-Target-ID": "1",
        "X-Hub-Signature": "sha1=" + hmac.new(key, body, hashlib.sha1).hexdigest(),
        "X-Hub-Signature-256": "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest(),
    }


@dataclass
class Delivery:
    """One delivery: what was sent and how it was answered (``status`` None: lost, or not answered yet)."""

    guid: str
    event: str
    payload: dict[str, Any]
    body: bytes
    status: int | None = None
    lost: bool = False
    error: str | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)


class WebhookSender:
    """One repository webhook: the URL, the secret, and every delivery made to it."""

    def __init__(self, url: str, secret: str, *, hook_id: int = 1) -> None:
        self.url = url
        self.secret = secret
        self.hook_id = hook_id
        self.deliveries: list[Delivery] = []
        self._lose = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def lose_next(self, count: int = 1) -> None:
        """The next ``count`` deliveries are never sent (recorded as lost)."""
        self._lose += count

    def send(self, event: str, payload: dict[str, Any]) -> Delivery:
        """Deliver in the background (GitHub answers the API call first, then delivers)."""
        body = json.dumps(payload, separators=(",", ":")).encode()
        delivery = Delivery(str(uuid.uuid4()), event, payload, body)
        self.deliveries.append(delivery)
        if self._lose:
            self._lose -= 1
            delivery.lost = True
            delivery.done.set()
            return delivery
        task = asyncio.get_running_loop().create_task(self._post(delivery))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return delivery

    async def redeliver(self, delivery: Delivery) -> int:
        """The same body and GUID once more; returns the status it was answered with."""
        again = Delivery(delivery.guid, delivery.event, delivery.payload, delivery.body)
        self.deliveries.append(again)
        await self._post(again)
        assert again.status is not None, again.error
        return again.status

    async def _post(self, delivery: Delivery) -> None:
        headers = signed_headers(
            delivery.event, delivery.body, self.secret, delivery=delivery.guid, hook_id=self.hook_id
        )
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
                session.post(self.url, data=delivery.body, headers=headers) as response,
            ):
                await response.read()
                delivery.status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            delivery.error = f"{type(exc).__name__}: {exc}"
        finally:
            delivery.done.set()

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
