"""Management API shapes for vault connections and secret references (never a value)."""

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from keyvault.models import SecretReference, VaultConnection
from switchboard.api.serializers import ScopedModelSerializer


class VaultConnectionSerializer(ScopedModelSerializer):
    class Meta:
        model = VaultConnection
        fields = [
            "id",
            "scope",
            "name",
            "backend",
            "settings",
            "enabled",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "scope", "created_at", "updated_at"]


@extend_schema_field(OpenApiTypes.INT)
class VisibleConnectionField(serializers.PrimaryKeyRelatedField):
    """A connection of the URL's tenant (global ones only on the platform staff endpoints)."""

    def get_queryset(self) -> Any:
        tenant = self.context.get("tenant")
        if self.context.get("global_scope"):
            return VaultConnection.objects.filter(tenant__isnull=True)
        if tenant is None:
            return VaultConnection.objects.none()
        return VaultConnection.objects.filter(tenant=tenant)


class SecretReferenceSerializer(ScopedModelSerializer):
    connection = VisibleConnectionField()

    class Meta:
        model = SecretReference
        fields = [
            "id", "scope", "name", "connection", "secret_name", "version", "field",
            "created_at", "updated_at",
        ]  # fmt: skip
        read_only_fields = ["id", "scope", "created_at", "updated_at"]


class SecretTestSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    latency_ms = serializers.FloatField()
    error = serializers.CharField(allow_null=True)
    message = serializers.CharField(allow_null=True)
