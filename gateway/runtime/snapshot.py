"""The gateway's configuration snapshot: immutable, in process, zero queries per call.

Keys, tenants and deployments are loaded once into frozen dataclasses. Each process checks
the config version in Redis at most every `GATEWAY_SNAPSHOT_CHECK_S` (one GET, shared by all
calls in that interval) and rebuilds when it changed, so a revoked key or a disabled
deployment stops working everywhere within that bound. A full rebuild also happens every
`FULL_REFRESH_S` as a safety net for a missed version bump.
"""

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import litellm
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections, connection
from django.db.models import Q
from django.utils import timezone

from gateway.models import (
    Experiment,
    ExperimentStatus,
    ModelDeployment,
    RoutingRule,
    TaskProfile,
)
from gateway.routing.conditions import compile_condition, describe
from keyvault.resolver import SecretRef
from keyvault.services import secret_ref_for
from switchboard.config_version import CONFIG_VERSION_KEY
from switchboard.redis_client import redis_async
from tenants.models import USER_TIER_RANK, ApiKey, Tenant, TenantStatus

logger = logging.getLogger(__name__)

FULL_REFRESH_S = 60.0
REVOKED_KEPT = timedelta(days=30)
PER_MTOK = Decimal(1_000_000)
# Blended (input + output) / 2 USD per 1M tokens below which a deployment is in that tier.
COST_TIER_BOUNDS = ((Decimal(1), "economy"), (Decimal(10), "standard"))


@dataclass(frozen=True, slots=True)
class KeyEntry:
    id: int
    prefix: str
    secret_hmac: str
    name: str
    tenant_id: int
    team_id: int | None
    expires_at: float | None
    revoked_at: float | None
    allowed_models: frozenset[str]
    allowed_task_types: frozenset[str]
    max_user_tier: str
    rpm_limit: int | None
    tpm_limit: int | None
    max_concurrency: int | None = None


@dataclass(frozen=True, slots=True)
class TenantEntry:
    id: int
    slug: str
    active: bool
    tier: str
    time_zone: str
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    end_user_rpm_limit: int | None = None
    end_user_tpm_limit: int | None = None


@dataclass(frozen=True, slots=True)
class BudgetEntry:
    id: int
    tenant_id: int
    name: str
    scope: str  # tenant, team, api_key, end_user, deployment
    target: str  # the team / key / deployment id, or the end user id; "" for the tenant
    limit: Decimal
    period: str
    hard: bool
    created_at: datetime


