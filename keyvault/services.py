"""Writes to vault connections and secret references, and the connection test action."""

import json
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from keyvault.backends.base import SecretFetchError
from keyvault.models import Backend, SecretReference, VaultConnection
from keyvault.resolver import SecretRef, backend_module, build_backend, secret_resolver
from switchboard.config_version import config_changed
from tenants.audit import AuditContext, audit_record, audit_snapshot, audited_save
from tenants.models import Tenant

CONNECTION_FIELDS = ["name", "backend", "settings", "enabled"]
REFERENCE_FIELDS = ["name", "connection", "secret_name", "version", "field"]


def _validate_connection(connection: VaultConnection) -> None:
    connection.full_clean()
    if connection.backend == Backend.ENV and not settings.KEYVAULT_ALLOW_ENV_BACKEND:
        raise ValidationError({"backend": "The env backend is disabled on this platform."})
    if not isinstance(connection.settings, dict):
        raise ValidationError({"settings": "Give an object of settings."})
    try:
        connection.settings = backend_module(connection.backend).validate_settings(
            connection.settings
        )
    except ValueError as exc:
        raise ValidationError({"settings": str(exc)}) from None


def _validate_reference(reference: SecretReference) -> None:
    reference.full_clean()
    # Same owner only: a tenant reference on a platform connection could read any secret
    # the platform's vault credentials can reach.
    if reference.connection.tenant_id != reference.tenant_id:
        raise ValidationError({"connection": "Use a connection owned by the same tenant."})
    if reference.connection.backend == Backend.ENV and not settings.KEYVAULT_ALLOW_ENV_BACKEND:
        raise ValidationError({"connection": "The env backend is disabled on this platform."})


def _changed() -> None:
    config_changed()
    secret_resolver.clear()  # settings or targets may have changed; refetch lazily


def _save(**kwargs: Any) -> Any:
    saved = audited_save(**kwargs)
    _changed()
    return saved


@transaction.atomic
def vault_connection_create(
    *, context: AuditContext, tenant: Tenant | None, fields: dict[str, Any]
) -> VaultConnection:
    return _save(context=context, obj=VaultConnection(tenant=tenant, **fields),
                 fields=CONNECTION_FIELDS, action="vault_connection.create",
                 validate=_validate_connection)  # fmt: skip


@transaction.atomic
def vault_connection_update(
    *, context: AuditContext, connection: VaultConnection, fields: dict[str, Any]
) -> VaultConnection:
    before = audit_snapshot(connection, CONNECTION_FIELDS)
    for name, value in fields.items():
        setattr(connection, name, value)
    return _save(context=context, obj=connection, fields=CONNECTION_FIELDS,
                 action="vault_connection.update", validate=_validate_connection,
                 before=before)  # fmt: skip


@transaction.atomic
def vault_connection_delete(*, context: AuditContext, connection: VaultConnection) -> None:
    if connection.references.exists():
        raise ValidationError(
            "Delete or move the secret references that use this connection first."
        )
    audit_record(context=context, tenant=connection.tenant, action="vault_connection.delete",
                 obj=connection, before=audit_snapshot(connection, CONNECTION_FIELDS))  # fmt: skip
    connection.delete()
    _changed()


@transaction.atomic
def secret_reference_create(
    *, context: AuditContext, tenant: Tenant | None, fields: dict[str, Any]
) -> SecretReference:
    return _save(context=context, obj=SecretReference(tenant=tenant, **fields),
                 fields=REFERENCE_FIELDS, action="secret_reference.create",
                 validate=_validate_reference)  # fmt: skip


@transaction.atomic
def secret_reference_update(
    *, context: AuditContext, reference: SecretReference, fields: dict[str, Any]
) -> SecretReference:
    before = audit_snapshot(reference, REFERENCE_FIELDS)
    for name, value in fields.items():
        setattr(reference, name, value)
    return _save(context=context, obj=reference, fields=REFERENCE_FIELDS,
                 action="secret_reference.update", validate=_validate_reference,
                 before=before)  # fmt: skip


@transaction.atomic
def secret_reference_delete(*, context: AuditContext, reference: SecretReference) -> None:
    if reference.deployments.exists():
        raise ValidationError("Deployments use this reference; point them elsewhere first.")
    audit_record(context=context, tenant=reference.tenant, action="secret_reference.delete",
                 obj=reference, before=audit_snapshot(reference, REFERENCE_FIELDS))  # fmt: skip
    reference.delete()
    _changed()


def secret_ref_for(reference: SecretReference) -> SecretRef:
    connection = reference.connection
    return SecretRef(
        id=reference.pk,
        connection_id=connection.pk,
        connection_name=connection.name,
        backend=connection.backend,
        settings_json=json.dumps(connection.settings, sort_keys=True),
        secret_name=reference.secret_name,
        version=reference.version,
        field=reference.field,
    )


@dataclass(frozen=True)
class TestOutcome:
    ok: bool
    latency_ms: float
    error: str | None = None
    message: str | None = None


def secret_reference_test(*, reference: SecretReference, accessor: str) -> TestOutcome:
    """Fetch once, bypassing the cache, and report ok or the error class — never the value."""
    from keyvault.resolver import record_access

    ref = secret_ref_for(reference)
    started = time.perf_counter()
    try:
        backend = build_backend(ref.backend, json.loads(ref.settings_json))
        backend.fetch(name=ref.secret_name, version=ref.pinned_version, field=ref.field or None)
    except SecretFetchError as exc:
        record_access(ref.id, outcome=str(exc.kind), accessor=accessor)
        return TestOutcome(False, _ms(started), error=str(exc.kind), message=exc.message)
    except Exception as exc:
        record_access(ref.id, outcome="unavailable", accessor=accessor)
        return TestOutcome(False, _ms(started), error="unavailable", message=type(exc).__name__)
    record_access(ref.id, outcome="ok", accessor=accessor)
    return TestOutcome(True, _ms(started))


def vault_connection_test(*, connection: VaultConnection) -> TestOutcome:
    """Prove the vault is reachable and our credentials work (reads no secret)."""
    started = time.perf_counter()
    try:
        build_backend(connection.backend, dict(connection.settings)).check()
    except SecretFetchError as exc:
        return TestOutcome(False, _ms(started), error=str(exc.kind), message=exc.message)
    except Exception as exc:
        return TestOutcome(False, _ms(started), error="unavailable", message=type(exc).__name__)
    return TestOutcome(True, _ms(started))


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)
