"""Serializer pieces shared by the apps' management APIs."""

from typing import Any

from django.db.models import Model
from rest_framework import serializers


class ScopedModelSerializer(serializers.ModelSerializer[Any]):
    """For tenant-owned rows that may also be global: adds `scope`, and leaves model-level
    rules (uniqueness, cross-field and ownership checks) to the service that saves it."""

    scope = serializers.SerializerMethodField()

    def get_scope(self, obj: Model) -> str:
        return "global" if getattr(obj, "tenant_id", None) is None else "tenant"

    def run_validators(self, value: Any) -> None:
        return None
