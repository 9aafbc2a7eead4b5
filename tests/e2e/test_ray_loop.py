"""Attempts on a real multi-node Ray cluster, through the real daemon on the local forge (issue 20).

One cluster for the module (:mod:`tests.ray_cluster`): a head with no ``agentos`` resource (no attempt runs
there) and two worker nodes, ``plain`` (``{"agentos": 2}``) and ``claude`` (``{"agentos": 2, "claude": 1}``).
The fake agents run on the worker nodes, in clones of the bundle the daemon shipped; the daemon fetches their
commits back and pushes, tests and merges them itself. The last test kills a node.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_process import AGENTOS, alive, pid_list
from tests.e2e.conftest import FAKES, Loop, claude_agent, command_agent

ray = pytest.importorskip("ray", reason="ray is not installed: pip install 'agentos[ray]' (the test extra has it)")

from agentos.runners.sandbox import SANDBOX_HOME, probe  # noqa: E402
from tests.ray_cluster import RayCluster, free_port  # noqa: E402

SANDBOX_PROBLEM = probe()

pytestmark = [pytest.mark.slow]

WAIT_S = 120.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayCluster]:
    made = RayCluster(tmp_path_factory.mktemp("ray"))
    try:
        made.start({"plain": {"agentos": 2}, "claude": {"agentos": 2, "claude": 1}})
        made.learn_node_ids()
        yield made
    finally:
        made.stop()


def _ray(cluster: RayCluster) -> dict[str, Any]:
    return {"runner": {"kind": "ray", "address": cluster.address, "namespace": "agentos-e2e"}}


def _merged(loop: Loop, *titles: str) -> list[dict[str, Any]]:
    """File one issue per title (each agent edits a file of its own: no conflict between them); all merge."""
    numbers = [loop.new_issue(title, f"soak-plan: file{i}.txt complete\n") for i, title in enumerate(titles)]
    return [loop.wait_status(f"app#{n}", "merged", timeout=WAIT_S) for n in numbers]


def _maps_ray(pid: int) -> bool:
    """Ray's core library is mapped into the process (it imported ray)."""
    return "_raylet" in Path(f"/proc/{pid}/maps").read_text()


def _no_duplicates(loop: Loop, number: int) -> None:
    pulls = [p for p in loop.pulls() if f"#{number}" in str(p.get("body", "")) or p.get("issue") == number]
    assert len(pulls) <= 1, pulls
    _, comments = loop.issue(number)
    bodies = [c.body for c in comments]
    assert len(bodies) == len(set(bodies)), bodies


def test_the_local_runner_daemon_never_loads_ray(make_loop: Callable[..., Loop]) -> None:
    """`runner: local` (the default): the running daemon has no Ray in its memory."""
    loop = make_loop({"fake": command_agent()})
    assert loop.daemon is not None
    assert not _maps_ray(loop.daemon.pid)


