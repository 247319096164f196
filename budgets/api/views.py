"""Management API: budgets, their live status and alert history (tenant-scoped)."""

from typing import Any

from django.db.models import Q
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from budgets import services
from budgets.models import Budget, BudgetAlert
from budgets.selectors import budget_status
from gateway.models import ModelDeployment
from tenants.api.base import TenantScopedViewSet
from tenants.api.serializers import TenantTeamField
from tenants.api.views import ID_PARAMETER, TENANT_PARAMETER
from tenants.models import ApiKey


class _TenantKeyField(serializers.PrimaryKeyRelatedField):
    def get_queryset(self) -> Any:
        tenant = self.context.get("tenant")
        return ApiKey.objects.filter(tenant=tenant) if tenant else ApiKey.objects.none()


class _VisibleDeploymentField(serializers.PrimaryKeyRelatedField):
    def get_queryset(self) -> Any:
        tenant = self.context.get("tenant")
        if tenant is None:
            return ModelDeployment.objects.none()
        return ModelDeployment.objects.filter(Q(tenant=tenant) | Q(tenant__isnull=True))


class BudgetSerializer(serializers.ModelSerializer[Budget]):
    team = TenantTeamField(required=False, allow_null=True)
    api_key = _TenantKeyField(required=False, allow_null=True)
    deployment = _VisibleDeploymentField(required=False, allow_null=True)

    class Meta:
        model = Budget
        fields = ["id", *services.BUDGET_FIELDS, "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]

    def run_validators(self, value: Any) -> None:
        return None  # uniqueness and cross-field rules: the model's clean(), in the service


class BudgetAlertSerializer(serializers.ModelSerializer[BudgetAlert]):
    class Meta:
        model = BudgetAlert
        fields = ["id", "budget", "period_start", "kind", "threshold", "spent_usd", "limit_usd",
                  "forecast_usd", "recipients", "created_at", "sent_at"]  # fmt: skip
        read_only_fields = fields


@extend_schema(parameters=[TENANT_PARAMETER])
class BudgetViewSet(TenantScopedViewSet[Budget]):
    """Budgets: finance and managers write; every member reads spend against them."""

    scoped_queryset = Budget.objects.select_related("tenant").order_by("name", "id")
    serializer_class = BudgetSerializer
    action_permissions = {
        "list": "budget.view",
        "retrieve": "budget.view",
        "status": "budget.view",
        "alerts": "budget.view",
        "create": "budget.manage",
        "partial_update": "budget.manage",
        "destroy": "budget.manage",
    }
    filterset_fields = ["scope", "period", "enabled"]

    def list(self, request: Request, tenant: str) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(parameters=[ID_PARAMETER])
    def retrieve(self, request: Request, tenant: str, pk: str) -> Response:
        return Response(self.get_serializer(self.get_object()).data)

    def create(self, request: Request, tenant: str) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        budget = services.budget_create(context=self.audit_context, tenant=self.access.tenant,
                                        fields=dict(serializer.validated_data))  # fmt: skip
        return Response(self.get_serializer(budget).data, status=status.HTTP_201_CREATED)

    @extend_schema(parameters=[ID_PARAMETER])
    def partial_update(self, request: Request, tenant: str, pk: str) -> Response:
        serializer = self.get_serializer(self.get_object(), data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        budget = services.budget_update(context=self.audit_context, budget=self.get_object(),
                                        fields=dict(serializer.validated_data))  # fmt: skip
        return Response(self.get_serializer(budget).data)

    @extend_schema(parameters=[ID_PARAMETER])
    def destroy(self, request: Request, tenant: str, pk: str) -> Response:
        services.budget_delete(context=self.audit_context, budget=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(parameters=[ID_PARAMETER], responses={200: dict})
    @action(detail=True, methods=["get"])
    def status(self, request: Request, tenant: str, pk: str) -> Response:
        return Response(budget_status(self.get_object()))

    @extend_schema(parameters=[ID_PARAMETER], responses=BudgetAlertSerializer(many=True))
    @action(detail=True, methods=["get"])
    def alerts(self, request: Request, tenant: str, pk: str) -> Response:
        alerts = BudgetAlert.objects.filter(budget=self.get_object()).order_by("-created_at")[:200]
        return Response(BudgetAlertSerializer(alerts, many=True).data)
