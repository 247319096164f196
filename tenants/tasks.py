"""Thin Celery entry points for the tenants app."""

from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from tenants.services import audit_events_prune


@shared_task(
    name="tenants.audit_events_prune",
    queue="default",
    soft_time_limit=300,
    time_limit=360,
    ignore_result=True,
)
def audit_events_prune_task() -> int:
    cutoff = timezone.now() - timedelta(days=settings.AUDIT_RETENTION_DAYS)
    return audit_events_prune(older_than=cutoff)
