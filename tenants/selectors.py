"""Reads: tenant access for users, and credential authentication."""

import re
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import Case, CharField, Q, QuerySet, Value, When
from django.utils import timezone

from tenants.credentials import (
    API_KEY_KIND,
    MANAGEMENT_TOKEN_KIND,
    credential_matches,
    credential_parse,
)
from tenants.models import SLUG_PATTERN, ApiKey, ManagementToken, Membership, Tenant
from tenants.roles import Role

_SLUG = re.compile(SLUG_PATTERN)

# last_used_at is a hint for humans, so it is written at most once a minute per credential.
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class TenantAccess:
    """A user's view of one tenant: the tenant and the role they act with in it."""

    tenant: Tenant
    role: str
    is_platform_staff: bool


def is_platform_staff(user: User | AnonymousUser) -> bool:
    return bool(user.is_authenticated and getattr(user, "is_staff", False))


def tenant_list_for_user(user: User | AnonymousUser) -> QuerySet[Tenant]:
    """Every tenant for platform staff; the user's own tenants otherwise; none when anonymous."""
    if not user.is_authenticated:
        return Tenant.objects.none()
    if is_platform_staff(user):
        return Tenant.objects.order_by("slug")
    return Tenant.objects.filter(memberships__user=user).order_by("slug")


def tenant_access_for_user(user: User | AnonymousUser, slug: str) -> TenantAccess | None:
    """The user's access to the tenant named `slug`; None means "no such tenant" to them."""
    if not user.is_authenticated or not isinstance(slug, str) or not _SLUG.fullmatch(slug):
        return None
    tenant = Tenant.objects.filter(slug=slug).first()
    if tenant is None:
        return None
    if is_platform_staff(user):
        return TenantAccess(tenant=tenant, role=Role.OWNER, is_platform_staff=True)
    membership = Membership.objects.filter(tenant=tenant, user=user).only("role").first()
    if membership is None:
        return None
    return TenantAccess(tenant=tenant, role=membership.role, is_platform_staff=False)


@dataclass(frozen=True, slots=True)
class ApiKeyPrincipal:
    """An authenticated gateway caller: plain values only, safe to pass around the hot path."""

    key_id: int
    prefix: str
    name: str
    tenant_id: int
    tenant_slug: str
    team_id: int | None
    allowed_models: tuple[str, ...]
    allowed_task_types: tuple[str, ...]
    max_user_tier: str
    rpm_limit: int | None
    tpm_limit: int | None


class AuthenticationFailed(Exception):
    """Why a credential was refused; the message is safe to show to the caller."""


def _touch_last_used(model: type[ApiKey] | type[ManagementToken], pk: int, last: object) -> None:
    now = timezone.now()
    if last is None or now - last >= LAST_USED_RESOLUTION:  # type: ignore[operator]
        model.objects.filter(pk=pk).update(last_used_at=now)


def api_key_authenticate(raw_key: str) -> ApiKeyPrincipal:
    """Verify a presented API key; raises AuthenticationFailed with a caller-safe message."""
    parsed = credential_parse(raw_key, kind=API_KEY_KIND)
    if parsed is None:
        raise AuthenticationFailed("Invalid API key.")
    api_key = ApiKey.objects.select_related("tenant").filter(prefix=parsed.prefix).first()
    if api_key is None or not credential_matches(parsed, api_key.secret_hmac):
        raise AuthenticationFailed("Invalid API key.")
    now = timezone.now()
    if api_key.revoked_at is not None and api_key.revoked_at <= now:
        raise AuthenticationFailed("This API key has been revoked.")
    if api_key.expires_at is not None and api_key.expires_at <= now:
        raise AuthenticationFailed("This API key has expired.")
    if not api_key.tenant.is_active:
        raise AuthenticationFailed("This API key's tenant is suspended.")
    _touch_last_used(ApiKey, api_key.pk, api_key.last_used_at)
    return ApiKeyPrincipal(
        key_id=api_key.pk,
        prefix=api_key.prefix,
        name=api_key.name,
        tenant_id=api_key.tenant_id,
        tenant_slug=api_key.tenant.slug,
        team_id=api_key.team_id,
        allowed_models=tuple(api_key.allowed_models),
        allowed_task_types=tuple(api_key.allowed_task_types),
        max_user_tier=api_key.max_user_tier,
        rpm_limit=api_key.rpm_limit,
        tpm_limit=api_key.tpm_limit,
    )


API_KEY_STATUSES = ("active", "expired", "revoked")


def api_key_list(*, tenant: Tenant, status: str = "") -> QuerySet[ApiKey]:
    """The tenant's keys, newest first, each annotated with `status` (active, expired or
    revoked, as the gateway would judge it now); `status` filters on it when given."""
    now = timezone.now()
    keys = (
        ApiKey.objects.filter(tenant=tenant)
        .select_related("team")
        .annotate(
            status=Case(
                When(Q(revoked_at__isnull=False, revoked_at__lte=now), then=Value("revoked")),
                When(Q(expires_at__isnull=False, expires_at__lte=now), then=Value("expired")),
                default=Value("active"),
                output_field=CharField(),
            )
        )
        .order_by("-created_at", "-id")
    )
    if status in API_KEY_STATUSES:
        keys = keys.filter(status=status)
    return keys


def management_token_authenticate(raw_token: str) -> tuple[User, ManagementToken]:
    parsed = credential_parse(raw_token, kind=MANAGEMENT_TOKEN_KIND)
    if parsed is None:
        raise AuthenticationFailed("Invalid management token.")
    token = ManagementToken.objects.select_related("user").filter(prefix=parsed.prefix).first()
    if token is None or not credential_matches(parsed, token.secret_hmac):
        raise AuthenticationFailed("Invalid management token.")
    now = timezone.now()
    if token.revoked_at is not None:
        raise AuthenticationFailed("This management token has been revoked.")
    if token.expires_at is not None and token.expires_at <= now:
        raise AuthenticationFailed("This management token has expired.")
    if not token.user.is_active:
        raise AuthenticationFailed("This management token's user is inactive.")
    _touch_last_used(ManagementToken, token.pk, token.last_used_at)
    return token.user, token
