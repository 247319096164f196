"""Console views of model deployments: the list (filtered in place), create, edit and the
enable/disable switch. Global deployments are shown read-only."""

from typing import Any

from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from admin_console.forms_models import DeploymentForm, deployment_initial
from admin_console.selectors_models import deployment_row, deployment_rows, tenant_deployment
from admin_console.views import _context, form_saved, tenant_view
from gateway import services
from tenants.audit import AuditContext
from tenants.roles import role_allows

MAX_FILTER = 100


def _saved(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    """After a change: back to the list (htmx follows HX-Redirect, a plain form the 302)."""
    target = reverse("console:models", args=[tenant_slug])
    if request.htmx:  # type: ignore[attr-defined]
        response = HttpResponse(status=204)
        response["HX-Redirect"] = target
        return response
    return redirect(target)


def _form_page(
    request: HttpRequest, access: Any, form: DeploymentForm, template: str, **extra: Any
) -> HttpResponse:
    status = 200
    if request.htmx:  # type: ignore[attr-defined]
        # 200: htmx swaps only successful responses; the errors are in the fragment.
        template = "admin_console/_model_form.html"
    elif request.method == "POST":
        status = 400
    return render(request, template, _context(request, access, form=form, **extra), status=status)


@tenant_view("deployment.view")
@require_http_methods(["GET", "POST"])
def models(request: HttpRequest, access: Any) -> HttpResponse:
    tenant = access.tenant
    name = request.GET.get("q", "").strip()[:MAX_FILTER]
    if request.method == "GET" and request.htmx:  # type: ignore[attr-defined]
        rows = deployment_rows(tenant, name=name)
        return render(
            request, "admin_console/_model_rows.html", _context(request, access, rows=rows, q=name)
        )
    form = DeploymentForm(tenant=tenant)
    if request.method == "POST":
        if not role_allows(access.role, "deployment.manage"):
            return HttpResponse("Your role may not change deployments.", status=403)
        form = DeploymentForm(request.POST, tenant=tenant)
        created = form_saved(form, lambda: services.deployment_create(
            context=AuditContext.from_request(request), tenant=tenant,
            fields=form.deployment_fields(),
        ))  # fmt: skip
        if created:
            return _saved(request, tenant.slug)
    return _form_page(
        request,
        access,
        form,
        "admin_console/models.html",
        rows=[] if request.htmx else deployment_rows(tenant, name=name),  # type: ignore[attr-defined]
        q=name,
        form_action=reverse("console:models", args=[tenant.slug]),
        submit_label="Create deployment",
    )


@tenant_view("deployment.manage")
@require_http_methods(["GET", "POST"])
def model_edit(request: HttpRequest, access: Any, pk: int) -> HttpResponse:
    tenant = access.tenant
    deployment = tenant_deployment(tenant, pk)
    if deployment is None:
        raise Http404("No such deployment.")
    form = DeploymentForm(initial=deployment_initial(deployment), tenant=tenant)
    if request.method == "POST":
        form = DeploymentForm(request.POST, tenant=tenant)
        updated = form_saved(form, lambda: services.deployment_update(
            context=AuditContext.from_request(request), deployment=deployment,
            fields=form.deployment_fields(),
        ))  # fmt: skip
        if updated:
            return _saved(request, tenant.slug)
    return _form_page(
        request,
        access,
        form,
        "admin_console/models_edit.html",
        deployment=deployment,
        form_action=reverse("console:model-edit", args=[tenant.slug, pk]),
        submit_label="Save changes",
    )


@tenant_view("deployment.manage")
@require_POST
def model_toggle(request: HttpRequest, access: Any, pk: int) -> HttpResponse:
    """Set `enabled` to the posted value (idempotent, unlike a flip: a double click is safe)."""
    deployment = tenant_deployment(access.tenant, pk)
    if deployment is None:
        raise Http404("No such deployment.")
    error = ""
    try:
        services.deployment_update(
            context=AuditContext.from_request(request),
            deployment=deployment,
            fields={"enabled": request.POST.get("enabled") == "true"},
        )
    except ValidationError as exc:
        error = " ".join(exc.messages)
        deployment.refresh_from_db()
    if not request.htmx:  # type: ignore[attr-defined]
        if error:
            return HttpResponse(error, status=400)
        return redirect("console:models", tenant=access.tenant.slug)
    return render(
        request,
        "admin_console/_model_row.html",
        _context(request, access, r=deployment_row(deployment), error=error),
    )
