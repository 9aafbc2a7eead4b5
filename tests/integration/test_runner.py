"""The runner with real processes: limits, process-group kills, the capped log, and the fake agent CLIs.

Liveness is read from ``/proc/<pid>/stat``: a killed grandchild is reparented to pid 1, which in a container
may never reap it, so ``os.kill(pid, 0)`` would still succeed on its zombie. A zombie holds nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agentos.agents.adapters import build_invocation, parse_output
from agentos.agents.runner import RunOutcome, RunSpec, kill_orphan, proc_start_time, run_process
from agentos.config import AgentConfig
from tests.daemon_process import alive
from tests.daemon_process import pid_list as pids
from tests.waiting import wait_until_async

FAKES = Path(__file__).resolve().parents[1] / "fakes" / "agents"
PY = sys.executable
IS_ROOT = os.geteuid() == 0


async def wait_for_pids(path: Path, count: int) -> list[int]:
    def listed() -> list[int] | None:
        found = pids(path)
        return found if len(found) >= count else None

    return await wait_until_async(listed, what=f"{path} to list {count} pids", timeout=5)


@pytest.fixture
def base_env() -> dict[str, str]:
    """The daemon's environment: the fakes and this venv's python first on PATH, plus secrets to keep out."""
    return {
        "PATH": f"{FAKES}:{Path(PY).parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        "ANTHROPIC_API_KEY": "sk-ant-must-not-leak",
        "AGENTOS_TELEGRAM_TOKEN": "123:must-not-leak",
        "NOTIFY_SOCKET": "/run/systemd/notify",
    }


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with one commit, standing in for the task's worktree."""
    path = tmp_path / "worktree"
    path.mkdir()
    for cmd in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "config", "user.email", "agent@example.invalid"],
        ["git", "config", "user.name", "Fake Agent"],
        ["git", "commit", "-q", "--allow-empty", "-m", "init"],
    ):
        subprocess.run(cmd, cwd=path, check=True, capture_output=True)
    return path


def spec(
    argv: list[str],
    cwd: Path,
    env: dict[str, str],
    log: Path,
    *,
    stdin: bytes | None = None,
    idle: float = 5.0,
    wall: float = 10.0,
    grace: float = 0.2,
    max_log: int = 1 << 20,
) -> RunSpec:
    return RunSpec(argv, cwd, env, stdin, log, idle, wall, grace, max_log)


def py(code: str) -> list[str]:
    return [PY, "-c", code]


async def startup_s(argv: list[str], cwd: Path, env: dict[str, str], tmp_path: Path) -> float:
    """How long this fake agent takes, on this machine and under its load now, to start, reach its mode and exit
    (its ``crash`` mode: the same imports and set-up as ``hang``, then a stack trace).

    Limits that a fake must outlive (installing ``SIG_IGN`` before the idle limit sends SIGTERM, printing before
    the idle limit) are derived from it instead of being fixed fractions of a second that a loaded 2-core
    machine can miss.
    """
    probe = await run_process(spec(argv, cwd, env | {"FAKE_AGENT_MODE": "crash"}, tmp_path / "startup.log"))
    assert probe.exit_code == 1, (tmp_path / "startup.log").read_text()
    return probe.duration_s


def idle_after(startup: float) -> float:
    """An idle limit that starts counting only well after the fake is up: four start-ups, and never below 0.3 s."""
    return max(0.3, 4 * startup)


# ---------------------------------------------------------------- process supervision


