"""`agentos issue` without a daemon (issue #21): the state directory every command shares (problem 1), the
hidden markers `issue show` leaves out and the hint a paused daemon deserves (problem 9)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

import agentos.config as config_module
from agentos.cli.main import app
from agentos.store import DaemonState, Store
from agentos.task_graph import TaskGraph


@pytest.fixture(autouse=True)
def _no_daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No daemon answers, and nothing of the machine (HOME, config, unit variables) leaks in."""
    for name in ("AGENTOS_CONFIG", "STATE_DIRECTORY", "RUNTIME_DIRECTORY", "XDG_RUNTIME_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AGENTOS_SOCKET", str(tmp_path / "no-daemon.sock"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)


def git_repo(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "README.md").write_text("calc\n")
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t"}
    env["GIT_COMMITTER_EMAIL"] = "t@t"
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    subprocess.run(["git", "-C", str(path), "add", "."], check=True)
    subprocess.run(["git", "-C", str(path), "commit", "-qm", "init"], check=True, env=env)
    return path


def write_config(path: Path, repo: Path, state_dir: Path | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["forge: local"] + ([f"state_dir: {state_dir}"] if state_dir else [])
    lines += ["repos:", "  - name: calc", f"    path: {repo}", "    test_command: 'true'"]
    path.write_text("\n".join(lines) + "\n")
    return path


def agentos(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


class TestOneStateDirectory:
    def test_a_system_config_files_issues_where_the_unit_reads_them(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With the system config (state_dir left at its default) and no $STATE_DIRECTORY, `issue new`,
        `issue list`, `tasks` and `doctor` all use the unit's state directory, not ~/.local/state."""
        etc, var = tmp_path / "etc" / "agentos", tmp_path / "var" / "lib" / "agentos"
        var.mkdir(parents=True)
        monkeypatch.setattr(config_module, "SYSTEM_CONFIG_DIR", etc)
        monkeypatch.setattr(config_module, "SYSTEM_STATE_DIR", var)
        config = str(write_config(etc / "config.yaml", git_repo(tmp_path / "calc")))

        code, out = agentos("issue", "new", "--title", "Fix add()", "--ready", "--config", config)
        assert code == 0, out

        assert (var / "local-forge" / "calc" / "issues" / "1.md").is_file()
        assert not (tmp_path / "home" / ".local" / "state" / "agentos").exists()
        code, out = agentos("issue", "list", "--json", "--config", config)
        assert code == 0 and [i["title"] for i in json.loads(out)] == ["Fix add()"]
        assert config_module.load_config(config)[0].state_path == var

    def test_state_directory_from_the_unit_is_where_issues_go(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        state = tmp_path / "unit-state"
        monkeypatch.setenv("STATE_DIRECTORY", str(state))
        config = str(write_config(tmp_path / "agentos.yaml", git_repo(tmp_path / "calc")))
        code, out = agentos("issue", "new", "--title", "Under the unit", "--config", config)
        assert code == 0, out
        assert (state / "local-forge" / "calc" / "issues" / "1.md").is_file()
        code, out = agentos("issue", "list", "--json", "--config", config)
        assert [i["title"] for i in json.loads(out)] == ["Under the unit"]


class TestIssueOutput:
    def test_show_leaves_out_the_hidden_markers(self, tmp_path: Path) -> None:
        config = str(write_config(tmp_path / "agentos.yaml", git_repo(tmp_path / "calc"), tmp_path / "state"))
        assert agentos("issue", "new", "--title", "T", "--body", "Do it.", "--config", config)[0] == 0
        assert agentos("issue", "comment", "1", "--body", "Use the stdlib", "--config", config)[0] == 0
        issue_file = (tmp_path / "state" / "local-forge" / "calc" / "issues" / "1.md").read_text()
        assert "<!-- agentos:key=" in issue_file
        code, out = agentos("issue", "show", "1", "--config", config)
        assert code == 0 and "Do it." in out and "Use the stdlib" in out
        assert "<!--" not in out and "agentos:key" not in out

    def test_a_ready_issue_while_paused_says_nothing_will_start(self, tmp_path: Path) -> None:
        state = tmp_path / "state"
        config = str(write_config(tmp_path / "agentos.yaml", git_repo(tmp_path / "calc"), state))
        assert agentos("issue", "new", "--title", "Running", "--ready", "--config", config)[1].count("paused") == 0
        with Store(state) as store:
            store.lock()
            store.load()
            store.snapshot(TaskGraph(), DaemonState(paused=True))
        code, out = agentos("issue", "new", "--title", "Waits", "--ready", "--config", config)
        assert code == 0 and "nothing starts until `agentos ctl resume`" in out
        code, out = agentos("issue", "new", "--title", "Not ready", "--config", config)
        assert code == 0 and "paused" not in out
        code, out = agentos("issue", "ready", "3", "--config", config)
        assert code == 0 and "nothing starts until `agentos ctl resume`" in out
