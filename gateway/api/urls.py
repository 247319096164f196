"""Management API routes of the gateway app (mounted under /api/v1/)."""

from rest_framework.routers import SimpleRouter

from gateway.api.management import (
    DeploymentViewSet,
    ExperimentViewSet,
    GlobalDeploymentViewSet,
    RoutingRuleViewSet,
    TaskProfileViewSet,
)
from switchboard.api.routes import TENANT

router = SimpleRouter(trailing_slash="/?")  # type: ignore[arg-type]  # optional slash
router.register(f"{TENANT}/deployments", DeploymentViewSet, basename="deployment")
router.register("deployments", GlobalDeploymentViewSet, basename="global-deployment")
router.register(f"{TENANT}/task-profiles", TaskProfileViewSet, basename="task-profile")
router.register(f"{TENANT}/routing-rules", RoutingRuleViewSet, basename="routing-rule")
router.register(f"{TENANT}/experiments", ExperimentViewSet, basename="experiment")

urlpatterns = router.urls
