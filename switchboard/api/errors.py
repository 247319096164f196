"""One error shape for every API: the OpenAI error object.

`{"error": {"message": str, "type": str, "param": str | None, "code": str | None}}`, with
`details` added for validation errors so that a form can show every field's problem.
"""

import logging
from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    406: "invalid_request_error",
    409: "conflict_error",
    413: "request_too_large",
    415: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    502: "upstream_error",
    503: "service_unavailable",
    504: "timeout_error",
}


def error_body(
    status_code: int,
    message: str,
    *,
    param: str | None = None,
    code: str | None = None,
    details: Any = None,
) -> dict[str, Any]:
    """Build the error object for a status code."""
    error: dict[str, Any] = {
        "message": message,
        "type": ERROR_TYPES.get(status_code, "invalid_request_error"),
        "param": param,
        "code": code,
    }
    if details is not None:
        error["details"] = details
    return {"error": error}


def error_response(
    status_code: int,
    message: str,
    *,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JsonResponse:
    """A plain Django JSON error response (for views outside DRF, e.g. the gateway)."""
    response = JsonResponse(
        error_body(status_code, message, param=param, code=code), status=status_code
    )
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def _first_error(detail: Any, path: str = "") -> tuple[str | None, str]:
    """Find the first (field path, message) in a nested DRF error detail."""
    if isinstance(detail, dict) and detail:
        key, value = next(iter(detail.items()))
        # non_field_errors belong to the object itself, not to a field of that name.
        field = str(key) if not path else f"{path}.{key}"
        sub = path if key == "non_field_errors" else field
        return _first_error(value, sub)
    if isinstance(detail, list) and detail:
        first = detail[0]
        if isinstance(first, dict | list):
            return _first_error(first, f"{path}[0]")
        return path or None, str(first)
    return path or None, str(detail)


def _validation_body(exc: exceptions.ValidationError) -> dict[str, Any]:
    param, message = _first_error(exc.detail)
    text = f"{param}: {message}" if param else message
    codes = exc.get_codes()
    code = "invalid"
    if isinstance(codes, dict) and param in codes:
        field_codes = codes[param]
        if isinstance(field_codes, list) and field_codes and isinstance(field_codes[0], str):
            code = field_codes[0]
    return error_body(400, text, param=param, code=code, details=exc.detail)


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF exception handler: every error in the OpenAI error shape."""
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    elif isinstance(exc, DjangoValidationError):
        # Services raise Django's ValidationError; callers see the same 400 as for a serializer.
        exc = exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )
    response = drf_exception_handler(exc, context)
    if response is None:
        # An unexpected error: log it (scrubbed by the logging filter) and say nothing more.
        logger.exception("unhandled API error")
        return Response(
            error_body(500, "Internal server error.", code="internal_error"),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    if isinstance(exc, exceptions.ValidationError):
        response.data = _validation_body(exc)
    elif isinstance(exc, exceptions.APIException):
        detail = exc.detail
        message = str(detail) if not isinstance(detail, dict | list) else _first_error(detail)[1]
        code = exc.get_codes()
        response.data = error_body(
            response.status_code, message, code=code if isinstance(code, str) else None
        )
    return response


def _wants_json(request: HttpRequest) -> bool:
    path = request.path
    return path.startswith(("/api/", "/v1/")) or "application/json" in request.headers.get(
        "accept", ""
    )


def _page_or_json(request: HttpRequest, status_code: int, message: str) -> HttpResponse:
    if _wants_json(request):
        return error_response(status_code, message)
    from django.shortcuts import render

    return render(
        request, "error.html", {"status": status_code, "message": message}, status=status_code
    )


def handler400(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _page_or_json(request, 400, "Bad request.")


def handler403(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _page_or_json(request, 403, "You do not have permission to do this.")


def handler404(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _page_or_json(request, 404, "Not found.")


def handler500(request: HttpRequest) -> HttpResponse:
    return _page_or_json(request, 500, "Internal server error.")


def allow_methods(*methods: str) -> Any:
    """Like Django's require_http_methods, but the 405 is in the API error shape."""

    def decorator(view: Any) -> Any:
        import functools

        allowed = ", ".join(methods)

        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method not in methods:
                return error_response(
                    405,
                    f"Method {request.method} is not allowed here; use {allowed}.",
                    code="method_not_allowed",
                    headers={"allow": allowed},
                )
            return view(request, *args, **kwargs)

        return wrapper

    return decorator
