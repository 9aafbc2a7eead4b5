"""``git`` without blocking the event loop, and the errors of a workspace.

    AgentosError
     └── WorkspaceError       a workspace operation failed
          ├── GitError        a git command exited non-zero or timed out
          ├── PushRejected    (_worktree.py) the remote moved: the lease did not hold
          └── HookFailed      (_worktree.py) a hook that must pass did not

(``agentos.workspace`` re-exports all four.)

:func:`git` supplies agentos's own identity through ``-c`` options so commits never depend on the
machine's global config, turns hooks and fsmonitor off (:data:`GIT_SAFETY`), and runs git in the C locale
so the messages we look at are stable. Shell commands (tests, hooks) and the process-group kill policy are in
:mod:`agentos.proc`.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from agentos.errors import AgentosError
from agentos.proc import signal_group

GIT_IDENTITY = ("-c", "user.name=agentos", "-c", "user.email=agentos@localhost")
GIT_SAFETY = ("-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false")
"""No hook and no fsmonitor command ever runs in agentos's own git commands: an agent can write both into the
clone its worktree shares (``hooks/``, ``config``), and they would run with the daemon's environment."""
GIT_ENV_KEEP = frozenset(
    {
        *("PATH", "HOME", "USER", "LOGNAME", "LANG", "TZ", "TMPDIR"),
        *("XDG_CONFIG_HOME", "GIT_CONFIG_GLOBAL", "GIT_CONFIG_SYSTEM", "GIT_CONFIG_NOSYSTEM"),
        *("SSH_AUTH_SOCK", "GIT_SSH", "GIT_SSH_COMMAND", "GIT_SSH_VARIANT"),
        *("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy", "no_proxy"),
        *("GIT_SSL_CAINFO", "GIT_SSL_CAPATH", "SSL_CERT_FILE", "SSL_CERT_DIR"),
    }
)
"""What git inherits from the daemon's environment (and ``LC_*``): where it finds programs, the user's git
config, ssh agent and proxy and CA settings. Everything else (tokens, API keys) stays out (docs/security.md)."""


class WorkspaceError(AgentosError):
    """A workspace operation (git, a worktree, a hook) failed."""


class GitError(WorkspaceError):
    """A git command failed; the message is one line: the command and the tail of its stderr."""

    def __init__(self, args: tuple[str, ...], code: int, err: str) -> None:
        self.command = args
        self.code = code
        self.err = err
        tail = " ".join([line.strip() for line in err.splitlines() if line.strip()][-3:])[-300:]
        super().__init__(f"git {' '.join(args)} failed ({code}): {tail or 'no output'}")


@dataclass(frozen=True)
class GitResult:
    code: int
    out: str
    err: str

    @property
    def ok(self) -> bool:
        return self.code == 0


def git_environ(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """An allowlist of the daemon's environment (:data:`GIT_ENV_KEEP`) plus ``env``, with prompts off and
    messages in the C locale.

    Nothing else is inherited: ``GITHUB_TOKEN``, ``TELEGRAM_BOT_TOKEN``, an agent's API key never reach git or
    what git runs (a local remote's ``pre-receive``/``post-receive`` hooks, ``core.sshCommand``…). The git
    credentials agentos itself uses come in ``env`` (:meth:`GitHubForge.git_credentials`). Variables that
    point git at another repository (``GIT_DIR``…) are not in the allowlist: ``cwd`` decides.
    """
    merged = {k: v for k, v in os.environ.items() if k in GIT_ENV_KEEP or k.startswith("LC_")}
    merged.update({"GIT_TERMINAL_PROMPT": "0", "GIT_EDITOR": "true", "GIT_MERGE_AUTOEDIT": "no", "LC_ALL": "C"})
    if env:
        merged.update(env)
    return merged


async def git(
    *args: str,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    timeout: float = 120,
) -> GitResult:
    """Run ``git args…`` in ``cwd``; raise :class:`GitError` on failure when ``check``.

    ``env`` is added to :func:`git_environ`'s allowlist. A timeout kills git and raises :class:`GitError`
    whatever ``check`` says: a git that hung has not answered the question.
    """
    argv = ("git", *GIT_IDENTITY, *GIT_SAFETY, *args)
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=git_environ(env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        async with asyncio.timeout(timeout):
            out_b, err_b = await proc.communicate()
    except TimeoutError:
        signal_group(proc.pid, signal.SIGKILL)
        await proc.wait()
        raise GitError(args, -1, f"timed out after {timeout:g}s") from None
    except BaseException:
        signal_group(proc.pid, signal.SIGKILL)
        raise
    result = GitResult(proc.returncode or 0, out_b.decode("utf-8", "replace"), err_b.decode("utf-8", "replace"))
    if check and result.code != 0:
        raise GitError(args, result.code, result.err or result.out)
    return result


def local_git_dir(where: str) -> Path | None:
    """The git dir of a repository named by a local path: ``<path>/.git`` (a directory, or a gitfile git follows)
    when it exists, else ``<path>`` itself (a bare repository). None for a URL or a path that is not a directory.

    The same order as ``git upload-pack`` tries, so it is the repository ``ls-remote <path>`` and ``fetch`` read.
    """
    if "://" in where or not where.startswith("/"):
        return None
    path = Path(where)
    if not path.is_dir():
        return None
    dot_git = path / ".git"
    return dot_git if dot_git.exists() else path


async def read_refs(
    git_dir: Path, *patterns: str, env: Mapping[str, str] | None = None, timeout: float = 120
) -> dict[str, str] | None:
    """Ref → object of the repository at ``git_dir`` (patterns as ``git for-each-ref`` takes them: ``refs/heads``
    is every branch), in one ``for-each-ref``: no ``upload-pack`` process as ``ls-remote`` needs. None when git
    could not read them (not a repository, ownership refused…): the caller asks ``ls-remote`` instead.

    An annotated tag maps to the tag object, as in ``ls-remote`` (whose peeled ``^{}`` lines have no equivalent);
    ``HEAD`` is not listed.
    """
    res = await git(
        f"--git-dir={git_dir}",
        "for-each-ref",
        "--format=%(objectname) %(refname)",
        *patterns,
        cwd=git_dir.parent if git_dir.name == ".git" else git_dir,  # a gitfile is no directory to run in
        env=env,
        check=False,
        timeout=timeout,
    )
    if not res.ok:
        return None
    refs: dict[str, str] = {}
    for line in res.out.splitlines():
        sha, _, ref = line.partition(" ")
        if ref:
            refs[ref] = sha
    return refs
