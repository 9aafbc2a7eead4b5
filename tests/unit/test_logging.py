"""Log lines: JSON with a syslog priority prefix for journald, task context, secrets redacted."""

from __future__ import annotations

import io
import json
import logging

import pytest
import structlog

from agentos import logging as alog
from agentos.redact import Redactor, get_default, set_default


@pytest.fixture(autouse=True)
def _reset() -> object:
    previous = get_default()
    yield
    set_default(previous)
    alog.clear()
    structlog.reset_defaults()
    logging.basicConfig(handlers=[logging.NullHandler()], force=True)


def lines(buf: io.StringIO) -> list[tuple[int, dict[str, object]]]:
    out = []
    for line in buf.getvalue().splitlines():
        prio, _, payload = line.partition(">")
        out.append((int(prio.lstrip("<")), json.loads(payload)))
    return out


class TestJournaldJSON:
    def test_levels_map_to_priorities(self) -> None:
        """Each line starts with <N> so journalctl -p warning filters; the rest is one JSON object."""
        buf = io.StringIO()
        alog.configure("debug", stream=buf, json=True)
        log = alog.get_logger("t")
        log.debug("d")
        log.info("i", n=1)
        log.warning("w")
        log.error("e")
        got = [(p, e["event"]) for p, e in lines(buf)]
        assert got == [(7, "d"), (6, "i"), (4, "w"), (3, "e")]

    def test_stdlib_loggers_are_rendered_too(self) -> None:
        """APScheduler, aiogram and httpx log through the stdlib; their lines come out the same way."""
        buf = io.StringIO()
        alog.configure("info", stream=buf, json=True)
        logging.getLogger("aiogram.dispatcher").warning("polling stopped")
        (prio, event), = lines(buf)
        assert prio == 4 and event["event"] == "polling stopped" and event["logger"] == "aiogram.dispatcher"

    def test_context_is_carried(self) -> None:
        """Context bound for a task appears on every line logged inside it."""
        buf = io.StringIO()
        alog.configure("info", stream=buf, json=True)
        with alog.bound(task="calc#1", repo="calc", attempt=2):
            alog.get_logger("t").info("agent_spawned", pid=42)
        alog.get_logger("t").info("outside")
        inside, outside = (e for _, e in lines(buf))
        assert inside["task"] == "calc#1" and inside["attempt"] == 2 and inside["pid"] == 42
        assert "task" not in outside

    def test_secrets_are_redacted(self) -> None:
        """A configured secret and a token-shaped string never reach the log."""
        set_default(Redactor(["hunter2-very-secret"]))
        buf = io.StringIO()
        alog.configure("info", stream=buf, json=True)
        alog.get_logger("t").error("push_failed", detail="auth hunter2-very-secret ghp_" + "a" * 36)
        text = buf.getvalue()
        assert "hunter2-very-secret" not in text and "ghp_aaaa" not in text and "[REDACTED]" in text

    def test_level_filter(self) -> None:
        """Below the configured level nothing is written."""
        buf = io.StringIO()
        alog.configure("warning", stream=buf, json=True)
        alog.get_logger("t").info("quiet")
        assert buf.getvalue() == ""
