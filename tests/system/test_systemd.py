"""From a wheel to ``systemctl start agentos`` in a real systemd (issue #21), exactly as the README says.

A Debian container booted with ``systemd-nspawn --boot`` (see tests/system/machine.py): agentos is installed
there from a wheel of this checkout, set up with ``agentos init --yes`` (system mode, the local forge, a repo
under /srv, a ``command`` agent) and run by the shipped unit, each attempt in its bubblewrap sandbox.
Skipped, saying why, where no container can boot or no Debian root is cached (``make test-systemd`` builds
it). About two minutes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.system.machine import Machine, unavailable
from tests.waiting import NotYet, wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.systemd,
    pytest.mark.skipif(bool(unavailable()), reason=unavailable() or ""),
]

CHECKOUT = Path(__file__).resolve().parents[2]
CONFIG = "/etc/agentos/config.yaml"

AGENT = r"""#!/bin/sh
# A `command` agent: writes CHANGE.txt and the result file; an issue saying SLOW keeps it busy.
prompt=$(cat)
case "$prompt" in *SLOW*) sleep 600 ;; esac
case "$prompt" in *HOG*) python3 -c 'blocks = [bytearray(16 << 20) for _ in range(64)]' ;; esac
echo "made by the agent on $(cat /proc/sys/kernel/hostname)" > CHANGE.txt
printf 'STATUS: complete\nSUMMARY: wrote CHANGE.txt\n' > .agent_result.md
"""

SETUP = f"""set -e
command -v bwrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null
python3 -m venv /opt/agentos/venv
/opt/agentos/venv/bin/pip install -q /wheels/agentos-*.whl
ln -sf /opt/agentos/venv/bin/agentos /usr/local/bin/agentos
useradd --system --home /var/lib/agentos agentos
cat > /usr/local/bin/fake-agent <<'AGENT'
{AGENT}AGENT
chmod 0755 /usr/local/bin/fake-agent
git init -q -b main /srv/calc
cd /srv/calc && echo calc > README && git add README
git -c user.name=t -c user.email=t@example.com commit -q -m init
git config --system --add safe.directory '*'
chown -R agentos:agentos /srv/calc
agentos init --yes --forge local --repo 'calc:/srv/calc:test -f CHANGE.txt' \
  --agent bot:command:/usr/local/bin/fake-agent --automation-mode full --dispatch-interval 5 --no-telegram
