"""Management API: model deployments (tenant-owned, plus read-only global ones)."""

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError as DRFValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from gateway import services
from gateway.api.serializers import (
    DeploymentSerializer,
    ExperimentSerializer,
    PromoteSerializer,
    RoutingRuleSerializer,
    TaskProfileSerializer,
)
from gateway.experiments import services as experiments
from gateway.experiments.selectors import experiment_results
from gateway.models import Experiment, ModelDeployment, RoutingRule, TaskProfile
from tenants.api.base import TenantScopedViewSet
from tenants.api.views import ID_PARAMETER, TENANT_PARAMETER
from tenants.audit import AuditContext


@extend_schema(parameters=[TENANT_PARAMETER])
class DeploymentViewSet(TenantScopedViewSet[ModelDeployment]):
    """A tenant's own deployments (read and write) and the global ones (read only)."""

    scoped_queryset = ModelDeployment.objects.order_by("name", "priority", "id")
    serializer_class = DeploymentSerializer
    include_shared_on_read = True
    action_permissions = {
        "list": "deployment.view",
        "retrieve": "deployment.view",
        "create": "deployment.manage",
        "partial_update": "deployment.manage",
        "destroy": "deployment.manage",
    }
    filterset_fields = ["name", "provider", "enabled"]

    def list(self, request: Request, tenant: str) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(DeploymentSerializer(page, many=True).data)

    @extend_schema(parameters=[ID_PARAMETER])
    def retrieve(self, request: Request, tenant: str, pk: str) -> Response:
        return Response(DeploymentSerializer(self.get_object()).data)

    def create(self, request: Request, tenant: str) -> Response:
        serializer = DeploymentSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        deployment = services.deployment_create(
            context=self.audit_context,
            tenant=self.access.tenant,
            fields=dict(serializer.validated_data),
        )
        return Response(DeploymentSerializer(deployment).data, status=status.HTTP_201_CREATED)

    @extend_schema(parameters=[ID_PARAMETER])
    def partial_update(self, request: Request, tenant: str, pk: str) -> Response:
        deployment = self.get_object()
        serializer = DeploymentSerializer(deployment, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        deployment = services.deployment_update(
            context=self.audit_context,
            deployment=deployment,
            fields=dict(serializer.validated_data),
        )
        return Response(DeploymentSerializer(deployment).data)

    @extend_schema(parameters=[ID_PARAMETER])
    def destroy(self, request: Request, tenant: str, pk: str) -> Response:
        services.deployment_delete(context=self.audit_context, deployment=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class GlobalDeploymentViewSet(viewsets.GenericViewSet[ModelDeployment]):
    """Platform-wide deployments shared by every tenant: platform staff only."""

    serializer_class = DeploymentSerializer
    permission_classes = [permissions.IsAdminUser]
    lookup_value_regex = r"[0-9]+"
    filterset_fields = ["name", "provider", "enabled"]

    def get_queryset(self) -> QuerySet[ModelDeployment]:
        return ModelDeployment.objects.filter(tenant__isnull=True).order_by(
            "name", "priority", "id"
        )

    def list(self, request: Request) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(DeploymentSerializer(page, many=True).data)

    @extend_schema(parameters=[ID_PARAMETER])
    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(DeploymentSerializer(self.get_object()).data)

    def create(self, request: Request) -> Response:
        serializer = DeploymentSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        deployment = services.deployment_create(
            context=AuditContext.from_request(request),
            tenant=None,
            fields=dict(serializer.validated_data),
        )
        return Response(DeploymentSerializer(deployment).data, status=status.HTTP_201_CREATED)

    @extend_schema(parameters=[ID_PARAMETER])
    def partial_update(self, request: Request, pk: str) -> Response:
        serializer = DeploymentSerializer(self.get_object(), data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        deployment = services.deployment_update(
            context=AuditContext.from_request(request),
            deployment=self.get_object(),
            fields=dict(serializer.validated_data),
        )
        return Response(DeploymentSerializer(deployment).data)

    @extend_schema(parameters=[ID_PARAMETER])
    def destroy(self, request: Request, pk: str) -> Response:
        services.deployment_delete(
            context=AuditContext.from_request(request), deployment=self.get_object()
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class _ConfigViewSet(TenantScopedViewSet[Any]):
    """Tenant-owned routing configuration; global rows are listed read-only."""

    include_shared_on_read = True
    object_kwarg: str
    create_service: Any
    update_service: Any
    delete_service: Any

    def list(self, request: Request, tenant: str) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(parameters=[ID_PARAMETER])
    def retrieve(self, request: Request, tenant: str, pk: str) -> Response:
        return Response(self.get_serializer(self.get_object()).data)

    def create(self, request: Request, tenant: str) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        obj = type(self).create_service(context=self.audit_context, tenant=self.access.tenant,
                                        fields=dict(serializer.validated_data))  # fmt: skip
        return Response(self.get_serializer(obj).data, status=status.HTTP_201_CREATED)

    @extend_schema(parameters=[ID_PARAMETER])
    def partial_update(self, request: Request, tenant: str, pk: str) -> Response:
        obj = self.get_object()
        serializer = self.get_serializer(obj, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        obj = type(self).update_service(context=self.audit_context, **{self.object_kwarg: obj},
                                        fields=dict(serializer.validated_data))  # fmt: skip
        return Response(self.get_serializer(obj).data)

    @extend_schema(parameters=[ID_PARAMETER])
    def destroy(self, request: Request, tenant: str, pk: str) -> Response:
        type(self).delete_service(
            context=self.audit_context, **{self.object_kwarg: self.get_object()}
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


ROUTING_PERMISSIONS = {
    "list": "deployment.view",
    "retrieve": "deployment.view",
    "create": "deployment.manage",
    "partial_update": "deployment.manage",
    "destroy": "deployment.manage",
}


@extend_schema(parameters=[TENANT_PARAMETER])
class TaskProfileViewSet(_ConfigViewSet):
    scoped_queryset = TaskProfile.objects.order_by("name", "id")
    serializer_class = TaskProfileSerializer
    action_permissions = ROUTING_PERMISSIONS
    object_kwarg = "profile"
    create_service = services.task_profile_create
    update_service = services.task_profile_update
    delete_service = services.task_profile_delete


@extend_schema(parameters=[TENANT_PARAMETER])
class RoutingRuleViewSet(_ConfigViewSet):
    scoped_queryset = RoutingRule.objects.order_by("priority", "id")
    serializer_class = RoutingRuleSerializer
    action_permissions = ROUTING_PERMISSIONS
    object_kwarg = "rule"
    create_service = services.routing_rule_create
    update_service = services.routing_rule_update
    delete_service = services.routing_rule_delete


@extend_schema(parameters=[TENANT_PARAMETER])
class ExperimentViewSet(TenantScopedViewSet[Experiment]):
    """A/B experiments: drafts are edited, then started, stopped, promoted; results any time."""

    scoped_queryset = Experiment.objects.prefetch_related("variants").order_by("-created_at", "-id")
    serializer_class = ExperimentSerializer
    # Global experiments are listed; their results (every tenant's traffic) are not.
    include_shared_on_read = True
    action_permissions = {
        **ROUTING_PERMISSIONS,
        "results": "deployment.view",
        "start": "deployment.manage",
        "stop": "deployment.manage",
        "promote": "deployment.manage",
    }
    filterset_fields = ["status", "task_type"]

    def list(self, request: Request, tenant: str) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(ExperimentSerializer(page, many=True).data)

    @extend_schema(parameters=[ID_PARAMETER])
    def retrieve(self, request: Request, tenant: str, pk: str) -> Response:
        return Response(ExperimentSerializer(self.get_object()).data)

    def create(self, request: Request, tenant: str) -> Response:
        serializer = ExperimentSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        fields = dict(serializer.validated_data)
        variants = fields.pop("variants", None)
        if variants is None:
            raise DRFValidationError({"variants": ["Give 2 or more variants."]})
        experiment = experiments.experiment_create(
            context=self.audit_context, tenant=self.access.tenant, fields=fields,
            variants=[dict(v) for v in variants],
        )  # fmt: skip
        return Response(ExperimentSerializer(experiment).data, status=status.HTTP_201_CREATED)

    @extend_schema(parameters=[ID_PARAMETER])
    def partial_update(self, request: Request, tenant: str, pk: str) -> Response:
        experiment = self.get_object()
        serializer = ExperimentSerializer(experiment, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        fields = dict(serializer.validated_data)
        variants = fields.pop("variants", None)
        experiment = experiments.experiment_update(
            context=self.audit_context, experiment=experiment, fields=fields,
            variants=[dict(v) for v in variants] if variants is not None else None,
        )  # fmt: skip
        return Response(ExperimentSerializer(experiment).data)

    @extend_schema(parameters=[ID_PARAMETER])
    def destroy(self, request: Request, tenant: str, pk: str) -> Response:
        experiments.experiment_delete(context=self.audit_context, experiment=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(parameters=[ID_PARAMETER], request=None, responses=ExperimentSerializer)
    @action(detail=True, methods=["post"])
    def start(self, request: Request, tenant: str, pk: str) -> Response:
        experiment = experiments.experiment_start(
            context=self.audit_context, experiment=self.get_object()
        )
        return Response(ExperimentSerializer(experiment).data)

    @extend_schema(parameters=[ID_PARAMETER], request=None, responses=ExperimentSerializer)
    @action(detail=True, methods=["post"])
    def stop(self, request: Request, tenant: str, pk: str) -> Response:
        experiment = experiments.experiment_stop(
            context=self.audit_context, experiment=self.get_object()
        )
        return Response(ExperimentSerializer(experiment).data)

    @extend_schema(parameters=[ID_PARAMETER], request=PromoteSerializer,
                   responses=ExperimentSerializer)  # fmt: skip
    @action(detail=True, methods=["post"])
    def promote(self, request: Request, tenant: str, pk: str) -> Response:
        data = PromoteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        experiment = experiments.experiment_promote(
            context=self.audit_context, experiment=self.get_object(),
            variant=data.validated_data["variant"],
        )  # fmt: skip
        return Response(ExperimentSerializer(experiment).data)

    @extend_schema(parameters=[ID_PARAMETER], responses={200: dict})
    @action(detail=True, methods=["get"])
    def results(self, request: Request, tenant: str, pk: str) -> Response:
        return Response(experiment_results(self.get_object()))
