"""The control socket: every request line gets one JSON answer; the socket is private and uid-checked."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import stat
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentos.agents.pool import AgentPool
from agentos.control.controller import Controller
from agentos.control.socket import (
    COMMANDS,
    MAX_LINE,
    ControlServer,
    NotRunning,
    SocketInUse,
    client_socket_path,
    default_socket_path,
    handle_request,
    request,
)
from agentos.daemon_parts import build_controller
from agentos.errors import ControlError
from agentos.runtime import Runtime
from tests.unit.test_budget import NOW as BUDGET_NOW
from tests.unit.test_budget import Clock as BudgetClock
from tests.unit.test_budget import runtime as budget_runtime
from tests.unit.test_budget import spend
from tests.unit.test_controller import Job, build_runtime


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[Runtime]:
    runtime = build_runtime(tmp_path)
    assert runtime.scheduler is not None
    runtime.scheduler.register("dispatch", Job())
    yield runtime
    runtime.store.close()


@pytest.fixture
def controller(rt: Runtime) -> Controller:
    return build_controller(rt)


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A short path (AF_UNIX paths stop at 107 bytes), created by the server itself."""
    base = Path(tempfile.mkdtemp(prefix="aos-sock-", dir="/tmp"))
    yield base / "run"
    for path in sorted(base.rglob("*"), reverse=True):
        path.unlink() if not path.is_dir() else path.rmdir()
    base.rmdir()


@pytest.fixture
async def server(controller: Controller, sock_dir: Path) -> AsyncIterator[ControlServer]:
    srv = ControlServer(controller, sock_dir / "agentos.sock")
    await srv.start()
    yield srv
    await srv.stop()


async def ask(controller: Controller, line: bytes | str) -> dict[str, Any]:
    answer = await handle_request(controller, line.encode() if isinstance(line, str) else line)
    json.dumps(answer)  # always encodable
    return answer


