"""Management API views for tenants, teams, members, API keys, audit events and tokens.

Views parse input, call one service or selector and render the output; rules live in services.
"""

from datetime import timedelta
from typing import Any, cast

from django.contrib.auth.models import User
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import exceptions, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from tenants import services
from tenants.api import serializers as s
from tenants.api.base import TenantScopedViewSet
from tenants.audit import AuditContext
from tenants.models import ApiKey, AuditEvent, ManagementToken, Membership, Team
from tenants.roles import role_allows
from tenants.selectors import is_platform_staff, tenant_access_for_user, tenant_list_for_user

TENANT_PARAMETER = OpenApiParameter(
    "tenant", str, OpenApiParameter.PATH, description="The tenant's slug."
)
ID_PARAMETER = OpenApiParameter("id", int, OpenApiParameter.PATH)


# --- Tenants ----------------------------------------------------------------------------------


@extend_schema_view(
    retrieve=extend_schema(parameters=[TENANT_PARAMETER]),
    partial_update=extend_schema(parameters=[TENANT_PARAMETER]),
)
class TenantViewSet(viewsets.GenericViewSet):
    """Tenants the caller belongs to (all of them for platform staff)."""

    serializer_class = s.TenantSerializer
    lookup_url_kwarg = "tenant"
    lookup_value_regex = r"[^/]+"

    def get_queryset(self) -> Any:
        return tenant_list_for_user(self.request.user)

    def _access(self, slug: str) -> Any:
        access = tenant_access_for_user(self.request.user, slug)
        if access is None:
            raise exceptions.NotFound("No such tenant.")
        return access

    def list(self, request: Request) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(s.TenantSerializer(page, many=True).data)

    def retrieve(self, request: Request, tenant: str) -> Response:
        return Response(s.TenantSerializer(self._access(tenant).tenant).data)

    @extend_schema(request=s.TenantCreateSerializer, responses={201: s.TenantSerializer})
    def create(self, request: Request) -> Response:
        if not is_platform_staff(request.user):
            raise exceptions.PermissionDenied("Only platform staff can create tenants.")
        data = _valid(s.TenantCreateSerializer, request.data)
        owner = None
        if "owner" in data:
            owner = s.MembershipCreateSerializer().validate_user(data.pop("owner"))
        tenant = services.tenant_create(
            context=AuditContext.from_request(request), owner=owner, **data
        )
        return Response(s.TenantSerializer(tenant).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.TenantUpdateSerializer, responses=s.TenantSerializer)
    def partial_update(self, request: Request, tenant: str) -> Response:
        access = self._access(tenant)
        if not role_allows(access.role, "tenant.update"):
            raise exceptions.PermissionDenied(
                f"Your role ({access.role}) cannot change the tenant."
            )
        data = _valid(s.TenantUpdateSerializer, request.data)
        staff_only = [name for name in s.TenantUpdateSerializer.STAFF_ONLY if name in data]
        if staff_only and not access.is_platform_staff:
            raise exceptions.PermissionDenied(
                f"Only platform staff can change {', '.join(staff_only)}."
            )
        updated = services.tenant_update(
            context=AuditContext.from_request(request), tenant=access.tenant, fields=data
        )
        return Response(s.TenantSerializer(updated).data)


def _user(request: Any) -> User:
    """The signed-in user (every view here requires authentication)."""
    return cast(User, request.user)


def _valid(serializer_class: type, data: Any, **kwargs: Any) -> dict[str, Any]:
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


# --- Teams ------------------------------------------------------------------------------------


