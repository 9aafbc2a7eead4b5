"""`agentos doctor`: each problem it is meant to find, with a fix hint, and a clean bill on a good setup."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import sys
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentos.cli.doctor import Check, command_program, run_checks
from agentos.cli.main import app
from tests.integration.test_cli_init import GOOD_TOKEN, MiniGitHub, git_repo, mini_github  # noqa: F401

PYTHON = sys.executable


@pytest.fixture(autouse=True)
def _clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine's tokens, sockets and logins stay out; HOME, cwd and the socket path are the test's own."""
    for name in (
        "GITHUB_TOKEN",
        "TELEGRAM_BOT_TOKEN",
        "AGENTOS_CONFIG",
        "CREDENTIALS_DIRECTORY",
        "STATE_DIRECTORY",
        "ANTHROPIC_API_KEY",
        "CLAUDE_CODE_OAUTH_TOKEN",
        "OPENAI_API_KEY",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AGENTOS_SOCKET", str(tmp_path / "no-daemon.sock"))
    monkeypatch.chdir(tmp_path)


def fake_cli(bin_dir: Path, name: str, version: str = "1.0.0", *, answer: str = "", exit_code: int = 0) -> Path:
    """An agent CLI stand-in: ``--version`` prints ``version``; anything else prints ``answer``."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / name
    path.write_text(
        f"#!{PYTHON}\nimport sys\n"
        f"if '--version' in sys.argv:\n    print({version!r})\n    sys.exit(0)\n"
        f"sys.stdin.read()\nprint({answer!r})\nsys.exit({exit_code})\n"
    )
    path.chmod(0o755)
    return path


def path_with(bin_dir: Path, *programs: str) -> str:
    """A PATH of ``bin_dir`` plus links to just ``programs`` from this machine."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for program in programs:
        found = shutil.which(program)
        assert found, program
        if not (bin_dir / program).exists():
            (bin_dir / program).symlink_to(found)
    return str(bin_dir)


def write_config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "agentos.yaml"
    path.write_text(f"state_dir: {tmp_path / 'state'}\n" + body)
    return path


def doctor(config: Path, *args: str) -> tuple[int, list[Check]]:
    result = CliRunner().invoke(app, ["doctor", "--config", str(config), "--json", *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, [Check(**c) for c in json.loads(result.stdout)]


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.check: c for c in checks}


@pytest.fixture
def good(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config whose every check passes: claude installed and keyed, a git repo, a test command on PATH."""
    bin_dir = tmp_path / "bin"
    fake_cli(bin_dir, "claude", "2.1.0 (Claude Code)")
    monkeypatch.setenv("PATH", path_with(bin_dir, "git", "python3"))
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    repo = git_repo(tmp_path / "calc")
    return write_config(
        tmp_path,
        "forge: local\nagents:\n  claude: {kind: claude, pass_env: [ANTHROPIC_API_KEY]}\n"
        f"repos:\n  - {{name: calc, path: {repo}, test_command: python3 -m pytest -q}}\n",
    )


class TestDoctor:
    def test_a_good_setup_passes_with_only_the_daemon_warning(self, good: Path) -> None:
        """Everything is ok; a daemon that is not running is a warning, so the exit code is 0."""
        code, checks = doctor(good)
        assert code == 0
        found = by_name(checks)
        problems = {c.check: c.status for c in checks if c.status != "ok"}
        assert problems == {"socket": "warn"}
        assert "2.1.0 (Claude Code)" in found["agent:claude"].detail
        assert "ANTHROPIC_API_KEY (set)" in found["agent:claude:auth"].detail
        assert "git repository" in found["repo:calc"].detail and "python3" in found["repo:calc:tests"].detail
        assert {"config", "git", "state_dir", "disk", "socket"} <= found.keys()

    def test_a_missing_agent_and_a_non_git_repo_fail(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A missing CLI and a path that is not a git repository are errors with a fix, and exit 1."""
        monkeypatch.setenv("PATH", path_with(tmp_path / "bin", "git", "python3"))
        plain = tmp_path / "plain"
        plain.mkdir()
        config = write_config(
            tmp_path,
            "agents:\n  claude: {kind: claude}\n"
            f"repos:\n  - {{name: calc, path: {plain}, test_command: python3 -m pytest}}\n",
        )
        code, checks = doctor(config)
        assert code == 1
        found = by_name(checks)
        assert found["agent:claude"].status == "error" and "npm install" in found["agent:claude"].fix
        assert found["repo:calc"].status == "error" and "not a git repository" in found["repo:calc"].detail
        assert "git init" in found["repo:calc"].fix

    def test_reports_each_seeded_problem_with_a_fix(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A config with a dozen things wrong gets a finding with a fix hint for every one of them."""
        bin_dir = tmp_path / "bin"
        fake_cli(bin_dir, "codex", "codex-cli 0.50.0")
        monkeypatch.setenv("PATH", path_with(bin_dir, "git"))
        (tmp_path / "state").write_text("not a directory")
        repo = git_repo(tmp_path / "calc")
        config = tmp_path / "agentos.yaml"
        config.write_text(
            f"state_dir: {tmp_path / 'state'}\n"
            "agents:\n"
            "  claude: {kind: claude}\n"  # 1 not installed
            "  codex: {kind: codex, pass_env: [OPENAI_API_KEY]}\n"  # 2 installed, no key, no login
            "  patcher: {kind: command, argv: [/nowhere/patcher.py]}\n"  # 3 a command agent that is missing
            "repos:\n"
            f"  - {{name: gone, path: {tmp_path / 'gone'}, test_command: 'true'}}\n"  # 4 path missing
            f"  - {{name: plain, path: {tmp_path}, test_command: 'true'}}\n"  # 5 not a git repo
            f"  - {{name: calc, path: {repo}, test_command: tox -q, base_branch: trunk}}\n"  # 6 tox, 7 no trunk
            "telegram: {enabled: true}\n"  # 8 no token, 9 no chat ids
        )
        checks = run_checks(str(config), min_free_bytes=1 << 62, credentials=[])  # 10 low disk, 11 no daemon
        problems = {c.check: c for c in checks if c.status != "ok"}
        expected = {
            "state_dir": "error",
            "disk": "warn",
            "socket": "warn",
            "agent:claude": "error",
            "agent:codex:auth": "warn",
            "agent:patcher": "error",
            "repo:gone": "error",
            "repo:plain": "error",
            "repo:calc:tests": "error",
            "repo:calc": "warn",
            "telegram": "error",
            "telegram:chats": "warn",
        }
        assert {name: c.status for name, c in problems.items()} == expected
        assert all(c.fix for c in problems.values()), [c for c in problems.values() if not c.fix]
        assert "tox" in problems["repo:calc:tests"].detail and "trunk" in problems["repo:calc"].detail

    def test_git_missing_is_an_error(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without git on PATH nothing can work."""
        monkeypatch.setenv("PATH", str(tmp_path / "empty"))
        code, checks = doctor(write_config(tmp_path, ""))
        assert code == 1 and by_name(checks)["git"].status == "error"

    def test_an_invalid_config_names_the_line(self, tmp_path: Path) -> None:
        """A config that does not validate is an error naming the file, line and key."""
        config = tmp_path / "agentos.yaml"
        config.write_text("forge: local\nmax_parallel_workers: 0\n")
        code, checks = doctor(config)
        assert code == 1
        found = by_name(checks)["config"]
        assert found.status == "error" and "agentos.yaml:2: max_parallel_workers" in found.detail

    def test_a_running_daemon_is_reported(self, good: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A daemon answering on the socket turns the socket check ok."""
        path = tmp_path / "d.sock"
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(path))
        server.listen(1)

        def answer() -> None:
            conn, _ = server.accept()
            with conn:
                conn.makefile("rb").readline()
                conn.sendall(b'{"ok": true, "result": {"paused": true}}\n')

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        monkeypatch.setenv("AGENTOS_SOCKET", str(path))
        try:
            code, checks = doctor(good)
        finally:
            thread.join(5)
            server.close()
        assert code == 0
        assert by_name(checks)["socket"] == Check("socket", "ok", f"daemon running at {path} (paused)")

    def test_the_human_form_lists_fixes(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without --json each problem is printed with its fix under it."""
        monkeypatch.setenv("PATH", path_with(tmp_path / "bin", "git"))
        config = write_config(tmp_path, "agents:\n  claude: {kind: claude}\n")
        result = CliRunner().invoke(app, ["doctor", "-c", str(config)])
        assert result.exit_code == 1
        assert "agent:claude" in result.output and "fix:" in result.output and "1 errors" in result.output


class TestAgentLogin:
    def test_no_key_and_no_login_is_a_warning(self, good: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """An agent whose API key is unset and that has no login file only warns (it may log in otherwise)."""
        monkeypatch.delenv("ANTHROPIC_API_KEY")
        code, checks = doctor(good)
        auth = by_name(checks)["agent:claude:auth"]
        assert code == 0 and auth.status == "warn" and "ANTHROPIC_API_KEY (unset)" in auth.detail

    def test_a_login_file_counts(self, good: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Claude Code's stored login satisfies the check."""
        monkeypatch.delenv("ANTHROPIC_API_KEY")
        login = tmp_path / "home" / ".claude" / ".credentials.json"
        login.parent.mkdir(parents=True)
        login.write_text("{}")
        _, checks = doctor(good)
        assert by_name(checks)["agent:claude:auth"].status == "ok"

    def test_deep_proves_the_login_with_one_call(self, good: Path, tmp_path: Path) -> None:
        """--deep runs one tiny prompt; a JSON result is a pass, an auth error a failure with a fix."""
        result = {"type": "result", "subtype": "success", "is_error": False, "result": "OK", "total_cost_usd": 0.0001}
        fake_cli(tmp_path / "bin", "claude", answer=json.dumps(result))
        code, checks = doctor(good, "--deep")
        assert code == 0 and by_name(checks)["agent:claude:login"].status == "ok"
        (tmp_path / "bin" / "claude").unlink()
        fake_cli(tmp_path / "bin", "claude", answer="Invalid API key · Please run /login", exit_code=1)
        code, checks = doctor(good, "--deep")
        login = by_name(checks)["agent:claude:login"]
        assert code == 1 and login.status == "error" and "ANTHROPIC_API_KEY" in login.fix


class TestGitHubChecks:
    async def test_a_good_token_and_repo_pass(
        self,
        tmp_path: Path,
        mini_github: MiniGitHub,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """GET /user and the repo answer; the scopes are listed."""
        monkeypatch.setenv("GITHUB_TOKEN", GOOD_TOKEN)
        config = write_config(
            tmp_path,
            f"forge: github\ngithub: {{api_url: '{mini_github.url}'}}\n"
            f"repos:\n  - {{name: octo/calc, test_command: 'true'}}\n",
        )
        checks = by_name(await asyncio.to_thread(run_checks, str(config), credentials=[]))
        assert checks["github:token"].status == "ok" and "repo, workflow" in checks["github:token"].detail
        assert checks["github:octo/calc"].status == "ok"

    async def test_missing_scope_and_invisible_repo_are_errors(
        self,
        tmp_path: Path,
        mini_github: MiniGitHub,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """A classic token without `repo` is named with the scope to add; a repo it cannot see is an error."""
        mini_github.tokens["ghp_narrow"] = "read:user"
        monkeypatch.setenv("GITHUB_TOKEN", "ghp_narrow")
        config = write_config(
            tmp_path,
            f"forge: github\ngithub: {{api_url: '{mini_github.url}'}}\n"
            f"repos:\n  - {{name: octo/hidden, test_command: 'true'}}\n",
        )
        checks = by_name(await asyncio.to_thread(run_checks, str(config), credentials=[]))
        assert checks["github:token"].status == "error" and "missing repo" in checks["github:token"].detail
        assert "repo" in checks["github:token"].fix
        assert checks["github:octo/hidden"].status == "error"

    async def test_no_token_or_a_rejected_one(self, tmp_path: Path, mini_github: MiniGitHub) -> None:  # noqa: F811
        """No token anywhere, or one GitHub rejects, is an error pointing at where tokens go."""
        config = write_config(tmp_path, f"forge: github\ngithub: {{api_url: '{mini_github.url}'}}\n")
        checks = by_name(await asyncio.to_thread(run_checks, str(config), credentials=[]))
        assert checks["github:token"].status == "error" and "GITHUB_TOKEN" in checks["github:token"].fix
        creds = tmp_path / "creds"
        creds.mkdir()
        (creds / "github_token").write_text("ghp_revoked\n")
        checks = by_name(await asyncio.to_thread(run_checks, str(config), credentials=[creds]))
        assert "rejected (401)" in checks["github:token"].detail and str(creds) in checks["github:token"].detail


class TestCommandProgram:
    @pytest.mark.parametrize(
        ("command", "program"),
        [
            pytest.param("python3 -m pytest -q", "python3", id="plain"),
            pytest.param("CI=1 LANG=C make test", "make", id="env-prefix"),
            pytest.param("./run_tests.sh --fast", "./run_tests.sh", id="relative"),
            pytest.param("cd app && npm test", None, id="shell"),
            pytest.param("echo 'unbalanced", None, id="unparsable"),
        ],
    )
    def test_finds_the_program(self, command: str, program: str | None) -> None:
        """The program a test command runs, skipping VAR=value; shell syntax is not second-guessed."""
        assert command_program(command) == program


def test_the_repo_relative_test_script_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`./run_tests.sh` is looked for in the repository, not the current directory."""
    monkeypatch.setenv("PATH", path_with(tmp_path / "bin", "git"))
    repo = git_repo(tmp_path / "calc")
    script = repo / "run_tests.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    config = write_config(tmp_path, f"repos:\n  - {{name: calc, path: {repo}, test_command: ./run_tests.sh}}\n")
    _, checks = doctor(config)
    assert by_name(checks)["repo:calc:tests"].status == "ok"