systemctl daemon-reload && systemctl enable --now agentos
"""


@pytest.fixture(scope="module")
def machine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Machine]:
    wheels = tmp_path_factory.mktemp("wheels")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(CHECKOUT)],
        check=True,
        capture_output=True,
    )
    box = Machine("agentos-systemd-test", {wheels: "/wheels"}, tmp_path_factory.mktemp("boot") / "console.log")
    try:
        box.sh(SETUP)
        yield box
    finally:
        box.close()


def unit(box: Machine, *props: str) -> dict[str, str]:
    out = box.sh(f"systemctl show agentos -p {','.join(props)}").stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def tasks(box: Machine) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(box.sh("agentos ctl tasks --json").stdout)
    return rows


def task_status(box: Machine, title_word: str, *statuses: str) -> dict[str, Any]:
    for row in tasks(box):
        if title_word in json.dumps(row) and row.get("status") in statuses:
            return row
    raise NotYet(json.dumps(tasks(box))[-500:])


def journal(box: Machine, since: str = "") -> list[dict[str, Any]]:
    out = box.sh(f"journalctl -u agentos -o json --no-pager {since}").stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def json_or_none(text: object) -> Any:
    try:
        return json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return None


def daemon_events(box: Machine) -> list[tuple[str, str]]:
    """(event, journald PRIORITY) of every JSON line the daemon logged."""
    found = []
    for entry in journal(box):
        message = json_or_none(entry.get("MESSAGE"))
        if isinstance(message, dict) and "event" in message:
            found.append((str(message["event"]), str(entry.get("PRIORITY"))))
    return found


def active(box: Machine) -> bool:
    state = box.sh("systemctl is-active agentos", check=False).stdout.strip()
    if state == "active":
        return True
    raise NotYet(state)


class TestSystemd:
    def test_the_shipped_unit_starts_and_is_active(self, machine: Machine) -> None:
        """`systemctl enable --now agentos` after `agentos init --yes` gives a running Type=notify service."""
        wait_until(lambda: active(machine), what="agentos to be active", timeout=60)
        props = unit(machine, "Type", "WatchdogUSec", "User", "RestartPreventExitStatus")
        assert props["Type"] == "notify" and props["User"] == "agentos"
        assert props["WatchdogUSec"] != "0" and "78" in props["RestartPreventExitStatus"]

    def test_an_issue_made_as_root_is_merged_and_listed(self, machine: Machine) -> None:
        """`agentos issue new --ready` as root reaches the daemon; the change lands on main; `issue list` shows it."""
        machine.sh("agentos issue new --ready --title 'Add the change file' --body 'Write CHANGE.txt.'")
        wait_until(
            lambda: task_status(machine, "", "merged"), what="the task to be merged", timeout=180, context=machine.tail
        )
        # the agent ran in its bubblewrap sandbox, inside the unit's hardening
        assert (
            machine.sh("git -C /srv/calc show main:CHANGE.txt").stdout.strip() == "made by the agent on agentos-sandbox"
        )
        assert "Add the change file" in machine.sh("agentos issue list --state all").stdout

    def test_pause_and_resume(self, machine: Machine) -> None:
        """The kill switch works through the socket in /run/agentos."""
        machine.sh("agentos ctl pause")
        assert json.loads(machine.sh("agentos ctl status --json").stdout)["paused"] is True
        assert "paused" in machine.sh("agentos ctl status").stdout.lower()
        machine.sh("agentos ctl resume")
        assert json.loads(machine.sh("agentos ctl status --json").stdout)["paused"] is False

    def test_repo_mode_under_a_read_only_etc(self, machine: Machine) -> None:
        """`ctl repo mode` works although ProtectSystem=strict keeps /etc/agentos/config.yaml read-only."""
        before = machine.sh(f"cat {CONFIG}").stdout
        machine.sh("agentos ctl repo mode calc dispatcher")
        repos = json.loads(machine.sh("agentos ctl repos --json").stdout)
        assert [(r["mode"], r["held"]) for r in repos if r["name"] == "calc"] == [
            ("dispatcher_only", "automation_mode")
        ]
        assert machine.sh(f"cat {CONFIG}").stdout == before
        machine.sh("agentos ctl repo mode calc full")

    def test_the_journal_has_the_daemons_fields_and_priorities(self, machine: Machine) -> None:
        """Each log line is one JSON object with its fields; journald stores its level as PRIORITY (info is 6)."""
        held = [
            (entry.get("PRIORITY"), message)
            for entry in journal(machine)
            if isinstance(message := json_or_none(entry.get("MESSAGE")), dict)
            and message.get("event") == "config_edit_held"
        ]
        assert held, "the repo mode edit above is logged"
        priority, message = held[0]
        assert priority == "6" and message["repo"] == "calc" and message["key"] == "automation_mode", held

    def test_reload_rereads_the_config_and_a_bad_file_is_rejected(self, machine: Machine) -> None:
        """`systemctl reload` re-reads the file; a broken one is logged at error priority and changes nothing."""
        machine.sh(f"agentos config set max_parallel_workers 2 --config {CONFIG} && systemctl reload agentos")
        wait_until(lambda: ("config_reloaded", "6") in daemon_events(machine), what="config_reloaded", timeout=60)
        machine.sh(f"cp {CONFIG} /root/good.yaml && echo 'max_parallel_workers: [' >> {CONFIG}")
        machine.sh("systemctl reload agentos")
        wait_until(
            lambda: ("config_reload_rejected", "3") in daemon_events(machine),
            what="config_reload_rejected at PRIORITY 3",
            timeout=60,
        )
        assert active(machine)

    def test_a_broken_config_fails_the_start_once_without_a_restart_loop(self, machine: Machine) -> None:
        """Exit 78 is in RestartPreventExitStatus: the unit fails and stays failed."""
        machine.sh("systemctl restart agentos", check=False)
        props = wait_until(
            lambda: (p := unit(machine, "ActiveState", "ExecMainStatus", "NRestarts"))["ActiveState"] == "failed" and p,
            what="agentos to fail",
            timeout=60,
        )
        assert props["ExecMainStatus"] == "78" and props["NRestarts"] == "0", props
        machine.sh(f"cp /root/good.yaml {CONFIG} && systemctl reset-failed agentos && systemctl start agentos")
        wait_until(lambda: active(machine), what="agentos to be active again", timeout=60)

    def test_a_stopped_event_loop_is_restarted_by_the_watchdog(self, machine: Machine) -> None:
        """SIGSTOP stops the WATCHDOG=1 pings: systemd kills the daemon and starts it again."""
        machine.sh(
            "mkdir -p /etc/systemd/system/agentos.service.d && printf '[Service]\\nWatchdogSec=6\\n' "
            "> /etc/systemd/system/agentos.service.d/50-test-watchdog.conf && systemctl daemon-reload "
            "&& systemctl restart agentos"
        )
        wait_until(lambda: active(machine), what="agentos to be active", timeout=60)
        pid = unit(machine, "MainPID")["MainPID"]
        machine.sh(f"kill -STOP {pid}")
        wait_until(
            lambda: (
                (p := unit(machine, "MainPID", "ActiveState"))["MainPID"] not in ("0", pid)
                and p["ActiveState"] == "active"
            ),
            what="a new daemon after the watchdog fired",
            timeout=90,
        )
        assert int(unit(machine, "NRestarts")["NRestarts"]) >= 1
        assert any("watchdog" in str(e.get("MESSAGE", "")).lower() for e in journal(machine)), (
            "systemd logs the watchdog timeout"
        )

    def test_an_attempt_over_memory_mb_ends_resource_limit_under_the_unit(self, machine: Machine) -> None:
        """With the unit's ``Delegate=yes`` the daemon makes each attempt's cgroup under its own (cgroup v2: after
        moving itself into a leaf): an agent allocating 1 GiB past ``sandbox.memory_mb: 128`` is killed by the
        kernel and its attempt ends ``resource_limit``, and the daemon keeps serving."""
        controllers = machine.sh("cat /sys/fs/cgroup/cgroup.controllers", check=False).stdout.split()
        if "memory" not in controllers:
            pytest.skip(
                "the container has no cgroup v2 memory controller: on a cgroup v1 host systemd-nspawn mounts the v1 "
                "controllers read-only and the v2 tree has none (boot the host with the unified hierarchy)"
            )
        machine.sh(f"agentos config set sandbox.memory_mb 128 --config {CONFIG} && systemctl reload agentos")
        try:
            machine.sh("agentos issue new --ready --title 'A hungry one' --body 'HOG: allocate a lot.'")
            row = wait_until(
                lambda: task_status(machine, "hungry", "blocked"), what="the hungry task to be blocked", timeout=180
            )
            assert row["blocker"] == "resource_limit", row
            assert machine.sh("cat /sys/fs/cgroup/system.slice/agentos.service/cgroup.procs").stdout.split() == []
            assert active(machine)
        finally:
            machine.sh(f"agentos config set sandbox.memory_mb 4096 --config {CONFIG} && systemctl reload agentos")

    def test_stop_exits_0_and_requeues_the_running_attempt(self, machine: Machine) -> None:
        """`systemctl stop` while an agent runs: exit 0, and the task goes back to the queue."""
        machine.sh("agentos issue new --ready --title 'A slow one' --body 'SLOW: take your time.'")
        wait_until(lambda: task_status(machine, "slow", "running"), what="the slow task to run", timeout=120)
        machine.sh("systemctl stop agentos")
        props = unit(machine, "ExecMainStatus", "Result")
        assert props == {"ExecMainStatus": "0", "Result": "success"}, props
        rows = json.loads(machine.sh("agentos tasks --json").stdout)
        slow = [r for r in rows if "slow" in json.dumps(r).lower()]
        assert slow and all(r["status"] in ("queued", "retrying") for r in slow), slow
