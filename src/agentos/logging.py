"""structlog set-up for a systemd service.

Not on a TTY (journald, CI, pipes): one JSON object per line, prefixed ``<N>`` with the syslog priority so
journald stores PRIORITY and ``journalctl -p warning`` filters. On a TTY: structlog's console renderer.
Context (``task``, ``repo``, ``issue``, ``job``, ``attempt``) is bound with contextvars, so every line of
a task's work carries it. Every value passes the redactor on its way out.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from agentos.redact import RedactProcessor

PRIORITY = {"critical": 2, "error": 3, "exception": 3, "warning": 4, "info": 6, "debug": 7}
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class JournaldJSON:
    """Final renderer: ``<prio>{json}`` so journald sets PRIORITY from our level."""

    def __init__(self) -> None:
        self._json = structlog.processors.JSONRenderer(sort_keys=False)

    def __call__(self, logger: WrappedLogger, name: str, event_dict: EventDict) -> str:
        prio = PRIORITY.get(str(event_dict.get("level", "info")), 6)
        return f"<{prio}>" + str(self._json(logger, name, event_dict))


def configure(level: str = "info", *, stream: TextIO | None = None, json: bool | None = None) -> None:
    """Configure structlog and the stdlib loggers (APScheduler, aiogram, httpx) once, from ``main()``."""
    out = stream or sys.stdout
    use_json = (not out.isatty()) if json is None else json
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(),
        RedactProcessor(),
    ]
    renderer: Processor = JournaldJSON() if use_json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.ExceptionRenderer(
                    structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
                ),
                renderer,
            ],
        )
    )
    logging.basicConfig(handlers=[handler], level=LEVELS[level], force=True)
    for noisy in ("httpx", "httpcore", "aiogram.event", "apscheduler.executors.default"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("apscheduler.scheduler").setLevel(logging.WARNING)


def get_logger(name: str | None = None, **context: Any) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name, **context)
    return logger


bind = structlog.contextvars.bind_contextvars
bound = structlog.contextvars.bound_contextvars
clear = structlog.contextvars.clear_contextvars
