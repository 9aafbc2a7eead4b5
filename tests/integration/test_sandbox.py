"""A hostile agent and a hostile test command in the real bubblewrap sandbox: every attack fails, the host is
untouched, and the test process (standing in for the daemon) and its children are unaffected.

The layout is the daemon's: a state directory with a journal, credentials, a bare clone, this task's worktree,
another task's worktree and the run folder; an operator home with an SSH key; ``$CREDENTIALS_DIRECTORY``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import BaseModel

from agentos.agents.adapters import AgentReport, parse_output
from agentos.agents.runner import RunOutcome, RunSpec, run_process
from agentos.config import AgentConfig, SandboxConfig
from agentos.llm import Llm
from agentos.proc import run_shell, scrubbed_env
from agentos.runners import cgroups
from agentos.runners.policy import agent_spec, command_spec
from agentos.runners.sandbox import SANDBOX_HOME, probe
from agentos.verdicts import judge

HOSTILE = Path(__file__).resolve().parents[1] / "fakes" / "agents" / "hostile_agent.py"
PYTHON = "/usr/bin/python3"
PROBLEM = probe()
pytestmark = [
    pytest.mark.skipif(PROBLEM is not None, reason=f"bubblewrap cannot run here: {PROBLEM}"),
    pytest.mark.skipif(not os.path.exists(PYTHON), reason="the hostile agent runs under /usr/bin/python3"),
]
LIMITS = cgroups.unavailable_reason()


@dataclass
class World:
    root: Path
    state: Path
    worktree: Path
    other: Path
    run_dir: Path
    operator: Path
    creds: Path

    @property
    def daemon_env(self) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", os.defpath), "HOME": str(self.operator)}


def git(*args: str, cwd: Path, input_text: str | None = None) -> str:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    ident = ["-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"]
    argv = ["git", *ident, *args]
    return subprocess.run(argv, cwd=cwd, env=env, check=True, capture_output=True, text=True, input=input_text).stdout


@pytest.fixture
def world(tmp_path: Path) -> World:
    state = tmp_path / "state"
    (state / "credentials").mkdir(parents=True)
    (state / "journal.jsonl").write_text('{"secret": "SECRET-JOURNAL"}\n')
    (state / "credentials" / "github_token").write_text("SECRET-TOKEN-STATE\n")
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "github_token").write_text("SECRET-TOKEN-CREDS\n")
    operator = tmp_path / "operator"
    (operator / ".ssh").mkdir(parents=True)
    (operator / ".ssh" / "id_rsa").write_text("SECRET-SSH-KEY\n")
    source = tmp_path / "source"
    source.mkdir()
    git("init", "-q", cwd=source)
    (source / "README").write_text("hello\n")
    git("add", "README", cwd=source)
    git("commit", "-qm", "first", cwd=source)
    clone = state / "clones" / "app"
    git("clone", "-q", "--bare", str(source), str(clone), cwd=tmp_path)
    worktree = state / "worktrees" / "app" / "mine"
    other = state / "worktrees" / "app" / "other"
    git("worktree", "add", "-q", "-b", "task-mine", str(worktree), cwd=clone)
    git("worktree", "add", "-q", "-b", "task-other", str(other), cwd=clone)
    (other / "notes.txt").write_text("SECRET-OTHER-WORKTREE\n")
    run_dir = state / "runs" / "app-1" / "1"
    run_dir.mkdir(parents=True)
    (run_dir / "prompt.md").write_text("do the thing\n")
    return World(tmp_path, state, worktree, other, run_dir, operator, creds)


@pytest.fixture
def bystander() -> Iterator[subprocess.Popen[bytes]]:
    """A process of the daemon's (a stand-in for the daemon itself) that the agent attacks."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc
    proc.kill()
    proc.wait()


async def run_hostile(
    world: World,
    attack: str,
    target: str | Path,
    *,
    memory_mb: int = 512,
    max_processes: int = 64,
    tmp_mb: int = 16,
    home: Path | None = None,
) -> tuple[RunOutcome, str]:
    argv = [PYTHON, str(HOSTILE)]
    cfg = AgentConfig(kind="command", argv=argv, home=str(home) if home else None)
    sandbox = SandboxConfig(memory_mb=memory_mb, max_processes=max_processes, tmp_mb=tmp_mb)
    box = agent_spec(
        sandbox,
        cfg,
        argv=argv,
        worktree=world.worktree,
        run_dir=world.run_dir,
        prompt_file=world.run_dir / "prompt.md",
        state_dir=world.state,
        env={"CREDENTIALS_DIRECTORY": str(world.creds)},
    )
    env = scrubbed_env(extra={"HOSTILE_ATTACK": attack, "HOSTILE_TARGET": str(target)}, base=world.daemon_env)
    log = world.run_dir / f"{attack}.log"
    spec = RunSpec(
        argv=argv,
        cwd=world.worktree,
        env=env,
        stdin=b"prompt",
        log_path=log,
        idle_timeout_s=120,
        max_runtime_s=300,
        kill_grace_s=1,
        max_log_bytes=1 << 20,
        marker=f"h9-test-{attack}",
        sandbox=box,
    )
    outcome = await run_process(spec)
    return outcome, log.read_text()


