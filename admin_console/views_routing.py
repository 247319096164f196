"""Console views of routing: task profiles and rules (tenant's and global), creating a rule,
and the explain panel that shows the route a sample request would take."""

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods, require_POST

from admin_console.forms_routing import ExplainForm, RoutingRuleForm
from admin_console.selectors_routing import route_explain_for_tenant, routing_overview
from admin_console.views import _context, create_from_form, tenant_view
from gateway import services
from tenants.audit import AuditContext
from tenants.roles import role_allows

EXPLAIN_PREFIX = "explain"


@tenant_view("deployment.view")
@require_http_methods(["GET", "POST"])
def routing(request: HttpRequest, access: Any) -> HttpResponse:
    tenant = access.tenant
    form = RoutingRuleForm(tenant=tenant)
    if request.method == "POST":
        if not role_allows(access.role, "deployment.manage"):
            return HttpResponse("Your role may not change routing.", status=403)
        form = RoutingRuleForm(request.POST, tenant=tenant)
        done = create_from_form(
            request, access, form, "admin_console/_routing_rule_form.html",
            lambda: services.routing_rule_create(
                context=AuditContext.from_request(request), tenant=tenant,
                fields=form.rule_fields(),
            ),
        )  # fmt: skip
        if done is not None:
            return done
    return render(
        request,
        "admin_console/routing.html",
        _context(
            request,
            access,
            form=form,
            explain_form=ExplainForm(prefix=EXPLAIN_PREFIX),
            **routing_overview(tenant),
        ),
        status=400 if request.method == "POST" else 200,
    )


@tenant_view("deployment.view")
@require_POST
def routing_explain(request: HttpRequest, access: Any) -> HttpResponse:
    """A read (nothing is saved, no provider is called), so viewers may use it too; POST
    because a sample prompt can be far longer than a URL."""
    form = ExplainForm(request.POST, prefix=EXPLAIN_PREFIX)
    explanation = None
    if form.is_valid():
        explanation = route_explain_for_tenant(
            http=request, tenant=access.tenant, body=form.chat_body()
        )
        if explanation.error_field in form.fields:  # shown next to that field instead
            form.add_error(explanation.error_field, explanation.error)
            explanation.error = ""
    context = _context(request, access, explain_form=form, explanation=explanation)
    if request.htmx:  # type: ignore[attr-defined]
        return render(request, "admin_console/_explain.html", context)
    context.update(form=RoutingRuleForm(tenant=access.tenant), **routing_overview(access.tenant))
    return render(request, "admin_console/routing.html", context)
