"""The status page's pure parts: the token rule, the Prometheus text, the HTML page and its SVG chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agentos.config import ConfigError, StatusPageConfig
from agentos.daemon_parts import build_controller
from agentos.ops.prometheus import render_metrics
from agentos.ops.status_page import StatusPage, needs_token
from agentos.ops.status_render import agent_chart_svg, render_html
from tests.unit.test_controller import NOW as NOW_RT
from tests.unit.test_controller import Job, add_task, build_runtime

NOW = "2026-01-05T12:00:00+00:00"


def snapshot(**over: Any) -> dict[str, Any]:
    snap: dict[str, Any] = {
        "generated_at": NOW,
        "window_days": 7,
        "daemon": {
            "version": "0.1.0",
            "paused": False,
            "running": 1,
            "max_parallel_workers": 2,
            "queued": 1,
            "counts": {"queued": 1, "running": 1, "merged": 3, "blocked": 1},
            "tasks": 6,
            "uptime_s": 3600.0,
            "forge": "local",
            "repos": ["calc"],
        },
        "running": [
            {
                "id": "calc#4",
                "title": "Refactor <add>",
                "status": "running",
                "agent": "claude",
                "attempt": 2,
                "started_at": "2026-01-05T11:58:00+00:00",
                "elapsed_s": 120.0,
            }
        ],
        "queue": [
            {
                "id": "calc#5",
                "title": "Multiply",
                "status": "queued",
                "priority": "high",
                "attempts": 0,
                "not_before": None,
                "depends_on": ["calc#4"],
                "blocker": None,
            }
        ],
        "recent": {
            "merges": [
                {"task": "calc#1", "title": "Fix add", "agent": "claude", "at": "2026-01-05T11:00:00+00:00",
                 "attempts": 1, "blocker": None, "hours": 0.5}
            ],
            "escalations": [
                {"task": "calc#3", "title": "Vague", "agent": "codex", "at": "2026-01-05T10:00:00+00:00",
                 "attempts": 2, "blocker": "missing_context", "hours": 1.0}
            ],
            "merged_in_window": 3,
            "escalated_in_window": 1,
        },
        "agents": [
            {"key": "claude", "attempts": 4, "success_rate": 0.75, "merged": 3},
            {"key": 'co"dex', "attempts": 2, "success_rate": 0.0, "merged": 0},
            {"key": "gemini", "attempts": 1, "success_rate": None, "merged": 0},
        ],
        "attempts": [
            {"agent": "claude", "outcome": "complete", "count": 3},
            {"agent": "claude", "outcome": "blocked", "count": 1},
        ],
        "jobs": [
            {"name": "dispatch", "trigger": "every 60s", "enabled": True, "running": False, "runs": 12,
             "failures": 1, "last_run": "2026-01-05T11:59:00+00:00", "last_success": None,
             "next_run": "2026-01-05T12:01:00+00:00", "last_error": "boom <x>"},
            {"name": "daily_digest", "trigger": "0 8 * * *", "enabled": False, "running": False, "runs": 0,
             "failures": 0, "last_run": None, "last_success": None, "next_run": None, "last_error": None},
        ],
        "loop": {"lag_s": 0.002, "max_lag_s": 0.05},
        "statuses": ["queued", "running", "validating", "pr_open", "merged", "retrying", "blocked", "cancelled",
                     "failed"],
    }  # fmt: skip
    snap.update(over)
    return snap


class TestTokenRule:
    @pytest.mark.parametrize(
        ("host", "needed"),
        [
            pytest.param("127.0.0.1", False, id="ipv4-loopback"),
            pytest.param("::1", False, id="ipv6-loopback"),
            pytest.param("localhost", False, id="localhost"),
            pytest.param("127.0.0.2", True, id="other-loopback-address"),
            pytest.param("0.0.0.0", True, id="all-interfaces"),
            pytest.param("192.168.1.5", True, id="lan"),
        ],
    )
    def test_only_the_loopback_defaults_go_without_a_token(self, host: str, needed: bool) -> None:
        """Any bind but 127.0.0.1, ::1 and localhost must carry a bearer token."""
        assert needs_token(host) is needed

    def test_a_public_bind_without_token_is_a_one_line_config_error(self) -> None:
        """The error names the key, the address and where the token goes."""
        cfg = StatusPageConfig(enabled=True, host="0.0.0.0")
        with pytest.raises(ConfigError) as err:
            StatusPage(None, cfg, token=None)  # type: ignore[arg-type]
        [line] = err.value.problems
        assert line.startswith("status_page.host: 0.0.0.0") and "STATUS_PAGE_TOKEN" in line

    def test_bad_port_is_rejected_by_the_config(self) -> None:
        """Ports outside 0..65535 fail validation."""
        with pytest.raises(ValueError):
            StatusPageConfig(port=70000)


class TestMetrics:
    def families(self, snap: dict[str, Any]) -> dict[str, Any]:
        return {f.name: f for f in text_string_to_metric_families(render_metrics(snap))}

    def test_parses_as_prometheus_text_with_every_family(self) -> None:
        """The exposition parses, and each family the docs promise is there with the right type."""
        fams = self.families(snapshot())
        kinds = {name: f.type for name, f in fams.items()}
        assert kinds["agentos_tasks"] == "gauge"
        assert kinds["agentos_attempts"] == "counter"
        assert kinds["agentos_job_runs"] == "counter"
        for name in (
            "agentos_up",
            "agentos_paused",
            "agentos_queue_depth",
            "agentos_recent_merges",
            "agentos_recent_escalations",
            "agentos_agent_success_ratio",
            "agentos_job_next_run_timestamp_seconds",
            "agentos_job_last_run_timestamp_seconds",
            "agentos_event_loop_lag_seconds",
        ):
            assert name in fams, name

    def test_values_and_labels(self) -> None:
        """Every status has a sample (zero when empty); unrated agents have no ratio; quotes in labels survive."""
        fams = self.families(snapshot())
        tasks = {s.labels["status"]: s.value for s in fams["agentos_tasks"].samples}
        assert tasks["merged"] == 3 and tasks["failed"] == 0 and len(tasks) == 9
        ratio = {s.labels["agent"]: s.value for s in fams["agentos_agent_success_ratio"].samples}
        assert ratio == {"claude": 0.75, 'co"dex': 0.0}
        nxt = {s.labels["job"]: s.value for s in fams["agentos_job_next_run_timestamp_seconds"].samples}
        assert set(nxt) == {"dispatch"} and nxt["dispatch"] == 1767614460.0

    def test_no_loop_reading_means_no_lag_family(self) -> None:
        """Before the first lag reading the family is left out rather than reported as 0."""
        assert "agentos_event_loop_lag_seconds" not in self.families(snapshot(loop=None))


class TestHtml:
    def test_outside_text_is_escaped_and_nothing_is_fetched(self) -> None:
        """Titles and errors are escaped; the page has no script and no external asset."""
        html = render_html(snapshot())
        assert "Refactor &lt;add&gt;" in html and "boom &lt;x&gt;" in html
        assert "<script" not in html and " src=" not in html and "href=" not in html
        assert '<meta http-equiv="refresh"' in html

    def test_sections_show_the_snapshot(self) -> None:
        """Running, queue (with what it waits for), merges, escalations and jobs with relative times."""
        html = render_html(snapshot())
        assert "calc#4" in html and "2m" in html  # elapsed
        assert "after calc#4" in html
        assert "missing_context" in html and "60m ago" in html and "2.0h ago" in html
        assert "in 60s" in html and "disabled" in html
        assert "dispatching" in html

    def test_agent_health_shows_the_figures_and_why_an_agent_is_gated(self) -> None:
        """Per agent and task type: the 7-day and 24-hour success, the gate's state and, when gated, why."""
        reason = "last 7 days 0/3 (0%) succeeded: at or under 25% over 3+ attempts"
        health = [
            {"agent": "claude", "type": "docs", "week": "2/2 (100%)", "day": "1/1 (100%)", "gated": False,
             "gate": "ok", "reason": None},
            {"agent": "codex", "type": "implementation", "week": "0/3 (0%)", "day": "0/1 (0%)", "gated": True,
             "gate": "skipped", "reason": reason},
        ]
        html = render_html(snapshot(health=health))
        section = html.split("Agent health (routing.health_gate)")[1].split("</section>")[0]
        assert "2/2 (100%)" in section and "0/3 (0%)" in section
        assert '<span class="err">skipped</span>' in section and reason in section
        assert "No agent attempts in the last 7 days." in render_html(snapshot(health=[]))

    def test_paused_daemon_says_so(self) -> None:
        snap = snapshot()
        snap["daemon"]["paused"] = True
        assert '<span class="pill off">paused</span>' in render_html(snap)

    def test_an_unconfined_daemon_says_so_on_top(self) -> None:
        """``sandbox.mode: off`` (or an unusable bwrap) is a warning at the top of the page; a sandbox that works
        is not mentioned."""
        snap = snapshot()
        snap["daemon"]["sandbox"] = "off: agents, hooks and tests run unconfined, as the daemon's user"
        html = render_html(snap)
        assert "Sandbox off: agents, hooks and tests run unconfined" in html
        assert html.index("Sandbox off") < html.index("agents running")
        snap["daemon"]["sandbox"] = "bubblewrap"
        assert "Sandbox" not in render_html(snap)

    def test_empty_daemon_says_there_is_nothing(self) -> None:
        """With no tasks and no history the page says so in words, not empty tables."""
        snap = snapshot(running=[], queue=[], agents=[], jobs=[])
        snap["recent"].update(merges=[], escalations=[])
        html = render_html(snap)
        assert "No agent is working right now." in html and "The queue is empty." in html
        assert "No rated attempts in the window yet." in html and "No merges in the last 7d." in html