class TestHandleRequest:
    @pytest.mark.parametrize(
        ("line", "error"),
        [
            pytest.param("not json", "request is not valid JSON: Expecting value at column 1", id="not-json"),
            pytest.param(b"\xff\xfe\xfa{", "request is not valid JSON", id="not-utf8"),
            pytest.param('{"cmd": "status"', "request is not valid JSON", id="truncated"),
            pytest.param("[1, 2]", 'request must be a JSON object like {"cmd": "status"}', id="array"),
            pytest.param('"status"', "request must be a JSON object", id="string"),
            pytest.param("null", "request must be a JSON object", id="null"),
            pytest.param("{}", "unknown command None; commands: ", id="no-cmd"),
            pytest.param(
                '{"cmd": "frobnicate"}',
                "unknown command 'frobnicate'; commands: accept, agent_resume, agents, approve, cancel",
                id="bad-cmd",
            ),
            pytest.param('{"cmd": 5}', "unknown command 5", id="cmd-not-string"),
            pytest.param('{"cmd": "status", "args": [1]}', "args must be a JSON object", id="args-list"),
            pytest.param('{"cmd": "job", "args": {"enabled": true}}', "argument 'name' is required", id="missing-arg"),
            pytest.param(
                '{"cmd": "job", "args": {"name": "", "enabled": true}}', "argument 'name' is required", id="empty"
            ),
            pytest.param(
                '{"cmd": "job", "args": {"name": "dispatch", "enabled": "yes"}}',
                "argument 'enabled' must be true or false",
                id="not-bool",
            ),
            pytest.param(
                '{"cmd": "repo_cadence", "args": {"name": "calc", "days": true}}',
                "argument 'days' must be a whole number",
                id="bool-is-not-int",
            ),
            pytest.param('{"cmd": "tasks", "args": {"repo": 3}}', "argument 'repo' must be a string", id="not-str"),
            pytest.param('{"cmd": "run", "args": {"name": "nosuch"}}', "no job named 'nosuch'", id="unknown-job"),
            pytest.param("[" * 50_000, "request is not valid JSON", id="nesting-too-deep"),
            pytest.param("9" * 5_000, "request is not valid JSON", id="number-too-long"),
        ],
    )
    async def test_a_bad_request_gets_an_error_answer(
        self, controller: Controller, line: str | bytes, error: str
    ) -> None:
        """Whatever is wrong with a request, the answer is ok: false with a message saying what."""
        answer = await ask(controller, line)
        assert answer["ok"] is False
        assert answer["error"].startswith(error), answer["error"]

    @pytest.mark.parametrize(
        ("changes", "error"),
        [
            pytest.param({"title": "   "}, "the title must not be empty", id="blank-title"),
            pytest.param({"title": None}, "argument 'title' is required", id="no-title"),
            pytest.param({"title": "t" * 300}, "the title has 300 characters; at most 256", id="long-title"),
            pytest.param({"body": "b" * 70_000}, "the body has 70000 characters; at most 65536", id="long-body"),
            pytest.param({"body": 5}, "argument 'body' must be a string", id="body-not-str"),
            pytest.param({"labels": "bug"}, "argument 'labels' must be a list of strings", id="labels-str"),
            pytest.param({"labels": ["a\nb"]}, "label 'a\\nb' must be 1 to 50 printable", id="label-newline"),
            pytest.param({"labels": ["x"] * 21}, "21 labels; at most 20", id="many-labels"),
            pytest.param({"key": "cli:x -->"}, "argument 'key' must be 1 to 100 letters", id="key-breaks-marker"),
            pytest.param({"ready": "yes"}, "argument 'ready' must be true or false", id="ready-not-bool"),
            pytest.param({"repo": 3}, "argument 'repo' must be a string", id="repo-not-str"),
            pytest.param({"repo": "nope"}, "no repo named 'nope'; repos: calc", id="unknown-repo"),
            pytest.param({"config": "/nonexistent.yaml"}, "this daemon serves ", id="other-config"),
        ],
    )
    async def test_a_bad_issue_new_is_refused_in_one_line(
        self, controller: Controller, rt: Runtime, changes: dict[str, Any], error: str
    ) -> None:
        """`issue_new` checks every argument (type, size, a key that cannot break its marker, the repo, the
        config file) and files nothing when one is wrong."""
        args = {"title": "t", "body": "", "labels": [], "ready": True, "key": "cli:1", "config": str(rt.config_path)}
        answer = await ask(controller, json.dumps({"cmd": "issue_new", "args": {**args, **changes}}))
        assert answer["ok"] is False and "\n" not in answer["error"]
        assert answer["error"].startswith(error), answer["error"]
        assert not (rt.state_dir / "local-forge" / "calc" / "issues").exists()

    async def test_issue_new_and_ready_answer_with_the_issue(self, controller: Controller, rt: Runtime) -> None:
        """A good `issue_new` answers with the issue as `issue new --json` prints it; `issue_ready` with its ref."""
        args = {"title": "t", "labels": [], "ready": False, "key": "cli:1", "config": str(rt.config_path)}
        answer = await ask(controller, json.dumps({"cmd": "issue_new", "args": args}))
        assert answer["ok"] is True
        assert {k: answer["result"][k] for k in ("repo", "number", "title", "labels")} == {
            "repo": "calc",
            "number": 1,
            "title": "t",
            "labels": [],
        }
        ready = {"number": 1, "config": str(rt.config_path)}
        answer = await ask(controller, json.dumps({"cmd": "issue_ready", "args": ready}))
        assert answer == {"ok": True, "result": {"repo": "calc", "number": 1, "ready": True}}
        for number in (0, -1, 2**40, True):
            answer = await ask(controller, json.dumps({"cmd": "issue_ready", "args": {**ready, "number": number}}))
            assert answer["ok"] is False and "argument 'number' must be" in answer["error"]

    async def test_a_good_request_gets_its_result(self, controller: Controller) -> None:
        """`{"cmd": "status"}` answers ok: true with the controller's result; args may be null."""
        answer = await ask(controller, '{"cmd": "status", "args": null}')
        assert answer["ok"] is True
        assert answer["result"]["max_parallel_workers"] == 3

    async def test_the_request_id_is_echoed(self, controller: Controller) -> None:
        """A client matching answers to requests gets its id back, on errors too."""
        assert (await ask(controller, '{"id": 7, "cmd": "pause"}'))["id"] == 7
        assert (await ask(controller, '{"id": "x", "cmd": "nope"}'))["id"] == "x"

    async def test_an_unknown_command_name_is_cut_short(self, controller: Controller) -> None:
        """A 60 KB command name is not echoed back whole."""
        answer = await ask(controller, json.dumps({"cmd": "x" * 60_000}))
        assert "x" * 200 not in answer["error"] and "; commands: " in answer["error"]

    async def test_a_controller_bug_is_an_error_answer(
        self, controller: Controller, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An unexpected exception in a command is logged and answered, never raised into the server."""

        async def broken() -> dict[str, Any]:
            raise RuntimeError("oops")

        monkeypatch.setattr(controller, "status", broken)
        answer = await ask(controller, '{"cmd": "status"}')
        assert answer == {"ok": False, "error": "status failed: RuntimeError: oops"}

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        line=st.one_of(
            st.binary(max_size=300),
            st.text(max_size=200).map(str.encode),
            st.fixed_dictionaries(
                {"cmd": st.sampled_from([*COMMANDS, "nope"])},
                optional={
                    "args": st.one_of(
                        st.none(),
                        st.lists(st.integers(), max_size=2),
                        st.dictionaries(
                            st.sampled_from(["name", "enabled", "id", "job", "mode", "days", "repo", "status", "ref"]),
                            st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=12), st.floats()),
                            max_size=4,
                        ),
                    ),
                    "id": st.one_of(st.integers(), st.text(max_size=5), st.none()),
                },
            ).map(lambda req: json.dumps(req).encode()),
        )
    )
    def test_fuzz_any_bytes_get_a_json_answer(self, controller: Controller, line: bytes) -> None:
        """Arbitrary bytes or requests: always one JSON-encodable answer with a boolean ok, never an exception."""
        answer = asyncio.run(handle_request(controller, line))
        assert isinstance(answer["ok"], bool)
        assert isinstance(answer["error"], str) if not answer["ok"] else "result" in answer
        json.dumps(answer, default=str)


class TestControlServer:
    async def test_the_socket_is_private(self, server: ControlServer, sock_dir: Path) -> None:
        """The socket is created 0600 (no chmod window) in a directory created 0700."""
        assert stat.S_ISSOCK(server.path.stat().st_mode)
        assert stat.S_IMODE(server.path.stat().st_mode) == 0o600
        assert stat.S_IMODE(sock_dir.stat().st_mode) == 0o700

    async def test_request_gets_the_result(self, server: ControlServer) -> None:
        """The stdlib client sends one line and returns the result, or raises the daemon's error."""
        status = await asyncio.to_thread(request, server.path, "status")
        assert status["paused"] is False
        with pytest.raises(ControlError, match="no job named 'nosuch'"):
            await asyncio.to_thread(request, server.path, "run", {"name": "nosuch"})
        assert server.requests == 2

    async def test_many_requests_on_one_connection(self, server: ControlServer) -> None:
        """One answer line per request line, in order; blank lines are ignored."""
        reader, writer = await asyncio.open_unix_connection(str(server.path))
        writer.write(b'{"cmd": "pause"}\n\n{"cmd": "status"}\nnot json\n')
        await writer.drain()
        answers = [json.loads(await asyncio.wait_for(reader.readline(), 2)) for _ in range(3)]
        writer.close()
        await writer.wait_closed()
        assert answers[0] == {"ok": True, "result": {"paused": True}}
        assert answers[1]["result"]["paused"] is True
        assert answers[2]["ok"] is False

    async def test_an_over_long_line_is_refused_and_closed(self, server: ControlServer) -> None:
        """A line past 64 KiB gets an error answer and the connection is closed."""
        reader, writer = await asyncio.open_unix_connection(str(server.path))
        writer.write(b'{"cmd": "' + b"x" * (MAX_LINE + 10) + b'"}\n')
        await writer.drain()
        answer = json.loads(await asyncio.wait_for(reader.readline(), 2))
        assert answer == {"ok": False, "error": f"request longer than {MAX_LINE} bytes"}
        assert await asyncio.wait_for(reader.read(), 2) == b""
        writer.close()
        await writer.wait_closed()

    async def test_a_uid_not_allowed_is_refused(self, controller: Controller, rt: Runtime, sock_dir: Path) -> None:
        """SO_PEERCRED: a caller whose uid is not allowed gets the refusal, and the command is not run."""
        srv = ControlServer(controller, sock_dir / "agentos.sock", allowed_uids={os.getuid() + 1})
        await srv.start()
        try:
            with pytest.raises(ControlError, match=f"uid {os.getuid()} may not control this daemon"):
                await asyncio.to_thread(request, srv.path, "pause")
            assert rt.state.paused is False
            assert srv.requests == 0
        finally:
            await srv.stop()

    async def test_a_second_server_on_a_live_socket_is_refused(
        self, server: ControlServer, controller: Controller
    ) -> None:
        """start() does not steal a socket a live daemon answers on."""
        with pytest.raises(SocketInUse, match="another agentos daemon is serving"):
            await ControlServer(controller, server.path).start()
        assert (await asyncio.to_thread(request, server.path, "status"))["paused"] is False

    async def test_a_dead_daemons_socket_is_replaced(self, controller: Controller, sock_dir: Path) -> None:
        """A socket file nobody listens on is removed and bound again."""
        sock_dir.mkdir(mode=0o700)
        path = sock_dir / "agentos.sock"
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(str(path))
        stale.close()
        srv = ControlServer(controller, path)
        await srv.start()
        try:
            assert (await asyncio.to_thread(request, path, "status"))["paused"] is False
        finally:
            await srv.stop()
        assert not path.exists()


class TestClient:
    def test_no_daemon_is_not_running(self, sock_dir: Path) -> None:
        """No socket file, or a socket nobody listens on: NotRunning, with the path in the message."""
        with pytest.raises(NotRunning, match=r"agentos is not running \(no daemon at .*agentos.sock\)"):
            request(sock_dir / "agentos.sock", "status")
        sock_dir.mkdir()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stale:
            stale.bind(str(sock_dir / "agentos.sock"))
        with pytest.raises(NotRunning):
            request(sock_dir / "agentos.sock", "status")

    def test_the_socket_path_follows_the_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """AGENTOS_SOCKET wins, then systemd's RUNTIME_DIRECTORY, then XDG_RUNTIME_DIR."""
        monkeypatch.setenv("AGENTOS_SOCKET", "/x/ctl.sock")
        monkeypatch.setenv("RUNTIME_DIRECTORY", "/run/agentos")
        monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
        assert default_socket_path() == Path("/x/ctl.sock")
        monkeypatch.delenv("AGENTOS_SOCKET")
        assert default_socket_path() == Path("/run/agentos/agentos.sock")
        monkeypatch.delenv("RUNTIME_DIRECTORY")
        assert default_socket_path() == Path("/run/user/1000/agentos.sock")
        monkeypatch.delenv("XDG_RUNTIME_DIR")
        assert default_socket_path() == Path(f"/tmp/agentos-{os.getuid()}/agentos.sock")

    def test_ctl_finds_the_socket_of_a_systemd_unit(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Outside the unit (no RUNTIME_DIRECTORY), ctl uses whichever of the known sockets exists."""
        monkeypatch.delenv("AGENTOS_SOCKET", raising=False)
        monkeypatch.delenv("RUNTIME_DIRECTORY", raising=False)
        xdg = tmp_path / "xdg"
        (xdg / "agentos").mkdir(parents=True)
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(xdg))
        system = tmp_path / "run-agentos" / "agentos.sock"
        assert client_socket_path(system=system) == xdg / "agentos.sock"  # nothing exists: the default

        def bind(path: Path) -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.bind(str(path))

        bind(system)
        assert client_socket_path(system=system) == system
        bind(xdg / "agentos" / "agentos.sock")
        assert client_socket_path(system=system) == xdg / "agentos" / "agentos.sock"  # the user unit
        bind(xdg / "agentos.sock")
        assert client_socket_path(system=system) == xdg / "agentos.sock"  # a daemon started by hand
        monkeypatch.setenv("AGENTOS_SOCKET", "/elsewhere.sock")
        assert client_socket_path(system=system) == Path("/elsewhere.sock")


class TestAgentsThroughCtl:
    """``agentos ctl agents`` and ``agentos ctl agent resume NAME``: the real CLI against a served controller."""

    async def test_ctl_shows_a_budget_pause_and_lifts_it(self, tmp_path: Path, sock_dir: Path) -> None:
        """The table names the paused agent, until when, why and its month; `agent resume` lifts it (exit 0,
        the budget note shown), `ctl status` then counts no paused agent; a second resume exits 1 saying why."""
        rt = budget_runtime(tmp_path, BudgetClock(BUDGET_NOW))
        spend(rt, 11.0, BUDGET_NOW, 1)
        AgentPool.from_runtime(rt).enforce_budgets()
        srv = ControlServer(build_controller(rt), sock_dir / "agentos.sock")
        await srv.start()
        try:
            code, out, _ = await ctl_cli(srv.path, "agents")
            assert code == 0, out
            pauses = out.split("health (routing.health_gate)")[0]  # the health table follows, one row per type
            [claude] = [line for line in pauses.splitlines() if line.strip().startswith("claude")]
            assert "2025-04-01 00:00 Europe/Berlin" in claude and "monthly budget: spent 1,000 tokens" in claude
            assert (
                "2025-03: 1,000 tokens / $11.00 over 1 attempt" in claude and "month: warn $5.00, max $10.00" in claude
            )
            code, out, _ = await ctl_cli(srv.path, "agents", "--json")
            assert [r["agent"] for r in json.loads(out) if r["paused_until"]] == ["claude"]

            code, out, _ = await ctl_cli(srv.path, "agent", "resume", "claude")
            assert code == 0 and "still over budget for 2025-03" in out, out
            code, out, _ = await ctl_cli(srv.path, "status", "--json")
            status = json.loads(out)
            assert status["agents_paused"] == 0 and status["paused_agents"] == {}
            code, out, _ = await ctl_cli(srv.path, "status")
            assert re.search(r"^state_writes_held +no$", out, re.M) and re.search(r"^status_page +off$", out, re.M), out

            code, _, err = await ctl_cli(srv.path, "agent", "resume", "claude")
            assert code == 1 and "agent claude is not paused" in err
        finally:
            await srv.stop()
            rt.store.close()


async def ctl_cli(path: Path, *args: str) -> tuple[int, str, str]:
    """Run ``agentos ctl ARGS --socket PATH`` as a process while this loop serves the socket."""
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "agentos"),
        "ctl",
        *args,
        "--socket",
        str(path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "250", "NO_COLOR": "1"},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()
