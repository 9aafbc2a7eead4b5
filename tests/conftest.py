"""Process-wide state that a test may change and the next test must not inherit."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog

from agentos.redact import get_default, set_default


@pytest.fixture(autouse=True)
def _isolate_logging_and_redaction() -> Iterator[None]:
    """Commands under test configure structlog and the redactor; every test starts from the defaults."""
    redactor = get_default()
    yield
    set_default(redactor)
    structlog.contextvars.clear_contextvars()
    structlog.reset_defaults()
    logging.basicConfig(handlers=[logging.NullHandler()], force=True)
