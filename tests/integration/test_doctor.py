"""`agentos doctor`: each problem it is meant to find, with a fix hint, and a clean bill on a good setup."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from typer.testing import CliRunner

from agentos.cli.doctor import Check, command_program, run_checks
from agentos.cli.main import app
from agentos.forge.base import BLOCKED_LABEL, READY_LABEL, RUNNING_LABEL
from agentos.runners import cgroups
from agentos.runners.sandbox import probe
from tests.fakes.github_server import FakeGitHub, app_key_pair, fake_github  # noqa: F401
from tests.integration.test_cli_init import git_repo

PYTHON = sys.executable


@pytest.fixture(autouse=True)
def _clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine's tokens, sockets and logins stay out; HOME, cwd and the socket path are the test's own."""
    for name in (
        "GITHUB_TOKEN",
        "GITHUB_APP_KEY",
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
    monkeypatch.setenv("PATH", path_with(bin_dir, "git", "python3", *(["bwrap"] if shutil.which("bwrap") else [])))
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    repo = git_repo(tmp_path / "calc")
    return write_config(
        tmp_path,
        "forge: local\nagents:\n  claude: {kind: claude, pass_env: [ANTHROPIC_API_KEY]}\n"
        f"repos:\n  - {{name: calc, path: {repo}, test_command: python3 -m pytest -q}}\n",
    )


def sandbox_problems() -> dict[str, str]:
    """What the sandbox checks find wrong on this machine (nothing where bwrap and a cgroup work)."""
    if probe() is not None:
        return {"sandbox": "error"}
    return {} if cgroups.unavailable_reason() is None else {"sandbox:limits": "warn"}


class TestDoctorSandbox:
    def test_no_bubblewrap_fails_with_the_fix(self, good: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """With `sandbox.mode: bubblewrap` and no bwrap, doctor fails and names the install command."""
        monkeypatch.setenv("PATH", path_with(good.parent / "bin-nobwrap", "git", "python3"))
        code, checks = doctor(good)
        sandbox = by_name(checks)["sandbox"]
        assert code == 1 and sandbox.status == "error"
        assert "apt-get install bubblewrap" in sandbox.fix

    def test_mode_off_is_a_loud_warning(self, good: Path) -> None:
        good.write_text(good.read_text() + "sandbox: {mode: off}\n")
        _, checks = doctor(good)
        sandbox = by_name(checks)["sandbox"]
        assert sandbox.status == "warn" and "unconfined" in sandbox.detail


class TestDoctor:
    def test_a_good_setup_passes_with_only_the_daemon_warning(self, good: Path) -> None:
        """Everything is ok; a daemon that is not running is a warning, so the exit code is 0."""
        code, checks = doctor(good)
        assert code == 0
        found = by_name(checks)
        problems = {c.check: c.status for c in checks if c.status != "ok"}
        assert problems == {"socket": "warn", **sandbox_problems()}
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

    def test_a_repo_the_daemons_user_cannot_write_is_an_error(self, good: Path) -> None:
        """Issue #21, problem 6: the local forge pushes into the repo, so its user must be able to write it."""
        import pwd

        try:
            pwd.getpwnam("nobody")
        except KeyError:
            pytest.skip("no user nobody here")
        code, checks = doctor(good, "--service-user", "nobody")
        writable = by_name(checks)["repo:calc:writable"]
        assert code == 1 and writable.status == "error" and "not writable by nobody" in writable.detail
        assert "chown" in writable.fix
        code, checks = doctor(good)
        assert by_name(checks)["repo:calc:writable"].status == "ok"

    def test_a_home_the_service_user_cannot_enter_is_named(self) -> None:
        """A repo under a 0700 home is out of reach of the service user, however its own folder is set."""
        import tempfile

        from agentos.repopath import closed_ancestor

        base = Path(tempfile.mkdtemp(prefix="agentos-home-"))
        try:
            base.chmod(0o755)
            home = base / "alice"
            repo = home / "calc"
            repo.mkdir(parents=True)
            home.chmod(0o700)
            stranger = home.stat().st_uid + 4242
            assert closed_ancestor(repo, stranger, set()) == home
            assert closed_ancestor(repo, home.stat().st_uid, set()) is None
            home.chmod(0o711)
            assert closed_ancestor(repo, stranger, set()) is None
        finally:
            shutil.rmtree(base)

    def test_what_the_unit_lets_the_service_write(self) -> None:
        """Issue #21 problem 2: a repo outside ReadWritePaths (ProtectSystem=strict) or under /home with
        ProtectHome=yes fails every push under the unit; doctor says so from the unit's own settings."""
        from agentos.cli.doctor_unit import check_unit_view

        repos = [("srv", Path("/srv/calc")), ("home", Path("/home/alice/calc")), ("opt", Path("/opt/web"))]
        shipped = {"ProtectSystem": "strict", "ProtectHome": "yes", "ReadWritePaths": "-/srv/agentos -/srv/calc"}
        found = by_name(check_unit_view(repos, shipped))
        assert found["repo:srv:unit"].status == "ok"
        assert found["repo:home:unit"].status == "error" and "ProtectHome=yes" in found["repo:home:unit"].detail
        assert found["repo:opt:unit"].status == "error" and "ReadWritePaths=-/opt/web" in found["repo:opt:unit"].fix
        dropped_in = {**shipped, "ProtectHome": "read-only", "ReadWritePaths": "-/srv/calc -/home/alice/calc /opt"}
        assert {c.status for c in check_unit_view(repos, dropped_in)} == {"ok"}

    def test_a_folder_inside_a_repo_is_an_error(self, good: Path, tmp_path: Path) -> None:
        inner = tmp_path / "calc" / "src"
        inner.mkdir()
        good.write_text(good.read_text().replace(f"path: {tmp_path / 'calc'}", f"path: {inner}"))
        code, checks = doctor(good)
        found = by_name(checks)["repo:calc"]
        assert code == 1 and found.status == "error" and "inside the git repository" in found.detail

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
        # 10 low disk, 11 no daemon, 12 no bwrap on PATH (sandbox.mode defaults to bubblewrap)
        checks = run_checks(str(config), min_free_bytes=1 << 62, credentials=[])
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
            "sandbox": "error",
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
        config = write_config(tmp_path, "agents:\n  claude: {kind: claude}\nsandbox: {mode: off}\n")
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


REPO = "acme/calc"


@dataclass
class GhSite:
    """The fake GitHub with one repo (and its agentos labels), a config pointing at it, and a way to run doctor."""

    fake: FakeGitHub
    tmp: Path

    def config(self, github: str = "", repo: str = "") -> Path:
        return write_config(
            self.tmp,
            f"forge: github\ngithub: {{api_url: '{self.fake.url}'{github}}}\n"
            f"repos:\n  - {{name: {REPO}, test_command: 'true'{repo}}}\n",
        )

    async def github_checks(self, config: Path, credentials: list[Path] | None = None) -> dict[str, Check]:
        """Doctor's github:* findings (doctor runs its own event loop, so it runs in a thread here)."""
        checks = await asyncio.to_thread(run_checks, str(config), credentials=credentials or [])
        return {c.check: c for c in checks if c.check.startswith("github:")}


@pytest_asyncio.fixture
async def gh(fake_github: FakeGitHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> GhSite:  # noqa: F811
    await fake_github.add_repo(REPO)
    for name in (READY_LABEL, RUNNING_LABEL, BLOCKED_LABEL):
        fake_github.add_label(REPO, name)
    monkeypatch.setenv("GITHUB_TOKEN", fake_github.token)
    return GhSite(fake_github, tmp_path)


def problems(found: dict[str, Check]) -> dict[str, str]:
    return {name: c.status for name, c in found.items() if c.status != "ok"}


class TestGitHubChecks:
    """Doctor against the fake GitHub over HTTP: each seeded problem is found, with a fix."""

    async def test_a_good_setup_passes(self, gh: GhSite) -> None:
        """Token, repo, per-feature permissions and labels are all ok."""
        found = await gh.github_checks(gh.config())
        assert problems(found) == {}
        assert set(found) == {"github:token", f"github:{REPO}", f"github:{REPO}:permissions", f"github:{REPO}:labels"}
        assert "can push" in found[f"github:{REPO}"].detail
        _, checks = await asyncio.to_thread(doctor, gh.config())  # the CLI: --json stdout stays parseable
        assert {c.check for c in checks} >= set(found)

    async def test_a_required_merge_queue_is_reported(self, gh: GhSite) -> None:
        """The base branch's ruleset requires GitHub's merge queue: doctor says agentos will enqueue."""
        gh.fake.queues.require(REPO, "main")
        found = await gh.github_checks(gh.config())
        assert problems(found) == {}
        assert "main requires GitHub's merge queue" in found[f"github:{REPO}:merge_queue"].detail

    async def test_classic_token_scopes(self, gh: GhSite, monkeypatch: pytest.MonkeyPatch) -> None:
        """A classic token's X-OAuth-Scopes are read: without `repo` (or `project` for a board) it is an error."""
        monkeypatch.setenv("GITHUB_TOKEN", gh.fake.add_classic_token("read:user, read:project"))
        gh.fake.add_project("acme", 1)
        found = await gh.github_checks(gh.config(repo=", project: {number: 1}"))
        scopes = found["github:scopes"]
        assert scopes.status == "error" and "missing repo, project" in scopes.detail
        assert "read:project can read a board but not move" in scopes.detail
        assert "https://github.com/settings/tokens" in scopes.fix
        monkeypatch.setenv("GITHUB_TOKEN", gh.fake.add_classic_token("repo, project"))
        found = await gh.github_checks(gh.config(repo=", project: {number: 1}"))
        assert problems(found) == {} and "scopes: repo, project" in found["github:token"].detail

    async def test_no_token_or_a_rejected_one(self, gh: GhSite, monkeypatch: pytest.MonkeyPatch) -> None:
        """No token anywhere, or one GitHub rejects, is an error pointing at where tokens go; nothing else is tried."""
        monkeypatch.delenv("GITHUB_TOKEN")
        found = await gh.github_checks(gh.config())
        assert list(found) == ["github:token"] and "GITHUB_TOKEN" in found["github:token"].fix
        creds = gh.tmp / "creds"
        creds.mkdir()
        (creds / "github_token").write_text("ghp_revoked\n")
        found = await gh.github_checks(gh.config(), [creds])
        assert "rejected (401)" in found["github:token"].detail and str(creds) in found["github:token"].detail

    async def test_fine_grained_token_missing_permissions(self, gh: GhSite, monkeypatch: pytest.MonkeyPatch) -> None:
        """Each feature's endpoint is probed: a 403 names the permission GitHub wanted; Checks may be missing when
        Actions is readable (GitHub cannot grant Checks to a fine-grained token)."""
        grant = {"metadata": "read", "pull_requests": "write", "contents": "write", "actions": "read"}
        monkeypatch.setenv("GITHUB_TOKEN", gh.fake.add_fine_grained_token(grant))
        found = await gh.github_checks(gh.config())
        perms = found[f"github:{REPO}:permissions"]
        assert perms.status == "error"
        assert "issues (issues=read" in perms.detail and "statuses (statuses=read" in perms.detail
        assert "checks" not in perms.detail and "personal-access-tokens" in perms.fix
        grant |= {"issues": "write", "statuses": "read"}
        monkeypatch.setenv("GITHUB_TOKEN", gh.fake.add_fine_grained_token(grant))
        found = await gh.github_checks(gh.config())
        assert found[f"github:{REPO}:permissions"].status == "ok"
        assert "Actions jobs" in found[f"github:{REPO}:permissions"].detail

    async def test_invisible_repo_and_no_push(self, gh: GhSite, monkeypatch: pytest.MonkeyPatch) -> None:
        """A repo the token cannot see, or cannot push to, is an error with the fix."""
        hidden = gh.config().read_text().replace(REPO, "acme/hidden")
        found = await gh.github_checks(write_config(gh.tmp, hidden.split("\n", 1)[1]))
        assert (
            found["github:acme/hidden"].status == "error" and "not visible (404)" in found["github:acme/hidden"].detail
        )
        monkeypatch.setenv("GITHUB_TOKEN", gh.fake.add_user("gus", repo=REPO, role="triage"))
        found = await gh.github_checks(gh.config())
        assert (
            found[f"github:{REPO}"].status == "error" and "cannot push (role triage)" in found[f"github:{REPO}"].detail
        )

    async def test_missing_labels(self, gh: GhSite) -> None:
        """A missing ready label is an error in label mode (and a warning with a board); the fix is exact."""
        labels = gh.fake.state.repos[REPO].labels
        del labels[READY_LABEL], labels[BLOCKED_LABEL]
        found = await gh.github_checks(gh.config())
        check = found[f"github:{REPO}:labels"]
        assert check.status == "error" and f"missing {READY_LABEL}, {BLOCKED_LABEL}" in check.detail
        assert f"gh label create {READY_LABEL} -R {REPO} -c 0e8a16" in check.fix and "--create-labels" in check.fix
        gh.fake.add_project("acme", 1)
        found = await gh.github_checks(gh.config(repo=", project: {number: 1}"))
        assert found[f"github:{REPO}:labels"].status == "warn"

    async def test_projects_board(self, gh: GhSite) -> None:
        """The board, its Status field and the options agentos moves cards to are checked."""
        gh.fake.add_project("acme", 1)
        found = await gh.github_checks(gh.config(repo=", project: {number: 1}"))
        assert found[f"github:{REPO}:board"].status == "ok"
        assert "'Status' has Ready, In Progress, In Review, Blocked, Done" in found[f"github:{REPO}:board"].detail
        gh.fake.add_project("acme", 2, options=["Todo", "Ready", "Doing", "Done"])
        found = await gh.github_checks(gh.config(repo=", project: {number: 2}"))
        board = found[f"github:{REPO}:board"]
        assert board.status == "error" and "'In Progress', 'In Review', 'Blocked'" in board.detail
        assert "status_values" in board.fix
        found = await gh.github_checks(gh.config(repo=", project: {number: 9}"))
        assert found[f"github:{REPO}:board"].status == "error" and "not found" in found[f"github:{REPO}:board"].detail


class TestGitHubAppChecks:
    """Doctor for a GitHub App: the key, the installation, and the permissions the installation granted."""

    async def test_a_good_app(self, gh: GhSite, monkeypatch: pytest.MonkeyPatch) -> None:
        """A real RS256 key (a path in GITHUB_APP_KEY) mints a token; every permission agentos needs is granted."""
        private, public = app_key_pair()
        gh.fake.enable_app(7, 42, public)
        (gh.tmp / "app.pem").write_text(private)
        monkeypatch.delenv("GITHUB_TOKEN")
        monkeypatch.setenv("GITHUB_APP_KEY", str(gh.tmp / "app.pem"))
        found = await gh.github_checks(gh.config(", app_id: 7, installation_id: 42"))
        assert problems(found) == {}
        assert "app 7, installation 42: installation token minted" in found["github:app"].detail
        assert "issues=write" in found["github:permissions"].detail

    async def test_missing_permissions(self, gh: GhSite, monkeypatch: pytest.MonkeyPatch) -> None:
        """An installation without pull requests (or, with a board, projects) write is an error naming each."""
        private, public = app_key_pair()
        grant = {"metadata": "read", "issues": "write", "pull_requests": "read", "contents": "write", "checks": "read"}
        gh.fake.enable_app(7, 42, public, permissions=grant | {"statuses": "read"})
        gh.fake.add_project("acme", 1)
        monkeypatch.setenv("GITHUB_APP_KEY", private)
        found = await gh.github_checks(gh.config(", app_id: 7, installation_id: 42", ", project: {number: 1}"))
        perms = found["github:permissions"]
        assert perms.status == "error"
        assert (
            "pull requests: write (has read" in perms.detail
            and "organization projects: write (has none" in perms.detail
        )
        assert "actions: read" in perms.detail and "Permissions & events" in perms.fix

    @pytest.mark.parametrize(
        ("github", "key", "expected"),
        [
            pytest.param(", app_id: 7, installation_id: 42", "other", "refused the JWT of app 7", id="wrong-key"),
            pytest.param(
                ", app_id: 7, installation_id: 99", "good", "installation 99 of GitHub App 7 not found", id="iid"
            ),
            pytest.param(", app_id: 7", "good", "installation_id is not set", id="no-iid"),
            pytest.param(", app_id: 7, installation_id: 42", "garbled", "not a readable PEM", id="garbled"),
            pytest.param(", app_id: 7, installation_id: 42", None, "no GitHub App private key", id="no-key"),
        ],
    )
    async def test_a_broken_app_is_one_line_with_a_fix(
        self, gh: GhSite, monkeypatch: pytest.MonkeyPatch, github: str, key: str | None, expected: str
    ) -> None:
        """A wrong key, installation id or a key that is not a PEM: one line saying what to check, never the key."""
        gh.fake.enable_app(7, 42, app_key_pair()[1])
        monkeypatch.delenv("GITHUB_TOKEN")
        values = {"good": app_key_pair()[0], "other": app_key_pair(1)[0], "garbled": "-----BEGIN RSA PRIVATE KEY-----"}
        if key is not None:
            monkeypatch.setenv("GITHUB_APP_KEY", values[key])
        found = await gh.github_checks(gh.config(github))
        app = found["github:app"]
        assert list(found) == ["github:app"] and app.status == "error" and app.fix
        assert expected in app.detail and "\n" not in app.detail and "PRIVATE KEY" not in app.detail


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
