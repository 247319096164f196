"""usage_stream_drain against the real Redis and PostgreSQL: nothing lost, nothing doubled."""

import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from decimal import Decimal

import pytest
import redis
from django.db import OperationalError, connection

from analytics.models import UsageRecord
from analytics.selectors import usage_records_for_request
from analytics.usage import (
    USAGE_GROUP,
    UsageEvent,
    usage_dead_letter_key,
    usage_stream_drain,
    usage_stream_key,
)
from tenants.audit import AuditContext
from tenants.models import ApiKey
from tenants.services import api_key_create
from tests.analytics.factories import MakeTenant, events_append, usage_event
from tests.tenants.factories import TeamFactory

pytestmark = pytest.mark.django_db(transaction=True)


def assert_stream_settled(client: redis.Redis, tenant_id: int) -> None:
    """Every entry was acknowledged and deleted."""
    key = usage_stream_key(tenant_id)
    assert client.xlen(key) == 0
    assert client.xpending(key, USAGE_GROUP)["pending"] == 0


def dead_letters(client: redis.Redis, tenant_id: int) -> list[dict[bytes, bytes]]:
    return [fields for _id, fields in client.xrange(usage_dead_letter_key(tenant_id))]


def test_round_trip_stores_every_field_of_every_tenant(
    make_tenant: MakeTenant, redis_client: redis.Redis
) -> None:
    acme, globex = make_tenant("acme"), make_tenant("globex")
    key, _plaintext = api_key_create(context=AuditContext.system("test"), tenant=acme, name="app")
    team = TeamFactory(tenant=acme)
    rich = usage_event(
        acme.id,
        api_key_id=key.id,
        team_id=team.id,
        end_user="user-42",
        deployment_id=77,
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
        metadata={"trace": "abc", "nested": [1, 2.5, None]},
    )
    plain = usage_event(acme.id, model="claude-sonnet", provider="anthropic")
    other = usage_event(globex.id, cost_usd=Decimal("0.0000000007"))
    events_append([rich, plain, other])

    assert usage_stream_drain() == 3

    for event in (rich, plain, other):
        record = usage_records_for_request(event.request_id)
        assert record is not None
        for field in dataclasses.fields(UsageEvent):
            assert getattr(record, field.name) == getattr(event, field.name), field.name
    stored = usage_records_for_request(rich.request_id)
    assert stored is not None
    assert str(stored.cost_usd) == "12.3456789012"  # exact to 10 places
    assert usage_records_for_request(other.request_id, tenant_id=acme.id) is None  # scoped
    assert_stream_settled(redis_client, acme.id)
    assert_stream_settled(redis_client, globex.id)


def test_same_event_twice_is_one_record_and_a_second_drain_writes_nothing(
    make_tenant: MakeTenant, redis_client: redis.Redis
) -> None:
    tenant = make_tenant("idem")
    event = usage_event(tenant.id)
    events_append([event, event])

    assert usage_stream_drain() == 1
    assert usage_stream_drain() == 0
    events_append([event])  # re-delivered after it was stored
    assert usage_stream_drain() == 0

    assert UsageRecord.objects.filter(request_id=event.request_id).count() == 1
    assert_stream_settled(redis_client, tenant.id)


def test_entries_of_a_dead_consumer_are_claimed_after_the_idle_time(
    make_tenant: MakeTenant, redis_client: redis.Redis
) -> None:
    tenant = make_tenant("claim")
    events = [usage_event(tenant.id) for _ in range(3)]
    events_append(events)
    key = usage_stream_key(tenant.id)
    redis_client.xgroup_create(key, USAGE_GROUP, id="0", mkstream=True)
    delivered = redis_client.xreadgroup(USAGE_GROUP, "doomed", {key: ">"}, count=10)
    assert len(delivered[0][1]) == 3  # "doomed" then dies without acknowledging

    # Within the idle time the entries belong to a consumer that may still be working.
    assert usage_stream_drain(consumer="survivor", claim_idle_s=60) == 0
    assert redis_client.xpending(key, USAGE_GROUP)["pending"] == 3

    time.sleep(0.2)
    assert usage_stream_drain(consumer="survivor", claim_idle_s=0.1) == 3
    stored = set(UsageRecord.objects.values_list("request_id", flat=True))
    assert stored == {event.request_id for event in events}
    assert_stream_settled(redis_client, tenant.id)


