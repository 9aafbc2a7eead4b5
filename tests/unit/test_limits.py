"""Usage limits: the failure-rule table and when a stated limit resets (:mod:`agentos.agents.limits`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from agentos.agents.limits import FAILURE_RULES, classify_failure, parse_reset_time

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


class TestFailureRules:
    def test_every_rule_has_a_description(self) -> None:
        """The table documents itself: each rule says what it recognises."""
        assert all(rule.what for rule in FAILURE_RULES)

    def test_a_usage_limit_beats_an_auth_error(self) -> None:
        """When one run says both, the usage limit wins: the agent is paused, not reported as logged out."""
        match = classify_failure(["401 Unauthorized", "You've hit your usage limit"])
        assert match is not None and match[0].failure == "quota_limited"

    def test_unrecognised_text_matches_nothing(self) -> None:
        """An ordinary error is no known failure."""
        assert classify_failure(["segmentation fault"]) is None


class TestParseResetTime:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("Claude AI usage limit reached|1750636800", datetime(2025, 6, 23, tzinfo=UTC)),
            ('{"resets_at": 1775317531, "resets_in_seconds": 602705}', datetime.fromtimestamp(1775317531, UTC)),
            ("try again in 2h 5m", NOW + timedelta(hours=2, minutes=5)),
            ("try again in 4 days 6 hours 37 minutes.", NOW + timedelta(days=4, hours=6, minutes=37)),
            ("Please retry in 41.5s.", NOW + timedelta(seconds=41.5)),
            ('"retryDelay": "38s"', NOW + timedelta(seconds=38)),
            ("resets 3pm (UTC)", datetime(2025, 6, 1, 15, tzinfo=UTC)),
            ("resets 11am (UTC)", datetime(2025, 6, 2, 11, tzinfo=UTC)),
            ("resets at 12pm (UTC)", datetime(2025, 6, 2, 12, tzinfo=UTC)),
            ("resets at 12:30am (UTC)", datetime(2025, 6, 2, 0, 30, tzinfo=UTC)),
            ("resets Apr 23 at 4pm (America/Recife)", datetime(2026, 4, 23, 19, tzinfo=UTC)),
            ("resets Jun 3 at 4pm (UTC)", datetime(2025, 6, 3, 16, tzinfo=UTC)),
            ("resets at 15:45 (Europe/Berlin)", datetime(2025, 6, 1, 13, 45, tzinfo=UTC)),
            ("Your limit will reset at 5pm (Europe/Warsaw).", datetime(2025, 6, 1, 15, tzinfo=UTC)),
            ("Please try again later.", None),
            ("resets 3 times a day", None),
            ("resets at 3pm (Not/AZone)", datetime(2025, 6, 1, 15, tzinfo=UTC)),
        ],
    )
    def test_stated_reset_times(self, text: str, expected: datetime | None) -> None:
        """Epochs, durations and wall-clock times (with their zone) become aware UTC datetimes."""
        assert parse_reset_time(text, NOW, UTC) == expected

    def test_clock_time_without_zone_uses_the_local_zone(self) -> None:
        """'resets at 3pm' with no zone is read in the machine's zone, where the CLI printed it."""
        at = parse_reset_time("rate limit reached… resets at 3pm", NOW, ZoneInfo("Europe/Berlin"))
        assert at == datetime(2025, 6, 1, 13, tzinfo=UTC)

    def test_naive_now_is_utc(self) -> None:
        """A naive ``now`` is taken as UTC rather than failing."""
        assert parse_reset_time("try again in 1m", NOW.replace(tzinfo=None)) == NOW + timedelta(minutes=1)
