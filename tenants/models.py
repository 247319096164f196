"""Tenants, their teams and members, API keys, management tokens and the audit trail."""

import zoneinfo
from datetime import datetime
from enum import StrEnum

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

from tenants.roles import ROLE_CHOICES, Role

SLUG_PATTERN = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
SLUG_VALIDATOR = RegexValidator(
    rf"^{SLUG_PATTERN}$",
    "Use 1-63 lowercase letters, digits and hyphens, starting and ending with a letter or digit.",
)


class UserTier(StrEnum):
    """Service tiers of end users and tenants, lowest first."""

    FREE = "free"
    STANDARD = "standard"
    PREMIUM = "premium"
    ENTERPRISE = "enterprise"


USER_TIER_CHOICES = [(tier.value, tier.value.title()) for tier in UserTier]
USER_TIER_RANK = {tier.value: rank for rank, tier in enumerate(UserTier)}


def validate_time_zone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(f"{value!r} is not an IANA time zone such as 'Europe/Paris'.")


class TenantStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    SUSPENDED = "suspended", "Suspended"


class Tenant(models.Model):
    """An organisation whose calls, keys, budgets and data are isolated from every other's."""

    slug = models.CharField(max_length=63, unique=True, validators=[SLUG_VALIDATOR])
    name = models.CharField(max_length=200)
    tier = models.CharField(max_length=20, choices=USER_TIER_CHOICES, default=UserTier.STANDARD)
    status = models.CharField(
        max_length=20, choices=TenantStatus.choices, default=TenantStatus.ACTIVE
    )
    time_zone = models.CharField(max_length=64, default="UTC", validators=[validate_time_zone])
    # Rate limits over the whole tenant and per end user (set by platform staff); empty: none.
    rpm_limit = models.PositiveIntegerField(null=True, blank=True)
    tpm_limit = models.PositiveIntegerField(null=True, blank=True)
    end_user_rpm_limit = models.PositiveIntegerField(null=True, blank=True)
    end_user_tpm_limit = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug

    @property
    def is_active(self) -> bool:
        return self.status == TenantStatus.ACTIVE


class Team(models.Model):
    """A group of members and keys inside a tenant (a budget and report dimension)."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="teams")
    slug = models.CharField(max_length=63, validators=[SLUG_VALIDATOR])
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["tenant_id", "slug"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "slug"], name="team_unique_slug_per_tenant")
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id}/{self.slug}"


class Membership(models.Model):
    """A user's role in one tenant (platform staff see every tenant without one)."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=20, choices=ROLE_CHOICES, default=Role.VIEWER)
    teams = models.ManyToManyField(Team, blank=True, related_name="memberships")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["tenant_id", "user_id"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "user"], name="membership_unique_user")
        ]

    def __str__(self) -> str:
        return f"{self.user_id}@{self.tenant_id}:{self.role}"


class ApiKey(models.Model):
    """A gateway credential; only its public prefix and an HMAC of its secret are stored."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_keys")
    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.SET_NULL, related_name="api_keys"
    )
    name = models.CharField(max_length=200)
    prefix = models.CharField(max_length=12, unique=True, editable=False)
    secret_hmac = models.CharField(max_length=64, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    rotated_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="rotated_to"
    )
    allowed_models = models.JSONField(default=list, blank=True)
    allowed_task_types = models.JSONField(default=list, blank=True)
    max_user_tier = models.CharField(max_length=20, choices=USER_TIER_CHOICES, blank=True)
    rpm_limit = models.PositiveIntegerField(null=True, blank=True)
    tpm_limit = models.PositiveIntegerField(null=True, blank=True)
    max_concurrency = models.PositiveIntegerField(
        null=True, blank=True, help_text="Calls in flight at once; leases expire with the call."
    )

    class Meta:
        ordering = ["tenant_id", "-created_at", "id"]
        indexes = [models.Index(fields=["tenant", "revoked_at"], name="apikey_tenant_revoked")]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix})"

    def is_usable(self, at: datetime | None = None) -> bool:
        now = at or timezone.now()
        if self.revoked_at is not None and self.revoked_at <= now:
            return False
        return self.expires_at is None or self.expires_at > now


class ManagementToken(models.Model):
    """A bearer token for automation that acts as its user on the management API."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="management_tokens"
    )
    name = models.CharField(max_length=200)
    prefix = models.CharField(max_length=12, unique=True, editable=False)
    secret_hmac = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["user_id", "-created_at", "id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix})"


class AuditEvent(models.Model):
    """One mutation: who did what to which object, with a redacted before/after diff."""

    tenant = models.ForeignKey(
        Tenant, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit_events"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_label = models.CharField(max_length=200, blank=True)
    action = models.CharField(max_length=100)
    object_type = models.CharField(max_length=100)
    object_id = models.CharField(max_length=100, blank=True)
    object_repr = models.CharField(max_length=300, blank=True)
    changes = models.JSONField(default=dict, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["tenant", "-created_at"], name="audit_tenant_created"),
            models.Index(fields=["object_type", "object_id"], name="audit_object"),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.object_type}:{self.object_id}"
