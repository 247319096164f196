"""Console pages for a tenant's gateway API keys: list, create, rotate and revoke.

A new key's plaintext goes into the one response that issued it and nowhere else: never a
URL, a redirect or a log line. Those responses are `no-store`, and the panel showing the key
opts out of htmx's history snapshot so it is not copied into the browser's storage either.
"""

from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.utils.cache import add_never_cache_headers
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_http_methods, require_POST

from admin_console.forms_keys import ApiKeyForm, ApiKeyRotateForm
from admin_console.views import _context, _errors_onto, tenant_view
from tenants import services as tenant_services
from tenants.audit import AuditContext
from tenants.models import ApiKey
from tenants.roles import role_allows
from tenants.selectors import API_KEY_STATUSES, api_key_list

KEYS_PER_PAGE = 25
# htmx event sent after a key is issued; the list reloads itself with the current filter.
KEYS_CHANGED = "keys-changed"


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A key just created or rotated, with its plaintext for this one response."""

    api_key: ApiKey
    plaintext: str
    rotated: bool = False

    def __repr__(self) -> str:
        return f"IssuedKey(prefix={self.api_key.prefix!r}, plaintext='***')"


@tenant_view("api_key.view")
@require_http_methods(["GET", "POST"])
def keys(request: HttpRequest, access: Any) -> HttpResponse:
    if request.method == "POST":
        return _key_create(request, access)
    if _partial(request):
        return render(request, "admin_console/_key_rows.html", _list_context(request, access))
    return render(request, "admin_console/keys.html", _list_context(request, access))


@sensitive_variables("plaintext")  # kept out of error reports
def _key_create(request: HttpRequest, access: Any) -> HttpResponse:
    if not role_allows(access.role, "api_key.manage"):
        return HttpResponse("Your role may not manage API keys.", status=403)
    form = ApiKeyForm(request.POST, tenant=access.tenant)
    if form.is_valid():
        try:
            api_key, plaintext = tenant_services.api_key_create(
                context=AuditContext.from_request(request),
                tenant=access.tenant,
                **form.key_fields(),
            )
        except ValidationError as exc:
            _errors_onto(form, exc)
        else:
            return _issued(request, access, IssuedKey(api_key, plaintext))
    if _partial(request):
        # 200: htmx swaps only successful responses; the errors are in the fragment.
        return render(request, "admin_console/_key_form.html", _context(request, access, form=form))
    return render(
        request, "admin_console/keys.html", _list_context(request, access, form=form), status=400
    )


@tenant_view("api_key.manage")
@require_POST
@sensitive_variables("plaintext")
def key_rotate(request: HttpRequest, access: Any, pk: int) -> HttpResponse:
    api_key = _tenant_key(access, pk)
    form = ApiKeyRotateForm(request.POST)
    if form.is_valid():
        try:
            new_key, plaintext = tenant_services.api_key_rotate(
                context=AuditContext.from_request(request), api_key=api_key, grace=form.grace()
            )
        except ValidationError as exc:
            _errors_onto(form, exc)
        else:
            return _issued(request, access, IssuedKey(new_key, plaintext, rotated=True))
    messages = " ".join(str(m) for errors in form.errors.values() for m in errors)
    error = f"Could not rotate “{api_key.name}”: {messages}"
    if _partial(request):
        return render(
            request, "admin_console/_key_secret.html", _context(request, access, error=error)
        )
    return render(
        request, "admin_console/keys.html", _list_context(request, access, error=error), status=400
    )


@tenant_view("api_key.manage")
@require_POST
def key_revoke(request: HttpRequest, access: Any, pk: int) -> HttpResponse:
    api_key = _tenant_key(access, pk)
    tenant_services.api_key_revoke(context=AuditContext.from_request(request), api_key=api_key)
    if _partial(request):
        key = api_key_list(tenant=access.tenant).get(pk=api_key.pk)
        return render(request, "admin_console/_key_row.html", _context(request, access, key=key))
    return redirect("console:keys", tenant=access.tenant.slug)


def _issued(request: HttpRequest, access: Any, issued: IssuedKey) -> HttpResponse:
    """Show the new key once: the fragment for htmx (a fresh form and the key panel), or the
    whole page. Never a redirect, which would need the plaintext in the URL or the session."""
    form = ApiKeyForm(tenant=access.tenant)
    if _partial(request):
        template = (
            "admin_console/_key_secret.html"
            if issued.rotated
            else "admin_console/_key_created.html"
        )
        response = render(
            request, template, _context(request, access, form=form, issued=issued), status=201
        )
        response["HX-Trigger"] = KEYS_CHANGED
    else:
        response = render(
            request,
            "admin_console/keys.html",
            _list_context(request, access, form=form, issued=issued),
            status=201,
        )
    add_never_cache_headers(response)
    return response


def _list_context(request: HttpRequest, access: Any, **extra: Any) -> dict[str, Any]:
    status = _status(request.GET)
    keys = api_key_list(tenant=access.tenant, status=status)
    page = Paginator(keys, KEYS_PER_PAGE).get_page(request.GET.get("page"))
    extra.setdefault("form", ApiKeyForm(tenant=access.tenant))
    return _context(request, access, page=page, status=status, statuses=API_KEY_STATUSES, **extra)


def _status(params: QueryDict) -> str:
    status = params.get("status", "")
    return status if status in API_KEY_STATUSES else ""


def _tenant_key(access: Any, pk: int) -> ApiKey:
    """The tenant's key `pk`; another tenant's key is a 404 like a missing one."""
    api_key = ApiKey.objects.filter(tenant=access.tenant, pk=pk).first()
    if api_key is None:
        raise Http404("No such API key.")
    return api_key


def _partial(request: HttpRequest) -> bool:
    """An htmx request for a fragment (not htmx restoring a whole page from history)."""
    htmx = request.htmx  # type: ignore[attr-defined]
    return bool(htmx) and not htmx.history_restore_request
