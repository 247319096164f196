"""Writes to budgets: validated, audited, announced to the gateway (config version)."""

from typing import Any

from django.db import transaction

from budgets.models import Budget
from switchboard.config_version import config_changed
from tenants.audit import AuditContext, audit_record, audit_snapshot, audited_save
from tenants.models import Tenant

BUDGET_FIELDS = [
    "name",
    "scope",
    "team",
    "api_key",
    "end_user",
    "deployment",
    "amount_usd",
    "period",
    "thresholds",
    "hard",
    "notify_emails",
    "enabled",
]


def _full_clean(budget: Budget) -> None:
    budget.full_clean()


@transaction.atomic
def budget_create(*, context: AuditContext, tenant: Tenant, fields: dict[str, Any]) -> Budget:
    budget = audited_save(
        context=context, obj=Budget(tenant=tenant, **fields), fields=BUDGET_FIELDS,
        action="budget.create", validate=_full_clean,
    )  # fmt: skip
    config_changed()
    return budget


@transaction.atomic
def budget_update(*, context: AuditContext, budget: Budget, fields: dict[str, Any]) -> Budget:
    """Scope and period are part of what a budget is; changing them starts a new counter."""
    before = audit_snapshot(budget, BUDGET_FIELDS)
    for name, value in fields.items():
        setattr(budget, name, value)
    budget = audited_save(context=context, obj=budget, fields=BUDGET_FIELDS,
                          action="budget.update", validate=_full_clean, before=before)  # fmt: skip
    config_changed()
    return budget


@transaction.atomic
def budget_delete(*, context: AuditContext, budget: Budget) -> None:
    audit_record(context=context, tenant=budget.tenant, action="budget.delete", obj=budget,
                 before=audit_snapshot(budget, BUDGET_FIELDS))  # fmt: skip
    budget.delete()
    config_changed()
