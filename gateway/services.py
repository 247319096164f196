"""Writes to model deployments: validated, audited, and announced to every gateway process."""

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from gateway.models import ModelDeployment, Provider, RoutingRule, TaskProfile
from gateway.netpolicy import EgressRefused, allowed_upstreams, validate_api_base
from gateway.runtime.snapshot import model_prices
from switchboard.config_version import config_changed
from tenants.audit import AuditContext, audit_record, audit_snapshot, audited_save
from tenants.models import Tenant

DEPLOYMENT_FIELDS = [
    "name",
    "provider",
    "litellm_model",
    "api_base",
    "api_version",
    "secret_reference",
    "api_key_env",
    "input_price_per_mtok",
    "output_price_per_mtok",
    "cached_input_price_per_mtok",
    "context_window",
    "max_output_tokens",
    "capabilities",
    "min_user_tier",
    "priority",
    "weight",
    "timeout_s",
    "fallbacks",
    "execution_path",
    "enabled",
]
EDITABLE = frozenset(DEPLOYMENT_FIELDS)


def _validate(deployment: ModelDeployment) -> None:
    deployment.full_clean()
    if deployment.api_base:
        try:
            deployment.api_base = validate_api_base(
                deployment.api_base, allowed=allowed_upstreams()
            )
        except EgressRefused as exc:
            raise ValidationError({"api_base": str(exc)}) from None
    needs_base = {Provider.AZURE, Provider.OPENAI_COMPATIBLE}
    if deployment.provider in needs_base and not deployment.api_base:
        raise ValidationError(
            {"api_base": f"A {deployment.provider} deployment needs an api_base."}
        )
    if deployment.provider == Provider.AZURE and not deployment.api_version:
        raise ValidationError({"api_version": "An Azure deployment needs an api_version."})
    _validate_key_source(deployment)
    if deployment.name in deployment.fallbacks:
        raise ValidationError({"fallbacks": "A model cannot fall back to itself."})
    _ensure_priced(deployment)


def _validate_key_source(deployment: ModelDeployment) -> None:
    reference = deployment.secret_reference
    # Same owner only: a tenant pointing a platform secret at its own api_base would receive
    # the platform's key.
    if reference is not None and reference.tenant_id != deployment.tenant_id:
        raise ValidationError(
            {"secret_reference": "Use a secret reference owned by the same tenant (or, for a "
             "global deployment, a global one)."}
        )  # fmt: skip
    if reference is not None and deployment.api_key_env:
        raise ValidationError({"api_key_env": "Use either a secret reference or api_key_env."})
    if deployment.api_key_env and not settings.KEYVAULT_ALLOW_ENV_BACKEND:
        raise ValidationError(
            {"api_key_env": "Keys from the environment are disabled; use a secret reference."}
        )


def _ensure_priced(deployment: ModelDeployment) -> None:
    """Finance must be able to trust every cost: a deployment whose price is unknown (not set
    and not in litellm's cost map) is refused instead of silently costing nothing."""
    known = model_prices(deployment.litellm_model)
    missing = [
        name
        for name, source in (
            ("input_price_per_mtok", "input_cost_per_token"),
            ("output_price_per_mtok", "output_cost_per_token"),
        )
        if getattr(deployment, name) is None and source not in known
    ]
    if missing:
        raise ValidationError(
            {
                missing[0]: f"No price is known for '{deployment.litellm_model}'; set "
                "input_price_per_mtok and output_price_per_mtok (0 is allowed)."
            }
        )


@transaction.atomic
def deployment_create(
    *, context: AuditContext, tenant: Tenant | None, fields: dict[str, Any]
) -> ModelDeployment:
    unknown = set(fields) - EDITABLE
    if unknown:
        raise ValidationError({name: "Unknown field." for name in sorted(unknown)})
    return _save_config(context=context, obj=ModelDeployment(tenant=tenant, **fields),
                        fields=DEPLOYMENT_FIELDS, action="deployment.create", before=None,
                        validate=_validate)  # fmt: skip


@transaction.atomic
def deployment_update(
    *, context: AuditContext, deployment: ModelDeployment, fields: dict[str, Any]
) -> ModelDeployment:
    unknown = set(fields) - EDITABLE
    if unknown:
        raise ValidationError({name: "Unknown field." for name in sorted(unknown)})
    before = audit_snapshot(deployment, DEPLOYMENT_FIELDS)
    for name, value in fields.items():
        setattr(deployment, name, value)
    return _save_config(context=context, obj=deployment, fields=DEPLOYMENT_FIELDS,
                        action="deployment.update", before=before, validate=_validate)  # fmt: skip


