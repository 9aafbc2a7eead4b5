"""The pure parts of the process layer: the one scrubbed environment every child gets, and command results."""

from __future__ import annotations

import pytest

from agentos.proc import ENV_ALLOWLIST, CommandResult, scrubbed_env

DAEMON_ENV = {
    "PATH": "/usr/bin:/bin",
    "HOME": "/home/agentos",
    "LANG": "C.UTF-8",
    "TZ": "Europe/Berlin",
    "VIRTUAL_ENV": "/opt/agentos/venv",
    "GITHUB_TOKEN": "ghp_secret",
    "ANTHROPIC_API_KEY": "sk-ant-secret",
    "NOTIFY_SOCKET": "/run/systemd/notify",
}


class TestScrubbedEnv:
    def test_only_the_allowlist_passes(self) -> None:
        """The daemon's secrets never reach a child: it gets the allowlisted variables that are set, no more."""
        env = scrubbed_env(base=DAEMON_ENV)
        assert env == {
            "PATH": "/usr/bin:/bin",
            "HOME": "/home/agentos",
            "LANG": "C.UTF-8",
            "TZ": "Europe/Berlin",
            "VIRTUAL_ENV": "/opt/agentos/venv",
            "GIT_TERMINAL_PROMPT": "0",
        }
        assert set(env) <= {*ENV_ALLOWLIST, "GIT_TERMINAL_PROMPT"}

    def test_pass_env_names_what_else_gets_through(self) -> None:
        """pass_env copies the named variables that are set, and only those."""
        env = scrubbed_env(["ANTHROPIC_API_KEY", "UNSET_NAME"], base=DAEMON_ENV)
        assert env["ANTHROPIC_API_KEY"] == "sk-ant-secret"
        assert "GITHUB_TOKEN" not in env and "UNSET_NAME" not in env

    def test_extra_values_win_and_path_has_a_default(self) -> None:
        """Literal values are added over the daemon's; PATH has a default even when the daemon has none."""
        env = scrubbed_env(extra={"CI": "1", "LANG": "de_DE.UTF-8"}, base={"HOME": "/h"})
        assert env["CI"] == "1" and env["LANG"] == "de_DE.UTF-8" and env["PATH"]

    def test_systemd_variables_never_pass_even_when_listed(self) -> None:
        """NOTIFY_SOCKET, WATCHDOG_* and LISTEN_* are dropped even from pass_env and literal values."""
        env = scrubbed_env(["NOTIFY_SOCKET", "WATCHDOG_USEC"], {"LISTEN_PID": "1"}, DAEMON_ENV)
        assert not {"NOTIFY_SOCKET", "WATCHDOG_USEC", "LISTEN_PID"} & env.keys()

    def test_the_daemon_environment_is_the_default(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without a base, the daemon's own environment is read."""
        monkeypatch.setenv("HOME", "/home/u")
        monkeypatch.setenv("GITHUB_TOKEN", "ghp_x")
        env = scrubbed_env()
        assert env["HOME"] == "/home/u" and "GITHUB_TOKEN" not in env


class TestCommandResult:
    def test_ok_means_exit_zero_in_time(self) -> None:
        """A command is ok when it exited 0 and did not time out."""
        assert CommandResult(0, "", False, 0.1).ok
        assert not CommandResult(0, "", True, 0.1).ok
        assert not CommandResult(1, "", False, 0.1).ok
