"""Reads of usage records."""

from analytics.models import UsageRecord


def usage_records_for_request(
    request_id: str, *, tenant_id: int | None = None
) -> UsageRecord | None:
    """The record of one gateway call, or None while it is still in the stream (or unknown).

    Pass `tenant_id` whenever the caller acts for a tenant, so another tenant's call is unseen.
    """
    records = UsageRecord.objects.filter(request_id=request_id)
    if tenant_id is not None:
        records = records.filter(tenant_id=tenant_id)
    return records.first()
