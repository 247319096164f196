"""Explicit input and output shapes for the tenants management API."""

from typing import Any

from django.contrib.auth import get_user_model
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from tenants.models import (
    SLUG_VALIDATOR,
    USER_TIER_CHOICES,
    ApiKey,
    AuditEvent,
    ManagementToken,
    Membership,
    Team,
    Tenant,
    TenantStatus,
    validate_time_zone,
)
from tenants.roles import ROLE_CHOICES

NAME_MAX = 200


class TenantSerializer(serializers.ModelSerializer):
    class Meta:
        model = Tenant
        fields = ["id", "slug", "name", "tier", "status", "time_zone", "created_at", "updated_at"]
        read_only_fields = fields


class TenantCreateSerializer(serializers.Serializer):
    slug = serializers.CharField(max_length=63, validators=[SLUG_VALIDATOR])
    name = serializers.CharField(max_length=NAME_MAX)
    tier = serializers.ChoiceField(choices=USER_TIER_CHOICES, required=False)
    time_zone = serializers.CharField(
        max_length=64, required=False, validators=[validate_time_zone]
    )
    owner = serializers.CharField(
        max_length=150, required=False, help_text="Username or email of the first owner."
    )


class TenantUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=NAME_MAX, required=False)
    time_zone = serializers.CharField(
        max_length=64, required=False, validators=[validate_time_zone]
    )
    tier = serializers.ChoiceField(
        choices=USER_TIER_CHOICES, required=False, help_text="Platform staff only."
    )
    status = serializers.ChoiceField(
        choices=TenantStatus.choices, required=False, help_text="Platform staff only."
    )

    STAFF_ONLY = ("tier", "status")


class TeamSerializer(serializers.ModelSerializer):
    slug = serializers.CharField(max_length=63, validators=[SLUG_VALIDATOR])
    name = serializers.CharField(max_length=NAME_MAX)

    class Meta:
        model = Team
        fields = ["id", "slug", "name", "description", "created_at"]
        read_only_fields = ["id", "created_at"]


@extend_schema_field(OpenApiTypes.INT)
class TenantTeamField(serializers.PrimaryKeyRelatedField):
    """A team id, looked up only among the teams of the tenant in the URL (fails closed)."""

    def get_queryset(self) -> Any:
        tenant = self.context.get("tenant")
        if tenant is None:
            return Team.objects.none()
        return Team.objects.filter(tenant=tenant)


class MemberUserSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    username = serializers.CharField(read_only=True)
    email = serializers.CharField(read_only=True)


class MembershipSerializer(serializers.ModelSerializer):
    user = MemberUserSerializer(read_only=True)
    teams: Any = serializers.PrimaryKeyRelatedField(many=True, read_only=True)

    class Meta:
        model = Membership
        fields = ["id", "user", "role", "teams", "created_at"]
        read_only_fields = fields


class MembershipCreateSerializer(serializers.Serializer):
    user = serializers.CharField(max_length=254, help_text="Username or email of an existing user.")
    role = serializers.ChoiceField(choices=ROLE_CHOICES)

    def validate_user(self, value: str) -> Any:
        users = get_user_model().objects.filter(is_active=True)
        user = users.filter(username=value).first() or users.filter(email__iexact=value).first()
        if user is None:
            raise serializers.ValidationError("No active user with this username or email.")
        return user


class MembershipUpdateSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=ROLE_CHOICES, required=False)
    teams = TenantTeamField(many=True, required=False)


def _name_list() -> serializers.ListField:
    return serializers.ListField(
        child=serializers.CharField(max_length=200), required=False, max_length=500
    )


class ApiKeySerializer(serializers.ModelSerializer):
    status = serializers.SerializerMethodField()

    class Meta:
        model = ApiKey
        fields = [
            "id",
            "name",
            "prefix",
            "team",
            "status",
            "created_at",
            "expires_at",
            "revoked_at",
            "last_used_at",
            "rotated_from",
            "allowed_models",
            "allowed_task_types",
            "max_user_tier",
            "rpm_limit",
            "tpm_limit",
            "max_concurrency",
        ]
        read_only_fields = fields

    def get_status(self, obj: ApiKey) -> str:
        now = timezone.now()
        if obj.revoked_at is not None and obj.revoked_at <= now:
            return "revoked"
        if obj.expires_at is not None and obj.expires_at <= now:
            return "expired"
        return "active"


class ApiKeyWriteSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=NAME_MAX)
    team = TenantTeamField(required=False, allow_null=True)
    expires_at = serializers.DateTimeField(required=False, allow_null=True)
    allowed_models = _name_list()
    allowed_task_types = _name_list()
    max_user_tier = serializers.ChoiceField(
        choices=USER_TIER_CHOICES, required=False, allow_blank=True
    )
    rpm_limit = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=10_000_000
    )
    tpm_limit = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=2_000_000_000
    )
    max_concurrency = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=100_000
    )


class ApiKeyCreatedSerializer(ApiKeySerializer):
    key = serializers.CharField(read_only=True, help_text="Shown once; store it now.")

    class Meta(ApiKeySerializer.Meta):
        fields = [*ApiKeySerializer.Meta.fields, "key"]
        read_only_fields = fields


class ApiKeyRotateSerializer(serializers.Serializer):
    grace_seconds = serializers.IntegerField(
        required=False,
        default=0,
        min_value=0,
        max_value=7 * 24 * 3600,
        help_text="How long the old key keeps working (0 to 7 days).",
    )


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "created_at",
            "actor",
            "actor_label",
            "action",
            "object_type",
            "object_id",
            "object_repr",
            "changes",
            "ip_address",
            "request_id",
        ]
        read_only_fields = fields


class ManagementTokenSerializer(serializers.ModelSerializer):
    class Meta:
        model = ManagementToken
        fields = ["id", "name", "prefix", "created_at", "expires_at", "revoked_at", "last_used_at"]
        read_only_fields = fields


class ManagementTokenCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=NAME_MAX)
    expires_at = serializers.DateTimeField(required=False, allow_null=True)


class ManagementTokenCreatedSerializer(ManagementTokenSerializer):
    token = serializers.CharField(read_only=True, help_text="Shown once; store it now.")

    class Meta(ManagementTokenSerializer.Meta):
        fields = [*ManagementTokenSerializer.Meta.fields, "token"]
        read_only_fields = fields


class MeMembershipSerializer(serializers.Serializer):
    tenant = serializers.CharField(source="tenant.slug")
    role = serializers.CharField()


class MeSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    email = serializers.CharField()
    is_platform_staff = serializers.BooleanField()
    memberships = MeMembershipSerializer(many=True)
