"""Routes of the tenants management API (mounted under /api/v1/)."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from switchboard.api.routes import TENANT
from tenants.api import views

router = SimpleRouter(trailing_slash="/?")  # type: ignore[arg-type]  # optional slash
router.register("tenants", views.TenantViewSet, basename="tenant")
router.register(f"{TENANT}/teams", views.TeamViewSet, basename="team")
router.register(f"{TENANT}/members", views.MembershipViewSet, basename="membership")
router.register(f"{TENANT}/api-keys", views.ApiKeyViewSet, basename="api-key")
router.register(f"{TENANT}/audit-events", views.AuditEventViewSet, basename="audit-event")
router.register("management-tokens", views.ManagementTokenViewSet, basename="management-token")

urlpatterns = [
    path("me/", views.MeView.as_view(), name="me"),
    *router.urls,
]
