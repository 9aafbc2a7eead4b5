"""Notifier: severities, dedup, digest, redaction, splitting and retried background delivery."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentos.graph import Event
from agentos.ops.notify import (
    TELEGRAM_TEXT_LIMIT,
    Action,
    MemorySeenStore,
    Message,
    Notifier,
    TransientSendError,
    action_button,
    backoff_delay,
    buttons,
    issue_button,
    retry_delay,
    retry_send,
    split_text,
    text_units,
)
from agentos.store import Store

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
GITHUB_TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"


class Clock:
    """A settable clock."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Sleeps:
    """An injected sleep that records the delays and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


class Outbox:
    """A ``send`` that records messages and can be told to fail first."""

    def __init__(self, failures: list[BaseException] | None = None) -> None:
        self.messages: list[Message] = []
        self.failures = list(failures or [])
        self.calls = 0

    async def __call__(self, message: Message) -> None:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        self.messages.append(message)


class RetryAfter(Exception):
    """Shaped like aiogram's TelegramRetryAfter: it carries ``retry_after``."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"Too Many Requests: retry after {retry_after}")
        self.retry_after = retry_after


def make(
    outbox: Outbox | None = None, *, seen: MemorySeenStore | None = None, clock: Clock | None = None
) -> tuple[Notifier, Outbox, Sleeps]:
    box = outbox if outbox is not None else Outbox()
    sleeps = Sleeps()
    notifier = Notifier(box, seen=seen or MemorySeenStore(), clock=clock or Clock(), sleep=sleeps, dedup_window_s=3600)
    return notifier, box, sleeps


class TestSplitText:
    """split_text cuts at Telegram's limit, on line boundaries when it can."""

    def test_short_text_is_one_chunk(self) -> None:
        """A text under the limit comes back unchanged."""
        assert split_text("hello\nworld") == ["hello\nworld"]

    def test_splits_on_line_boundaries(self) -> None:
        """Whole lines are kept together when they fit."""
        lines = [f"line {i:04d} " + "x" * 80 for i in range(200)]
        chunks = split_text("\n".join(lines))
        assert len(chunks) > 1
        assert all(text_units(c) <= TELEGRAM_TEXT_LIMIT for c in chunks)
        rebuilt = [line for chunk in chunks for line in chunk.splitlines()]
        assert rebuilt == lines

    def test_long_line_is_cut_at_a_space(self) -> None:
        """A single line over the limit is cut after a space rather than mid-word."""
        words = " ".join(["word"] * 3000)
        chunks = split_text(words, limit=100)
        assert all(c.endswith(" ") or c == chunks[-1] for c in chunks)
        assert "".join(chunks) == words

    def test_emoji_count_two_units(self) -> None:
        """Astral characters count as two UTF-16 units and are never split in half."""
        chunks = split_text("😀" * 3000)
        assert all(text_units(c) <= TELEGRAM_TEXT_LIMIT for c in chunks)
        assert "".join(chunks) == "😀" * 3000

    def test_blank_text_gives_nothing(self) -> None:
        """Whitespace-only text yields no chunk (Telegram rejects empty messages)."""
        assert split_text(" \n\n  ") == []

    @given(st.text(max_size=3000), st.integers(min_value=2, max_value=500))
    def test_any_text_fits_and_loses_nothing(self, text: str, limit: int) -> None:
        """Every chunk fits the limit and no non-whitespace character is lost or reordered."""
        chunks = split_text(text, limit)
        assert all(0 < text_units(c) <= limit and c.strip() for c in chunks)
        assert "".join("".join(chunks).split()) == "".join(text.split())


