from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from analytics.models import UsageRecord


@admin.register(UsageRecord)
class UsageRecordAdmin(admin.ModelAdmin):
    """Usage is the finance ledger: it is written only by the stream drain, never by hand."""

    list_display = [
        "created_at",
        "request_id",
        "tenant",
        "model",
        "provider",
        "status",
        "prompt_tokens",
        "completion_tokens",
        "cost_usd",
        "latency_ms",
        "cached",
    ]
    # Filters with fixed values only: a per-column DISTINCT over the whole ledger is slow.
    list_filter = ["status", "cached", "stream"]
    search_fields = ["=request_id", "=end_user"]
    list_select_related = ["tenant"]
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
