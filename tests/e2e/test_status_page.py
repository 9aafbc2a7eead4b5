"""The status page of a real daemon over real HTTP: the page, ``/api/status``, ``/metrics``, the token rule,
and the page rendered in headless Chromium (the screenshot lands in the test's tmp dir and in
``.cache/artifacts/status-page.png``)."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import AGENTOS, REPO, ROOT, Loop, claude_agent

MakeLoop = Callable[..., Loop]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = ROOT / ".cache" / "artifacts"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def fetch(url: str, token: str | None = None) -> tuple[int, str, str]:
    """``(status, content type, body)`` of one GET, through aiohttp over real TCP."""

    async def go() -> tuple[int, str, str]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session,
            session.get(url, headers=headers) as resp,
        ):
            return resp.status, resp.headers.get("Content-Type", ""), await resp.text()

    return asyncio.run(go())


def page_loop(make_loop: MakeLoop, port: int, **status_page: Any) -> Loop:
    return make_loop(
        {"claude": claude_agent("plan")},
        max_parallel_workers=1,
        limits={"idle_timeout_minutes": 5},  # the hanging attempt stays "running" while the page is read
        status_page={"enabled": True, "port": port, **status_page},
    )


class TestLiveStatusPage:
    def test_page_api_metrics_and_screenshot_show_live_work(self, make_loop: MakeLoop, tmp_path: Path) -> None:
        """A merge, an escalation, a running attempt and a queued issue all show on the page, the API and /metrics."""
        port = free_port()
        loop = page_loop(make_loop, port)
        base = f"http://127.0.0.1:{port}"
        merged = loop.new_issue("Add a greeting", "soak-plan: hello.txt complete\n")
        loop.wait_status(f"{REPO}#{merged}", "merged")
        blocked = loop.new_issue("Vague wish <b>bold</b>", "soak-plan: wish.txt blocked\n")
        loop.wait_status(f"{REPO}#{blocked}", "blocked")
        running = loop.new_issue("Slow refactor", "soak-plan: slow.txt hang\n")
        loop.wait_status(f"{REPO}#{running}", "running")
        queued = loop.new_issue("Waits its turn", "soak-plan: later.txt complete\n")

        def api() -> dict[str, Any] | None:
            status, kind, body = fetch(base + "/api/status")
            assert status == 200 and kind.startswith("application/json")
            data: dict[str, Any] = json.loads(body)
            return data if data["queue"] and data["loop"] else None

        data = loop.wait_for(api, what="the queued issue and a loop-lag reading in /api/status")
        assert [r["id"] for r in data["running"]] == [f"{REPO}#{running}"]
        assert data["running"][0]["agent"] == "claude"
        assert [q["id"] for q in data["queue"]] == [f"{REPO}#{queued}"]
        assert [m["task"] for m in data["recent"]["merges"]] == [f"{REPO}#{merged}"]
        assert [e["task"] for e in data["recent"]["escalations"]] == [f"{REPO}#{blocked}"]
        [claude] = data["agents"]
        assert claude["key"] == "claude" and 0 < claude["success_rate"] < 1
        assert {"dispatch", "pr_monitor", "stall_watchdog"} <= {j["name"] for j in data["jobs"]}

        status, kind, html = fetch(base + "/")
        assert status == 200 and kind.startswith("text/html")
        assert "Slow refactor" in html and "Waits its turn" in html and "Add a greeting" in html
        assert "Vague wish &lt;b&gt;bold&lt;/b&gt;" in html and "<b>bold</b>" not in html
        assert "<svg" in html and 'data-agent="claude"' in html and "<script" not in html

        status, kind, text = fetch(base + "/metrics")
        assert status == 200 and kind.startswith("text/plain; version=0.0.4")
        families = {f.name: f for f in text_string_to_metric_families(text)}
        tasks = {s.labels["status"]: s.value for s in families["agentos_tasks"].samples}
        assert tasks["merged"] == 1 and tasks["blocked"] == 1 and tasks["running"] == 1 and tasks["queued"] == 1
        attempts = {
            (s.labels["agent"], s.labels["outcome"]): s.value
            for s in families["agentos_attempts"].samples
            if s.name == "agentos_attempts_total"
        }
        assert attempts[("claude", "complete")] == 1 and attempts[("claude", "blocked")] == 2
        assert [s.value for s in families["agentos_recent_merges"].samples] == [1]
        assert [s.value for s in families["agentos_recent_escalations"].samples] == [1]
        ratio = {s.labels["agent"]: s.value for s in families["agentos_agent_success_ratio"].samples}
        assert ratio["claude"] == pytest.approx(1 / 3)
        nxt = {s.labels["job"] for s in families["agentos_job_next_run_timestamp_seconds"].samples}
        assert "dispatch" in nxt
        assert families["agentos_event_loop_lag_seconds"].samples[0].value >= 0

        if CHROMIUM is None:
            pytest.skip("chromium is not installed (apt-get install chromium); the page was checked over HTTP only")
        shot = tmp_path / "status-page.png"
        profile = tmp_path / "chromium-profile"
        done = subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                f"--screenshot={shot}",
                "--window-size=1200,900",
                base + "/",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert shot.is_file() and shot.stat().st_size > 10_000, f"no screenshot:\n{done.stdout}{done.stderr}"
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, ARTIFACTS / "status-page.png")


class TestToken:
    def test_other_bind_needs_the_bearer_token(self, make_loop: MakeLoop) -> None:
        """Bound to 127.0.0.2 with a token: 401 without it or with a wrong one, 200 with it, on every path."""
        port = free_port("127.0.0.2")
        loop = make_loop(
            {"claude": claude_agent("complete")},
            start=False,
            status_page={"enabled": True, "host": "127.0.0.2", "port": port},
        )
        loop.env["STATUS_PAGE_TOKEN"] = "s3cret-page-token"
        loop.start()
        base = f"http://127.0.0.2:{port}"
        assert loop.ctl("status")["status_page"] == base + "/"  # `agentos ctl status` names the address
        for path in ("/", "/api/status", "/metrics"):
            assert fetch(base + path)[0] == 401
            assert fetch(base + path, token="wrong")[0] == 401
            assert fetch(base + path, token="s3cret-page-token")[0] == 200

    def test_other_bind_without_a_token_refuses_to_start(self, make_loop: MakeLoop) -> None:
        """No token for a non-loopback bind: exit 78 with one line naming status_page.host and the credential."""
        loop = make_loop(
            {"claude": claude_agent("complete")},
            start=False,
            status_page={"enabled": True, "host": "0.0.0.0", "port": free_port()},
        )
        done = subprocess.run(
            [str(AGENTOS), "run", "--config", str(loop.config)],
            env=loop.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 78
        said = [line for line in done.stderr.splitlines() if line.startswith("agentos: ")]
        assert len(said) == 1
        assert "status_page.host: 0.0.0.0" in said[0] and "STATUS_PAGE_TOKEN" in said[0]
