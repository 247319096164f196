"""Console views: parse the request, call a selector, render a template."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from tenants.selectors import is_platform_staff, tenant_list_for_user


@login_required
def home(request: HttpRequest) -> HttpResponse:
    tenants = tenant_list_for_user(request.user)[:100]
    return render(
        request,
        "admin_console/home.html",
        {"tenants": tenants, "is_platform_staff": is_platform_staff(request.user)},
    )