@transaction.atomic
def deployment_delete(*, context: AuditContext, deployment: ModelDeployment) -> None:
    audit_record(
        context=context,
        tenant=deployment.tenant,
        action="deployment.delete",
        obj=deployment,
        before=audit_snapshot(deployment, DEPLOYMENT_FIELDS),
    )
    deployment.delete()
    config_changed()


# --- Task profiles and routing rules ---------------------------------------------------------

PROFILE_FIELDS = [
    "name", "description", "candidates", "strategy", "fallbacks", "required_capabilities",
    "defaults", "cache_ttl_s", "guardrail_policy", "enabled",
]  # fmt: skip
RULE_FIELDS = ["name", "priority", "condition", "action", "enabled"]


def _validate_rule(rule: RoutingRule) -> None:
    rule.full_clean()
    _check_rule_target(rule)


def _check_rule_target(rule: RoutingRule) -> None:
    profile = rule.action.get("task_profile") if isinstance(rule.action, dict) else None
    if profile is None:
        return
    visible = TaskProfile.objects.filter(name=profile, tenant__in=[rule.tenant_id, None])
    if rule.tenant_id is None:
        visible = TaskProfile.objects.filter(name=profile, tenant__isnull=True)
    if not visible.exists():
        raise ValidationError({"action": f"No task profile named {profile!r}."})


def _full_clean(obj: Any) -> None:
    obj.full_clean()


def _save_config(
    *, context: AuditContext, obj: Any, fields: list[str], action: str,
    before: dict[str, Any] | None, validate: Callable[[Any], None] = _full_clean,
) -> Any:  # fmt: skip
    """Validate, save and audit a piece of gateway configuration, and announce the change."""
    saved = audited_save(context=context, obj=obj, fields=fields, action=action,
                         validate=validate, before=before)  # fmt: skip
    config_changed()
    return saved


@transaction.atomic
def task_profile_create(
    *, context: AuditContext, tenant: Tenant | None, fields: dict[str, Any]
) -> TaskProfile:
    profile = TaskProfile(tenant=tenant, **fields)
    return _save_config(context=context, obj=profile, fields=PROFILE_FIELDS,
                        action="task_profile.create", before=None)  # fmt: skip


@transaction.atomic
def task_profile_update(
    *, context: AuditContext, profile: TaskProfile, fields: dict[str, Any]
) -> TaskProfile:
    before = audit_snapshot(profile, PROFILE_FIELDS)
    for name, value in fields.items():
        setattr(profile, name, value)
    return _save_config(context=context, obj=profile, fields=PROFILE_FIELDS,
                        action="task_profile.update", before=before)  # fmt: skip


@transaction.atomic
def task_profile_delete(*, context: AuditContext, profile: TaskProfile) -> None:
    used = RoutingRule.objects.filter(action__task_profile=profile.name,
                                      tenant__in=[profile.tenant_id, None])  # fmt: skip
    if used.exists():
        raise ValidationError("Routing rules send traffic to this profile; change them first.")
    audit_record(context=context, tenant=profile.tenant, action="task_profile.delete",
                 obj=profile, before=audit_snapshot(profile, PROFILE_FIELDS))  # fmt: skip
    profile.delete()
    config_changed()


@transaction.atomic
def routing_rule_create(
    *, context: AuditContext, tenant: Tenant | None, fields: dict[str, Any]
) -> RoutingRule:
    return _save_config(context=context, obj=RoutingRule(tenant=tenant, **fields),
                        fields=RULE_FIELDS, action="routing_rule.create", before=None,
                        validate=_validate_rule)  # fmt: skip


@transaction.atomic
def routing_rule_update(
    *, context: AuditContext, rule: RoutingRule, fields: dict[str, Any]
) -> RoutingRule:
    before = audit_snapshot(rule, RULE_FIELDS)
    for name, value in fields.items():
        setattr(rule, name, value)
    return _save_config(context=context, obj=rule, fields=RULE_FIELDS,
                        action="routing_rule.update", before=before,
                        validate=_validate_rule)  # fmt: skip


@transaction.atomic
def routing_rule_delete(*, context: AuditContext, rule: RoutingRule) -> None:
    audit_record(context=context, tenant=rule.tenant, action="routing_rule.delete", obj=rule,
                 before=audit_snapshot(rule, RULE_FIELDS))  # fmt: skip
    rule.delete()
    config_changed()
