"""Incidents for the operator through the real daemon: ``agentos ctl incidents|ack|resolve`` and Telegram's
``/incidents``, ``/ack``, ``/resolve`` (the fake Bot API), over a signature the incident scanner found."""

from __future__ import annotations

from tests.fakes.telegram_server import fake_telegram  # noqa: F401

from .conftest import REPO
from .test_telegram_daemon import Ops, agent, ops  # noqa: F401


async def crash_three(ops: Ops, prefix: str) -> None:  # noqa: F811
    for n in range(3):
        number = await ops.sync(ops.loop.new_issue, f"{prefix} {n}")
        await ops.wait_status(f"{REPO}#{number}", "blocked")


async def test_incidents_ack_and_resolve_from_ctl_and_the_chat(ops: Ops) -> None:  # noqa: F811
    """Three crashes → one incident; ``ctl incidents`` and ``/incidents`` show it; ``ctl ack`` marks it acked by
    ctl; ``/resolve`` closes its fix issue and it leaves the list; the same crash again opens it again."""
    ops.setup({"crasher": agent("crash")})
    await ops.start()
    commands = [c["command"] for c in ops.fake.commands[-1]]
    assert {"incidents", "ack", "resolve"} <= set(commands)
    await crash_three(ops, "Crash")
    await ops.ctl("run", {"name": "incident_scan"})

    (row,) = await ops.ctl("incidents")
    sig, fix = row["signature"], row["fix_issue"]
    assert (row["blocker"], row["count"], row["acked"]) == ("runner_failure", 3, False) and fix
    shown = (await ops.sync(ops.loop.cli, "ctl", "incidents")).stdout
    assert sig in shown and fix in shown
    reply = await ops.say("/incidents")
    assert f"{sig} · runner_failure ×3" in reply and f"fix {fix}" in reply and "acked" not in reply.splitlines()[0]

    assert "signature" in (await ops.say("/ack ffffffffffff")).lower()  # a one-line error, nothing acked
    await ops.sync(ops.loop.cli, "ctl", "ack", sig[:6])
    (row,) = await ops.ctl("incidents")
    assert (row["acked"], row["acked_by"]) == (True, "ctl")
    assert "acked by ctl" in await ops.say("/incidents")

    assert await ops.say(f"/resolve {sig}") == f"Incident {sig} resolved; {fix} closed."
    number = int(fix.split("#")[1])
    issue, comments = await ops.sync(ops.loop.issue, number)
    assert issue.state == "closed" and any("resolved by the operator (telegram)" in c.body for c in comments)
    assert await ops.ctl("incidents") == []
    assert await ops.say("/incidents") == "No open incidents."
    assert [r["by"] for r in ops.log_events("incident_acked")] == ["ctl"]
    assert [r["by"] for r in ops.log_events("incident_resolved")] == ["telegram"]

    await crash_three(ops, "Crash again")  # the fix never merged: the scanner files it again
    await ops.ctl("run", {"name": "incident_scan"})
    (row,) = await ops.ctl("incidents")
    assert row["signature"] == sig and row["fix_issue"] != fix and (row["count"], row["acked"]) == (3, False)