def denied(output: str) -> bool:
    return "DENIED" in output and "GOT" not in output and "SECRET" not in output


class TestAgentCannotRead:
    @pytest.mark.parametrize(
        "target",
        [
            "operator/.ssh/id_rsa",
            "creds/github_token",
            "state/credentials/github_token",
            "state/journal.jsonl",
            "state/worktrees/app/other/notes.txt",
        ],
    )
    async def test_a_secret_outside_its_worktree(self, world: World, target: str) -> None:
        outcome, output = await run_hostile(world, "read", world.root / target)
        assert outcome.exit_code == 0, output
        assert denied(output), output

    async def test_through_a_symlink_planted_in_its_worktree(self, world: World) -> None:
        (world.worktree / "key").symlink_to(world.operator / ".ssh" / "id_rsa")
        _, output = await run_hostile(world, "read", world.worktree / "key")
        assert denied(output), output

    async def test_the_state_directory_listing_shows_no_journal_or_credentials(self, world: World) -> None:
        _, output = await run_hostile(world, "list", world.state)
        assert "journal" not in output and "credentials" not in output, output
        _, output = await run_hostile(world, "list", world.root)
        assert "operator" not in output and "creds" not in output, output

    async def test_but_it_reads_its_prompt_and_worktree(self, world: World) -> None:
        _, output = await run_hostile(world, "read", world.run_dir / "prompt.md")
        assert "GOT do the thing" in output, output
        _, output = await run_hostile(world, "read", world.worktree / "README")
        assert "GOT hello" in output, output

    async def test_its_login_template_is_in_its_private_home(self, world: World) -> None:
        template = world.root / "claude-login"
        (template / ".claude").mkdir(parents=True)
        (template / ".claude" / ".credentials.json").write_text('{"login": "template"}')
        _, output = await run_hostile(world, "read", SANDBOX_HOME / ".claude" / ".credentials.json", home=template)
        assert 'GOT {"login": "template"}' in output, output
        _, output = await run_hostile(world, "list", SANDBOX_HOME, home=template)
        assert ".ssh" not in output and ".claude" in output, output


class TestAgentCannotWrite:
    @pytest.mark.parametrize("target", ["outside.txt", "state/injected.json", "operator/.bashrc", "source/README"])
    async def test_outside_its_worktree(self, world: World, target: str) -> None:
        before = (world.root / target).read_text() if (world.root / target).exists() else None
        await run_hostile(world, "write", world.root / target)
        after = (world.root / target).read_text() if (world.root / target).exists() else None
        assert after == before

    async def test_inside_its_worktree_what_it_writes_is_kept(self, world: World) -> None:
        _, output = await run_hostile(world, "write", world.worktree / "new.txt")
        assert "GOT" in output
        assert (world.worktree / "new.txt").read_text() == "hostile was here\n"


class TestAgentCannotReachTheDaemon:
    async def test_kill_or_trace_a_daemon_process(self, world: World, bystander: subprocess.Popen[bytes]) -> None:
        for attack in ("kill", "ptrace"):
            _, output = await run_hostile(world, attack, bystander.pid)
            assert denied(output), output
        assert bystander.poll() is None
        for attack in ("kill", "ptrace"):
            _, output = await run_hostile(world, attack, os.getpid())
            assert denied(output), output

    async def test_it_sees_only_its_own_processes(self, world: World, bystander: subprocess.Popen[bytes]) -> None:
        _, output = await run_hostile(world, "list", "/proc")
        pids = [int(name) for name in output.split("GOT ")[1].strip().split(",") if name.isdigit()]
        assert pids and max(pids) < 10, output  # bwrap's init, the agent, nothing of the host
        assert bystander.pid not in pids and os.getpid() not in pids

    async def test_a_server_on_loopback(self, world: World) -> None:
        hits: list[bytes] = []

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            hits.append(await reader.read(100))
            writer.write(b"HTTP/1.0 200 OK\r\n\r\nSECRET")
            writer.close()

        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            _, output = await run_hostile(world, "connect", f"127.0.0.1:{port}")
        assert denied(output) and not hits, output

    async def test_the_control_socket(self, world: World) -> None:
        path = world.root / "agentos.sock"
        with socket.socket(socket.AF_UNIX) as listener:
            listener.bind(str(path))
            listener.listen()
            _, output = await run_hostile(world, "unix", path)
        assert denied(output), output


