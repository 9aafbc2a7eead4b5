"""Secret redaction for every outbound text: comments, chat messages, prompts, logs.

Redaction is by *value* and by *shape*, never by key name:

* every configured secret value (8 characters or more) wherever it occurs, overlapping
  occurrences included;
* token shapes: GitHub (``ghp_``, ``gho_``, ``ghu_``, ``ghs_``, ``ghr_``, ``github_pat_``), Telegram bot
  tokens, Anthropic ``sk-ant-…`` and OpenAI ``sk-…`` keys, AWS access key ids (``AKIA…``/``ASIA…``),
  Slack ``xox?-`` tokens, Google ``AIza…`` keys, the token after ``Bearer``, the password in a URL's
  ``user:password@`` (``x-access-token:…@`` included) and PEM private key blocks (to the end of the
  text when the END line is missing).

Every match is replaced by ``[REDACTED]``; matches that overlap or touch are merged into one marker.
Within the text outside the markers no secret can survive: any occurrence there would have been a
match. (A secret could only reappear by overlapping a marker, which needs ``[`` or ``]`` in the secret
or the secret ``REDACTED`` itself.)

:func:`redact` uses a process-wide default :class:`Redactor` that ``main()`` installs with
:func:`set_default`. :class:`RedactProcessor` does the same for structlog event dicts.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # types only: the config loader imports this module, and structlog costs ~60 ms to import
    from structlog.typing import EventDict, WrappedLogger

__all__ = [
    "MARKER",
    "MIN_SECRET_LENGTH",
    "RedactProcessor",
    "Redactor",
    "find_secrets",
    "get_default",
    "redact",
    "set_default",
]

MARKER = "[REDACTED]"
MIN_SECRET_LENGTH = 8

_B = r"(?<![A-Za-z0-9_-])"  # no token character right before
_E = r"(?![A-Za-z0-9_-])"  # no token character right after
_SHAPES: tuple[re.Pattern[str], ...] = tuple(
    re.compile(pattern)
    for pattern in (
        rf"{_B}gh[pousr]_[A-Za-z0-9]{{20,}}{_E}",
        rf"{_B}github_pat_[A-Za-z0-9_]{{20,}}{_E}",
        rf"{_B}[0-9]{{8,10}}:[A-Za-z0-9_-]{{35,}}{_E}",
        rf"{_B}sk-[A-Za-z0-9_-]{{20,}}{_E}",  # OpenAI (sk-, sk-proj-) and Anthropic (sk-ant-)
        r"(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])",
        rf"{_B}xox[abposr]-[A-Za-z0-9-]{{10,}}{_E}",
        rf"{_B}AIza[A-Za-z0-9_-]{{35}}{_E}",
        r"(?i:\bbearer)[ \t]+(?P<secret>[A-Za-z0-9._~+/=-]{8,})",
        r"://[^/\s:@]*:(?P<secret>[^/\s@]+)@",
        r"(?i:x-access-token):(?P<secret>[^/\s@]+)@",
        r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----(?:[\s\S]*?-----END [A-Z0-9 ]*PRIVATE KEY-----|[\s\S]*\Z)",
    )
)


_SHAPE_NAMES = (
    "GitHub token",
    "GitHub token",
    "Telegram bot token",
    "OpenAI/Anthropic key",
    "AWS access key id",
    "Slack token",
    "Google API key",
    None,  # Bearer …: too common in code and docs to refuse a push for
    None,  # a URL's user:password@: idem
    "token in a git URL",
    "private key",
)
"""What :meth:`Redactor.find` calls each shape; None: redacted from outbound text but not a reason to refuse."""


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sort spans and merge those that overlap or touch."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


class Redactor:
    """Replaces configured secret values and token shapes with :data:`MARKER`.

    Values shorter than :data:`MIN_SECRET_LENGTH` are ignored: replacing every ``"1234"`` or ``"main"``
    in every message would destroy the text and protect nothing. Safe to share between threads.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = ()
        for secret in secrets:
            self.add(secret)

    def __repr__(self) -> str:
        return f"<Redactor secrets={len(self._secrets)} shapes={len(_SHAPES)}>"

    def add(self, secret: str) -> None:
        """Redact ``secret`` from now on (ignored when shorter than :data:`MIN_SECRET_LENGTH`)."""
        if len(secret) < MIN_SECRET_LENGTH:
            return
        with self._lock:
            if secret not in self._secrets:
                self._secrets = (*self._secrets, secret)

    def spans(self, text: str) -> list[tuple[int, int]]:
        """The merged ``(start, end)`` spans of ``text`` that :meth:`redact` replaces."""
        spans: list[tuple[int, int]] = []
        for secret in self._secrets:
            at = text.find(secret)
            while at != -1:
                spans.append((at, at + len(secret)))
                at = text.find(secret, at + 1)
        for shape in _SHAPES:
            for match in shape.finditer(text):
                group = "secret" if "secret" in shape.groupindex else 0
                spans.append(match.span(group))
        return _merge(spans)

    def find(self, text: str) -> list[str]:
        """What secrets ``text`` holds, by kind (``"GitHub token"``, ``"a configured secret"``), never the values.

        The configured values and the unmistakable token shapes count; the loose shapes (``Bearer …``, a URL's
        password) do not: a pre-push scan refuses a branch for what this returns.
        """
        kinds: list[str] = []
        if any(secret in text for secret in self._secrets):
            kinds.append("a configured secret")
        for i, shape in enumerate(_SHAPES):
            name = _SHAPE_NAMES[i] if i < len(_SHAPE_NAMES) else "secret-shaped string"  # a new shape counts
            if name is not None and name not in kinds and shape.search(text):
                kinds.append(name)
        return kinds

    def redact(self, text: str) -> str:
        """``text`` with every secret value and token shape replaced by :data:`MARKER`."""
        spans = self.spans(text)
        if not spans:
            return text
        out: list[str] = []
        done = 0
        for start, end in spans:
            out.append(text[done:start])
            out.append(MARKER)
            done = end
        out.append(text[done:])
        return "".join(out)


_default = Redactor()


def set_default(redactor: Redactor) -> None:
    """Install the process-wide redactor used by :func:`redact` (``main()`` does this once)."""
    global _default
    _default = redactor


def get_default() -> Redactor:
    """The process-wide redactor (shapes only until :func:`set_default` is called)."""
    return _default


def redact(text: str) -> str:
    """Redact ``text`` with the process-wide default redactor."""
    return _default.redact(text)


def find_secrets(text: str) -> list[str]:
    """:meth:`Redactor.find` with the process-wide default redactor."""
    return _default.find(text)


def _scrub(value: object, redactor: Redactor) -> object:
    if isinstance(value, str):
        return redactor.redact(value)
    if isinstance(value, dict):
        return {key: _scrub(item, redactor) for key, item in value.items()}
    if isinstance(value, list):
        return [_scrub(item, redactor) for item in value]
    if isinstance(value, tuple):
        return tuple(_scrub(item, redactor) for item in value)
    return value


class RedactProcessor:
    """A structlog processor that redacts every ``str`` in the event dict, nested dicts, lists and tuples.

    Place it after ``format_exc_info`` (so tracebacks are already text) and before the renderer.
    Values of other types pass unchanged; they are rendered later, unredacted, so log text, not objects.
    With no redactor given, the process-wide default at call time is used.
    """

    def __init__(self, redactor: Redactor | None = None) -> None:
        self._redactor = redactor

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        redactor = self._redactor if self._redactor is not None else _default
        for key in list(event_dict):
            event_dict[key] = _scrub(event_dict[key], redactor)
        return event_dict
