"""``GET /metrics``: the status page's snapshot as Prometheus families, rendered by ``prometheus_client``.

:class:`SnapshotCollector` is a custom collector over one snapshot (the dict
:meth:`agentos.ops.status_page.StatusPage.snapshot` builds); :func:`render_metrics` is its text exposition
(format 0.0.4, :data:`CONTENT_TYPE`). Nothing is registered globally and nothing is kept between scrapes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "SnapshotCollector", "render_metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""What ``generate_latest`` writes (newer clients call 1.0.0 the latest; scrapers accept both)."""


def _gauge(name: str, text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, text, value=float(value))


def _labelled(
    kind: type[GaugeMetricFamily] | type[CounterMetricFamily],
    name: str,
    text: str,
    labels: list[str],
    samples: list[tuple[list[str], float]],
) -> Metric:
    family = kind(name, text, labels=labels)
    for values, value in samples:
        family.add_metric([str(v) for v in values], float(value))
    return family


def _ts(iso: str | None) -> float | None:
    return None if not iso else datetime.fromisoformat(iso).timestamp()


class SnapshotCollector(Collector):
    """The families of one status-page snapshot; ``generate_latest(SnapshotCollector(snap))`` renders them."""

    def __init__(self, snap: Mapping[str, Any]) -> None:
        self._snap = snap

    def collect(self) -> Iterator[Metric]:
        snap, gauge, counter = self._snap, GaugeMetricFamily, CounterMetricFamily
        d, window = snap["daemon"], f"{snap['window_days']}d"
        yield _gauge("agentos_up", "1 while the daemon answers.", 1)
        yield _labelled(gauge, "agentos_build_info", "The running version.", ["version"], [([d["version"]], 1)])
        yield _gauge("agentos_paused", "1 when dispatching is paused.", bool(d["paused"]))
        yield _gauge("agentos_uptime_seconds", "Seconds since the daemon started.", float(d["uptime_s"]))
        yield _gauge("agentos_workers_running", "Attempts running now.", int(d["running"]))
        yield _gauge("agentos_workers_max", "max_parallel_workers.", int(d["max_parallel_workers"]))
        yield _gauge("agentos_queue_depth", "Tasks queued or waiting to retry.", int(d["queued"]))
        counts = d["counts"]
        yield _labelled(
            gauge,
            "agentos_tasks",
            "Tasks in the graph by status.",
            ["status"],
            [([s], int(counts.get(s, 0))) for s in snap["statuses"]],
        )
        yield _labelled(
            counter,
            "agentos_attempts",
            "Agent attempts recorded in the task graph, by agent and outcome.",
            ["agent", "outcome"],
            [([a["agent"], a["outcome"]], int(a["count"])) for a in snap["attempts"]],
        )
        recent = snap["recent"]
        yield _labelled(
            gauge,
            "agentos_recent_merges",
            "Tasks merged within the window.",
            ["window"],
            [([window], int(recent["merged_in_window"]))],
        )
        yield _labelled(
            gauge,
            "agentos_recent_escalations",
            "Tasks escalated within the window.",
            ["window"],
            [([window], int(recent["escalated_in_window"]))],
        )
        yield from self._agents(snap["agents"], window)
        yield from self._jobs(snap["jobs"])
        if (hooks := snap.get("github_webhook")) is not None:
            yield _labelled(
                counter,
                "agentos_github_webhook_deliveries",
                "Requests to POST /github/webhook by outcome: accepted, ignored, or why refused.",
                ["outcome"],
                [([outcome], int(n)) for outcome, n in sorted(hooks.items())],
            )
        loop = snap.get("loop")
        if loop:
            yield _gauge("agentos_event_loop_lag_seconds", "How late the event loop last woke up.", loop["lag_s"])
            yield _gauge("agentos_event_loop_lag_max_seconds", "The worst loop lag since start.", loop["max_lag_s"])

    @staticmethod
    def _agents(agents: list[Mapping[str, Any]], window: str) -> Iterator[Metric]:
        gauge = GaugeMetricFamily
        yield _labelled(
            gauge,
            "agentos_agent_attempts",
            "Attempts per agent within the window.",
            ["agent", "window"],
            [([a["key"], window], int(a["attempts"])) for a in agents],
        )
        yield _labelled(
            gauge,
            "agentos_agent_success_ratio",
            "Successful attempts / rated attempts per agent within the window (quota limits not rated).",
            ["agent", "window"],
            [([a["key"], window], float(a["success_rate"])) for a in agents if a["success_rate"] is not None],
        )
        yield _labelled(
            gauge,
            "agentos_agent_merged",
            "Tasks merged per agent (of the last attempt) within the window.",
            ["agent", "window"],
            [([a["key"], window], int(a["merged"])) for a in agents],
        )

    @staticmethod
    def _jobs(jobs: list[Mapping[str, Any]]) -> Iterator[Metric]:
        gauge, counter = GaugeMetricFamily, CounterMetricFamily
        per_job = [
            (gauge, "agentos_job_enabled", "1 when the job is enabled.", "enabled"),
            (gauge, "agentos_job_running", "1 while the job runs.", "running"),
            (counter, "agentos_job_runs", "Runs of the job.", "runs"),
            (counter, "agentos_job_failures", "Failed runs of the job.", "failures"),
        ]
        for kind, name, text, key in per_job:
            yield _labelled(kind, name, text, ["job"], [([j["name"]], float(j[key])) for j in jobs])
        for key, text in (
            ("last_run", "Unix time of the job's last run."),
            ("last_success", "Unix time of the job's last successful run."),
            ("next_run", "Unix time of the job's next scheduled run."),
        ):
            samples = [([j["name"]], t) for j in jobs if (t := _ts(j.get(key))) is not None]
            yield _labelled(gauge, f"agentos_job_{key}_timestamp_seconds", text, ["job"], samples)


def render_metrics(snap: Mapping[str, Any]) -> str:
    """The snapshot in the Prometheus text exposition format (version 0.0.4)."""
    return generate_latest(SnapshotCollector(snap)).decode()
