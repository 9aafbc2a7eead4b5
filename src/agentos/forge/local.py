"""The embedded forge: issues are Markdown files, pull requests are JSON records over real branches.

Layout under the state dir, readable with ``ls`` and ``cat``::

    local-forge/<repo>/issues/<n>.md     YAML front matter, the body, then the comments
    local-forge/<repo>/pulls/<n>.json    head, base, state, head sha, merge record, checks cache
    local-forge/<repo>/counter.json      the last number and comment id handed out
    local-forge/<repo>/.lock             flock: the daemon and ``agentos issue …`` share these files

An issue file::

    ---
    number: 3
    title: Add a --verbose flag
    state: open
    labels:
    - agentos:ready
    author: alice
    created: '2025-01-02T03:04:05Z'
    updated: '2025-01-02T03:04:05Z'
    ---

    The body, as written.

    ---
    ### comment 7 · agentos · 2025-01-02T03:10:00Z

    The comment, ending with its hidden key marker.
    <!-- agentos:key=attempt-1 -->

Issues and PRs share one number space, as on GitHub. Every change is a load-modify-save under the
lock with an atomic replace. The "remote" of a repo is the user's repository at ``RepoConfig.path``:
task branches are pushed there, ``checks`` runs the repo's test command on the merge result in a
scratch worktree of agentos's clone, and ``merge_pr`` pushes a squash commit to its base branch.

:class:`LocalForge` is the forge's face. Its parts: :class:`~agentos.forge._local_files.ForgeFiles` (the file
formats, the counter and the locks), :class:`~agentos.forge._local_checks.LocalChecks` (checks and merges, over
the same files), and the daemon's one workspace registry (a :class:`agentos.ports.Workspaces`), given to the
constructor, so the forge's checks and merges use the clone the executor uses.
"""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Literal

import structlog

from agentos.config import RepoConfig
from agentos.forge._local_checks import LocalChecks, user_repository
from agentos.forge._local_files import (
    ForgeFiles,
    PullRecord,
    closing_issues,
    one_line,
    parse_issue_file,
    render_issue_file,
    utcnow,
)
from agentos.forge._local_reviews import LocalReviews
from agentos.forge.base import (
    BLOCKED_LABEL,
    READY_LABEL,
    RUNNING_LABEL,
    BoardStatus,
    Checks,
    Comment,
    ForgeError,
    Issue,
    IssueWriter,
    MergeResult,
    PullRequest,
    marker,
)
from agentos.gitutil import git, local_git_dir, read_refs
from agentos.ports import Workspaces
from agentos.runners.egress import EgressProxy
from agentos.workspace import Workspace
from agentos.workspace_registry import WorkspaceRegistry

__all__ = ["LocalForge", "closing_issues", "parse_issue_file", "render_issue_file"]

log = structlog.get_logger(__name__)