class TestAgentResourceLimits:
    async def test_a_fork_bomb_stops_at_max_processes(self, world: World) -> None:
        if LIMITS:
            pytest.skip(f"no cgroup here: {LIMITS}")
        _, output = await run_hostile(world, "fork", "", max_processes=24)
        assert "DENIED after" in output, output
        forks = int(output.split("DENIED after ")[1].split()[0])
        assert forks < 24

    async def test_memory_past_the_limit_ends_as_resource_limit(self, world: World) -> None:
        if LIMITS:
            pytest.skip(f"no cgroup here: {LIMITS}")
        outcome, output = await run_hostile(world, "memory", "", memory_mb=96)
        assert outcome.resource_limit, output
        assert "GOT" not in output
        verdict = judge(outcome, _no_report(), world.worktree / ".agent_result.md")
        assert verdict.blocker == "resource_limit"

    async def test_filling_tmp_stops_at_tmp_mb(self, world: World) -> None:
        _, output = await run_hostile(world, "fill_tmp", "", tmp_mb=8)
        assert "DENIED after" in output, output
        assert int(output.split("DENIED after ")[1].split()[0]) <= 8


def _no_report() -> AgentReport:
    return parse_output("command", "", 0, now=datetime.now(UTC))


class TestHostileTestCommand:
    async def run(self, world: World, cmd: str) -> str:
        box = command_spec(
            SandboxConfig(tmp_mb=8), world.worktree, world.state, env={"CREDENTIALS_DIRECTORY": str(world.creds)}
        )
        res = await run_shell(
            cmd, cwd=world.worktree, env=scrubbed_env(base=world.daemon_env), timeout=120, sandbox=box
        )
        return res.output_tail

    async def test_reads_no_secret_and_writes_nothing_outside(self, world: World) -> None:
        secrets = [world.operator / ".ssh/id_rsa", world.creds / "github_token", world.state / "journal.jsonl"]
        output = await self.run(
            world, " ; ".join(f"cat {p}" for p in secrets) + f"; echo x > {world.root}/out; ls {world.state}"
        )
        assert "SECRET" not in output and "No such file" in output, output
        assert output.splitlines()[-2:] == ["clones", "worktrees"]  # what `ls` of the state directory shows
        assert not (world.root / "out").exists()

    async def test_commits_in_its_worktree_are_kept(self, world: World) -> None:
        output = await self.run(
            world, "echo made > made.txt && git add made.txt && git commit -qm 'from the sandbox' && echo ok"
        )
        assert output.strip().endswith("ok"), output
        assert "from the sandbox" in git("log", "-1", "--format=%s", "task-mine", cwd=world.state / "clones" / "app")


