"""The usage ledger in Django's admin: visible to staff, never editable."""

from datetime import UTC, datetime
from decimal import Decimal

from django.urls import reverse

from analytics.models import UsageRecord
from tests.tenants.factories import TenantFactory


def test_usage_records_are_listed_and_shown_read_only(db, admin_client) -> None:
    record = UsageRecord.objects.create(
        request_id="req-admin-1",
        created_at=datetime(2026, 3, 1, tzinfo=UTC),
        tenant=TenantFactory(),
        model="gpt-4o-mini",
        provider="openai",
        cost_usd=Decimal("0.5"),
        latency_ms=10,
        status="success",
        http_status=200,
    )

    listing = admin_client.get(reverse("admin:analytics_usagerecord_changelist"))
    assert listing.status_code == 200
    assert b"req-admin-1" in listing.content

    detail = admin_client.get(reverse("admin:analytics_usagerecord_change", args=[record.pk]))
    assert detail.status_code == 200
    assert b'name="_save"' not in detail.content

    assert admin_client.get(reverse("admin:analytics_usagerecord_add")).status_code == 403
    delete_url = reverse("admin:analytics_usagerecord_delete", args=[record.pk])
    assert admin_client.post(delete_url, {"post": "yes"}).status_code == 403
    assert UsageRecord.objects.filter(pk=record.pk).exists()