class TestRetryPolicy:
    """Backoff maths and which errors are retried."""

    @pytest.mark.parametrize(
        ("attempt", "expected"),
        [pytest.param(1, 1.0, id="first"), pytest.param(3, 4.0, id="third"), pytest.param(10, 60.0, id="capped")],
    )
    def test_backoff_delay(self, attempt: int, expected: float) -> None:
        """The delay doubles per attempt from 1 s and is capped at 60 s."""
        assert backoff_delay(attempt) == expected

    @pytest.mark.parametrize(
        ("exc", "expected"),
        [
            pytest.param(RetryAfter(7), 7.0, id="429-waits-retry-after"),
            pytest.param(TransientSendError("reset"), 2.0, id="transient-backs-off"),
            pytest.param(ConnectionResetError(), 2.0, id="oserror-backs-off"),
            pytest.param(ValueError("bad request"), None, id="permanent"),
        ],
    )
    def test_retry_delay(self, exc: BaseException, expected: float | None) -> None:
        """A 429 waits its retry_after, network errors back off, anything else is final."""
        assert retry_delay(exc, 2) == expected

    async def test_retry_send_gives_up_after_max_attempts(self) -> None:
        """The last error is re-raised once max_attempts calls have failed."""
        sleeps = Sleeps()
        calls = 0

        async def failing() -> None:
            nonlocal calls
            calls += 1
            raise TransientSendError("down")

        with pytest.raises(TransientSendError):
            await retry_send(failing, sleep=sleeps, max_attempts=3)
        assert calls == 3
        assert sleeps.delays == [1.0, 2.0]


class TestActionButton:
    """action_button builds compact callback data the bot can unpack."""

    def test_packs_action_and_ref(self) -> None:
        """The data is prefix:action:ref."""
        assert action_button("Retry", "retry", "calc#12") == ("Retry", "act:retry:calc#12")

    @pytest.mark.parametrize("ref", ["a:b", "", "x" * 60])
    def test_rejects_unpackable_refs(self, ref: str) -> None:
        """A ref with ':' , empty, or over 64 bytes of data is refused."""
        with pytest.raises(ValueError):
            action_button("Retry", "retry", ref)

    def test_open_issue_is_a_link_on_a_web_forge_and_a_show_action_otherwise(self) -> None:
        """GitHub issues open in the browser; a local forge's file:// issue is shown by the bot instead."""
        url = "https://github.com/acme/calc/issues/12"
        assert issue_button(url, "acme/calc#12") == ("Open issue", url)
        assert issue_button("file:///srv/forge/calc/issues/12.md", "calc#12") == ("Open issue", "act:show:calc#12")
        assert issue_button("", "calc#12") == ("Open issue", "act:show:calc#12")


class TestSeverities:
    """sev1 once ever, sev2 once per window, sev3 into the digest."""

    async def test_sev1_is_sent_once_per_key_ever(self) -> None:
        """A second sev1 with the same key is suppressed, even by a new Notifier sharing the store."""
        seen = MemorySeenStore()
        notifier, box, _ = make(seen=seen)
        assert notifier.notify(1, "escalated:calc#1", "Task calc#1 escalated")
        assert not notifier.notify(1, "escalated:calc#1", "Task calc#1 escalated again")
        await notifier.aclose()
        again, box2, _ = make(seen=seen)
        assert not again.notify(1, "escalated:calc#1", "after a restart")
        await again.aclose()
        assert [m.text for m in box.messages] == ["Task calc#1 escalated"]
        assert box2.messages == []

    async def test_sev2_dedup_window(self) -> None:
        """A sev2 key is suppressed inside the window and sent again after it."""
        clock = Clock()
        notifier, box, _ = make(clock=clock)
        assert notifier.notify(2, "quota:claude", "claude hit its limit")
        clock.now += 1800
        assert not notifier.notify(2, "quota:claude", "claude hit its limit")
        clock.now += 1801
        assert notifier.notify(2, "quota:claude", "claude hit its limit (again)")
        await notifier.aclose()
        assert len(box.messages) == 2

    async def test_sev3_goes_to_the_digest(self) -> None:
        """sev3 is not sent; drain_digest returns it once, first text per key."""
        notifier, box, _ = make()
        notifier.notify(3, "merged:calc#1", "merged calc#1")
        notifier.notify(3, "merged:calc#1", "merged calc#1 (dup)")
        notifier.notify(3, "merged:calc#2", "merged calc#2")
        await notifier.aclose()
        assert box.messages == []
        assert [m.text for m in notifier.drain_digest()] == ["merged calc#1", "merged calc#2"]
        assert notifier.drain_digest() == []

    async def test_bad_severity_and_blank_text_are_errors(self) -> None:
        """Programming errors fail loudly at the call."""
        notifier, _, _ = make()
        with pytest.raises(ValueError):
            notifier.notify(4, "k", "text")  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            notifier.notify(1, "k", "   ")

    async def test_without_transport_nothing_is_sent_but_dedup_holds(self) -> None:
        """With send=None messages are dropped and the sev1 key is still recorded."""
        seen = MemorySeenStore()
        notifier = Notifier(None, seen=seen)
        assert notifier.notify(1, "k", "text")
        assert seen.has("k")
        await notifier.aclose()


