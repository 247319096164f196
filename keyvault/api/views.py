"""Management API: vault connections and secret references, tenant-scoped and global."""

from dataclasses import asdict
from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from keyvault import services
from keyvault.api.serializers import (
    SecretReferenceSerializer,
    SecretTestSerializer,
    VaultConnectionSerializer,
)
from keyvault.models import SecretReference, VaultConnection
from tenants.api.base import TenantScopedViewSet
from tenants.api.views import ID_PARAMETER, TENANT_PARAMETER
from tenants.audit import AuditContext

READ = {"list": "vault.view", "retrieve": "vault.view"}
WRITE = {"create": "vault.manage", "partial_update": "vault.manage", "destroy": "vault.manage"}


def _valid(serializer_class: type, data: Any, **kwargs: Any) -> dict[str, Any]:
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


class _VaultCrud:
    """create / update / destroy through the services, for both scopes."""

    serializer_class: Any
    create_service: Any
    update_service: Any
    delete_service: Any
    object_kwarg: str

    def _tenant(self) -> Any:
        raise NotImplementedError

    def _context(self) -> AuditContext:
        return AuditContext.from_request(self.request)  # type: ignore[attr-defined]

    def _serializer_context(self) -> dict[str, Any]:
        return self.get_serializer_context()  # type: ignore[attr-defined]

    def create(self, request: Request, **kwargs: Any) -> Response:
        data = _valid(self.serializer_class, request.data, context=self._serializer_context())
        obj = type(self).create_service(context=self._context(), tenant=self._tenant(), fields=data)
        return Response(self.serializer_class(obj).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, **kwargs: Any) -> Response:
        obj = self.get_object()  # type: ignore[attr-defined]
        data = _valid(self.serializer_class, request.data, partial=True,
                      context=self._serializer_context())  # fmt: skip
        obj = type(self).update_service(context=self._context(), **{self.object_kwarg: obj},
                                        fields=data)  # fmt: skip
        return Response(self.serializer_class(obj).data)

    def destroy(self, request: Request, **kwargs: Any) -> Response:
        obj = self.get_object()  # type: ignore[attr-defined]
        type(self).delete_service(context=self._context(), **{self.object_kwarg: obj})
        return Response(status=status.HTTP_204_NO_CONTENT)

    def list(self, request: Request, **kwargs: Any) -> Response:
        queryset = self.filter_queryset(self.get_queryset())  # type: ignore[attr-defined]
        page = self.paginate_queryset(queryset)  # type: ignore[attr-defined]
        return self.get_paginated_response(  # type: ignore[attr-defined]
            self.serializer_class(page, many=True).data
        )

    def retrieve(self, request: Request, **kwargs: Any) -> Response:
        return Response(self.serializer_class(self.get_object()).data)  # type: ignore[attr-defined]


@extend_schema(parameters=[TENANT_PARAMETER, ID_PARAMETER])
class VaultConnectionViewSet(_VaultCrud, TenantScopedViewSet[VaultConnection]):
    scoped_queryset = VaultConnection.objects.order_by("name", "id")
    serializer_class = VaultConnectionSerializer
    create_service = services.vault_connection_create
    update_service = services.vault_connection_update
    delete_service = services.vault_connection_delete
    object_kwarg = "connection"
    read_actions = frozenset({"list", "retrieve", "metadata", "test"})
    action_permissions = {**READ, **WRITE, "test": "vault.manage"}

    def _tenant(self) -> Any:
        return self.access.tenant

    @extend_schema(request=None, responses=SecretTestSerializer)
    @action(detail=True, methods=["post"])
    def test(self, request: Request, **kwargs: Any) -> Response:
        """Check reachability and credentials: ok or the error class, and the latency."""
        return Response(asdict(services.vault_connection_test(connection=self.get_object())))


@extend_schema(parameters=[TENANT_PARAMETER, ID_PARAMETER])
class SecretReferenceViewSet(_VaultCrud, TenantScopedViewSet[SecretReference]):
    scoped_queryset = SecretReference.objects.select_related("connection").order_by("name", "id")
    serializer_class = SecretReferenceSerializer
    read_actions = frozenset({"list", "retrieve", "metadata", "test"})
    action_permissions = {**READ, **WRITE, "test": "vault.manage"}
    create_service = services.secret_reference_create
    update_service = services.secret_reference_update
    delete_service = services.secret_reference_delete
    object_kwarg = "reference"

    def _tenant(self) -> Any:
        return self.access.tenant

    @extend_schema(request=None, responses=SecretTestSerializer)
    @action(detail=True, methods=["post"])
    def test(self, request: Request, **kwargs: Any) -> Response:
        """Fetch the secret once and report ok or the error class and latency, never the value."""
        outcome = services.secret_reference_test(
            reference=self.get_object(), accessor=f"test:{request.user.get_username()}"
        )
        return Response(asdict(outcome))


class _GlobalMixin:
    permission_classes: Any = [permissions.IsAdminUser]
    lookup_value_regex = r"[0-9]+"

    def _tenant(self) -> Any:
        return None

    def get_serializer_context(self) -> dict[str, Any]:
        context = dict(super().get_serializer_context())  # type: ignore[misc]
        context["global_scope"] = True
        return context


@extend_schema(parameters=[ID_PARAMETER])
class GlobalVaultConnectionViewSet(
    _GlobalMixin, _VaultCrud, viewsets.GenericViewSet[VaultConnection]
):
    serializer_class = VaultConnectionSerializer
    create_service = services.vault_connection_create
    update_service = services.vault_connection_update
    delete_service = services.vault_connection_delete
    object_kwarg = "connection"

    def get_queryset(self) -> QuerySet[VaultConnection]:
        return VaultConnection.objects.filter(tenant__isnull=True).order_by("name", "id")


@extend_schema(parameters=[ID_PARAMETER])
class GlobalSecretReferenceViewSet(
    _GlobalMixin, _VaultCrud, viewsets.GenericViewSet[SecretReference]
):
    serializer_class = SecretReferenceSerializer
    create_service = services.secret_reference_create
    update_service = services.secret_reference_update
    delete_service = services.secret_reference_delete
    object_kwarg = "reference"

    def get_queryset(self) -> QuerySet[SecretReference]:
        return SecretReference.objects.filter(tenant__isnull=True).order_by("name", "id")

    @extend_schema(request=None, responses=SecretTestSerializer)
    @action(detail=True, methods=["post"])
    def test(self, request: Request, **kwargs: Any) -> Response:
        outcome = services.secret_reference_test(
            reference=self.get_object(), accessor=f"test:{request.user.get_username()}"
        )
        return Response(asdict(outcome))
