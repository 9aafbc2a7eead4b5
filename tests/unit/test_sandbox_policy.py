"""What a sandbox may see: the git paths of a linked worktree, a program's install folder, mode off."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentos.config import AgentConfig, SandboxConfig
from agentos.runners.policy import agent_spec, command_spec, git_paths
from agentos.runners.sandbox import install_folder, venv_paths


def test_a_linked_worktree_writes_only_its_admin_folder_and_reads_the_clone(tmp_path: Path) -> None:
    """Its commits' refs and objects go to the run's private view (tests/integration/test_sandbox.py)."""
    clone = tmp_path / "clones" / "app"
    admin = clone / "worktrees" / "task"
    admin.mkdir(parents=True)
    (admin / "commondir").write_text("../..\n")
    worktree = tmp_path / "worktrees" / "app" / "task"
    worktree.mkdir(parents=True)
    (worktree / ".git").write_text(f"gitdir: {admin}\n")
    rw, ro = git_paths(worktree)
    assert rw == (admin,)
    assert ro == (clone,)


def test_a_plain_repository_needs_nothing_more(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    assert git_paths(tmp_path) == ((), ())


def test_a_node_cli_brings_its_install_prefix(tmp_path: Path) -> None:
    cli = tmp_path / "prefix" / "lib" / "node_modules" / "@vendor" / "cli" / "cli.js"
    cli.parent.mkdir(parents=True)
    cli.write_text("")
    link = tmp_path / "prefix" / "bin" / "cli"
    link.parent.mkdir()
    link.symlink_to(cli)
    assert install_folder(link) == tmp_path / "prefix"


def test_a_virtualenv_program_brings_the_venv_and_its_base_interpreter(tmp_path: Path) -> None:
    base = tmp_path / "python3.11"
    (base / "bin").mkdir(parents=True)
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text(f"home = {base / 'bin'}\n")
    (venv / "bin" / "python").symlink_to(base / "bin" / "python3.11")
    assert install_folder(venv / "bin" / "python") == venv
    assert venv_paths(venv) == [venv, base]


def test_a_program_in_the_operators_home_brings_only_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "tool").write_text("")
    assert install_folder(tmp_path / "tool") == tmp_path / "tool"


def test_mode_off_means_no_sandbox(tmp_path: Path) -> None:
    off = SandboxConfig(mode="off")
    cfg = AgentConfig(kind="command", argv=["/bin/true"])
    kw = {"worktree": tmp_path, "run_dir": tmp_path, "prompt_file": tmp_path / "p", "state_dir": tmp_path}
    assert agent_spec(off, cfg, argv=["/bin/true"], **kw) is None
    assert command_spec(off, tmp_path, tmp_path) is None
    assert command_spec(None, tmp_path, tmp_path) is None


def test_an_agent_never_gets_the_root_or_the_operators_home_read_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    cfg = AgentConfig(kind="command", argv=["/bin/true"], ro_paths=["/", str(tmp_path / "home"), "/opt/tools"])
    box = agent_spec(
        SandboxConfig(), cfg, argv=["/bin/true"], worktree=tmp_path, run_dir=tmp_path / "run",
        prompt_file=tmp_path / "p", state_dir=tmp_path / "state", env={"CREDENTIALS_DIRECTORY": "/run/creds"},
    )  # fmt: skip
    assert box is not None
    assert Path("/") not in box.ro_paths and tmp_path / "home" not in box.ro_paths
    assert Path("/opt/tools") in box.ro_paths
    assert set(box.hidden) == {tmp_path / "state", Path("/run/creds")}
    assert box.home == tmp_path / "run" / "home"