class TestRedactionAndSplitting:
    """Every text is redacted; long texts arrive in order with buttons on the last chunk."""

    async def test_planted_token_is_redacted(self) -> None:
        """A token inside the text never reaches send; button labels are redacted too."""
        notifier, box, _ = make()
        notifier.notify(2, "k", f"agent said: export GITHUB_TOKEN={GITHUB_TOKEN}", [Action("retry", "x", GITHUB_TOKEN)])
        notifier.notify(3, "d", f"digest {GITHUB_TOKEN}")
        await notifier.aclose()
        assert GITHUB_TOKEN not in box.messages[0].text
        assert "[REDACTED]" in box.messages[0].text
        assert box.messages[0].buttons == [("[REDACTED]", "act:retry:x")]
        assert GITHUB_TOKEN not in notifier.drain_digest()[0].text

    async def test_long_text_is_split_with_buttons_on_the_last_chunk(self) -> None:
        """A 10 000-character text goes out as ordered chunks under the limit."""
        notifier, box, _ = make()
        text = "\n".join(f"{i:05d} " + "y" * 94 for i in range(100))
        notifier.notify(1, "long", text, [Action("retry", "calc#1", "Retry")])
        await notifier.aclose()
        assert len(box.messages) == 3
        assert all(text_units(m.text) <= TELEGRAM_TEXT_LIMIT for m in box.messages)
        assert "".join(m.text for m in box.messages) == text
        assert [m.buttons for m in box.messages] == [[], [], [("Retry", "act:retry:calc#1")]]
        assert len({m.seq for m in box.messages}) == 3


class TestDelivery:
    """Delivery runs in the background and retries what is worth retrying."""

    async def test_caller_does_not_wait_for_the_network(self) -> None:
        """notify() returns while send is still blocked; aclose() flushes it."""
        sending, release = asyncio.Event(), asyncio.Event()
        delivered: list[str] = []

        async def slow(message: Message) -> None:
            sending.set()
            await release.wait()
            delivered.append(message.text)

        notifier = Notifier(slow, seen=MemorySeenStore())
        assert notifier.notify(1, "k", "hello")
        await asyncio.wait_for(sending.wait(), 10)  # the send is under way in the background, blocked
        assert delivered == []
        release.set()
        await notifier.aclose()
        assert delivered == ["hello"]

    async def test_429_is_waited_out(self) -> None:
        """A retry_after error sleeps exactly retry_after (through the injected sleep) and retries."""
        notifier, box, sleeps = make(Outbox([RetryAfter(1), RetryAfter(3)]))
        notifier.notify(1, "k", "hello")
        await notifier.aclose()
        assert [m.text for m in box.messages] == ["hello"]
        assert sleeps.delays == [1.0, 3.0]

    async def test_network_errors_back_off(self) -> None:
        """Transient errors are retried with growing delays."""
        notifier, box, sleeps = make(Outbox([TransientSendError("reset"), OSError("unreachable")]))
        notifier.notify(1, "k", "hello")
        await notifier.aclose()
        assert len(box.messages) == 1
        assert sleeps.delays == [1.0, 2.0]

    async def test_permanent_error_drops_one_message_only(self) -> None:
        """A non-retryable error drops that message; the next one still goes out."""
        notifier, box, sleeps = make(Outbox([ValueError("chat not found")]))
        notifier.notify(1, "a", "first")
        notifier.notify(1, "b", "second")
        await notifier.aclose()
        assert [m.text for m in box.messages] == ["second"]
        assert (notifier.failed, notifier.sent, sleeps.delays) == (1, 1, [])

    async def test_aclose_gives_up_after_timeout(self) -> None:
        """A send that never finishes does not hang shutdown past the timeout."""

        async def stuck(message: Message) -> None:
            await asyncio.Event().wait()

        notifier = Notifier(stuck, seen=MemorySeenStore())
        notifier.notify(1, "k", "hello")
        await notifier.aclose(timeout=0.01)
        assert not notifier.notify(1, "k2", "after close")

    async def test_repr_shows_counters(self) -> None:
        """repr carries the live counters."""
        notifier, _, _ = make()
        notifier.notify(1, "k", "x")
        notifier.notify(1, "k", "x")
        await notifier.aclose()
        assert "sent=1" in repr(notifier) and "suppressed=1" in repr(notifier)


