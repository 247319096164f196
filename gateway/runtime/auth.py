"""Gateway caller authentication against the in-process snapshot (no database query).

The key arrives as `Authorization: Bearer sbk_…` (OpenAI SDKs) or `x-api-key` (Anthropic
SDKs). It is parsed strictly, found by its public prefix, and its secret is compared by HMAC
in constant time; then revocation, expiry and the tenant's status are checked.
"""

import time
from dataclasses import dataclass

from django.http import HttpRequest

from gateway.runtime.snapshot import KeyEntry, Snapshot, TenantEntry
from tenants.credentials import API_KEY_KIND, bearer_token, credential_matches, credential_parse

MISSING_KEY = "Missing API key. Send it as 'Authorization: Bearer <key>'."
INVALID_KEY = "Invalid API key."


class GatewayAuthError(Exception):
    """A refused credential; the message is safe to show to the caller."""


@dataclass(frozen=True, slots=True)
class Caller:
    key: KeyEntry
    tenant: TenantEntry


def presented_key(request: HttpRequest) -> str:
    return (
        bearer_token(request.headers.get("authorization", ""))
        or request.headers.get("x-api-key", "").strip()
    )


def gateway_authenticate(request: HttpRequest, snapshot: Snapshot) -> Caller:
    raw = presented_key(request)
    if not raw:
        raise GatewayAuthError(MISSING_KEY)
    parsed = credential_parse(raw, kind=API_KEY_KIND)
    if parsed is None:
        raise GatewayAuthError(INVALID_KEY)
    key = snapshot.keys_by_prefix.get(parsed.prefix)
    if key is None or not credential_matches(parsed, key.secret_hmac):
        raise GatewayAuthError(INVALID_KEY)
    now = time.time()
    if key.revoked_at is not None and key.revoked_at <= now:
        raise GatewayAuthError("This API key has been revoked.")
    if key.expires_at is not None and key.expires_at <= now:
        raise GatewayAuthError("This API key has expired.")
    tenant = snapshot.tenants.get(key.tenant_id)
    if tenant is None or not tenant.active:
        raise GatewayAuthError("This API key's tenant is suspended.")
    return Caller(key=key, tenant=tenant)
