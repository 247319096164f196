"""Request-scoped plumbing shared by every endpoint."""

import re
import uuid
from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.http import HttpRequest, HttpResponseBase
from whitenoise.middleware import WhiteNoiseMiddleware

_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,64}$")

Handler = Callable[[HttpRequest], HttpResponseBase | Awaitable[HttpResponseBase]]


def assign_request_ids(request: HttpRequest) -> None:
    """Mint the request id on the server, always: it is the idempotency key of the call's
    usage record, so a client-chosen one could merge or suppress billing rows. A well-formed
    client `X-Request-Id` is kept beside it (`request.client_request_id`) for correlation."""
    request.request_id = uuid.uuid4().hex  # type: ignore[attr-defined]
    supplied = request.headers.get("x-request-id", "")
    request.client_request_id = (  # type: ignore[attr-defined]
        supplied if _CLIENT_REQUEST_ID.match(supplied) else ""
    )


def tag_response(request: HttpRequest, response: HttpResponseBase) -> None:
    response["x-request-id"] = request.request_id  # type: ignore[attr-defined]
    if request.client_request_id:  # type: ignore[attr-defined]
        response["x-client-request-id"] = request.client_request_id  # type: ignore[attr-defined]


class RequestIdMiddleware:
    """Give every request an id, expose it as `request.request_id` and `x-request-id`."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.is_async:
            return self._acall(request)
        assign_request_ids(request)
        response = self.get_response(request)
        assert isinstance(response, HttpResponseBase)
        tag_response(request, response)
        return response

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        assign_request_ids(request)
        response = await self.get_response(request)  # type: ignore[misc]
        tag_response(request, response)
        return response


class AsyncWhiteNoiseMiddleware(WhiteNoiseMiddleware):
    """WhiteNoise that stays out of the async path.

    WhiteNoise's middleware is sync-only; in an ASGI stack Django would run every request
    through a thread for it, serialising the gateway. Here only /static/ requests take the
    thread hop, everything else passes straight through on the event loop.
    """

    sync_capable = False
    async_capable = True

    def __init__(self, get_response: Handler) -> None:
        super().__init__(get_response)
        markcoroutinefunction(self)

    async def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if request.path_info.startswith(self.static_prefix):
            response = await sync_to_async(self._static_response)(request)
            if response is not None:
                return response
        return await self.get_response(request)

    def _static_response(self, request: HttpRequest) -> HttpResponseBase | None:
        """WhiteNoise's own lookup (its `__call__` minus the pass-through), off the loop:
        finding a file may stat the disk when autorefresh is on (development)."""
        if self.autorefresh:
            static_file = self.find_file(request.path_info)
        else:
            static_file = self.files.get(request.path_info)
        return self.serve(static_file, request) if static_file is not None else None
