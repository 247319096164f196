"""Management API routes of the budgets app (mounted under /api/v1/)."""

from rest_framework.routers import SimpleRouter

from budgets.api.views import BudgetViewSet
from switchboard.api.routes import TENANT

router = SimpleRouter(trailing_slash="/?")  # type: ignore[arg-type]  # optional slash
router.register(f"{TENANT}/budgets", BudgetViewSet, basename="budget")

urlpatterns = router.urls
