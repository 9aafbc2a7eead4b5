"""The Telegram control plane through real aiogram and the fake Bot API over HTTP, plus its pure parts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from aiogram.utils.backoff import BackoffConfig
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from agentos import caller
from agentos.control.telegram import (
    ActionCallback,
    Command,
    ControllerPort,
    ParseError,
    TelegramBot,
    bot_commands,
    keyboard,
    parse_command,
)
from agentos.errors import ControlError
from agentos.ops.notify import TELEGRAM_TEXT_LIMIT, Action, MemorySeenStore, Notifier, action_button, text_units
from tests.fakes.telegram_server import FakeTelegram, FastAiohttpSession, fake_telegram  # noqa: F401

ALLOWED = 1001
OVER_BUDGET = "calc#13"
BUDGET_NOTE = (
    "over budget (spent 108,562 tokens / $0.18 over 2 attempts; limit 100,000 tokens): "
    "this retry runs one attempt; if it fails, it escalates again"
)
STRANGER = 666
GITHUB_TOKEN = "ghp_" + "Z9y8X7w6V5u4T3s2R1q0P9o8N7m6L5k4J3i2"
FAST_BACKOFF = BackoffConfig(min_delay=0.01, max_delay=0.05, factor=1.5, jitter=0.0)


class FakeController:
    """A Controller stand-in that records calls and keeps just enough state to be idempotent."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.approved_by = ""
        self.paused = False
        self.queued: set[str] = set()
        self.title = "Add a divide command"

    def _record(self, *call: Any) -> None:
        self.calls.append(call)

    def names(self) -> list[str]:
        """The method names called, in order."""
        return [c[0] for c in self.calls]

    async def status(self) -> dict[str, Any]:
        self._record("status")
        return {
            "paused": self.paused,
            "running": 1,
            "queued": 2,
            "counts": {"queued": 2, "running": 1, "merged": 7},
            "uptime_s": 7260.0,
            "paused_agents": {"claude": "2026-11-25T14:00:00+00:00"},
        }

    async def pause(self) -> dict[str, Any]:
        self._record("pause")
        self.paused = True
        return {"paused": True}

    async def resume(self) -> dict[str, Any]:
        self._record("resume")
        self.paused = False
        return {"paused": False}

    async def jobs(self) -> list[dict[str, Any]]:
        self._record("jobs")
        return [
            {"name": "dispatch", "enabled": True, "next_run": "2026-11-25T12:01:00+00:00", "last_run": None,
             "last_error": None, "runs": 40, "failures": 0},
            {"name": "pr_monitor", "enabled": False, "next_run": None, "last_run": None,
             "last_error": "boom", "runs": 3, "failures": 1},
        ]  # fmt: skip

    async def set_job(self, name: str, enabled: bool) -> dict[str, Any]:
        self._record("set_job", name, enabled)
        if name not in ("dispatch", "pr_monitor", "telegram"):
            raise ControlError(f"no job named {name!r}")
        return {"job": name, "enabled": enabled}

    async def run_job(self, name: str) -> dict[str, Any]:
        self._record("run_job", name)
        return {"job": name, "result": "ran"}

    async def repos(self) -> list[dict[str, Any]]:
        self._record("repos")
        return [{"name": "calc", "enabled": True, "mode": "full", "cadence_days": 7}]

    async def set_repo(self, name: str, enabled: bool) -> dict[str, Any]:
        self._record("set_repo", name, enabled)
        return {"repo": name, "enabled": enabled}

    async def set_repo_mode(self, name: str, mode: str) -> dict[str, Any]:
        self._record("set_repo_mode", name, mode)
        return {"repo": name, "mode": mode}

    async def set_repo_cadence(self, name: str, days: int) -> dict[str, Any]:
        self._record("set_repo_cadence", name, days)
        return {"repo": name, "cadence_days": days}

    async def tasks(self, repo: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
        self._record("tasks", repo, status)
        return [{"id": "calc#12", "repo": "calc", "issue": 12, "title": self.title, "status": "running",
                 "attempts": 2, "agent": "claude", "pr": None}]  # fmt: skip

    async def task(self, task_id: str) -> dict[str, Any]:
        self._record("task", task_id)
        if task_id != "calc#12":
            raise ControlError(f"no task {task_id!r}")
        return {"id": "calc#12", "title": self.title, "status": "blocked", "created_at": "2026-11-25T10:00:00+00:00",
                "attempts": [{"number": 1, "agent": "claude", "outcome": "blocked", "blocker_code": "timeout",
                              "summary": "ran out of time"}]}  # fmt: skip

    async def retry(self, task_id: str, agent: str | None = None) -> dict[str, Any]:
        self._record("retry", task_id, *([agent] if agent else []))
        if task_id in self.queued:
            raise ControlError(f"task {task_id} is already queued")
        self.queued.add(task_id)
        if task_id == OVER_BUDGET:
            return {"task": task_id, "status": "queued", "budget": BUDGET_NOTE}
        return {"task": task_id, "status": "queued"}

    async def agents(self) -> list[dict[str, Any]]:
        self._record("agents")
        return [
            {"agent": "claude", "paused_until": "2026-11-30T23:00:00+00:00",
             "paused_until_local": "2026-12-01 00:00 Europe/Berlin",
             "why": "monthly budget: spent 1,000 tokens / $11.00 over 1 attempt in 2026-11; limit $10.00",
             "month": "2026-11", "month_spend": "1,000 tokens / $11.00 over 1 attempt",
             "limits": "month: warn $5.00, max $10.00"},
            {"agent": "codex", "paused_until": None, "why": None, "month": "2026-11",
             "month_spend": "0 tokens / $0.00 over 0 attempts", "limits": "none"},
        ]  # fmt: skip

    async def resume_agent(self, name: str) -> dict[str, Any]:
        self._record("resume_agent", name)
        if name != "claude":
            raise ControlError(f"agent {name} is not paused")
        return {"agent": name, "resumed": True, "why": "monthly budget: …", "budget": "still over budget for 2026-11"}

    async def cancel(self, task_id: str) -> dict[str, Any]:
        self._record("cancel", task_id)
        return {"task": task_id, "status": "cancelled"}

    async def approve(self, ref: str) -> dict[str, Any]:
        self._record("approve", ref)
        self.approved_by = caller.current()
        return {"pr": ref, "merged": True}

    async def reject(self, ref: str) -> dict[str, Any]:
        self._record("reject", ref)
        return {"pr": ref, "closed": True}

    async def accept(self, ref: str) -> dict[str, Any]:
        self._record("accept", ref)
        self.approved_by = caller.current()
        return {"issue": ref, "result": "accepted"}


class Sleeps:
    """An injected sleep that records delays and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


class Harness:
    """A started bot wired to the fake server and a fake controller."""

    def __init__(self, fake: FakeTelegram, controller: FakeController, bot: TelegramBot, sleeps: Sleeps) -> None:
        self.fake = fake
        self.controller = controller
        self.bot = bot
        self.sleeps = sleeps

    async def say(self, text: str, chat_id: int = ALLOWED) -> str:
        """Send ``text`` from ``chat_id`` and return the bot's next reply there."""
        before = len([m for m in self.fake.sent if m.chat_id == chat_id])
        self.fake.inject_message(chat_id, text)
        sent = await self.fake.wait_sent(before + 1, chat_id=chat_id)
        return sent[before].text


def make_bot(fake: FakeTelegram, controller: ControllerPort, sleeps: Sleeps, **kwargs: Any) -> TelegramBot:
    return TelegramBot(
        fake.token,
        controller,
        {ALLOWED},
        session=fake.session(),
        polling_timeout=1,
        backoff=FAST_BACKOFF,
        sleep=sleeps,
        **kwargs,
    )


@pytest_asyncio.fixture
async def harness(fake_telegram: FakeTelegram) -> AsyncIterator[Harness]:  # noqa: F811
    controller = FakeController()
    sleeps = Sleeps()
    bot = make_bot(fake_telegram, controller, sleeps)
    await bot.start()
    try:
        yield Harness(fake_telegram, controller, bot, sleeps)
    finally:
        await bot.stop()


# ---------------------------------------------------------------- pure parts


class TestParseCommand:
    """parse_command turns chat text into a validated Command or a ParseError with the usage."""

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            pytest.param("/status", Command("status"), id="status"),
            pytest.param("  /STATUS  ", Command("status"), id="case-and-space"),
            pytest.param("/status@agentos_bot", Command("status", mention="agentos_bot"), id="mention"),
            pytest.param("/pause", Command("pause"), id="alias-pause"),
            pytest.param("/start", Command("help"), id="alias-start"),
            pytest.param("/job OFF dispatch", Command("job", {"name": "dispatch", "enabled": False}), id="job"),
            pytest.param(
                "/repo mode calc dispatcher",
                Command("repo_mode", {"name": "calc", "mode": "dispatcher_only"}),
                id="mode",
            ),
            pytest.param("/repo cadence calc 007", Command("repo_cadence", {"name": "calc", "days": 7}), id="cadence"),
            pytest.param(
                "/tasks blocked calc", Command("tasks", {"repo": "calc", "status": "blocked"}), id="tasks-filters"
            ),
            pytest.param("/approve calc#12", Command("approve", {"ref": "calc#12"}), id="approve"),
            pytest.param("/agents", Command("agents"), id="agents"),
            pytest.param("/agent RESUME claude", Command("agent_resume", {"name": "claude"}), id="agent-resume"),
        ],
    )
    def test_valid(self, text: str, expected: Command) -> None:
        """Valid commands parse to their canonical form."""
        assert parse_command(text) == expected

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            pytest.param("hello", "Not a command", id="not-a-command"),
            pytest.param("/frobnicate", "Unknown command", id="unknown"),
            pytest.param("/job maybe dispatch", "usage: /job on|off NAME", id="job-bad-switch"),
            pytest.param("/job on", "usage: /job on|off NAME", id="job-missing-name"),
            pytest.param("/repo mode calc fast", "usage: /repo", id="bad-mode"),
            pytest.param("/repo cadence calc 0", "usage: /repo", id="zero-days"),
            pytest.param("/repo cadence calc ٣", "usage: /repo", id="non-ascii-digit"),
            pytest.param("/retry", "usage: /retry ID", id="retry-missing-id"),
            pytest.param("/status now", "usage: /status", id="extra-arg"),
            pytest.param("/tasks a b c", "usage: /tasks", id="too-many-filters"),
            pytest.param("/agent claude", "usage: /agent resume NAME", id="agent-missing-verb"),
            pytest.param("/agent pause claude", "usage: /agent resume NAME", id="agent-bad-verb"),
            pytest.param("/agents claude", "usage: /agents", id="agents-extra-arg"),
        ],
    )
    def test_invalid(self, text: str, message: str) -> None:
        """Bad input raises ParseError whose text is a one-line usage or hint."""
        with pytest.raises(ParseError) as info:
            parse_command(text)
        assert str(info.value).startswith(message)
        assert "\n" not in str(info.value)

    @given(st.text())
    def test_any_text_parses_or_raises_parse_error(self, text: str) -> None:
        """Fuzz: any string yields a Command or a ParseError, nothing else."""
        try:
            command = parse_command(text)
        except ParseError:
            return
        assert isinstance(command, Command)

    @given(st.lists(st.text(min_size=1).filter(lambda s: s.strip() == s and " " not in s), max_size=4))
    def test_any_arguments_after_a_known_command(self, args: list[str]) -> None:
        """Fuzz: arguments to a known command give that command, or one line with its usage, nothing else."""
        commands = {"job": {"job"}, "repo": {"repo", "repo_mode", "repo_cadence"}, "tasks": {"tasks"}}
        commands |= {"retry": {"retry"}, "run": {"run"}, "status": {"status"}}
        for name, meant in commands.items():
            try:
                command = parse_command(" ".join([f"/{name}", *args]))
            except ParseError as exc:
                assert str(exc).startswith(f"usage: /{name}") and "\n" not in str(exc)
            else:
                assert command.name in meant


