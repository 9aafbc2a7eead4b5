"""GitHub webhooks through the real daemon: the fake GitHub delivers signed events over HTTP to
``POST /github/webhook``, and the readiness poll and the PR monitor run at once instead of at their interval.

Both polls are set to an hour, so anything that happens within a test's 40 s happened because of a delivery
(or an operator's manual run). The daemon's first dispatch pass, at start, is over before anything is labelled.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import secrets
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from tests.daemon_process import spawn_daemon
from tests.fakes.github_hooks import WebhookSender, signed_headers
from tests.fakes.github_server import FakeGitHub, fake_github  # noqa: F401

from .conftest import claude_agent
from .test_github_daemon import MAINTAINER, REPO, GhDaemon, MakeDaemon, make_daemon  # noqa: F401

SECRET = "whsec-" + secrets.token_hex(16)
HOUR = 3600


async def webhook_daemon(make_daemon: MakeDaemon, tmp_path: Path) -> tuple[GhDaemon, WebhookSender, str]:  # noqa: F811
    """A daemon polling hourly with the webhook and the status page on free ports; the fake's hook points at it."""
    pid_file = tmp_path / "agent-pids"
    d = await make_daemon(
        {"claude": claude_agent(FAKE_AGENT_PID_FILE=str(pid_file))},
        board=False,
        start=False,
        github={"poll_interval_s": HOUR, "webhook": {"enabled": True, "host": "127.0.0.1", "port": 0}},
        jobs={"dispatch": {"interval_s": HOUR}, "pr_monitor": {"interval_s": HOUR}},
        status_page={"enabled": True, "port": 0},
    )
    d.env["GITHUB_WEBHOOK_SECRET"] = SECRET
    await d.start()
    url = await d.wait_for(lambda: _logged_url(d, "github_webhook_started"), what="the webhook's address")
    page = await d.wait_for(lambda: _logged_url(d, "status_page_started"), what="the status page's address")
    await _idle(d, "dispatch", runs=1)  # the pass at start is over: nothing labelled later is seen by it
    return d, d.fake.add_webhook(url, SECRET), page


def _logged_url(d: GhDaemon, event: str) -> str | None:
    return next((str(e["url"]) for e in d.events(event)), None)


async def _job(d: GhDaemon, name: str) -> dict[str, Any]:
    rows: list[dict[str, Any]] = await d.ctl("jobs")
    return next(r for r in rows if r["name"] == name)


async def _idle(d: GhDaemon, name: str, *, runs: int) -> None:
    """``name`` has run ``runs`` times and is not running now."""

    async def check() -> bool:
        job = await _job(d, name)
        return job["runs"] >= runs and not job["running"]

    await d.wait_for(check, what=f"{name} to have run {runs} times")


def _metrics(page: str) -> dict[str, float]:
    """The webhook's counters on the status page's /metrics, by outcome."""
    with urllib.request.urlopen(page.rstrip("/") + "/metrics", timeout=10) as response:
        text = response.read().decode()
    pattern = re.compile(r'^agentos_github_webhook_deliveries_total\{outcome="(\w+)"\} (\S+)$', re.M)
    return {outcome: float(value) for outcome, value in pattern.findall(text)}


async def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=headers) as response:
        await response.read()
        return response.status


class TestWebhookDelivery:
    async def test_a_label_starts_the_agent_without_waiting_for_the_poll(
        self,
        make_daemon: MakeDaemon,  # noqa: F811
        tmp_path: Path,
    ) -> None:
        d, hook, page = await webhook_daemon(make_daemon, tmp_path)
        number = d.new_issue("Greet")
        d.make_ready(number)  # the ready label by a triager: GitHub delivers `issues` / `labeled`

        pid_file = tmp_path / "agent-pids"
        await d.wait_for(lambda: pid_file.is_file() and pid_file.read_text().strip(), what="the agent to start")
        [task] = await d.tasks()
        assert (task["repo"], task["issue"]) == (REPO, number)

        labeled = [x for x in hook.deliveries if x.event == "issues" and x.payload["action"] == "labeled"]
        assert labeled and labeled[0].payload["issue"]["number"] == number
        await asyncio.wait_for(labeled[0].done.wait(), 10)
        assert labeled[0].status == 202
        received = [e for e in d.events("github_webhook_received") if e["delivery"] == labeled[0].guid]
        assert received and received[0]["jobs"] == ["dispatch"] and received[0]["repo"] == REPO
        assert _metrics(page)["accepted"] >= 1
        assert SECRET not in d.log_text()


