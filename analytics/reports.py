"""Finance reports: the cost statement of a tenant and period, and the record-level export,
as rows that the CSV and XLSX writers stream (nothing holds a month of records in memory).

Every money figure is summed by PostgreSQL from `UsageRecord.cost_usd` (NUMERIC(20,10)) and
written with all ten decimals, so the statement's totals are the ledger's to the cent.
"""

import csv
import tempfile
from collections.abc import Iterable, Iterator
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import IO, Any
from zoneinfo import ZoneInfo

from django.db.models import Count, F, Q, Sum
from django.db.models.functions import Coalesce, TruncDay

from analytics.models import UsageRecord
from tenants.models import Tenant

STATEMENT_HEADER = ["section", "item", "requests", "errors", "prompt_tokens",
                    "completion_tokens", "cost_usd"]  # fmt: skip
USAGE_HEADER = ["created_at", "request_id", "team", "api_key", "end_user", "model", "provider",
                "deployment_id", "task_type", "status", "http_status", "prompt_tokens",
                "completion_tokens", "cached_tokens", "cost_usd", "latency_ms", "stream",
                "cached"]  # fmt: skip
ERRORS = Q(status__in=["provider_error", "error", "blocked"])
_SUMS: dict[str, Any] = {
    "requests": Count("id"),
    "errors": Count("id", filter=ERRORS),
    "prompt": Sum("prompt_tokens"),
    "completion": Sum("completion_tokens"),
    "cost": Sum("cost_usd"),
}
_USAGE_COLUMNS = ("created_at", "request_id", "team__name", "api_key__name", "end_user", "model",
                  "provider", "deployment_id", "task_type", "status", "http_status",
                  "prompt_tokens", "completion_tokens", "cached_tokens", "cost_usd", "latency_ms",
                  "stream", "cached")  # fmt: skip


def month_bounds(tenant: Tenant, year: int, month: int) -> tuple[datetime, datetime]:
    """A calendar month in the tenant's time zone, as aware datetimes."""
    zone = ZoneInfo(tenant.time_zone)
    start = datetime(year, month, 1, tzinfo=zone)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=zone)
    return start, end


def _money(value: Decimal | None) -> str:
    return f"{(value or Decimal(0)):.10f}"


def _section(records: Any, section: str, label: Any) -> Iterator[list[Any]]:
    rows = records.values(item=label).annotate(**_SUMS).order_by("-cost", "item")
    for row in rows:
        yield [section, _label(row["item"]), row["requests"], row["errors"], row["prompt"] or 0,
               row["completion"] or 0, _money(row["cost"])]  # fmt: skip


def _label(value: Any) -> str:
    if value is None or value == "":
        return "(none)"
    if isinstance(value, datetime | date):
        return value.strftime("%Y-%m-%d")
    return str(value)


def statement_rows(tenant: Tenant, start: datetime, end: datetime) -> Iterator[list[Any]]:
    """Header, the breakdowns (team, key, model, day in the tenant's zone) and the total."""
    records = UsageRecord.objects.filter(tenant=tenant, created_at__gte=start, created_at__lt=end)
    yield ["statement", tenant.name, f"{start.isoformat()} to {end.isoformat()}",
           f"time zone {tenant.time_zone}", "", "", ""]  # fmt: skip
    yield STATEMENT_HEADER
    yield from _section(records, "team", Coalesce(F("team__name"), F("team__slug")))
    yield from _section(records, "api_key", F("api_key__name"))
    yield from _section(records, "model", F("model"))
    yield from _section(records, "day", TruncDay("created_at", tzinfo=ZoneInfo(tenant.time_zone)))
    total = records.aggregate(**_SUMS)
    yield ["total", "all", total["requests"], total["errors"], total["prompt"] or 0,
           total["completion"] or 0, _money(total["cost"])]  # fmt: skip


def usage_rows(tenant: Tenant, start: datetime, end: datetime) -> Iterator[list[Any]]:
    """Every record of the period, oldest first, read in chunks from a server-side cursor."""
    yield USAGE_HEADER
    records = (
        UsageRecord.objects.filter(tenant=tenant, created_at__gte=start, created_at__lt=end)
        .order_by("created_at", "id")
        .values_list(*_USAGE_COLUMNS)
    )
    for row in records.iterator(chunk_size=2000):
        values = list(row)
        values[0] = values[0].isoformat()
        values[14] = _money(values[14])
        yield ["" if value is None else value for value in values]


class _Echo:
    def write(self, value: str) -> str:
        return value


def csv_stream(rows: Iterable[list[Any]]) -> Iterator[str]:
    """CSV text, one row at a time (for StreamingHttpResponse)."""
    writer = csv.writer(_Echo())
    for row in rows:
        yield writer.writerow([_csv_safe(value) for value in row])


def _csv_safe(value: Any) -> Any:
    """Defuse spreadsheet formulas in text that came from API callers (end-user ids, names)."""
    risky = isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r")
    return "'" + value if risky and not _is_number(value) else value


def _is_number(text: str) -> bool:
    try:
        Decimal(text)
    except ArithmeticError:
        return False
    return True


def xlsx_file(rows: Iterable[list[Any]], *, title: str) -> IO[bytes]:
    """Write the rows into a temporary XLSX (openpyxl's write-only mode streams rows to disk)
    and return it rewound; it is deleted when closed."""
    from openpyxl import Workbook

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(title=title[:31])
    for row in rows:
        sheet.append([_xlsx_value(value) for value in row])
    handle = tempfile.TemporaryFile(suffix=".xlsx")  # noqa: SIM115 (returned open)
    workbook.save(handle)
    handle.seek(0)
    return handle


def _xlsx_value(value: Any) -> Any:
    if isinstance(value, str):
        if value[:1] == "=":
            return "'" + value
        if value and value[0].isdigit() and "." in value:
            try:
                return Decimal(value)  # money columns stay numbers in the sheet
            except ArithmeticError:
                return value
    return value


def previous_month(tenant: Tenant, today: date) -> tuple[datetime, datetime]:
    first = today.replace(day=1)
    last_month = first - timedelta(days=1)
    return month_bounds(tenant, last_month.year, last_month.month)