class TestButtons:
    """Button data built by notify.action_button is what ActionCallback unpacks."""

    def test_action_button_round_trips(self) -> None:
        """The callback data unpacks to the same action and ref."""
        _, data = action_button("Approve", "approve", "owner/repo#12")
        unpacked = ActionCallback.unpack(data)
        assert (unpacked.action, unpacked.ref) == ("approve", "owner/repo#12")
        assert ActionCallback(action="approve", ref="owner/repo#12").pack() == data

    def test_keyboard_rows_and_url_buttons(self) -> None:
        """Buttons go three to a row; an https value becomes a URL button."""
        markup = keyboard([("A", "act:retry:x"), ("B", "act:cancel:x"), ("C", "https://h/1"), ("D", "act:reject:x")])
        assert markup is not None
        rows = markup.inline_keyboard
        assert [len(r) for r in rows] == [3, 1]
        assert rows[0][2].url == "https://h/1"
        assert keyboard([]) is None

    def test_bot_commands_cover_the_help(self) -> None:
        """Every command is registered for the client's menu."""
        assert {c.command for c in bot_commands()} >= {"status", "on", "off", "job", "repo", "approve", "help"}


# ---------------------------------------------------------------- through aiogram and HTTP


class TestLifecycle:
    """start() prepares the bot and polls on this loop; stop() ends it cleanly."""

    async def test_start_registers_commands_and_drops_webhook(self, harness: Harness) -> None:
        """deleteWebhook and setMyCommands are called before polling."""
        fake = harness.fake
        assert fake.called("deleteWebhook")
        assert {c["command"] for c in fake.commands[-1]} == {c.command for c in bot_commands()}
        await fake.wait_for(lambda: bool(fake.called("getUpdates")))
        assert "polling" in repr(harness.bot)

    async def test_rejected_token_is_a_control_error(self, fake_telegram: FakeTelegram) -> None:  # noqa: F811
        """A token the Bot API refuses raises ControlError without starting polling."""
        bot = TelegramBot("999:WRONG", FakeController(), {ALLOWED}, session=fake_telegram.session())
        with pytest.raises(ControlError, match="rejected the token"):
            await bot.start()
        await bot.stop()

    def test_malformed_token_is_a_control_error(self) -> None:
        """A token that is not N:SECRET is refused at construction, without echoing it."""
        with pytest.raises(ControlError, match="malformed") as info:
            TelegramBot("not a token", FakeController(), {ALLOWED})
        assert "not a token" not in str(info.value)

    async def test_stop_is_prompt_and_leaves_the_session_to_its_owner(self, harness: Harness) -> None:
        """stop() returns quickly while a long poll is pending and does not close an injected session."""
        async with asyncio.timeout(1):
            await harness.bot.stop()
        assert "stopped" in repr(harness.bot)
        await harness.bot.bot.get_me()  # the caller's session still works

    async def test_api_base_points_aiogram_at_another_server(self, fake_telegram: FakeTelegram) -> None:  # noqa: F811
        """api_base alone is enough to talk to a local Bot API server."""
        session = FastAiohttpSession()  # aimed at api.telegram.org until api_base says otherwise
        bot = TelegramBot(fake_telegram.token, FakeController(), {ALLOWED}, api_base=fake_telegram.url, session=session)
        me = await bot.bot.get_me()
        assert me.username == fake_telegram.username
        await session.close()


