"""``agentos init``, part 2: the config document: a commented template, a merge that keeps every key
and comment (:func:`merge_plan`), validation before writing, a timestamped backup, and token files.
"""

from __future__ import annotations

import io
import os
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentos.cli.init_plan import AGENT_DEFAULTS, MODE_COMMENT, InitError, Plan

if TYPE_CHECKING:
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap

    from agentos.config import Config


def yaml_rt() -> YAML:
    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def template(forge: str, now: datetime) -> str:
    """A new config file, commented like ``config/agentos.example.yaml``; the plan is merged into it."""
    github = (
        "github:\n  api_url: https://api.github.com\n  ready_label: agentos:ready\n  poll_interval_s: 60\n"
        if forge == "github"
        else "# github:                               # needed when forge: github\n"
        "#   api_url: https://api.github.com\n#   ready_label: agentos:ready\n"
    )
    return f"""\
# agentos configuration, written by `agentos init` on {now:%Y-%m-%d %H:%M}.
# Every key and its default: docs/configuration.md (and config/agentos.example.yaml).
# Check it with `agentos config validate FILE`; change one value keeping comments with
# `agentos config set KEY VALUE`; re-run `agentos init` to add repos (it merges, keeping your edits).
# Secrets never go here: see "Secrets" at the end.

# Where the task graph, journal, agent logs, worktrees and the local forge live.
# Under systemd, $STATE_DIRECTORY (/var/lib/agentos) is used when this is left at its default.
state_dir: ~/.local/state/agentos

# Where issues and pull requests live: local (files under state_dir, no tokens) or github.
forge: {forge}

# How many agents run at once, in all and per repository.
max_parallel_workers: 2
max_parallel_per_repo: 2

# debug | info | warning | error
log_level: info

# The IANA zone of cron triggers, the daily digest and the budgets' midnights (Europe/Berlin, UTC…).
timezone: UTC

# The repositories agentos works on. test_command must pass before a PR opens.
# automation_mode: dispatcher_only opens PRs and waits for `agentos ctl approve repo#N` (start here);
# full merges a PR by itself once its checks are green.
repos: []

# The coding-agent CLIs. pass_env lists the variables copied from the daemon's environment
# (API keys); nothing else is passed. binary: looked up on PATH when not absolute.
agents: {{}}

routing:
  default: []                           # the chain of agents for task types with no chain of their own
  max_attempts: 4                       # then escalate (label agentos:blocked, comment, notify)

limits:
  idle_timeout_minutes: 10              # no agent output for this long: stalled, killed
  max_runtime_minutes: 40               # wall-clock cap per attempt

jobs:                                   # per job: enabled, and cron or interval_s
  dispatch: {{interval_s: 60}}             # how often ready issues are picked up
  pr_monitor: {{cron: "*/5 * * * *"}}      # merge, rebase, send red CI back

telegram:
  enabled: false
  allowed_chat_ids: []                  # only these chats get answers
  digest_hour: 8

# The read-only status page, JSON API and Prometheus metrics (docs/operations.md). A host other than
# 127.0.0.1 needs a bearer token: `agentos init` stores one as the credential status_page_token.
status_page:
  enabled: false
  host: 127.0.0.1
  port: 8787

{github}
# Secrets, from the environment or systemd credentials ($CREDENTIALS_DIRECTORY/<name>);
# `agentos init` stores them in its credentials directory and loads them with LoadCredential=:
#   GITHUB_TOKEN        or credential github_token
#   GITHUB_APP_KEY      or credential github_app_key (a GitHub App's private key, with github.app_id)
#   TELEGRAM_BOT_TOKEN  or credential telegram_bot_token
#   STATUS_PAGE_TOKEN   or credential status_page_token (needed when status_page.host is not loopback)
"""


def _flow(items: list[Any]) -> Any:
    from ruamel.yaml.comments import CommentedSeq

    seq = CommentedSeq(items)
    seq.fa.set_flow_style()
    return seq


