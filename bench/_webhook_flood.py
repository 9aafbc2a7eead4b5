"""A flood of bad webhook deliveries from its own process (so the sender's work is not on the daemon's loop).

``python -m bench._webhook_flood URL SECRET KIND COUNT [REPLAY_ID]`` sends COUNT requests, 4 at a time, and
prints ``{"statuses": {"401": n, ...}, "seconds": s}``:

- ``forged``: a 2 KB issue event signed with the wrong key, each with a fresh delivery id;
- ``replay``: a correctly signed event whose delivery id (REPLAY_ID) the daemon has already accepted;
- ``huge``: a 10 MB body (its signature does not matter: the length is refused first).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import sys
import time
import uuid
from collections import Counter

import httpx

CONCURRENCY = 4


def headers(event: str, body: bytes, key: str, delivery: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/bench",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": "sha256=" + hmac.new(key.encode(), body, hashlib.sha256).hexdigest(),
    }


def payload(pad: int) -> bytes:
    event = {"action": "labeled", "issue": {"number": 1, "body": "x" * pad}, "repository": {"full_name": "bench/r0"}}
    return json.dumps(event).encode()


async def flood(url: str, secret: str, kind: str, count: int, replay_id: str) -> Counter[str]:
    small = payload(2000)
    huge = payload(10 * 1024 * 1024)
    statuses: Counter[str] = Counter()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(count):
        queue.put_nowait(n)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            queue.get_nowait()
            if kind == "forged":
                body, head = small, headers("issues", small, "not-the-secret", str(uuid.uuid4()))
            elif kind == "replay":
                body, head = small, headers("issues", small, secret, replay_id)
            else:
                body, head = huge, headers("issues", huge, "not-the-secret", str(uuid.uuid4()))
            try:
                response = await client.post(url, content=body, headers=head)
                statuses[str(response.status_code)] += 1
            except httpx.HTTPError as exc:
                statuses[type(exc).__name__] += 1

    async with httpx.AsyncClient(timeout=30) as client:
        await asyncio.gather(*(worker(client) for _ in range(CONCURRENCY)))
    return statuses


def main() -> None:
    url, secret, kind, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    replay_id = sys.argv[5] if len(sys.argv) > 5 else ""
    t0 = time.perf_counter()
    statuses = asyncio.run(flood(url, secret, kind, count, replay_id))
    print(json.dumps({"statuses": dict(statuses), "seconds": time.perf_counter() - t0}))


if __name__ == "__main__":
    main()
