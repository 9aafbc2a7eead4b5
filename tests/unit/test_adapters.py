"""Adapters: the command line and environment per agent kind (what the output means: test_report.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from agentos.agents.adapters import (
    GEMINI_READ_ONLY_POLICY,
    AgentNotInstalled,
    Invocation,
    build_invocation,
)
from agentos.agents.runner import scrubbed_env
from agentos.config import AgentConfig

FAKES = Path(__file__).resolve().parents[1] / "fakes" / "agents"
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)

BASE_ENV = {
    "PATH": f"{FAKES}:/usr/bin:/bin",
    "HOME": "/home/agentos",
    "LANG": "C.UTF-8",
    "USER": "agentos",
    "ANTHROPIC_API_KEY": "sk-ant-secret",
    "AGENTOS_TELEGRAM_TOKEN": "123:telegram-secret",
    "GH_TOKEN": "ghp_secret",
    "NOTIFY_SOCKET": "/run/systemd/notify",
    "WATCHDOG_USEC": "30000000",
    "LISTEN_FDS": "1",
}


def invoke(cfg: AgentConfig, *, euid: int = 1000, tmp: Path = Path("/tmp"), name: str = "a") -> Invocation:
    return build_invocation(
        name,
        cfg,
        prompt="Fix the bug ✓",
        prompt_file=tmp / "prompt.md",
        worktree=tmp,
        task_id="t-42",
        base_env=BASE_ENV,
        euid=euid,
    )


# ---------------------------------------------------------------- environment


class TestScrubbedEnv:
    def test_only_the_allowlist_and_listed_names_pass(self) -> None:
        """Only PATH/HOME/LANG/… and names in pass_env reach the agent; GIT_TERMINAL_PROMPT is always 0."""
        env = scrubbed_env(["ANTHROPIC_API_KEY", "NOT_SET"], {"FOO": "bar"}, BASE_ENV)
        assert env == {
            "PATH": BASE_ENV["PATH"],
            "HOME": "/home/agentos",
            "LANG": "C.UTF-8",
            "USER": "agentos",
            "ANTHROPIC_API_KEY": "sk-ant-secret",
            "FOO": "bar",
            "GIT_TERMINAL_PROMPT": "0",
        }

    def test_systemd_variables_never_pass_even_when_listed(self) -> None:
        """NOTIFY_SOCKET, WATCHDOG_* and LISTEN_* are dropped even from pass_env and literal env."""
        env = scrubbed_env(["NOTIFY_SOCKET", "WATCHDOG_USEC", "LISTEN_FDS"], {"LISTEN_PID": "1"}, BASE_ENV)
        assert not {"NOTIFY_SOCKET", "WATCHDOG_USEC", "LISTEN_FDS", "LISTEN_PID"} & env.keys()

    def test_literal_env_overrides_the_daemon(self) -> None:
        """A value set in the agent's config wins over the daemon's."""
        assert scrubbed_env([], {"LANG": "de_DE.UTF-8"}, BASE_ENV)["LANG"] == "de_DE.UTF-8"


# ---------------------------------------------------------------- command lines


class TestBuildInvocation:
    def test_claude_command_line(self) -> None:
        """Claude Code runs in print mode with JSON output, permissions bypassed, the prompt on stdin."""
        inv = invoke(AgentConfig(kind="claude"))
        assert inv.argv == [
            str(FAKES / "claude"),
            "-p",
            "--output-format",
            "json",
            "--dangerously-skip-permissions",
        ]
        assert inv.stdin == "Fix the bug ✓".encode()

    def test_claude_model_and_extra_args(self) -> None:
        """The model goes in --model and extra_args follow the built-in flags."""
        inv = invoke(AgentConfig(kind="claude", model="opus", extra_args=["--max-turns", "30"]))
        assert inv.argv[-4:] == ["--model", "opus", "--max-turns", "30"]

    def test_claude_as_root_gets_is_sandbox(self) -> None:
        """As root, claude gets IS_SANDBOX=1 (it refuses --dangerously-skip-permissions otherwise)."""
        assert invoke(AgentConfig(kind="claude"), euid=0).env["IS_SANDBOX"] == "1"

    def test_claude_as_a_user_gets_no_is_sandbox(self) -> None:
        """Not root: the guard does not apply and IS_SANDBOX is not set."""
        assert "IS_SANDBOX" not in invoke(AgentConfig(kind="claude"), euid=1000).env

    def test_is_sandbox_is_claude_only(self) -> None:
        """Other kinds never get IS_SANDBOX, even as root."""
        assert "IS_SANDBOX" not in invoke(AgentConfig(kind="codex"), euid=0).env

    def test_codex_command_line(self) -> None:
        """codex exec bypasses approvals and sandbox, emits JSON events and reads the prompt from stdin (-)."""
        inv = invoke(AgentConfig(kind="codex", model="gpt-5-codex", extra_args=["-c", "a=b"]))
        assert inv.argv == [
            str(FAKES / "codex"),
            "exec",
            "--dangerously-bypass-approvals-and-sandbox",
            "--skip-git-repo-check",
            "--json",
            "-m",
            "gpt-5-codex",
            "-c",
            "a=b",
            "-",
        ]
        assert inv.stdin == "Fix the bug ✓".encode()

    def test_gemini_command_line(self) -> None:
        """gemini runs headless (-p "") with JSON output and yolo approvals; the prompt is on stdin."""
        inv = invoke(AgentConfig(kind="gemini", model="gemini-2.5-pro"))
        assert inv.argv == [
            str(FAKES / "gemini"),
            "-p",
            "",
            "-m",
            "gemini-2.5-pro",
            "--output-format",
            "json",
            "--approval-mode",
            "yolo",
        ]

    @pytest.mark.parametrize(
        ("kind", "switch", "bypass"),
        [
            pytest.param("claude", ["--tools", ""], "--dangerously-skip-permissions", id="claude"),
            pytest.param("codex", ["--sandbox", "read-only"], "--dangerously-bypass-approvals-and-sandbox", id="codex"),
            pytest.param(
                "gemini",
                ["--approval-mode", "plan", "--policy", str(GEMINI_READ_ONLY_POLICY)],
                "yolo",
                id="gemini",
            ),
        ],
    )
    def test_read_only_uses_the_clis_own_switch(self, kind: str, switch: list[str], bypass: str) -> None:
        """A one-shot question runs with the CLI's read-only switch and never its permission bypass."""
        cfg = AgentConfig.model_validate({"kind": kind, "model": "m1"})
        inv = build_invocation(
            "a",
            cfg,
            prompt="q",
            prompt_file=Path("/tmp/p.md"),
            worktree=Path("/tmp"),
            task_id="t",
            base_env=BASE_ENV,
            euid=0,
            read_only=True,
        )
        at = inv.argv.index(switch[0])
        assert inv.argv[at : at + len(switch)] == switch and bypass not in inv.argv
        assert "m1" in inv.argv and "IS_SANDBOX" not in inv.env and inv.stdin == b"q"

    def test_read_only_leaves_a_command_agents_argv_alone(self) -> None:
        """A `command` agent's argv is the user's own: read_only adds nothing to it."""
        cfg = AgentConfig(kind="command", argv=["/bin/echo", "{prompt_file}"])
        inv = build_invocation(
            "a",
            cfg,
            prompt="q",
            prompt_file=Path("/tmp/p.md"),
            worktree=Path("/tmp"),
            task_id="t",
            base_env=BASE_ENV,
            read_only=True,
        )
        assert inv.argv == ["/bin/echo", "/tmp/p.md"]

    def test_gemini_trusts_the_worktree(self) -> None:
        """Gemini CLI refuses headless runs in an untrusted (new) folder, so the worktree is trusted by env."""
        assert invoke(AgentConfig(kind="gemini")).env["GEMINI_CLI_TRUST_WORKSPACE"] == "true"
        assert "GEMINI_CLI_TRUST_WORKSPACE" not in invoke(AgentConfig(kind="claude")).env

    def test_secrets_pass_only_when_listed(self) -> None:
        """The daemon's tokens are not in the agent's environment unless its pass_env names them."""
        env = invoke(AgentConfig(kind="claude")).env
        assert not {"ANTHROPIC_API_KEY", "AGENTOS_TELEGRAM_TOKEN", "GH_TOKEN", "NOTIFY_SOCKET"} & env.keys()
        env = invoke(AgentConfig(kind="claude", pass_env=["ANTHROPIC_API_KEY"])).env
        assert env["ANTHROPIC_API_KEY"] == "sk-ant-secret"
        assert "GH_TOKEN" not in env

    def test_absolute_binary(self, tmp_path: Path) -> None:
        """An absolute binary path is used as is."""
        binary = tmp_path / "my-claude"
        binary.write_text("#!/bin/sh\n")
        binary.chmod(0o755)
        assert invoke(AgentConfig(kind="claude", binary=str(binary))).argv[0] == str(binary)

    @pytest.mark.parametrize(
        ("kind", "hint"),
        [
            ("claude", "npm install -g @anthropic-ai/claude-code"),
            ("codex", "npm install -g @openai/codex"),
            ("gemini", "npm install -g @google/gemini-cli"),
        ],
    )
    def test_missing_binary_names_the_install_command(self, kind: str, hint: str) -> None:
        """A CLI that is not on the agent's PATH raises AgentNotInstalled with the npm command."""
        with pytest.raises(AgentNotInstalled) as err:
            invoke(AgentConfig(kind=kind, binary="no-such-cli-anywhere"), name="main")  # type: ignore[arg-type]
        assert err.value.hint == hint
        assert hint in str(err.value)
        assert err.value.agent == "main"

    def test_missing_absolute_binary(self, tmp_path: Path) -> None:
        """An absolute path that does not exist is not installed either."""
        with pytest.raises(AgentNotInstalled):
            invoke(AgentConfig(kind="codex", binary=str(tmp_path / "codex")))

    def test_command_template_is_filled(self, tmp_path: Path) -> None:
        """{prompt_file}, {worktree} and {task_id} are substituted; other braces are left alone."""
        cfg = AgentConfig(
            kind="command",
            argv=["command_agent.py", "{prompt_file}", "--task-id", "{task_id}", "--cfg={worktree}/{x}"],
        )
        inv = invoke(cfg, tmp=tmp_path)
        assert inv.argv == [
            str(FAKES / "command_agent.py"),
            str(tmp_path / "prompt.md"),
            "--task-id",
            "t-42",
            f"--cfg={tmp_path}/{{x}}",
        ]
        assert inv.stdin == "Fix the bug ✓".encode()

    def test_command_prompt_via_file_sends_no_stdin(self) -> None:
        """prompt_via: file means the agent reads the file; nothing is written to its stdin."""
        cfg = AgentConfig(kind="command", argv=["command_agent.py", "{prompt_file}"], prompt_via="file")
        assert invoke(cfg).stdin is None

    def test_command_relative_program_is_found_in_the_worktree(self, tmp_path: Path) -> None:
        """A relative path with a slash is looked up in the worktree (where it will run)."""
        script = tmp_path / "tools" / "agent.sh"
        script.parent.mkdir()
        script.write_text("#!/bin/sh\n")
        script.chmod(0o755)
        inv = invoke(AgentConfig(kind="command", argv=["tools/agent.sh"]), tmp=tmp_path)
        assert inv.argv == [str(script)]

    def test_command_missing_program(self) -> None:
        """A command agent whose program is missing points at its argv in the config."""
        with pytest.raises(AgentNotInstalled, match=r"agents\.aider\.argv\[0\]"):
            invoke(AgentConfig(kind="command", argv=["aider-not-installed"]), name="aider")

    def test_builtin_with_prompt_via_file_points_at_the_file(self) -> None:
        """A built-in CLI with prompt_via: file gets a one-line pointer to the prompt file on stdin."""
        inv = invoke(AgentConfig(kind="claude", prompt_via="file"))
        assert inv.stdin is not None
        assert b"/tmp/prompt.md" in inv.stdin

    def test_gemini_with_prompt_via_file_may_read_the_run_dir(self, tmp_path: Path) -> None:
        """Gemini CLI's read_file refuses paths outside its workspace (the worktree): with prompt_via: file the
        prompt's directory is added to it; with stdin the workspace stays the worktree alone."""
        runs = tmp_path / "runs" / "t-42" / "1"

        def argv(cfg: AgentConfig) -> list[str]:
            return build_invocation(
                "g",
                cfg,
                prompt="Fix",
                prompt_file=runs / "prompt.md",
                worktree=tmp_path,
                task_id="t",
                base_env=BASE_ENV,
            ).argv

        by_file = argv(AgentConfig(kind="gemini", prompt_via="file", extra_args=["--debug"]))
        assert by_file[-3:] == ["--include-directories", str(runs), "--debug"]
        assert "--include-directories" not in argv(AgentConfig(kind="gemini"))