class TestJournal:
    """Every accepted notification is one ``notification_sent`` journal event; suppressed ones are not."""

    async def test_each_notification_is_journalled_once_with_redacted_truncated_text(self, tmp_path: Path) -> None:
        """Through a real store: kind, severity, key, channel and the redacted text cut to 500 characters."""
        store = Store(tmp_path / "state", fsync=False)
        store.lock()
        store.load()

        def journal(data: dict[str, str | int]) -> None:
            store.append([Event(type="notification_sent", task=None, ts=T0, data=dict(data))])

        notifier = Notifier(Outbox(), seen=MemorySeenStore(), sleep=Sleeps(), journal=journal)
        notifier.notify(1, "escalated:calc#1", f"Task calc#1 escalated, token {GITHUB_TOKEN}\n" + "x" * 900)
        notifier.notify(1, "escalated:calc#1", "suppressed: same key")
        notifier.notify(2, "wedged:calc#2", "Closed wedged PR calc#7")
        notifier.notify(3, "merged:calc#3", "Merged calc#9")
        await notifier.aclose()
        events = [e for e in store.iter_events(T0) if e.type == "notification_sent"]
        store.close()

        assert [(e.data["kind"], e.data["severity"], e.data["key"], e.data["channel"]) for e in events] == [
            ("escalated", 1, "escalated:calc#1", "telegram"),
            ("wedged", 2, "wedged:calc#2", "telegram"),
            ("merged", 3, "merged:calc#3", "digest"),
        ]
        first = events[0].data["text"]
        assert GITHUB_TOKEN not in first and "[REDACTED]" in first
        assert len(first) == 500 and first.endswith("…")

    async def test_without_transport_the_channel_is_none(self) -> None:
        """Telegram off: the event still says what would have been sent, on channel ``none``."""
        seen: list[dict[str, str | int]] = []
        notifier = Notifier(None, seen=MemorySeenStore(), journal=seen.append)
        notifier.notify(2, "job_failed:dispatch", "Job dispatch failed")
        await notifier.aclose()
        assert [(d["kind"], d["channel"]) for d in seen] == [("job_failed", "none")]

    async def test_a_journal_that_fails_does_not_stop_the_message(self) -> None:
        """An unwritable journal is logged; the notification is still delivered."""

        def broken(data: dict[str, str | int]) -> None:
            raise OSError("disk full")

        box = Outbox()
        notifier = Notifier(box, seen=MemorySeenStore(), sleep=Sleeps(), journal=broken)
        assert notifier.notify(1, "k", "still sent")
        await notifier.aclose()
        assert [m.text for m in box.messages] == ["still sent"]


class TestActions:
    """Domain actions become Telegram buttons only when rendered."""

    def test_actions_render_as_callback_and_url_buttons(self) -> None:
        """retry/cancel become act:<kind>:<ref> callbacks; show becomes the issue's URL, or a show callback."""
        url = "https://github.com/acme/calc/issues/12"
        assert buttons([Action("retry", "calc#12", "Retry"), Action("show", "calc#12", "Open issue", url)]) == [
            ("Retry", "act:retry:calc#12"),
            ("Open issue", url),
        ]
        assert buttons([Action("show", "calc#12", "Open issue")]) == [("Open issue", "act:show:calc#12")]

    def test_a_ref_too_long_for_telegram_keeps_only_the_url_button(self) -> None:
        """Past the 64-byte callback limit the callbacks go (/retry ID still works); the issue's URL stays."""
        ref = "owner/" + "r" * 70 + "#1"
        url = "https://github.com/owner/r/issues/1"
        assert buttons([Action("retry", ref, "Retry"), Action("show", ref, "Open issue", url)]) == [("Open issue", url)]
        assert buttons([Action("retry", ref, "Retry"), Action("show", ref, "Open issue")]) == []
