import os
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from tenants.audit import AuditContext
from tenants.management.commands._base import run_service
from tenants.models import Tenant
from tenants.roles import ROLE_CHOICES, Role
from tenants.services import membership_create, user_create, user_set_password


class Command(BaseCommand):
    help = (
        "Create a user (platform staff with --staff, or a tenant member with --tenant/--role). "
        "The password comes from --password-file or $SWITCHBOARD_ADMIN_PASSWORD, never argv."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--email", default="")
        parser.add_argument("--password-file", type=Path)
        parser.add_argument(
            "--staff", action="store_true", help="Platform staff: sees all tenants."
        )
        parser.add_argument("--tenant", help="Tenant slug to add the user to.")
        parser.add_argument("--role", default=Role.OWNER, choices=[v for v, _ in ROLE_CHOICES])
        parser.add_argument(
            "--exist-ok",
            action="store_true",
            help="If the user exists, reset its password (when given) and ensure the membership.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        context = AuditContext.system("manage.py create_admin")
        password = self._password(options["password_file"])
        user_model = get_user_model()
        user = user_model.objects.filter(username=options["username"]).first()
        if user is not None and not options["exist_ok"]:
            raise CommandError(f"User {options['username']!r} already exists (use --exist-ok).")
        if user is None:
            user = run_service(
                lambda: user_create(
                    context=context,
                    username=options["username"],
                    email=options["email"],
                    password=password,
                    is_staff=options["staff"],
                )
            )
            self.stdout.write(f"Created user {user.get_username()}.")
        elif password:
            run_service(lambda: user_set_password(context=context, user=user, password=password))
            self.stdout.write(f"Reset the password of {user.get_username()}.")
        if options["tenant"]:
            self._ensure_membership(context, user, options["tenant"], options["role"])

    def _password(self, path: Path | None) -> str | None:
        if path is not None:
            return path.read_text(encoding="utf-8").strip() or None
        return os.environ.get("SWITCHBOARD_ADMIN_PASSWORD") or None

    def _ensure_membership(self, context: AuditContext, user: Any, slug: str, role: str) -> None:
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            raise CommandError(f"No tenant {slug!r}.")
        if tenant.memberships.filter(user=user).exists():
            return
        run_service(lambda: membership_create(context=context, tenant=tenant, user=user, role=role))
        self.stdout.write(f"Added {user.get_username()} to {slug} as {role}.")
