"""`agentos init`: scripted and interactive runs, merging into an existing config, GitHub, Telegram, systemd."""

from __future__ import annotations

import asyncio
import os
import pty
import select
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentos.cli._common import console
from agentos.cli.init import RepoPlan, parse_repo_spec
from agentos.cli.main import app
from agentos.config import load_config, secret
from tests.fakes.github_server import FakeGitHub, app_key_pair, fake_github  # noqa: F401
from tests.fakes.telegram_server import FakeTelegram, fake_telegram  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
AGENTOS_LABELS = ["agentos:ready", "agentos:running", "agentos:blocked", "agentos:review"]


# ---------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def _clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No token, config or systemd variable of the machine leaks in; HOME and the cwd are the test's own."""
    for name in (
        "GITHUB_TOKEN",
        "GITHUB_APP_KEY",
        "TELEGRAM_BOT_TOKEN",
        "AGENTOS_CONFIG",
        "CREDENTIALS_DIRECTORY",
        "STATE_DIRECTORY",
        "AGENTOS_SOCKET",
        "TZ",
        "STATUS_PAGE_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    old = console._width
    console.width = 200
    yield
    console._width = old


def git_repo(path: Path, *files: str) -> Path:
    path.mkdir(parents=True)
    for name in files or ("pyproject.toml",):
        (path / name).write_text("[project]\nname = 'x'\n" if name == "pyproject.toml" else "test:\n\ttrue\n")
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t"}
    env["GIT_COMMITTER_EMAIL"] = "t@t"
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    subprocess.run(["git", "-C", str(path), "add", "."], check=True)
    subprocess.run(["git", "-C", str(path), "commit", "-qm", "init"], check=True, env=env)
    return path


class Setup:
    """Paths of one test's install: config, unit dir, credentials dir."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.config = root / "etc" / "config.yaml"
        self.units = root / "units"
        self.creds = root / "creds"

    def args(self, *extra: str) -> list[str]:
        return [
            "init",
            "--config",
            str(self.config),
            "--unit-dir",
            str(self.units),
            "--credentials-dir",
            str(self.creds),
            "--unit-file",
            str(self.unit_file),
            *extra,
        ]

    @property
    def unit_file(self) -> Path:
        unit = self.root / "agentos.service"
        if not unit.exists():
            unit.write_text("[Service]\nType=notify\nExecStart=/opt/agentos/venv/bin/agentos run\n")
        return unit

    def run(self, *extra: str, input: str | None = None) -> tuple[int, str]:
        result = CliRunner().invoke(app, self.args(*extra), input=input)
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, result.output

    def backups(self) -> list[Path]:
        return sorted(self.config.parent.glob("config.yaml.bak-*"))


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    return Setup(tmp_path)


# ---------------------------------------------------------------- tests


class TestScriptedInit:
    def test_writes_a_valid_commented_config(self, setup: Setup, tmp_path: Path) -> None:
        """`init --yes` with flags writes a config that validates, commented, in dispatcher_only mode."""
        repo = git_repo(tmp_path / "calc")
        code, out = setup.run("--yes", "--repo", f"calc:{repo}:python3 -m pytest -q", "--agent", "claude")
        assert code == 0, out
        cfg, _ = load_config(setup.config)
        assert [r.name for r in cfg.repos] == ["calc"]
        assert cfg.repos[0].automation_mode == "dispatcher_only" and cfg.repos[0].path == str(repo)
        assert cfg.agents["claude"].kind == "claude" and cfg.routing.default == ["claude"]
        assert cfg.forge == "local" and cfg.telegram.enabled is False
        text = setup.config.read_text()
        assert "# Where issues and pull requests live" in text and "# Secrets" in text
        assert "systemctl daemon-reload && systemctl enable --now agentos" in out

    def test_guesses_name_and_test_command_from_a_path(self, setup: Setup, tmp_path: Path) -> None:
        """A bare path names the repo after its directory and takes the test command its files suggest."""
        repo = git_repo(tmp_path / "web app", "Makefile")
        code, out = setup.run("--yes", "--repo", str(repo), "--agent", "codex", "--automation-mode", "full")
        assert code == 0, out
        cfg, _ = load_config(setup.config)
        assert cfg.repos[0].name == "web-app" and cfg.repos[0].test_command == "make test"
        assert cfg.repos[0].automation_mode == "full" and cfg.agents["codex"].pass_env == ["OPENAI_API_KEY"]

    def test_a_repo_without_main_keeps_its_own_base_branch(self, setup: Setup, tmp_path: Path) -> None:
        """A repository whose branch is `master` (and has no `main`) gets base_branch: master."""
        repo = git_repo(tmp_path / "old")
        subprocess.run(["git", "-C", str(repo), "branch", "-m", "main", "master"], check=True)
        code, out = setup.run("--yes", "--repo", f"old:{repo}:make test")
        assert code == 0, out
        assert load_config(setup.config)[0].repos[0].base_branch == "master"

    def test_a_repo_without_any_test_command_is_refused(self, setup: Setup, tmp_path: Path) -> None:
        """Nothing is written when a new repo has no test command and none can be guessed."""
        bare = tmp_path / "bare"
        bare.mkdir()
        code, out = setup.run("--yes", "--repo", f"bare:{bare}")
        assert code == 1 and "test command" in out and not setup.config.exists()

    def test_rerun_with_the_same_flags_changes_nothing(self, setup: Setup, tmp_path: Path) -> None:
        """Running it again is safe: same config, no duplicate repo, no backup, unit unchanged."""
        repo = git_repo(tmp_path / "calc")
        flags = ("--yes", "--repo", f"calc:{repo}:pytest -q", "--agent", "claude")
        assert setup.run(*flags)[0] == 0
        first = setup.config.read_text()
        code, out = setup.run(*flags)
        assert code == 0, out
        assert setup.config.read_text() == first and setup.backups() == []
        assert "config unchanged" in out and "unit unchanged" in out
        assert [r.name for r in load_config(setup.config)[0].repos] == ["calc"]

    def test_rerun_backs_up_and_keeps_the_operators_edits_and_comments(self, setup: Setup, tmp_path: Path) -> None:
        """A re-run that adds a repo backs the file up first and keeps hand edits, comments and the repo."""
        calc, web_repo = git_repo(tmp_path / "calc"), git_repo(tmp_path / "web")
        assert setup.run("--yes", "--repo", f"calc:{calc}:pytest -q", "--agent", "claude")[0] == 0
        edited = setup.config.read_text().replace(
            "max_parallel_workers: 2", "max_parallel_workers: 5   # the box has 16 cores"
        )
        edited = edited.replace("    automation_mode: dispatcher_only", "    automation_mode: full", 1)
        edited += "# a note of my own at the end\n"
        setup.config.write_text(edited)
        code, out = setup.run("--yes", "--repo", f"calc:{calc}", "--repo", f"web:{web_repo}:npm test")
        assert code == 0, out
        [backup] = setup.backups()
        assert backup.read_text() == edited
        text = setup.config.read_text()
        assert "max_parallel_workers: 5   # the box has 16 cores" in text and "# a note of my own" in text
        cfg, _ = load_config(setup.config)
        assert [r.name for r in cfg.repos] == ["calc", "web"]
        assert cfg.repos[0].automation_mode == "full", "an existing repo keeps its mode unless a flag says otherwise"
        assert cfg.repos[1].automation_mode == "dispatcher_only" and cfg.max_parallel_workers == 5

    def test_merges_into_the_example_config_keeping_every_key_and_comment(self, setup: Setup, tmp_path: Path) -> None:
        """Merging into config/agentos.example.yaml loses none of its comments or keys."""
        example = (ROOT / "config" / "agentos.example.yaml").read_text()
        setup.config.parent.mkdir(parents=True)
        setup.config.write_text(example)
        before, _ = load_config(setup.config)
        repo = git_repo(tmp_path / "api")
        code, out = setup.run("--yes", "--repo", f"api:{repo}:pytest", "--agent", "codex", "--telegram-chat-id", "77")
        assert code == 0, out
        text = setup.config.read_text()
        comments = [line.split("#", 1)[1].strip() for line in example.splitlines() if "#" in line]
        missing = [c for c in comments if c and c not in text]
        assert missing == []
        after, _ = load_config(setup.config)
        assert after.routing.fallbacks == before.routing.fallbacks and after.limits == before.limits
        assert set(after.agents) == {"claude", "patcher", "codex"}
        assert [r.name for r in after.repos] == ["calc", "api"]
        assert after.routing.default == ["claude", "codex"]
        assert after.telegram.enabled and after.telegram.allowed_chat_ids == [77]
        assert len(setup.backups()) == 1

    def test_installs_the_unit_with_a_drop_in_for_config_and_credentials(self, setup: Setup, tmp_path: Path) -> None:
        """The unit is copied as is; the drop-in names the config, loads stored tokens and fixes ExecStart."""
        code, out = setup.run("--yes", "--telegram-chat-id", "5", "--telegram-token", "123:abc")
        assert code == 0, out
        assert (setup.units / "agentos.service").read_text() == setup.unit_file.read_text()
        drop_in = (setup.units / "agentos.service.d" / "10-agentos-init.conf").read_text()
        assert f"Environment=AGENTOS_CONFIG={setup.config}" in drop_in
        assert f"LoadCredential=telegram_bot_token:{setup.creds / 'telegram_bot_token'}" in drop_in
        assert "ExecStart=\n" in drop_in, "the unit's /opt/agentos program does not exist here"

    def test_the_drop_in_opens_the_repos_and_every_credential_file_exists(self, setup: Setup, tmp_path: Path) -> None:
        """A system unit gets ReadWritePaths for the repos, and an empty file for each token not configured."""
        repo = git_repo(tmp_path / "calc")
        code, out = setup.run("--yes", "--repo", f"calc:{repo}:pytest")
        assert code == 0, out
        drop_in = (setup.units / "agentos.service.d" / "10-agentos-init.conf").read_text()
        assert f"ReadWritePaths=-{repo}" in drop_in and "\nLoadCredential=\n" in drop_in
        for name in ("github_token", "telegram_bot_token"):
            assert (setup.creds / name).read_text() == "", "LoadCredential= fails a start on a missing file"
            assert stat.S_IMODE((setup.creds / name).stat().st_mode) == 0o600
        assert stat.S_IMODE(setup.creds.stat().st_mode) == 0o700

    @pytest.mark.parametrize("user", [False, True], ids=["system", "user"])
    def test_installs_the_shipped_unit(self, setup: Setup, user: bool) -> None:
        """Without --unit-file the unit shipped in the package (the user variant for --user) is installed as is:
        the hardened Type=notify unit with its watchdog, from a wheel as from a checkout."""
        from importlib.resources import files

        shipped = files("agentos.deploy") / "systemd" / ("agentos-user.service" if user else "agentos.service")
        assert "WatchdogSec=" in shipped.read_text() and "RestartPreventExitStatus=78" in shipped.read_text()
        args = ["init", "--yes", "--config", str(setup.config), "--unit-dir", str(setup.units)]
        args += ["--credentials-dir", str(setup.creds)] + (["--user"] if user else [])
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        assert (setup.units / "agentos.service").read_text() == shipped.read_text()
        drop_in = setup.units / "agentos.service.d" / "10-agentos-init.conf"
        assert drop_in.is_file()
        analyze = shutil.which("systemd-analyze")
        if analyze and not user:  # the unit with its drop-in, as systemd reads them
            env = {**os.environ, "SYSTEMD_UNIT_PATH": f"{setup.units}:"}
            res = subprocess.run([analyze, "verify", "agentos.service"], capture_output=True, text=True, env=env)
            assert drop_in.name not in res.stderr, res.stderr

    def test_a_repo_under_home_is_made_reachable_keeping_home_read_only(self) -> None:
        """ProtectHome=yes would hide a repo in /home: the drop-in relaxes it to read-only and lists the repo."""
        from agentos.cli.init_systemd import drop_in

        common = {"config_path": Path("/etc/agentos/config.yaml"), "creds": Path("/c"), "exec_start": None}
        home = drop_in(**common, writable=["/home/alice/calc", "/srv/web"])
        assert "ReadWritePaths=-/home/alice/calc" in home and "\nProtectHome=read-only\n" in home
        assert "ProtectHome" not in drop_in(**common, writable=["/srv/web"])
        assert "ProtectHome" not in drop_in(**common, writable=["/home/alice/calc"], user=True)

    @pytest.mark.parametrize("name", ["agentos.service", "agentos-user.service"])
    def test_the_checkouts_deploy_folder_has_the_shipped_units(self, name: str) -> None:
        """deploy/systemd/ (what the docs' `install` lines copy) is the very unit the package ships."""
        from importlib.resources import files

        shipped = files("agentos.deploy") / "systemd" / name
        assert (ROOT / "deploy" / "systemd" / name).read_bytes() == shipped.read_bytes()

    def test_user_unit(self, setup: Setup) -> None:
        """--user prints the systemctl --user command."""
        code, out = setup.run("--yes", "--user")
        assert code == 0, out
        assert "systemctl --user daemon-reload && systemctl --user enable --now agentos" in out
        assert (setup.units / "agentos.service").exists()

    def test_an_invalid_existing_config_is_left_alone(self, setup: Setup) -> None:
        """init refuses to merge into a config that does not validate, and changes nothing."""
        setup.config.parent.mkdir(parents=True)
        setup.config.write_text("forge: local\nmax_parallel_workers: lots\n")
        code, out = setup.run("--yes")
        assert code == 78 and "max_parallel_workers" in out
        assert setup.config.read_text() == "forge: local\nmax_parallel_workers: lots\n"


class TestInteractiveInit:
    def test_answers_produce_the_same_config_as_flags(self, setup: Setup, tmp_path: Path) -> None:
        """The wizard asks for what the flags give; Enter takes the defaults (dispatcher_only, detected tests)."""
        repo = git_repo(tmp_path / "calc")
        answers = [
            "",  # forge [local]
            "",  # automation mode [dispatcher_only]
            "",  # add a repository? [Y/n]
            str(repo),  # path
            "",  # name [calc]
            "",  # test command [python3 -m pytest -q]
            "n",  # another repository?
            "claude",  # agents
            "3",  # workers
            "",  # dispatch interval [60]
            "",  # time zone [this machine's]
            "",  # status page? [y/N]
            "",  # telegram? [y/N]
        ]
        code, out = setup.run(input="\n".join(answers) + "\n")
        assert code == 0, out
        cfg, _ = load_config(setup.config)
        repo_cfg = cfg.repos[0]
        assert (repo_cfg.name, repo_cfg.path, repo_cfg.test_command) == ("calc", str(repo), "python3 -m pytest -q")
        assert repo_cfg.automation_mode == "dispatcher_only" and cfg.max_parallel_workers == 3
        assert cfg.routing.default == ["claude"]

    def test_a_rerun_offers_the_existing_values(self, setup: Setup, tmp_path: Path) -> None:
        """Pressing Enter through a re-run keeps the config as it was."""
        repo = git_repo(tmp_path / "calc")
        assert setup.run("--yes", "--repo", f"calc:{repo}:pytest", "--max-parallel-workers", "4")[0] == 0
        first = setup.config.read_text()
        code, out = setup.run(input="\n" * 12)
        assert code == 0, out
        assert setup.config.read_text() == first and "config unchanged" in out


class TestDaemonSettings:
    """The time zone and the status page: flags, the wizard's questions, the stored token."""

    def test_the_timezone_flag_is_written_and_a_new_config_takes_the_machines_zone(
        self, setup: Setup, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """--timezone is written as given; without it a new config gets $TZ, the zone of this machine."""
        code, out = setup.run("--yes", "--timezone", "Europe/Berlin")
        assert code == 0, out
        assert load_config(setup.config)[0].timezone == "Europe/Berlin"
        assert "timezone: Europe/Berlin" in setup.config.read_text()
        other = Setup(setup.root / "second")
        other.root.mkdir()
        monkeypatch.setenv("TZ", "America/New_York")
        code, out = other.run("--yes")
        assert code == 0, out
        assert load_config(other.config)[0].timezone == "America/New_York"

    def test_a_bad_zone_is_refused_with_nothing_written(self, setup: Setup) -> None:
        """An unknown zone is one line naming it; no config, no credentials, no unit."""
        code, out = setup.run("--yes", "--timezone", "Mars/Olympus_Mons")
        assert code == 1
        [line] = [ln for ln in out.splitlines() if "agentos init:" in ln]
        assert "--timezone" in line and "Mars/Olympus_Mons" in line
        assert not setup.config.exists() and not setup.creds.exists() and not setup.units.exists()

    def test_a_zone_merged_into_an_existing_config_keeps_its_comments(self, setup: Setup) -> None:
        """A config without `timezone` gets it under its top-level settings; every comment stays."""
        setup.config.parent.mkdir(parents=True)
        text = "forge: local   # my forge\nlog_level: info  # quiet\n\n# my repos\nrepos: []\n# my last note\n"
        setup.config.write_text(text)
        code, out = setup.run("--yes", "--timezone", "Asia/Tokyo")
        assert code == 0, out
        new = setup.config.read_text()
        assert new.startswith(
            "forge: local   # my forge\nlog_level: info  # quiet\ntimezone: Asia/Tokyo\n\n# my repos\n"
        )
        assert "# my last note" in new and load_config(setup.config)[0].timezone == "Asia/Tokyo"

    def test_a_status_page_beyond_loopback_gets_a_stored_token_once(
        self, setup: Setup, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A non-loopback host: a 0600 token credential, not in the YAML, loaded by the drop-in; a re-run keeps it."""
        flags = ("--yes", "--status-page", "--status-page-host", "0.0.0.0", "--status-page-port", "9100")
        code, out = setup.run(*flags)
        assert code == 0, out
        page = load_config(setup.config)[0].status_page
        assert (page.enabled, page.host, page.port) == (True, "0.0.0.0", 9100)
        token_file = setup.creds / "status_page_token"
        token = token_file.read_text().strip()
        assert len(token) >= 40 and stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert token not in setup.config.read_text() and token not in out
        monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(setup.creds))  # as systemd hands it to the daemon
        assert secret(page.token_credential) == token
        drop_in = setup.units / "agentos.service.d" / "10-agentos-init.conf"
        assert f"LoadCredential=status_page_token:{token_file}" in drop_in.read_text()
        assert f"Authorization: Bearer $(sudo cat {token_file})" in out or f"$(cat {token_file})" in out
        config_before, drop_in_before = setup.config.read_text(), drop_in.read_text()
        code, out = setup.run(*flags)
        assert code == 0, out
        assert token_file.read_text().strip() == token, "a re-run keeps the token"
        assert setup.config.read_text() == config_before and drop_in.read_text() == drop_in_before
        assert "config unchanged" in out and "drop-in unchanged" in out and setup.backups() == []

    def test_a_loopback_status_page_needs_no_token(self, setup: Setup) -> None:
        """On 127.0.0.1 the page is turned on and no token is made or loaded."""
        code, out = setup.run("--yes", "--status-page")
        assert code == 0, out
        page = load_config(setup.config)[0].status_page
        assert (page.enabled, page.host, page.port) == (True, "127.0.0.1", 8787)
        assert not (setup.creds / "status_page_token").exists()
        assert "status_page_token" not in (setup.units / "agentos.service.d" / "10-agentos-init.conf").read_text()

    def test_the_wizard_proposes_the_machines_zone_and_asks_about_the_status_page(
        self, setup: Setup, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Interactively the zone defaults to $TZ; enabling the page asks host and port, and stores a token."""
        monkeypatch.setenv("TZ", "Australia/Sydney")
        answers = [
            "",  # forge [local]
            "",  # automation mode
            "n",  # add a repository?
            "claude",  # agents
            "",  # workers
            "",  # dispatch interval
            "",  # time zone [Australia/Sydney]
            "y",  # status page?
            "192.0.2.10",  # host
            "",  # port [8787]
            "",  # telegram? [y/N]
        ]
        code, out = setup.run(input="\n".join(answers) + "\n")
        assert code == 0, out
        assert "[Australia/Sydney]" in out
        cfg, _ = load_config(setup.config)
        assert cfg.timezone == "Australia/Sydney"
        assert (cfg.status_page.enabled, cfg.status_page.host, cfg.status_page.port) == (True, "192.0.2.10", 8787)
        assert (setup.creds / "status_page_token").read_text().strip()


class Terminal:
    """A command on a pseudo-terminal, driven like a person would: wait for a prompt, type an answer."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
        os.close(slave)
        self.seen = ""

    def expect(self, text: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {text!r} on the terminal; it shows:\n{self.seen}")
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:  # the child closed the terminal
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"the command ended before {text!r}:\n{self.seen}")
                self.seen += chunk.decode(errors="replace")
        self.seen = self.seen[self.seen.index(text) + len(text) :]

    def send(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\r")

    def close(self) -> int:
        try:
            return self.proc.wait(timeout=20)
        finally:
            self.proc.kill()
            os.close(self.master)


class TestTerminalSession:
    def test_the_wizard_on_a_real_terminal(self, setup: Setup, tmp_path: Path) -> None:
        """A person at a terminal: each question appears, Enter takes the default, and the config is valid."""
        repo = git_repo(tmp_path / "calc")
        env = {**os.environ, "TERM": "dumb", "COLUMNS": "120"}
        term = Terminal([sys.executable, "-m", "agentos.cli.main", *setup.args()], env)
        try:
            for prompt, answer in [
                ("Forge (local|github) [local]", ""),
                ("(dispatcher_only|full) [dispatcher_only]", ""),
                ("Add a repository? [Y/n]", ""),
                ("Path of the repository", str(repo)),
                ("Name [calc]", ""),
                ("Test command (must pass before a PR opens) [python3 -m pytest -q]", ""),
                ("Add a repository? [y/N]", ""),
                ("Agents (comma-separated: claude, codex, gemini, or NAME:command for any program)", "claude"),
                ("Agents at work at once [2]", ""),
                ("Seconds between looks for ready issues [60]", "30"),
                ("Time zone of cron jobs, the digest and budgets", ""),
                ("Serve the status page (a web page, JSON and metrics)? [y/N]", ""),
                ("Set up Telegram (notifications and control)? [y/N]", ""),
            ]:
                term.expect(prompt)
                term.send(answer)
            term.expect("start it with:")
        finally:
            code = term.close()
        assert code == 0
        cfg, _ = load_config(setup.config)
        assert [(r.name, r.automation_mode) for r in cfg.repos] == [("calc", "dispatcher_only")]
        assert cfg.jobs["dispatch"].interval_s == 30 and cfg.routing.default == ["claude"]


@pytest.fixture
async def github(fake_github: FakeGitHub) -> FakeGitHub:  # noqa: F811
    """The fake GitHub with octo/calc."""
    await fake_github.add_repo("octo/calc")
    return fake_github


def github_flags(fake: FakeGitHub, *extra: str, repo: str = "octo/calc") -> tuple[str, ...]:
    return ("--yes", "--forge", "github", "--repo", f"{repo}::pytest", "--github-api-url", fake.url, *extra)


def label_posts(fake: FakeGitHub) -> int:
    return len(fake.requests_to("POST", "/repos/octo/calc/labels"))


def board_config(setup: Setup, fake: FakeGitHub) -> None:
    """An existing config whose repo octo/calc uses board 3 of octo."""
    setup.config.parent.mkdir(parents=True)
    setup.config.write_text(
        f"forge: github\ngithub:\n  api_url: {fake.url}\n"
        "repos:\n  - name: octo/calc\n    test_command: pytest\n    project: {owner: octo, number: 3}\n"
    )


def error_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if "agentos init:" in line]


class TestGitHubToken:
    async def test_verifies_the_token_stores_it_outside_the_yaml_and_creates_labels_once(
        self, setup: Setup, github: FakeGitHub
    ) -> None:
        """The token is checked (GET /user, the repo), kept in a 0600 file, and each label is created once."""
        token = github.add_classic_token("repo, workflow")
        code, out = await asyncio.to_thread(setup.run, *github_flags(github, "--github-token", token))
        assert code == 0, out
        assert "token of agentos-bot, scopes repo, workflow" in out and "octo/calc: ok" in out
        assert token not in setup.config.read_text()
        token_file = setup.creds / "github_token"
        assert token_file.read_text().strip() == token
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert list(github.state.repos["octo/calc"].labels) == AGENTOS_LABELS
        assert label_posts(github) == 4
        cfg, _ = load_config(setup.config)
        assert cfg.forge == "github" and cfg.github is not None and cfg.github.api_url == github.url
        drop_in = (setup.units / "agentos.service.d" / "10-agentos-init.conf").read_text()
        assert f"LoadCredential=github_token:{token_file}" in drop_in
        code, out = await asyncio.to_thread(setup.run, *github_flags(github))  # the stored token is found again
        assert code == 0, out
        assert "labels already there" in out and "config unchanged" in out
        assert label_posts(github) == 4, "a re-run creates nothing"

    async def test_a_classic_token_without_repo_scope_is_warned_about(self, setup: Setup, github: FakeGitHub) -> None:
        """A classic token lacking `repo` is accepted with a warning naming the scope."""
        token = github.add_classic_token("read:org")
        code, out = await asyncio.to_thread(setup.run, *github_flags(github, "--github-token", token))
        assert code == 0, out
        assert "lacks the scope(s) repo" in out

    async def test_the_wizard_asks_for_the_token_hidden_and_offers_labels(
        self, setup: Setup, github: FakeGitHub
    ) -> None:
        """Interactively: owner/name, an optional clone, token or App, the token (hidden), then the labels offer."""
        answers = [
            "github",  # forge
            "",  # automation mode [dispatcher_only]
            "",  # add a repository? [Y/n]
            "octo/calc",
            "",  # local clone (none)
            "pytest -q",
            "n",  # another?
            "claude",
            "",  # workers [2]
            "",  # dispatch interval [60]
            github.url,  # API URL
            "",  # time zone
            "",  # status page? [y/N]
            "",  # token or app [token]
            github.token,  # hidden
            "n",  # telegram
            "y",  # labels
        ]
        code, out = await asyncio.to_thread(setup.run, input="\n".join(answers) + "\n")
        assert code == 0, out
        assert github.token not in out and github.token not in setup.config.read_text()
        cfg, _ = load_config(setup.config)
        assert [(r.name, r.path, r.test_command) for r in cfg.repos] == [("octo/calc", None, "pytest -q")]
        assert list(github.state.repos["octo/calc"].labels) == AGENTOS_LABELS

    async def test_a_rejected_token_writes_nothing(self, setup: Setup, github: FakeGitHub) -> None:
        """A 401 from GET /user stops init before any file is written."""
        code, out = await asyncio.to_thread(setup.run, *github_flags(github, "--github-token", "ghp_wrong"))
        assert code == 1 and "401" in out
        assert not setup.config.exists() and not setup.creds.exists()

    async def test_an_invisible_repo_is_an_error(self, setup: Setup, github: FakeGitHub) -> None:
        """A repo the token cannot see is named."""
        flags = github_flags(github, "--github-token", github.token, repo="octo/secret")
        code, out = await asyncio.to_thread(setup.run, *flags)
        assert code == 1 and "octo/secret is not visible to this token (404)" in out and not setup.config.exists()


class TestGitHubApp:
    async def test_app_flags_write_the_config_and_store_the_key_as_a_credential(
        self, setup: Setup, github: FakeGitHub, tmp_path: Path
    ) -> None:
        """The App's ids go in the YAML, its key into a 0600 credential only; a token is minted and labels made."""
        private, public = app_key_pair()
        github.enable_app(12345, 678, public)
        key = tmp_path / "app.pem"
        key.write_text(private)
        flags = ("--github-app-id", "12345", "--github-installation-id", "678", "--github-app-key", str(key))
        code, out = await asyncio.to_thread(setup.run, *github_flags(github, *flags))
        assert code == 0, out
        assert "GitHub App 12345, installation 678: installation token minted" in out and "octo/calc: ok" in out
        cfg, _ = load_config(setup.config)
        assert cfg.github is not None and (cfg.github.app_id, cfg.github.installation_id) == (12345, 678)
        stored = setup.creds / "github_app_key"
        assert stored.read_text().strip() == private.strip()
        assert stat.S_IMODE(stored.stat().st_mode) == 0o600
        assert "PRIVATE KEY" not in setup.config.read_text() and str(key) not in setup.config.read_text()
        drop_in = (setup.units / "agentos.service.d" / "10-agentos-init.conf").read_text()
        assert f"LoadCredential=github_app_key:{stored}" in drop_in
        assert len(github.requests_to("POST", "/app/installations/678/access_tokens")) >= 1
        assert list(github.state.repos["octo/calc"].labels) == AGENTOS_LABELS
        code, out = await asyncio.to_thread(setup.run, *github_flags(github))  # the config and stored key suffice
        assert code == 0, out
        assert "installation token minted" in out and "config unchanged" in out and "labels already there" in out

    @pytest.mark.parametrize(
        ("content", "expected"),
        [
            pytest.param("other", "refused the JWT of app 12345", id="another-apps-key"),
            pytest.param("not a key\n", "not a PEM private key", id="not-pem"),
            pytest.param(None, "no such file", id="missing"),
        ],
    )
    async def test_a_wrong_key_is_one_clear_line(
        self, setup: Setup, github: FakeGitHub, tmp_path: Path, content: str | None, expected: str
    ) -> None:
        """A key GitHub refuses, a file that is no PEM, or no file: exit 1, one line saying which, nothing written."""
        github.enable_app(12345, 678, app_key_pair()[1])
        key = tmp_path / "app.pem"
        if content is not None:
            key.write_text(app_key_pair(1)[0] if content == "other" else content)
        flags = ("--github-app-id", "12345", "--github-installation-id", "678", "--github-app-key", str(key))
        code, out = await asyncio.to_thread(setup.run, *github_flags(github, *flags))
        assert code == 1
        [line] = error_lines(out)
        assert expected in line
        assert "PRIVATE KEY" not in out
        assert not setup.config.exists() and not setup.creds.exists()

    async def test_the_wizard_asks_for_the_app_key_path(self, setup: Setup, github: FakeGitHub, tmp_path: Path) -> None:
        """Interactively, choosing `app` asks for the App id, the installation id and the path of the .pem."""
        private, public = app_key_pair()
        github.enable_app(99, 7, public)
        key = tmp_path / "app.pem"
        key.write_text(private)
        answers = [
            "github",  # forge
            "",  # automation mode
            "",  # add a repository? [Y/n]
            "octo/calc",
            "",  # local clone
            "pytest -q",
            "n",  # another?
            "claude",
            "",  # workers
            "",  # dispatch interval
            github.url,  # API URL
            "",  # time zone
            "",  # status page? [y/N]
            "app",  # token or app
            "99",  # app id
            "7",  # installation id
            str(key),  # the key's path
            "n",  # telegram
            "n",  # labels
        ]
        code, out = await asyncio.to_thread(setup.run, input="\n".join(answers) + "\n")
        assert code == 0, out
        assert "Path of the GitHub App's private key (.pem)" in out and "installation token minted" in out
        cfg, _ = load_config(setup.config)
        assert cfg.github is not None and (cfg.github.app_id, cfg.github.installation_id) == (99, 7)
        assert (setup.creds / "github_app_key").read_text().strip() == private.strip()
        assert "labels: left for later" in out and github.state.repos["octo/calc"].labels == {}


class TestGitHubBoard:
    async def test_missing_status_options_are_added_once_keeping_the_existing_ones(
        self, setup: Setup, github: FakeGitHub
    ) -> None:
        """--yes leaves the board alone; --create-board-options adds what is missing (ids, cards kept); then nothing."""
        board_config(setup, github)
        project = github.add_project("octo", 3, options=("Todo", "In Progress", "Done"))
        github.add_issue("octo/calc", "a task")
        github.add_card(project, "octo/calc", 1, "In Progress")
        before = dict(project.options)
        flags = ("--yes", "--github-token", github.token, "--no-create-labels")

        code, out = await asyncio.to_thread(setup.run, *flags)
        assert code == 0, out
        assert "lacks Ready, In Review, Blocked: left for later" in out
        assert project.options == before

        code, out = await asyncio.to_thread(setup.run, *flags, "--create-board-options")
        assert code == 0, out
        assert "board field 'Status': added Ready, In Review, Blocked" in out
        assert list(project.options) == ["Todo", "Ready", "In Progress", "In Review", "Blocked", "Done"]
        assert {name: project.options[name] for name in before} == before, "existing options keep their ids"
        assert github.card_status(project, "octo/calc", 1) == "In Progress", "the card keeps its value"
        assert project.styles[project.options["Blocked"]] == ("RED", "agentos escalated: a person is needed")
        after = dict(project.options)

        code, out = await asyncio.to_thread(setup.run, *flags, "--create-board-options")
        assert code == 0, out
        assert "has every option agentos uses" in out
        assert project.options == after

    async def test_a_missing_board_is_reported_and_init_still_finishes(self, setup: Setup, github: FakeGitHub) -> None:
        """A board that does not exist is a warning naming it; the config and the unit are still written."""
        board_config(setup, github)
        code, out = await asyncio.to_thread(
            setup.run, "--yes", "--github-token", github.token, "--no-create-labels", "--create-board-options"
        )
        assert code == 0, out
        assert "board not set up" in out and "octo/calc" in out
        assert (setup.units / "agentos.service").exists()


class TestTelegram:
    async def test_pairing_reads_the_chat_id_of_start(self, setup: Setup, fake_telegram: FakeTelegram) -> None:  # noqa: F811
        """init reads the chat of the /start message from getUpdates, confirms it, and greets that chat."""
        fake_telegram.inject_message(42, "hello there")
        fake_telegram.inject_message(1001, "/start")
        flags = ("--yes", "--telegram-token", fake_telegram.token, "--telegram-api-base", fake_telegram.url)
        code, out = await asyncio.to_thread(setup.run, *flags, "--pair-timeout", "10")
        assert code == 0, out
        cfg, _ = load_config(setup.config)
        assert cfg.telegram.enabled and cfg.telegram.allowed_chat_ids == [1001]
        assert cfg.telegram.api_base == fake_telegram.url
        assert fake_telegram.token not in setup.config.read_text()
        assert (setup.creds / "telegram_bot_token").read_text().strip() == fake_telegram.token
        assert [m.chat_id for m in fake_telegram.sent] == [1001]
        assert fake_telegram.updates == [], "the /start was confirmed, so the daemon will not see it again"

    async def test_pairing_waits_for_start_sent_later(self, setup: Setup, fake_telegram: FakeTelegram) -> None:  # noqa: F811
        """A /start that arrives while init long-polls is picked up."""
        flags = ("--yes", "--telegram-token", fake_telegram.token, "--telegram-api-base", fake_telegram.url)
        job = asyncio.create_task(asyncio.to_thread(setup.run, *flags, "--pair-timeout", "10"))
        await fake_telegram.wait_for(lambda: bool(fake_telegram.called("getUpdates")), timeout=10)
        fake_telegram.inject_message(-100555, "/start@agentos_test_bot", chat_type="group")
        code, out = await asyncio.wait_for(job, 15)
        assert code == 0, out
        assert load_config(setup.config)[0].telegram.allowed_chat_ids == [-100555]

    async def test_no_start_within_the_timeout_fails(self, setup: Setup, fake_telegram: FakeTelegram) -> None:  # noqa: F811
        """Without a /start the scripted run fails after --pair-timeout and writes nothing."""
        flags = ("--yes", "--telegram-token", fake_telegram.token, "--telegram-api-base", fake_telegram.url)
        code, out = await asyncio.to_thread(setup.run, *flags, "--pair-timeout", "1")
        assert code == 1 and "/start" in out and not setup.config.exists()

    async def test_a_rejected_bot_token_fails(self, setup: Setup, fake_telegram: FakeTelegram) -> None:  # noqa: F811
        """getMe answering 401 stops init."""
        flags = ("--yes", "--telegram-token", "1:wrong", "--telegram-api-base", fake_telegram.url)
        code, out = await asyncio.to_thread(setup.run, *flags)
        assert code == 1 and "Unauthorized" in out


class TestRepoSpec:
    @pytest.mark.parametrize(
        ("spec", "forge", "expected"),
        [
            pytest.param("calc:/srv/calc:make test", "local", RepoPlan("calc", "/srv/calc", "make test"), id="full"),
            pytest.param("calc:/srv/calc", "local", RepoPlan("calc", "/srv/calc", None), id="no-test"),
            pytest.param("/srv/my repo", "local", RepoPlan("my-repo", "/srv/my repo", None), id="path-only"),
            pytest.param("o/n", "github", RepoPlan("o/n", None, None), id="github"),
            pytest.param("o/n::npm test", "github", RepoPlan("o/n", None, "npm test"), id="github-test"),
            pytest.param("o/n:/src/n:a:b", "github", RepoPlan("o/n", "/src/n", "a:b"), id="colon-in-test"),
        ],
    )
    def test_parses(self, spec: str, forge: str, expected: RepoPlan) -> None:
        """--repo specs split on the first two colons; a bare path names the repo after its directory."""
        assert parse_repo_spec(spec, forge) == expected

    def test_a_github_repo_needs_owner_and_name(self) -> None:
        """A GitHub repo without an owner is refused."""
        from agentos.cli.init import InitError

        with pytest.raises(InitError):
            parse_repo_spec("calc", "github")


class TestConfigurationDoc:
    """docs/configuration.md's key tables are generated from agentos.config; a stale page fails here."""

    def test_the_page_in_the_repo_is_up_to_date(self) -> None:
        """`agentos config docs --check` passes on the committed page: every key, default and meaning is current."""
        result = CliRunner().invoke(app, ["config", "docs", "--check", "--file", str(ROOT / "docs/configuration.md")])
        assert result.exit_code == 0, result.output
        assert "up to date" in result.output

    def test_a_stale_table_is_named_then_rewritten_keeping_the_prose(self, tmp_path: Path) -> None:
        """--check names the stale section and changes nothing; without it only the generated block is rewritten."""
        original = (ROOT / "docs" / "configuration.md").read_text()
        row = "| `max_attempts` | `4` |"
        assert row in original
        stale = original.replace(row, "| `max_attempts` | `9` |").replace("## 5. `agentos doctor`", "## 5. Doctor")
        page = tmp_path / "configuration.md"
        page.write_text(stale)

        checked = CliRunner().invoke(app, ["config", "docs", "--check", "--file", str(page)])
        assert checked.exit_code == 1
        assert "stale in routing" in checked.output
        assert page.read_text() == stale

        written = CliRunner().invoke(app, ["config", "docs", "--file", str(page)])
        assert written.exit_code == 0, written.output
        assert page.read_text() == original.replace("## 5. `agentos doctor`", "## 5. Doctor")

    def test_outside_a_checkout_it_prints_every_key(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """After a wheel install there is no docs/ folder: `agentos config docs` prints the key reference."""
        monkeypatch.chdir(tmp_path)
        result = CliRunner().invoke(app, ["config", "docs"])
        assert result.exit_code == 0, result.output
        assert "| `max_attempts` | `4` |" in result.output and "## `routing`" in result.output
        assert not (tmp_path / "docs").exists()

    def test_a_missing_page_is_one_line_naming_it(self, tmp_path: Path) -> None:
        """Run outside the repository, the command says which file it could not read."""
        result = CliRunner().invoke(app, ["config", "docs", "--check", "--file", str(tmp_path / "nope.md")])
        assert result.exit_code == 1
        assert "nope.md: cannot read" in result.output


# ---------------------------------------------------------------- issue #21, problem 7


def fake_cli(bin_dir: Path, name: str) -> None:
    """An executable ``name`` on PATH that answers ``--version`` like an installed agent CLI."""
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / name
    script.write_text(f"#!/bin/sh\necho '{name} 1.0.0'\n")
    script.chmod(0o755)


@pytest.fixture
def only_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """PATH holds git and the fake CLIs a test puts in the returned directory, and no real agent CLI."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    git = shutil.which("git")
    assert git is not None
    (bin_dir / "git").symlink_to(git)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    for name in ("claude", "codex", "gemini"):
        if shutil.which(name):
            pytest.skip(f"{name} is installed in /usr/bin or /bin")
    return bin_dir


class TestProblem7Agents:
    def test_a_command_agent_is_added_from_the_flag(self, setup: Setup, tmp_path: Path) -> None:
        """`--agent NAME:command:COMMAND LINE` adds any program as an agent, joining the default chain."""
        repo = git_repo(tmp_path / "calc")
        code, out = setup.run(
            "--yes", "--repo", f"calc:{repo}:true", "--agent", "patcher:command:python3 /opt/p.py {prompt_file}"
        )
        assert code == 0, out
        cfg, _ = load_config(setup.config)
        assert cfg.agents["patcher"].kind == "command"
        assert cfg.agents["patcher"].argv == ["python3", "/opt/p.py", "{prompt_file}"]
        assert cfg.routing.default == ["patcher"]

    def test_the_wizard_asks_a_command_agent_for_its_command_line(self, setup: Setup, tmp_path: Path) -> None:
        """An unknown answer is asked again, not a reason to throw every answer away; `command` asks for argv."""
        repo = git_repo(tmp_path / "calc")
        answers = [
            "",  # forge
            "",  # automation mode
            "",  # add a repository?
            str(repo),
            "",  # name
            "",  # test command
            "n",  # another repository?
            "aider",  # agents: unknown, asked again
            "patcher:command",  # agents
            "python3 /opt/p.py {prompt_file}",  # its command line
            "",  # workers
            "",  # dispatch interval
            "",  # time zone
            "",  # status page?
            "",  # telegram?
        ]
        code, out = setup.run(input="\n".join(answers) + "\n")
        assert code == 0, out
        assert "unknown agent" in out
        cfg, _ = load_config(setup.config)
        assert cfg.agents["patcher"].argv == ["python3", "/opt/p.py", "{prompt_file}"]

    def test_a_command_agent_without_a_command_line_names_the_flag(self, setup: Setup, tmp_path: Path) -> None:
        repo = git_repo(tmp_path / "calc")
        code, out = setup.run("--yes", "--repo", f"calc:{repo}:true", "--agent", "patcher:command")
        assert code == 1 and "patcher:command:COMMAND LINE" in out and not setup.config.exists()

    def test_the_default_agent_is_an_installed_one(self, setup: Setup, tmp_path: Path, only_installed: Path) -> None:
        """With only codex on PATH, `--yes` without --agent sets up codex, not claude."""
        fake_cli(only_installed, "codex")
        repo = git_repo(tmp_path / "calc")
        code, out = setup.run("--yes", "--repo", f"calc:{repo}:true")
        assert code == 0, out
        cfg, _ = load_config(setup.config)
        assert list(cfg.agents) == ["codex"] and cfg.routing.default == ["codex"]

    def test_no_installed_agent_adds_none_and_says_how(
        self, setup: Setup, tmp_path: Path, only_installed: Path
    ) -> None:
        repo = git_repo(tmp_path / "calc")
        code, out = setup.run("--yes", "--repo", f"calc:{repo}:true")
        assert code == 0, out
        assert load_config(setup.config)[0].agents == {} and "no agent CLI found" in out


class TestProblem7Rerun:
    def test_a_second_run_leaves_routing_and_agents_alone(self, setup: Setup, tmp_path: Path) -> None:
        """A re-run with --yes does not append every configured agent to routing.default again."""
        repo = git_repo(tmp_path / "calc")
        assert setup.run("--yes", "--repo", f"calc:{repo}:true", "--agent", "claude", "--agent", "codex")[0] == 0
        text = setup.config.read_text().replace("default: [claude, codex]", "default: [claude]")
        setup.config.write_text(text)
        code, out = setup.run("--yes")
        assert code == 0, out
        cfg, _ = load_config(setup.config)
        assert cfg.routing.default == ["claude"] and set(cfg.agents) == {"claude", "codex"}
        assert "config unchanged" in out

    def test_a_repo_given_again_by_its_path_is_not_added_twice(self, setup: Setup, tmp_path: Path) -> None:
        repo = git_repo(tmp_path / "calc")
        assert setup.run("--yes", "--repo", f"mycalc:{repo}:true", "--agent", "claude")[0] == 0
        code, out = setup.run("--yes", "--repo", str(repo))
        assert code == 0, out
        assert [r.name for r in load_config(setup.config)[0].repos] == ["mycalc"]


def test_the_readmes_scripted_init_works_as_written(setup: Setup, tmp_path: Path) -> None:
    """The README's `agentos init --yes --repo calc:PATH…` line, run on a repo with no test files, succeeds."""
    import shlex

    readme = (ROOT / "README.md").read_text()
    [line] = [ln for ln in readme.splitlines() if ln.startswith("agentos init --yes --repo") and "calc" in ln]
    argv = shlex.split(line.split("#", 1)[0])[1:]
    repo = git_repo(tmp_path / "calc", "Makefile")
    (repo / "Makefile").write_text("all:\n\ttrue\n")  # nothing to guess a test command from
    argv = [a.replace("/home/me/src/calc", str(repo)) for a in argv]
    assert argv[0] == "init"
    code, out = setup.run(*argv[1:])
    assert code == 0, out
    cfg, _ = load_config(setup.config)
    assert cfg.repos[0].name == "calc" and cfg.repos[0].test_command


class TestGitHubWebhook:
    async def test_an_enabled_webhook_gets_a_secret_once_and_init_prints_what_to_paste(
        self, setup: Setup, github: FakeGitHub
    ) -> None:
        """github.webhook.enabled: a 0600 secret is made (kept on a re-run), loaded by the unit, and printed with
        the payload URL, the content type and the events to paste into the repository's settings."""
        setup.config.parent.mkdir(parents=True)
        setup.config.write_text(
            f"forge: github\ngithub:\n  api_url: {github.url}\n  webhook: {{enabled: true, port: 9911}}\n"
            "repos:\n  - name: octo/calc\n    test_command: pytest\n"
        )
        flags = ("--yes", "--github-token", github.token, "--no-create-labels")
        code, out = await asyncio.to_thread(setup.run, *flags)
        assert code == 0, out
        secret_file = setup.creds / "github_webhook_secret"
        value = secret_file.read_text().strip()
        assert len(value) == 64 and stat.S_IMODE(secret_file.stat().st_mode) == 0o600
        assert value not in setup.config.read_text()
        assert f"Secret        {value}" in out
        assert "forwarding to http://127.0.0.1:9911/github/webhook" in out
        assert "Content type  application/json" in out and "Pull request reviews" in out and "Check runs" in out
        assert "/octo/calc/settings/hooks/new" in out
        drop_in = (setup.units / "agentos.service.d" / "10-agentos-init.conf").read_text()
        assert f"LoadCredential=github_webhook_secret:{secret_file}" in drop_in

        code, out = await asyncio.to_thread(setup.run, *flags)
        assert code == 0, out
        assert secret_file.read_text().strip() == value and "kept github_webhook_secret" in out

    async def test_without_the_webhook_init_says_how_to_turn_it_on(self, setup: Setup, github: FakeGitHub) -> None:
        code, out = await asyncio.to_thread(
            setup.run, *github_flags(github, "--github-token", github.token, "--no-create-labels")
        )
        assert code == 0, out
        assert "webhook: off" in out and "docs/github.md §7b" in out
        assert not (setup.creds / "github_webhook_secret").exists()
