"""Console views: parse the request, call a selector or a service, render a template."""

from collections.abc import Callable
from datetime import datetime
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from admin_console import selectors
from admin_console.forms import BudgetForm
from analytics.selectors import TIME_GROUPS, USAGE_DIMENSIONS, usage_summary
from budgets import services as budget_services
from budgets.models import Budget
from budgets.selectors import budget_status
from gateway.experiments import services as experiment_services
from gateway.experiments.selectors import experiment_results
from gateway.models import Experiment
from tenants.audit import AuditContext
from tenants.models import AuditEvent
from tenants.roles import role_allows
from tenants.selectors import is_platform_staff, tenant_access_for_user, tenant_list_for_user

View = Callable[..., HttpResponse]


@login_required
def home(request: HttpRequest) -> HttpResponse:
    tenants = tenant_list_for_user(request.user)[:100]
    return render(
        request,
        "admin_console/home.html",
        {"tenants": tenants, "is_platform_staff": is_platform_staff(request.user)},
    )


def tenant_view(permission: str) -> Callable[[View], View]:
    """Resolve the tenant from the URL for this user (404 when not theirs) and check the
    role's permission (403); the page gets `access` and role-aware navigation flags."""

    def decorate(view: View) -> View:
        @login_required
        @wraps(view)
        def wrapper(request: HttpRequest, tenant: str, *args: Any, **kwargs: Any) -> HttpResponse:
            access = tenant_access_for_user(request.user, tenant)
            if access is None:
                raise Http404("No such tenant.")
            if not role_allows(access.role, permission):
                return render(
                    request,
                    "admin_console/forbidden.html",
                    {"access": access, "nav": _nav(access)},
                    status=403,
                )
            request.access = access  # type: ignore[attr-defined]
            return view(request, access, *args, **kwargs)

        return wrapper

    return decorate


def _nav(access: Any) -> dict[str, bool]:
    role = access.role
    return {
        "usage": role_allows(role, "usage.view"),
        "budgets": role_allows(role, "budget.view"),
        "budgets_manage": role_allows(role, "budget.manage"),
        "keys": role_allows(role, "api_key.view"),
        "keys_manage": role_allows(role, "api_key.manage"),
        "experiments": role_allows(role, "deployment.view"),
        "experiments_manage": role_allows(role, "deployment.manage"),
        "models": role_allows(role, "deployment.view"),
        "models_manage": role_allows(role, "deployment.manage"),
        "routing": role_allows(role, "deployment.view"),
        "audit": role_allows(role, "audit.view"),
    }


def _context(request: HttpRequest, access: Any, **extra: Any) -> dict[str, Any]:
    return {
        "access": access,
        "tenant": access.tenant,
        "nav": _nav(access),
        "tenants": tenant_list_for_user(request.user)[:200],
        **extra,
    }


@tenant_view("tenant.view")
def dashboard(request: HttpRequest, access: Any) -> HttpResponse:
    data = selectors.dashboard(access.tenant)
    return render(request, "admin_console/dashboard.html", _context(request, access, **data))


# --- budgets ---------------------------------------------------------------------------------


@tenant_view("budget.view")
@require_http_methods(["GET", "POST"])
def budgets(request: HttpRequest, access: Any) -> HttpResponse:
    tenant = access.tenant
    form = BudgetForm(tenant=tenant)
    if request.method == "POST":
        if not role_allows(access.role, "budget.manage"):
            return HttpResponse("Your role may not change budgets.", status=403)
        form = BudgetForm(request.POST, tenant=tenant)
        done = create_from_form(
            request, access, form, "admin_console/_budget_form.html",
            lambda: budget_services.budget_create(
                context=AuditContext.from_request(request), tenant=tenant,
                fields=form.budget_fields(),
            ),
        )  # fmt: skip
        if done is not None:
            return done
    statuses = [
        budget_status(b)
        for b in Budget.objects.filter(tenant=tenant).select_related("tenant").order_by("name")
    ]
    return render(
        request,
        "admin_console/budgets.html",
        _context(request, access, form=form, budgets=statuses),
        status=400 if request.method == "POST" else 200,
    )


def form_saved(form: Any, save: Callable[[], Any]) -> bool:
    """Validate the form and run the service; its ValidationErrors land on the form's fields.
    True when saved."""
    if not form.is_valid():
        return False
    try:
        save()
    except ValidationError as exc:
        _errors_onto(form, exc)
        return False
    return True


