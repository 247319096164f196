from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tenants.audit import AuditContext
from tenants.management.commands._base import run_service
from tenants.models import Team, Tenant
from tenants.services import api_key_create


class Command(BaseCommand):
    help = "Create a gateway API key for a tenant and print it once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("tenant", help="Tenant slug.")
        parser.add_argument("--name", default="default")
        parser.add_argument("--team", help="Team slug within the tenant.")
        parser.add_argument("--rpm", type=int, help="Requests per minute limit.")
        parser.add_argument("--tpm", type=int, help="Tokens per minute limit.")
        parser.add_argument("--quiet", action="store_true", help="Print only the key.")

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = Tenant.objects.filter(slug=options["tenant"]).first()
        if tenant is None:
            raise CommandError(f"No tenant {options['tenant']!r}.")
        team = None
        if options["team"]:
            team = Team.objects.filter(tenant=tenant, slug=options["team"]).first()
            if team is None:
                raise CommandError(f"No team {options['team']!r} in {tenant.slug}.")
        api_key, plaintext = run_service(
            lambda: api_key_create(
                context=AuditContext.system("manage.py create_api_key"),
                tenant=tenant,
                name=options["name"],
                team=team,
                rpm_limit=options["rpm"],
                tpm_limit=options["tpm"],
            )
        )
        if options["quiet"]:
            self.stdout.write(plaintext)
            return
        self.stdout.write(
            f"API key {api_key.name!r} ({api_key.prefix}) for {tenant.slug} — shown once:"
        )
        self.stdout.write(plaintext)
