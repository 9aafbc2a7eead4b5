"""The config file: precise one-line errors, defaults, secrets, and edits that keep comments."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agentos import configpath
from agentos.cli.probes import find_secret
from agentos.config import Config, ConfigError, load_config, parse_config, secret, set_value

GOOD = """\
# agentos config for the calc project
state_dir: /tmp/agentos-state   # where the graph lives
forge: local
max_parallel_workers: 2

repos:
  - name: calc                  # the repo
    path: /srv/repos/calc
    test_command: python3 -m pytest -q
    automation_mode: full       # flipped from Telegram

agents:
  claude:
    kind: claude
    pass_env: [ANTHROPIC_API_KEY]
  patcher:
    kind: command
    argv: [python3, /opt/patcher.py, "{prompt_file}"]

routing:
  fallbacks:
    implementation: [claude, patcher]
  max_attempts: 4
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "agentos.yaml")
    return info.value.problems


class TestLoad:
    def test_good_file_loads(self) -> None:
        """A complete file validates and keeps its values."""
        cfg = parse_config(GOOD)
        assert cfg.repo("calc").test_command == "python3 -m pytest -q"
        assert cfg.chain_for("implementation") == ["claude", "patcher"]
        assert cfg.chain_for("implementation", preferred="patcher") == ["patcher", "claude"]

    def test_no_file_means_local_defaults(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """With no config file anywhere the daemon runs on the local forge with no repos."""
        monkeypatch.chdir(tmp_path)
        monkeypatch.delenv("AGENTOS_CONFIG", raising=False)
        monkeypatch.setenv("HOME", str(tmp_path))
        cfg, path = load_config(None) if not Path("/etc/agentos/config.yaml").exists() else (Config(), None)
        assert path is None and cfg.forge == "local" and cfg.repos == []

    @pytest.mark.parametrize(
        ("mutate", "expected"),
        [
            pytest.param(
                lambda t: t.replace("    test_command: python3 -m pytest -q\n", ""),
                "agentos.yaml:7: repos[0].test_command: field required",
                id="missing-field",
            ),
            pytest.param(
                lambda t: t.replace("max_parallel_workers: 2", "max_parallel_workers: two"),
                "agentos.yaml:4: max_parallel_workers: Input should be a valid integer",
                id="wrong-type",
            ),
            pytest.param(
                lambda t: t.replace("max_parallel_workers: 2", "max_parallel_workers: 0"),
                "agentos.yaml:4: max_parallel_workers: Input should be greater than or equal to 1",
                id="out-of-range",
            ),
            pytest.param(
                lambda t: t.replace("forge: local", "forge: gitlab"),
                "agentos.yaml:3: forge: Input should be 'local' or 'github'",
                id="bad-enum",
            ),
            pytest.param(
                lambda t: t + "telegarm:\n  enabled: true\n",
                "agentos.yaml:24: telegarm: unknown key",
                id="typo-key",
            ),
            pytest.param(
                lambda t: t.replace("automation_mode: full", "automation_mode: yolo"),
                "agentos.yaml:10: repos[0].automation_mode: Input should be 'full' or 'dispatcher_only'",
                id="bad-mode",
            ),
            pytest.param(
                lambda t: t.replace('    argv: [python3, /opt/patcher.py, "{prompt_file}"]\n', ""),
                "agentos.yaml:16: agents.patcher: an agent of kind 'command' needs argv",
                id="command-without-argv",
            ),
            pytest.param(
                lambda t: t.replace("implementation: [claude, patcher]", "implementation: [claude, codex]"),
                "routing.fallbacks.implementation: unknown agent 'codex'",
                id="unknown-agent-in-chain",
            ),
            pytest.param(
                lambda t: t.replace("kind: claude", "kind: claude\n    env: {GITHUB_TOKEN: ghp_x}"),
                "agents.claude: env.GITHUB_TOKEN looks like a secret",
                id="secret-in-yaml",
            ),
            pytest.param(
                lambda t: t.replace(
                    "  - name: calc                  # the repo\n    path: /srv/repos/calc\n", "  - name: calc\n"
                ),
                "repo 'calc': the local forge needs a path",
                id="local-repo-without-path",
            ),
            pytest.param(lambda t: t + "repos: [\n", "agentos.yaml:", id="broken-yaml"),
            pytest.param(
                lambda t: "- just\n- a list\n", "agentos.yaml:1: the file must be a mapping", id="not-mapping"
            ),
            pytest.param(
                lambda t: t.replace("  max_attempts: 4", "  max_attempts: 4\njobs:\n  dispatch: {cron: '* *'}"),
                "jobs.dispatch: cron '* *' must have 5 fields",
                id="bad-cron",
            ),
            pytest.param(
                lambda t: t.replace("forge: local", "forge: local\ntimezone: Europe/Berln"),
                "agentos.yaml:4: timezone: unknown time zone 'Europe/Berln' (an IANA name such as UTC or Europe/",
                id="unknown-time-zone",
            ),
            pytest.param(
                lambda t: t.replace("forge: local", "forge: local\ntimezone: ../../etc/passwd"),
                "agentos.yaml:4: timezone: unknown time zone '../../etc/passwd'",
                id="time-zone-path",
            ),
        ],
    )
    def test_each_mistake_gives_one_precise_line(self, mutate: object, expected: str) -> None:
        """Each kind of mistake is reported as file:line: key: problem."""
        found = problems(mutate(GOOD))  # type: ignore[operator]
        assert any(expected in p for p in found), found
        assert all("\n" not in p for p in found)


class TestTimezone:
    def test_the_zone_is_utc_unless_set(self) -> None:
        """`timezone` defaults to UTC and is read as an IANA zone."""
        assert str(parse_config(GOOD).zone) == "UTC"
        cfg = parse_config(GOOD.replace("forge: local", "forge: local\ntimezone: Europe/Berlin"))
        assert cfg.timezone == "Europe/Berlin" and cfg.zone.key == "Europe/Berlin"


class TestSecrets:
    def test_env_wins(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A secret is read from its environment variable."""
        monkeypatch.setenv("GITHUB_TOKEN", "ghp_fromenv")
        assert secret("github_token") == "ghp_fromenv"

    def test_doctor_and_daemon_read_a_token_from_the_same_folder(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With a token stored in several credential folders, `agentos doctor` checks the one the daemon uses:
        systemd's first, then the user's, then the system's."""
        monkeypatch.delenv("GITHUB_TOKEN", raising=False)
        monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
        system = tmp_path / "etc"
        monkeypatch.setattr(configpath, "SYSTEM_CREDENTIALS_DIR", system)
        folders = {
            "system": system,
            "user": tmp_path / "home" / ".config" / "agentos" / "credentials",
            "systemd": tmp_path / "systemd",
        }
        for where, folder in folders.items():
            folder.mkdir(parents=True)
            (folder / "github_token").write_text(f"ghp_{where}\n")

        def both() -> tuple[str | None, str | None]:
            return secret("github_token"), find_secret("github_token", "GITHUB_TOKEN", dict(os.environ))[0]

        assert both() == ("ghp_user", "ghp_user")
        monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(folders["systemd"]))
        assert both() == ("ghp_systemd", "ghp_systemd")
        monkeypatch.delenv("CREDENTIALS_DIRECTORY")
        (folders["user"] / "github_token").unlink()
        assert both() == ("ghp_system", "ghp_system")

    def test_credentials_directory(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """systemd LoadCredential files are read when the variable is not set."""
        monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
        (tmp_path / "telegram_bot_token").write_text("123:abc\n")
        monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
        assert secret("telegram_bot_token") == "123:abc"


class TestSetValue:
    def test_round_trip_keeps_comments_byte_for_byte(self, tmp_path: Path) -> None:
        """Editing one value changes only that value; comments and key order stay."""
        path = tmp_path / "agentos.yaml"
        path.write_text(GOOD)
        set_value(path, "repos.calc.automation_mode", "dispatcher_only")
        after = path.read_text()
        assert after == GOOD.replace("automation_mode: full      ", "automation_mode: dispatcher_only")

    def test_by_index_and_top_level(self, tmp_path: Path) -> None:
        """Keys may use an index or a top-level name; values are typed like YAML."""
        path = tmp_path / "agentos.yaml"
        path.write_text(GOOD)
        cfg = set_value(path, "max_parallel_workers", "5")
        assert cfg.max_parallel_workers == 5
        cfg = set_value(path, "repos[0].base_branch", "trunk")
        assert cfg.repos[0].base_branch == "trunk"
        assert "# where the graph lives" in path.read_text()

    def test_invalid_edit_changes_nothing(self, tmp_path: Path) -> None:
        """An edit that would make the file invalid is refused and the file is untouched."""
        path = tmp_path / "agentos.yaml"
        path.write_text(GOOD)
        with pytest.raises(ConfigError, match="max_parallel_workers"):
            set_value(path, "max_parallel_workers", "-1")
        assert path.read_text() == GOOD


class TestConfigSetCommand:
    """Issue #21, problem 5: `agentos config set` names the key in one line, adds missing keys, adds agents."""

    def run(self, path: Path, *args: str) -> tuple[int, str]:
        from typer.testing import CliRunner

        from agentos.cli.main import app

        result = CliRunner().invoke(app, ["config", "set", *args, "--config", str(path)])
        assert not isinstance(result.exception, KeyError | AttributeError | TypeError), result.exception
        return result.exit_code, result.output

    def test_a_typo_is_one_line_naming_the_key_and_a_close_match(self, tmp_path: Path) -> None:
        path = tmp_path / "agentos.yaml"
        path.write_text(GOOD)
        code, out = self.run(path, "max_parallel_worker", "3")
        assert code == 1 and "Traceback" not in out
        [line] = out.strip().splitlines()
        assert "max_parallel_worker:" in line and "did you mean max_parallel_workers?" in line
        assert path.read_text() == GOOD

    def test_a_bad_value_for_a_key_not_yet_in_the_file_names_file_line_and_key(self, tmp_path: Path) -> None:
        path = tmp_path / "agentos.yaml"
        path.write_text("forge: local\nlimits:\n  max_runtime_minutes: 30\n")
        code, out = self.run(path, "limits.idle_timeout_minutes", "soon")
        assert code == 1 and "Traceback" not in out
        [line] = out.strip().splitlines()
        assert line.startswith(f"{path}:2: limits.idle_timeout_minutes: ")

    def test_a_missing_key_is_added_keeping_comments(self, tmp_path: Path) -> None:
        path = tmp_path / "agentos.yaml"
        path.write_text(GOOD)
        code, out = self.run(path, "limits.idle_timeout_minutes", "7")
        assert code == 0, out
        assert load_config(path)[0].limits.idle_timeout_minutes == 7
        assert "# where the graph lives" in path.read_text()

    def test_a_command_agent_is_added_with_its_argv_in_one_edit(self, tmp_path: Path) -> None:
        path = tmp_path / "agentos.yaml"
        path.write_text(GOOD)
        argv = '["python3", "/opt/p.py", "{prompt_file}"]'
        code, out = self.run(path, "agents.fixer.kind", "command", "agents.fixer.argv", argv)
        assert code == 0, out
        agent = load_config(path)[0].agents["fixer"]
        assert agent.kind == "command" and agent.argv == ["python3", "/opt/p.py", "{prompt_file}"]

    def test_an_agent_without_its_argv_is_refused_naming_it(self, tmp_path: Path) -> None:
        path = tmp_path / "agentos.yaml"
        path.write_text(GOOD)
        code, out = self.run(path, "agents.fixer.kind", "command")
        assert code == 1 and "agents.fixer" in out and "argv" in out and len(out.strip().splitlines()) == 1
        assert path.read_text() == GOOD

    def test_a_key_under_a_plain_value_is_one_line(self, tmp_path: Path) -> None:
        path = tmp_path / "agentos.yaml"
        path.write_text(GOOD)
        code, out = self.run(path, "max_parallel_workers.x", "1")
        assert code == 1 and "max_parallel_workers holds a value" in out


def test_validate_counts_in_words(tmp_path: Path) -> None:
    """Issue #21, problem 9: one repo is "1 repo", not "1 repos"."""
    import subprocess

    from typer.testing import CliRunner

    from agentos.cli.main import app

    repo = tmp_path / "calc"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    path = tmp_path / "agentos.yaml"
    path.write_text(GOOD.replace("/srv/repos/calc", str(repo)))
    result = CliRunner().invoke(app, ["config", "validate", str(path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "(1 repo, 2 agents, forge local)" in result.output


class TestValidateRepoPaths:
    """Issue #21, problem 6: a repo path that cannot be worked on fails `config validate`, one line each."""

    def validate(self, tmp_path: Path, repo_path: Path) -> tuple[int, str]:
        from typer.testing import CliRunner

        from agentos.cli.main import app

        path = tmp_path / "agentos.yaml"
        path.write_text(GOOD.replace("/srv/repos/calc", str(repo_path)))
        result = CliRunner().invoke(app, ["config", "validate", str(path)], env={"COLUMNS": "200"})
        return result.exit_code, result.output

    def test_a_missing_path(self, tmp_path: Path) -> None:
        code, out = self.validate(tmp_path, tmp_path / "nowhere")
        assert code == 1
        assert out.strip().splitlines() == [
            f"{tmp_path / 'agentos.yaml'}: repos.calc.path: {tmp_path / 'nowhere'} does not exist"
        ]

    def test_a_folder_that_is_not_a_git_repository(self, tmp_path: Path) -> None:
        plain = tmp_path / "plain"
        plain.mkdir()
        code, out = self.validate(tmp_path, plain)
        assert code == 1 and f"repos.calc.path: {plain} is not a git repository" in out

    def test_a_folder_inside_a_repository(self, tmp_path: Path) -> None:
        import subprocess

        subprocess.run(["git", "init", "-q", str(tmp_path / "calc")], check=True)
        (tmp_path / "calc" / "src").mkdir()
        code, out = self.validate(tmp_path, tmp_path / "calc" / "src")
        assert code == 1 and "inside the git repository" in out and str(tmp_path / "calc") in out


class TestStatePath:
    """Issue #21, problem 1: one state directory for the daemon and every command, from the config alone."""

    def test_the_system_config_uses_the_units_state_directory(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        import agentos.config as config_module

        etc, var = tmp_path / "etc", tmp_path / "var"
        etc.mkdir()
        var.mkdir()
        monkeypatch.setattr(config_module, "SYSTEM_CONFIG_DIR", etc)
        monkeypatch.setattr(config_module, "SYSTEM_STATE_DIR", var)
        monkeypatch.delenv("STATE_DIRECTORY", raising=False)
        (etc / "config.yaml").write_text("forge: local\n")
        (tmp_path / "mine.yaml").write_text("forge: local\n")
        (etc / "explicit.yaml").write_text(f"state_dir: {tmp_path / 'own'}\n")

        assert load_config(etc / "config.yaml")[0].state_path == var
        assert load_config(tmp_path / "mine.yaml")[0].state_path == Path("~/.local/state/agentos").expanduser()
        assert load_config(etc / "explicit.yaml")[0].state_path == tmp_path / "own"
        monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "unit"))
        assert load_config(etc / "config.yaml")[0].state_path == tmp_path / "unit"


def test_secrets_read_are_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    """A secret read from the environment is redacted from every outbound text afterwards."""
    from agentos.redact import redact

    monkeypatch.setenv("SOME_API_TOKEN", "s3cr3t-value-123456")
    assert secret("some_api_token") == "s3cr3t-value-123456"
    assert "s3cr3t-value-123456" not in redact("leaked s3cr3t-value-123456 here")


def test_set_value_keeps_the_file_mode(tmp_path: Path) -> None:
    """An edit keeps the file readable by whoever could read it before (the service user)."""
    path = tmp_path / "agentos.yaml"
    path.write_text(GOOD)
    path.chmod(0o644)
    set_value(path, "max_parallel_workers", "3")
    assert path.stat().st_mode & 0o777 == 0o644