@extend_schema(parameters=[TENANT_PARAMETER])
class TeamViewSet(TenantScopedViewSet[Team]):
    scoped_queryset = Team.objects.order_by("slug")
    serializer_class = s.TeamSerializer
    action_permissions = {
        "list": "team.view",
        "retrieve": "team.view",
        "create": "team.manage",
        "partial_update": "team.manage",
        "destroy": "team.manage",
    }
    filterset_fields = ["slug"]

    def list(self, request: Request, tenant: str) -> Response:
        queryset = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(s.TeamSerializer(page, many=True).data)

    @extend_schema(parameters=[ID_PARAMETER])
    def retrieve(self, request: Request, tenant: str, pk: str) -> Response:
        return Response(s.TeamSerializer(self.get_object()).data)

    def create(self, request: Request, tenant: str) -> Response:
        data = _valid(s.TeamSerializer, request.data)
        team = services.team_create(context=self.audit_context, tenant=self.access.tenant, **data)
        return Response(s.TeamSerializer(team).data, status=status.HTTP_201_CREATED)

    @extend_schema(parameters=[ID_PARAMETER])
    def partial_update(self, request: Request, tenant: str, pk: str) -> Response:
        team = self.get_object()
        data = _valid(s.TeamSerializer, request.data, partial=True)
        team = services.team_update(context=self.audit_context, team=team, fields=data)
        return Response(s.TeamSerializer(team).data)

    @extend_schema(parameters=[ID_PARAMETER])
    def destroy(self, request: Request, tenant: str, pk: str) -> Response:
        services.team_delete(context=self.audit_context, team=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- Members ----------------------------------------------------------------------------------


@extend_schema(parameters=[TENANT_PARAMETER])
class MembershipViewSet(TenantScopedViewSet[Membership]):
    scoped_queryset = (
        Membership.objects.select_related("user").prefetch_related("teams").order_by("id")
    )
    serializer_class = s.MembershipSerializer
    action_permissions = {
        "list": "membership.view",
        "retrieve": "membership.view",
        "create": "membership.manage",
        "partial_update": "membership.manage",
        "destroy": "membership.manage",
    }
    filterset_fields = ["role"]

    def list(self, request: Request, tenant: str) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(s.MembershipSerializer(page, many=True).data)

    @extend_schema(parameters=[ID_PARAMETER])
    def retrieve(self, request: Request, tenant: str, pk: str) -> Response:
        return Response(s.MembershipSerializer(self.get_object()).data)

    @extend_schema(request=s.MembershipCreateSerializer, responses={201: s.MembershipSerializer})
    def create(self, request: Request, tenant: str) -> Response:
        data = _valid(s.MembershipCreateSerializer, request.data)
        membership = services.membership_create(
            context=self.audit_context, tenant=self.access.tenant, actor=self.actor, **data
        )
        return Response(s.MembershipSerializer(membership).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        parameters=[ID_PARAMETER],
        request=s.MembershipUpdateSerializer,
        responses=s.MembershipSerializer,
    )
    def partial_update(self, request: Request, tenant: str, pk: str) -> Response:
        membership = self.get_object()
        data = _valid(
            s.MembershipUpdateSerializer, request.data, context=self.get_serializer_context()
        )
        membership = services.membership_update(
            context=self.audit_context, membership=membership, actor=self.actor, **data
        )
        return Response(s.MembershipSerializer(membership).data)

    @extend_schema(parameters=[ID_PARAMETER])
    def destroy(self, request: Request, tenant: str, pk: str) -> Response:
        services.membership_delete(
            context=self.audit_context, membership=self.get_object(), actor=self.actor
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- API keys ---------------------------------------------------------------------------------


@extend_schema(parameters=[TENANT_PARAMETER])
class ApiKeyViewSet(TenantScopedViewSet[ApiKey]):
    """Gateway API keys. Create and rotate return the key once; it cannot be read again."""

    scoped_queryset = ApiKey.objects.order_by("-created_at", "-id")
    serializer_class = s.ApiKeySerializer
    action_permissions = {
        "list": "api_key.view",
        "retrieve": "api_key.view",
        "create": "api_key.manage",
        "partial_update": "api_key.manage",
        "destroy": "api_key.manage",
        "rotate": "api_key.manage",
        "revoke": "api_key.manage",
    }
    filterset_fields = ["team", "prefix"]

    def list(self, request: Request, tenant: str) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(s.ApiKeySerializer(page, many=True).data)

    @extend_schema(parameters=[ID_PARAMETER])
    def retrieve(self, request: Request, tenant: str, pk: str) -> Response:
        return Response(s.ApiKeySerializer(self.get_object()).data)

    @extend_schema(request=s.ApiKeyWriteSerializer, responses={201: s.ApiKeyCreatedSerializer})
    def create(self, request: Request, tenant: str) -> Response:
        data = _valid(s.ApiKeyWriteSerializer, request.data, context=self.get_serializer_context())
        api_key, plaintext = services.api_key_create(
            context=self.audit_context, tenant=self.access.tenant, **data
        )
        return Response(_created_key(api_key, plaintext), status=status.HTTP_201_CREATED)

    @extend_schema(
        parameters=[ID_PARAMETER], request=s.ApiKeyWriteSerializer, responses=s.ApiKeySerializer
    )
    def partial_update(self, request: Request, tenant: str, pk: str) -> Response:
        api_key = self.get_object()
        data = _valid(
            s.ApiKeyWriteSerializer,
            request.data,
            partial=True,
            context=self.get_serializer_context(),
        )
        api_key = services.api_key_update(context=self.audit_context, api_key=api_key, fields=data)
        return Response(s.ApiKeySerializer(api_key).data)

    @extend_schema(parameters=[ID_PARAMETER], responses=s.ApiKeySerializer, request=None)
    def destroy(self, request: Request, tenant: str, pk: str) -> Response:
        """Revoke the key (keys are kept for the audit trail and usage history)."""
        api_key = services.api_key_revoke(context=self.audit_context, api_key=self.get_object())
        return Response(s.ApiKeySerializer(api_key).data)

    @extend_schema(
        parameters=[ID_PARAMETER],
        request=s.ApiKeyRotateSerializer,
        responses={201: s.ApiKeyCreatedSerializer},
    )
    @action(detail=True, methods=["post"])
    def rotate(self, request: Request, tenant: str, pk: str) -> Response:
        data = _valid(s.ApiKeyRotateSerializer, request.data)
        api_key, plaintext = services.api_key_rotate(
            context=self.audit_context,
            api_key=self.get_object(),
            grace=timedelta(seconds=data["grace_seconds"]),
        )
        return Response(_created_key(api_key, plaintext), status=status.HTTP_201_CREATED)

    @extend_schema(parameters=[ID_PARAMETER], request=None, responses=s.ApiKeySerializer)
    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, tenant: str, pk: str) -> Response:
        api_key = services.api_key_revoke(context=self.audit_context, api_key=self.get_object())
        return Response(s.ApiKeySerializer(api_key).data)


def _created_key(api_key: ApiKey, plaintext: str) -> dict[str, Any]:
    body = dict(s.ApiKeySerializer(api_key).data)
    body["key"] = plaintext
    return body


# --- Audit events -----------------------------------------------------------------------------


@extend_schema(parameters=[TENANT_PARAMETER])
class AuditEventViewSet(TenantScopedViewSet[AuditEvent]):
    scoped_queryset = AuditEvent.objects.order_by("-created_at", "-id")
    serializer_class = s.AuditEventSerializer
    action_permissions = {"list": "audit.view", "retrieve": "audit.view"}
    filterset_fields = ["action", "object_type", "object_id", "request_id"]

    def list(self, request: Request, tenant: str) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(s.AuditEventSerializer(page, many=True).data)

    @extend_schema(parameters=[ID_PARAMETER])
    def retrieve(self, request: Request, tenant: str, pk: str) -> Response:
        return Response(s.AuditEventSerializer(self.get_object()).data)


# --- The caller's own account -----------------------------------------------------------------


class ManagementTokenViewSet(viewsets.GenericViewSet):
    """The caller's own management tokens; create returns the token once."""

    serializer_class = s.ManagementTokenSerializer
    lookup_value_regex = r"[0-9]+"

    def get_queryset(self) -> Any:
        if getattr(self, "swagger_fake_view", False):
            return ManagementToken.objects.none()
        return ManagementToken.objects.filter(user=_user(self.request)).order_by("-created_at")

    def list(self, request: Request) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(s.ManagementTokenSerializer(page, many=True).data)

    @extend_schema(
        request=s.ManagementTokenCreateSerializer,
        responses={201: s.ManagementTokenCreatedSerializer},
    )
    def create(self, request: Request) -> Response:
        data = _valid(s.ManagementTokenCreateSerializer, request.data)
        token, plaintext = services.management_token_create(
            context=AuditContext.from_request(request), user=_user(request), **data
        )
        body = dict(s.ManagementTokenSerializer(token).data)
        body["token"] = plaintext
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(parameters=[ID_PARAMETER], responses=s.ManagementTokenSerializer)
    def destroy(self, request: Request, pk: str) -> Response:
        token = self.get_queryset().filter(pk=pk).first()
        if token is None:
            raise exceptions.NotFound()
        token = services.management_token_revoke(
            context=AuditContext.from_request(request), token=token
        )
        return Response(s.ManagementTokenSerializer(token).data)


class MeView(APIView):
    """Who the caller is and which tenants they can act in."""

    @extend_schema(responses=s.MeSerializer)
    def get(self, request: Request) -> Response:
        user = request.user
        memberships = Membership.objects.filter(user=_user(request)).select_related("tenant")
        return Response(
            s.MeSerializer(
                {
                    "id": user.pk,
                    "username": user.get_username(),
                    "email": getattr(user, "email", ""),
                    "is_platform_staff": is_platform_staff(user),
                    "memberships": memberships.order_by("tenant__slug"),
                }
            ).data
        )
