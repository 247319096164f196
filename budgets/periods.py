"""Budget periods: calendar-aligned in the tenant's time zone, stored and compared in UTC.

A period starts at local midnight of its first day (the 1st of the month, a Monday, the 1st of
January / April / July / October) and ends where the next one starts, so consecutive periods
tile time with no gap and no overlap — across month ends, leap days and DST changes (local
midnight is resolved with `zoneinfo`; a midnight that a DST jump skips becomes the first
instant that exists after it). A `none` period runs from the budget's creation, for ever.
"""

from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

FOREVER = datetime(9999, 1, 1, tzinfo=UTC)
PERIODS = ("daily", "weekly", "monthly", "quarterly", "none")


@lru_cache(maxsize=512)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """The first instant of `day` in `zone`, in UTC."""
    naive = datetime(day.year, day.month, day.day)  # noqa: DTZ001 (a wall time, on purpose)
    local = naive.replace(tzinfo=zone, fold=0)
    as_utc = local.astimezone(UTC)
    # A DST gap at midnight: the wall time does not exist and round-trips to another one.
    if as_utc.astimezone(zone).replace(tzinfo=None) != naive:
        # Walk forward minute by minute (gaps are at most a few hours) to the first real instant.
        probe = as_utc.replace(second=0, microsecond=0)
        while probe.astimezone(zone).date() < day:
            probe += timedelta(minutes=1)
        while (probe - timedelta(minutes=1)).astimezone(zone).date() == day:
            probe -= timedelta(minutes=1)
        return probe
    return as_utc


def _first_day(period: str, day: date) -> date:
    if period == "daily":
        return day
    if period == "weekly":
        return day - timedelta(days=day.weekday())
    if period == "monthly":
        return day.replace(day=1)
    if period == "quarterly":
        return date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)
    raise ValueError(f"unknown period {period!r}")


def _next_first_day(period: str, first: date) -> date:
    if period == "daily":
        return first + timedelta(days=1)
    if period == "weekly":
        return first + timedelta(days=7)
    months = 1 if period == "monthly" else 3
    month = first.month - 1 + months
    return date(first.year + month // 12, month % 12 + 1, 1)


def period_bounds(
    period: str, at: datetime, time_zone: str, *, created_at: datetime | None = None
) -> tuple[datetime, datetime]:
    """The [start, end) of the period containing `at` (aware), as UTC datetimes."""
    if at.tzinfo is None:
        raise ValueError("`at` must be timezone-aware")
    if period == "none":
        start = created_at.astimezone(UTC) if created_at else datetime(2000, 1, 1, tzinfo=UTC)
        return start, FOREVER
    zone = _zone(time_zone)
    local_day = at.astimezone(zone).date()
    first = _first_day(period, local_day)
    start = _local_midnight(first, zone)
    if start > at:  # only possible inside a DST gap at midnight: the day began "later"
        first = _first_day(period, local_day - timedelta(days=1))
        start = _local_midnight(first, zone)
    end = _local_midnight(_next_first_day(period, first), zone)
    if end <= at:
        start, end = end, _local_midnight(_next_first_day(period, _next_first_day(period, first)),
                                          zone)  # fmt: skip
    return start, end
