"""The ``outcome_check`` job: did a merge move the repo's objectives? (outcome attribution, issue #18)

Hourly, and woken by every merge (:meth:`agentos.lifecycle.Lifecycle.merged`), it walks the ``merged`` events
of the last ``measurement_window_days`` + 14 days of the journal, for enabled repos:

1. **Baseline**, once per merge: ``objectives.yaml`` as committed by the merge is read (a bad file is its one
   line, journalled and logged, never a crash); each metric is read as it was just before the merge: a
   ``command`` or ``file`` at the merge commit's first parent (the base the change landed on), a ``url`` now.
   Journalled as ``outcome_baseline`` with the metrics' definitions and readings (``metrics: []`` and a
   ``reason`` when there is nothing to measure).
2. **Measurement**, once per merge, ``measurement_window_days`` after it (the injected clock): each metric of the
   baseline is read again, the same way, on the base branch as fetched now, and classified by
   :func:`agentos.outcomes.classify` (direction, ``loops.outcome_noise_pct``), ``method: rule``; a ``kind: prose``
   metric's texts by ``loops.llm_agent`` (:mod:`agentos.jobs._prose_judge`, ``method: llm`` when it answered). One
   ``outcome_measured`` event per metric, committed together.
3. **Incident**: a merge with a regressed metric (a number or prose) files one issue in its repo (labelled
   ``loops.fix_label``, keyed ``incident:outcome:<repo>:<sha>``, looked up open or closed first), citing the PR and
   the commit (and a prose metric's reason and texts), and journals ``outcome_incident``; a second run finds the
   event (or the issue) and files nothing.

A forge or git failure leaves that merge for the next run.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from pydantic import ValidationError

from agentos import logging as alog
from agentos.agents.prompt import fence, sanitize
from agentos.config import RepoConfig
from agentos.context import Metric
from agentos.errors import AgentosError
from agentos.forge.base import Forge
from agentos.graph import Event
from agentos.jobs._loops import (
    EventHistory,
    LoopSettings,
    file_once,
    find_marked,
    loop_repos,
    read_events,
    safely,
    settings_for,
)
from agentos.jobs._metric_reader import MetricReader, Reading, RepoMetrics
from agentos.jobs._prose_judge import judge
from agentos.llm import ModelAsker, from_config
from agentos.ops.metrics import repo_of
from agentos.outcomes import classify
from agentos.ports import Clock, Journal, Settings, Workspaces
from agentos.task_graph import TaskGraph

__all__ = ["LOOKBACK", "OutcomeChecker", "incident_key"]

log = alog.get_logger("agentos.outcomes")

LOOKBACK = timedelta(days=14)
"""How long past its window a merge is still measured (a daemon that was down catches up)."""
_DEFINITION = ("name", "direction", "weight", "kind", "description", "command", "file", "url", "pointer")
_SHOWN_CHARS = 1500
"""How much of a prose metric's texts the incident issue quotes."""


def incident_key(repo: str, sha: str) -> str:
    """The marker of the one regression incident of a merge."""
    return f"incident:outcome:{repo}:{sha[:12]}"


