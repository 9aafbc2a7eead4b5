"""The Telegram control plane through the real daemon: ``agentos run`` as a process, real aiogram inside it,
the fake Bot API (``tests/fakes/telegram_server.py``) on 127.0.0.1 in this test's event loop, the local forge
and the fake agent CLIs.

The daemon talks to the fake over HTTP while the test drives it, so nothing here may block the loop: the CLI,
the control socket and the daemon's start and stop run in threads (:meth:`Ops.sync`). Every wait is bounded
and polls at most every 0.1 s.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest_asyncio

from agentos.errors import ControlError
from agentos.store import Store
from tests.fakes.telegram_server import FakeTelegram, SentMessage, fake_telegram  # noqa: F401
from tests.waiting import wait_until_async

from .conftest import FAKES, POLL_S, REPO, WAIT_S, Loop

T = TypeVar("T")
MakeLoop = Callable[..., Loop]

ALLOWED = 1001
SECOND = 1002  # a second operator chat: notifications go to both
STRANGER = 666
PLANTED = "ghp_" + "Q7w8E9r0T1y2U3i4O5p6A7s8D9f0G1h2J3k4"
# Long enough that /task's 120-character cut of an attempt summary falls inside the token.
PLANTED_SUMMARY = (
    "The CI log linked from the issue printed a credential and then stopped; see the run output: ".ljust(100, ".")
    + PLANTED
)
NOTIFICATION = re.compile(r"^(Escalated \S+:|PR \S+ is green)")
REDACTED = "[REDACTED]"

CONFIG = """\
# agentos e2e: the Telegram control plane through the daemon.
# Every comment here must survive /repo mode and /repo cadence byte for byte.
state_dir: {state}   # the daemon's state
forge: local
max_parallel_workers: 2

repos:
  # the user repository
  - name: {repo}
    path: {path}
    test_command: python3 -m unittest -q
    test_timeout_s: 60
    automation_mode: {mode}          # full merges green PRs; dispatcher_only asks first
    groom_cadence_days: 7            # days between grooming passes
    # end of the repo

agents:
{agents}
routing:
  default: [{default}]   # an issue picks another agent with "Agent: NAME"
  max_attempts: 1        # one blocked attempt escalates
  backoff_base_s: 0
  backoff_cap_s: 0

limits:
  idle_timeout_minutes: 0.25
  max_runtime_minutes: 2
  kill_grace_s: 0.5
  shutdown_grace_s: 1

jobs:
  dispatch: {{interval_s: 0.5}}
  pr_monitor: {{interval_s: 0.5}}
  stall_watchdog: {{interval_s: 3600}}   # runs only when asked, so /run shows in its count

telegram:
  enabled: true
  allowed_chat_ids: {allowed}   # the operators
  api_base: {api_base}   # the fake Bot API
  digest_hour: {digest_hour}

