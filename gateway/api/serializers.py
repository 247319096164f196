"""Management API shapes for model deployments."""

from typing import Any

from rest_framework import serializers

from gateway.models import ModelDeployment, RoutingRule, TaskProfile
from gateway.services import DEPLOYMENT_FIELDS, PROFILE_FIELDS, RULE_FIELDS


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


class TaskProfileSerializer(serializers.ModelSerializer[TaskProfile]):
    scope = serializers.SerializerMethodField()

    class Meta:
        model = TaskProfile
        fields = ["id", "scope", *PROFILE_FIELDS, "created_at", "updated_at"]
        read_only_fields = ["id", "scope", "created_at", "updated_at"]

    def get_scope(self, obj: TaskProfile) -> str:
        return "global" if obj.tenant_id is None else "tenant"

    def run_validators(self, value: Any) -> None:
        return None  # model validation (candidates, defaults, uniqueness) runs in the service


class RoutingRuleSerializer(serializers.ModelSerializer[RoutingRule]):
    scope = serializers.SerializerMethodField()

    class Meta:
        model = RoutingRule
        fields = ["id", "scope", *RULE_FIELDS, "created_at", "updated_at"]
        read_only_fields = ["id", "scope", "created_at", "updated_at"]

    def get_scope(self, obj: RoutingRule) -> str:
        return "global" if obj.tenant_id is None else "tenant"

    def run_validators(self, value: Any) -> None:
        return None
