from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from tenants.audit import AuditContext
from tenants.management.commands._base import run_service
from tenants.models import USER_TIER_CHOICES, Tenant
from tenants.services import tenant_create


class Command(BaseCommand):
    help = "Create a tenant (idempotent with --exist-ok)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--name", help="Display name (defaults to the slug).")
        parser.add_argument("--tier", choices=[value for value, _ in USER_TIER_CHOICES])
        parser.add_argument("--time-zone", default="UTC")
        parser.add_argument(
            "--exist-ok", action="store_true", help="Succeed if the tenant already exists."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        slug = options["slug"]
        if options["exist_ok"] and Tenant.objects.filter(slug=slug).exists():
            self.stdout.write(f"Tenant {slug} already exists.")
            return
        extra = {"tier": options["tier"]} if options["tier"] else {}
        tenant = run_service(
            lambda: tenant_create(
                context=AuditContext.system("manage.py create_tenant"),
                slug=slug,
                name=options["name"] or slug,
                time_zone=options["time_zone"],
                **extra,
            )
        )
        self.stdout.write(f"Created tenant {tenant.slug} (id {tenant.pk}).")
