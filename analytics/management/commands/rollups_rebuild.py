"""Recompute usage rollups from the records (whole UTC days)."""

from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from analytics.rollups import rollups_rebuild
from tenants.models import Tenant


def _day(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    except ValueError:
        raise CommandError(f"'{value}' is not an ISO date.") from None


class Command(BaseCommand):
    help = "Recompute usage rollups from UsageRecord (for a tenant and/or a date range)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", help="tenant slug (default: every tenant)")
        parser.add_argument("--start", help="first UTC day, YYYY-MM-DD")
        parser.add_argument("--end", help="day after the last, YYYY-MM-DD")

    def handle(self, *args: Any, **options: Any) -> None:
        tenant_id = None
        if options["tenant"]:
            tenant = Tenant.objects.filter(slug=options["tenant"]).first()
            if tenant is None:
                raise CommandError(f"No tenant '{options['tenant']}'.")
            tenant_id = tenant.pk
        count = rollups_rebuild(tenant_id=tenant_id, start=_day(options["start"]),
                                end=_day(options["end"]))  # fmt: skip
        self.stdout.write(f"Rebuilt rollups from {count} records.")