class TestRefused:
    async def test_forged_unsigned_replayed_and_huge_requests_change_nothing_and_a_lost_one_is_polled(
        self,
        make_daemon: MakeDaemon,  # noqa: F811
        tmp_path: Path,
    ) -> None:
        d, hook, page = await webhook_daemon(make_daemon, tmp_path)
        number = d.new_issue("Greet")
        hook.lose_next()
        d.make_ready(number)  # GitHub gave up on this delivery
        [lost] = hook.deliveries
        assert lost.lost
        dispatch_runs = (await _job(d, "dispatch"))["runs"]
        monitor_runs = (await _job(d, "pr_monitor"))["runs"]

        # one good delivery (a check run) pokes the PR monitor: the one to replay, and a barrier
        sha = (await d.fake.branch_sha(REPO, "main")) or ""
        d.fake.add_check_run(REPO, sha, "ci")
        [check] = [x for x in hook.deliveries if x.event == "check_run"]
        await asyncio.wait_for(check.done.wait(), 10)
        assert check.status == 202
        await _idle(d, "pr_monitor", runs=monitor_runs + 1)

        url = hook.url
        body = lost.body  # the labelled event itself, which would start the agent if it were let in
        forged = signed_headers("issues", body, "not-the-secret", delivery=str(uuid.uuid4()))
        unsigned = signed_headers("issues", body, SECRET, delivery=str(uuid.uuid4()))
        del unsigned["X-Hub-Signature-256"], unsigned["X-Hub-Signature"]
        huge = json.dumps({"action": "labeled", "pad": "x" * (10 * 1024 * 1024)}).encode()
        assert await _post(url, body, forged) == 401
        assert await _post(url, body, unsigned) == 401
        assert await _post(url, huge, signed_headers("issues", huge, SECRET, delivery=str(uuid.uuid4()))) == 413
        assert await hook.redeliver(check) == 409

        # a second good delivery, then the PR monitor has run exactly twice and the readiness poll not at all
        d.fake.add_status(REPO, sha, "lint", "success")
        [status] = [x for x in hook.deliveries if x.event == "status"]
        await asyncio.wait_for(status.done.wait(), 10)
        assert status.status == 202
        await _idle(d, "pr_monitor", runs=monitor_runs + 2)
        assert (await _job(d, "pr_monitor"))["runs"] == monitor_runs + 2, "the replay poked the PR monitor"
        assert (await _job(d, "dispatch"))["runs"] == dispatch_runs, "a refused request poked the readiness poll"
        assert await d.tasks() == []
        assert not (tmp_path / "agent-pids").exists()

        counts = _metrics(page)
        assert {k: counts[k] for k in ("bad_signature", "unsigned", "too_large", "replayed", "accepted")} == {
            "bad_signature": 1,
            "unsigned": 1,
            "too_large": 1,
            "replayed": 1,
            "accepted": 2,
        }
        refused = {e["reason"]: e for e in d.events("github_webhook_refused")}
        assert set(refused) == {"bad_signature", "unsigned", "too_large", "replayed"}
        assert refused["too_large"]["status"] == 413 and refused["replayed"]["delivery"] == check.guid
        log = d.log_text()
        assert SECRET not in log and "Say hello" not in log, "the log holds a secret or a delivery's body"
        assert forged["X-Hub-Signature-256"] not in log

        # the lost delivery changes nothing for good: the next poll (here an operator's manual run) finds the label
        await d.ctl("run", {"name": "dispatch"})
        await d.wait_for(lambda: (tmp_path / "agent-pids").is_file(), what="the agent to start after the poll")
        assert len(await d.tasks()) == 1


def test_signature_matches_githubs_example() -> None:
    """GitHub's documented test vector: secret "It's a Secret to Everybody", payload "Hello, World!"."""
    from agentos.ops.github_webhook import signature_ok

    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert hmac.new(b"It's a Secret to Everybody", b"Hello, World!", hashlib.sha256).hexdigest() == expected[7:]
    assert signature_ok(b"It's a Secret to Everybody", b"Hello, World!", expected)
    assert not signature_ok(b"It's a Secret to Everybody", b"Hello, World!!", expected)
    assert not signature_ok(b"another secret", b"Hello, World!", expected)
    assert not signature_ok(b"It's a Secret to Everybody", b"Hello, World!", "sha1=" + expected[7:])


class TestMisconfigured:
    async def test_an_enabled_webhook_without_its_secret_refuses_to_start(
        self,
        make_daemon: MakeDaemon,  # noqa: F811
    ) -> None:
        """No secret anywhere: exit 78 with a line naming the key and where the secret goes, nothing served."""
        d = await make_daemon(
            {"claude": claude_agent()}, board=False, start=False, github={"webhook": {"enabled": True}}
        )
        d.env.pop("GITHUB_WEBHOOK_SECRET", None)
        d.write_config()
        proc = spawn_daemon(d.config, d.env, d.log)
        code = await asyncio.to_thread(proc.wait, 60)
        assert code == 78, d.log_tail()
        assert "github.webhook.enabled: true needs the shared secret" in d.log_text()
        assert "GITHUB_WEBHOOK_SECRET" in d.log_text() and not d.events("github_webhook_started")