class OutcomeChecker:
    """The job (see the module docstring)."""

    def __init__(
        self,
        *,
        settings: Settings,
        journal: Journal,
        clock: Clock,
        graph: TaskGraph,
        forge: Forge,
        store: EventHistory,
        stopping: Callable[[], bool],
        workspaces: Workspaces | None = None,
        reader: MetricReader | None = None,
        loop_settings: LoopSettings | None = None,
        llm: ModelAsker | None = None,
    ) -> None:
        if reader is None:
            assert workspaces is not None, "the outcome check reads metrics through the workspaces or a reader"
            reader = RepoMetrics(workspaces=workspaces)
        self._settings = settings
        self._journal = journal
        self._clock = clock
        self._graph = graph
        self._forge = forge
        self._store = store
        self._stopping = stopping
        self._reader = reader
        self._loop_settings = loop_settings
        self._llm = llm
        self.baselines = 0
        self.measured = 0

    def __repr__(self) -> str:
        return f"<OutcomeChecker baselines={self.baselines} measured={self.measured}>"

    async def tick(self) -> None:
        s = settings_for(self._settings, self._loop_settings)
        now = self._clock()
        window = timedelta(days=s.measurement_window_days)
        events = await read_events(self._store, now - window - LOOKBACK)
        repos = {r.name: r for r in loop_repos(self._settings)}
        baselines = {e.task: e for e in events if e.type == "outcome_baseline"}
        measured: dict[str, list[Event]] = defaultdict(list)
        for e in events:
            if e.type == "outcome_measured" and e.task:
                measured[e.task].append(e)
        filed = {e.task for e in events if e.type == "outcome_incident"}
        for merge in [e for e in events if e.type == "merged" and e.task]:
            if self._stopping():
                return
            task_id = str(merge.task)
            task = self._graph.find(task_id)
            repo = repos.get(task.repo if task else repo_of(task_id))
            if repo is None:
                continue
            with alog.bound(task=task_id, repo=repo.name):
                try:
                    base = baselines.get(task_id) or await self.baseline(repo, merge, s)
                    if task_id not in measured and base.data.get("metrics") and now >= merge.ts + window:
                        measured[task_id] = await self.measure(repo, merge, base, s)
                    regressed = [e for e in measured.get(task_id, []) if e.data.get("verdict") == "regressed"]
                    if regressed and task_id not in filed:
                        await self.incident(repo, merge, regressed, s)
                except AgentosError as exc:  # git or the forge failed: the next run tries again
                    log.warning("outcome_check_failed", error=str(exc)[:300])

    async def baseline(self, repo: RepoConfig, merge: Event, s: LoopSettings) -> Event:
        """Read and journal the merge's baseline (``outcome_baseline``)."""
        sha = str(merge.data.get("sha") or "")
        data: dict[str, Any] = {"repo": repo.name, "sha": sha, "pr": merge.data.get("pr"), "metrics": []}
        objectives, problem = await self._reader.objectives(repo, sha, s) if sha else (None, "")
        if problem:
            data["problem"] = problem
            log.warning("objectives_invalid", problem=problem)
        elif objectives is None or not objectives.metrics:
            data["reason"] = "no objectives.yaml metrics" if sha else "the merge has no commit"
        else:
            readings = await self._reader.read(repo, objectives.metrics, f"{sha}^", s)
            data["metrics"] = [_entry(m, readings.get(m.name)) for m in objectives.metrics]
        event = self._journal.event("outcome_baseline", merge.task, **data)
        self._journal.commit([event])
        self.baselines += 1
        log.info("outcome_baseline", metrics=len(data["metrics"]), reason=data.get("reason") or problem or None)
        return event

    async def measure(self, repo: RepoConfig, merge: Event, base: Event, s: LoopSettings) -> list[Event]:
        """Read the baseline's metrics on the base branch now; journal one ``outcome_measured`` per metric."""
        metrics: list[Metric] = []
        before: dict[str, Any] = {}
        problems: dict[str, str] = {}
        for entry in base.data.get("metrics") or []:
            definition = {k: entry[k] for k in _DEFINITION if entry.get(k) is not None}
            try:
                metric = Metric.model_validate(definition, context={"url_hosts": s.objective_url_hosts})
            except ValidationError as exc:
                problems[str(entry.get("name"))] = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
                continue
            metrics.append(metric)
            before[metric.name] = entry
        after = await self._reader.read(repo, metrics, f"refs/remotes/origin/{repo.base_branch}", s)
        entries = list(base.data.get("metrics") or [])
        llm, no_llm = self._asker(s) if any(e.get("kind") == "prose" for e in entries) else (None, "")
        events = []
        for entry in entries:
            name = str(entry.get("name"))
            reading = after.get(name, Reading(None, problems.get(name, "not read")))
            if entry.get("kind") == "prose":
                then = entry.get("text")
                defined = next((m for m in metrics if m.name == name), None)
                judged = await judge(defined, then, reading.text, s.measurement_window_days, llm, no_llm)
                result: dict[str, Any] = {"kind": "prose", "before": None, "after": None, "change_pct": None}
                result |= {"verdict": judged.verdict, "method": judged.method, "reason": judged.reason}
                result |= {"before_text": then, "after_text": reading.text}
            else:
                then = entry.get("value")
                verdict, pct = classify(then, reading.value, str(entry.get("direction")), s.outcome_noise_pct)
                result = {"before": then, "after": reading.value, "change_pct": pct}
                result |= {"verdict": verdict, "method": "rule"}
            detail = entry.get("detail") if then is None else reading.detail
            events.append(
                self._journal.event(
                    "outcome_measured",
                    merge.task,
                    repo=repo.name,
                    pr=merge.data.get("pr"),
                    sha=merge.data.get("sha"),
                    metric=name,
                    direction=entry.get("direction"),
                    weight=entry.get("weight"),
                    **result,
                    window_days=s.measurement_window_days,
                    **({"detail": str(detail)[:300]} if detail else {}),
                )
            )
        self._journal.commit(events)
        self.measured += 1
        log.info("outcome_measured", verdicts={str(e.data["metric"]): e.data["verdict"] for e in events})
        return events

    def _asker(self, s: LoopSettings) -> tuple[ModelAsker | None, str]:
        """The LLM that judges prose metrics, or None and why there is none."""
        if self._llm is not None:
            return self._llm, ""
        config = self._settings.config
        llm = from_config(config, s.llm_agent, config.state_path)
        if llm is not None:
            return llm, ""
        if not s.llm_agent:
            return None, "no loops.llm_agent is configured to judge a prose metric"
        return None, f"loops.llm_agent {s.llm_agent} is not one of agents"

    async def incident(self, repo: RepoConfig, merge: Event, regressed: Sequence[Event], s: LoopSettings) -> None:
        """One issue per regressing merge, found (open or closed) before it is filed; ``outcome_incident``."""
        sha = str(merge.data.get("sha") or "")
        key = incident_key(repo.name, sha)
        found = await safely("find", find_marked(self._forge, repo.name, key, state="all"))
        action = "found"
        if found is None:
            task = self._graph.find(str(merge.task))
            title = f"Regression after {merge.task}: " + ", ".join(str(e.data["metric"]) for e in regressed)
            body = _incident_body(merge, regressed, task.title if task else "")
            filing = file_once(self._forge, repo.name, title, body, [s.fix_label], key=key)
            result = await safely("create_issue", filing)
            if result is None:
                return
            found, action = result[0], "filed"
        self._journal.record(
            "outcome_incident",
            merge.task,
            repo=repo.name,
            issue=found.number,
            sha=sha,
            metrics=[e.data["metric"] for e in regressed],
            action=action,
        )
        log.warning("outcome_regressed", issue=found.number, action=action)


