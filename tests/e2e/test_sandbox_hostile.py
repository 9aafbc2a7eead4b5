"""The issue's hostile set through the real daemon (``sandbox.mode: bubblewrap``, local forge): a hostile agent
and a hostile ``test_command`` try every attack at once, each one fails and is reported, and the daemon keeps
serving (``ctl status`` answers, the next normal issue merges).

The agent (``tests/fakes/agents/hostile_agent.py``, a real executable) reads its probes from the issue text and
prints ``PROBE <name>: GOT|DENIED …`` for each into its log; the planted secrets are the daemon's: a key in its
``HOME``'s ``.ssh``, the credential folder's ``github_token``, the journal, a file in another task's worktree.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agentos.runners import cgroups
from agentos.runners.sandbox import probe

from .conftest import FAKES, REPO, Loop, claude_agent
from .test_sandbox_egress import Server

MakeLoop = Callable[..., Loop]
PROBLEM = probe()
LIMITS = cgroups.unavailable_reason()
pytestmark = [
    pytest.mark.skipif(PROBLEM is not None, reason=f"bubblewrap cannot run here: {PROBLEM}"),
    pytest.mark.skipif(LIMITS is not None, reason=f"no cgroup for the resource limits here: {LIMITS}"),
    pytest.mark.skipif(not os.path.exists("/usr/bin/python3"), reason="the hostile agent runs under /usr/bin/python3"),
]
HOSTILE = FAKES / "hostile_agent.py"
SANDBOX = {"mode": "bubblewrap", "memory_mb": 160, "max_processes": 48, "tmp_mb": 16}
SECRET = "SECRET-PLANTED"
PROBE_LINE = re.compile(r"^PROBE (\S+): (GOT|DENIED|RAN)(.*)$", re.MULTILINE)


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    """The loop's files outside ``/tmp``, as a deployment's are: the sandbox has a private ``/tmp``, where a write
    to a host path under ``/tmp`` would land and seem to succeed (the host's file untouched) instead of failing."""
    root = Path(tempfile.mkdtemp(prefix="agentos-hostile-", dir="/var/tmp"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def server() -> Iterator[Server]:
    """A server on the host's 127.0.0.1 that nobody allowlisted."""
    forbidden = Server(b"should-never-be-seen")
    yield forbidden
    forbidden.close()


def plant(loop: Loop) -> dict[str, Path]:
    """The daemon's secrets, where its user keeps them: ``~/.ssh/id_rsa`` and the credential folder."""
    home = Path(loop.env["HOME"])
    secrets = {
        "ssh_key": home / ".ssh" / "id_rsa",
        "github_token": home / ".config" / "agentos" / "credentials" / "github_token",
    }
    for path in secrets.values():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.write_text(f"{SECRET} {path.name}\n")
    return secrets


def probes_line(probes: list[tuple[str, str, str | Path | int]]) -> str:
    return "HOSTILE-PROBES: " + json.dumps([[name, attack, str(target)] for name, attack, target in probes])


def results(output: str) -> dict[str, str]:
    """``{probe name: "GOT …", "DENIED …" or "RAN …"}`` from the hostile program's output."""
    return {m.group(1): m.group(2) + m.group(3) for m in PROBE_LINE.finditer(output)}


def outside_writes(loop: Loop, other: Path) -> dict[str, Path]:
    home = Path(loop.env["HOME"])
    return {
        "write_home": home / ".bashrc",
        "write_state": loop.state / "graph.json.injected",
        "write_repo": loop.repo / "pwned.txt",
        "write_clone_config": loop.state / "clones" / REPO / "config",
        "write_other_worktree": other / "pwned.txt",
        "write_host_tmp": loop.run_dir / "pwned.txt",
    }


def snapshot(paths: dict[str, Path]) -> dict[str, bytes | None]:
    """Each file's bytes, ``None`` when it does not exist; the hostile program's writes say ``hostile was here``."""
    return {name: path.read_bytes() if path.exists() else None for name, path in paths.items()}


def untouched(before: dict[str, bytes | None], after: dict[str, bytes | None]) -> bool:
    """Nothing changed but what the daemon made meanwhile (the shared clone's ``config``), without the agent's words."""
    return all(after[k] == v or (v is None and b"hostile was here" not in (after[k] or b"")) for k, v in before.items())


def test_a_hostile_agent_fails_at_everything_and_the_daemon_keeps_serving(make_loop: MakeLoop, server: Server) -> None:
    """One attempt tries the whole list; each probe is refused, the attempt ends ``resource_limit`` (its last
    probe allocates past ``memory_mb``) with the refused host on it, nothing outside its worktree changed, the
    daemon never noticed a signal, and a normal issue filed next merges."""
    hostile = {"kind": "command", "argv": ["/usr/bin/python3", str(HOSTILE)], "env": {"HOSTILE_ATTACK": "all"}}
    agents = {"park": claude_agent("busy"), "good": claude_agent("complete"), "hostile": hostile}
    loop = make_loop(agents, start=False, sandbox=SANDBOX, routing={"default": ["park"], "max_attempts": 1})
    secrets = plant(loop)
    loop.start()
    assert loop.daemon is not None
    daemon_pid = loop.daemon.pid

    # another task at work in its own worktree, for the agent to look into
    busy = f"{REPO}#{loop.new_issue('Keep busy', 'Work on.')}"
    other = loop.worktree(loop.wait_status(busy, "running"))
    loop.wait_for(lambda: (loop.run_path(busy, 1) / "agent.log").exists(), what="the busy agent to start")
    (other / "notes.txt").write_text(f"{SECRET} other worktree\n")
    writes = outside_writes(loop, other)
    before = snapshot(writes)
    clone = loop.state / "clones" / REPO
    busy_branch = loop.task(busy)["branch"]
    refs_before = loop.git("for-each-ref", "--format=%(refname) %(objectname)", cwd=clone)

    probes: list[tuple[str, str, str | Path | int]] = [
        ("read_ssh_key", "read", secrets["ssh_key"]),
        ("read_github_token", "read", secrets["github_token"]),
        ("read_journal", "read", loop.state / "journal.jsonl"),
        ("list_state", "list", loop.state),
        ("symlink_state", "symlink", loop.state),
        ("read_other_worktree", "read", other / "notes.txt"),
        ("list_other_worktree", "list", other),
        *(("write_" + name.removeprefix("write_"), "write", path) for name, path in writes.items()),
        ("connect_server", "connect", f"127.0.0.1:{server.port}"),
        ("proxy_server", "proxy", f"127.0.0.1:{server.port}"),
        ("control_socket", "unix", loop.socket),
        ("kill_daemon", "kill", daemon_pid),
        ("ptrace_daemon", "ptrace", daemon_pid),
        ("symlink_ssh_key", "symlink", secrets["ssh_key"]),
        ("symlink_home", "symlink", Path(loop.env["HOME"])),
        ("git_commit", "git", "commit -q --allow-empty -m hostile"),
        ("git_move_other_branch", "git", f"update-ref refs/heads/{busy_branch} HEAD"),
        ("git_push_other_branch", "git", f"push -q -f {clone} HEAD:refs/heads/{busy_branch}"),
        ("git_move_main", "git", "branch -f main HEAD"),
        ("git_delete_objects", "git", f"-C {clone} prune-packed"),
        ("fork_bomb", "fork", ""),
        ("fill_tmp", "fill_tmp", ""),
        ("memory", "memory_child", ""),
    ]
    body = f"## Goal\n\nBreak out.\n\n{probes_line(probes)}\n\nAgent: hostile\nType: implementation\n"
    number = loop.new_issue("Break out", body)
    task_id = f"{REPO}#{number}"

    task = loop.wait_status(task_id, "blocked", timeout=60)

    attempt = task["attempts"][-1]
    output = (Path(attempt["run_dir"]) / "agent.log").read_text()
    got = results(output)
    assert set(got) == {name for name, _, _ in probes}, output
    # the state directory is there only as the mount points' parents (the worktrees, the clone, this run)
    skeleton = {"clones", "runs", "worktrees"}
    for name in ("list_state", "symlink_state"):
        assert set(got.pop(name).removeprefix("GOT ").split(",")) <= skeleton, output
    ran = {name: got.pop(name) for name in list(got) if name.startswith("git_")}
    assert all(answer.startswith("RAN ") for answer in ran.values()), output
    assert [name for name, answer in got.items() if not answer.startswith("DENIED")] == [], output
    assert SECRET not in output, output
    # git inside ran against a private view of the shared clone: no other branch moved
    refs_after = loop.git("for-each-ref", "--format=%(refname) %(objectname)", cwd=clone)
    moved = set(refs_after.splitlines()) - set(refs_before.splitlines())
    assert {line.split()[0] for line in moved} <= {f"refs/heads/{loop.task(task_id)['branch']}"}, (moved, output)
    own = f"--exclude=refs/heads/{loop.task(task_id)['branch']}"
    assert "hostile" not in loop.git("log", "--format=%s", own, "--all", cwd=clone)
    assert int(got["fork_bomb"].split("DENIED after ")[1].split()[0]) < SANDBOX["max_processes"], output
    assert int(got["fill_tmp"].split("DENIED after ")[1].split()[0]) <= SANDBOX["tmp_mb"], output
    assert got["memory"].startswith("DENIED killed by signal 9"), output
    # what the operator is told: the blocker, the refused host
    assert attempt["blocker_code"] == "resource_limit" and task["last_blocker"] == "resource_limit", attempt
    blocked = f"blocked: 127.0.0.1:{server.port} ×2"
    assert attempt["egress_denied"] == blocked
    shown = loop.cli("task", "show", task_id, "--config", str(loop.config)).stdout
    assert "resource_limit" in shown and blocked in shown, shown
    # and what the host saw: nothing
    assert server.connections == 0
    assert untouched(before, snapshot(writes))
    assert loop.daemon.poll() is None
    assert loop.ctl("status")["sandbox"] == "bubblewrap"

    loop.ctl("cancel", {"id": busy})
    merged = normal_issue(loop)
    assert merged["attempts"][-1]["outcome"] == "complete"


def normal_issue(loop: Loop) -> dict[str, Any]:
    """A normal issue for the ``good`` agent, waited on until it merges."""
    number = loop.new_issue("Add a greeting", "## Goal\n\nSay hello.\n\nAgent: good\nType: implementation\n")
    return loop.wait_status(f"{REPO}#{number}", "merged", timeout=60)


def test_a_hostile_test_command_fails_at_everything_and_the_issue_still_merges(
    make_loop: MakeLoop, server: Server
) -> None:
    """The repo's ``test_command`` (code an agent could have written) runs the same probes in the hand-off and in
    the forge's checks: it exits non-zero when any got through, so the merge itself says every one failed, and
    the checks' log in the PR shows each refusal."""
    loop = make_loop({"good": claude_agent("complete")}, start=False, sandbox=SANDBOX)
    secrets = plant(loop)
    loop.start()
    assert loop.daemon is not None
    writes = outside_writes(loop, loop.state / "worktrees" / REPO / "nobody")
    del writes["write_other_worktree"]
    before = snapshot(writes)
    probes: list[tuple[str, str, str | Path | int]] = [
        ("read_ssh_key", "read", secrets["ssh_key"]),
        ("read_github_token", "read", secrets["github_token"]),
        ("read_journal", "read", loop.state / "journal.jsonl"),
        ("symlink_ssh_key", "symlink", secrets["ssh_key"]),
        *((name, "write", path) for name, path in writes.items()),
        ("connect_server", "connect", f"127.0.0.1:{server.port}"),
        ("proxy_server", "proxy", f"127.0.0.1:{server.port}"),
        ("control_socket", "unix", loop.socket),
        ("kill_daemon", "kill", loop.daemon.pid),
        ("fork_bomb", "fork", ""),
        ("fill_tmp", "fill_tmp", ""),
        ("memory", "memory_child", ""),
    ]
    (loop.repo / "probe.py").write_bytes(HOSTILE.read_bytes())
    (loop.repo / "probes.txt").write_text(probes_line(probes) + "\n")
    loop.git("add", "probe.py", "probes.txt")
    loop.git("commit", "-qm", "the tests probe their sandbox")
    repo = {"name": REPO, "path": str(loop.repo), "test_timeout_s": 60}
    loop.overrides["repos"] = [{**repo, "test_command": "python3 probe.py probes.txt && python3 -m unittest -q"}]
    loop.write_config()
    loop.ctl("reload")

    task = normal_issue(loop)

    [pull] = loop.pulls()
    assert pull["head"] == task["branch"]
    [run] = pull["checks"]["checks"]["runs"]
    output = run["log_tail"]
    got = results(output)
    assert set(got) == {name for name, _, _ in probes}, output
    assert got["memory"].startswith("DENIED killed by signal 9"), output
    assert [name for name, answer in got.items() if not answer.startswith("DENIED")] == [], output
    assert server.connections == 0
    assert untouched(before, snapshot(writes))
    assert loop.daemon.poll() is None
