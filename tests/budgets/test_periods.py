"""Budget periods (hypothesis): tiling, alignment, DST, leap years, month and quarter ends."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from budgets.periods import FOREVER, period_bounds

ZONES = [
    "UTC", "Europe/Berlin", "America/New_York", "America/Santiago", "Australia/Lord_Howe",
    "Asia/Kolkata", "Pacific/Chatham", "America/Havana", "Asia/Tehran", "Africa/Casablanca",
]  # fmt: skip
CALENDAR = ["daily", "weekly", "monthly", "quarterly"]
instants = st.datetimes(
    min_value=datetime(1999, 12, 25), max_value=datetime(2040, 1, 5), timezones=st.just(UTC)
)


@settings(max_examples=1500, deadline=None)
@given(at=instants, zone=st.sampled_from(ZONES), period=st.sampled_from(CALENDAR))
def test_the_period_contains_the_instant_and_is_calendar_aligned(at, zone, period) -> None:
    start, end = period_bounds(period, at, zone)
    assert start <= at < end
    tz = ZoneInfo(zone)
    first = start.astimezone(tz)
    # The first instant of its local day: one microsecond earlier is the day before.
    assert (start - timedelta(microseconds=1)).astimezone(tz).date() < first.date()
    if period == "weekly":
        assert first.weekday() == 0
    if period in ("monthly", "quarterly"):
        assert first.day == 1
    if period == "quarterly":
        assert first.month in (1, 4, 7, 10)
    days = (end.astimezone(tz).date() - first.date()).days
    expected = {
        "daily": {1},
        "weekly": {7},
        "monthly": {28, 29, 30, 31},
        "quarterly": set(range(89, 93)),
    }
    assert days in expected[period]


@settings(max_examples=1500, deadline=None)
@given(at=instants, zone=st.sampled_from(ZONES), period=st.sampled_from(CALENDAR))
def test_periods_tile_time_no_double_and_no_missed_reset(at, zone, period) -> None:
    start, end = period_bounds(period, at, zone)
    # The last instant of the period is still in it (no early reset) ...
    assert period_bounds(period, end - timedelta(microseconds=1), zone) == (start, end)
    # ... and the period after starts exactly at its end (no gap, no overlap).
    next_start, next_end = period_bounds(period, end, zone)
    assert next_start == end
    assert next_end > next_start
    _, before_end = period_bounds(period, start - timedelta(microseconds=1), zone)
    assert before_end == start


@pytest.mark.parametrize(
    ("period", "at", "zone", "start", "end"),
    [
        # Leap day and month ends.
        ("monthly", datetime(2028, 2, 29, 12, tzinfo=UTC), "UTC",
         datetime(2028, 2, 1, tzinfo=UTC), datetime(2028, 3, 1, tzinfo=UTC)),
        ("daily", datetime(2028, 2, 29, 23, 59, 59, tzinfo=UTC), "UTC",
         datetime(2028, 2, 29, tzinfo=UTC), datetime(2028, 3, 1, tzinfo=UTC)),
        ("monthly", datetime(2027, 12, 31, 23, 30, tzinfo=UTC), "UTC",
         datetime(2027, 12, 1, tzinfo=UTC), datetime(2028, 1, 1, tzinfo=UTC)),
        # The tenant's zone decides: 23:30 UTC on 31 March is already April in Berlin.
        ("quarterly", datetime(2026, 3, 31, 22, 30, tzinfo=UTC), "Europe/Berlin",
         datetime(2026, 3, 31, 22, tzinfo=UTC), datetime(2026, 6, 30, 22, tzinfo=UTC)),
        # A 23-hour day (spring forward) and a 25-hour day (fall back) in New York.
        ("daily", datetime(2026, 3, 8, 12, tzinfo=UTC), "America/New_York",
         datetime(2026, 3, 8, 5, tzinfo=UTC), datetime(2026, 3, 9, 4, tzinfo=UTC)),
        ("daily", datetime(2026, 11, 1, 12, tzinfo=UTC), "America/New_York",
         datetime(2026, 11, 1, 4, tzinfo=UTC), datetime(2026, 11, 2, 5, tzinfo=UTC)),
        # Santiago skips midnight itself: the day starts at 01:00 local.
        ("daily", datetime(2026, 9, 6, 12, tzinfo=UTC), "America/Santiago",
         datetime(2026, 9, 6, 4, tzinfo=UTC), datetime(2026, 9, 7, 3, tzinfo=UTC)),
        # Weeks start on Monday.
        ("weekly", datetime(2026, 11, 22, 12, tzinfo=UTC), "UTC",
         datetime(2026, 11, 16, tzinfo=UTC), datetime(2026, 11, 23, tzinfo=UTC)),
    ],
)  # fmt: skip
def test_known_boundaries(period, at, zone, start, end) -> None:
    assert period_bounds(period, at, zone) == (start, end)


def test_none_runs_from_creation_for_ever() -> None:
    created = datetime(2026, 5, 3, 10, tzinfo=UTC)
    at = datetime(2030, 1, 1, tzinfo=UTC)
    assert period_bounds("none", at, "Europe/Berlin", created_at=created) == (created, FOREVER)


def test_naive_instants_and_unknown_periods_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        period_bounds("daily", datetime(2026, 1, 1), "UTC")
    with pytest.raises(ValueError, match="unknown period"):
        period_bounds("hourly", datetime(2026, 1, 1, tzinfo=UTC), "UTC")
