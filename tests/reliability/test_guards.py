"""The guards the misbehaviour tests and the soak rely on, each on its own, over real git.

* agentos's own git never runs a hook or an fsmonitor an agent planted in the clone it shares;
* a worktree's guard puts back a replaced ``.git`` and a tampered clone, and sees a rewritten branch and a
  push of the attempt's commits elsewhere;
* the pre-push scan names secrets by kind, never by value, and ignores the loose shapes.
"""

from __future__ import annotations

import os
from pathlib import Path

from agentos.gitutil import git
from agentos.redact import Redactor, find_secrets
from tests.integration.test_workspace import GIT_ENV, commit_file, make_ws, origin, run  # noqa: F401

TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0" + "KkLlMmNnOoPpQqRrSs"


async def test_agentos_git_runs_no_planted_hook(tmp_path: Path, origin: Path) -> None:  # noqa: F811
    """Hooks in hooks/ and under core.hooksPath, and core.fsmonitor: none runs in agentos's git commands."""
    pwned = tmp_path / "pwned"
    hooks = tmp_path / "evil-hooks"
    hooks.mkdir()
    for folder in (origin / ".git" / "hooks", hooks):
        for name in ("pre-commit", "post-commit", "reference-transaction"):
            (folder / name).write_text(f"#!/bin/sh\necho {name} >> '{pwned}'\n")
            (folder / name).chmod(0o755)
    monitor = tmp_path / "fsmonitor.sh"
    monitor.write_text(f"#!/bin/sh\necho fsmonitor >> '{pwned}'\n")
    monitor.chmod(0o755)
    await run("config", "core.fsmonitor", str(monitor), cwd=origin)
    await commit_file(origin, "b.txt", "b\n", "hooks stay quiet")  # through agentos.gitutil.git
    await run("status", cwd=origin)
    assert not pwned.exists()
    await run("config", "core.hooksPath", str(hooks), cwd=origin)
    await commit_file(origin, "c.txt", "c\n", "still quiet")
    assert not pwned.exists()
    plain = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}  # the same commit by a plain git
    (origin / "d.txt").write_text("d\n")
    os.spawnvpe(os.P_WAIT, "git", ["git", "-C", str(origin), "add", "d.txt"], plain)
    os.spawnvpe(
        os.P_WAIT,
        "git",
        ["git", "-C", str(origin), "-c", "user.name=u", "-c", "user.email=u@u", "commit", "-qm", "d"],
        plain,
    )
    assert "post-commit" in pwned.read_text()  # the hooks were real


class TestWorktreeGuard:
    async def test_replaced_link_and_tampered_clone_are_put_back(self, tmp_path: Path, origin: Path) -> None:  # noqa: F811
        ws = make_ws(tmp_path, origin)
        path = await ws.prepare("agentos/1-a")
        start = await ws.head_sha(path)
        guard = await ws.guard(path)
        link = (path / ".git").read_bytes()
        (path / ".git").unlink()
        await git("init", "-q", cwd=path, env=GIT_ENV)  # a repository of its own in place of the link
        (ws.clone_path / "hooks" / "post-commit").write_text("#!/bin/sh\nexit 0\n")
        config = (ws.clone_path / "config").read_text()
        (ws.clone_path / "config").write_text(config + "[core]\n\thooksPath = /tmp/x\n")
        breaches = await ws.check_guard(path, guard, branch="agentos/1-a", since=start)
        assert [b.kind for b in breaches] == ["link", "shared"]
        assert "hooks/post-commit" in breaches[1].detail and "config" in breaches[1].detail
        assert (path / ".git").read_bytes() == link
        assert not (ws.clone_path / "hooks" / "post-commit").exists()
        assert (ws.clone_path / "config").read_text() == config
        assert await ws.head_sha(path) == start  # the worktree works again

    async def test_rewritten_or_left_branch_and_foreign_push_are_seen(self, tmp_path: Path, origin: Path) -> None:  # noqa: F811
        ws = make_ws(tmp_path, origin)
        path = await ws.prepare("agentos/1-a")
        (path / "a.txt").write_text("1\n")
        start = await ws.commit_all(path, "partial")
        assert start is not None
        guard = await ws.guard(path)
        assert await ws.check_guard(path, guard, branch="agentos/1-a", since=start) == []
        await git("commit", "-q", "--amend", "-m", "rewritten", cwd=path, env=GIT_ENV)
        [history] = await ws.check_guard(path, guard, branch="agentos/1-a", since=start)
        assert history.kind == "history" and "no longer descends" in history.detail
        await ws.restore_branch(path, "agentos/1-a", start)
        await git("checkout", "-q", "-b", "elsewhere", cwd=path, env=GIT_ENV)  # work that left the branch
        (path / "c.txt").write_text("3\n")
        elsewhere = await ws.commit_all(path, "on another branch")
        assert await ws.check_guard(path, guard, branch="agentos/1-a", since=start) == []
        assert await run("symbolic-ref", "HEAD", cwd=path) == "refs/heads/agentos/1-a"  # put back, work kept
        assert await ws.rev("refs/heads/agentos/1-a") == elsewhere
        await ws.restore_branch(path, "agentos/1-a", start)
        (path / "b.txt").write_text("2\n")
        await ws.commit_all(path, "more")
        await git("push", "-q", str(origin), "HEAD:refs/heads/shortcut", cwd=path, env=GIT_ENV)
        [pushed] = await ws.check_guard(path, guard, branch="agentos/1-a", since=start)
        assert pushed.kind == "remote" and "refs/heads/shortcut" in pushed.detail


def test_secret_scan_names_kinds_never_values() -> None:
    assert find_secrets(f'TOKEN = "{TOKEN}"') == ["GitHub token"]
    assert find_secrets("-----BEGIN RSA PRIVATE KEY-----\nabc\n") == ["private key"]
    assert find_secrets("Authorization: Bearer abcdefghijkl") == []  # loose shapes: redacted, not refused
    assert find_secrets("https://user:password123@example.com/x") == []
    assert Redactor(["s3cr3t-value-42"]).find("x = 's3cr3t-value-42'") == ["a configured secret"]
    assert all(TOKEN not in kind for kind in find_secrets(TOKEN))