def test_issues_are_fixed_on_worker_nodes_and_merge(
    cluster: RayCluster, make_loop: Callable[..., Loop], tmp_path: Path
) -> None:
    """Two issues, fixed by a fake agent on the cluster's worker nodes, their tests run there too; the daemon pushes
    and merges both. The agent's environment there holds nothing of the daemon's (its forge token stays home)."""
    env_log = tmp_path / "agent-env.json"
    loop = make_loop({"fake": command_agent("plan", FAKE_AGENT_ENV_LOG=str(env_log))}, start=False, **_ray(cluster))
    loop.env["GITHUB_TOKEN"] = "ghp_the_daemons_own_forge_token"
    ran_in = tmp_path / "tests-ran-in.txt"  # where each test run's TMPDIR was: a node's, or the daemon's
    test_command = f'python3 -m unittest -q && echo "tmp=$TMPDIR" >> {ran_in}'
    loop.overrides["repos"] = [{"name": "app", "path": str(loop.repo), "test_command": test_command}]
    loop.write_config()
    loop.start()
    assert loop.daemon is not None and _maps_ray(loop.daemon.pid)
    tasks = _merged(loop, "Add a greeting", "Add a farewell")
    workers = {n.node_id for n in cluster.nodes.values() if n.resources}
    for task in tasks:
        assert len(task["attempts"]) == 1, [
            (a["outcome"], a["blocker_code"], a["error"][:300]) for a in task["attempts"]
        ]
        (attempt,) = task["attempts"]
        assert attempt["runner"] == "ray" and attempt["node"] in workers, attempt
        assert attempt["pid"] is None  # nothing ran here
        shown = loop.cli("task", "show", task["id"], "--config", str(loop.config)).stdout
        assert f"attempt 1 ran on ray node {attempt['node']}" in shown
        log = loop.run_path(task["id"], 1) / "agent.log"
        assert "Done: appended a line" in log.read_text()  # streamed back from the node
    assert loop.show("file0.txt") and loop.show("file1.txt")
    assert len(loop.pulls()) == 2
    for task in tasks:
        _no_duplicates(loop, task["issue"])
    # The hand-off's tests ran on the node, next to the agent's work (the local forge's merge check runs its own).
    assert loop.log_tail(1_000_000).count('"tests_ran_remotely"') == 2
    assert ran_in.read_text().count(f"tmp={cluster.temp}") == 2, ran_in.read_text()
    seen = json.loads(env_log.read_text())
    assert "GITHUB_TOKEN" not in seen and "ghp_" not in json.dumps(seen)
    assert seen["HOME"] == str(cluster.root / "home")  # the node's own environment, filtered


def test_red_tests_on_the_node_fail_the_attempt(cluster: RayCluster, make_loop: Callable[..., Loop]) -> None:
    """The repo's tests fail on the node: the attempt fails `test_failure` with their output, no PR is opened."""
    loop = make_loop({"fake": command_agent()}, start=False, routing={"max_attempts": 1}, **_ray(cluster))
    red = "echo 'red on the node' && exit 3"
    loop.overrides["repos"] = [{"name": "app", "path": str(loop.repo), "test_command": red}]
    loop.write_config()
    loop.start()
    number = loop.new_issue("Break the tests")
    task = loop.wait_status(f"app#{number}", "blocked", timeout=WAIT_S)
    (attempt,) = task["attempts"]
    assert attempt["runner"] == "ray" and attempt["blocker_code"] == "test_failure", attempt
    assert "exit 3" in attempt["error"] and "red on the node" in attempt["error"]
    assert loop.pulls() == []


def test_an_agent_needing_claude_runs_only_on_that_node(cluster: RayCluster, make_loop: Callable[..., Loop]) -> None:
    """`ray_resources: {claude: 1}`: every attempt of that agent lands on the one node offering it."""
    agent = {**claude_agent("plan"), "ray_resources": {"claude": 1}}
    loop = make_loop({"claude": agent}, **_ray(cluster))
    tasks = _merged(loop, "Fix the title", "Fix the footer", "Fix the header")
    claude_node = cluster.nodes["claude"].node_id
    assert claude_node
    assert [t["attempts"][-1]["node"] for t in tasks] == [claude_node] * 3
    # The first attempt on the node shipped the whole branch; the next ones only what its cache lacked.
    shipped = [e["bundle"] for e in _log_events(loop, "ray_attempt_placed")]
    assert len(shipped) == 3 and shipped[0] > 0 and max(shipped[1:]) < shipped[0], shipped


def _log_events(loop: Loop, event: str) -> list[dict[str, Any]]:
    lines = [line[line.find("{") :] for line in loop.log_tail(1_000_000).splitlines() if f'"{event}"' in line]
    return [e for e in map(json.loads, lines) if e.get("event") == event]