@dataclass(frozen=True, slots=True)
class DeploymentEntry:
    id: int
    tenant_id: int | None
    name: str
    provider: str
    litellm_model: str
    upstream_model: str
    api_base: str
    api_version: str
    api_key_env: str
    direct: bool
    input_price: Decimal  # USD per token
    output_price: Decimal
    cached_input_price: Decimal
    context_window: int
    max_output_tokens: int
    capabilities: frozenset[str]
    min_tier_rank: int
    priority: int
    weight: int
    timeout_s: float
    fallbacks: tuple[str, ...]
    secret_ref: SecretRef | None = None

    def cost(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> Decimal:
        uncached = max(prompt_tokens - cached_tokens, 0)
        return (
            uncached * self.input_price
            + cached_tokens * self.cached_input_price
            + completion_tokens * self.output_price
        )

    @property
    def cost_tier(self) -> str:
        """economy / standard / premium, by the blended price per 1M tokens."""
        blended = (self.input_price + self.output_price) * PER_MTOK / 2
        for bound, tier in COST_TIER_BOUNDS:
            if blended < bound:
                return tier
        return "premium"


@dataclass(frozen=True, slots=True)
class ProfileEntry:
    id: int
    tenant_id: int | None
    name: str
    description: str
    candidates: tuple[tuple[str, int], ...]  # (public model name, weight), in order
    strategy: str
    fallbacks: tuple[str, ...]
    required_capabilities: frozenset[str]
    defaults: tuple[tuple[str, Any], ...]
    cache_ttl_s: int | None


@dataclass(frozen=True, slots=True)
class RuleEntry:
    id: int
    tenant_id: int | None
    name: str
    priority: int
    predicate: Callable[[Mapping[str, Any]], bool]
    description: str
    task_profile: str | None
    models: tuple[str, ...]
    strategy: str


@dataclass(frozen=True, slots=True)
class VariantEntry:
    key: str
    model: str
    weight: int
    params: tuple[tuple[str, Any], ...]


@dataclass(frozen=True, slots=True)
class ExperimentEntry:
    id: int
    tenant_id: int | None
    name: str
    task_type: str
    rule_id: int | None
    variants: tuple[VariantEntry, ...]
    winner: str  # set once promoted: every call then goes to that variant

    def variant(self, key: str) -> VariantEntry | None:
        return next((v for v in self.variants if v.key == key), None)


@dataclass(frozen=True)
class Snapshot:
    version: str
    built_at: float
    keys_by_prefix: dict[str, KeyEntry]
    tenants: dict[int, TenantEntry]
    deployments: dict[int, DeploymentEntry]
    # (tenant id or None for global, public name) -> enabled deployments by priority
    by_name: dict[tuple[int | None, str], tuple[DeploymentEntry, ...]] = field(repr=False)
    profiles: dict[tuple[int | None, str], ProfileEntry] = field(default_factory=dict, repr=False)
    # Rules in evaluation order: per tenant (own and global merged), and global only.
    rules_by_tenant: dict[int, tuple[RuleEntry, ...]] = field(default_factory=dict, repr=False)
    global_rules: tuple[RuleEntry, ...] = ()
    # Running (or promoted) experiments, by (tenant or None, routing rule id or task type).
    experiments_by_rule: dict[tuple[int | None, int], ExperimentEntry] = field(
        default_factory=dict, repr=False
    )
    experiments_by_task: dict[tuple[int | None, str], ExperimentEntry] = field(
        default_factory=dict, repr=False
    )
    budgets_by_tenant: dict[int, tuple[BudgetEntry, ...]] = field(default_factory=dict, repr=False)

    def experiment_for(
        self, tenant_id: int, *, rule_id: int | None, task_type: str | None
    ) -> ExperimentEntry | None:
        """The experiment splitting this traffic: the matched rule's, else the task type's
        (the tenant's own before a global one)."""
        if rule_id is not None:
            by_rule = self.experiments_by_rule
            return by_rule.get((tenant_id, rule_id)) or by_rule.get((None, rule_id))
        if not task_type:
            return None
        by_task = self.experiments_by_task
        return by_task.get((tenant_id, task_type)) or by_task.get((None, task_type))

    def rules_for(self, tenant_id: int) -> tuple[RuleEntry, ...]:
        return self.rules_by_tenant.get(tenant_id, self.global_rules)

    def profile(self, tenant_id: int, name: str) -> ProfileEntry | None:
        return self.profiles.get((tenant_id, name)) or self.profiles.get((None, name))

    def deployments_named(self, tenant_id: int, name: str) -> tuple[DeploymentEntry, ...]:
        """A tenant's own deployments of that name first, then the global ones."""
        return self.by_name.get((tenant_id, name), ()) + self.by_name.get((None, name), ())

    def model_names(self, tenant_id: int) -> list[str]:
        names = {name for (owner, name) in self.by_name if owner in (None, tenant_id)}
        return sorted(names)


def _epoch(value: Any) -> float | None:
    return value.timestamp() if value is not None else None


def _strip_provider(litellm_model: str) -> str:
    return litellm_model.split("/", 1)[1] if "/" in litellm_model else litellm_model


def model_prices(litellm_model: str) -> dict[str, Any]:
    """litellm's bundled cost map entry for a model (with or without its provider prefix)."""
    cost_map = litellm.model_cost
    return cost_map.get(litellm_model) or cost_map.get(_strip_provider(litellm_model)) or {}


def _price(override: Decimal | None, default: Any) -> Decimal:
    if override is not None:
        return override / PER_MTOK
    return Decimal(str(default or 0))


def _deployment_entry(row: ModelDeployment) -> DeploymentEntry:
    defaults = model_prices(row.litellm_model)
    return DeploymentEntry(
        id=row.pk,
        tenant_id=row.tenant_id,
        name=row.name,
        provider=row.provider,
        litellm_model=row.litellm_model,
        upstream_model=_strip_provider(row.litellm_model),
        api_base=row.api_base.rstrip("/"),
        api_version=row.api_version,
        api_key_env=row.api_key_env,
        direct=row.uses_direct_path,
        input_price=_price(row.input_price_per_mtok, defaults.get("input_cost_per_token")),
        output_price=_price(row.output_price_per_mtok, defaults.get("output_cost_per_token")),
        cached_input_price=_price(
            row.cached_input_price_per_mtok,
            defaults.get("cache_read_input_token_cost", defaults.get("input_cost_per_token")),
        ),
        context_window=row.context_window,
        max_output_tokens=row.max_output_tokens,
        capabilities=frozenset(row.capabilities),
        min_tier_rank=USER_TIER_RANK.get(row.min_user_tier, 0),
        priority=row.priority,
        weight=row.weight,
        timeout_s=row.timeout_s,
        fallbacks=tuple(row.fallbacks),
        secret_ref=secret_ref_for(row.secret_reference) if row.secret_reference else None,
    )


def snapshot_build(version: str) -> Snapshot:
    """Load everything the gateway reads (a handful of queries, once per config change)."""
    now = timezone.now()
    keys = {
        key.prefix: KeyEntry(
            id=key.pk,
            prefix=key.prefix,
            secret_hmac=key.secret_hmac,
            name=key.name,
            tenant_id=key.tenant_id,
            team_id=key.team_id,
            expires_at=_epoch(key.expires_at),
            revoked_at=_epoch(key.revoked_at),
            allowed_models=frozenset(key.allowed_models),
            allowed_task_types=frozenset(key.allowed_task_types),
            max_user_tier=key.max_user_tier,
            rpm_limit=key.rpm_limit,
            tpm_limit=key.tpm_limit,
            max_concurrency=key.max_concurrency,
        )
        # Recently revoked keys stay so that callers are told "revoked", not "invalid".
        for key in ApiKey.objects.filter(
            Q(revoked_at__isnull=True) | Q(revoked_at__gt=now - REVOKED_KEPT)
        )
    }
    tenants = {
        tenant.pk: TenantEntry(
            id=tenant.pk,
            slug=tenant.slug,
            active=tenant.status == TenantStatus.ACTIVE,
            tier=tenant.tier,
            time_zone=tenant.time_zone,
            rpm_limit=tenant.rpm_limit,
            tpm_limit=tenant.tpm_limit,
            end_user_rpm_limit=tenant.end_user_rpm_limit,
            end_user_tpm_limit=tenant.end_user_tpm_limit,
        )
        for tenant in Tenant.objects.all()
    }
    rows = (
        ModelDeployment.objects.filter(enabled=True)
        .select_related("secret_reference__connection")
        .order_by("priority", "id")
    )
    deployments = {row.pk: _deployment_entry(row) for row in rows}
    by_name: dict[tuple[int | None, str], list[DeploymentEntry]] = {}
    for entry in deployments.values():
        by_name.setdefault((entry.tenant_id, entry.name), []).append(entry)
    rules = _rule_entries()
    global_rules = tuple(rule for rule in rules if rule.tenant_id is None)
    own: dict[int, list[RuleEntry]] = {}
    for rule in rules:
        if rule.tenant_id is not None:
            own.setdefault(rule.tenant_id, []).append(rule)
    return Snapshot(
        version=version,
        built_at=time.monotonic(),
        keys_by_prefix=keys,
        tenants=tenants,
        deployments=deployments,
        by_name={name: tuple(entries) for name, entries in by_name.items()},
        profiles=_profile_entries(),
        # A tenant's rule wins a priority tie with a global one.
        rules_by_tenant={
            tenant_id: tuple(
                sorted(
                    [*entries, *global_rules], key=lambda r: (r.priority, r.tenant_id is None, r.id)
                )
            )
            for tenant_id, entries in own.items()
        },
        global_rules=global_rules,
        **_experiment_entries(),
        budgets_by_tenant=_budget_entries(),
    )


def _budget_entries() -> dict[int, tuple[BudgetEntry, ...]]:
    from budgets.models import Budget
    from budgets.selectors import budget_target

    by_tenant: dict[int, list[BudgetEntry]] = {}
    for row in Budget.objects.filter(enabled=True).order_by("id"):
        target = budget_target(row)
        by_tenant.setdefault(row.tenant_id, []).append(
            BudgetEntry(
                id=row.pk,
                tenant_id=row.tenant_id,
                name=row.name,
                scope=row.scope,
                target=target,
                limit=row.amount_usd,
                period=row.period,
                hard=row.hard,
                created_at=row.created_at,
            )
        )
    return {tenant: tuple(entries) for tenant, entries in by_tenant.items()}


def _experiment_entries() -> dict[str, Any]:
    by_rule: dict[tuple[int | None, int], ExperimentEntry] = {}
    by_task: dict[tuple[int | None, str], ExperimentEntry] = {}
    live = Q(status=ExperimentStatus.RUNNING) | (
        Q(status=ExperimentStatus.COMPLETED) & ~Q(winner="")
    )
    # Oldest first, so that if two ever target the same traffic the newest one wins.
    rows = Experiment.objects.filter(live).prefetch_related("variants").order_by("started_at", "id")
    for row in rows:
        entry = ExperimentEntry(
            id=row.pk,
            tenant_id=row.tenant_id,
            name=row.name,
            task_type=row.task_type,
            rule_id=row.rule_id,
            variants=tuple(
                VariantEntry(v.key, v.model, v.weight, tuple(sorted(v.params.items())))
                for v in row.variants.all()
            ),
            winner=row.winner if row.status == ExperimentStatus.COMPLETED else "",
        )
        if entry.rule_id is not None:
            by_rule[(entry.tenant_id, entry.rule_id)] = entry
        else:
            by_task[(entry.tenant_id, entry.task_type)] = entry
    return {"experiments_by_rule": by_rule, "experiments_by_task": by_task}


def _profile_entries() -> dict[tuple[int | None, str], ProfileEntry]:
    return {
        (row.tenant_id, row.name): ProfileEntry(
            id=row.pk,
            tenant_id=row.tenant_id,
            name=row.name,
            description=row.description,
            candidates=tuple((c["model"], int(c.get("weight", 1))) for c in row.candidates),
            strategy=row.strategy,
            fallbacks=tuple(row.fallbacks),
            required_capabilities=frozenset(row.required_capabilities),
            defaults=tuple(sorted(row.defaults.items())),
            cache_ttl_s=row.cache_ttl_s,
        )
        for row in TaskProfile.objects.filter(enabled=True)
    }


def _rule_entries() -> list[RuleEntry]:
    entries = []
    for row in RoutingRule.objects.filter(enabled=True).order_by("priority", "id"):
        action = row.action
        entries.append(
            RuleEntry(
                id=row.pk,
                tenant_id=row.tenant_id,
                name=row.name,
                priority=row.priority,
                predicate=compile_condition(row.condition),
                description=describe(row.condition),
                task_profile=action.get("task_profile"),
                models=tuple(action.get("models", ())),
                strategy=action.get("strategy", "priority"),
            )
        )
    return entries


def _build_and_release(version: str) -> Snapshot:
    """Build, then close the connection: rebuilds are rare, and the gateway's fast path runs
    outside Django's request cycle, which would otherwise be what closes it."""
    try:
        return snapshot_build(version)
    finally:
        if not connection.in_atomic_block:  # never inside a caller's transaction (tests)
            close_old_connections()
            connection.close()


class SnapshotHolder:
    """Per-process holder; `get()` is called on every gateway request.

    One refresh at a time per event loop: while the version check (and, if the version
    changed, the rebuild) runs, concurrent callers wait for its result instead of serving the
    old snapshot — otherwise a burst right after a key was created would see it missing.
    """

    def __init__(self) -> None:
        self._snapshot: Snapshot | None = None
        self._next_check = 0.0
        self._stale = False
        self._inflight: tuple[asyncio.AbstractEventLoop, asyncio.Task[Snapshot]] | None = None

    async def get(self) -> Snapshot:
        snapshot = self._snapshot
        if snapshot is not None and time.monotonic() < self._next_check:
            return snapshot
        loop = asyncio.get_running_loop()
        inflight = self._inflight
        if inflight is None or inflight[0] is not loop or inflight[1].done():
            inflight = (loop, loop.create_task(self._refresh()))
            self._inflight = inflight
        return await asyncio.shield(inflight[1])

    async def _refresh(self) -> Snapshot:
        now = time.monotonic()
        snapshot = self._snapshot
        version = await self._version(snapshot)
        stale, self._stale = self._stale, False
        if (
            snapshot is None
            or stale
            or version != snapshot.version
            or now - snapshot.built_at > FULL_REFRESH_S
        ):
            snapshot = await sync_to_async(_build_and_release)(version)
            self._snapshot = snapshot
        self._next_check = time.monotonic() + settings.GATEWAY_SNAPSHOT_CHECK_S
        return snapshot

    async def _version(self, current: Snapshot | None) -> str:
        try:
            raw = await redis_async().get(CONFIG_VERSION_KEY)
        except Exception:
            # Without Redis no change can be announced; keep serving the snapshot we have.
            logger.warning("config version unavailable; keeping the current snapshot")
            return current.version if current is not None else "unknown"
        if not raw:
            return "0"
        return raw.decode() if isinstance(raw, bytes) else str(raw)

    def invalidate(self) -> None:
        """Rebuild on the next call: this process just changed the configuration."""
        self._next_check = 0.0
        self._stale = True


snapshot_holder = SnapshotHolder()