class TestCommands:
    """Every command from an allowed chat calls the right controller method and replies."""

    @pytest.mark.parametrize(
        ("text", "call", "reply"),
        [
            pytest.param("/status", ("status",), "1 running · 2 queued · up 2h 1m", id="status"),
            pytest.param("/off", ("pause",), "Paused", id="off"),
            pytest.param("/on", ("resume",), "Resumed", id="on"),
            pytest.param("/jobs", ("jobs",), "✗ pr_monitor", id="jobs"),
            pytest.param("/job off dispatch", ("set_job", "dispatch", False), "Job dispatch disabled", id="job-off"),
            pytest.param("/job on pr_monitor", ("set_job", "pr_monitor", True), "enabled", id="job-on"),
            pytest.param("/run pr_monitor", ("run_job", "pr_monitor"), "Job pr_monitor started", id="run"),
            pytest.param("/repos", ("repos",), "calc · full · groom every 7d", id="repos"),
            pytest.param("/repo off calc", ("set_repo", "calc", False), "Repo calc disabled", id="repo-off"),
            pytest.param("/repo on calc", ("set_repo", "calc", True), "Repo calc enabled", id="repo-on"),
            pytest.param(
                "/repo mode calc dispatcher",
                ("set_repo_mode", "calc", "dispatcher_only"),
                "mode dispatcher_only",
                id="repo-mode",
            ),
            pytest.param("/repo cadence calc 14", ("set_repo_cadence", "calc", 14), "every 14 days", id="repo-cadence"),
            pytest.param("/tasks", ("tasks", None, None), "calc#12 · running · claude · try 2", id="tasks"),
            pytest.param("/tasks calc blocked", ("tasks", "calc", "blocked"), "calc#12", id="tasks-filtered"),
            pytest.param("/task calc#12", ("task", "calc#12"), "- 1 · claude · blocked · timeout", id="task"),
            pytest.param("/retry calc#12", ("retry", "calc#12"), "Task calc#12 re-queued", id="retry"),
            pytest.param("/cancel calc#12", ("cancel", "calc#12"), "Task calc#12 cancelled", id="cancel"),
            pytest.param("/approve calc#7", ("approve", "calc#7"), "PR calc#7 approved", id="approve"),
            pytest.param("/reject 7", ("reject", "7"), "PR 7 rejected", id="reject"),
            pytest.param(
                "/agents",
                ("agents",),
                "⏸ claude · paused until 2026-12-01 00:00 Europe/Berlin · /agent resume claude\n"
                "    why: monthly budget: spent 1,000 tokens / $11.00 over 1 attempt in 2026-11; limit $10.00\n"
                "    2026-11: 1,000 tokens / $11.00 over 1 attempt · limits month: warn $5.00, max $10.00\n"
                "✓ codex\n",
                id="agents",
            ),
            pytest.param(
                "/agent resume claude",
                ("resume_agent", "claude"),
                "Agent claude resumed (it was paused: monthly budget: …).\nstill over budget for 2026-11",
                id="agent-resume",
            ),
            pytest.param(
                f"/retry {OVER_BUDGET}", ("retry", OVER_BUDGET), f"re-queued.\n{BUDGET_NOTE}", id="retry-budget"
            ),
        ],
    )
    async def test_command(self, harness: Harness, text: str, call: tuple[Any, ...], reply: str) -> None:
        """The command reaches the controller once and the reply says what happened."""
        answer = await harness.say(text)
        assert harness.controller.calls == [call]
        assert reply in answer

    async def test_help_lists_every_command(self, harness: Harness) -> None:
        """/help answers without touching the controller."""
        answer = await harness.say("/help")
        for usage in ("/status", "/job on|off NAME", "/repo cadence NAME DAYS", "/approve PR"):
            assert usage in answer
        assert harness.controller.calls == []

    async def test_off_then_on(self, harness: Harness) -> None:
        """/off pauses and /on resumes, as /status shows."""
        await harness.say("/off")
        assert "Paused" in await harness.say("/status")
        assert harness.controller.paused
        await harness.say("/on")
        assert "Running" in await harness.say("/status")
        assert harness.controller.names() == ["pause", "status", "resume", "status"]

    @pytest.mark.parametrize(
        ("text", "usage"),
        [
            pytest.param("/job sometimes dispatch", "usage: /job on|off NAME", id="job"),
            pytest.param("/repo cadence calc soon", "usage: /repo", id="cadence"),
            pytest.param("/retry", "usage: /retry ID", id="retry"),
            pytest.param("/nope", "Unknown command", id="unknown"),
        ],
    )
    async def test_bad_arguments_get_a_usage_line(self, harness: Harness, text: str, usage: str) -> None:
        """A malformed command gets a one-line usage and calls nothing."""
        answer = await harness.say(text)
        assert answer.startswith(usage) and "\n" not in answer
        assert harness.controller.calls == []

    async def test_any_job_may_be_disabled(self, harness: Harness) -> None:
        """/job off NAME reaches the controller for every name: the bot is not a job, so none locks you out."""
        assert await harness.say("/job off telegram") == "Job telegram disabled."
        assert harness.controller.calls == [("set_job", "telegram", False)]

    async def test_controller_error_is_the_reply(self, harness: Harness) -> None:
        """A ControlError's one-line message is sent back as is."""
        assert await harness.say("/task calc#99") == "no task 'calc#99'"

    async def test_command_for_another_bot_is_ignored(self, harness: Harness) -> None:
        """/status@other_bot in a group is not ours to answer."""
        harness.fake.inject_message(ALLOWED, "/status@other_bot")
        assert "Running" in await harness.say("/status@agentos_test_bot")
        assert harness.controller.names() == ["status"]

    async def test_stale_command_is_not_executed(self, harness: Harness) -> None:
        """A command replayed from long ago (after a restart) is refused, not run."""
        harness.fake.inject_message(ALLOWED, "/off", date=harness.fake.clock() - 7200)
        sent = await harness.fake.wait_sent(1, chat_id=ALLOWED)
        assert sent[0].text.startswith("Ignored /off: sent 2h 0m ago")
        assert harness.controller.calls == []

    async def test_reply_is_redacted(self, harness: Harness) -> None:
        """A token in data the controller returns never reaches the chat."""
        harness.controller.title = f"leaked {GITHUB_TOKEN}"
        answer = await harness.say("/task calc#12")
        assert GITHUB_TOKEN not in answer and "[REDACTED]" in answer


