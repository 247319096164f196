"""Management-token authentication for the management API (automation, CI, scripts)."""

from typing import Any

from rest_framework import authentication, exceptions
from rest_framework.request import Request

from tenants.credentials import MANAGEMENT_TOKEN_KIND, bearer_token
from tenants.selectors import AuthenticationFailed, management_token_authenticate


class ManagementTokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer sbm_…`; other bearer kinds are left to other authenticators."""

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        token = bearer_token(request.headers.get("authorization", ""))
        if not token:
            return None
        if not token.startswith(MANAGEMENT_TOKEN_KIND + "_"):
            raise exceptions.AuthenticationFailed("Invalid management token.")
        try:
            user, management_token = management_token_authenticate(token)
        except AuthenticationFailed as exc:
            raise exceptions.AuthenticationFailed(str(exc)) from None
        request._request.auth_label = f"token:{management_token.name}"  # type: ignore[attr-defined]
        return user, management_token

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="switchboard"'
