"""Management API routes of the keyvault app (mounted under /api/v1/)."""

from rest_framework.routers import SimpleRouter

from keyvault.api import views
from switchboard.api.routes import TENANT

router = SimpleRouter(trailing_slash="/?")  # type: ignore[arg-type]  # optional slash
router.register(
    f"{TENANT}/vault-connections", views.VaultConnectionViewSet, basename="vault-connection"
)
router.register(
    f"{TENANT}/secret-references", views.SecretReferenceViewSet, basename="secret-reference"
)
router.register(
    "vault-connections", views.GlobalVaultConnectionViewSet, basename="global-vault-connection"
)
router.register(
    "secret-references", views.GlobalSecretReferenceViewSet, basename="global-secret-reference"
)

urlpatterns = router.urls