def create_from_form(
    request: HttpRequest, access: Any, form: Any, fragment: str, create: Callable[[], Any]
) -> HttpResponse | None:
    """Run a console create form: on success redirect back (htmx: HX-Redirect); on errors
    (the form's or the service's, mapped onto fields) answer htmx with the form fragment.
    None: a plain POST with errors, for the caller to render the full page (status 400)."""
    if form_saved(form, create):
        if request.htmx:  # type: ignore[attr-defined]
            response = HttpResponse(status=204)
            response["HX-Redirect"] = request.path
            return response
        return redirect(request.path)
    if request.htmx:  # type: ignore[attr-defined]
        # 200: htmx swaps only successful responses; the errors are in the fragment.
        return render(request, fragment, _context(request, access, form=form))
    return None


def _errors_onto(form: Any, exc: ValidationError) -> None:
    if hasattr(exc, "error_dict"):
        for field, errors in exc.error_dict.items():
            target = field if field in form.fields else None
            for error in errors:
                form.add_error(target, error)
    else:
        for message in exc.messages:
            form.add_error(None, message)


# --- experiments -----------------------------------------------------------------------------


@tenant_view("deployment.view")
def experiments(request: HttpRequest, access: Any) -> HttpResponse:
    rows = Experiment.objects.filter(tenant=access.tenant).prefetch_related("variants")
    return render(
        request, "admin_console/experiments.html", _context(request, access, experiments=rows[:100])
    )


@tenant_view("deployment.view")
def experiment_detail(request: HttpRequest, access: Any, pk: int) -> HttpResponse:
    experiment = Experiment.objects.filter(tenant=access.tenant, pk=pk).first()
    if experiment is None:
        raise Http404("No such experiment.")
    return render(
        request,
        "admin_console/experiment.html",
        _context(request, access, experiment=experiment, results=experiment_results(experiment)),
    )


@tenant_view("deployment.manage")
@require_POST
def experiment_action(request: HttpRequest, access: Any, pk: int, verb: str) -> HttpResponse:
    experiment = Experiment.objects.filter(tenant=access.tenant, pk=pk).first()
    if experiment is None:
        raise Http404("No such experiment.")
    context = AuditContext.from_request(request)
    try:
        if verb == "start":
            experiment_services.experiment_start(context=context, experiment=experiment)
        elif verb == "stop":
            experiment_services.experiment_stop(context=context, experiment=experiment)
        elif verb == "promote":
            experiment_services.experiment_promote(
                context=context, experiment=experiment, variant=request.POST.get("variant", "")
            )
        else:
            raise Http404("No such action.")
    except ValidationError as exc:
        return HttpResponse(" ".join(exc.messages), status=400)
    return redirect("console:experiment", tenant=access.tenant.slug, pk=pk)


# --- usage explorer --------------------------------------------------------------------------


@tenant_view("usage.view")
def usage(request: HttpRequest, access: Any) -> HttpResponse:
    from rest_framework.exceptions import ValidationError as ApiValidationError

    from analytics.api.views import time_range

    params = request.GET
    group = params.get("group_by", "model")
    groups = [g for g in group.split(",") if g in USAGE_DIMENSIONS or g in TIME_GROUPS][:2]
    filters = {name: params[name] for name in USAGE_DIMENSIONS if params.get(name)}
    error = ""
    rows: list[dict[str, Any]] = []
    source = ""

    class _Query:  # what time_range reads from a DRF request
        query_params = params

    start: datetime | None = None
    end: datetime | None = None
    try:
        start, end = time_range(_Query(), access.tenant)  # type: ignore[arg-type]
        source, rows = usage_summary(
            tenant=access.tenant, start=start, end=end, filters=filters, group_by=groups
        )
    except ApiValidationError as exc:
        detail = exc.detail if isinstance(exc.detail, dict) else {"": exc.detail}
        error = " ".join(str(m) for messages in detail.values() for m in _as_list(messages))
    except ValueError as exc:
        error = str(exc)
    query = params.urlencode()
    context = _context(
        request,
        access,
        rows=rows,
        groups=groups,
        error=error,
        source=source,
        start=start,
        end=end,
        query=query,
        params=params,
        dimensions=[*USAGE_DIMENSIONS, *TIME_GROUPS],
    )
    template = "admin_console/_usage_table.html" if request.htmx else "admin_console/usage.html"  # type: ignore[attr-defined]
    return render(request, template, context)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# --- audit log -------------------------------------------------------------------------------


@tenant_view("audit.view")
def audit(request: HttpRequest, access: Any) -> HttpResponse:
    events = AuditEvent.objects.filter(tenant=access.tenant).select_related("actor")
    action = request.GET.get("action", "").strip()[:100]
    if action:
        events = events.filter(action__startswith=action)
    page = Paginator(events, 25).get_page(request.GET.get("page"))
    template = "admin_console/_audit_rows.html" if request.htmx else "admin_console/audit.html"  # type: ignore[attr-defined]
    return render(request, template, _context(request, access, page=page, action=action))
