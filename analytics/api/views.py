"""Management API for finance: usage queries, streamed CSV / XLSX reports, export jobs and
insights (tenant-scoped; owner, admin and finance)."""

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.http import FileResponse, Http404, StreamingHttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from analytics import reports
from analytics.exports import export_path
from analytics.models import ExportStatus, ReportExport, UsageRecord
from analytics.selectors import TIME_GROUPS, USAGE_DIMENSIONS, usage_summary
from tenants.api.base import TenantScopedViewSet
from tenants.api.views import ID_PARAMETER, TENANT_PARAMETER

MAX_RANGE = timedelta(days=366)
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
RANGE_PARAMETERS = [
    OpenApiParameter("start", str, description="ISO date or datetime (tenant's zone if naive)"),
    OpenApiParameter("end", str, description="exclusive; default: now"),
    OpenApiParameter(
        "month", str, description="YYYY-MM in the tenant's zone, instead of start/end"
    ),
]


def _instant(text: str, zone: ZoneInfo, name: str) -> datetime:
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(), tzinfo=zone)
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValidationError({name: f"'{text[:40]}' is not an ISO date or datetime."}) from None
    return value if value.tzinfo else value.replace(tzinfo=zone)


def time_range(request: Request, tenant: Any) -> tuple[datetime, datetime]:
    """`month=YYYY-MM`, or `start` / `end`; default: this month so far (tenant's zone)."""
    zone = ZoneInfo(tenant.time_zone)
    params = request.query_params
    if params.get("month"):
        try:
            year, month = (int(part) for part in params["month"].split("-"))
            return reports.month_bounds(tenant, year, month)
        except (ValueError, TypeError):
            raise ValidationError({"month": "Use YYYY-MM."}) from None
    now = datetime.now(UTC)
    month_start = now.astimezone(zone).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    start = _instant(params["start"], zone, "start") if params.get("start") else month_start
    end = _instant(params["end"], zone, "end") if params.get("end") else now
    if end <= start:
        raise ValidationError({"end": "end must be after start."})
    if end - start > MAX_RANGE:
        raise ValidationError({"end": "A range covers at most 366 days; use an export job."})
    return start, end


class ExportSerializer(serializers.ModelSerializer[ReportExport]):
    class Meta:
        model = ReportExport
        fields = ["id", "kind", "file_format", "start", "end", "status", "size_bytes", "error",
                  "created_at", "finished_at"]  # fmt: skip
        read_only_fields = ["id", "status", "size_bytes", "error", "created_at", "finished_at"]


@extend_schema(parameters=[TENANT_PARAMETER])
class UsageViewSet(TenantScopedViewSet[UsageRecord]):
    """`GET /usage/`: totals filtered by `team`, `api_key`, `end_user`, `model`, `deployment`,
    `provider`, `task_type`, `status`, grouped by any of those and `hour` / `day` / `month`."""

    scoped_queryset = UsageRecord.objects.all()
    action_permissions = {"list": "usage.view"}

    @extend_schema(parameters=[*RANGE_PARAMETERS, OpenApiParameter("group_by", str)],
                   responses={200: dict})  # fmt: skip
    def list(self, request: Request, tenant: str) -> Response:
        start, end = time_range(request, self.access.tenant)
        group_by = [g for g in request.query_params.get("group_by", "").split(",") if g]
        unknown = sorted(set(group_by) - set(USAGE_DIMENSIONS) - set(TIME_GROUPS))
        if unknown:
            raise ValidationError({"group_by": f"Unknown grouping: {', '.join(unknown)}; use "
                                   f"{', '.join([*USAGE_DIMENSIONS, *TIME_GROUPS])}."})  # fmt: skip
        if sum(g in TIME_GROUPS for g in group_by) > 1:
            raise ValidationError({"group_by": "Group by at most one of hour, day, month."})
        filters = {name: request.query_params[name] for name in USAGE_DIMENSIONS
                   if request.query_params.get(name)}  # fmt: skip
        for name in ("team", "api_key", "deployment"):
            if name in filters and not filters[name].isdigit():
                raise ValidationError({name: "Give the numeric id."})
        source, rows = usage_summary(tenant=self.access.tenant, start=start, end=end,
                                     filters=filters, group_by=group_by)  # fmt: skip
        page = self.paginate_queryset(rows)
        response = self.get_paginated_response(page)
        response.data["source"] = source
        response.data["start"], response.data["end"] = start.isoformat(), end.isoformat()
        return response


