"""Retry decisions for upstream calls: error kinds, `Retry-After`, jittered backoff.

Pure functions, no I/O, so the executor's policy is testable without a network. The executor
asks `retry_delay` after each retriable failure; `None` means "stop retrying this deployment
and fall back to the next candidate" — either the wait would not fit in the call's deadline,
or the provider asked for a wait longer than a caller should sit through.
"""

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum

# A provider asking for more than an hour is treated as "an hour": beyond that, the number
# only matters as "too long", and huge values would overflow deadline arithmetic.
RETRY_AFTER_CAP_S = 3600.0

# 2**60 * any sane base already dwarfs any cap; clamping keeps the float finite.
_MAX_BACKOFF_EXPONENT = 60

# One generator for the process; callers pass their own for deterministic tests.
_default_rng = random.Random()  # noqa: S311 - jitter, not cryptography


class ErrorKind(StrEnum):
    RATE_LIMIT = "rate_limit"
    SERVER = "server"
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    BAD_REQUEST = "bad_request"
    AUTH = "auth"
    PERMISSION = "permission"
    NOT_FOUND = "not_found"
    CONTENT_POLICY = "content_policy"
    CONTEXT_LENGTH = "context_length"
    CANCELLED = "cancelled"
    VAULT = "vault"  # the provider key could not be read from its vault
    UNKNOWN = "unknown"


# Transient by nature: the same request may succeed a moment later or on another deployment.
_RETRIABLE = frozenset(
    {ErrorKind.RATE_LIMIT, ErrorKind.SERVER, ErrorKind.TIMEOUT, ErrorKind.CONNECTION}
)

_KIND_BY_STATUS = {
    400: ErrorKind.BAD_REQUEST,
    401: ErrorKind.AUTH,
    403: ErrorKind.PERMISSION,
    404: ErrorKind.NOT_FOUND,
    408: ErrorKind.TIMEOUT,
    413: ErrorKind.BAD_REQUEST,
    422: ErrorKind.BAD_REQUEST,
    429: ErrorKind.RATE_LIMIT,
    504: ErrorKind.TIMEOUT,
}


@dataclass(frozen=True)
class RetryPolicy:
    """How hard the executor tries one deployment before falling back to the next."""

    max_attempts_per_deployment: int = 2
    base: float = 0.25
    cap: float = 8.0
    max_retry_after: float = 30.0


def is_retriable(kind: ErrorKind) -> bool:
    return kind in _RETRIABLE


def kind_for_status(status: int) -> ErrorKind:
    """Classify an upstream HTTP status (non-error statuses are `unknown`)."""
    kind = _KIND_BY_STATUS.get(status)
    if kind is not None:
        return kind
    if 500 <= status <= 599:
        return ErrorKind.SERVER
    if 400 <= status <= 499:
        return ErrorKind.BAD_REQUEST
    return ErrorKind.UNKNOWN


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header: delta-seconds or an HTTP-date.

    Negative or unparseable values give None (no advice). A date in the past gives 0.0: the
    server's advice is "now" (often clock skew), which is still advice.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    seconds = _parse_seconds(text)
    if seconds is None:
        seconds = _parse_http_date(text, now=now)
    if seconds is None:
        return None
    return min(seconds, RETRY_AFTER_CAP_S)


def _parse_seconds(text: str) -> float | None:
    try:
        seconds = float(text)
    except ValueError:
        return None
    # float() also accepts "nan" and "inf"; neither is a usable delay.
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


def _parse_http_date(text: str, *, now: datetime | None) -> float | None:
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        # RFC 9110 dates are always GMT; email.utils returns naive for "-0000".
        when = when.replace(tzinfo=UTC)
    reference = now if now is not None else datetime.now(UTC)
    if reference.tzinfo is None:
        reference = reference.replace(tzinfo=UTC)
    return max((when - reference).total_seconds(), 0.0)


def backoff_delay(
    attempt: int, *, base: float = 0.25, cap: float = 8.0, rng: random.Random | None = None
) -> float:
    """Full-jitter exponential backoff: uniform(0, min(cap, base * 2**attempt)), attempt 0-based.

    Full jitter (rather than equal or decorrelated jitter) spreads the retries of many
    clients that failed together, which is what a rate-limited upstream needs.
    """
    exponent = min(max(attempt, 0), _MAX_BACKOFF_EXPONENT)
    ceiling = max(min(cap, base * 2**exponent), 0.0)
    return (rng or _default_rng).uniform(0.0, ceiling)


def retry_delay(
    attempt: int,
    *,
    retry_after: float | None,
    remaining: float,
    max_retry_after: float = 30.0,
    base: float = 0.25,
    cap: float = 8.0,
    rng: random.Random | None = None,
) -> float | None:
    """The wait before retrying the same deployment, or None to fall back instead.

    A provider's `Retry-After` is a floor: retrying sooner only earns another 429. A wait that
    leaves no time for the attempt itself (delay >= remaining) is pointless, so it is None too.
    """
    if retry_after is not None and retry_after > max_retry_after:
        return None
    delay = backoff_delay(attempt, base=base, cap=cap, rng=rng)
    if retry_after is not None:
        delay = max(delay, retry_after)
    if delay >= remaining:
        return None
    return delay
