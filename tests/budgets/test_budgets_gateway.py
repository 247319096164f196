"""Budgets and rate limits through the in-process gateway: real Redis (Lua), real PostgreSQL,
the fake upstream. The multi-process concurrency proofs are in tests/system."""

import time
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from django.test import override_settings

from analytics.models import UsageRecord
from analytics.usage import usage_stream_drain
from budgets import ledger
from budgets.models import Budget
from budgets.reconcile import budgets_reconcile
from budgets.selectors import budget_status
from budgets.services import budget_create
from gateway.runtime.snapshot import snapshot_holder
from switchboard.redis_client import redis_async, redis_sync
from tenants.services import api_key_create
from tests.budgets.conftest import CTX, PER_CALL, chat

BUDGETS = "/api/v1/tenants/acme/budgets/"
DRAINS = pytest.mark.django_db(transaction=True)


def _budget(cast, **fields) -> Budget:  # type: ignore[no-untyped-def]
    fields = {"name": "monthly", "scope": "tenant", "amount_usd": PER_CALL * 3, **fields}
    budget = budget_create(context=CTX, tenant=cast.acme, fields=fields)
    snapshot_holder.invalidate()
    return budget


def _forget(tenant_id: int) -> None:
    client = redis_sync()
    keys = list(client.scan_iter(match=f"sb:{{t:{tenant_id}}}:*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture(autouse=True)
def _clean_counters(cast):  # type: ignore[no-untyped-def]
    for tenant in (cast.acme, cast.globex):
        _forget(tenant.pk)
    yield
    for tenant in (cast.acme, cast.globex):
        _forget(tenant.pk)


def test_hard_budget_admits_exactly_what_fits_then_429(cast, metered, acme_key, client) -> None:
    budget = _budget(cast)
    key = acme_key[1]
    for _ in range(3):
        response = chat(client, key)
        assert response.status_code == 200, response.content
    refused = chat(client, key)
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "budget_exceeded"
    assert f"Budget 'monthly' (id {budget.pk})" in error["message"]
    status = budget_status(budget)
    assert Decimal(status["spent_usd"]) == PER_CALL * 3
    assert Decimal(status["reserved_usd"]) == 0
    assert status["percent"] == 100.0


def test_soft_budget_only_alerts(cast, metered, acme_key, client) -> None:
    _budget(cast, hard=False, amount_usd=PER_CALL)
    for _ in range(3):
        assert chat(client, acme_key[1]).status_code == 200


@pytest.mark.parametrize("scope", ["api_key", "end_user", "deployment", "team"])
def test_scoped_budgets_cover_only_their_calls(
    cast, metered, acme_team, client, scope
) -> None:  # fmt: skip
    _, in_scope = api_key_create(context=CTX, tenant=cast.acme, name="in", team=acme_team)
    other_key, out_of_scope = api_key_create(context=CTX, tenant=cast.acme, name="out")
    target = {
        "api_key": {"api_key": other_key}, "end_user": {"end_user": "alice@example.com"},
        "deployment": {"deployment": metered}, "team": {"team": acme_team},
    }[scope]  # fmt: skip
    if scope == "api_key":  # the other key is the covered one here
        in_scope, out_of_scope = out_of_scope, in_scope
    _budget(cast, scope=scope, amount_usd=PER_CALL, **target)
    user = "alice@example.com" if scope == "end_user" else None
    assert chat(client, in_scope, user=user).status_code == 200
    assert chat(client, in_scope, user=user).status_code == 429
    if scope == "deployment":
        return  # every call of this test uses that deployment
    assert chat(client, out_of_scope, user="bob@example.com").status_code == 200


def test_rate_limit_per_key_with_headers(cast, metered, client) -> None:
    _, key = api_key_create(context=CTX, tenant=cast.acme, name="rl", rpm_limit=3,
                            tpm_limit=1000)  # fmt: skip
    snapshot_holder.invalidate()
    first = chat(client, key)
    assert first.status_code == 200
    assert first["x-ratelimit-limit-requests"] == "3"
    assert first["x-ratelimit-remaining-requests"] == "2"
    assert first["x-ratelimit-limit-tokens"] == "1000"
    assert int(first["x-ratelimit-remaining-tokens"]) < 1000
    assert first["x-ratelimit-reset-requests"].endswith("s")
    chat(client, key)
    chat(client, key)
    limited = chat(client, key)
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(limited["retry-after"]) <= 60


def test_token_limit_counts_actual_tokens_after_settle(cast, metered, client) -> None:
    # Each call reserves prompt + 10 tokens; the tokens limit fits three such calls.
    _, key = api_key_create(context=CTX, tenant=cast.acme, name="tpm", tpm_limit=60)
    snapshot_holder.invalidate()
    statuses = [chat(client, key).status_code for _ in range(4)]
    assert statuses[:3] == [200, 200, 200]
    assert statuses[3] == 429


def test_tenant_and_end_user_limits(cast, metered, acme_key, client) -> None:
    cast.acme.end_user_rpm_limit = 1
    cast.acme.save(update_fields=["end_user_rpm_limit"])
    snapshot_holder.invalidate()
    assert chat(client, acme_key[1], user="u1").status_code == 200
    again = chat(client, acme_key[1], user="u1")
    assert again.status_code == 429
    assert "this end user" in again.json()["error"]["message"]
    assert chat(client, acme_key[1], user="u2").status_code == 200


def test_concurrency_lease_is_released_after_each_call(cast, metered, client) -> None:
    _, key = api_key_create(context=CTX, tenant=cast.acme, name="one", max_concurrency=1)
    snapshot_holder.invalidate()
    for _ in range(3):
        assert chat(client, key).status_code == 200


def test_crashed_reservations_expire(cast, metered) -> None:
    """A reservation whose process died is purged by the next admission after its TTL."""
    charge = ledger.Charge(budget_id=999_999, name="b", limit_nanos=10, amount_nanos=10,
                           hard=True, period_start=0, period_end=2**40)  # fmt: skip

    def admission(rid: str) -> ledger.Admission:
        return ledger.Admission(tenant_id=cast.acme.pk, request_id=rid, charges=[charge],
                                limits=[], concurrency_limit=0, key_id=1)  # fmt: skip

    async def run() -> None:
        client = redis_async()
        await ledger.seed(client, cast.acme.pk, charge, 0)
        await ledger.admit(client, admission("crashed"), ttl_ms=100)  # never settled
        with pytest.raises(ledger.Refused):
            await ledger.admit(client, admission("next"), ttl_ms=100)
        time.sleep(0.15)
        await ledger.admit(client, admission("after-ttl"), ttl_ms=100)

    async_to_sync(run)()


@DRAINS
def test_flushed_counters_are_reseeded_from_postgresql(cast, metered, acme_key, client) -> None:
    budget = _budget(cast)
    key = acme_key[1]
    assert chat(client, key).status_code == 200
    assert chat(client, key).status_code == 200
    usage_stream_drain()
    _forget(cast.acme.pk)  # Redis lost everything mid-period
    assert chat(client, key).status_code == 200  # seeded with the 2 calls PostgreSQL has
    assert chat(client, key).status_code == 429
    assert Decimal(budget_status(budget)["spent_usd"]) == PER_CALL * 3


@DRAINS
def test_reconcile_corrects_drift(cast, metered, acme_key, client) -> None:
    budget = _budget(cast, amount_usd=PER_CALL * 10)
    assert chat(client, acme_key[1]).status_code == 200
    usage_stream_drain()
    status = budget_status(budget)
    counter = ledger.budget_key(cast.acme.pk, budget.pk,
                                int(__import__("datetime").datetime.fromisoformat(
                                    status["period_start"]).timestamp()))  # fmt: skip
    redis_sync().hset(counter, "spent", 0)  # drift: Redis under-counts
    assert budgets_reconcile() == 1
    assert Decimal(budget_status(budget)["spent_usd"]) == PER_CALL
    redis_sync().hset(counter, "spent", 10**9)  # drift: over-counts, stream drained
    assert budgets_reconcile() == 1
    assert Decimal(budget_status(budget)["spent_usd"]) == PER_CALL
    assert budgets_reconcile() == 0


@DRAINS
def test_redis_down_fails_closed_for_hard_budgets(cast, metered, acme_key, client) -> None:
    _budget(cast)
    key = acme_key[1]
    assert chat(client, key).status_code == 200  # the snapshot is loaded while Redis is up
    with override_settings(REDIS_URL="redis://127.0.0.1:1/15"):
        refused = chat(client, key)
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "budget_unavailable"
        assert refused["retry-after"] == "1"


@DRAINS
def test_redis_down_without_budgets_still_bills_to_postgresql(cast, metered, acme_key,
                                                               client) -> None:  # fmt: skip
    key = acme_key[1]
    assert chat(client, key).status_code == 200
    with override_settings(REDIS_URL="redis://127.0.0.1:1/15"):
        response = chat(client, key)
        assert response.status_code == 200
    record = UsageRecord.objects.get(request_id=response["x-request-id"])
    assert record.cost_usd == PER_CALL


# --- management API ---------------------------------------------------------------------


def test_budget_api_roles_and_validation(cast, metered, acme_key) -> None:
    finance = cast.client(cast.bob)
    body = {"name": "team spend", "scope": "api_key", "api_key": acme_key[0].pk,
            "amount_usd": "12.50", "period": "weekly"}  # fmt: skip
    assert finance.post(BUDGETS, body, format="json").status_code == 403  # viewer
    cast.set_bob_role("finance")
    created = finance.post(BUDGETS, body, format="json")
    assert created.status_code == 201, created.content
    budget_id = created.json()["id"]
    assert created.json()["thresholds"] == [50, 80, 95, 100]
    status = finance.get(f"{BUDGETS}{budget_id}/status/")
    assert status.status_code == 200
    assert status.json()["limit_usd"] == "12.500000"
    assert status.json()["period_end"]
    assert finance.get(f"{BUDGETS}{budget_id}/alerts/").json() == []
    charlie = cast.client(cast.charlie)
    assert charlie.get(f"{BUDGETS}{budget_id}/").status_code == 404


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"scope": "team"}, "names its team"),
        ({"scope": "tenant", "end_user": "x"}, "has no end_user"),
        ({"amount_usd": "-1"}, "greater than or equal to 0"),
        ({"period": "hourly"}, "not a valid choice"),
        ({"thresholds": [50, 50]}, "distinct"),
        ({"thresholds": [0]}, "1 to 1000"),
        ({"notify_emails": ["not-an-email"]}, "valid email"),
        ({"scope": "galaxy"}, "not a valid choice"),
    ],
)
def test_invalid_budgets_are_400(cast, body, needle) -> None:
    payload = {"name": "b", "scope": "tenant", "amount_usd": "5", **body}
    response = cast.client(cast.alice).post(BUDGETS, payload, format="json")
    assert response.status_code == 400, response.content
    assert needle in response.content.decode()


def test_another_tenants_key_cannot_be_budgeted(cast) -> None:
    other, _ = api_key_create(context=CTX, tenant=cast.globex, name="theirs")
    body = {"name": "b", "scope": "api_key", "api_key": other.pk, "amount_usd": "5"}
    response = cast.client(cast.alice).post(BUDGETS, body, format="json")
    assert response.status_code == 400
