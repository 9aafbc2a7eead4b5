"""The egress allowlist through the real daemon: a hostile agent in its sandbox reaches only what the config allows,
and every denial is journalled and shown (``task show``, the attempt's record, the escalation comment)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agentos.runners.sandbox import probe
from agentos.store import Store

from .conftest import FAKES, REPO, Loop, claude_agent

MakeLoop = Callable[..., Loop]
PROBLEM = probe()
pytestmark = pytest.mark.skipif(PROBLEM is not None, reason=f"bubblewrap cannot run here: {PROBLEM}")
HOSTILE = FAKES / "hostile_agent.py"


class Server:
    """A TCP server on 127.0.0.1 that counts the connections it accepts and answers each with one HTTP line."""

    def __init__(self, answer: bytes) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.answer = answer
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                conn.recv(100)
                conn.sendall(b"HTTP/1.0 200 OK\r\n\r\n" + self.answer)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def servers() -> Iterator[tuple[Server, Server]]:
    allowed, forbidden = Server(b"allowed-ok"), Server(b"should-never-be-seen")
    yield allowed, forbidden
    allowed.close()
    forbidden.close()


def hostile(targets: list[Server]) -> dict[str, object]:
    target = ",".join(f"127.0.0.1:{s.port}" for s in targets)
    return {
        "kind": "command",
        "argv": ["/usr/bin/python3", str(HOSTILE)],
        "env": {"HOSTILE_ATTACK": "proxy", "HOSTILE_TARGET": target},
    }


def test_a_denied_host_sees_no_connection_and_the_denial_is_reported(
    make_loop: MakeLoop, servers: tuple[Server, Server]
) -> None:
    """The agent asks the proxy for an allowlisted and a forbidden server on 127.0.0.1, twice each: the allowed one
    answers through the proxy, the forbidden one never sees a connection, and the attempt's record, ``task show``,
    the journal and the escalation comment all say ``blocked: 127.0.0.1:PORT ×2``."""
    allowed, forbidden = servers
    sandbox = {"mode": "bubblewrap", "allow_hosts": [f"127.0.0.1:{allowed.port}"], "tmp_mb": 64}
    loop = make_loop({"hostile": hostile([allowed, forbidden])}, sandbox=sandbox, routing={"max_attempts": 1})
    number = loop.new_issue("Reach out", "## Goal\n\nTry the network.\n\nType: implementation\n")
    task_id = f"{REPO}#{number}"

    task = loop.wait_status(task_id, "blocked")

    blocked = f"blocked: 127.0.0.1:{forbidden.port} ×2"
    attempt = task["attempts"][0]
    assert attempt["egress_denied"] == blocked
    assert forbidden.connections == 0
    assert allowed.connections == 2
    output = (Path(attempt["run_dir"]) / "agent.log").read_text()
    assert "allowed-ok" in output and "403" in output and "should-never-be-seen" not in output
    assert blocked in loop.cli("task", "show", task_id, "--config", str(loop.config)).stdout
    since = datetime.now(UTC) - timedelta(hours=1)
    denied = [e for e in Store(loop.state, fsync=False).iter_events(since) if e.type == "egress_denied"]
    assert [(e.task, e.data["attempt"], e.data["host"]) for e in denied] == [
        (task_id, 1, f"127.0.0.1:{forbidden.port}")
    ]
    _, comments = loop.issue(number)
    assert any(blocked in c.body for c in comments)


def test_with_the_sandbox_off_status_says_so(make_loop: MakeLoop) -> None:
    """``sandbox.mode: off`` is said in ``ctl status`` (the field and the terminal view)."""
    loop = make_loop({"hostile": hostile([])})
    assert loop.ctl("status")["sandbox"].startswith("off: ")
    assert "unconfined" in loop.cli("ctl", "status").stdout


TEST_CLIENT = (
    "import os, socket\n"
    "host, port = os.environ['HTTPS_PROXY'].removeprefix('http://').split(':')\n"
    "def ask(target):\n"
    "    with socket.create_connection((host, int(port)), timeout=10) as s:\n"
    "        s.sendall(('CONNECT %s HTTP/1.1\\r\\n\\r\\n' % target).encode())\n"
    "        return s.recv(100).split(b'\\r\\n')[0]\n"
    "assert b' 200 ' in ask('127.0.0.1:{allowed}'), 'the allowed host was refused'\n"
    "assert b' 403 ' in ask('127.0.0.1:{forbidden}'), 'the forbidden host was let through'\n"
)


def test_the_tests_reach_only_test_allow_hosts(make_loop: MakeLoop, servers: tuple[Server, Server]) -> None:
    """``repos[].test_allow_hosts`` lets the sandboxed test command (the hand-off's and the local forge's checks)
    and the repo's hooks (a failing ``before_run`` would fail the attempt) reach what it names and nothing else;
    what the tests were refused is on the attempt (``tests blocked: …``) and in
    the PR body."""
    allowed, forbidden = servers
    sandbox = {"mode": "bubblewrap", "tmp_mb": 64}
    loop = make_loop({"claude": claude_agent("complete")}, start=False, sandbox=sandbox)
    script = TEST_CLIENT.format(allowed=allowed.port, forbidden=forbidden.port)
    (loop.repo / "egress_check.py").write_text(script)
    loop.git("add", "egress_check.py", cwd=loop.repo)
    loop.git("commit", "-qm", "egress check", cwd=loop.repo)
    repo = {"name": REPO, "path": str(loop.repo), "test_timeout_s": 60}
    command = "python3 egress_check.py && python3 -m unittest -q"
    allow = [f"127.0.0.1:{allowed.port}"]
    hooks = {"before_run": "python3 egress_check.py"}  # a hook that installs dependencies needs the same hosts
    loop.overrides["repos"] = [{**repo, "test_command": command, "test_allow_hosts": allow, "hooks": hooks}]
    loop.write_config()
    loop.start()
    number = loop.new_issue("Add a greeting", "## Goal\n\nSay hello.\n\nType: implementation\n")

    task = loop.wait_status(f"{REPO}#{number}", "merged")

    blocked = f"tests blocked: 127.0.0.1:{forbidden.port} ×1"
    assert task["attempts"][0]["egress_denied"] == blocked
    assert allowed.connections >= 3 and forbidden.connections == 0  # the hook, the hand-off's tests, the checks
    [pull] = loop.pulls()
    assert blocked in pull["body"]
