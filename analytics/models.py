"""Usage records, rollups and report exports."""

from django.conf import settings
from django.db import models
from django.utils import timezone

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


# Upper bounds (ms) of the latency histogram buckets of a rollup; the last is open-ended.
LATENCY_BUCKETS_MS = (50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000)


LATENCY_BUCKET_FIELDS = tuple(f"lat_b{i}" for i in range(len(LATENCY_BUCKETS_MS) + 1))


class RollupGranularity(models.TextChoices):
    HOUR = "hour", "Hour"
    DAY = "day", "Day"


class UsageRollup(models.Model):
    """Usage summed per UTC hour and day and per dimension combination.

    Dimensions use 0 / "" rather than NULL for "none", so that the unique key matches and the
    incremental upsert (in the same transaction as the records it sums) can add to a row.
    Latency keeps a sum (for means) and a fixed-bucket histogram (for percentiles).
    """

    granularity = models.CharField(max_length=4, choices=RollupGranularity.choices)
    bucket_start = models.DateTimeField()
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+",
                               db_index=False)  # fmt: skip
    team_id = models.BigIntegerField(default=0)
    api_key_id = models.BigIntegerField(default=0)
    end_user = models.CharField(max_length=256, default="", blank=True)
    deployment_id = models.BigIntegerField(default=0)
    provider = models.CharField(max_length=50, default="", blank=True)
    model = models.CharField(max_length=200, default="", blank=True)
    task_type = models.CharField(max_length=100, default="", blank=True)
    requests = models.BigIntegerField(default=0)
    errors = models.BigIntegerField(default=0)
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    cached_tokens = models.BigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=24, decimal_places=10, default=0)
    saved_cost_usd = models.DecimalField(max_digits=24, decimal_places=10, default=0)
    latency_ms_sum = models.BigIntegerField(default=0)
    # Calls with latency ≤ LATENCY_BUCKETS_MS[i] (and above the previous bound); b10: above.
    lat_b0 = models.BigIntegerField(default=0)
    lat_b1 = models.BigIntegerField(default=0)
    lat_b2 = models.BigIntegerField(default=0)
    lat_b3 = models.BigIntegerField(default=0)
    lat_b4 = models.BigIntegerField(default=0)
    lat_b5 = models.BigIntegerField(default=0)
    lat_b6 = models.BigIntegerField(default=0)
    lat_b7 = models.BigIntegerField(default=0)
    lat_b8 = models.BigIntegerField(default=0)
    lat_b9 = models.BigIntegerField(default=0)
    lat_b10 = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "granularity", "bucket_start", "team_id", "api_key_id",
                        "end_user", "deployment_id", "provider", "model", "task_type"],
                name="usage_rollup_key",
            )
        ]  # fmt: skip
        indexes = [models.Index(fields=["tenant", "granularity", "bucket_start"],
                                name="rollup_tenant_bucket")]  # fmt: skip

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.granularity} {self.bucket_start:%Y-%m-%d %H:00}"


class ExportStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class ReportExport(models.Model):
    """A report built by a Celery worker (large exports), downloadable by the tenant's finance."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="exports")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    kind = models.CharField(max_length=10, choices=[("statement", "Statement"),
                                                    ("usage", "Usage records")])  # fmt: skip
    file_format = models.CharField(max_length=4, choices=[("csv", "CSV"), ("xlsx", "XLSX")])
    start = models.DateTimeField()
    end = models.DateTimeField()
    status = models.CharField(max_length=10, choices=ExportStatus.choices,
                              default=ExportStatus.PENDING)  # fmt: skip
    file_name = models.CharField(max_length=200, blank=True)
    size_bytes = models.BigIntegerField(default=0)
    error = models.CharField(max_length=300, blank=True)
    scheduled = models.BooleanField(default=False)  # a monthly statement, not a request
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    emailed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # One scheduled statement per tenant and period, however often the task runs.
            models.UniqueConstraint(
                fields=["tenant", "kind", "start"],
                condition=models.Q(scheduled=True),
                name="one_scheduled_statement",
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind}.{self.file_format} {self.tenant_id} {self.status}"
