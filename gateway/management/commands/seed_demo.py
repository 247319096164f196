import json
import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from gateway.models import ModelDeployment
from gateway.services import deployment_create, deployment_update
from tenants.audit import AuditContext
from tenants.models import ApiKey, Tenant
from tenants.roles import Role
from tenants.services import (
    api_key_create,
    api_key_revoke,
    membership_create,
    tenant_create,
    user_create,
    user_set_password,
)

DEMO_TENANT = "demo"
DEMO_ADMIN = "admin"
DEMO_KEY_NAME = "demo key"
DEMO_PROVIDER_KEY_ENV = "SWITCHBOARD_DEMO_PROVIDER_KEY"


def demo_deployments(upstream: str) -> list[dict[str, Any]]:
    """Global deployments served by the bundled fake upstream, one per wire format."""
    common = {"api_key_env": DEMO_PROVIDER_KEY_ENV}
    return [
        {"name": "gpt-4o-mini", "provider": "openai", "litellm_model": "openai/gpt-4o-mini",
         "api_base": f"{upstream}/v1", "fallbacks": ["claude-haiku"], **common},
        {"name": "claude-haiku", "provider": "anthropic",
         "litellm_model": "anthropic/claude-haiku-4-5", "api_base": upstream, **common},
        {"name": "text-embedding-3-small", "provider": "openai",
         "litellm_model": "openai/text-embedding-3-small", "api_base": f"{upstream}/v1",
         "capabilities": ["embeddings"], **common},
    ]  # fmt: skip


class Command(BaseCommand):
    help = (
        "Seed the demo: tenant 'demo', staff user 'admin' (owner of demo) with a fresh random "
        "password, and a fresh demo API key (earlier demo keys are revoked). Idempotent."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Print the credentials as JSON.")
        parser.add_argument(
            "--upstream",
            default="http://127.0.0.1:18080",
            help="Base URL of the fake LLM upstream the demo deployments point at.",
        )

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        context = AuditContext.system("manage.py seed_demo")
        tenant = Tenant.objects.filter(slug=DEMO_TENANT).first() or tenant_create(
            context=context, slug=DEMO_TENANT, name="Demo tenant"
        )
        password = secrets.token_urlsafe(12)
        admin = get_user_model().objects.filter(username=DEMO_ADMIN).first()
        if admin is None:
            admin = user_create(
                context=context,
                username=DEMO_ADMIN,
                email="admin@example.test",
                password=password,
                is_staff=True,
            )
        else:
            user_set_password(context=context, user=admin, password=password)
        if not tenant.memberships.filter(user=admin).exists():
            membership_create(context=context, tenant=tenant, user=admin, role=Role.OWNER)
        for old in ApiKey.objects.filter(tenant=tenant, name=DEMO_KEY_NAME, revoked_at=None):
            api_key_revoke(context=context, api_key=old)
        _, plaintext = api_key_create(context=context, tenant=tenant, name=DEMO_KEY_NAME)
        self._ensure_deployments(context, options["upstream"].rstrip("/"))
        credentials = {
            "tenant": tenant.slug,
            "username": DEMO_ADMIN,
            "password": password,
            "api_key": plaintext,
        }
        if options["json"]:
            self.stdout.write(json.dumps(credentials))
        else:
            for name, value in credentials.items():
                self.stdout.write(f"{name}: {value}")

    def _ensure_deployments(self, context: AuditContext, upstream: str) -> None:
        for fields in demo_deployments(upstream):
            existing = ModelDeployment.objects.filter(tenant=None, name=fields["name"]).first()
            if existing is None:
                deployment_create(context=context, tenant=None, fields=fields)
            else:
                deployment_update(context=context, deployment=existing, fields=fields)
