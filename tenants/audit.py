"""The audit trail: every mutating service writes one `AuditEvent` through `audit_record`."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from django.db import models
from django.http import HttpRequest

from tenants.models import AuditEvent, Tenant

# Field names whose values never enter an audit row, whatever model they belong to.
_SENSITIVE_FIELDS = frozenset(
    {"secret_hmac", "password", "token", "api_key", "key", "secret", "plaintext", "value"}
)
REDACTED = "[REDACTED]"


@dataclass(frozen=True, slots=True)
class AuditContext:
    """Who is acting, from where: passed to every mutating service."""

    user: User | None = None
    label: str = ""
    ip_address: str | None = None
    request_id: str = ""

    @classmethod
    def from_request(cls, request: HttpRequest) -> "AuditContext":
        user = request.user if not isinstance(request.user, AnonymousUser) else None
        return cls(
            user=user,
            label=getattr(request, "auth_label", "") or (user.get_username() if user else ""),
            ip_address=request.META.get("REMOTE_ADDR") or None,
            request_id=getattr(request, "request_id", ""),
        )

    @classmethod
    def system(cls, label: str) -> "AuditContext":
        """For commands and tasks that act without a logged-in user."""
        return cls(user=None, label=label)


def _json_safe(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, models.Model):
        return value.pk
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    return value


def audit_snapshot(obj: models.Model, fields: list[str]) -> dict[str, Any]:
    """The audited fields of an object, JSON-safe and with secrets redacted."""
    snapshot: dict[str, Any] = {}
    for name in fields:
        value = getattr(obj, f"{name}_id" if _is_fk(obj, name) else name)
        snapshot[name] = REDACTED if name in _SENSITIVE_FIELDS else _json_safe(value)
    return snapshot


def _is_fk(obj: models.Model, name: str) -> bool:
    try:
        field = obj._meta.get_field(name)
    except Exception:
        return False
    return isinstance(field, models.ForeignKey)


def _diff(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, Any]:
    if before is None:
        return {"after": after or {}}
    if after is None:
        return {"before": before}
    changed = [name for name in after if before.get(name) != after.get(name)]
    return {
        "before": {name: before.get(name) for name in changed},
        "after": {name: after[name] for name in changed},
    }


def audit_record(
    *,
    context: AuditContext,
    tenant: Tenant | None,
    action: str,
    obj: models.Model,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> AuditEvent:
    changes = _diff(before, after)
    if extra:
        changes["extra"] = {
            key: REDACTED if key in _SENSITIVE_FIELDS else _json_safe(value)
            for key, value in extra.items()
        }
    return AuditEvent.objects.create(
        tenant=tenant,
        actor=context.user if context.user is not None and context.user.pk else None,
        actor_label=context.label[:200],
        action=action,
        object_type=obj._meta.label_lower,
        object_id=str(obj.pk or ""),
        object_repr=str(obj)[:300],
        changes=changes,
        ip_address=context.ip_address,
        request_id=context.request_id[:64],
    )


def audited_save(
    *,
    context: AuditContext,
    obj: models.Model,
    fields: list[str],
    action: str,
    validate: Callable[[Any], None],
    before: dict[str, Any] | None = None,
) -> Any:
    """Validate, save and audit one object (the common shape of create and update services).

    `before` is the snapshot taken before the caller changed the object (None on create).
    """
    validate(obj)
    obj.save()
    audit_record(context=context, tenant=getattr(obj, "tenant", None), action=action, obj=obj,
                 before=before, after=audit_snapshot(obj, fields))  # fmt: skip
    return obj
