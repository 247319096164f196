"""Retry policy: full-jitter backoff, Retry-After parsing, deadline cut-off, error kinds."""

import dataclasses
import random
import statistics
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from gateway.runtime.retry import (
    RETRY_AFTER_CAP_S,
    ErrorKind,
    RetryPolicy,
    backoff_delay,
    is_retriable,
    kind_for_status,
    parse_retry_after,
    retry_delay,
)

SAMPLES = 4000


# --- backoff_delay ---------------------------------------------------------------------------


@pytest.mark.parametrize("attempt", [0, 1, 2, 3, 4, 5, 6, 10])
def test_backoff_is_full_jitter_between_zero_and_the_capped_exponential(attempt: int) -> None:
    rng = random.Random(attempt)
    ceiling = min(8.0, 0.25 * 2**attempt)
    samples = [backoff_delay(attempt, base=0.25, cap=8.0, rng=rng) for _ in range(SAMPLES)]

    assert all(0.0 <= s <= ceiling for s in samples)
    # Full jitter spreads over the whole range, not just near the ceiling (or near zero).
    assert min(samples) < 0.05 * ceiling
    assert max(samples) > 0.95 * ceiling
    assert statistics.fmean(samples) == pytest.approx(ceiling / 2, rel=0.1)


def test_backoff_never_exceeds_the_cap_even_for_huge_attempts() -> None:
    rng = random.Random(7)
    samples = [backoff_delay(10_000, base=0.25, cap=3.0, rng=rng) for _ in range(SAMPLES)]
    assert all(0.0 <= s <= 3.0 for s in samples)
    assert max(samples) > 2.8


def test_backoff_treats_a_negative_attempt_as_the_first() -> None:
    rng = random.Random(3)
    assert all(0.0 <= backoff_delay(-5, rng=rng) <= 0.25 for _ in range(SAMPLES))


def test_backoff_is_reproducible_with_a_seeded_rng() -> None:
    first = [backoff_delay(4, rng=random.Random(42)) for _ in range(3)]
    assert first[0] == first[1] == first[2]


def test_backoff_without_rng_uses_the_process_generator() -> None:
    samples = {backoff_delay(3) for _ in range(50)}
    assert len(samples) > 1
    assert all(0.0 <= s <= 2.0 for s in samples)


# --- parse_retry_after -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("5", 5.0),
        ("0", 0.0),
        ("1.5", 1.5),
        (" 7 ", 7.0),
        ("120", 120.0),
        ("3600", 3600.0),
        ("86400", RETRY_AFTER_CAP_S),
    ],
)
def test_retry_after_in_seconds(value: str, expected: float) -> None:
    assert parse_retry_after(value) == expected


@pytest.mark.parametrize(
    "value", [None, "", "   ", "-1", "-0.5", "soon", "5s", "nan", "inf", "-inf", "1e400"]
)
def test_retry_after_negative_or_garbage_is_none(value: str | None) -> None:
    assert parse_retry_after(value) is None


def test_retry_after_http_date_is_seconds_until_that_date() -> None:
    now = datetime(2015, 10, 21, 7, 27, 30, tzinfo=UTC)
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=now) == 30.0


def test_retry_after_http_date_accepts_a_naive_now_as_utc() -> None:
    now = datetime(2015, 10, 21, 7, 27, 0)
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=now) == 60.0


def test_retry_after_http_date_in_the_past_means_now() -> None:
    now = datetime(2015, 10, 21, 8, 0, 0, tzinfo=UTC)
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=now) == 0.0


def test_retry_after_http_date_far_away_is_capped() -> None:
    now = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC)
    assert parse_retry_after("Thu, 22 Oct 2015 07:28:00 GMT", now=now) == RETRY_AFTER_CAP_S


def test_retry_after_http_date_defaults_to_the_current_time() -> None:
    header = format_datetime(datetime.now(UTC) + timedelta(seconds=20), usegmt=True)
    seconds = parse_retry_after(header)
    assert seconds is not None
    assert 17.0 <= seconds <= 20.0


@pytest.mark.parametrize(
    "value", ["Wed, 32 Oct 2015 07:28:00 GMT", "Funday, 21 Oct 2015", "21/10/2015 07:28"]
)
def test_retry_after_malformed_date_is_none(value: str) -> None:
    assert parse_retry_after(value) is None