def _map(doc: CommentedMap, key: str, changes: list[str], comment: str | None = None) -> CommentedMap:
    """``doc[key]`` as a block mapping, created (at the end, with a comment) when missing."""
    from ruamel.yaml.comments import CommentedMap

    node = doc.get(key)
    if not isinstance(node, CommentedMap):
        node = CommentedMap()
        doc[key] = node
        if comment:
            doc.yaml_set_comment_before_after_key(key, before=f"\n{comment}")
        changes.append(f"added {key}")
    return node


def _set(node: dict[str, Any], key: str, value: Any, changes: list[str], where: str) -> None:
    if node.get(key) != value:
        node[key] = value
        changes.append(f"{where}{key} = {value}")


def _last_path(node: Any) -> list[tuple[Any, Any]]:
    """``(container, key)`` pairs down the last item of a block collection, stopping at flow style."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    path: list[tuple[Any, Any]] = []
    while isinstance(node, CommentedMap | CommentedSeq) and node:
        key = list(node.keys())[-1] if isinstance(node, CommentedMap) else len(node) - 1
        path.append((node, key))
        node = node[key]
        if isinstance(node, CommentedMap | CommentedSeq) and node.fa.flow_style():
            break
    return path


def _take_blank_lines(node: Any) -> str:
    """Cut the blank lines that end ``node`` (the gap before the next section) and return them."""
    from ruamel.yaml.comments import CommentedMap

    for container, key in reversed(_last_path(node)):
        slot = container.ca.items.get(key)
        token = (slot[2] if isinstance(container, CommentedMap) else slot[0]) if slot else None
        if token is not None:
            kept = token.value.rstrip("\n")
            blank = len(token.value) - len(kept) - 1
            if blank > 0:
                token.value = kept + "\n"
                return "\n" * blank
            return ""
    return ""


def _give_blank_lines(node: Any, blank: str) -> None:
    """Put ``blank`` lines after the last item of ``node`` (where :func:`_take_blank_lines` took them)."""
    from ruamel.yaml.comments import CommentedMap
    from ruamel.yaml.error import CommentMark
    from ruamel.yaml.tokens import CommentToken

    path = _last_path(node)
    if not blank or not path:
        return
    container, key = path[-1]
    if isinstance(container, CommentedMap):
        slot = container.ca.items.setdefault(key, [None, None, None, None])
        index = 2
    else:
        slot = container.ca.items.setdefault(key, [None, None])
        index = 0
    token = slot[index]
    if token is None:
        slot[index] = CommentToken("\n" + blank, CommentMark(0), None)
    else:
        token.value = (token.value if token.value.endswith("\n") else token.value + "\n") + blank


def _insert_scalar(doc: CommentedMap, key: str, value: Any, anchors: tuple[str, ...], changes: list[str]) -> None:
    """Set a top-level scalar; a new one goes right under the first of ``anchors`` the file has (else last)."""
    from ruamel.yaml.error import CommentMark
    from ruamel.yaml.tokens import CommentToken

    if key in doc or not any(a in doc for a in anchors):
        _set(doc, key, value, changes, "")
        return
    anchor = next(a for a in anchors if a in doc)
    doc.insert(list(doc.keys()).index(anchor) + 1, key, value)
    changes.append(f"{key} = {value}")
    slot = doc.ca.items.get(anchor)
    token = slot[2] if slot and len(slot) > 2 else None
    if token is None:
        return
    eol, newline, rest = token.value.partition("\n")
    if eol.strip():  # the anchor's own end-of-line comment stays on its line; what follows moves down
        token.value = eol + newline
        rest = "\n" + rest if rest else ""
    else:
        rest = token.value
        slot[2] = None
    if rest:
        doc.ca.items[key] = [None, None, CommentToken(rest, CommentMark(0), None), None]


def merge_plan(doc: CommentedMap, plan: Plan) -> list[str]:
    """Apply ``plan`` to a round-trip document in place, touching only what differs; returns what changed."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    changes: list[str] = []
    _set(doc, "forge", plan.forge, changes, "")
    if plan.state_dir is not None:
        _set(doc, "state_dir", plan.state_dir, changes, "")
    if plan.max_parallel_workers is not None:
        _set(doc, "max_parallel_workers", plan.max_parallel_workers, changes, "")
    if plan.timezone is not None:
        anchors = ("log_level", "max_parallel_per_repo", "max_parallel_workers", "forge", "state_dir")
        _insert_scalar(doc, "timezone", plan.timezone, anchors, changes)

    repos = doc.get("repos")
    if not isinstance(repos, CommentedSeq):
        repos = CommentedSeq()
        doc["repos"] = repos
    for rp in plan.repos:
        entry = next((r for r in repos if isinstance(r, dict) and r.get("name") == rp.name), None)
        where = f"repos.{rp.name}."
        if entry is None:
            entry = CommentedMap()
            entry["name"] = rp.name
            if rp.path:
                entry["path"] = rp.path
            if rp.base_branch and rp.base_branch != "main":
                entry["base_branch"] = rp.base_branch
            entry["test_command"] = rp.test_command
            entry["automation_mode"] = rp.automation_mode or plan.automation_mode
            entry.yaml_add_eol_comment(MODE_COMMENT, "automation_mode")
            if plan.groom_cadence_days is not None:
                entry["groom_cadence_days"] = plan.groom_cadence_days
            gap = _take_blank_lines(repos)
            repos.append(entry)
            _give_blank_lines(repos, gap)
            changes.append(f"added repo {rp.name}")
            continue
        for key, value in (
            ("path", rp.path),
            ("test_command", rp.test_command),
            ("automation_mode", rp.automation_mode),
        ):
            if value is not None:
                _set(entry, key, value, changes, where)
        if plan.groom_cadence_days is not None:
            _set(entry, "groom_cadence_days", plan.groom_cadence_days, changes, where)
    if repos:
        repos.fa.set_block_style()

    agents = doc.get("agents")
    if not isinstance(agents, CommentedMap):
        agents = CommentedMap()
        doc["agents"] = agents
    added: list[str] = []
    for agent in plan.agents:
        if agent.name in agents or not agent.kind:
            continue  # an agent the config has is the operator's: init neither changes nor re-routes it
        spec = CommentedMap()
        spec["kind"] = agent.kind
        if agent.argv is not None:
            spec["argv"] = _flow(list(agent.argv))
        pass_env = AGENT_DEFAULTS.get(agent.kind, {}).get("pass_env")
        if pass_env:
            spec["pass_env"] = _flow(list(pass_env))
        gap = _take_blank_lines(agents)
        agents[agent.name] = spec
        _give_blank_lines(agents, gap)
        added.append(agent.name)
        changes.append(f"added agent {agent.name}")
    if agents:
        agents.fa.set_block_style()

    if added:  # only a new agent joins the default chain: a re-run leaves the operator's routing alone
        routing = _map(doc, "routing", changes)
        chain = list(routing.get("default") or [])
        wanted = chain + [a for a in added if a not in chain]
        if wanted != chain:
            routing["default"] = _flow(wanted)
            changes.append(f"routing.default = {wanted}")

    if plan.dispatch_interval_s is not None:
        jobs = _map(doc, "jobs", changes)
        dispatch = jobs.get("dispatch")
        if not isinstance(dispatch, CommentedMap):
            dispatch = CommentedMap()
            dispatch.fa.set_flow_style()
            jobs["dispatch"] = dispatch
        if "cron" in dispatch:
            del dispatch["cron"]
        interval = int(plan.dispatch_interval_s) if plan.dispatch_interval_s.is_integer() else plan.dispatch_interval_s
        _set(dispatch, "interval_s", interval, changes, "jobs.dispatch.")

    if plan.forge == "github":
        github = _map(doc, "github", changes, "GitHub, for forge: github (the token is a secret: not here)")
        if plan.github_api_url is not None or "api_url" not in github:
            _set(github, "api_url", plan.github_api_url or "https://api.github.com", changes, "github.")
        if plan.github_app_id is not None:  # a GitHub App; its key is the github_app_key credential, not here
            _set(github, "app_id", plan.github_app_id, changes, "github.")
            _set(github, "installation_id", plan.github_installation_id, changes, "github.")

    if plan.telegram_chat_ids or plan.telegram_api_base:
        telegram = _map(doc, "telegram", changes, "Telegram: notifications and control")
        if plan.telegram_chat_ids:
            _set(telegram, "enabled", True, changes, "telegram.")
            ids = list(telegram.get("allowed_chat_ids") or [])
            merged = ids + [c for c in plan.telegram_chat_ids if c not in ids]
            if merged != ids:
                telegram["allowed_chat_ids"] = _flow(merged)
                changes.append(f"telegram.allowed_chat_ids = {merged}")
        if plan.telegram_api_base:
            _set(telegram, "api_base", plan.telegram_api_base, changes, "telegram.")

    if plan.status_page_enabled or (plan.status_page_enabled is False and "status_page" in doc):
        page = _map(doc, "status_page", changes, "The status page, JSON API and metrics (docs/operations.md)")
        _set(page, "enabled", plan.status_page_enabled, changes, "status_page.")
        if plan.status_page_host is not None:
            _set(page, "host", plan.status_page_host, changes, "status_page.")
        if plan.status_page_port is not None:
            _set(page, "port", plan.status_page_port, changes, "status_page.")
    return changes


