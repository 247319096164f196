"""Report files built by Celery workers: large exports on request, monthly statements.

A request creates a `ReportExport` row and enqueues its id (never data or credentials); the
worker writes the file under `EXPORT_DIR/<tenant>/`, then emails the requester a console
link (the file itself stays behind authentication). Monthly statements: on the first day of
each month in the tenant's time zone, the previous month's statement goes to every finance
member as CSV and XLSX attachments — once, thanks to a unique row per tenant and period.
"""

import logging
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import IntegrityError, transaction
from django.utils import timezone

from analytics import reports
from analytics.models import ExportStatus, ReportExport
from tenants.models import Membership, Tenant, TenantStatus
from tenants.roles import Role

logger = logging.getLogger(__name__)
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def export_path(export: ReportExport) -> Path:
    return Path(settings.EXPORT_DIR) / str(export.tenant_id) / export.file_name


def _rows(export: ReportExport) -> Iterator[list[Any]]:
    build = reports.statement_rows if export.kind == "statement" else reports.usage_rows
    return build(export.tenant, export.start, export.end)


def export_build(export_id: int) -> ReportExport:
    """Write the file of one export (idempotent: a finished export is left as it is)."""
    with transaction.atomic():
        export = ReportExport.objects.select_for_update().select_related("tenant").get(pk=export_id)
        if export.status == ExportStatus.DONE:
            return export
        export.status = ExportStatus.RUNNING
        stamp = f"{export.start:%Y%m%d}-{uuid.uuid4().hex[:12]}"
        export.file_name = f"{export.kind}-{stamp}.{export.file_format}"
        export.save(update_fields=["status", "file_name"])
    target = export_path(export)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        if export.file_format == "csv":
            with target.open("w", newline="", encoding="utf-8") as handle:
                for line in reports.csv_stream(_rows(export)):
                    handle.write(line)
        else:
            with (
                reports.xlsx_file(_rows(export), title=export.kind) as built,
                target.open("wb") as handle,
            ):
                shutil.copyfileobj(built, handle)
    except Exception as exc:
        ReportExport.objects.filter(pk=export.pk).update(
            status=ExportStatus.FAILED, error=f"{type(exc).__name__}"[:300],
            finished_at=timezone.now(),
        )  # fmt: skip
        raise
    export.status, export.size_bytes = ExportStatus.DONE, target.stat().st_size
    export.finished_at = timezone.now()
    export.save(update_fields=["status", "size_bytes", "finished_at"])
    _notify(export)
    return export


def _notify(export: ReportExport) -> None:
    user = export.requested_by
    if user is None or not user.email or export.emailed_at is not None:
        return
    link = (f"{settings.PUBLIC_BASE_URL}/api/v1/tenants/{export.tenant.slug}/reports/exports/"
            f"{export.pk}/download")  # fmt: skip
    EmailMessage(
        subject=f"[Switchboard] Your {export.kind} export for {export.tenant.name} is ready",
        body=(f"The {export.kind} export ({export.file_format.upper()}, "
              f"{export.start:%Y-%m-%d} to {export.end:%Y-%m-%d}) is ready.\n\n"
              f"Download (sign in required): {link}\n\n"
              f"It is kept for {settings.EXPORT_RETENTION_DAYS} days."),
        to=[user.email],
    ).send()  # fmt: skip
    ReportExport.objects.filter(pk=export.pk).update(emailed_at=timezone.now())


def statements_due(now: datetime | None = None) -> list[int]:
    """Create the monthly statement rows that are due (first day of the month, local time)."""
    now = now or datetime.now(UTC)
    created = []
    for tenant in Tenant.objects.filter(status=TenantStatus.ACTIVE):
        local = now.astimezone(ZoneInfo(tenant.time_zone))
        if local.day != 1:
            continue
        start, end = reports.previous_month(tenant, local.date())
        try:
            with transaction.atomic():
                export = ReportExport.objects.create(
                    tenant=tenant, kind="statement", file_format="xlsx", start=start, end=end,
                    scheduled=True,
                )  # fmt: skip
            created.append(export.pk)
        except IntegrityError:
            continue  # this period's statement exists already
    return created


def statements_send(limit: int = 50) -> int:
    """Build and email every scheduled statement not yet emailed (one row lock at a time)."""
    sent = 0
    for _ in range(limit):
        with transaction.atomic():
            export = (
                ReportExport.objects.select_for_update(skip_locked=True)
                .select_related("tenant")
                .filter(scheduled=True, emailed_at__isnull=True)
                .exclude(status=ExportStatus.FAILED)
                .order_by("created_at", "id")
                .first()
            )
            if export is None:
                return sent
            recipients = sorted(set(
                Membership.objects.filter(tenant=export.tenant, role=Role.FINANCE)
                .exclude(user__email="").values_list("user__email", flat=True)
            ))  # fmt: skip
            if recipients:
                _statement_email(export, recipients).send()
                sent += 1
            export.emailed_at = timezone.now()
            export.status = ExportStatus.DONE
            export.finished_at = export.finished_at or timezone.now()
            export.save(update_fields=["emailed_at", "status", "finished_at"])
    return sent


def _statement_email(export: ReportExport, recipients: list[str]) -> EmailMessage:
    tenant = export.tenant
    local_start = export.start.astimezone(ZoneInfo(tenant.time_zone))
    label = f"{local_start:%B %Y}"
    rows = list(reports.statement_rows(tenant, export.start, export.end))
    total = rows[-1]
    message = EmailMessage(
        subject=f"[Switchboard] {tenant.name}: cost statement for {label}",
        body=(f"The cost statement of {tenant.name} for {label} ({tenant.time_zone}) is "
              f"attached as CSV and XLSX.\n\nRequests: {total[2]}\nTotal cost: "
              f"${total[6]} (USD)\n\nConsole: {settings.PUBLIC_BASE_URL}/console/"),
        to=recipients,
    )  # fmt: skip
    message.attach(f"statement-{tenant.slug}-{local_start:%Y-%m}.csv",
                   "".join(reports.csv_stream(rows)), "text/csv")  # fmt: skip
    with reports.xlsx_file(rows, title="statement") as handle:
        message.attach(f"statement-{tenant.slug}-{local_start:%Y-%m}.xlsx", handle.read(), XLSX)
    return message


def exports_prune(now: datetime | None = None) -> int:
    """Delete export files and rows older than the retention period."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.EXPORT_RETENTION_DAYS)
    old = ReportExport.objects.filter(created_at__lt=cutoff)
    count = 0
    for export in old:
        if export.file_name:
            export_path(export).unlink(missing_ok=True)
        export.delete()
        count += 1
    return count