def test_a_daemon_killed_mid_attempt_finds_its_actor_again(
    cluster: RayCluster, make_loop: Callable[..., Loop], tmp_path: Path
) -> None:
    """SIGKILL the daemon while the agent runs on a node; the restarted daemon waits for the same actor: one
    attempt, one agent process, one PR."""
    pids = tmp_path / "loop0" / "agent.pids"
    loop = make_loop(
        {"slow": command_agent("slow", FAKE_AGENT_SLOW_S="3", FAKE_AGENT_PID_FILE=str(pids))}, **_ray(cluster)
    )
    number = loop.new_issue("Slowly add a line")
    task_id = f"app#{number}"
    loop.wait_for(
        lambda: loop.task(task_id)["attempts"][-1]["node"] if loop.task(task_id)["attempts"] else None,
        what="the attempt placed on a node",
        timeout=WAIT_S,
    )
    node = loop.task(task_id)["attempts"][-1]["node"]
    assert loop.ctl("status")["running_on"] == {task_id: f"ray {node[:12]}"}  # `agentos ctl status`
    loop.kill9()
    loop.start()
    task = loop.wait_status(task_id, "merged", timeout=WAIT_S)
    show = subprocess.run(
        [str(AGENTOS), "ctl", "task", "show", task_id],
        env={**loop.env, "COLUMNS": "300"},
        capture_output=True,
        text=True,
    )
    assert f"ray {node[:12]}" in show.stdout, show.stdout  # `agentos ctl task show`: the node it ran on
    assert len(task["attempts"]) == 1, task["attempts"]
    assert task["attempts"][0]["outcome"] == "complete"
    assert len(pid_list(pids)) == 1  # the agent ran once
    assert "attempt_reattached" in loop.log_tail(200_000)
    assert len(loop.pulls()) == 1
    _no_duplicates(loop, number)


def test_a_daemon_stopped_gracefully_leaves_its_attempt_running_for_the_restart(
    cluster: RayCluster, make_loop: Callable[..., Loop], tmp_path: Path
) -> None:
    """SIGTERM (a restart to upgrade, a config change) while the agent runs on a node: the daemon exits without
    stopping it; the next start follows the same actor to the end: one attempt, one agent process, one PR."""
    pids = tmp_path / "loop0" / "agent.pids"
    loop = make_loop(
        {"slow": command_agent("slow", FAKE_AGENT_SLOW_S="4", FAKE_AGENT_PID_FILE=str(pids))},
        limits={"shutdown_grace_s": 0.5},
        **_ray(cluster),
    )
    number = loop.new_issue("Slowly add a line across a restart")
    task_id = f"app#{number}"
    loop.wait_for(lambda: pid_list(pids), what="the agent started on its node", timeout=WAIT_S)
    assert loop.stop() == 0
    assert "attempt_left_running" in loop.log_tail(200_000)
    loop.start()
    task = loop.wait_status(task_id, "merged", timeout=WAIT_S)
    assert [(a["outcome"], a["runner"]) for a in task["attempts"]] == [("complete", "ray")], task["attempts"]
    assert len(pid_list(pids)) == 1  # the agent ran once
    assert "attempt_reattached" in loop.log_tail(200_000)
    assert len(loop.pulls()) == 1
    _no_duplicates(loop, number)


def test_doctor_checks_the_cluster(cluster: RayCluster, make_loop: Callable[..., Loop]) -> None:
    """`agentos doctor`: the cluster answers, its nodes, which agents a node can run, the versions."""
    agents = {"fake": command_agent(), "claude": {**claude_agent(), "ray_resources": {"claude": 1}}}
    agents["gpu"] = {**command_agent(), "ray_resources": {"gpu_box": 1}}
    loop = make_loop(agents, start=False, **_ray(cluster))
    done = subprocess.run(
        [str(AGENTOS), "doctor", "--config", str(loop.config), "--json"], env=loop.env, capture_output=True, text=True
    )
    checks = {c["check"]: c for c in json.loads(done.stdout[done.stdout.find("[") :])}
    assert checks["ray"]["status"] == "ok" and "offering the `agentos` resource" in checks["ray"]["detail"]
    assert checks["ray:agent:fake"]["status"] == "ok"
    assert checks["ray:agent:claude"]["status"] == "ok" and "1 node(s)" in checks["ray:agent:claude"]["detail"]
    assert checks["ray:agent:gpu"]["status"] == "error"  # no node offers gpu_box
    assert checks["ray:versions"]["status"] == "ok", checks["ray:versions"]


