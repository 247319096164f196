"""Model deployments: the provider endpoints that serve the gateway's public model names."""

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.utils import timezone

from tenants.models import USER_TIER_CHOICES, Tenant


class Provider(models.TextChoices):
    OPENAI = "openai", "OpenAI"
    AZURE = "azure", "Azure OpenAI"
    ANTHROPIC = "anthropic", "Anthropic"
    OPENAI_COMPATIBLE = "openai_compatible", "OpenAI-compatible (vLLM, Ollama, OpenRouter, …)"
    GEMINI = "gemini", "Google Gemini"
    VERTEX_AI = "vertex_ai", "Google Vertex AI"
    BEDROCK = "bedrock", "AWS Bedrock"
    MISTRAL = "mistral", "Mistral"
    GROQ = "groq", "Groq"
    COHERE = "cohere", "Cohere"
    OTHER = "other", "Other (any litellm provider)"


# Providers whose upstream speaks the OpenAI wire format, so the direct passthrough applies.
OPENAI_WIRE_PROVIDERS = frozenset({Provider.OPENAI, Provider.AZURE, Provider.OPENAI_COMPATIBLE})


class ExecutionPath(models.TextChoices):
    AUTO = "auto", "Direct where the upstream speaks OpenAI, litellm otherwise"
    DIRECT = "direct", "Direct OpenAI-compatible passthrough"
    LITELLM = "litellm", "litellm SDK"


class Capability(models.TextChoices):
    STREAMING = "streaming"
    TOOLS = "tools"
    VISION = "vision"
    JSON_MODE = "json_mode"
    EMBEDDINGS = "embeddings"


CAPABILITY_VALUES = frozenset(Capability.values)
DEFAULT_CAPABILITIES = [Capability.STREAMING, Capability.TOOLS, Capability.JSON_MODE]


def default_capabilities() -> list[str]:
    return [str(capability) for capability in DEFAULT_CAPABILITIES]


PUBLIC_NAME_VALIDATOR = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}$",
    "Use letters, digits and . _ : / - (a model name such as 'gpt-4o-mini').",
)
ENV_VAR_VALIDATOR = RegexValidator(
    r"^[A-Z_][A-Z0-9_]{0,127}$", "An environment variable name such as OPENAI_API_KEY."
)


def price_field() -> "models.DecimalField[Decimal | None, Decimal | None]":
    """USD per 1M tokens; empty means litellm's cost map decides."""
    return models.DecimalField(
        max_digits=20, decimal_places=10, null=True, blank=True,
        validators=[MinValueValidator(Decimal(0))],
    )  # fmt: skip


def validate_capabilities(value: object) -> None:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValidationError("Give a list of capability names.")
    unknown = sorted(set(value) - CAPABILITY_VALUES)
    if unknown:
        known = ", ".join(sorted(CAPABILITY_VALUES))
        raise ValidationError(f"Unknown capabilities: {', '.join(unknown)}; use {known}.")


def validate_name_list(value: object) -> None:
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise ValidationError("Give a list of model names.")


class ModelDeployment(models.Model):
    """One provider endpoint serving a public model name, global or owned by one tenant."""

    tenant = models.ForeignKey(
        Tenant, null=True, blank=True, on_delete=models.CASCADE, related_name="deployments"
    )
    name = models.CharField(max_length=200, validators=[PUBLIC_NAME_VALIDATOR])
    provider = models.CharField(max_length=30, choices=Provider.choices)
    litellm_model = models.CharField(
        max_length=300, help_text="litellm model string, e.g. 'openai/gpt-4o-mini'."
    )
    api_base = models.URLField(max_length=500, blank=True)
    api_version = models.CharField(max_length=50, blank=True)
    secret_reference = models.ForeignKey(
        "keyvault.SecretReference",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="deployments",
        help_text="Where the provider key lives (fetched at call time, never stored here).",
    )
    api_key_env = models.CharField(
        max_length=128,
        blank=True,
        validators=[ENV_VAR_VALIDATOR],
        help_text="Development only: an environment variable holding the provider key.",
    )
    input_price_per_mtok = price_field()
    output_price_per_mtok = price_field()
    cached_input_price_per_mtok = price_field()
    context_window = models.PositiveIntegerField(
        default=128_000, validators=[MinValueValidator(256), MaxValueValidator(10_000_000)]
    )
    max_output_tokens = models.PositiveIntegerField(
        default=4096, validators=[MinValueValidator(1), MaxValueValidator(1_000_000)]
    )
    capabilities = models.JSONField(
        default=default_capabilities, blank=True, validators=[validate_capabilities]
    )
    min_user_tier = models.CharField(max_length=20, choices=USER_TIER_CHOICES, blank=True)
    priority = models.IntegerField(default=100, help_text="Lower is tried first.")
    weight = models.PositiveIntegerField(default=1, validators=[MaxValueValidator(10_000)])
    timeout_s = models.FloatField(
        default=60.0, validators=[MinValueValidator(0.1), MaxValueValidator(900)]
    )
    fallbacks = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_name_list],
        help_text="Public model names tried, in order, when every deployment of this name fails.",
    )
    execution_path = models.CharField(
        max_length=10, choices=ExecutionPath.choices, default=ExecutionPath.AUTO
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "priority", "id"]
        indexes = [models.Index(fields=["tenant", "name"], name="deployment_tenant_name")]

    def __str__(self) -> str:
        return f"{self.name} ({self.provider}:{self.litellm_model})"

    @property
    def uses_direct_path(self) -> bool:
        if self.execution_path == ExecutionPath.DIRECT:
            return True
        return self.execution_path == ExecutionPath.AUTO and self.provider in OPENAI_WIRE_PROVIDERS