# --- retry_delay -----------------------------------------------------------------------------


def test_retry_delay_without_retry_after_is_the_jittered_backoff() -> None:
    expected = backoff_delay(3, rng=random.Random(11))
    got = retry_delay(3, retry_after=None, remaining=60.0, rng=random.Random(11))
    assert got == expected


def test_retry_delay_never_waits_less_than_retry_after() -> None:
    rng = random.Random(5)
    for attempt in range(6):
        for _ in range(200):
            delay = retry_delay(attempt, retry_after=3.0, remaining=60.0, rng=rng)
            assert delay is not None
            assert delay >= 3.0


def test_retry_delay_keeps_the_backoff_when_it_is_longer_than_retry_after() -> None:
    # Attempt 5 jitters over [0, 8]: a tiny Retry-After must not shorten that.
    rng = random.Random(9)
    delays = [retry_delay(5, retry_after=0.01, remaining=60.0, rng=rng) for _ in range(500)]
    assert all(d is not None and d >= 0.01 for d in delays)
    assert max(d for d in delays if d is not None) > 7.0


def test_retry_delay_gives_up_when_retry_after_exceeds_the_maximum() -> None:
    assert retry_delay(0, retry_after=31.0, remaining=600.0, max_retry_after=30.0) is None
    assert retry_delay(0, retry_after=30.0, remaining=600.0, max_retry_after=30.0) is not None


def test_retry_delay_gives_up_when_the_deadline_would_pass() -> None:
    assert retry_delay(0, retry_after=5.0, remaining=4.0) is None
    # Waiting exactly until the deadline leaves no time for the attempt itself.
    assert retry_delay(0, retry_after=5.0, remaining=5.0) is None
    assert retry_delay(0, retry_after=5.0, remaining=5.5) == 5.0
    assert retry_delay(0, retry_after=None, remaining=0.0) is None
    assert retry_delay(0, retry_after=None, remaining=-1.0) is None


def test_retry_delay_deadline_cut_off_applies_to_the_backoff_too() -> None:
    expected = backoff_delay(4, rng=random.Random(21))
    assert expected > 0
    cut = retry_delay(4, retry_after=None, remaining=expected, rng=random.Random(21))
    kept = retry_delay(4, retry_after=None, remaining=expected + 0.01, rng=random.Random(21))
    assert cut is None
    assert kept == expected


# --- error kinds -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, ErrorKind.BAD_REQUEST),
        (401, ErrorKind.AUTH),
        (403, ErrorKind.PERMISSION),
        (404, ErrorKind.NOT_FOUND),
        (408, ErrorKind.TIMEOUT),
        (409, ErrorKind.BAD_REQUEST),
        (413, ErrorKind.BAD_REQUEST),
        (422, ErrorKind.BAD_REQUEST),
        (429, ErrorKind.RATE_LIMIT),
        (451, ErrorKind.BAD_REQUEST),
        (500, ErrorKind.SERVER),
        (502, ErrorKind.SERVER),
        (503, ErrorKind.SERVER),
        (504, ErrorKind.TIMEOUT),
        (529, ErrorKind.SERVER),
        (200, ErrorKind.UNKNOWN),
        (302, ErrorKind.UNKNOWN),
        (600, ErrorKind.UNKNOWN),
    ],
)
def test_kind_for_status(status: int, kind: ErrorKind) -> None:
    assert kind_for_status(status) is kind


def test_only_transient_kinds_are_retriable() -> None:
    retriable = {kind for kind in ErrorKind if is_retriable(kind)}
    assert retriable == {
        ErrorKind.RATE_LIMIT,
        ErrorKind.SERVER,
        ErrorKind.TIMEOUT,
        ErrorKind.CONNECTION,
    }


def test_error_kind_values_are_the_wire_names() -> None:
    assert [kind.value for kind in ErrorKind] == [
        "rate_limit",
        "server",
        "timeout",
        "connection",
        "bad_request",
        "auth",
        "permission",
        "not_found",
        "content_policy",
        "context_length",
        "cancelled",
        "vault",
        "unknown",
    ]


def test_retry_policy_defaults_and_immutability() -> None:
    policy = RetryPolicy()
    assert (policy.max_attempts_per_deployment, policy.base, policy.cap) == (2, 0.25, 8.0)
    assert policy.max_retry_after == 30.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.base = 1.0  # type: ignore[misc]
