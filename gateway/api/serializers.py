"""Management API shapes for model deployments, routing configuration and experiments."""

from typing import Any

from rest_framework import serializers

from gateway.experiments.services import EXPERIMENT_FIELDS
from gateway.models import Experiment, ModelDeployment, RoutingRule, TaskProfile, Variant
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


class VariantSerializer(serializers.ModelSerializer[Variant]):
    class Meta:
        model = Variant
        fields = ["key", "model", "weight", "params"]


class ExperimentSerializer(ScopedModelSerializer):
    variants = VariantSerializer(many=True, required=False)
    rule = serializers.PrimaryKeyRelatedField(
        queryset=RoutingRule.objects.all(), allow_null=True, required=False
    )

    class Meta:
        model = Experiment
        fields = ["id", "scope", *EXPERIMENT_FIELDS, "variants", "promoted_by", "started_at",
                  "ended_at", "created_at", "updated_at"]  # fmt: skip
        read_only_fields = ["id", "scope", "status", "winner", "promoted_by", "started_at",
                            "ended_at", "created_at", "updated_at"]  # fmt: skip


class PromoteSerializer(serializers.Serializer[Any]):
    variant = serializers.CharField(max_length=50)