STRATEGY_CHOICES = [
    ("priority", "Priority"),
    ("weighted", "Weighted random"),
    ("round_robin", "Round robin"),
    ("least_latency", "Least latency"),
    ("lowest_cost", "Lowest cost"),
    ("least_busy", "Least busy"),
]
TASK_NAME_VALIDATOR = RegexValidator(
    r"^[a-z0-9][a-z0-9_.-]{0,99}$",
    "Use lowercase letters, digits and _ . - (e.g. code_generation).",
)


def validate_profile_candidates(value: object) -> None:
    if not isinstance(value, list) or not value or len(value) > 50:
        raise ValidationError('Give 1 to 50 candidates as {"model": name, "weight": n}.')
    for index, item in enumerate(value):
        if not isinstance(item, dict) or set(item) - {"model", "weight"}:
            raise ValidationError(f'candidates[{index}] must be {{"model", "weight"}}.')
        if not isinstance(item.get("model"), str) or not item["model"]:
            raise ValidationError(f"candidates[{index}].model must be a model name.")
        weight = item.get("weight", 1)
        if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 10_000:
            raise ValidationError(f"candidates[{index}].weight must be an integer 0..10000.")


def validate_request_defaults(value: object) -> None:
    if not isinstance(value, dict) or set(value) - {"max_tokens", "temperature"}:
        raise ValidationError("Defaults may set max_tokens and temperature only.")
    max_tokens = value.get("max_tokens")
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int)
                                   or max_tokens < 1):  # fmt: skip
        raise ValidationError("max_tokens must be a positive integer.")
    temperature = value.get("temperature")
    if temperature is not None and (isinstance(temperature, bool)
                                    or not isinstance(temperature, int | float)
                                    or not 0 <= temperature <= 2):  # fmt: skip
        raise ValidationError("temperature must be a number from 0 to 2.")


class TaskProfile(models.Model):
    """A task type (persona, use case): which models serve it, how, and with what defaults."""

    tenant = models.ForeignKey(
        Tenant, null=True, blank=True, on_delete=models.CASCADE, related_name="task_profiles"
    )
    name = models.CharField(max_length=100, validators=[TASK_NAME_VALIDATOR])
    description = models.TextField(blank=True)
    candidates = models.JSONField(validators=[validate_profile_candidates])
    strategy = models.CharField(max_length=20, choices=STRATEGY_CHOICES, default="priority")
    fallbacks = models.JSONField(default=list, blank=True, validators=[validate_name_list])
    required_capabilities = models.JSONField(
        default=list, blank=True, validators=[validate_capabilities]
    )
    defaults = models.JSONField(default=dict, blank=True, validators=[validate_request_defaults])
    cache_ttl_s = models.PositiveIntegerField(null=True, blank=True)
    guardrail_policy = models.JSONField(default=dict, blank=True)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="task_profile_unique_name")
        ]

    def __str__(self) -> str:
        return self.name


def validate_rule_action(value: object) -> None:
    if not isinstance(value, dict):
        raise ValidationError("The action is an object.")
    if set(value) == {"task_profile"}:
        if not isinstance(value["task_profile"], str) or not value["task_profile"]:
            raise ValidationError("task_profile must be a profile name.")
        return
    if set(value) - {"models", "strategy"} or "models" not in value:
        raise ValidationError('Use {"task_profile": name} or {"models": [...], "strategy": s}.')
    validate_name_list(value["models"])
    if not value["models"]:
        raise ValidationError("models must not be empty.")
    if value.get("strategy", "priority") not in dict(STRATEGY_CHOICES):
        raise ValidationError(f"Unknown strategy {value.get('strategy')!r}.")