def test_a_cancel_kills_the_agent_on_its_node(
    cluster: RayCluster, make_loop: Callable[..., Loop], tmp_path: Path
) -> None:
    """`cancel` while the agent runs on a node: its process there is killed, the task is cancelled."""
    pids = tmp_path / "loop0" / "agent.pids"
    loop = make_loop({"hang": command_agent("hang", FAKE_AGENT_PID_FILE=str(pids))}, **_ray(cluster))
    number = loop.new_issue("Hang forever")
    task_id = f"app#{number}"
    loop.wait_for(lambda: pid_list(pids), what="the agent started on its node", timeout=WAIT_S)
    assert loop.task(task_id)["attempts"][-1]["runner"] == "ray"
    loop.ctl("cancel", {"id": task_id})
    loop.wait_for(lambda: not any(alive(p) for p in pid_list(pids)), what="the remote agent killed")
    assert loop.task(task_id)["status"] == "cancelled"
    assert loop.pulls() == []


def test_the_idle_limit_kills_a_silent_agent_on_its_node(
    cluster: RayCluster, make_loop: Callable[..., Loop], tmp_path: Path
) -> None:
    """`limits.idle_timeout_minutes` holds on the node: a silent agent's group is killed, the attempt times out."""
    pids = tmp_path / "loop0" / "agent.pids"
    limits = {"idle_timeout_minutes": 0.05, "max_runtime_minutes": 2, "kill_grace_s": 0.5, "shutdown_grace_s": 1}
    agent = command_agent("hang", FAKE_AGENT_PID_FILE=str(pids), FAKE_AGENT_FORK="1")
    loop = make_loop({"hang": agent}, limits=limits, routing={"max_attempts": 1}, **_ray(cluster))
    number = loop.new_issue("Say nothing")
    task = loop.wait_status(f"app#{number}", "blocked", timeout=WAIT_S)
    (attempt,) = task["attempts"]
    assert attempt["runner"] == "ray" and attempt["blocker_code"] == "timeout", attempt
    assert len(pid_list(pids)) == 2 and not any(alive(p) for p in pid_list(pids))  # the agent and its child
    assert "idle limit of 3s reached" in (loop.run_path(task["id"], 1) / "agent.log").read_text()


def _journal(loop: Loop) -> list[dict[str, Any]]:
    paths = [*sorted((loop.state / "events").glob("events-*.jsonl")), loop.state / "journal.jsonl"]
    lines = [line for p in paths if p.exists() for line in p.read_text().splitlines() if line.strip()]
    return [json.loads(line) for line in lines]


def _notices(loop: Loop, key: str) -> list[dict[str, Any]]:
    return [e for e in _journal(loop) if e.get("type") == "notification_sent" and key in json.dumps(e)]


def test_an_unreachable_head_holds_attempts_and_tells_the_operator_once(make_loop: Callable[..., Loop]) -> None:
    """No cluster at the address: no attempt starts, connecting is retried with backoff, one sev2 notice."""
    loop = make_loop({"fake": command_agent()}, runner={"kind": "ray", "address": f"127.0.0.1:{free_port()}"})
    number = loop.new_issue("Wait for the cluster")
    loop.wait_for(lambda: loop.log_tail(1_000_000).count('"ray_unreachable"') >= 3, what="three tries to connect")
    assert len(_notices(loop, "ray_unreachable")) == 1
    task = loop.task(f"app#{number}")
    assert task["status"] == "queued" and task["attempts"] == []


