"""Whether a repo's ``path`` can be worked on: it exists, is a git repository, and the daemon may write it.

``agentos config validate`` and ``agentos doctor`` refuse a path that fails here, with one line naming the
repo and the path; the daemon should refuse such a repo the same way (at start, on reload and before a
dispatch) instead of spending every attempt on "Could not read from remote repository".
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

GIT_TIMEOUT_S = 10.0

ServiceUser = tuple[str, int, set[int]]
"""A user as (name, uid, group ids)."""


def path_problem(path: Path, *, git: str | None = None) -> str | None:
    """Why ``path`` is not a git repository agentos can use (``… does not exist``), or None when it is one."""
    if not path.exists():
        return f"{path} does not exist"
    if not path.is_dir():
        return f"{path} is not a directory"
    found = _rev_parse(path, git)
    if found is None:
        return f"{path} is not a git repository"
    _, up = found
    if up:
        top = (path / up).resolve()
        return f"{path} is a folder inside the git repository {top}: give the repository's top folder"
    return None


def git_dir_of(path: Path, *, git: str | None = None) -> Path | None:
    """The git directory of the repository whose top folder is ``path`` (``.git``, or ``path`` when bare)."""
    found = _rev_parse(path, git)
    return found[0] if found is not None and not found[1] else None


def _rev_parse(path: Path, git: str | None) -> tuple[Path, str] | None:
    """(git dir, the way up to the top folder: ``""`` at the top or in a bare repository), or None."""
    program = git or shutil.which("git")
    if program is None:  # no git to ask: a .git entry, or the layout of a bare repository
        if (path / ".git").exists():
            return path / ".git", ""
        bare = all((path / name).exists() for name in ("HEAD", "objects", "refs"))
        return (path, "") if bare else None
    try:
        res = subprocess.run(
            [program, "-C", str(path), "rev-parse", "--absolute-git-dir", "--show-cdup"],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            errors="replace",
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = res.stdout.splitlines()
    if res.returncode != 0 or not lines or not lines[0].strip():
        return None
    return Path(lines[0].strip()), (lines[1].strip() if len(lines) > 1 else "")


def writable_by(path: Path, uid: int, gids: set[int]) -> bool:
    """Whether the user ``uid`` (in groups ``gids``) may create files in the directory ``path`` (mode bits;
    ACLs and read-only mounts are not seen)."""
    if uid == 0:
        return True
    try:
        st = path.stat()
    except OSError:
        return False
    if st.st_uid == uid:
        return bool(st.st_mode & stat.S_IWUSR and st.st_mode & stat.S_IXUSR)
    if st.st_gid in gids:
        return bool(st.st_mode & stat.S_IWGRP and st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IWOTH and st.st_mode & stat.S_IXOTH)


def closed_ancestor(path: Path, uid: int, gids: set[int]) -> Path | None:
    """The first folder above ``path`` the user ``uid`` may not enter (a 0700 home directory), or None."""
    if uid == 0:
        return None
    for folder in reversed(path.absolute().parents):
        try:
            st = folder.stat()
        except OSError:
            return folder
        if st.st_uid == uid:
            bit = stat.S_IXUSR
        elif st.st_gid in gids:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return folder
    return None


def service_user(name: str) -> ServiceUser | None:
    """The user ``name`` as (name, uid, groups), or None when there is no such user."""
    import grp
    import pwd

    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    groups = {g.gr_gid for g in grp.getgrall() if name in g.gr_mem} | {entry.pw_gid}
    return entry.pw_name, entry.pw_uid, groups


def current_user() -> ServiceUser:
    """Whoever runs this process."""
    import pwd

    uid = os.geteuid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = str(uid)
    return name, uid, {os.getegid(), *os.getgroups()}


def repo_problems(repos: list[tuple[str, str | None]]) -> list[str]:
    """One line per repo whose path is unusable: ``repos.calc.path: /srv/calc does not exist``.

    ``repos`` are (name, path) pairs; a repo with no path (GitHub: agentos clones it) is fine.
    """
    git = shutil.which("git")
    problems = []
    for name, raw in repos:
        if raw:
            problem = path_problem(Path(raw).expanduser(), git=git)
            if problem:
                problems.append(f"repos.{name}.path: {problem}")
    return problems