def test_malformed_entries_are_dead_lettered_without_leaking_and_others_stored(
    make_tenant: MakeTenant, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    tenant = make_tenant("malformed")
    good = [usage_event(tenant.id), usage_event(tenant.id)]
    events_append(good[:1])
    broken = usage_event(tenant.id).to_stream_fields()
    broken["cost_usd"] = "twelve-PRIVATE"
    broken["end_user"] = "PRIVATE-USER"
    key = usage_stream_key(tenant.id)
    broken_id = redis_client.xadd(key, broken)  # type: ignore[arg-type]
    redis_client.xadd(key, {"junk": "PRIVATE-JUNK"})
    events_append(good[1:])

    with caplog.at_level(logging.WARNING, logger="analytics.usage"):
        assert usage_stream_drain() == 2

    assert set(UsageRecord.objects.values_list("request_id", flat=True)) == {
        event.request_id for event in good
    }
    letters = dead_letters(redis_client, tenant.id)
    assert len(letters) == 2
    assert letters[0][b"cost_usd"] == b"twelve-PRIVATE"  # kept whole for a replay
    assert letters[0][b"_source_id"] == broken_id
    assert b"cost_usd" in letters[0][b"_error"]
    assert letters[1][b"junk"] == b"PRIVATE-JUNK"
    assert "dead-lettered" in caplog.text
    assert "PRIVATE" not in caplog.text  # entries may hold personal data: never logged
    assert_stream_settled(redis_client, tenant.id)


def test_events_of_another_or_unknown_tenant_are_dead_lettered_not_blocking(
    make_tenant: MakeTenant, redis_client: redis.Redis
) -> None:
    acme, globex = make_tenant("acme"), make_tenant("globex")
    unknown = usage_event(globex.id + 1)
    foreign = usage_event(globex.id)
    good = usage_event(acme.id)
    key = usage_stream_key(acme.id)
    for event in (unknown, foreign):  # written to acme's stream by a buggy producer
        redis_client.xadd(key, event.to_stream_fields())  # type: ignore[arg-type]
    events_append([good])

    assert usage_stream_drain() == 1

    assert list(UsageRecord.objects.values_list("request_id", flat=True)) == [good.request_id]
    letters = dead_letters(redis_client, acme.id)
    assert [letter[b"request_id"].decode() for letter in letters] == [
        unknown.request_id,
        foreign.request_id,
    ]
    assert all(b"tenant_id" in letter[b"_error"] for letter in letters)
    assert_stream_settled(redis_client, acme.id)


def test_stale_key_and_team_ids_are_cleared_not_blocking(
    make_tenant: MakeTenant, redis_client: redis.Redis
) -> None:
    acme, globex = make_tenant("acme"), make_tenant("globex")
    key, _plaintext = api_key_create(context=AuditContext.system("test"), tenant=acme, name="app")
    deleted_key_id = key.id
    ApiKey.objects.filter(id=key.id).delete()
    globex_team = TeamFactory(tenant=globex)
    event = usage_event(acme.id, api_key_id=deleted_key_id, team_id=globex_team.id)
    events_append([event])

    assert usage_stream_drain() == 1

    record = usage_records_for_request(event.request_id)
    assert record is not None
    assert record.api_key_id is None
    assert record.team_id is None  # never another tenant's team in acme's reports
    assert_stream_settled(redis_client, acme.id)


def sql_execute(statement: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement)


Install = Callable[[str, str], Callable[[], None]]


@pytest.fixture
def trigger_install() -> Iterator[Install]:
    """Create database objects for one test (`create`), always removed afterwards (`drop`)."""
    drops: list[str] = []

    def install(create: str, drop: str) -> Callable[[], None]:
        drops.append(drop)
        sql_execute(create)
        return lambda: sql_execute(drop)

    yield install
    for drop in drops:
        sql_execute(drop)


DISK_FULL_TRIGGER = """
CREATE FUNCTION analytics_test_disk_full() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'simulated disk full' USING ERRCODE = '53100'; END $$;
CREATE CONSTRAINT TRIGGER analytics_test_disk_full AFTER INSERT ON analytics_usagerecord
DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION analytics_test_disk_full();
"""
DISK_FULL_DROP = (
    "DROP TRIGGER IF EXISTS analytics_test_disk_full ON analytics_usagerecord;"
    "DROP FUNCTION IF EXISTS analytics_test_disk_full();"
)


def test_a_failed_commit_acknowledges_nothing_and_a_later_drain_stores_it(
    make_tenant: MakeTenant, redis_client: redis.Redis, trigger_install: Install
) -> None:
    tenant = make_tenant("commit")
    events = [usage_event(tenant.id), usage_event(tenant.id)]
    events_append(events)
    # The database fails at COMMIT, after every insert succeeded.
    disk_recover = trigger_install(DISK_FULL_TRIGGER, DISK_FULL_DROP)

    with pytest.raises(OperationalError):
        usage_stream_drain(claim_idle_s=0.1)

    assert not UsageRecord.objects.exists()
    key = usage_stream_key(tenant.id)
    assert redis_client.xlen(key) == 2
    assert redis_client.xpending(key, USAGE_GROUP)["pending"] == 2
    assert dead_letters(redis_client, tenant.id) == []

    disk_recover()
    time.sleep(0.2)
    assert usage_stream_drain(claim_idle_s=0.1) == 2
    assert UsageRecord.objects.count() == 2
    assert_stream_settled(redis_client, tenant.id)


def test_a_row_the_database_rejects_is_dead_lettered_and_the_rest_stored(
    make_tenant: MakeTenant, redis_client: redis.Redis, trigger_install: Install
) -> None:
    tenant = make_tenant("reject")
    poison = usage_event(tenant.id, request_id="poison-1")
    good = [usage_event(tenant.id), usage_event(tenant.id)]
    events_append([good[0], poison, good[1]])
    trigger_install(
        """
        CREATE FUNCTION analytics_test_reject() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF NEW.request_id LIKE 'poison%' THEN
            RAISE EXCEPTION 'simulated check violation' USING ERRCODE = '23514';
          END IF;
          RETURN NEW;
        END $$;
        CREATE TRIGGER analytics_test_reject BEFORE INSERT ON analytics_usagerecord
        FOR EACH ROW EXECUTE FUNCTION analytics_test_reject();
        """,
        "DROP TRIGGER IF EXISTS analytics_test_reject ON analytics_usagerecord;"
        "DROP FUNCTION IF EXISTS analytics_test_reject();",
    )

    assert usage_stream_drain() == 2

    assert set(UsageRecord.objects.values_list("request_id", flat=True)) == {
        event.request_id for event in good
    }
    letters = dead_letters(redis_client, tenant.id)
    assert [letter[b"request_id"] for letter in letters] == [b"poison-1"]
    assert b"IntegrityError" in letters[0][b"_error"]
    assert_stream_settled(redis_client, tenant.id)


def test_drain_pages_through_a_backlog_larger_than_a_batch(
    make_tenant: MakeTenant, redis_client: redis.Redis
) -> None:
    busy, quiet = make_tenant("busy"), make_tenant("quiet")
    events = [usage_event(busy.id) for _ in range(25)] + [usage_event(quiet.id)]
    events_append(events)

    assert usage_stream_drain(batch_size=4) == 26

    assert UsageRecord.objects.count() == 26
    assert_stream_settled(redis_client, busy.id)
    assert_stream_settled(redis_client, quiet.id)


def test_drain_stops_when_the_time_budget_is_spent(
    make_tenant: MakeTenant, redis_client: redis.Redis
) -> None:
    tenant = make_tenant("budget")
    events_append([usage_event(tenant.id) for _ in range(5)])

    assert usage_stream_drain(batch_size=1, time_budget_s=0) == 0
    assert redis_client.xlen(usage_stream_key(tenant.id)) == 5


@pytest.mark.django_db(transaction=False)
def test_drain_refuses_to_run_inside_a_transaction() -> None:
    # An outer rollback would undo rows whose entries were already acknowledged.
    with pytest.raises(RuntimeError, match="transaction"):
        usage_stream_drain()
