"""The ``acceptance_check`` job: run a merged task's acceptance checks on the base branch (issue #18).

Each pass (every 10 minutes, and poked after each merge of a task with checks) takes every ``merged`` task
whose issue has an ``## Acceptance`` section (:mod:`agentos.acceptance`) and no later generation, and runs
its checks in a fresh detached worktree of the base branch as fetched now:

* ``command:`` with ``/bin/sh -c`` in that worktree, its environment scrubbed, inside the sandbox
  (:func:`agentos.runners.policy.command_spec`) when ``sandbox.mode`` is ``bubblewrap``, limited to
  ``acceptance.timeout_s``; it passes when it exits 0.
* ``file:`` passes when the path exists in that worktree.
* ``url:`` is fetched (no redirects, 30 s at most) only when its host is in ``acceptance.url_hosts``; it
  passes on a 200, and with ``json:``/``equals:`` when the value at that JSON pointer equals the text given.
  A host not allowed fails for good: no agent can fix it, the task escalates.
* ``human:`` items are not run: once the others pass, the task waits for ``agentos ctl accept repo#N``.

What follows is :class:`agentos.acceptance_fate.AcceptanceFate`'s decision: accepted, waiting, or sent back.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from agentos import logging as alog
from agentos.acceptance import AcceptanceCheck
from agentos.acceptance_fate import AcceptanceFate, CheckResult
from agentos.errors import AgentosError
from agentos.graph import Task
from agentos.jsonpointer import MISSING, json_at
from agentos.ports import Settings, Workspaces
from agentos.proc import run_shell, scrubbed_env
from agentos.runners.policy import command_spec
from agentos.task_graph import TaskGraph

__all__ = ["AcceptanceChecker"]

log = alog.get_logger("agentos.acceptance")

_URL_TIMEOUT_S = 30.0


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


class AcceptanceChecker:
    """The job: checks of merged tasks, each pass; the fate decides what their results mean."""

    def __init__(
        self,
        *,
        settings: Settings,
        graph: TaskGraph,
        workspaces: Workspaces,
        fate: AcceptanceFate,
        stopping: Callable[[], bool],
        http: Callable[[], httpx.AsyncClient] | None = None,
    ) -> None:
        self.settings = settings
        self.graph = graph
        self.workspaces = workspaces
        self.fate = fate
        self.stopping = stopping
        self.http = http or (lambda: httpx.AsyncClient(timeout=_URL_TIMEOUT_S, follow_redirects=False))
        self.runs = 0

    def __repr__(self) -> str:
        return f"<AcceptanceChecker runs={self.runs}>"

    async def tick(self) -> None:
        for task in list(self.graph):
            if self.stopping():
                return
            if not self.fate.pending(task) or task.acceptance.passed_at is not None:
                continue
            if not self.settings.repo_enabled(task.repo):
                continue
            with alog.bound(task=task.id):
                try:
                    await self.check(task)
                except AgentosError as exc:  # the base could not be fetched: the next pass tries again
                    log.warning("acceptance_check_failed", error=str(exc))

    async def check(self, task: Task) -> None:
        """Run ``task``'s checks once and hand the results to the fate."""
        results = await self.run(task)
        self.runs += 1
        log.info("acceptance_checked", passed=all(r.passed for r in results), checks=len(results))
        if all(r.passed for r in results):
            await self.fate.passed(task)
        else:
            await self.fate.failed(task, results)

    async def run(self, task: Task) -> list[CheckResult]:
        machine = [c for c in task.acceptance.checks if c.kind != "human"]
        results = [await self._url(c) for c in machine if c.kind == "url"]
        local = [c for c in machine if c.kind in ("command", "file")]
        if local:
            repo = self.settings.repo(task.repo)
            ws = self.workspaces.workspace(repo)
            await ws.fetch()
            async with ws.scratch(f"refs/remotes/origin/{repo.base_branch}") as tree:
                for check in local:
                    results.append(await self._local(check, tree, ws.sandbox, ws.root, repo.pass_env))
        return results

    async def _local(
        self, check: AcceptanceCheck, tree: Path, sandbox: Any, root: Path, pass_env: list[str]
    ) -> CheckResult:
        if check.kind == "file":
            found = (tree / check.value).exists()
            return CheckResult(check.describe(), found, "" if found else f"{check.value} does not exist on the base")
        res = await run_shell(
            check.value,
            cwd=tree,
            env=scrubbed_env(pass_env),
            timeout=self.settings.config.acceptance.timeout_s,
            sandbox=command_spec(sandbox, tree, root),
        )
        how = "timed out" if res.timed_out else f"exit code {res.code}"
        return CheckResult(check.describe(), res.ok, f"{how}\n{res.output_tail}")

    async def _url(self, check: AcceptanceCheck) -> CheckResult:
        name = check.describe()
        host = urlsplit(check.value).hostname or ""
        if host not in self.settings.config.acceptance.url_hosts:
            return CheckResult(name, False, f"the host {host} is not in acceptance.url_hosts", permanent=True)
        try:
            async with self.http() as client:
                response = await client.get(check.value)
        except httpx.HTTPError as exc:
            return CheckResult(name, False, f"the request failed: {type(exc).__name__}: {exc}")
        if response.status_code != 200:
            return CheckResult(name, False, f"HTTP {response.status_code}")
        if check.json_pointer is None:
            return CheckResult(name, True)
        try:
            value = json_at(response.json(), check.json_pointer)
        except ValueError:
            return CheckResult(name, False, "the answer is not JSON")
        if value is MISSING:
            return CheckResult(name, False, f"nothing at {check.json_pointer}")
        if check.equals is not None and _as_text(value) != check.equals:
            return CheckResult(name, False, f"{check.json_pointer} is {_as_text(value)[:200]!r}, not {check.equals!r}")
        return CheckResult(name, True)