async def test_without_bwrap_nothing_starts_and_the_fix_is_named(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = world.root / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    outcome, _ = await run_hostile(world, "write", world.worktree / "started.txt")
    assert outcome.refused is not None and "apt-get install bubblewrap" in outcome.refused
    assert not (world.worktree / "started.txt").exists()
    verdict = judge(outcome, _no_report(), world.worktree / ".agent_result.md")
    assert verdict.blocker == "environment_failure" and "apt-get install bubblewrap" in verdict.error


async def test_the_egress_proxy_socket_is_the_one_way_out(world: World) -> None:
    """With a proxy socket the sandbox gets HTTP(S)_PROXY and the socket, and reaches the host through it."""
    path = world.root / "egress.sock"
    got: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got.append(await reader.read(100))
        writer.write(b"proxied")
        writer.close()

    server = await asyncio.start_unix_server(answer, str(path))
    box = command_spec(SandboxConfig(tmp_mb=8), world.worktree, world.state, proxy_socket=path)
    client = (
        "import os, socket; s = socket.socket(socket.AF_UNIX); s.connect('/run/agentos/egress.sock'); "
        "s.sendall(b'CONNECT x:443'); print(os.environ['HTTPS_PROXY'], s.recv(100).decode())"
    )
    async with server:
        res = await run_shell(
            f'{PYTHON} -c "{client}"',
            cwd=world.worktree,
            env=scrubbed_env(base=world.daemon_env),
            timeout=60,
            sandbox=box,
        )
    assert res.ok, res.output_tail
    assert res.output_tail.strip().endswith("http://127.0.0.1:3128 proxied")
    assert got == [b"CONNECT x:443"]


def running(cmdline: bytes) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if Path(f"/proc/{name}/cmdline").read_bytes() == cmdline:
                    found.append(int(name))
            except OSError:
                continue
    return found


async def test_a_command_past_its_time_limit_is_killed_with_all_it_started(world: World) -> None:
    """A timed-out test command that left children behind, one of them in a session of its own: none survives."""
    box = command_spec(SandboxConfig(tmp_mb=8), world.worktree, world.state)
    cmd = "sleep 3017 & setsid sleep 3017 & echo started; sleep 3017"
    res = await run_shell(cmd, cwd=world.worktree, env=scrubbed_env(base=world.daemon_env), timeout=2, sandbox=box)
    assert res.timed_out and "started" in res.output_tail
    for _ in range(100):  # the kernel reaps the sandbox's processes right after its init dies
        if not running(b"sleep\x003017\x00"):
            break
        await asyncio.sleep(0.05)
    assert running(b"sleep\x003017\x00") == []


class TestSharedClone:
    """The worktree's ``.git`` points at the shared clone, where every task's branch lives: a sandboxed run moves
    its own branch and nothing else there."""

    async def run(self, world: World, cmd: str) -> str:
        box = command_spec(SandboxConfig(tmp_mb=8), world.worktree, world.state)
        res = await run_shell(
            cmd, cwd=world.worktree, env=scrubbed_env(base=world.daemon_env), timeout=120, sandbox=box
        )
        return res.output_tail

    async def test_another_branch_cannot_be_moved_or_pushed_to(self, world: World) -> None:
        clone = world.state / "clones" / "app"
        before = git("for-each-ref", "--format=%(refname) %(objectname)", cwd=clone)
        output = await self.run(
            world,
            "echo evil > evil.txt && git add evil.txt && git commit -qm evil && "
            "git update-ref refs/heads/task-other HEAD; git branch -f main HEAD; "
            f"git push -q {clone} HEAD:refs/heads/task-other; git push -q -f {clone} HEAD:refs/heads/pushed; "
            "git tag planted; git update-ref -d refs/heads/task-other; git reset -q --hard HEAD~1; "
            "git branch -a; echo done",
        )
        assert output.strip().endswith("done"), output
        after = git("for-each-ref", "--format=%(refname) %(objectname)", cwd=clone)
        assert after == before, output  # its own branch is back where it was too: it reset it
        assert "evil" not in git("log", "--all", "--format=%s", cwd=clone)

    async def test_objects_other_branches_need_cannot_be_deleted(self, world: World) -> None:
        clone = world.state / "clones" / "app"
        objects = sorted(p.relative_to(clone) for p in (clone / "objects").rglob("*") if p.is_file())
        output = await self.run(
            world, f"rm -rf {clone}/objects/* ; git gc -q --prune=now; ls {clone}/objects; echo done"
        )
        assert output.strip().endswith("done"), output
        assert sorted(p.relative_to(clone) for p in (clone / "objects").rglob("*") if p.is_file()) == objects
        assert git("fsck", "--no-dangling", cwd=clone) == ""

    async def test_a_planted_object_is_not_taken_back(self, world: World) -> None:
        """An object file whose content does not hash to its name (garbage, or a real blob under another blob's
        name, to poison a later write of that blob) stays in the run's copy."""
        clone = world.state / "clones" / "app"
        hello = git("hash-object", "--stdin", cwd=world.worktree, input_text="hello\n").strip()  # README's blob
        wrong = "python3 -c \"import sys, zlib; sys.stdout.buffer.write(zlib.compress(b'blob 6\\0evil!\\n'))\""
        fake = "0123456789abcdef0123456789abcdef01234567"
        output = await self.run(
            world,
            f"mkdir -p {clone}/objects/{fake[:2]} {clone}/objects/{hello[:2]} && "
            f"{wrong} > {clone}/objects/{fake[:2]}/{fake[2:]} && printf garbage > {clone}/objects/ab/{'c' * 38}; "
            f"rm -f {clone}/objects/{hello[:2]}/{hello[2:]}; {wrong} > {clone}/objects/{hello[:2]}/{hello[2:]}; "
            "echo done",
        )
        assert output.strip().endswith("done"), output
        assert not (clone / "objects" / fake[:2] / fake[2:]).exists()
        assert not (clone / "objects" / "ab" / ("c" * 38)).exists()
        assert git("cat-file", "-p", hello, cwd=clone) == "hello\n"
        assert git("fsck", "--no-dangling", cwd=clone) == ""

    async def test_where_the_clone_is_cannot_be_changed(self, world: World) -> None:
        """The admin folder is the run's, but not the files that point the daemon's git at the clone and the
        worktree: pointed at the operator's home, they would show it to the next sandbox and to agentos's git."""
        admin = world.state / "clones" / "app" / "worktrees" / "mine"
        before = {name: (admin / name).read_text() for name in ("commondir", "gitdir")}
        output = await self.run(
            world,
            f"echo {world.operator} > {admin}/commondir; echo {world.operator} > {admin}/gitdir; "
            f"rm -f {admin}/commondir; mv {admin}/gitdir {admin}/moved; echo done",
        )
        assert output.strip().endswith("done"), output
        assert {name: (admin / name).read_text() for name in before} == before, output
        assert not (admin / "moved").exists()

    async def test_its_own_commits_and_what_it_staged_are_kept(self, world: World) -> None:
        output = await self.run(
            world,
            "echo one > one.txt && git add one.txt && git commit -qm one && "
            "echo two > two.txt && git add two.txt && git commit -qm two && git repack -q && "
            "echo staged > staged.txt && git add staged.txt && echo ok",
        )
        assert output.strip().endswith("ok"), output
        clone = world.state / "clones" / "app"
        assert git("log", "--format=%s", "-2", "task-mine", cwd=clone).split() == ["two", "one"]
        assert git("fsck", "--no-dangling", cwd=clone) == ""
        assert git("diff", "--cached", "--name-only", cwd=world.worktree).split() == ["staged.txt"]


class Probes(BaseModel):
    ssh_key: str
    journal: str
    home: str
    direct: str
    proxied: str


LLM_PROBE = """import json, os, socket, sys
def read(path):
    try:
        return open(path).read()
    except OSError as exc:
        return "DENIED " + type(exc).__name__
def connect(host, port, send=b""):
    try:
        with socket.create_connection((host, port), timeout=5) as s:
            s.sendall(send)
            return "GOT " + s.recv(100).decode()
    except OSError as exc:
        return "DENIED " + type(exc).__name__
proxy_host, proxy_port = os.environ.get("HTTPS_PROXY", "http://none:0").removeprefix("http://").split(":")
connect_line = ("CONNECT 127.0.0.1:%s HTTP/1.1\\r\\n\\r\\n" % os.environ["PORT"]).encode()
print(json.dumps({
    "ssh_key": read(os.environ["SSH_KEY"]), "journal": read(os.environ["JOURNAL"]), "home": os.environ["HOME"],
    "direct": connect("127.0.0.1", int(os.environ["PORT"])),
    "proxied": connect(proxy_host, int(proxy_port), connect_line),
}))
"""


class TestOneShotQuestions:
    """``agentos.llm``'s one-shot questions (planner, judge, normaliser) run in the same sandbox as an attempt."""

    async def test_the_asked_agent_sees_no_secret_and_reaches_only_its_allowlist(self, world: World) -> None:
        hits: list[bytes] = []

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            hits.append(await reader.read(100))
            writer.write(b"SECRET-SERVER")
            writer.close()

        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        script = world.root / "probe.py"
        script.write_text(LLM_PROBE)
        paths = {"SSH_KEY": str(world.operator / ".ssh" / "id_rsa"), "JOURNAL": str(world.state / "journal.jsonl")}
        cfg = AgentConfig(kind="command", argv=[PYTHON, str(script)], env={**paths, "PORT": str(port)})
        llm = Llm(
            "planner",
            cfg,
            workdir=world.state / "llm",
            state_dir=world.state,
            sandbox=SandboxConfig(tmp_mb=8, memory_mb=256, max_processes=64),
            base_env=world.daemon_env,
            timeout_s=60,
        )
        async with server:
            probes = await llm.ask("what can you see?", Probes)
        assert probes is not None
        assert probes.ssh_key.startswith("DENIED") and probes.journal.startswith("DENIED"), probes
        assert probes.home == str(SANDBOX_HOME)
        assert probes.direct.startswith("DENIED"), probes
        assert "403" in probes.proxied and "SECRET" not in probes.proxied, probes  # the proxy refused it
        assert hits == []
        assert list((world.state / "llm").iterdir()) == []