class TestRunProcess:
    async def test_output_and_exit_code(self, tmp_path: Path, base_env: dict[str, str]) -> None:
        """stdout and stderr both land in the log; the exit code and a decoded tail are reported."""
        log = tmp_path / "run" / "agent.log"
        code = "import sys; print('to stdout', flush=True); sys.stderr.write('to stderr\\n'); sys.exit(3)"
        out = await run_process(spec(py(code), tmp_path, base_env, log))
        assert out.exit_code == 3 and out.timed_out is None and not out.not_found
        assert "to stdout" in log.read_text() and "to stderr" in log.read_text()
        assert "to stderr" in out.log_tail
        assert out.log_bytes == len("to stdout\nto stderr\n")
        assert not out.truncated and not out.killed_escalated

    async def test_stdin_and_exact_environment(self, tmp_path: Path) -> None:
        """The child gets exactly spec.env and the whole stdin, even one larger than a pipe buffer."""
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "ONLY_THIS": "1"}
        prompt = ("x" * 1023 + "\n").encode() * 1024
        code = "import os, sys, json; data = sys.stdin.read(); print(json.dumps([len(data), dict(os.environ)]))"
        log = tmp_path / "agent.log"
        out = await run_process(spec(py(code), tmp_path, env, log, stdin=prompt))
        assert out.exit_code == 0
        size, seen = json.loads(log.read_text())
        assert size == len(prompt)
        assert seen == env

    async def test_child_that_ignores_stdin(self, tmp_path: Path, base_env: dict[str, str]) -> None:
        """A child that exits without reading a large prompt is not an error (broken pipe is ignored)."""
        out = await run_process(spec(py("pass"), tmp_path, base_env, tmp_path / "l", stdin=b"y" * (1 << 20)))
        assert out.exit_code == 0

    async def test_on_start_gets_pid_and_start_time(self, tmp_path: Path, base_env: dict[str, str]) -> None:
        """on_start receives the pid and its /proc start time, as the child itself sees them."""
        seen: list[tuple[int, int]] = []
        code = (
            "import os, time; f = open('/proc/self/stat').read().rpartition(')')[2].split();"
            "print(os.getpid(), f[19]); time.sleep(0.05)"
        )
        log = tmp_path / "agent.log"
        await run_process(spec(py(code), tmp_path, base_env, log), on_start=lambda p, s: seen.append((p, s)))
        pid, start = map(int, log.read_text().split())
        assert seen == [(pid, start)]

    async def test_missing_program_is_not_found(self, tmp_path: Path, base_env: dict[str, str]) -> None:
        """A program that does not exist gives not_found with the reason in the log, not an exception."""
        log = tmp_path / "agent.log"
        out = await run_process(spec([str(tmp_path / "no-such-agent")], tmp_path, base_env, log))
        assert out.not_found and out.exit_code is None
        assert "cannot start" in log.read_text()

    async def test_not_executable_is_not_found(self, tmp_path: Path, base_env: dict[str, str]) -> None:
        """A file without the execute bit is not_found too (PermissionError)."""
        script = tmp_path / "agent.sh"
        script.write_text("#!/bin/sh\necho hi\n")
        script.chmod(0o644)
        if IS_ROOT and os.access(script, os.X_OK):
            pytest.skip("root may execute anything here")
        out = await run_process(spec([str(script)], tmp_path, base_env, tmp_path / "agent.log"))
        assert out.not_found

    async def test_idle_limit_kills_the_agent_and_its_sigterm_ignoring_child(
        self, tmp_path: Path, repo: Path, base_env: dict[str, str]
    ) -> None:
        """A silent agent is stopped at the idle limit; its child that ignores SIGTERM gets SIGKILL."""
        pid_file = tmp_path / "pids"
        env = base_env | {"IS_SANDBOX": "1", "FAKE_AGENT_MODE": "hang", "FAKE_AGENT_FORK": "1"}
        env["FAKE_AGENT_PID_FILE"] = str(pid_file)
        argv = [str(FAKES / "claude"), "-p", "--output-format", "json", "--dangerously-skip-permissions"]
        log = tmp_path / "agent.log"
        idle = idle_after(await startup_s(argv, repo, base_env | {"IS_SANDBOX": "1"}, tmp_path))
        out = await run_process(spec(argv, repo, env, log, stdin=b"hi", idle=idle, grace=0.2))
        assert out.timed_out == "idle"
        assert out.killed_escalated
        assert out.duration_s < idle + 3
        agent, child = pids(pid_file)
        assert not alive(agent) and not alive(child)
        assert "idle limit" in log.read_text()

    async def test_term_is_enough_for_a_polite_agent(self, tmp_path: Path, base_env: dict[str, str]) -> None:
        """An agent that exits on SIGTERM is not escalated to SIGKILL."""
        env = base_env | {"FAKE_AGENT_MODE": "hang"}
        out = await run_process(spec([str(FAKES / "command_agent.py")], tmp_path, env, tmp_path / "l", idle=0.3))
        assert out.timed_out == "idle"
        assert not out.killed_escalated
        assert out.exit_code == -signal.SIGTERM

    async def test_agent_ignoring_sigterm_is_killed(self, tmp_path: Path, base_env: dict[str, str]) -> None:
        """An agent that ignores SIGTERM itself is SIGKILLed after the grace."""
        pid_file = tmp_path / "pids"
        env = base_env | {"FAKE_AGENT_MODE": "hang", "FAKE_AGENT_IGNORE_TERM": "1"}
        env["FAKE_AGENT_PID_FILE"] = str(pid_file)
        argv = [str(FAKES / "command_agent.py")]
        idle = idle_after(await startup_s(argv, tmp_path, base_env, tmp_path))
        out = await run_process(spec(argv, tmp_path, env, tmp_path / "l", idle=idle, grace=0.1))
        assert out.killed_escalated and out.exit_code == -signal.SIGKILL
        assert not any(alive(p) for p in pids(pid_file))

    async def test_wall_limit_stops_a_busy_agent(self, tmp_path: Path, base_env: dict[str, str]) -> None:
        """Steady output keeps the idle limit away, but the wall-clock limit still ends the run."""
        env = base_env | {"FAKE_AGENT_MODE": "busy"}
        argv = [str(FAKES / "command_agent.py")]
        log = tmp_path / "agent.log"
        idle = max(1.0, idle_after(await startup_s(argv, tmp_path, base_env, tmp_path)))  # > the 50 ms between lines
        wall = idle + 1.0  # reached only by an agent that printed all along: idle alone would have ended it sooner
        out = await run_process(spec(argv, tmp_path, env, log, idle=idle, wall=wall))
        assert out.timed_out == "wall"
        assert out.duration_s >= wall
        assert log.read_text().count("working… step") >= 5

    async def test_huge_output_is_capped_and_the_report_survives(
        self, tmp_path: Path, repo: Path, base_env: dict[str, str]
    ) -> None:
        """A flood is capped in the log (head + tail kept, the cut noted) and the final JSON still parses."""
        env = base_env | {"IS_SANDBOX": "1", "FAKE_AGENT_MODE": "chatty", "FAKE_AGENT_MB": "3"}
        argv = [str(FAKES / "claude"), "-p", "--output-format", "json", "--dangerously-skip-permissions"]
        log = tmp_path / "agent.log"
        cap = 256 * 1024
        out = await run_process(spec(argv, repo, env, log, stdin=b"go", max_log=cap))
        assert out.exit_code == 0 and out.truncated
        assert out.log_bytes > 3 * 1024 * 1024
        assert cap <= log.stat().st_size <= cap + 512
        text = log.read_text()
        assert "bytes of output dropped" in text
        report = parse_output("claude", text, out.exit_code, now=datetime.now(UTC))
        assert report.cost_reported and report.turns == 7

    async def test_cancellation_kills_the_group(self, tmp_path: Path, repo: Path, base_env: dict[str, str]) -> None:
        """Cancelling run_process (daemon shutdown) kills the agent and its children, then re-raises."""
        pid_file = tmp_path / "pids"
        env = base_env | {"FAKE_AGENT_MODE": "hang", "FAKE_AGENT_FORK": "1", "FAKE_AGENT_PID_FILE": str(pid_file)}
        argv = [str(FAKES / "codex"), "exec", "--json", "-"]
        task = asyncio.create_task(run_process(spec(argv, repo, env, tmp_path / "l", stdin=b"x", grace=0.1)))
        agent, child = await wait_for_pids(pid_file, 2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not alive(agent) and not alive(child)

    async def test_leftovers_are_killed_after_a_normal_exit(self, tmp_path: Path, base_env: dict[str, str]) -> None:
        """A background process the agent left behind (holding its stdout) is killed, and the run ends promptly."""
        code = "import subprocess, sys;p = subprocess.Popen(['sleep', '30']);print(p.pid, flush=True)"
        log = tmp_path / "agent.log"
        out = await run_process(spec(py(code), tmp_path, base_env, log, idle=5))
        assert out.exit_code == 0 and out.timed_out is None
        assert out.duration_s < 3
        assert not alive(int(log.read_text().split()[0]))


class TestKillOrphan:
    def test_kills_only_when_the_start_time_matches(self) -> None:
        """kill_orphan ignores a stale record (another start time) and kills the group when it matches."""
        proc = subprocess.Popen(
            [PY, "-c", "import os, time; os.fork(); time.sleep(30)"],
            start_new_session=True,
        )
        try:
            start = proc_start_time(proc.pid)
            assert start is not None
            assert kill_orphan(proc.pid, start + 1) is False
            assert alive(proc.pid)
            assert kill_orphan(proc.pid, start) is True
            assert proc.wait(timeout=5) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def test_gone_pid(self) -> None:
        """A pid that no longer exists is not killed."""
        proc = subprocess.Popen(["true"])
        proc.wait()
        assert kill_orphan(proc.pid, 12345) is False
        assert proc_start_time(proc.pid) is None


# ---------------------------------------------------------------- the fake CLIs through their adapters


async def run_agent(
    kind: str,
    repo: Path,
    tmp_path: Path,
    base_env: dict[str, str],
    *,
    mode: str = "complete",
    prompt: str = "Add a line to agent_output.txt.\nThen write the result file.",
    **cfg: object,
) -> tuple[RunOutcome, Path]:
    """Build the agent's invocation as the executor would and run it under the runner."""
    env = {"FAKE_AGENT_MODE": mode, "FAKE_AGENT_PROMPT_LOG": str(tmp_path / "prompts.log")}
    env["FAKE_AGENT_ENV_LOG"] = str(tmp_path / "env.json")
    env.update(cfg.pop("env", {}))  # type: ignore[call-overload]
    if kind == "command":
        cfg.setdefault("argv", [str(FAKES / "command_agent.py"), "{prompt_file}", "--task-id", "{task_id}"])
    config = AgentConfig.model_validate({"kind": kind, "env": env, **cfg})
    prompt_file = tmp_path / "prompt.md"
    prompt_file.write_text(prompt)
    inv = build_invocation(
        f"my-{kind}",
        config,
        prompt=prompt,
        prompt_file=prompt_file,
        worktree=repo,
        task_id="t-7",
        base_env=base_env,
    )
    log = tmp_path / "agent.log"
    out = await run_process(RunSpec(inv.argv, repo, inv.env, inv.stdin, log, 10, 20, 0.2, 1 << 20))
    return out, log


KINDS = ["claude", "codex", "gemini", "command"]


class TestFakeAgents:
    @pytest.mark.parametrize("kind", KINDS)
    async def test_complete_run(self, kind: str, tmp_path: Path, repo: Path, base_env: dict[str, str]) -> None:
        """A complete run commits its edit, writes the result file and reports what the CLI measured."""
        out, log = await run_agent(kind, repo, tmp_path, base_env)
        assert out.exit_code == 0, log.read_text()
        report = parse_output(kind, log.read_text(), out.exit_code, now=datetime.now(UTC))  # type: ignore[arg-type]
        assert report.failure is None and not report.is_error
        assert "agent_output.txt" in report.final_message
        assert report.tokens_reported == (kind != "command")
        assert report.cost_reported == (kind == "claude")
        if kind == "claude":
            assert report.cost_usd == pytest.approx(0.0912) and report.turns == 7
        if kind != "command":
            assert report.tokens_in > 0 and report.tokens_out > 0
        assert (repo / ".agent_result.md").read_text().startswith("STATUS: complete")
        commits = subprocess.run(["git", "log", "--oneline"], cwd=repo, capture_output=True, text=True).stdout
        assert "fake agent: update agent_output.txt" in commits

    @pytest.mark.parametrize("kind", KINDS)
    async def test_the_agent_sees_the_prompt_and_a_scrubbed_env(
        self, kind: str, tmp_path: Path, repo: Path, base_env: dict[str, str]
    ) -> None:
        """The prompt reaches the agent intact; daemon secrets and NOTIFY_SOCKET do not."""
        prompt = "Fix issue #7 ✓\n\n## Goal\nmake it green"
        await run_agent(kind, repo, tmp_path, base_env, prompt=prompt)
        assert prompt in (tmp_path / "prompts.log").read_text()
        env = json.loads((tmp_path / "env.json").read_text())
        assert not {"ANTHROPIC_API_KEY", "AGENTOS_TELEGRAM_TOKEN", "NOTIFY_SOCKET"} & env.keys()
        assert env["GIT_TERMINAL_PROMPT"] == "0"
        assert (env.get("IS_SANDBOX") == "1") == (kind == "claude" and IS_ROOT)

    async def test_pass_env_lets_a_secret_through(self, tmp_path: Path, repo: Path, base_env: dict[str, str]) -> None:
        """A secret named in pass_env reaches the agent."""
        await run_agent("claude", repo, tmp_path, base_env, pass_env=["ANTHROPIC_API_KEY"])
        assert json.loads((tmp_path / "env.json").read_text())["ANTHROPIC_API_KEY"] == "sk-ant-must-not-leak"

    @pytest.mark.parametrize("kind", KINDS)
    async def test_quota_limit(self, kind: str, tmp_path: Path, repo: Path, base_env: dict[str, str]) -> None:
        """Each CLI's usage-limit message becomes quota_limited with the reset time it states."""
        out, log = await run_agent(kind, repo, tmp_path, base_env, mode="quota")
        assert out.exit_code != 0
        now = datetime.now(UTC)
        report = parse_output(kind, log.read_text(), out.exit_code, now=now)  # type: ignore[arg-type]
        assert report.failure == "quota_limited", report
        assert report.reset_at is not None and report.reset_at > now

    @pytest.mark.parametrize("kind", KINDS)
    async def test_auth_error(self, kind: str, tmp_path: Path, repo: Path, base_env: dict[str, str]) -> None:
        """Each CLI's login/API-key error becomes missing_credentials."""
        out, log = await run_agent(kind, repo, tmp_path, base_env, mode="auth")
        report = parse_output(kind, log.read_text(), out.exit_code, now=datetime.now(UTC))  # type: ignore[arg-type]
        assert report.failure == "missing_credentials", report

    @pytest.mark.parametrize("kind", KINDS)
    async def test_crash_keeps_stderr(self, kind: str, tmp_path: Path, repo: Path, base_env: dict[str, str]) -> None:
        """A crash is runner_failure and keeps the stderr tail."""
        out, log = await run_agent(kind, repo, tmp_path, base_env, mode="crash")
        assert out.exit_code == 1
        report = parse_output(kind, log.read_text(), out.exit_code, now=datetime.now(UTC))  # type: ignore[arg-type]
        assert report.failure == "runner_failure"
        assert "Error: something broke" in report.detail

    @pytest.mark.parametrize(
        ("mode", "status"), [("partial", "STATUS: partial"), ("blocked", "STATUS: blocked"), ("noresult", None)]
    )
    async def test_result_file_modes(
        self, mode: str, status: str | None, tmp_path: Path, repo: Path, base_env: dict[str, str]
    ) -> None:
        """partial/blocked write their STATUS; noresult edits but writes no result file."""
        out, _ = await run_agent("codex", repo, tmp_path, base_env, mode=mode)
        assert out.exit_code == 0
        result = repo / ".agent_result.md"
        assert (result.read_text().splitlines()[0] if result.exists() else None) == status

    async def test_slow_mode_reports_progress_then_completes(
        self, tmp_path: Path, repo: Path, base_env: dict[str, str]
    ) -> None:
        """slow: progress lines for FAKE_AGENT_SLOW_S (an attempt that is visibly busy, for kill -9 mid-attempt
        tests), then a complete run; it takes at least that long."""
        env = {"FAKE_AGENT_SLOW_S": "0.3"}
        out, log = await run_agent("claude", repo, tmp_path, base_env, mode="slow", env=env)
        assert out.exit_code == 0 and out.duration_s >= 0.3
        assert "thinking… step 1" in log.read_text()
        assert (repo / ".agent_result.md").read_text().startswith("STATUS: complete")

    async def test_uncommitted_edit(self, tmp_path: Path, repo: Path, base_env: dict[str, str]) -> None:
        """FAKE_AGENT_COMMIT=0 leaves the edit for the executor to commit."""
        await run_agent("gemini", repo, tmp_path, base_env, env={"FAKE_AGENT_COMMIT": "0"})
        status = subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True).stdout
        assert "agent_output.txt" in status

    @pytest.mark.skipif(not IS_ROOT, reason="the guard only applies to root")
    async def test_claude_refuses_root_without_is_sandbox(
        self, tmp_path: Path, repo: Path, base_env: dict[str, str]
    ) -> None:
        """Without IS_SANDBOX=1 the (fake) CLI refuses to run as root, which is why the adapter sets it."""
        argv = [str(FAKES / "claude"), "-p", "--output-format", "json", "--dangerously-skip-permissions"]
        log = tmp_path / "agent.log"
        out = await run_process(spec(argv, repo, base_env, log, stdin=b"hello"))
        assert out.exit_code == 1
        report = parse_output("claude", log.read_text(), 1, now=datetime.now(UTC))
        assert report.failure == "runner_failure"
        assert "cannot be used with root/sudo privileges" in report.detail

    @pytest.mark.parametrize(
        ("binary", "argv"),
        [
            ("claude", ["-p", "--output-format", "json", "--no-such-flag"]),
            ("codex", ["exec", "--no-such-flag", "-"]),
            ("gemini", ["-p", "", "--no-such-flag"]),
        ],
    )
    def test_fakes_reject_unknown_flags(self, binary: str, argv: list[str], base_env: dict[str, str]) -> None:
        """Like the real CLIs, the fakes reject flags they do not know (so a wrong argv fails loudly)."""
        env = base_env | {"IS_SANDBOX": "1"}
        done = subprocess.run([str(FAKES / binary), *argv], input="x", env=env, capture_output=True, text=True)
        assert done.returncode != 0
        assert "no-such-flag" in done.stderr

    async def test_without_the_bypass_flag_nothing_is_edited(
        self, tmp_path: Path, repo: Path, base_env: dict[str, str]
    ) -> None:
        """A CLI started without its permission bypass cannot edit (the fake models the real default)."""
        argv = [str(FAKES / "gemini"), "-p", "", "--output-format", "json", "--skip-trust"]
        out = await run_process(spec(argv, repo, base_env, tmp_path / "l", stdin=b"edit please"))
        assert out.exit_code == 0
        assert not (repo / "agent_output.txt").exists()

    async def test_gemini_refuses_an_untrusted_folder(
        self, tmp_path: Path, repo: Path, base_env: dict[str, str]
    ) -> None:
        """Without GEMINI_CLI_TRUST_WORKSPACE (set by the adapter) headless Gemini CLI refuses a new folder."""
        argv = [str(FAKES / "gemini"), "-p", "", "--output-format", "json", "--approval-mode", "yolo"]
        log = tmp_path / "agent.log"
        out = await run_process(spec(argv, repo, base_env, log, stdin=b"edit please"))
        assert out.exit_code == 55
        report = parse_output("gemini", log.read_text(), 55, now=datetime.now(UTC))
        assert report.failure == "runner_failure"
        assert "not running in a trusted directory" in report.detail
        assert "\x1b" not in report.detail
