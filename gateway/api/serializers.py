"""Management API shapes for model deployments."""

from typing import Any

from rest_framework import serializers

from gateway.models import ModelDeployment
from gateway.services import DEPLOYMENT_FIELDS


class DeploymentSerializer(serializers.ModelSerializer[ModelDeployment]):
    scope = serializers.SerializerMethodField()

    class Meta:
        model = ModelDeployment
        fields = ["id", "scope", *DEPLOYMENT_FIELDS, "created_at", "updated_at"]
        read_only_fields = ["id", "scope", "created_at", "updated_at"]

    def get_scope(self, obj: ModelDeployment) -> str:
        return "global" if obj.tenant_id is None else "tenant"

    def run_validators(self, value: Any) -> None:
        # Model-level rules (api_base egress policy, provider needs) live in the service.
        return None
