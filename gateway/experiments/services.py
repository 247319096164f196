"""Writes to A/B experiments: create and edit drafts, start, stop, promote; auto-promotion.

Variants and the target are fixed once an experiment has started: changing a weight mid-run
would move users between variants and mix their results. Every change is audited and
announced to the gateway processes (config version), which route by the new state within
a second.
"""

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from gateway.models import (
    Experiment,
    ExperimentStatus,
    ModelDeployment,
    Variant,
    validate_variant_params,
)
from switchboard.config_version import config_changed
from tenants.audit import AuditContext, audit_record, audit_snapshot
from tenants.models import Tenant

EXPERIMENT_FIELDS = [
    "name",
    "description",
    "task_type",
    "rule",
    "status",
    "primary_metric",
    "confidence_level",
    "min_samples",
    "auto_promote",
    "winner",
]
# What may change after the start: not the target, not the variants.
RUNNING_EDITABLE = frozenset({"name", "description", "primary_metric", "confidence_level",
                              "min_samples", "auto_promote"})  # fmt: skip
MAX_VARIANTS = 10


def _snapshot(experiment: Experiment) -> dict[str, Any]:
    data = audit_snapshot(experiment, EXPERIMENT_FIELDS)
    data["variants"] = [
        {"key": v.key, "model": v.model, "weight": v.weight, "params": v.params}
        for v in experiment.variants.all()
    ]
    return data


def _variants_build(experiment: Experiment, items: list[dict[str, Any]]) -> list[Variant]:
    if not isinstance(items, list) or not 2 <= len(items) <= MAX_VARIANTS:
        raise ValidationError({"variants": f"Give 2 to {MAX_VARIANTS} variants."})
    variants, errors = [], {}
    for index, item in enumerate(items):
        variant = Variant(experiment=experiment, position=index, **item)
        try:
            variant.full_clean(exclude=["experiment"], validate_unique=False)
            validate_variant_params(variant.params)
        except ValidationError as exc:
            errors[f"variants[{index}]"] = exc.messages
        variants.append(variant)
    if errors:
        raise ValidationError(errors)
    keys = [v.key for v in variants]
    if len(set(keys)) != len(keys):
        raise ValidationError({"variants": "Variant keys must be unique."})
    if sum(v.weight for v in variants) <= 0:
        raise ValidationError({"variants": "At least one variant needs a positive weight."})
    visible = set(
        ModelDeployment.objects.filter(
            Q(tenant__isnull=True) | Q(tenant_id=experiment.tenant_id),
            name__in={v.model for v in variants},
        ).values_list("name", flat=True)
    )
    missing = sorted({v.model for v in variants} - visible)
    if missing:
        raise ValidationError({"variants": f"No deployment named {', '.join(missing)}."})
    return variants


def _save(
    *, context: AuditContext, experiment: Experiment, action: str,
    before: dict[str, Any] | None, variants: list[dict[str, Any]] | None = None,
) -> Experiment:  # fmt: skip
    experiment.full_clean()
    experiment.save()
    if variants is not None:
        built = _variants_build(experiment, variants)
        experiment.variants.all().delete()
        Variant.objects.bulk_create(built)
    audit_record(context=context, tenant=experiment.tenant, action=action, obj=experiment,
                 before=before, after=_snapshot(experiment))  # fmt: skip
    config_changed()
    return experiment


@transaction.atomic
def experiment_create(
    *, context: AuditContext, tenant: Tenant | None, fields: dict[str, Any],
    variants: list[dict[str, Any]],
) -> Experiment:  # fmt: skip
    fields = {name: value for name, value in fields.items() if name not in ("status", "winner")}
    experiment = Experiment(tenant=tenant, **fields)
    return _save(context=context, experiment=experiment, action="experiment.create",
                 before=None, variants=variants)  # fmt: skip


def _locked(experiment: Experiment) -> Experiment:
    return Experiment.objects.select_for_update().get(pk=experiment.pk)


