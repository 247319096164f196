"""Every write to tenants, teams, members, API keys and management tokens."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Model
from django.utils import timezone

from switchboard.config_version import config_changed
from tenants.audit import AuditContext, audit_record, audit_snapshot
from tenants.credentials import API_KEY_KIND, MANAGEMENT_TOKEN_KIND, credential_issue
from tenants.models import (
    ApiKey,
    AuditEvent,
    ManagementToken,
    Membership,
    Team,
    Tenant,
    UserTier,
)
from tenants.roles import Role, role_can_grant

TENANT_FIELDS = ["slug", "name", "tier", "status", "time_zone"]
TEAM_FIELDS = ["slug", "name", "description"]
MEMBERSHIP_FIELDS = ["user", "role"]
API_KEY_FIELDS = [
    "name",
    "team",
    "prefix",
    "expires_at",
    "revoked_at",
    "allowed_models",
    "allowed_task_types",
    "max_user_tier",
    "rpm_limit",
    "tpm_limit",
    "max_concurrency",
]
API_KEY_EDITABLE = frozenset(API_KEY_FIELDS) - {"prefix", "revoked_at"}
MANAGEMENT_TOKEN_FIELDS = ["name", "prefix", "expires_at", "revoked_at"]


def _save(obj: Model) -> None:
    obj.full_clean()
    obj.save()
    # Tenants, teams, members and keys are all read by the gateway snapshot or the console.
    config_changed()


def _apply(obj: Model, fields: dict[str, Any], allowed: frozenset[str]) -> None:
    unknown = set(fields) - allowed
    if unknown:
        raise ValidationError({name: "This field cannot be changed." for name in sorted(unknown)})
    for name, value in fields.items():
        setattr(obj, name, value)


# --- Tenants --------------------------------------------------------------------------------


@transaction.atomic
def tenant_create(
    *,
    context: AuditContext,
    slug: str,
    name: str,
    tier: str = UserTier.STANDARD,
    time_zone: str = "UTC",
    owner: User | None = None,
) -> Tenant:
    if Tenant.objects.filter(slug=slug).exists():
        raise ValidationError({"slug": f"A tenant with slug {slug!r} already exists."})
    tenant = Tenant(slug=slug, name=name, tier=tier, time_zone=time_zone)
    _save(tenant)
    audit_record(
        context=context,
        tenant=tenant,
        action="tenant.create",
        obj=tenant,
        after=audit_snapshot(tenant, TENANT_FIELDS),
    )
    if owner is not None:
        membership_create(context=context, tenant=tenant, user=owner, role=Role.OWNER)
    return tenant


@transaction.atomic
def tenant_update(*, context: AuditContext, tenant: Tenant, fields: dict[str, Any]) -> Tenant:
    before = audit_snapshot(tenant, TENANT_FIELDS)
    _apply(tenant, fields, frozenset({"name", "tier", "status", "time_zone"}))
    _save(tenant)
    audit_record(
        context=context,
        tenant=tenant,
        action="tenant.update",
        obj=tenant,
        before=before,
        after=audit_snapshot(tenant, TENANT_FIELDS),
    )
    return tenant


# --- Teams ----------------------------------------------------------------------------------


@transaction.atomic
def team_create(
    *, context: AuditContext, tenant: Tenant, slug: str, name: str, description: str = ""
) -> Team:
    if Team.objects.filter(tenant=tenant, slug=slug).exists():
        raise ValidationError({"slug": f"A team with slug {slug!r} already exists."})
    team = Team(tenant=tenant, slug=slug, name=name, description=description)
    _save(team)
    audit_record(
        context=context,
        tenant=tenant,
        action="team.create",
        obj=team,
        after=audit_snapshot(team, TEAM_FIELDS),
    )
    return team


@transaction.atomic
def team_update(*, context: AuditContext, team: Team, fields: dict[str, Any]) -> Team:
    before = audit_snapshot(team, TEAM_FIELDS)
    new_slug = fields.get("slug", team.slug)
    if (
        new_slug != team.slug
        and Team.objects.filter(tenant_id=team.tenant_id, slug=new_slug).exists()
    ):
        raise ValidationError({"slug": f"A team with slug {new_slug!r} already exists."})
    _apply(team, fields, frozenset(TEAM_FIELDS))
    _save(team)
    audit_record(
        context=context,
        tenant=team.tenant,
        action="team.update",
        obj=team,
        before=before,
        after=audit_snapshot(team, TEAM_FIELDS),
    )
    return team


@transaction.atomic
def team_delete(*, context: AuditContext, team: Team) -> None:
    before = audit_snapshot(team, TEAM_FIELDS)
    audit_record(context=context, tenant=team.tenant, action="team.delete", obj=team, before=before)
    team.delete()
    config_changed()


# --- Memberships ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Actor:
    """The acting user and the role they hold in the tenant being changed."""

    user: User
    role: str


def _ensure_can_grant(actor: Actor | None, role: str) -> None:
    if actor is not None and not role_can_grant(actor.role, role):
        raise PermissionDenied(f"Your role ({actor.role}) cannot grant the {role} role.")


def _ensure_not_self(actor: Actor | None, membership: Membership) -> None:
    if actor is not None and membership.user_id == actor.user.pk:
        raise PermissionDenied("You cannot change your own membership role.")


def _ensure_owner_remains(membership: Membership) -> None:
    others = Membership.objects.filter(tenant_id=membership.tenant_id, role=Role.OWNER).exclude(
        pk=membership.pk
    )
    if membership.role == Role.OWNER and not others.exists():
        raise ValidationError({"role": "A tenant must keep at least one owner."})


@transaction.atomic
def membership_create(
    *,
    context: AuditContext,
    tenant: Tenant,
    user: User,
    role: str,
    actor: Actor | None = None,
) -> Membership:
    _ensure_can_grant(actor, role)
    if Membership.objects.filter(tenant=tenant, user=user).exists():
        raise ValidationError({"user": "This user is already a member of the tenant."})
    membership = Membership(tenant=tenant, user=user, role=role)
    _save(membership)
    audit_record(
        context=context,
        tenant=tenant,
        action="membership.create",
        obj=membership,
        after=audit_snapshot(membership, MEMBERSHIP_FIELDS),
    )
    return membership


@transaction.atomic
def membership_update(
    *,
    context: AuditContext,
    membership: Membership,
    role: str | None = None,
    teams: list[Team] | None = None,
    actor: Actor | None = None,
) -> Membership:
    before = audit_snapshot(membership, MEMBERSHIP_FIELDS)
    before["teams"] = sorted(membership.teams.values_list("id", flat=True))
    if role is not None and role != membership.role:
        _ensure_not_self(actor, membership)
        _ensure_can_grant(actor, role)
        if membership.role == Role.OWNER:
            _ensure_can_grant(actor, Role.OWNER)
            _ensure_owner_remains(membership)
        membership.role = role
        _save(membership)
    if teams is not None:
        if any(team.tenant_id != membership.tenant_id for team in teams):
            raise ValidationError({"teams": "Teams must belong to the membership's tenant."})
        membership.teams.set(teams)
    after = audit_snapshot(membership, MEMBERSHIP_FIELDS)
    after["teams"] = sorted(team.pk for team in teams) if teams is not None else before["teams"]
    audit_record(
        context=context,
        tenant=membership.tenant,
        action="membership.update",
        obj=membership,
        before=before,
        after=after,
    )
    return membership


@transaction.atomic
def membership_delete(
    *, context: AuditContext, membership: Membership, actor: Actor | None = None
) -> None:
    if membership.role == Role.OWNER:
        _ensure_can_grant(actor, Role.OWNER)
    _ensure_owner_remains(membership)
    audit_record(
        context=context,
        tenant=membership.tenant,
        action="membership.delete",
        obj=membership,
        before=audit_snapshot(membership, MEMBERSHIP_FIELDS),
    )
    membership.delete()


# --- API keys -------------------------------------------------------------------------------


def _validate_api_key_fields(tenant: Tenant, fields: dict[str, Any]) -> None:
    team = fields.get("team")
    if team is not None and team.tenant_id != tenant.pk:
        raise ValidationError({"team": "The team must belong to the key's tenant."})
    expires_at = fields.get("expires_at")
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError({"expires_at": "The expiry must be in the future."})
    for name in ("allowed_models", "allowed_task_types"):
        value = fields.get(name)
        if value is not None and (
            not isinstance(value, list) or not all(isinstance(v, str) and v for v in value)
        ):
            raise ValidationError({name: "Give a list of non-empty names."})


@transaction.atomic
def api_key_create(
    *,
    context: AuditContext,
    tenant: Tenant,
    name: str,
    team: Team | None = None,
    expires_at: datetime | None = None,
    allowed_models: list[str] | None = None,
    allowed_task_types: list[str] | None = None,
    max_user_tier: str = "",
    rpm_limit: int | None = None,
    tpm_limit: int | None = None,
    max_concurrency: int | None = None,
    rotated_from: ApiKey | None = None,
) -> tuple[ApiKey, str]:
    """Create a key; returns it with its plaintext, which is never stored or shown again."""
    fields: dict[str, Any] = {
        "name": name,
        "team": team,
        "expires_at": expires_at,
        "allowed_models": allowed_models or [],
        "allowed_task_types": allowed_task_types or [],
        "max_user_tier": max_user_tier,
        "rpm_limit": rpm_limit,
        "tpm_limit": tpm_limit,
        "max_concurrency": max_concurrency,
    }
    _validate_api_key_fields(tenant, fields)
    issued = credential_issue(API_KEY_KIND)
    api_key = ApiKey(
        tenant=tenant,
        prefix=issued.prefix,
        secret_hmac=issued.secret_hmac,
        created_by=context.user if context.user is not None and context.user.pk else None,
        rotated_from=rotated_from,
        **fields,
    )
    _save(api_key)
    audit_record(
        context=context,
        tenant=tenant,
        action="api_key.create",
        obj=api_key,
        after=audit_snapshot(api_key, API_KEY_FIELDS),
    )
    return api_key, issued.plaintext


@transaction.atomic
def api_key_update(*, context: AuditContext, api_key: ApiKey, fields: dict[str, Any]) -> ApiKey:
    if api_key.revoked_at is not None:
        raise ValidationError("A revoked key cannot be changed.")
    _validate_api_key_fields(api_key.tenant, fields)
    before = audit_snapshot(api_key, API_KEY_FIELDS)
    _apply(api_key, fields, API_KEY_EDITABLE)
    _save(api_key)
    audit_record(
        context=context,
        tenant=api_key.tenant,
        action="api_key.update",
        obj=api_key,
        before=before,
        after=audit_snapshot(api_key, API_KEY_FIELDS),
    )
    return api_key


@transaction.atomic
def api_key_revoke(*, context: AuditContext, api_key: ApiKey, at: datetime | None = None) -> ApiKey:
    """Revoke now (or at `at`, for a rotation grace period); revoking twice changes nothing."""
    locked = ApiKey.objects.select_for_update().get(pk=api_key.pk)
    when = at or timezone.now()
    if locked.revoked_at is not None and locked.revoked_at <= when:
        return locked
    before = audit_snapshot(locked, API_KEY_FIELDS)
    locked.revoked_at = when
    locked.save(update_fields=["revoked_at"])
    config_changed()
    audit_record(
        context=context,
        tenant=locked.tenant,
        action="api_key.revoke",
        obj=locked,
        before=before,
        after=audit_snapshot(locked, API_KEY_FIELDS),
    )
    return locked


MAX_ROTATION_GRACE = timedelta(days=7)


@transaction.atomic
def api_key_rotate(
    *, context: AuditContext, api_key: ApiKey, grace: timedelta = timedelta(0)
) -> tuple[ApiKey, str]:
    """Issue a replacement with the same settings; the old key stops after `grace`."""
    locked = ApiKey.objects.select_for_update().get(pk=api_key.pk)
    if not locked.is_usable():
        raise ValidationError("Only an active key can be rotated.")
    if grace < timedelta(0) or grace > MAX_ROTATION_GRACE:
        raise ValidationError({"grace_seconds": "The grace period must be 0 to 7 days."})
    new_key, plaintext = api_key_create(
        context=context,
        tenant=locked.tenant,
        name=locked.name,
        team=locked.team,
        expires_at=locked.expires_at,
        allowed_models=list(locked.allowed_models),
        allowed_task_types=list(locked.allowed_task_types),
        max_user_tier=locked.max_user_tier,
        rpm_limit=locked.rpm_limit,
        tpm_limit=locked.tpm_limit,
        max_concurrency=locked.max_concurrency,
        rotated_from=locked,
    )
    api_key_revoke(context=context, api_key=locked, at=timezone.now() + grace)
    return new_key, plaintext


# --- Users and management tokens --------------------------------------------------------------


@transaction.atomic
def user_create(
    *,
    context: AuditContext,
    username: str,
    email: str = "",
    password: str | None = None,
    is_staff: bool = False,
) -> User:
    user_model = get_user_model()
    if user_model.objects.filter(username=username).exists():
        raise ValidationError({"username": f"User {username!r} already exists."})
    user = user_model(username=username, email=email, is_staff=is_staff, is_superuser=is_staff)
    if password:
        from django.contrib.auth.password_validation import validate_password

        validate_password(password, user)
        user.set_password(password)
    else:
        user.set_unusable_password()
    _save(user)
    audit_record(
        context=context,
        tenant=None,
        action="user.create",
        obj=user,
        after={"username": username, "email": email, "is_staff": is_staff},
    )
    return user


@transaction.atomic
def user_set_password(*, context: AuditContext, user: User, password: str) -> None:
    from django.contrib.auth.password_validation import validate_password

    validate_password(password, user)
    user.set_password(password)
    user.save(update_fields=["password"])
    audit_record(context=context, tenant=None, action="user.set_password", obj=user)


@transaction.atomic
def management_token_create(
    *,
    context: AuditContext,
    user: User,
    name: str,
    expires_at: datetime | None = None,
) -> tuple[ManagementToken, str]:
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError({"expires_at": "The expiry must be in the future."})
    issued = credential_issue(MANAGEMENT_TOKEN_KIND)
    token = ManagementToken(
        user=user,
        name=name,
        prefix=issued.prefix,
        secret_hmac=issued.secret_hmac,
        expires_at=expires_at,
    )
    _save(token)
    audit_record(
        context=context,
        tenant=None,
        action="management_token.create",
        obj=token,
        after=audit_snapshot(token, MANAGEMENT_TOKEN_FIELDS),
    )
    return token, issued.plaintext


@transaction.atomic
def management_token_revoke(*, context: AuditContext, token: ManagementToken) -> ManagementToken:
    if token.revoked_at is not None:
        return token
    before = audit_snapshot(token, MANAGEMENT_TOKEN_FIELDS)
    token.revoked_at = timezone.now()
    token.save(update_fields=["revoked_at"])
    audit_record(
        context=context,
        tenant=None,
        action="management_token.revoke",
        obj=token,
        before=before,
        after=audit_snapshot(token, MANAGEMENT_TOKEN_FIELDS),
    )
    return token


def audit_events_prune(*, older_than: datetime) -> int:
    """Delete audit rows past retention; returns how many went."""
    deleted, _ = AuditEvent.objects.filter(created_at__lt=older_than).delete()
    return deleted