log_level: {log_level}
"""


def q(value: object) -> str:
    """A YAML scalar (JSON is YAML)."""
    return json.dumps(value)


def agent(mode: str, **env: str) -> str:
    lines = [f"    kind: claude\n    binary: {q(str(FAKES / 'claude'))}\n    env:\n      FAKE_AGENT_MODE: {mode}"]
    lines += [f"      {k}: {q(v)}" for k, v in env.items()]
    return "\n".join(lines)


class Ops:
    """One daemon with Telegram pointed at the fake, and the operator's side of it."""

    def __init__(self, fake: FakeTelegram, make_loop: MakeLoop) -> None:
        self.fake = fake
        self.make_loop = make_loop
        self._loop: Loop | None = None
        self.stamps: list[float] = []  # when the fake served each of its calls (monotonic), index for index
        self._clock = asyncio.get_running_loop().create_task(self._stamp_calls(), name="call-clock")

    async def _stamp_calls(self) -> None:
        """Note when each request reached the fake (it wakes its waiters on every request)."""
        while True:
            await self.fake.wait_for(lambda: len(self.fake.calls) > len(self.stamps), timeout=3600)
            now = time.monotonic()
            self.stamps += [now] * (len(self.fake.calls) - len(self.stamps))

    async def aclose(self) -> None:
        await self.stop()
        self._clock.cancel()
        await asyncio.gather(self._clock, return_exceptions=True)

    async def sends_to(self, chat: int) -> list[float]:
        """When each sendMessage to ``chat`` (answered or refused) reached the fake."""
        await self.wait_fake(lambda: len(self.stamps) >= len(self.fake.calls), "the call clock")
        return [
            self.stamps[i]
            for i, call in enumerate(self.fake.calls[: len(self.stamps)])
            if call.method.lower() == "sendmessage" and str(call.params.get("chat_id")) == str(chat)
        ]

    @property
    def loop(self) -> Loop:
        assert self._loop is not None, "call setup() first"
        return self._loop

    # ------------------------------------------------------------ set-up

    def setup(
        self,
        agents: dict[str, str],
        *,
        mode: str = "full",
        allowed: tuple[int, ...] = (ALLOWED,),
        log_level: str = "info",
    ) -> str:
        """A fresh user repo and a commented YAML config; returns the config's text."""
        self._loop = self.make_loop({}, start=False)
        hour = (time.gmtime().tm_hour + 12) % 24  # never the daily digest during a test
        text = CONFIG.format(
            state=q(str(self.loop.state)),
            repo=REPO,
            path=q(str(self.loop.repo)),
            mode=mode,
            agents="".join(f"  {name}:\n{body}\n" for name, body in agents.items()),
            default=next(iter(agents)),
            allowed=json.dumps(list(allowed)),
            api_base=q(self.fake.url),
            digest_hour=hour,
            log_level=log_level,
        )
        self.loop.config.write_text(text, encoding="utf-8")
        self.loop.env["TELEGRAM_BOT_TOKEN"] = self.fake.token
        return text

    async def start(self) -> None:
        """Start the daemon and wait until its bot registered the menu and long-polls the fake."""
        menus, polls = len(self.fake.commands), len(self.fake.called("getUpdates"))
        await self.sync(self.loop.start)
        await self.wait_fake(lambda: len(self.fake.commands) > menus, "setMyCommands")
        await self.wait_fake(lambda: len(self.fake.called("getUpdates")) > polls, "the bot to poll")

    async def stop(self) -> int | None:
        return await self.sync(self.loop.stop) if self._loop is not None else None

    # ------------------------------------------------------------ the daemon's side, off the loop

    async def sync(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(fn, *args)

    async def ctl(self, cmd: str, args: dict[str, Any] | None = None) -> Any:
        """What ``agentos ctl`` gets from the control socket."""
        return await self.sync(self.loop.ctl, cmd, args)

    async def ctl_error(self, cmd: str, args: dict[str, Any]) -> str:
        try:
            await self.ctl(cmd, args)
        except ControlError as exc:
            return str(exc)
        raise AssertionError(f"ctl {cmd} {args} did not fail")

    async def cli_json(self, *args: str) -> Any:
        """``agentos ARGS --json`` (the real CLI process)."""
        done = await self.sync(self.loop.cli, *args, "--json")
        return json.loads(done.stdout)

    async def job(self, name: str) -> dict[str, Any]:
        rows: list[dict[str, Any]] = await self.ctl("jobs")
        return next(r for r in rows if r["name"] == name)

    async def repo(self) -> dict[str, Any]:
        [row] = await self.ctl("repos")
        assert isinstance(row, dict)
        return row

    async def task(self, task_id: str) -> dict[str, Any]:
        data: dict[str, Any] = await self.ctl("task", {"id": task_id})
        return data

    async def tasks_now(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = await self.ctl("tasks")
        return rows

    async def until(
        self,
        check: Callable[[], T | None],
        what: str,
        timeout: float = WAIT_S,
        retry: tuple[type[BaseException], ...] = (),
    ) -> T:
        """Poll ``check`` (in a thread, so the fake keeps answering) every 0.1 s until it returns something truthy."""

        async def probe() -> T | None:
            if self.loop.daemon is not None and self.loop.daemon.poll() is not None:
                raise AssertionError(f"the daemon exited with {self.loop.daemon.returncode}:\n{self.loop.log_tail()}")
            return await self.sync(check)

        return await wait_until_async(
            probe, what=what, timeout=timeout, poll=POLL_S, retry=retry, context=self.loop.debug
        )

    async def wait_status(self, task_id: str, *statuses: str) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            task = self.loop.task(task_id)
            return task if task["status"] in statuses else None

        # ControlError: the task is not there yet; anything else fails at once
        return await self.until(check, f"{task_id} to be {'/'.join(statuses)}", retry=(ControlError,))

    def log_events(self, event: str) -> list[dict[str, Any]]:
        """The daemon's JSON log lines for ``event`` (every start appends to the same file)."""
        out = []
        for line in self.loop.log.read_text(errors="replace").splitlines():
            start = line.find("{")
            if start < 0 or f'"{event}"' not in line:
                continue
            try:
                record = json.loads(line[start:])
            except ValueError:
                continue
            if record.get("event") == event:
                out.append(record)
        return out

    # ------------------------------------------------------------ the chat's side

    async def wait_fake(self, predicate: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
        try:
            await self.fake.wait_for(predicate, timeout)
        except TimeoutError:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{self.loop.debug()}") from None

    def replies(self, chat: int = ALLOWED) -> list[SentMessage]:
        """Messages the bot sent to ``chat`` that are not notifications (command answers)."""
        return [m for m in self.fake.sent if m.chat_id == chat and not NOTIFICATION.match(m.text)]

    def notices(self, prefix: str, chat: int = ALLOWED) -> list[SentMessage]:
        return [m for m in self.fake.sent if m.chat_id == chat and m.text.startswith(prefix)]

    async def say(self, text: str, chat: int = ALLOWED) -> str:
        """Send ``text`` from ``chat`` and return the bot's answer there."""
        before = len(self.replies(chat))
        self.fake.inject_message(chat, text)
        await self.wait_fake(lambda: len(self.replies(chat)) > before, f"an answer to {text!r}")
        answers = self.replies(chat)
        assert len(answers) == before + 1, [m.text for m in answers[before:]]
        return answers[before].text

    async def press(self, message: SentMessage, label: str, chat: int = ALLOWED) -> str:
        """Press the button ``label`` of ``message`` in ``chat``; return the toast the bot answered with."""
        data = dict(message.buttons)[label]
        callback_id = self.fake.inject_callback(chat, data, message_id=message.message_id)
        await self.wait_fake(
            lambda: any(a.get("callback_query_id") == callback_id for a in self.fake.answers), f"the {label} toast"
        )
        [answer] = [a for a in self.fake.answers if a.get("callback_query_id") == callback_id]
        return str(answer.get("text", ""))

    def received(self) -> str:
        """Everything the fake Bot API was sent, as one text."""
        return "\n".join(json.dumps(call.params, ensure_ascii=False) for call in self.fake.calls)


@pytest_asyncio.fixture
async def ops(fake_telegram: FakeTelegram, make_loop: MakeLoop) -> AsyncIterator[Ops]:  # noqa: F811
    """An :class:`Ops`; its daemon is stopped while the fake still serves (the daemon flushes on SIGTERM)."""
    ops = Ops(fake_telegram, make_loop)
    try:
        yield ops
    finally:
        await ops.aclose()


# ---------------------------------------------------------------- commands


async def test_every_command_does_what_ctl_does(ops: Ops) -> None:
    """Each command from the allowed chat has the effect (or the answer) of the same ``agentos ctl`` command;
    ``/repo mode`` and ``/repo cadence`` change only their value in the commented config file; a 429 on a
    reply is waited out and the reply arrives once."""
    original = ops.setup({"blocker": agent("blocked")})
    await ops.start()
    commands = [c["command"] for c in ops.fake.commands[-1]]
    help_text = await ops.say("/help")
    assert all(f"/{name}" in help_text for name in commands), help_text
    assert {"status", "on", "off", "jobs", "job", "run", "repos", "repo", "tasks", "task", "retry", "cancel",
            "approve", "agents", "agent", "help"} <= set(commands)  # fmt: skip

    number = await ops.sync(ops.loop.new_issue, "Change the right file")
    task_id = f"{REPO}#{number}"
    await ops.wait_status(task_id, "blocked")

    # /status ≡ ctl status
    status = await ops.ctl("status")
    reply = await ops.say("/status")
    assert reply.startswith("▶ Running"), reply
    assert f"{status['running']} running · {status['queued']} queued" in reply
    assert all(f"{k} {v}" in reply for k, v in status["counts"].items()), reply

    # /off ≡ ctl pause: `agentos ctl status --json` says paused
    assert (await ops.say("/off")).startswith("⏸ Paused")
    assert (await ops.cli_json("ctl", "status"))["paused"] is True
    assert (await ops.say("/status")).startswith("⏸ Paused")

    # /agents ≡ ctl agents (nothing paused here: see test_agents_and_agent_resume_do_what_ctl_does)
    [row] = await ops.ctl("agents")
    [health] = row["health"]  # its one attempt failed: 0/1 is too few to gate it
    assert await ops.say("/agents") == (
        f"✓ blocker\n    {row['month']}: {row['month_spend']} · limits {row['limits']}\n"
        f"    {health['type']}: 7d 0/1 (0%) · 24h 0/1 (0%) · ok"
    )

    # /jobs ≡ ctl jobs
    jobs = await ops.ctl("jobs")
    reply = await ops.say("/jobs")
    for row in jobs:
        assert f"{'✓' if row['enabled'] else '✗'} {row['name']} · " in reply, (row, reply)
        assert f"runs {row['runs']} · failures {row['failures']}" in reply

    # /job off|on NAME ≡ ctl job off|on NAME; the bot is no job, so there is none to switch off
    assert await ops.say("/job off pr_monitor") == "Job pr_monitor disabled."
    assert (await ops.job("pr_monitor"))["enabled"] is False
    assert await ops.say("/job on pr_monitor") == "Job pr_monitor enabled."
    assert (await ops.job("pr_monitor"))["enabled"] is True
    assert (await ops.say("/job off telegram")).startswith("no job named 'telegram'; jobs: ")
    assert await ops.say("/job off nosuchjob") == await ops.ctl_error("job", {"name": "nosuchjob", "enabled": False})

    # /run JOB ≡ ctl run JOB (stall_watchdog runs while paused; its interval is an hour)
    runs = (await ops.job("stall_watchdog"))["runs"]
    assert await ops.say("/run stall_watchdog") == "Job stall_watchdog started."
    assert (await ops.job("stall_watchdog"))["runs"] == runs + 1

    # /repos ≡ ctl repos; /repo off|on ≡ ctl repo off|on
    repo = await ops.repo()
    assert await ops.say("/repos") == f"✓ {REPO} · {repo['mode']} · groom every {repo['cadence_days']}d"
    assert await ops.say(f"/repo off {REPO}") == f"Repo {REPO} disabled."
    assert (await ops.repo())["enabled"] is False
    assert (await ops.say("/repos")).startswith(f"✗ {REPO} ·")
    assert await ops.say(f"/repo on {REPO}") == f"Repo {REPO} enabled."
    assert (await ops.repo())["enabled"] is True

    # /repo mode and /repo cadence ≡ ctl repo mode|cadence: the file keeps every other byte
    assert await ops.say(f"/repo mode {REPO} dispatcher") == f"Repo {REPO}: mode dispatcher_only."
    assert (await ops.repo())["mode"] == "dispatcher_only"
    assert await ops.say(f"/repo cadence {REPO} 14") == f"Repo {REPO}: grooming every 14 days."
    assert (await ops.repo())["cadence_days"] == 14
    edited = ops.loop.config.read_text(encoding="utf-8").splitlines(keepends=True)
    before = original.splitlines(keepends=True)
    assert len(edited) == len(before)
    changed = [(old, new) for old, new in zip(before, edited, strict=True) if old != new]
    assert [new for _, new in changed] == [
        "    automation_mode: dispatcher_only # full merges green PRs; dispatcher_only asks first\n",
        "    groom_cadence_days: 14           # days between grooming passes\n",
    ], changed

    # /tasks ≡ ctl tasks; /task ID ≡ ctl task show ID
    rows = await ops.ctl("tasks")
    reply = await ops.say("/tasks")
    assert [line.split(" · ")[:2] for line in reply.splitlines()] == [[r["id"], r["status"]] for r in rows]
    task = await ops.task(task_id)
    reply = await ops.say(f"/task {task_id}")
    assert f"id: {task_id}\n" in reply and "status: blocked\n" in reply and "attempts: 1\n" in reply, reply
    assert "  - 1 · blocker · blocked · missing_context" in reply, reply
    assert task["attempts"][0]["outcome"] == "blocked"
    assert await ops.say(f"/task {REPO}#99") == await ops.ctl_error("task", {"id": f"{REPO}#99"})

    # /approve PR ≡ ctl approve PR (no PR waits here: the daemon's own refusal, word for word)
    assert await ops.say(f"/approve {REPO}#7") == await ops.ctl_error("approve", {"ref": f"{REPO}#7"})

    # /retry ID ≡ ctl task retry ID (paused: the task stays queued); again → the daemon's own refusal
    assert await ops.say(f"/retry {task_id}") == f"Task {task_id} re-queued."
    assert (await ops.task(task_id))["status"] == "queued"
    refusal = await ops.say(f"/retry {task_id}")
    assert refusal == f"task {task_id} is already queued" == await ops.ctl_error("retry", {"id": task_id})

    # /cancel ID ≡ ctl task cancel ID
    assert await ops.say(f"/cancel {task_id}") == f"Task {task_id} cancelled."
    assert (await ops.task(task_id))["status"] == "cancelled"

    # /on ≡ ctl resume
    assert (await ops.say("/on")).startswith("▶ Resumed")
    assert (await ops.cli_json("ctl", "status"))["paused"] is False

    # A 429 on the reply is waited out (retry_after=1 s); the reply arrives once.
    ops.fake.fail_next(1, methods=["sendMessage"], retry_after=1)
    sent_before, sends_before = len(ops.fake.sent), len(await ops.sends_to(ALLOWED))
    assert (await ops.say("/status")).startswith("▶ Running")
    assert ops.fake.rejected == ["sendMessage"]
    assert len(ops.fake.sent) == sent_before + 1
    refused, delivered = (await ops.sends_to(ALLOWED))[sends_before:]
    assert delivered - refused >= 0.95, "the retry did not wait out retry_after=1"
    assert await ops.stop() == 0


async def test_agents_and_agent_resume_do_what_ctl_does(ops: Ops) -> None:
    """An agent that hit its CLI's usage limit is paused: /agents shows until when and why as `ctl agents` has
    it, /status counts it, /agent resume lifts it (journalled, `ctl status` agrees), and a second resume gets
    the daemon's own refusal."""
    ops.setup({"limited": agent("quota")})
    await ops.start()
    number = await ops.sync(ops.loop.new_issue, "Change the right file")

    def paused() -> dict[str, Any] | None:
        status: dict[str, Any] = ops.loop.ctl("status")
        return status if status["agents_paused"] == 1 else None

    status = await ops.until(paused, "the usage limit to pause the agent")
    assert list(status["paused_agents"]) == ["limited"]
    assert (await ops.say("/off")).startswith("⏸ Paused")  # nothing runs it again while we look

    [row] = await ops.ctl("agents")
    assert row["paused_until"] == status["paused_agents"]["limited"] and row["why"].startswith("usage limit")
    reply = await ops.say("/agents")
    assert reply.splitlines()[:2] == [
        f"⏸ limited · paused until {row['paused_until_local']} · /agent resume limited",
        f"    why: {row['why']}",
    ], reply
    assert "paused agents: limited until " in await ops.say("/status")

    reply = await ops.say("/agent resume limited")
    assert reply == f"Agent limited resumed (it was paused: {row['why']}).", reply
    status = await ops.ctl("status")
    assert status["agents_paused"] == 0 and status["paused_agents"] == {}
    assert (await ops.ctl("agents"))[0]["paused_until"] is None
    assert await ops.say("/agent resume limited") == await ops.ctl_error("agent_resume", {"name": "limited"})
    assert await ops.say("/agent resume nobody") == await ops.ctl_error("agent_resume", {"name": "nobody"})
    task = await ops.task(f"{REPO}#{number}")
    assert [a["blocker_code"] for a in task["attempts"]] == ["quota_limited"]
    assert await ops.stop() == 0
    lifted = [
        e for e in Store(ops.loop.state, fsync=False).iter_events(datetime.now(UTC) - timedelta(hours=1))
        if e.type == "agent_pause_lifted"
    ]  # fmt: skip
    assert [e.data["agent"] for e in lifted] == ["limited"]


# ---------------------------------------------------------------- notifications and buttons


async def test_escalation_buttons_strangers_redaction_and_no_duplicate_after_restart(ops: Ops) -> None:
    """A blocked task's escalation reaches both chats once (one of them behind a 429) with Retry/Cancel/Won't fix;
    a stranger gets nothing and changes nothing; the token the agent planted in its summary never reaches
    the Bot API; Retry re-queues the task (once, however often it is pressed); after a restart that has to
    announce the escalations again, nobody gets them twice."""
    ops.setup(
        {"blocker": agent("blocked", FAKE_AGENT_SUMMARY=PLANTED_SUMMARY)},
        allowed=(ALLOWED, SECOND),
        log_level="debug",
    )
    await ops.start()
    ops.fake.fail_next(1, methods=["sendMessage"], chat_id=SECOND, retry_after=1)
    number = await ops.sync(ops.loop.new_issue, "Change the right file")
    task_id = f"{REPO}#{number}"
    await ops.wait_status(task_id, "blocked")

    # The escalation: at once in the first chat, after the 429's retry_after in the second; once in each.
    prefix = f"Escalated {task_id}:"
    await ops.wait_fake(lambda: bool(ops.notices(prefix, SECOND)), "the escalation in the second chat")
    assert ops.fake.rejected == ["sendMessage"]
    refused, delivered = await ops.sends_to(SECOND)
    assert delivered - refused >= 0.95, "the retry did not wait out retry_after=1"
    [first] = ops.notices(prefix)
    [second] = ops.notices(prefix, SECOND)
    buttons = [
        ("Retry", f"act:retry:{task_id}"),
        ("Cancel", f"act:cancel:{task_id}"),
        ("Won't fix", f"act:wontfix:{task_id}"),
        ("Open issue", f"act:show:{task_id}"),  # the local forge's issues are files: the bot shows the text
    ]
    assert first.buttons == buttons and second.buttons == buttons
    assert "blocker: missing_context" in first.text and first.text == second.text

    # Open issue: the issue's text as a reply in that chat; the escalation keeps its buttons.
    assert await ops.press(first, "Open issue") == "Issue sent below."
    await ops.wait_fake(lambda: bool(ops.notices(f"{task_id}: Change the right file")), "the issue's text")
    [shown] = ops.notices(f"{task_id}: Change the right file")
    assert "state: open · task: blocked · blocker: missing_context" in shown.text, shown.text
    assert first.edits == 0 and first.buttons == buttons

    # The token is stored as the agent wrote it, and never sent to Telegram, whole or in part.
    assert PLANTED in (await ops.task(task_id))["attempts"][0]["summary"]
    reply = await ops.say(f"/task {task_id}")
    assert REDACTED in reply and PLANTED[:12] not in reply, reply

    # A stranger's commands and button presses: no answer, no effect (logged once).
    config = ops.loop.config.read_bytes()
    for text in ("/status", "/off", f"/repo off {REPO}", f"/repo mode {REPO} dispatcher", f"/cancel {task_id}"):
        ops.fake.inject_message(STRANGER, text)
    stranger_press = ops.fake.inject_callback(STRANGER, f"act:cancel:{task_id}")
    assert (await ops.say("/status")).startswith("▶ Running")  # answered after the stranger's updates
    await ops.until(lambda: ops.log_events("telegram_stranger_dropped"), "the stranger to be logged")
    assert [r["chat_id"] for r in ops.log_events("telegram_stranger_dropped")] == [STRANGER]
    assert not [c for c in ops.fake.calls if str(c.params.get("chat_id")) == str(STRANGER)]
    assert not [a for a in ops.fake.answers if a.get("callback_query_id") == stranger_press]
    assert (await ops.ctl("status"))["paused"] is False
    assert (await ops.repo())["enabled"] is True and (await ops.repo())["mode"] == "full"
    assert (await ops.task(task_id))["status"] == "blocked"
    assert ops.loop.config.read_bytes() == config

    # Retry, pressed while paused so the re-queued task stays visible as queued.
    await ops.ctl("pause")
    assert await ops.press(first, "Retry") == f"{task_id} re-queued."
    assert [(r["id"], r["status"]) for r in await ops.cli_json("ctl", "tasks")] == [(task_id, "queued")]
    await ops.wait_fake(lambda: first.edits == 1, "the escalation to be marked done")
    assert first.text.endswith(f"\n\n✓ {task_id} re-queued. (by Op{ALLOWED})"), first.text
    assert first.buttons == []
    # The same button in the other chat: the daemon's answer, nothing done twice.
    assert await ops.press(second, "Retry", SECOND) == f"task {task_id} is already queued"
    assert second.edits == 0 and second.buttons == buttons

    # Resumed, the task runs again and escalates again: a new event, so a new message.
    await ops.ctl("resume")
    await ops.until(
        lambda: len(ops.loop.task(task_id)["attempts"]) == 2 and ops.loop.task(task_id)["status"] == "blocked",
        "the second attempt to escalate",
    )
    await ops.wait_fake(
        lambda: len(ops.notices(prefix)) == 2 and len(ops.notices(prefix, SECOND)) == 2,
        "the second escalation in both chats",
    )

    # Nothing the Bot API received carries the token, nor the part a cut at 120 characters would keep.
    received = ops.received()
    assert PLANTED not in received and PLANTED[:16] not in received and PLANTED[-16:] not in received

    # Restart as if the daemon had died between journalling the escalation and announcing it (its marker
    # gone): recovery announces the current escalation again, and the notifier, which keeps sev1 keys in the
    # daemon state, sends it to nobody.
    assert await ops.stop() == 0
    [marker] = (ops.loop.state / "runs").glob("*/escalated-2")
    marker.unlink()
    await ops.start()
    await ops.until(marker.exists, "recovery to announce the escalation again")
    suppressed = [r.get("key") for r in ops.log_events("notify_suppressed")]
    assert f"escalation:{task_id}:2" in suppressed, suppressed
    assert (await ops.say("/status")).startswith("▶ Running")
    assert len(ops.notices(prefix)) == 2 and len(ops.notices(prefix, SECOND)) == 2
    assert PLANTED[:16] not in ops.received()
    assert await ops.stop() == 0


async def test_approve_button_merges_a_dispatcher_only_pr(ops: Ops) -> None:
    """A green PR in a dispatcher_only repo asks for approval with Approve/Reject; Approve squash-merges it
    into the user's main, and the approval names the chat."""
    ops.setup({"worker": agent("complete")}, mode="dispatcher_only")
    await ops.start()
    title = "Add a greeting"
    number = await ops.sync(ops.loop.new_issue, title)
    task_id = f"{REPO}#{number}"
    prefix = f"PR {REPO}#"
    await ops.wait_fake(lambda: bool(ops.notices(prefix)), "the approval request")
    [request] = ops.notices(prefix)
    task = await ops.task(task_id)
    assert task["status"] == "pr_open"
    ref = f"{REPO}#{task['pr']}"
    assert request.text == f"PR {ref} is green and waits for your approval: {title}"
    assert request.buttons == [("Approve", f"act:approve:{ref}"), ("Reject", f"act:reject:{ref}")]
    assert (await ops.sync(ops.loop.main_log))[0][0] == "initial commit"

    assert await ops.press(request, "Approve") == f"{ref} approved."
    await ops.wait_status(task_id, "merged")
    subject, body = (await ops.sync(ops.loop.main_log))[0]
    assert subject == f"{title} (#{task['pr']})"
    assert f"Closes #{number}" in body
    await ops.wait_fake(lambda: request.edits == 1, "the request to be marked done")
    assert request.buttons == [] and f"✓ {ref} approved." in request.text
    assert len(ops.notices(prefix)) == 1
    [approved] = ops.log_events("pr_approved")  # who approved it; nothing held it, so no override
    assert approved["by"] == f"telegram:{ALLOWED}" and approved["override"] is False
    assert await ops.stop() == 0


async def test_the_approve_button_starts_a_sprint_plan(ops: Ops) -> None:
    """The sprint plan arrives with Approve / Skip; Approve makes its picks ready and they run and merge."""
    text = ops.setup({"worker": agent("complete")})
    ops.loop.config.write_text(text + "loops:\n  sprint_enabled: true\n  plan_size: 2\n", encoding="utf-8")
    await ops.start()
    backlog = []
    for n in range(3):
        done = await ops.cli_json("issue", "new", "--repo", REPO, "--title", f"Backlog {n}", "--config",
                                  str(ops.loop.config))  # fmt: skip
        backlog.append(int(done["number"]))
    await ops.ctl("run", {"name": "sprint_plan"})
    await ops.wait_fake(lambda: bool(ops.notices("Sprint plan ")), "the sprint plan")
    [plan] = ops.notices("Sprint plan ")
    assert plan.buttons == [("Approve", f"act:plan_approve:{REPO}"), ("Skip", f"act:plan_skip:{REPO}")]
    assert await ops.tasks_now() == []
    assert await ops.press(plan, "Approve") == f"{REPO} sprint plan approved."
    for n in backlog[:2]:
        await ops.wait_status(f"{REPO}#{n}", "merged")
    assert sorted(t["issue"] for t in await ops.tasks_now()) == backlog[:2]
async def test_retry_to_another_agent_and_wont_fix_from_the_chat(ops: Ops) -> None:
    """`/retry ID worker` reroutes an escalated task to another agent, whose PR merges; the "Won't fix" button
    of the next escalation closes its issue with a comment and ends the task; the journal names the chat."""
    ops.setup({"blocker": agent("blocked"), "worker": agent("complete")})
    await ops.start()
    number = await ops.sync(ops.loop.new_issue, "Add a greeting")
    task_id = f"{REPO}#{number}"
    await ops.wait_status(task_id, "blocked")

    assert await ops.say(f"/retry {task_id} nobody") == "no agent named 'nobody'; agents: blocker, worker"
    assert await ops.say(f"/retry {task_id} worker") == f"Task {task_id} re-queued for agent worker."
    merged = await ops.wait_status(task_id, "merged")
    assert [a["agent"] for a in merged["attempts"]] == ["blocker", "worker"]
    [retried] = ops.log_events("task_retried")
    assert retried["by"] == f"telegram:{ALLOWED}" and retried["agent"] == "worker"

    other = await ops.sync(ops.loop.new_issue, "Change the right file")
    other_id = f"{REPO}#{other}"
    await ops.wait_status(other_id, "blocked")
    prefix = f"Escalated {other_id}:"
    await ops.wait_fake(lambda: bool(ops.notices(prefix)), "the escalation")
    [escalation] = ops.notices(prefix)
    assert await ops.press(escalation, "Won't fix") == f"{other_id} closed as won't fix."
    task = await ops.wait_status(other_id, "cancelled")
    assert task["last_blocker"] == "wontfix"
    issue, comments = await ops.sync(ops.loop.issue, other)
    assert issue.state == "closed" and "wontfix" in issue.labels
    assert any("won't fix by the operator (telegram:" in c.body for c in comments)
    [closed] = ops.log_events("task_closed")
    assert closed["by"] == f"telegram:{ALLOWED}" and closed["blocker"] == "wontfix"
    assert await ops.stop() == 0