@dataclass
class WriteResult:
    path: Path
    created: bool
    changes: list[str]
    backup: Path | None
    config: Config


def write_config(path: Path, plan: Plan, *, now: datetime) -> WriteResult:
    """Merge ``plan`` into ``path`` (or a new file from :func:`template`), validate, back up, write."""
    from agentos.config import ConfigError, validate_document
    from agentos.fsutil import atomic_write_bytes

    yaml = yaml_rt()
    created = not path.exists()
    old_text = "" if created else path.read_text(encoding="utf-8")
    doc = yaml.load(template(plan.forge, now) if created or not old_text.strip() else old_text)
    if doc is None or not hasattr(doc, "yaml_set_comment_before_after_key"):
        raise InitError(f"{path}: the file is not a YAML mapping; move it away and run init again")
    changes = merge_plan(doc, plan)
    try:
        config = validate_document(doc, str(path), path)
    except ConfigError as exc:
        raise InitError("the resulting config is invalid:\n  " + "\n  ".join(exc.problems)) from None
    buf = io.StringIO()
    yaml.dump(doc, buf)
    new_text = buf.getvalue()
    if not created and new_text == old_text:
        return WriteResult(path, False, [], None, config)
    backup = None
    owner = None
    mode = 0o644
    if not created:
        st = path.stat()
        mode, owner = st.st_mode & 0o777, (st.st_uid, st.st_gid)
        backup = path.with_name(f"{path.name}.bak-{now:%Y%m%d%H%M%S}")
        n = 1
        while backup.exists():
            backup = path.with_name(f"{path.name}.bak-{now:%Y%m%d%H%M%S}.{n}")
            n += 1
        shutil.copy2(path, backup)
    atomic_write_bytes(path, new_text.encode("utf-8"), mode=mode)
    if owner is not None and owner != (os.geteuid(), os.getegid()) and os.geteuid() == 0:
        os.chown(path, *owner)  # root edited someone else's file: it stays theirs
    return WriteResult(path, created, changes or ["new file"], backup, config)


def write_secret(directory: Path, name: str, value: str) -> bool:
    """Store a token as ``directory/name`` (mode 0600, directory 0700); False when it was already there."""
    from agentos.fsutil import atomic_write_bytes

    path = directory / name
    data = (value.strip() + "\n").encode()
    if path.is_file() and path.read_bytes() == data:
        return False
    if not directory.exists():
        directory.mkdir(mode=0o700, parents=True)
    atomic_write_bytes(path, data, mode=0o600)
    return True
