"""The usage event's stream wire format and its validation (no servers needed)."""

import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from analytics.usage import UsageEvent, usage_dead_letter_key, usage_stream_key
from tests.analytics.factories import usage_event


def full_event() -> UsageEvent:
    return usage_event(
        7,
        created_at=datetime(2026, 3, 1, 14, 0, 0, 5, tzinfo=timezone(timedelta(hours=2))),
        api_key_id=11,
        team_id=12,
        end_user="user-42",
        deployment_id=9_000_000_000,
        task_type="summarise",
        prompt_tokens=1200,
        completion_tokens=300,
        cached_tokens=1024,
        cost_usd=Decimal("12.3456789012"),
        saved_cost_usd=Decimal("0.0000000001"),
        ttft_ms=120,
        status="provider_error",
        http_status=502,
        error_type="upstream_timeout",
        attempts=3,
        fallback_count=2,
        cached=True,
        stream=True,
        metadata={"trace": "abc", "nested": {"n": [1, 2.5, None, True]}, "é": "ü"},
    )


def test_stream_keys_carry_the_tenant_hash_tag() -> None:
    assert usage_stream_key(42) == "sb:{t:42}:usage"
    assert usage_dead_letter_key(42) == "sb:{t:42}:usage:dead"


def test_round_trip_through_stream_fields_keeps_every_field() -> None:
    event = full_event()
    fields = event.to_stream_fields()
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items())
    assert set(fields) == {f.name for f in dataclasses.fields(UsageEvent)}
    assert fields["cost_usd"] == "12.3456789012"
    assert fields["created_at"] == "2026-03-01T12:00:00.000005+00:00"  # stored in UTC
    assert UsageEvent.from_stream_fields(fields) == event


def test_parsing_accepts_bytes_as_redis_returns_them() -> None:
    event = full_event()
    raw = {k.encode(): v.encode() for k, v in event.to_stream_fields().items()}
    assert UsageEvent.from_stream_fields(raw) == event


def test_optional_fields_default_when_absent_and_unknown_keys_are_ignored() -> None:
    event = usage_event(3)
    fields = {
        name: event.to_stream_fields()[name]
        for name in (
            "request_id",
            "created_at",
            "tenant_id",
            "model",
            "provider",
            "cost_usd",
            "latency_ms",
            "status",
            "http_status",
        )
    }
    fields["added_by_a_newer_gateway"] = "x"
    parsed = UsageEvent.from_stream_fields(fields)
    assert parsed == event
    assert parsed.api_key_id is None
    assert parsed.attempts == 1
    assert parsed.metadata == {}


def test_cost_is_rounded_to_ten_places() -> None:
    event = usage_event(1, cost_usd=Decimal("0.00000000015"), saved_cost_usd=3)
    assert event.cost_usd == Decimal("0.0000000002")  # half-even
    assert event.saved_cost_usd == Decimal("3.0000000000")


@pytest.mark.parametrize(
    ("field", "raw"),
    [
        ("tenant_id", "abc"),
        ("tenant_id", "0"),
        ("prompt_tokens", "-1"),
        ("prompt_tokens", "1.5"),
        ("http_status", "70000"),
        ("cost_usd", "lots"),
        ("cost_usd", "NaN"),
        ("cost_usd", "-0.01"),
        ("cost_usd", "12345678901.5"),
        ("created_at", "yesterday"),
        ("created_at", "2026-03-01T12:00:00"),  # naive
        ("status", "maybe"),
        ("cached", "yes"),
        ("metadata", "[1, 2]"),
        ("metadata", "{not json"),
        ("metadata", '{"a": "\\u0000"}'),
        ("request_id", ""),
        ("request_id", "r" * 65),
        ("end_user", "u" * 257),
        ("model", "nul\x00"),
    ],
)
def test_invalid_fields_raise_value_error_naming_the_field(field: str, raw: str) -> None:
    fields = usage_event(5).to_stream_fields()
    fields[field] = raw
    with pytest.raises(ValueError, match=field) as caught:
        UsageEvent.from_stream_fields(fields)
    if len(raw) > 3:
        assert raw not in str(caught.value)  # values may be personal data: never echoed


def test_missing_required_field_raises_value_error() -> None:
    fields = usage_event(5).to_stream_fields()
    del fields["cost_usd"]
    with pytest.raises(ValueError, match="cost_usd"):
        UsageEvent.from_stream_fields(fields)


def test_non_utf8_field_raises_value_error() -> None:
    raw: dict[bytes, bytes] = {
        k.encode(): v.encode() for k, v in usage_event(5).to_stream_fields().items()
    }
    raw[b"end_user"] = b"\xff\xfe"
    with pytest.raises(ValueError, match="UTF-8"):
        UsageEvent.from_stream_fields(raw)


def test_constructor_rejects_what_the_table_cannot_hold() -> None:
    with pytest.raises(ValueError, match="created_at"):
        usage_event(1, created_at=datetime(2026, 3, 1, 12, 0))
    with pytest.raises(ValueError, match="cost_usd"):
        usage_event(1, cost_usd=0.5)  # a float is not money
    with pytest.raises(ValueError, match="metadata"):
        usage_event(1, metadata={"blob": "x" * 20_000})
    with pytest.raises(ValueError, match="cached"):
        usage_event(1, cached=1)
    assert usage_event(1, created_at=datetime.now(UTC)).created_at.tzinfo == UTC


def test_a_call_blocked_before_routing_has_no_provider() -> None:
    event = usage_event(5, provider="", status="blocked", http_status=403, cost_usd=Decimal(0))
    assert UsageEvent.from_stream_fields(event.to_stream_fields()) == event