class TestAllowlist:
    """Chats outside the allowlist get nothing and change nothing."""

    async def test_stranger_gets_no_reply_and_no_action(self, harness: Harness) -> None:
        """A stranger's /off is dropped silently and logged once per chat."""
        with capture_logs() as logs:
            harness.fake.inject_message(STRANGER, "/off")
            harness.fake.inject_message(STRANGER, "/status")
            harness.fake.inject_callback(STRANGER, "act:retry:calc#12")
            await harness.fake.wait_for(lambda: harness.bot.dropped == 3)
            await harness.say("/status")
        assert [m for m in harness.fake.sent if m.chat_id == STRANGER] == []
        assert harness.fake.answers == []
        assert harness.controller.names() == ["status"]
        dropped = [e for e in logs if e["event"] == "telegram_stranger_dropped"]
        assert len(dropped) == 1 and dropped[0]["chat_id"] == STRANGER


class TestNotificationsAndButtons:
    """Notifications reach the allowed chats with buttons that call the controller."""

    async def test_escalation_buttons_and_retry(self, harness: Harness) -> None:
        """Retry on an escalation re-queues the task once; a second press says it is already done."""
        fake, controller = harness.fake, harness.controller
        notifier = Notifier(harness.bot.sender(), seen=MemorySeenStore(), sleep=harness.sleeps)
        notifier.notify(
            1,
            "escalated:calc#12",
            "calc#12 escalated after 4 attempts",
            [
                Action("retry", "calc#12", "Retry"),
                Action("cancel", "calc#12", "Cancel"),
                Action("show", "calc#12", "Open issue", "https://forge.example/calc/issues/12"),
            ],
        )
        await notifier.aclose()
        (sent,) = fake.sent
        assert sent.buttons == [
            ("Retry", "act:retry:calc#12"),
            ("Cancel", "act:cancel:calc#12"),
            ("Open issue", "https://forge.example/calc/issues/12"),
        ]
        first = fake.inject_callback(ALLOWED, "act:retry:calc#12", message_id=sent.message_id)
        await fake.wait_for(lambda: sent.edits == 1)
        second = fake.inject_callback(ALLOWED, "act:retry:calc#12", message_id=sent.message_id)
        await fake.wait_for(lambda: len(fake.answers) == 2)
        answers = {a["callback_query_id"]: a.get("text") for a in fake.answers}
        assert answers[first] == "calc#12 re-queued."
        assert answers[second] == "task calc#12 is already queued"
        assert controller.names() == ["retry", "retry"] and controller.queued == {"calc#12"}
        assert sent.reply_markup is None  # keyboard removed after the first press
        assert "✓ calc#12 re-queued. (by Op1001)" in sent.text

    async def test_retry_button_carries_the_budget_note(self, harness: Harness) -> None:
        """Retry on a task over its budget answers, and marks the notification, with the note /retry gives."""
        fake = harness.fake
        notifier = Notifier(harness.bot.sender(), seen=MemorySeenStore(), sleep=harness.sleeps)
        notifier.notify(
            1, f"escalated:{OVER_BUDGET}", "escalated: budget", [Action("retry", OVER_BUDGET, "Retry")]
        )
        await notifier.aclose()
        (sent,) = fake.sent
        fake.inject_callback(ALLOWED, f"act:retry:{OVER_BUDGET}", message_id=sent.message_id)
        await fake.wait_for(lambda: sent.edits == 1)
        assert fake.answers[0]["text"] == f"{OVER_BUDGET} re-queued.\n{BUDGET_NOTE}"
        assert sent.text.endswith(f"✓ {OVER_BUDGET} re-queued. (by Op1001)\n{BUDGET_NOTE}"), sent.text

    async def test_approve_button(self, harness: Harness) -> None:
        """Approve on a waiting high-risk PR calls controller.approve with the PR ref, as telegram:<chat>."""
        notifier = Notifier(harness.bot.sender(), seen=MemorySeenStore())
        notifier.notify(
            1,
            "approval:calc#7",
            "High-risk PR calc#7 waits",
            [Action("approve", "calc#7", "Approve"), Action("reject", "calc#7", "Reject")],
        )
        await notifier.aclose()
        harness.fake.inject_callback(ALLOWED, "act:approve:calc#7")
        await harness.fake.wait_for(lambda: bool(harness.fake.answers))
        assert harness.controller.calls == [("approve", "calc#7")]
        assert harness.controller.approved_by == f"telegram:{ALLOWED}"

    async def test_accept_button(self, harness: Harness) -> None:
        """Accept on a merged issue waiting for sign-off calls controller.accept with the issue, as telegram:<chat>."""
        notifier = Notifier(harness.bot.sender(), seen=MemorySeenStore())
        notifier.notify(2, "acceptance:calc#7", "calc#7 waits for sign-off", [Action("accept", "calc#7", "Accept")])
        await notifier.aclose()
        harness.fake.inject_callback(ALLOWED, "act:accept:calc#7")
        await harness.fake.wait_for(lambda: bool(harness.fake.answers))
        assert harness.controller.calls == [("accept", "calc#7")]
        assert harness.controller.approved_by == f"telegram:{ALLOWED}"
        assert harness.fake.answers[0]["text"] == "calc#7 accepted."

    async def test_unknown_button_is_answered(self, harness: Harness) -> None:
        """Foreign callback data gets an answer (no hanging spinner) and no action."""
        harness.fake.inject_callback(ALLOWED, "legacy:thing")
        await harness.fake.wait_for(lambda: bool(harness.fake.answers))
        assert "not understood" in harness.fake.answers[0]["text"]
        assert harness.controller.calls == []

    async def test_planted_token_is_redacted(self, harness: Harness) -> None:
        """An agent summary carrying a token arrives redacted."""
        notifier = Notifier(harness.bot.sender(), seen=MemorySeenStore())
        notifier.notify(1, "escalated:calc#3", f"summary: pushed with {GITHUB_TOKEN}, bot {harness.fake.token}")
        await notifier.aclose()
        (sent,) = harness.fake.sent
        assert GITHUB_TOKEN not in sent.text and harness.fake.token not in sent.text
        assert sent.text.count("[REDACTED]") == 2

    async def test_long_text_is_split(self, harness: Harness) -> None:
        """A long notification arrives as several messages under the limit, in order."""
        notifier = Notifier(harness.bot.sender(), seen=MemorySeenStore())
        lines = [f"line {i:04d} " + "z" * 90 for i in range(120)]
        notifier.notify(2, "log", "\n".join(lines), [Action("retry", "calc#1", "Retry")])
        await notifier.aclose()
        sent = harness.fake.sent
        assert len(sent) == 3
        assert all(text_units(m.text) <= TELEGRAM_TEXT_LIMIT for m in sent)
        assert [line for m in sent for line in m.text.splitlines()] == lines
        assert [bool(m.buttons) for m in sent] == [False, False, True]

    async def test_every_allowed_chat_gets_it_once_despite_a_429(
        self,
        fake_telegram: FakeTelegram,  # noqa: F811
    ) -> None:
        """With two chats, a 429 for the second chat retries only the second."""
        sleeps = Sleeps()
        bot = TelegramBot(fake_telegram.token, FakeController(), {1, 2}, session=fake_telegram.session())
        fake_telegram.fail_next(1, methods=["sendMessage"], chat_id=2)
        notifier = Notifier(bot.sender(), seen=MemorySeenStore(), sleep=sleeps)
        notifier.notify(1, "k", "to both")
        await notifier.aclose()
        assert [m.chat_id for m in fake_telegram.sent] == [1, 2]
        assert sleeps.delays == [1.0]