class RoutingRule(models.Model):
    """A declarative condition on the request and the route to take when it holds."""

    tenant = models.ForeignKey(
        Tenant, null=True, blank=True, on_delete=models.CASCADE, related_name="routing_rules"
    )
    name = models.CharField(max_length=100)
    priority = models.IntegerField(default=100, help_text="Lower is evaluated first.")
    condition = models.JSONField(help_text="See docs/api.md: fields, operators, all/any/not.")
    action = models.JSONField(validators=[validate_rule_action])
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["priority", "id"]

    def __str__(self) -> str:
        return f"{self.priority}:{self.name}"

    def clean(self) -> None:
        from gateway.routing.conditions import ConditionError, validate_condition

        try:
            validate_condition(self.condition)
        except ConditionError as exc:
            raise ValidationError({"condition": str(exc)}) from None


class ExperimentStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    RUNNING = "running", "Running"
    STOPPED = "stopped", "Stopped"
    COMPLETED = "completed", "Completed"


class ExperimentMetric(models.TextChoices):
    ERROR_RATE = "error_rate", "Error rate (lower wins)"
    LATENCY_MEAN = "latency_mean", "Mean latency (lower wins)"
    COST_MEAN = "cost_mean", "Mean cost per request (lower wins)"
    SCORE_MEAN = "score_mean", "Mean feedback score (higher wins)"


VARIANT_KEY_VALIDATOR = RegexValidator(
    r"^[a-z0-9][a-z0-9_-]{0,49}$", "Use lowercase letters, digits, _ and - (e.g. control)."
)
VARIANT_PARAMS = frozenset({"max_tokens", "temperature", "top_p"})


def validate_variant_params(value: object) -> None:
    """Parameter overrides a variant applies to every call it serves."""
    if not isinstance(value, dict) or set(value) - VARIANT_PARAMS:
        raise ValidationError(f"Overrides may set {', '.join(sorted(VARIANT_PARAMS))} only.")
    top_p = value.get("top_p")
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, int | float)
                              or not 0 <= top_p <= 1):  # fmt: skip
        raise ValidationError("top_p must be a number from 0 to 1.")
    validate_request_defaults({k: v for k, v in value.items() if k != "top_p"})


class Experiment(models.Model):
    """An A/B test: traffic of one task type or routing rule split between variants."""

    tenant = models.ForeignKey(
        Tenant, null=True, blank=True, on_delete=models.CASCADE, related_name="experiments"
    )
    name = models.CharField(max_length=100, validators=[TASK_NAME_VALIDATOR])
    description = models.TextField(blank=True)
    task_type = models.CharField(
        max_length=100, blank=True, validators=[TASK_NAME_VALIDATOR],
        help_text="The task type (or task profile named as model) whose traffic is split.",
    )  # fmt: skip
    rule = models.ForeignKey(
        RoutingRule, null=True, blank=True, on_delete=models.PROTECT, related_name="experiments",
        help_text="Or: the routing rule whose traffic is split.",
    )  # fmt: skip
    status = models.CharField(
        max_length=10, choices=ExperimentStatus.choices, default=ExperimentStatus.DRAFT
    )
    primary_metric = models.CharField(
        max_length=20, choices=ExperimentMetric.choices, default=ExperimentMetric.SCORE_MEAN
    )
    confidence_level = models.FloatField(
        default=0.95, validators=[MinValueValidator(0.5), MaxValueValidator(0.999)]
    )
    min_samples = models.PositiveIntegerField(
        default=100, validators=[MinValueValidator(2), MaxValueValidator(10_000_000)],
        help_text="Per variant, before any winner is declared.",
    )  # fmt: skip
    auto_promote = models.BooleanField(default=False)
    winner = models.CharField(max_length=50, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    promoted_by = models.CharField(max_length=20, blank=True)  # "auto" or "manual"
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="experiment_unique_name")
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if bool(self.task_type) == (self.rule_id is not None):
            raise ValidationError("An experiment applies to exactly one task type or one rule.")
        rule = self.rule if self.rule_id is not None else None
        if rule is not None and rule.tenant_id not in (None, self.tenant_id):
            raise ValidationError({"rule": "No such routing rule."})


class Variant(models.Model):
    """One arm of an experiment: a public model name, its share, its parameter overrides."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="variants")
    key = models.CharField(max_length=50, validators=[VARIANT_KEY_VALIDATOR])
    model = models.CharField(max_length=200, validators=[PUBLIC_NAME_VALIDATOR])
    weight = models.PositiveIntegerField(default=1, validators=[MaxValueValidator(10_000)])
    params = models.JSONField(default=dict, blank=True, validators=[validate_variant_params])
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["experiment", "key"], name="variant_unique_key")
        ]

    def __str__(self) -> str:
        return f"{self.key} -> {self.model}"
