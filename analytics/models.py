"""Usage records, rollups and report exports."""

from django.db import models

from tenants.models import ApiKey, Team, Tenant


class UsageStatus(models.TextChoices):
    SUCCESS = "success", "Success"
    PROVIDER_ERROR = "provider_error", "Provider error"
    BLOCKED = "blocked", "Blocked"
    CANCELLED = "cancelled", "Cancelled"
    ERROR = "error", "Error"


class UsageRecord(models.Model):
    """One gateway call as billed: who made it, what served it, its tokens, cost and outcome."""

    # Unique so that re-delivered stream entries (at-least-once ingestion) insert nothing.
    request_id = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField()
    # The (tenant, created_at) index leads with tenant, so the FK's own index would be redundant.
    tenant = models.ForeignKey(
        Tenant, on_delete=models.PROTECT, related_name="usage_records", db_index=False
    )
    api_key = models.ForeignKey(
        ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="usage_records"
    )
    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.SET_NULL, related_name="usage_records"
    )
    end_user = models.CharField(max_length=256, blank=True, default="")
    # The gateway's ModelDeployment id, kept as a plain id so usage outlives deployments.
    deployment_id = models.BigIntegerField(null=True, blank=True)
    model = models.CharField(max_length=200)  # the public name the client asked for
    provider = models.CharField(max_length=50, blank=True)  # empty if blocked before routing
    task_type = models.CharField(max_length=100, blank=True, default="")
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=20, decimal_places=10)
    saved_cost_usd = models.DecimalField(max_digits=20, decimal_places=10, default=0)
    latency_ms = models.PositiveIntegerField()
    ttft_ms = models.PositiveIntegerField(null=True, blank=True)
    status = models.CharField(max_length=20, choices=UsageStatus.choices)
    http_status = models.PositiveSmallIntegerField()
    error_type = models.CharField(max_length=50, blank=True, default="")
    attempts = models.PositiveSmallIntegerField(default=1)
    fallback_count = models.PositiveSmallIntegerField(default=0)
    cached = models.BooleanField(default=False)
    stream = models.BooleanField(default=False)
    metadata = models.JSONField(default=dict, blank=True)
    # The A/B experiment (plain id, like deployment_id) and variant that served the call.
    experiment_id = models.BigIntegerField(null=True, blank=True)
    variant = models.CharField(max_length=50, blank=True, default="")

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["tenant", "created_at"], name="usage_tenant_created"),
            models.Index(
                fields=["tenant", "api_key", "created_at"], name="usage_tenant_key_created"
            ),
            models.Index(
                fields=["tenant", "model", "created_at"], name="usage_tenant_model_created"
            ),
            models.Index(
                fields=["tenant", "end_user", "created_at"], name="usage_tenant_user_created"
            ),
            models.Index(
                fields=["experiment_id", "variant"],
                name="usage_experiment_variant",
                condition=models.Q(experiment_id__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.request_id} {self.model} {self.status}"


class Feedback(models.Model):
    """An application's quality verdict on one gateway call (`POST /v1/feedback`).

    Keyed by the tenant and the server-minted request id; joined with `UsageRecord` on both,
    so feedback can only ever score the tenant's own calls. A later verdict replaces an
    earlier one.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="feedback")
    request_id = models.CharField(max_length=64)
    score = models.FloatField(help_text="0 (bad) to 1 (good); thumbs up is 1, down is 0.")
    comment = models.TextField(blank=True, max_length=2000)
    api_key = models.ForeignKey(
        ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="feedback"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "request_id"], name="feedback_unique_request")
        ]

    def __str__(self) -> str:
        return f"{self.request_id}: {self.score}"