class LocalForge:
    """The :class:`~agentos.forge.base.Forge` of files in the state dir over the user's repositories.

    ``workspaces`` is the daemon's one registry of clones; without one (``agentos issue``, tests) the forge keeps
    its own over ``git_env``.
    """

    kind = "local"
    checks_merge_result = True  # checks test the merge result itself: a PR behind its base needs no rebase first
    merge_queue = None  # the local forge has no merge queue of its own: agentos's queue merges
    credentials = None  # its remotes are paths on this machine: git needs no credentials

    def __init__(
        self,
        root: Path,
        repos: Mapping[str, RepoConfig],
        *,
        clock: Callable[[], datetime] = utcnow,
        git_env: Mapping[str, str] | None = None,
        workspaces: Workspaces | None = None,
        egress: EgressProxy | None = None,
    ) -> None:
        self.root = Path(root).expanduser().resolve()
        self.git_env = dict(git_env or {})
        self.files = ForgeFiles(self.root, repos, clock=clock)
        self.workspaces: Workspaces = workspaces or WorkspaceRegistry(
            self.root, lambda repo: (user_repository(repo), self.git_env)
        )
        self.checker = LocalChecks(self.files, self.workspaces, git_env=self.git_env, egress=egress)
        self.review_files = LocalReviews(self.files)

    def __repr__(self) -> str:
        return f"LocalForge(root={str(self.base_dir)!r}, repos={sorted(self.repos)})"

    @property
    def base_dir(self) -> Path:
        return self.files.base_dir

    @property
    def repos(self) -> dict[str, RepoConfig]:
        return self.files.repos

    @property
    def clock(self) -> Callable[[], datetime]:
        return self.files.clock

    @property
    def issue_writer(self) -> IssueWriter:
        return self

    @property
    def reviews(self) -> LocalReviews:
        """Reviews and PR comments (``agentos pr review|comment``), read by the PR monitor."""
        return self.review_files

    def reconfigure(self, repos: Sequence[RepoConfig]) -> None:
        """The repositories of a reloaded config: issues and PRs of a new repo are served from now on."""
        self.files.repos = {r.name: r for r in repos}

    def remote_url(self, repo: str) -> str:
        """The repository that stands for the remote of ``repo`` (see :func:`user_repository`)."""
        return user_repository(self.files.config(repo))

    def workspace(self, repo: str) -> Workspace:
        return self.workspaces.workspace(self.files.config(repo))

    # ------------------------------------------------------------ issues

    async def new_issue(
        self,
        repo: str,
        title: str,
        body: str = "",
        labels: Iterable[str] = (),
        *,
        author: str | None = None,
        key: str | None = None,
    ) -> Issue:
        """Open an issue (the ``agentos issue new`` command). With ``key``, an issue (open or closed) already
        carrying it is returned instead: a retried command files one issue, whichever process ran it first."""
        tag = marker(key) if key else None

        def op() -> Issue:
            if tag is None:
                return self._create(repo, title, body, list(labels), author or _user())
            for number in self.files.numbers(repo, "issues"):
                issue = self.files.read_issue(repo, number)[0]
                if tag in issue.body:
                    return issue
            full = f"{body.rstrip()}\n\n{tag}".lstrip("\n")
            return self._create(repo, title, full, list(labels), author or _user())

        return await self.files.mutate(repo, op)

    def _create(self, repo: str, title: str, body: str, labels: list[str], author: str) -> Issue:
        number = self.files.allocate(repo, "number")
        now = self.clock()
        issue = Issue(
            repo=repo,
            number=number,
            title=one_line(title),
            body=body.strip("\n"),
            labels=list(dict.fromkeys(labels)),
            author=author,
            created_at=now,
            updated_at=now,
            url=self.files.issue_path(repo, number).as_uri(),
        )
        self.files.write_issue(issue, [])
        log.info("issue_created", repo=repo, number=number, title=issue.title)
        return issue

    async def set_ready(self, repo: str, number: int) -> Issue:
        """Label the issue ``agentos:ready`` (and no longer blocked): the dispatcher will pick it up."""
        await self.files.relabel(repo, number, add=[READY_LABEL], remove=[BLOCKED_LABEL])
        return await self.get_issue(repo, number)

    async def ready_issues(self, repo: str) -> list[Issue]:
        issues = [i for i in await self.list_issues(repo) if READY_LABEL in i.labels]
        return sorted(issues, key=lambda i: (i.created_at, i.number))

    async def get_issue(self, repo: str, number: int) -> Issue:
        return (await asyncio.to_thread(self.files.read_issue, repo, number))[0]

    async def list_issues(self, repo: str, *, state: Literal["open", "closed", "all"] = "open") -> list[Issue]:
        def read() -> list[Issue]:
            issues = [self.files.read_issue(repo, n)[0] for n in self.files.numbers(repo, "issues")]
            return [i for i in issues if state == "all" or i.state == state]

        return await asyncio.to_thread(read)

    async def create_issue(self, repo: str, title: str, body: str, labels: list[str], *, key: str) -> Issue:
        tag = marker(key)

        def op() -> Issue:
            for number in self.files.numbers(repo, "issues"):
                issue = self.files.read_issue(repo, number)[0]
                if issue.state == "open" and tag in issue.body:
                    return issue
            full = body if tag in body else f"{body.rstrip()}\n\n{tag}".lstrip("\n")
            return self._create(repo, title, full, labels, "agentos")

        return await self.files.mutate(repo, op)

    async def comment(self, repo: str, number: int, body: str, *, key: str) -> Comment:
        tag = marker(key)
        full = body if tag in body else f"{body.rstrip()}\n\n{tag}".lstrip("\n")

        def op() -> Comment:
            files = self.files
            if files.is_issue(repo, number):
                issue, comments = self.files.read_issue(repo, number)
                found = next((c for c in comments if tag in c.body), None)
                if found is not None:
                    return found
                new = Comment(id=files.allocate(repo, "comment"), author="agentos", body=full, created_at=self.clock())
                files.write_issue(issue.model_copy(update={"updated_at": new.created_at}), [*comments, new])
                return new
            record = self.files.read_pull(repo, number)
            found = next((c for c in record.comments if tag in c.body), None)
            if found is not None:
                return found
            new = Comment(id=self.files.allocate(repo, "comment"), author="agentos", body=full, created_at=self.clock())
            record.comments.append(new)
            record.updated = new.created_at
            self.files.write_pull(repo, record)
            return new

        return await self.files.mutate(repo, op)

    async def comments(self, repo: str, number: int) -> list[Comment]:
        def read() -> list[Comment]:
            if self.files.is_issue(repo, number):
                return self.files.read_issue(repo, number)[1]
            return self.files.read_pull(repo, number).comments

        return await asyncio.to_thread(read)

    async def add_labels(self, repo: str, number: int, labels: list[str]) -> None:
        await self.files.relabel(repo, number, add=labels, remove=[])

    async def remove_label(self, repo: str, number: int, label: str) -> None:
        await self.files.relabel(repo, number, add=[], remove=[label])

    async def close_issue(self, repo: str, number: int) -> None:
        await self.files.update_issue(repo, number, state="closed")

    async def set_board_status(self, repo: str, issue: int, status: BoardStatus) -> None:
        """No board here: the labels that mirror it are the status."""
        add, remove = {
            "Ready": ([READY_LABEL], []),
            "In Progress": ([RUNNING_LABEL], []),
            "Blocked": ([BLOCKED_LABEL], [RUNNING_LABEL]),
            "In Review": ([], [RUNNING_LABEL]),
            "Done": ([], [RUNNING_LABEL]),
        }[status]
        await self.files.relabel(repo, issue, add=add, remove=remove)

    # ------------------------------------------------------------ pull requests

    async def _remote_heads(self, repo: str) -> dict[str, str]:
        """Branch → sha in the user's repository: one ``for-each-ref`` there when it is a local path, else (a URL,
        or git refused to read it that way) ``ls-remote``, which also runs ``upload-pack``."""
        remote = self.remote_url(repo)
        git_dir = local_git_dir(remote)
        if git_dir is not None and (refs := await read_refs(git_dir, "refs/heads", env=self.git_env)) is not None:
            return {ref.removeprefix("refs/heads/"): sha for ref, sha in refs.items()}
        self.base_dir.mkdir(parents=True, exist_ok=True)
        res = await git("ls-remote", "--heads", remote, cwd=self.base_dir, env=self.git_env, check=False)
        if not res.ok:
            raise ForgeError(f"cannot read the branches of {remote}: {res.err.strip()[-200:]}")
        heads = {}
        for line in res.out.splitlines():
            sha, _, ref = line.partition("\t")
            if ref.startswith("refs/heads/"):
                heads[ref.removeprefix("refs/heads/")] = sha
        return heads

    def _to_pr(self, repo: str, record: PullRecord, heads: Mapping[str, str] | None = None) -> PullRequest:
        head_sha = record.head_sha
        if heads is not None and record.state == "open":
            head_sha = heads.get(record.head, head_sha)
        mergeable = None
        cache = record.checks
        if (
            cache is not None
            and cache.head_sha == head_sha
            and (heads is None or heads.get(record.base) == cache.base_sha)
        ):
            mergeable = cache.mergeable
        return PullRequest(
            repo=repo,
            number=record.number,
            title=record.title,
            body=record.body,
            head=record.head,
            base=record.base,
            state=record.state,
            head_sha=head_sha,
            mergeable=mergeable,
            created_at=record.created,
            url=self.files.pull_path(repo, record.number).as_uri(),
            labels=list(record.labels),
        )

    async def find_pr(self, repo: str, head: str) -> PullRequest | None:
        records = await asyncio.to_thread(self.files.records, repo)
        records = [r for r in records if r.head == head and r.state != "closed"]
        if not records:
            return None
        best = max(records, key=lambda r: (r.state == "open", r.number))
        return self._to_pr(repo, best, await self._remote_heads(repo) if best.state == "open" else None)

    async def open_pr(self, repo: str, *, head: str, base: str, title: str, body: str) -> PullRequest:
        heads = await self._remote_heads(repo)
        if head not in heads:
            raise ForgeError(f"branch {head!r} is not in {self.remote_url(repo)}: push it first")
        if base not in heads:
            raise ForgeError(f"base branch {base!r} is not in {self.remote_url(repo)}")

        def op() -> PullRecord:
            for record in self.files.records(repo):
                if record.head == head and record.state == "open":
                    return record
            now = self.clock()
            record = PullRecord(
                number=self.files.allocate(repo, "number"),
                title=one_line(title),
                body=body,
                head=head,
                base=base,
                head_sha=heads[head],
                created=now,
                updated=now,
            )
            self.files.write_pull(repo, record)
            log.info("pr_opened", repo=repo, number=record.number, head=head, base=base)
            return record

        return self._to_pr(repo, await self.files.mutate(repo, op), heads)

    async def get_pr(self, repo: str, number: int) -> PullRequest:
        record = await asyncio.to_thread(self.files.read_pull, repo, number)
        return self._to_pr(repo, record, await self._remote_heads(repo) if record.state == "open" else None)

    async def open_prs(self, repo: str) -> list[PullRequest]:
        records = [r for r in await asyncio.to_thread(self.files.records, repo) if r.state == "open"]
        if not records:
            return []
        heads = await self._remote_heads(repo)
        return [self._to_pr(repo, r, heads) for r in records]

    async def close_pr(self, repo: str, number: int, *, comment: str = "") -> None:
        if comment:
            await self.comment(repo, number, comment, key=f"close-pr-{number}")

        def op() -> None:
            record = self.files.read_pull(repo, number)
            if record.state == "open":
                record.state, record.updated = "closed", self.clock()
                self.files.write_pull(repo, record)
                log.info("pr_closed", repo=repo, number=number)

        await self.files.mutate(repo, op)

    # ------------------------------------------------------------ checks and merges (LocalChecks)

    async def checks(self, repo: str, number: int) -> Checks:
        """The test command on the merge result of head into the current base, cached per (head, base)."""
        return await self.checker.checks(repo, number)

    async def merge_pr(self, repo: str, number: int, *, sha: str, title: str, body: str) -> MergeResult:
        """Squash the head onto the base in the user's repository if the head is still ``sha``."""
        return await self.checker.merge_pr(repo, number, sha=sha, title=title, body=body)

    async def aclose(self) -> None:
        return None


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "local"
