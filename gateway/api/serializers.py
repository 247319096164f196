"""Management API shapes for model deployments."""

from gateway.models import ModelDeployment, RoutingRule, TaskProfile
from gateway.services import DEPLOYMENT_FIELDS, PROFILE_FIELDS, RULE_FIELDS
from switchboard.api.serializers import ScopedModelSerializer


class DeploymentSerializer(ScopedModelSerializer):
    class Meta:
        model = ModelDeployment
        fields = ["id", "scope", *DEPLOYMENT_FIELDS, "created_at", "updated_at"]
        read_only_fields = ["id", "scope", "created_at", "updated_at"]


class TaskProfileSerializer(ScopedModelSerializer):
    class Meta:
        model = TaskProfile
        fields = ["id", "scope", *PROFILE_FIELDS, "created_at", "updated_at"]
        read_only_fields = ["id", "scope", "created_at", "updated_at"]


class RoutingRuleSerializer(ScopedModelSerializer):
    class Meta:
        model = RoutingRule
        fields = ["id", "scope", *RULE_FIELDS, "created_at", "updated_at"]
        read_only_fields = ["id", "scope", "created_at", "updated_at"]
