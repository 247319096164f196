"""Management API routes of the analytics app (mounted under /api/v1/)."""

from rest_framework.routers import SimpleRouter

from analytics.api.views import ReportViewSet, UsageViewSet
from switchboard.api.routes import TENANT

router = SimpleRouter(trailing_slash="/?")  # type: ignore[arg-type]  # optional slash
router.register(f"{TENANT}/usage", UsageViewSet, basename="usage")
router.register(f"{TENANT}/reports", ReportViewSet, basename="report")

urlpatterns = router.urls