def _download(rows: Any, file_format: str, name: str) -> Any:
    if file_format == "csv":
        response = StreamingHttpResponse(reports.csv_stream(rows), content_type="text/csv")
    else:
        response = FileResponse(reports.xlsx_file(rows, title=name.split("-")[0]),
                                content_type=XLSX)  # fmt: skip
    response["Content-Disposition"] = f'attachment; filename="{name}.{file_format}"'
    return response


def _file_format(request: Request) -> str:
    value = request.query_params.get("as", "csv")
    if value not in ("csv", "xlsx"):
        raise ValidationError({"as": "Use csv or xlsx."})
    return value


@extend_schema(parameters=[TENANT_PARAMETER])
class ReportViewSet(TenantScopedViewSet[ReportExport]):
    """Finance downloads (streamed) and export jobs for what is too large to wait for."""

    scoped_queryset = ReportExport.objects.order_by("-created_at", "-id")
    serializer_class = ExportSerializer
    action_permissions = {"statement": "usage.view", "usage": "usage.view",
                          "exports": "usage.view", "export": "usage.view",
                          "download": "usage.view", "insights": "usage.view"}  # fmt: skip

    @extend_schema(parameters=[*RANGE_PARAMETERS, OpenApiParameter("as", str)],
                   responses={200: bytes})  # fmt: skip
    @action(detail=False, methods=["get"])
    def statement(self, request: Request, tenant: str) -> Any:
        start, end = time_range(request, self.access.tenant)
        rows = reports.statement_rows(self.access.tenant, start, end)
        name = f"statement-{self.access.tenant.slug}-{start:%Y%m%d}"
        return _download(rows, _file_format(request), name)

    @extend_schema(parameters=[*RANGE_PARAMETERS, OpenApiParameter("as", str)],
                   responses={200: bytes})  # fmt: skip
    @action(detail=False, methods=["get"])
    def usage(self, request: Request, tenant: str) -> Any:
        start, end = time_range(request, self.access.tenant)
        rows = reports.usage_rows(self.access.tenant, start, end)
        return _download(
            rows, _file_format(request), f"usage-{self.access.tenant.slug}-{start:%Y%m%d}"
        )

    @extend_schema(request=ExportSerializer, responses=ExportSerializer)
    @action(detail=False, methods=["get", "post"])
    def exports(self, request: Request, tenant: str) -> Response:
        if request.method == "GET":
            page = self.paginate_queryset(self.get_queryset())
            return self.get_paginated_response(ExportSerializer(page, many=True).data)
        serializer = ExportSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        if data["end"] <= data["start"]:
            raise ValidationError({"end": "end must be after start."})
        export = ReportExport.objects.create(
            tenant=self.access.tenant, requested_by=request.user if request.user.pk else None,
            kind=data["kind"],
            file_format=data["file_format"], start=data["start"], end=data["end"],
        )  # fmt: skip
        from analytics.tasks import export_build_task

        export_build_task.delay(export.pk)  # the id only: the worker reads the rest
        return Response(ExportSerializer(export).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(parameters=[ID_PARAMETER], responses=ExportSerializer,
                   operation_id="tenants_reports_export_detail")  # fmt: skip
    @action(detail=False, methods=["get"], url_path=r"exports/(?P<pk>[0-9]+)")
    def export(self, request: Request, tenant: str, pk: str) -> Response:
        return Response(ExportSerializer(self.get_object()).data)

    @extend_schema(parameters=[ID_PARAMETER], responses={200: bytes})
    @action(detail=False, methods=["get"], url_path=r"exports/(?P<pk>[0-9]+)/download")
    def download(self, request: Request, tenant: str, pk: str) -> Any:
        export = self.get_object()
        path = export_path(export) if export.file_name else None
        if export.status != ExportStatus.DONE or path is None or not path.exists():
            raise Http404("The export is not ready.")
        name = f"{export.kind}-{export.start:%Y%m%d}.{export.file_format}"
        return FileResponse(path.open("rb"), as_attachment=True, filename=name)

    @extend_schema(responses={200: dict})
    @action(detail=False, methods=["get"])
    def insights(self, request: Request, tenant: str) -> Response:
        from analytics.insights import tenant_insights

        return Response(tenant_insights(self.access.tenant))