def test_an_unreachable_head_with_fallback_runs_attempts_here(make_loop: Callable[..., Loop]) -> None:
    """`runner.fallback_local: true`: while the cluster cannot be reached, attempts run on this machine."""
    runner = {"kind": "ray", "address": f"127.0.0.1:{free_port()}", "fallback_local": True}
    loop = make_loop({"fake": command_agent()}, runner=runner)
    number = loop.new_issue("Run here meanwhile")
    task = loop.wait_status(f"app#{number}", "merged", timeout=WAIT_S)
    assert [(a["runner"], a["node"]) for a in task["attempts"]] == [("", "")]
    assert task["attempts"][0]["pid"] is not None


@pytest.mark.skipif(SANDBOX_PROBLEM is not None, reason=f"bubblewrap cannot run here: {SANDBOX_PROBLEM}")
def test_a_sandboxed_attempt_runs_in_bubblewrap_on_its_node(
    cluster: RayCluster, make_loop: Callable[..., Loop]
) -> None:
    """`sandbox.mode: bubblewrap`: the node wraps the agent in its own sandbox; the issue still merges."""
    sandbox = {"mode": "bubblewrap", "memory_mb": 1024, "max_processes": 256, "tmp_mb": 64}
    agent = {
        "kind": "command",
        "argv": ["/bin/sh", "-c", f'echo "$HOME" > where.txt && exec {FAKES}/command_agent.py "$0"', "{prompt_file}"],
        "env": {"FAKE_AGENT_MODE": "complete"},
        "ro_paths": [str(FAKES)],
    }
    loop = make_loop({"boxed": agent}, sandbox=sandbox, **_ray(cluster))
    number = loop.new_issue("Add a greeting, sandboxed")
    task = loop.wait_status(f"app#{number}", "merged", timeout=WAIT_S)
    assert [(a["outcome"], a["runner"]) for a in task["attempts"]] == [("complete", "ray")]
    assert loop.show("where.txt").strip() == str(SANDBOX_HOME)  # the sandbox's HOME, on the node


@pytest.mark.skipif(SANDBOX_PROBLEM is not None, reason=f"bubblewrap cannot run here: {SANDBOX_PROBLEM}")
def test_a_host_denied_on_the_node_is_reported_by_the_daemon(
    cluster: RayCluster, make_loop: Callable[..., Loop]
) -> None:
    """The node's own egress proxy refuses a host the config does not allow: the attempt's record and the
    journal's `egress_denied` say so, as for a local attempt."""
    with socket.create_server(("127.0.0.1", 0)) as forbidden:
        port = forbidden.getsockname()[1]
        sandbox = {"mode": "bubblewrap", "tmp_mb": 64}
        agent = {
            "kind": "command",
            "argv": ["/usr/bin/python3", str(FAKES / "hostile_agent.py")],
            "env": {"HOSTILE_ATTACK": "proxy", "HOSTILE_TARGET": f"127.0.0.1:{port}"},
        }
        loop = make_loop({"hostile": agent}, sandbox=sandbox, routing={"max_attempts": 1}, **_ray(cluster))
        number = loop.new_issue("Reach out from a node")
        task = loop.wait_status(f"app#{number}", "blocked", timeout=WAIT_S)
    (attempt,) = task["attempts"]
    assert attempt["runner"] == "ray" and attempt["egress_denied"] == f"blocked: 127.0.0.1:{port} ×2"
    denied = [e for e in _journal(loop) if e.get("type") == "egress_denied"]
    assert [(e["task"], e["data"]["host"]) for e in denied] == [(f"app#{number}", f"127.0.0.1:{port}")]


