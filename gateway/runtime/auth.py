"""Gateway caller authentication: a tenant API key as a bearer token (or `x-api-key`)."""

from django.http import HttpRequest

from tenants.credentials import bearer_token
from tenants.selectors import ApiKeyPrincipal, AuthenticationFailed, api_key_authenticate

MISSING_KEY = "Missing API key. Send it as 'Authorization: Bearer <key>'."


def presented_key(request: HttpRequest) -> str:
    """The key from `Authorization: Bearer …` or, for Anthropic SDKs, `x-api-key`."""
    return (
        bearer_token(request.headers.get("authorization", ""))
        or request.headers.get("x-api-key", "").strip()
    )


def gateway_authenticate(request: HttpRequest) -> ApiKeyPrincipal:
    """Raise AuthenticationFailed (message safe for the caller) unless the key is valid."""
    raw = presented_key(request)
    if not raw:
        raise AuthenticationFailed(MISSING_KEY)
    return api_key_authenticate(raw)