def _entry(metric: Metric, reading: Reading | None) -> dict[str, Any]:
    entry: dict[str, Any] = metric.model_dump(include=set(_DEFINITION), exclude_none=True)
    entry["value"] = reading.value if reading else None
    if metric.kind == "number":
        del entry["kind"]
    else:
        entry["text"] = reading.text if reading else None
    if reading is not None and reading.detail:
        entry["detail"] = reading.detail[:300]
    return entry


def _incident_body(merge: Event, regressed: Sequence[Event], title: str) -> str:
    pr, sha = merge.data.get("pr"), str(merge.data.get("sha") or "")
    numbers = [e for e in regressed if e.data.get("kind") != "prose"]
    rows = [
        f"| {e.data['metric']} | {e.data.get('direction')} | {e.data.get('before')} | {e.data.get('after')} | "
        f"{e.data.get('change_pct') if e.data.get('change_pct') is not None else '-'} |"
        for e in numbers
    ]
    table = ["| metric | direction | before the merge | now | change % |", "|---|---|---|---|---|", *rows, ""]
    prose: list[str] = []
    for e in regressed:
        if e.data.get("kind") == "prose":
            prose += [f"**{e.data['metric']}** (prose, {e.data.get('direction')}): {e.data.get('reason')}", ""]
            for label, key in (("Before the merge", "before_text"), ("Now", "after_text")):
                prose += [f"{label}:", fence(sanitize(str(e.data.get(key) or "")[:_SHOWN_CHARS])), ""]
    window = regressed[0].data.get("window_days")
    return "\n".join(
        [
            f"After the merge of PR #{pr} (commit `{sha[:12]}`, task `{merge.task}`{': ' + title if title else ''}) "
            f"these `objectives.yaml` metrics moved the wrong way over {window} days:",
            "",
            *(table if rows else []),
            *prose,
            "Check whether the change caused it (revert it, or fix forward), or whether something else did.",
            "",
            "_Filed by the outcome check once per merge._",
        ]
    )
