"""Vault connections and secret references: where provider keys live, never the keys."""

from django.db import models
from django.utils import timezone

from tenants.models import Tenant


class Backend(models.TextChoices):
    AZURE_KEY_VAULT = "azure_key_vault", "Azure Key Vault"
    AWS_SECRETS_MANAGER = "aws_secrets_manager", "AWS Secrets Manager"
    HASHICORP_VAULT = "hashicorp_vault", "HashiCorp Vault / OpenBao"
    ENV = "env", "Environment variable (development only)"


class VaultConnection(models.Model):
    """How to reach one vault: non-secret settings; bootstrap credentials come from the host."""

    tenant = models.ForeignKey(
        Tenant, null=True, blank=True, on_delete=models.CASCADE, related_name="vault_connections"
    )
    name = models.CharField(max_length=100)
    backend = models.CharField(max_length=30, choices=Backend.choices)
    settings = models.JSONField(default=dict, blank=True)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "name"], name="vault_connection_unique_name_per_tenant"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.backend})"


class SecretReference(models.Model):
    """A pointer to one secret in a vault: name or path, version, and optionally a JSON field."""

    tenant = models.ForeignKey(
        Tenant, null=True, blank=True, on_delete=models.CASCADE, related_name="secret_references"
    )
    connection = models.ForeignKey(
        VaultConnection, on_delete=models.PROTECT, related_name="references"
    )
    name = models.CharField(max_length=100, help_text="A label for admins, e.g. 'openai-prod'.")
    secret_name = models.CharField(max_length=500, help_text="Secret name, id, ARN or KV path.")
    version = models.CharField(max_length=200, default="latest")
    field = models.CharField(max_length=200, blank=True, help_text="Key inside a JSON secret.")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "name"], name="secret_reference_unique_name_per_tenant"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} → {self.connection_id}:{self.secret_name}@{self.version}"


class SecretAccessRollup(models.Model):
    """Fetches of one reference per hour and outcome: who used which secret, never the value."""

    reference = models.ForeignKey(
        SecretReference, on_delete=models.CASCADE, related_name="access_rollups"
    )
    hour = models.DateTimeField()
    outcome = models.CharField(max_length=30)  # "ok" or a FetchErrorKind
    accessor = models.CharField(max_length=100)  # "gateway", "test:<username>", …
    count = models.PositiveIntegerField(default=0)
    last_at = models.DateTimeField()

    class Meta:
        ordering = ["-hour", "reference_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["reference", "hour", "outcome", "accessor"], name="secret_access_rollup_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.reference_id} {self.hour:%Y-%m-%d %H}h {self.outcome} x{self.count}"
