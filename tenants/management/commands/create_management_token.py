from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from tenants.audit import AuditContext
from tenants.management.commands._base import run_service
from tenants.services import management_token_create


class Command(BaseCommand):
    help = "Create a management API token for a user and print it once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="automation")
        parser.add_argument("--quiet", action="store_true", help="Print only the token.")

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user_model().objects.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"No user {options['username']!r}.")
        token, plaintext = run_service(
            lambda: management_token_create(
                context=AuditContext.system("manage.py create_management_token"),
                user=user,
                name=options["name"],
            )
        )
        if options["quiet"]:
            self.stdout.write(plaintext)
            return
        self.stdout.write(f"Management token {token.name!r} ({token.prefix}) — shown once:")
        self.stdout.write(plaintext)