def test_an_agent_no_node_can_run_is_escalated_and_runs_once_a_node_offers_it(
    cluster: RayCluster, make_loop: Callable[..., Loop]
) -> None:
    """`ray_resources: {gpu_box: 1}` that no node offers: each try is refused before any actor is made (no minute
    of waiting), not counted against the agent; after `routing.max_attempts` tries the task is escalated with one
    line naming the missing resource, and `agentos doctor` fails for that agent. A node offering it joins,
    `task retry`: the issue merges on that node."""
    agent = {**command_agent(), "ray_resources": {"gpu_box": 1}}
    routing = {"max_attempts": 2, "backoff_base_s": 0.2, "backoff_cap_s": 0.5}
    loop = make_loop({"gpu": agent}, routing=routing, **_ray(cluster))
    number = loop.new_issue("Train it on the GPU box")
    task_id = f"app#{number}"
    task = loop.wait_status(task_id, "blocked", timeout=WAIT_S)
    line = """no Ray node offers {"gpu_box": 1}: start a worker with --resources '{"agentos": 1, "gpu_box": 1}'"""
    assert [(a["outcome"], a["blocker_code"], a["error"]) for a in task["attempts"]] == [
        ("interrupted", "no_ray_node", line)
    ] * 2
    assert task["last_blocker"] == "no_ray_node"
    escalated = loop.wait_for(lambda: _notices(loop, f"escalation:{task_id}"), what="the escalation notice")
    assert len(escalated) == 1 and line in escalated[0]["data"]["text"], escalated
    assert _notices(loop, "ray_unreachable") == []  # the cluster is fine: other agents' attempts go on
    assert '"ray_attempt_placed"' not in loop.log_tail(1_000_000)
    doctor = subprocess.run(
        [str(AGENTOS), "doctor", "--config", str(loop.config), "--json"], env=loop.env, capture_output=True, text=True
    )
    checks = {c["check"]: c for c in json.loads(doctor.stdout[doctor.stdout.find("[") :])}
    assert checks["ray:agent:gpu"]["status"] == "error" and doctor.returncode != 0, checks["ray:agent:gpu"]

    cluster.add_worker("gpu", {"agentos": 1, "gpu_box": 1})
    cluster.learn_node_ids()
    loop.ctl("retry", {"id": task_id})
    task = loop.wait_status(task_id, "merged", timeout=WAIT_S)
    assert task["attempts"][-1]["node"] == cluster.nodes["gpu"].node_id
    assert [a["blocker_code"] for a in task["attempts"]] == ["no_ray_node", "no_ray_node", None]
    assert len(loop.pulls()) == 1
    _no_duplicates(loop, number)


def test_a_node_dying_mid_attempt_loses_the_runner_and_the_task_merges_on_another(
    cluster: RayCluster, make_loop: Callable[..., Loop], tmp_path: Path
) -> None:
    """Kill the node the attempt runs on: the attempt ends `runner_lost` (not counted), the task runs again on
    the other node offering `claude` and merges. (Kills a node: the last test of the module.)"""
    cluster.add_worker("claude2", {"agentos": 2, "claude": 1})
    cluster.learn_node_ids()
    pids = tmp_path / "loop0" / "agent.pids"
    agent = {
        **command_agent("slow", FAKE_AGENT_SLOW_S="4", FAKE_AGENT_PID_FILE=str(pids)),
        "ray_resources": {"claude": 1},
    }
    loop = make_loop({"slow": agent}, **_ray(cluster))
    number = loop.new_issue("Add a line while a node dies")
    task_id = f"app#{number}"
    node_id = loop.wait_for(
        lambda: loop.task(task_id)["attempts"][-1]["node"] if loop.task(task_id)["attempts"] else None,
        what="the attempt placed on a node",
        timeout=WAIT_S,
    )
    (victim,) = [name for name, n in cluster.nodes.items() if n.node_id == node_id]
    cluster.kill(victim)
    for pid in pid_list(pids):  # the agent's own session outlives its raylet here; on a dead machine it is gone
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    task = loop.wait_status(task_id, "merged", timeout=WAIT_S)
    first, second = task["attempts"]
    assert first["outcome"] == "interrupted" and first["blocker_code"] == "runner_lost", first
    assert second["outcome"] == "complete" and second["node"] not in ("", node_id), second
    assert len(loop.pulls()) == 1
    _no_duplicates(loop, number)
