"""The bridge inside a sandbox: with no network but loopback, the agent reaches the allowed server through the
proxy's unix socket and nothing else; the agent stays the process the runner waits on."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from agentos.proc import group_alive
from agentos.runners.bridge import BRIDGE_PATH, bridge_argv
from agentos.runners.egress import EgressProxy, EgressSession


def _bwrap_net_works() -> bool:
    if not shutil.which("bwrap"):
        return False
    probe = subprocess.run(
        ["bwrap", "--dev-bind", "/", "/", "--unshare-net", "--", "true"], capture_output=True, check=False
    )
    return probe.returncode == 0


needs_bwrap = pytest.mark.skipif(
    not _bwrap_net_works(), reason="needs bubblewrap with network namespaces (apt-get install -y bubblewrap)"
)
needs_curl = pytest.mark.skipif(not shutil.which("curl"), reason="needs curl")


async def _serve(text: str) -> tuple[web.AppRunner, int, list[str]]:
    seen: list[str] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.Response(text=text)

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, runner.addresses[0][1], seen


@pytest.fixture
async def allowed() -> AsyncIterator[tuple[int, list[str]]]:
    runner, port, seen = await _serve("allowed server")
    yield port, seen
    await runner.cleanup()


@pytest.fixture
async def forbidden() -> AsyncIterator[tuple[int, list[str]]]:
    runner, port, seen = await _serve("forbidden server")
    yield port, seen
    await runner.cleanup()


@pytest.fixture
async def session(tmp_path: Path, allowed: tuple[int, list[str]]) -> AsyncIterator[EgressSession]:
    proxy = EgressProxy(tmp_path / "egress")
    yield await proxy.session("task-1/1", [f"127.0.0.1:{allowed[0]}"])
    await proxy.aclose()


async def run(argv: list[str]) -> tuple[int, str, int]:
    """Run ``argv`` in a new session as the runner does; its exit status, stdout and pid."""
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "*"}
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, env=env
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode(), proc.pid


def sandboxed(session: EgressSession, *agent: str) -> list[str]:
    """The agent behind the bridge in a bubblewrap sandbox whose network is only its own loopback."""
    bridge = bridge_argv(str(session.socket_path), 0)
    return ["bwrap", "--dev-bind", "/", "/", "--unshare-net", "--die-with-parent", "--", *bridge, *agent]


@needs_bwrap
@needs_curl
class TestInASandbox:
    async def test_curl_reaches_the_allowed_server_through_the_proxy(
        self, session: EgressSession, allowed: tuple[int, list[str]]
    ) -> None:
        """Plain HTTP (absolute URI) and a CONNECT tunnel (``--proxytunnel``) both get through."""
        port, seen = allowed
        url = f"http://127.0.0.1:{port}/hello"
        code, out, _ = await run(sandboxed(session, "sh", "-c", f"curl -sS {url}; echo; curl -sS -p {url}"))
        assert (code, out) == (0, "allowed server\nallowed server")
        assert seen == ["/hello", "/hello"]
        assert session.connections == 2

    async def test_nothing_else_is_reachable(self, session: EgressSession, forbidden: tuple[int, list[str]]) -> None:
        """Through the proxy another host gets 403 and is never contacted; around it there is no network."""
        port, seen = forbidden
        url = f"http://127.0.0.1:{port}/"
        script = f"curl -sS -o /dev/null -w '%{{http_code}}' {url}; echo; curl -sS -m 5 --noproxy '*' {url}"
        code, out, _ = await run(sandboxed(session, "sh", "-c", script))
        assert out.startswith("403\n")
        assert code != 0  # the direct attempt fails: the sandbox has no route out
        assert seen == []
        assert session.summary() == f"blocked: 127.0.0.1:{port} ×1"

    async def test_python_inside_honours_the_proxy_variables(
        self, session: EgressSession, allowed: tuple[int, list[str]]
    ) -> None:
        """The agent's environment points every proxy variable at the bridge (urllib reads them)."""
        port, _ = allowed
        script = f"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:{port}/x').read().decode())"
        code, out, _ = await run(sandboxed(session, sys.executable, "-c", script))
        assert (code, out.strip()) == (0, "allowed server")

    async def test_a_minimal_sandbox_needs_only_the_socket_and_the_bridge_file(
        self, session: EgressSession, allowed: tuple[int, list[str]]
    ) -> None:
        """As the sandbox runner will make it: every namespace new, ``/usr`` read-only, the proxy's socket and
        :data:`BRIDGE_PATH` bound in at paths of the sandbox's own; the system python runs the bridge."""
        port, seen = allowed
        argv = [
            "bwrap", "--unshare-all", "--die-with-parent", "--new-session",
            "--ro-bind", "/usr", "/usr", "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
            "--symlink", "usr/bin", "/bin", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
            "--bind", str(session.socket_path), "/run/egress.sock", "--ro-bind", BRIDGE_PATH, "/opt/bridge.py",
            "--", "/usr/bin/python3", "-I", "-S", "/opt/bridge.py", "/run/egress.sock", "0", "--",
            "curl", "-sS", "-p", f"http://127.0.0.1:{port}/minimal",
        ]  # fmt: skip
        code, out, _ = await run(argv)
        assert (code, out) == (0, "allowed server")
        assert seen == ["/minimal"]


class TestTheAgentProcess:
    async def test_the_agent_keeps_the_pid_and_exit_status_and_the_forwarder_leaves_with_it(
        self, session: EgressSession
    ) -> None:
        """The bridge execs the agent: the runner's pid is the agent's and its exit status is the agent's; the
        forwarder holds none of its output and goes when it does (the process group empties)."""
        argv = [
            *bridge_argv(str(session.socket_path), 0),
            "sh",
            "-c",
            "echo $$ $HTTPS_PROXY $NO_PROXY $no_proxy; exit 7",
        ]
        code, out, pid = await run(argv)
        shell_pid, proxy_url, *rest = out.split()
        assert (code, int(shell_pid), rest) == (7, pid, [])
        assert proxy_url.startswith("http://127.0.0.1:")
        async with asyncio.timeout(30):
            while group_alive(pid):
                await asyncio.sleep(0.05)

    async def test_a_missing_agent_binary_is_reported(self, session: EgressSession) -> None:
        code, out, _ = await run([*bridge_argv(str(session.socket_path), 0), "/nonexistent/agent"])
        assert code == 127
        assert "cannot run /nonexistent/agent" in out
