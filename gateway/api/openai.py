"""OpenAI-compatible gateway endpoints (the gateway issue completes them)."""

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from gateway.runtime.auth import gateway_authenticate
from switchboard.api.errors import allow_methods, error_response
from tenants.selectors import AuthenticationFailed


@csrf_exempt
@allow_methods("GET")
def models_list(request: HttpRequest) -> JsonResponse:
    """`GET /v1/models`: the models this key may call (none until deployments exist)."""
    try:
        gateway_authenticate(request)
    except AuthenticationFailed as exc:
        return error_response(
            401,
            str(exc),
            code="invalid_api_key",
            headers={"www-authenticate": 'Bearer realm="switchboard"'},
        )
    return JsonResponse({"object": "list", "data": []})