class TestRateLimits:
    """429s from the Bot API are waited out, by the Notifier and by aiogram's polling."""

    async def test_notifier_waits_out_429(self, harness: Harness) -> None:
        """Two 429s on sendMessage are waited out with retry_after through the injected sleep."""
        harness.fake.fail_next(2, methods=["sendMessage"], retry_after=1)
        notifier = Notifier(harness.bot.sender(), seen=MemorySeenStore(), sleep=harness.sleeps)
        notifier.notify(1, "k", "after the flood")
        await notifier.aclose()
        assert [m.text for m in harness.fake.sent] == ["after the flood"]
        assert harness.fake.rejected == ["sendMessage", "sendMessage"]
        assert harness.sleeps.delays == [1.0, 1.0]

    async def test_command_reply_waits_out_429(self, harness: Harness) -> None:
        """A throttled reply is retried after retry_after."""
        harness.fake.fail_next(1, methods=["sendMessage"], retry_after=1)
        assert "Running" in await harness.say("/status")
        assert harness.sleeps.delays == [1.0]

    async def test_polling_survives_429_on_get_updates(self, harness: Harness) -> None:
        """aiogram backs off after a throttled getUpdates and keeps polling."""
        fake = harness.fake
        await harness.say("/status")
        fake.fail_next(2, methods=["getUpdates"])
        await harness.say("/status")  # wakes the pending long poll; the next two polls are throttled
        await fake.wait_for(lambda: len(fake.rejected) == 2)
        assert "Running" in await harness.say("/status")
        assert harness.controller.names() == ["status", "status", "status"]