@transaction.atomic
def experiment_update(
    *, context: AuditContext, experiment: Experiment, fields: dict[str, Any],
    variants: list[dict[str, Any]] | None = None,
) -> Experiment:  # fmt: skip
    experiment = _locked(experiment)
    if experiment.status != ExperimentStatus.DRAFT:
        frozen = sorted(set(fields) - RUNNING_EDITABLE) + (["variants"] if variants else [])
        if frozen:
            raise ValidationError(
                f"{', '.join(frozen)} cannot change once the experiment has started."
            )
    before = _snapshot(experiment)
    for name, value in fields.items():
        if name not in ("status", "winner"):
            setattr(experiment, name, value)
    return _save(context=context, experiment=experiment, action="experiment.update",
                 before=before, variants=variants)  # fmt: skip


@transaction.atomic
def experiment_delete(*, context: AuditContext, experiment: Experiment) -> None:
    experiment = _locked(experiment)
    if experiment.status == ExperimentStatus.RUNNING:
        raise ValidationError("Stop the experiment before deleting it.")
    audit_record(context=context, tenant=experiment.tenant, action="experiment.delete",
                 obj=experiment, before=_snapshot(experiment))  # fmt: skip
    experiment.delete()
    config_changed()


@transaction.atomic
def experiment_start(*, context: AuditContext, experiment: Experiment) -> Experiment:
    experiment = _locked(experiment)
    if experiment.status != ExperimentStatus.DRAFT:
        raise ValidationError(f"Only a draft can start; this experiment is {experiment.status}.")
    _variants_build(experiment, [
        {"key": v.key, "model": v.model, "weight": v.weight, "params": v.params}
        for v in experiment.variants.all()
    ])  # fmt: skip  # the models may have gone since the draft was saved
    same_target = Experiment.objects.filter(status=ExperimentStatus.RUNNING).exclude(
        pk=experiment.pk
    )
    if experiment.tenant_id is None:
        same_target = same_target.filter(tenant__isnull=True)
    else:
        same_target = same_target.filter(tenant_id=experiment.tenant_id)
    if experiment.rule_id is not None:
        same_target = same_target.filter(rule_id=experiment.rule_id)
    else:
        same_target = same_target.filter(task_type=experiment.task_type)
    clash = same_target.first()
    if clash is not None:
        raise ValidationError(f"Experiment '{clash.name}' is already running on this traffic.")
    before = _snapshot(experiment)
    experiment.status, experiment.started_at = ExperimentStatus.RUNNING, timezone.now()
    return _save(context=context, experiment=experiment, action="experiment.start",
                 before=before)  # fmt: skip


@transaction.atomic
def experiment_stop(*, context: AuditContext, experiment: Experiment) -> Experiment:
    experiment = _locked(experiment)
    if experiment.status != ExperimentStatus.RUNNING:
        raise ValidationError(f"Only a running experiment can stop; it is {experiment.status}.")
    before = _snapshot(experiment)
    experiment.status, experiment.ended_at = ExperimentStatus.STOPPED, timezone.now()
    return _save(context=context, experiment=experiment, action="experiment.stop",
                 before=before)  # fmt: skip


@transaction.atomic
def experiment_promote(
    *, context: AuditContext, experiment: Experiment, variant: str, automatic: bool = False
) -> Experiment:
    """Send all of the experiment's traffic to one variant from now on."""
    experiment = _locked(experiment)
    if experiment.status not in (ExperimentStatus.RUNNING, ExperimentStatus.STOPPED):
        raise ValidationError(f"A {experiment.status} experiment cannot be promoted.")
    if not experiment.variants.filter(key=variant).exists():
        raise ValidationError({"variant": f"No variant '{variant}' in this experiment."})
    before = _snapshot(experiment)
    experiment.status, experiment.winner = ExperimentStatus.COMPLETED, variant
    experiment.ended_at = experiment.ended_at or timezone.now()
    experiment.promoted_by = "auto" if automatic else "manual"
    return _save(context=context, experiment=experiment, action="experiment.promote",
                 before=before)  # fmt: skip


def experiments_auto_promote() -> list[tuple[int, str]]:
    """Promote the winner of every running auto-promote experiment that has one."""
    from gateway.experiments.selectors import experiment_results

    promoted = []
    context = AuditContext.system("experiments.auto_promote")
    for experiment in Experiment.objects.filter(
        status=ExperimentStatus.RUNNING, auto_promote=True
    ).select_related("tenant"):
        winner = experiment_results(experiment)["winner"]
        if winner:
            experiment_promote(context=context, experiment=experiment, variant=winner,
                               automatic=True)  # fmt: skip
            promoted.append((experiment.pk, winner))
    return promoted
