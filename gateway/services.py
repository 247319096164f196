"""Writes to model deployments: validated, audited, and announced to every gateway process."""

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from gateway.models import ModelDeployment, Provider
from gateway.netpolicy import EgressRefused, allowed_upstreams, validate_api_base
from gateway.runtime.snapshot import model_prices
from switchboard.config_version import config_changed
from tenants.audit import AuditContext, audit_record, audit_snapshot
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
    deployment = ModelDeployment(tenant=tenant, **fields)
    _validate(deployment)
    deployment.save()
    config_changed()
    audit_record(
        context=context,
        tenant=tenant,
        action="deployment.create",
        obj=deployment,
        after=audit_snapshot(deployment, DEPLOYMENT_FIELDS),
    )
    return deployment


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
    _validate(deployment)
    deployment.save()
    config_changed()
    audit_record(
        context=context,
        tenant=deployment.tenant,
        action="deployment.update",
        obj=deployment,
        before=before,
        after=audit_snapshot(deployment, DEPLOYMENT_FIELDS),
    )
    return deployment


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
