"""Specification of secret redaction (LESSONS #12)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st
from structlog.processors import JSONRenderer
from structlog.testing import ReturnLogger

from agentos import redact as redact_module
from agentos.redact import MARKER, Redactor, RedactProcessor, get_default, redact, set_default

SECRET = "s3cr3t-value-42"

# Shapes are assembled at run time so that this file does not itself look like it holds tokens.
GH = "ghp_" + "A1b2C3d4E5" * 3 + "xyz123"
TOKENS = {
    "github-classic": GH,
    "github-oauth": "gho_" + "Z" * 36,
    "github-user": "ghu_" + "9" * 36,
    "github-server": "ghs_" + "aB" * 18,
    "github-refresh": "ghr_" + "q1" * 18,
    "github-fine-grained": "github_pat_" + "11ABCDEFG0" * 3 + "_" + "x" * 30,
    "telegram": "123456789:" + "AAH" + "a-b_c" * 6 + "xy",
    "anthropic": "sk-ant-api03-" + "Ab1_-" * 8,
    "openai": "sk-" + "Q" * 20 + "T3BlbkFJ" + "z" * 20,
    "openai-project": "sk-proj-" + "abc123" * 6,
    "aws": "AKIA" + "IOSFODNN7EXAMPLE",
    "slack": "xoxb-" + "1234567890-abcdef",
    "google": "AIza" + "S" * 35,
}


@pytest.fixture(autouse=True)
def _restore_default() -> Iterator[None]:
    """Each test starts and ends with the process-wide default redactor it found."""
    saved = get_default()
    yield
    set_default(saved)


class TestRedactorValues:
    def test_replaces_configured_secret(self) -> None:
        """A configured secret value is replaced wherever it occurs."""
        redactor = Redactor([SECRET])
        assert redactor.redact(f"a {SECRET} b {SECRET}") == f"a {MARKER} b {MARKER}"

    def test_ignores_short_values(self) -> None:
        """Values shorter than 8 characters are not treated as secrets."""
        redactor = Redactor(["main", "1234567"])
        assert redactor.redact("main 1234567") == "main 1234567"

    def test_eight_characters_is_enough(self) -> None:
        """A value of exactly 8 characters is redacted."""
        assert Redactor(["12345678"]).redact("pin 12345678.") == f"pin {MARKER}."

    def test_add(self) -> None:
        """A secret added later is redacted from then on."""
        redactor = Redactor()
        assert redactor.redact(SECRET) == SECRET
        redactor.add(SECRET)
        assert redactor.redact(SECRET) == MARKER

    def test_overlapping_occurrences_merge(self) -> None:
        """Overlapping occurrences of one secret leave no fragment behind."""
        redactor = Redactor(["abababab"])
        assert redactor.redact("xabababababy") == f"x{MARKER}y"

    def test_overlapping_secrets_merge(self) -> None:
        """Two secrets that overlap in the text become one marker, leaving no fragment of either."""
        redactor = Redactor(["abcdefgh12", "gh12345678"])
        assert redactor.redact("-abcdefgh12345678-") == f"-{MARKER}-"

    def test_repr_hides_values(self) -> None:
        """The repr counts secrets and never shows them."""
        redactor = Redactor([SECRET, SECRET, "other-secret"])
        assert SECRET not in repr(redactor)
        assert "secrets=2" in repr(redactor)

    def test_clean_text_is_unchanged(self) -> None:
        """Text with no secret and no token shape comes back as it was."""
        text = "Merged PR #12 into main; task-queue-worker-restarted; risk-assessment-complete-for-all"
        assert Redactor([SECRET]).redact(text) == text


class TestShapes:
    @pytest.mark.parametrize("token", list(TOKENS.values()), ids=list(TOKENS))
    def test_token_shape_redacted(self, token: str) -> None:
        """A token of a known shape is redacted without being configured."""
        out = Redactor().redact(f"error: bad credentials {token} (401)")
        assert token not in out
        assert out == f"error: bad credentials {MARKER} (401)"

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            pytest.param("Authorization: Bearer abc.def-ghi_123", f"Authorization: Bearer {MARKER}", id="bearer"),
            pytest.param("authorization: bearer abcdefgh1234", f"authorization: bearer {MARKER}", id="bearer-lower"),
            pytest.param(
                f"fatal: https://x-access-token:{GH}@github.com/o/r.git",
                f"fatal: https://x-access-token:{MARKER}@github.com/o/r.git",
                id="x-access-token-url",
            ),
            pytest.param(
                "clone https://bob:hunter2hunter2@example.com/r.git",
                f"clone https://bob:{MARKER}@example.com/r.git",
                id="url-password",
            ),
            pytest.param(
                "git remote x-access-token:opaque-token-value@host",
                f"git remote x-access-token:{MARKER}@host",
                id="x-access-token-bare",
            ),
        ],
    )
    def test_credential_in_context(self, text: str, expected: str) -> None:
        """Only the credential part of a header or URL is redacted."""
        assert Redactor().redact(text) == expected

    def test_pem_block(self) -> None:
        """A PEM private key block is redacted as a whole."""
        key = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\nabc=\n-----END RSA PRIVATE KEY-----"
        assert Redactor().redact(f"key:\n{key}\nafter") == f"key:\n{MARKER}\nafter"

    def test_truncated_pem_block(self) -> None:
        """A PEM private key block cut off before its END line is redacted to the end of the text."""
        assert Redactor().redact("x -----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg") == f"x {MARKER}"

    @pytest.mark.parametrize(
        "text",
        [
            pytest.param("Bearer tokens expire", id="bearer-prose"),
            pytest.param("https://github.com/owner/repo/pull/3", id="plain-url"),
            pytest.param("http://localhost:8080/path", id="url-with-port"),
            pytest.param("ghp_short", id="short-github-prefix"),
            pytest.param("the task-runner-for-sk-jobs", id="sk-inside-word"),
            pytest.param("-----BEGIN PUBLIC KEY-----\nabc\n-----END PUBLIC KEY-----", id="public-key"),
            pytest.param("issue 12345678: fixed", id="number-and-colon"),
        ],
    )
    def test_not_secrets(self, text: str) -> None:
        """Ordinary text that only resembles a token is left alone."""
        assert Redactor().redact(text) == text


class TestDefault:
    def test_module_redact_uses_default(self) -> None:
        """The module function uses the installed default redactor."""
        assert redact(SECRET) == SECRET
        set_default(Redactor([SECRET]))
        assert redact(f"x {SECRET}") == f"x {MARKER}"
        assert redact_module.get_default().redact(SECRET) == MARKER

    def test_default_redacts_shapes(self) -> None:
        """Before any configuration the default still redacts token shapes."""
        assert redact(GH) == MARKER


class TestRedactProcessor:
    def test_redacts_nested_strings(self) -> None:
        """Every str in the event dict is redacted, also inside dicts, lists and tuples; other values pass."""
        processor = RedactProcessor(Redactor([SECRET]))
        event = {
            "event": f"push_failed {SECRET}",
            "detail": {"stderr": [f"line {SECRET}", ("t", SECRET)], "code": 128},
            "count": 3,
            "flag": None,
        }
        out = processor(None, "error", event)
        assert out == {
            "event": f"push_failed {MARKER}",
            "detail": {"stderr": [f"line {MARKER}", ("t", MARKER)], "code": 128},
            "count": 3,
            "flag": None,
        }

    def test_uses_default_at_call_time(self) -> None:
        """Without its own redactor the processor follows the default installed later."""
        processor = RedactProcessor()
        set_default(Redactor([SECRET]))
        assert processor(None, "info", {"event": SECRET}) == {"event": MARKER}

    def test_in_structlog_chain(self) -> None:
        """In a structlog processor chain the rendered line carries no secret."""
        logger = structlog.wrap_logger(
            ReturnLogger(), processors=[RedactProcessor(Redactor([SECRET])), JSONRenderer(sort_keys=True)]
        )
        line = logger.info("agent_spawned", argv=["agent", f"--token={SECRET}"], url=f"https://x-access-token:{GH}@h/r")
        assert SECRET not in line
        assert GH not in line
        assert json.loads(line)["argv"] == ["agent", f"--token={MARKER}"]


_SECRET_TEXT = st.text(st.characters(codec="utf-8", exclude_characters="[]"), min_size=8, max_size=40).filter(
    lambda s: s != "REDACTED"
)


class TestProperties:
    @given(prefix=st.text(), secret=_SECRET_TEXT, suffix=st.text(), copies=st.integers(1, 3))
    def test_embedded_secret_never_survives(self, prefix: str, secret: str, suffix: str, copies: int) -> None:
        """A configured secret embedded anywhere in random text is absent from the output."""
        text = prefix + (secret + suffix) * copies
        assert secret not in Redactor([secret]).redact(text)

    @given(
        secrets=st.lists(_SECRET_TEXT, min_size=1, max_size=4),
        parts=st.lists(st.text(max_size=20), min_size=1, max_size=6),
    )
    def test_several_secrets_never_survive(self, secrets: list[str], parts: list[str]) -> None:
        """With several configured secrets interleaved with random text, none survives."""
        text = "".join(part + secrets[i % len(secrets)] for i, part in enumerate(parts))
        out = Redactor(secrets).redact(text)
        for secret in secrets:
            assert secret not in out

    @given(prefix=st.text(), token=st.sampled_from(list(TOKENS.values())), suffix=st.text())
    def test_token_shape_never_survives(self, prefix: str, token: str, suffix: str) -> None:
        """A token of a known shape surrounded by spaces in random text is absent from the output."""
        assert token not in Redactor().redact(f"{prefix} {token} {suffix}")

    @given(st.text())
    def test_unredacted_text_is_unchanged(self, text: str) -> None:
        """When nothing in a text is redacted, the text comes back unchanged."""
        out = Redactor([SECRET]).redact(text)
        if MARKER not in out:
            assert out == text
