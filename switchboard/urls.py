"""Top-level routes: gateway (/v1/), management API (/api/v1/), console, ops endpoints."""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from gateway.api import catalog, native
from switchboard import ops

handler400 = "switchboard.api.errors.handler400"
handler403 = "switchboard.api.errors.handler403"
handler404 = "switchboard.api.errors.handler404"
handler500 = "switchboard.api.errors.handler500"

urlpatterns = [
    path("healthz", ops.healthz, name="healthz"),
    path("readyz", ops.readyz, name="readyz"),
    path("metrics", ops.metrics, name="metrics"),
    path("v1/", include("gateway.urls")),
    path("api/v1/gateway/requests", native.gateway_requests, name="gateway-native"),
    path("api/v1/route/explain", native.route_explain, name="route-explain"),
    path("api/v1/personas", catalog.personas, name="personas"),
    path("api/v1/providers", catalog.providers, name="providers"),
    path("api/v1/", include("tenants.api.urls")),
    path("api/v1/", include("gateway.api.urls")),
    path("api/v1/", include("keyvault.api.urls")),
    path("api/v1/", include("budgets.api.urls")),
    path("api/v1/", include("analytics.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("console/", include("admin_console.urls")),
    path("django-admin/", admin.site.urls),
    path("", RedirectView.as_view(pattern_name="console:home", permanent=False)),
]