class TestChart:
    def test_bar_width_follows_the_success_rate(self) -> None:
        """A 75% agent's bar is three quarters of the track; an agent with no rated attempts has no bar."""
        svg = agent_chart_svg(snapshot()["agents"], width=520)
        assert svg.startswith("<svg") and svg.count('class="bar"') == 2
        assert 'width="210.0"' in svg  # 0.75 × (520 − 130 − 110)
        assert "75% of 4" in svg and "gemini" not in svg
        assert 'data-agent="co&quot;dex"' in svg


class TestSnapshotFromTheController:
    async def test_the_page_shows_what_the_controller_snapshot_holds(self, tmp_path: Path) -> None:
        """Tasks, jobs and the daemon's status reach the page's data through Controller.snapshot()."""
        rt = build_runtime(tmp_path)
        assert rt.scheduler is not None
        rt.scheduler.register("dispatch", Job())
        try:
            add_task(rt, 7)
            page = StatusPage(build_controller(rt), StatusPageConfig(), token=None)
            snap = await page.snapshot()
            assert [q["id"] for q in snap["queue"]] == ["calc#7"] and snap["running"] == []
            assert [j["name"] for j in snap["jobs"]] == ["dispatch"]
            assert snap["daemon"]["queued"] == 1 and snap["generated_at"] == NOW_RT.isoformat()
            assert snap["recent"]["merged_in_window"] == 0
            fams = {f.name for f in text_string_to_metric_families(render_metrics(snap))}
            assert {"agentos_tasks", "agentos_job_runs", "agentos_queue_depth"} <= fams
        finally:
            rt.store.close()
