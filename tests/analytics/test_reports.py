"""Usage API, streamed CSV / XLSX reports, rollups, replay idempotency, statements and export
jobs — against real PostgreSQL, Redis, an SMTP server and a Celery worker."""

import io
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import connection
from django.db.models import Sum
from openpyxl import load_workbook

from analytics.exports import statements_due, statements_send
from analytics.models import ReportExport, UsageRecord, UsageRollup
from analytics.rollups import rollups_rebuild
from analytics.usage import UsageEvent, usage_event_append, usage_stream_drain
from tenants.roles import Role
from tests.budgets.test_alerts import _Inbox
from tests.system.conftest import free_port
from tests.tenants.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]
USAGE = "/api/v1/tenants/acme/usage/"
REPORTS = "/api/v1/tenants/acme/reports/"


def _events(cast, n: int, *, day: datetime) -> list[UsageEvent]:  # type: ignore[no-untyped-def]
    models = ["gpt-a", "gpt-b", "claude-c"]
    statuses = ["success"] * 8 + ["provider_error", "blocked"]
    return [
        UsageEvent(
            request_id=f"r-{day:%Y%m%d}-{i}", created_at=day + timedelta(minutes=7 * i),
            tenant_id=cast.acme.pk, model=models[i % 3], provider="openai",
            cost_usd=Decimal("0.0000123457") * (i % 7 + 1), latency_ms=40 + 37 * (i % 11),
            status=statuses[i % 10], http_status=200, prompt_tokens=10 + i % 5,
            completion_tokens=20 + i % 3, end_user=f"user-{i % 4}", task_type="chat",
        )
        for i in range(n)
    ]  # fmt: skip


def _ingest(events: list[UsageEvent]) -> None:
    from asgiref.sync import async_to_sync

    async def push() -> None:
        for event in events:
            await usage_event_append(event)

    async_to_sync(push)()
    usage_stream_drain()


@pytest.fixture
def finance(cast):  # type: ignore[no-untyped-def]
    cast.set_bob_role(Role.FINANCE)
    return cast.client(cast.bob)


MONTH_START = datetime(2026, 10, 1, tzinfo=UTC)


def test_records_rollups_api_csv_and_xlsx_agree_to_the_cent(cast, finance) -> None:
    _ingest(_events(cast, 300, day=MONTH_START + timedelta(days=3)))
    records = UsageRecord.objects.filter(tenant=cast.acme)
    ledger = records.aggregate(total=Sum("cost_usd"))["total"]
    hourly = UsageRollup.objects.filter(tenant=cast.acme, granularity="hour")
    assert hourly.aggregate(total=Sum("cost_usd"))["total"] == ledger
    assert hourly.aggregate(n=Sum("requests"))["n"] == 300
    daily = UsageRollup.objects.filter(tenant=cast.acme, granularity="day")
    assert daily.aggregate(total=Sum("cost_usd"))["total"] == ledger

    fast = finance.get(USAGE, {"month": "2026-10"}).json()
    assert fast["source"] == "rollups"
    assert Decimal(fast["results"][0]["cost_usd"]) == ledger
    assert fast["results"][0]["requests"] == 300
    assert fast["results"][0]["errors"] == 60
    assert fast["results"][0]["latency_ms_p95"] is not None
    by_model = finance.get(USAGE, {"month": "2026-10", "group_by": "model"}).json()["results"]
    assert sum(Decimal(r["cost_usd"]) for r in by_model) == ledger
    by_day = finance.get(USAGE, {"month": "2026-10", "group_by": "day,status"}).json()
    assert by_day["source"] == "records"
    assert sum(Decimal(r["cost_usd"]) for r in by_day["results"]) == ledger
    one_user = finance.get(USAGE, {"month": "2026-10", "end_user": "user-1"}).json()
    assert one_user["results"][0]["requests"] == 75

    csv_text = b"".join(finance.get(f"{REPORTS}statement/", {"month": "2026-10"})
                        .streaming_content).decode()  # fmt: skip
    total_line = csv_text.strip().splitlines()[-1].split(",")
    assert total_line[0] == "total"
    assert Decimal(total_line[-1]) == ledger
    model_lines = [line.split(",") for line in csv_text.splitlines() if line.startswith("model,")]
    assert sum(Decimal(line[-1]) for line in model_lines) == ledger

    xlsx = finance.get(f"{REPORTS}statement/", {"month": "2026-10", "as": "xlsx"})
    assert xlsx.status_code == 200
    sheet = load_workbook(io.BytesIO(b"".join(xlsx.streaming_content)), read_only=True).active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[-1][0] == "total"
    assert round(Decimal(str(rows[-1][-1])), 2) == round(ledger, 2)

    export = finance.get(f"{REPORTS}usage/", {"month": "2026-10"})
    lines = b"".join(export.streaming_content).decode().strip().splitlines()
    assert len(lines) == 301
    assert sum(Decimal(line.split(",")[14]) for line in lines[1:]) == ledger


def test_replaying_the_stream_changes_nothing(cast) -> None:
    events = _events(cast, 50, day=MONTH_START)
    _ingest(events)
    before = (UsageRecord.objects.count(), UsageRollup.objects.aggregate(n=Sum("requests"))["n"],
              UsageRollup.objects.aggregate(c=Sum("cost_usd"))["c"])  # fmt: skip
    _ingest(events)  # every entry delivered again
    _ingest(events[:10])
    after = (UsageRecord.objects.count(), UsageRollup.objects.aggregate(n=Sum("requests"))["n"],
             UsageRollup.objects.aggregate(c=Sum("cost_usd"))["c"])  # fmt: skip
    assert after == before
    assert rollups_rebuild(tenant_id=cast.acme.pk) == 50
    rebuilt = (UsageRecord.objects.count(), UsageRollup.objects.aggregate(n=Sum("requests"))["n"],
               UsageRollup.objects.aggregate(c=Sum("cost_usd"))["c"])  # fmt: skip
    assert rebuilt == before


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"group_by": "colour"}, "Unknown grouping"),
        ({"group_by": "day,month"}, "at most one"),
        ({"start": "yesterday"}, "not an ISO date"),
        ({"start": "2026-10-05", "end": "2026-10-01"}, "after start"),
        ({"start": "2024-01-01", "end": "2026-01-01"}, "at most 366 days"),
        ({"month": "2026-13"}, "YYYY-MM"),
        ({"team": "abc"}, "numeric id"),
    ],
)
def test_bad_usage_queries_are_400(cast, finance, params, needle) -> None:
    response = finance.get(USAGE, params)
    assert response.status_code == 400, response.content
    assert needle in response.content.decode()


def test_usage_is_for_finance_and_managers_only(cast) -> None:
    assert cast.client(cast.bob).get(USAGE).status_code == 403  # viewer
    assert cast.client(cast.charlie).get(USAGE).status_code == 404  # another tenant
    assert cast.client(cast.alice).get(USAGE).status_code == 200
    bad = cast.client(cast.alice).get(f"{REPORTS}statement/", {"as": "pdf"})
    assert bad.status_code == 400


def test_csv_defuses_formulas_from_callers(cast, finance) -> None:
    event = _events(cast, 1, day=MONTH_START)[0]
    event = UsageEvent(**{**{f: getattr(event, f) for f in event.__dataclass_fields__},
                          "end_user": "=HYPERLINK(\"http://x\")"})  # fmt: skip
    _ingest([event])
    text = b"".join(finance.get(f"{REPORTS}usage/", {"month": "2026-10"})
                    .streaming_content).decode()  # fmt: skip
    assert "'=HYPERLINK" in text


@pytest.fixture
def smtp(settings):  # type: ignore[no-untyped-def]
    from aiosmtpd.controller import Controller

    inbox = _Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_USE_TLS = "127.0.0.1", port, False
    inbox.port = port  # type: ignore[attr-defined]
    yield inbox
    controller.stop()


def test_monthly_statement_email_arrives_once_with_attachments(cast, smtp) -> None:
    MembershipFactory(tenant=cast.acme, user=UserFactory(username="f", email="f@acme.test"),
                      role=Role.FINANCE)  # fmt: skip
    _ingest(_events(cast, 40, day=MONTH_START + timedelta(days=10)))
    first_of_november = datetime(2026, 11, 1, 6, tzinfo=UTC)
    assert len(statements_due(first_of_november)) == 2  # acme and globex (both UTC)
    assert statements_due(first_of_november) == []  # once per tenant and period
    assert statements_due(first_of_november + timedelta(days=1)) == []  # not the 1st any more
    assert statements_send() == 1  # globex has no finance member: recorded, nothing sent
    assert statements_send() == 0
    ((rcpt, message),) = smtp.messages
    assert rcpt == ["f@acme.test"]
    assert "cost statement for October 2026" in message["Subject"]
    parts = {part.get_filename(): part for part in message.walk() if part.get_filename()}
    assert set(parts) == {"statement-acme-2026-10.csv", "statement-acme-2026-10.xlsx"}
    ledger = UsageRecord.objects.filter(tenant=cast.acme).aggregate(t=Sum("cost_usd"))["t"]
    csv_total = parts["statement-acme-2026-10.csv"].get_payload(decode=True).decode()
    assert Decimal(csv_total.strip().splitlines()[-1].split(",")[-1]) == ledger
    workbook = load_workbook(io.BytesIO(parts["statement-acme-2026-10.xlsx"].get_payload(
        decode=True)), read_only=True)  # fmt: skip
    assert list(workbook.active.iter_rows(values_only=True))[-1][0] == "total"


def _worker_env(smtp_port: int) -> dict[str, str]:
    db = connection.settings_dict
    url = (f"postgres://{db.get('USER') or 'postgres'}@{db.get('HOST') or '127.0.0.1'}"
           f":{db.get('PORT') or 5432}/{db['NAME']}")  # fmt: skip
    from django.conf import settings

    return {**os.environ, "SWITCHBOARD_ENV": "test", "DATABASE_URL": url,
            "REDIS_URL": settings.REDIS_URL, "EMAIL_URL": f"smtp://127.0.0.1:{smtp_port}",
            "EXPORT_DIR": str(settings.EXPORT_DIR)}  # fmt: skip


def test_a_large_export_runs_on_a_celery_worker_and_emails_a_link(cast, smtp, finance) -> None:
    cast.bob.email = "bob@acme.test"
    cast.bob.save(update_fields=["email"])
    _ingest(_events(cast, 120, day=MONTH_START))
    worker = subprocess.Popen(
        [str(Path(sys.executable).parent / "celery"), "-A", "switchboard", "worker", "-Q",
         "default", "--pool", "solo", "--loglevel", "WARNING", "--without-heartbeat",
         "--without-gossip", "--without-mingle"],
        cwd=ROOT, env=_worker_env(smtp.port),  # type: ignore[attr-defined]
    )  # fmt: skip
    try:
        created = finance.post(f"{REPORTS}exports/", {
            "kind": "usage", "file_format": "xlsx", "start": "2026-10-01T00:00:00Z",
            "end": "2026-11-01T00:00:00Z"}, format="json")  # fmt: skip
        assert created.status_code == 202, created.content
        export_id = created.json()["id"]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not smtp.messages:
            time.sleep(0.2)
    finally:
        worker.terminate()
        worker.wait(20)
    ((rcpt, message),) = smtp.messages
    assert rcpt == ["bob@acme.test"]
    assert f"/reports/exports/{export_id}/download" in message.get_payload()
    assert ReportExport.objects.get(pk=export_id).status == "done"
    download = finance.get(f"{REPORTS}exports/{export_id}/download/")
    assert download.status_code == 200
    sheet = load_workbook(io.BytesIO(b"".join(download.streaming_content)), read_only=True).active
    assert len(list(sheet.iter_rows(values_only=True))) == 121
    theirs = f"/api/v1/tenants/acme/reports/exports/{export_id}/download/"
    assert cast.client(cast.charlie).get(theirs).status_code == 404


def test_insights_flag_a_failing_deployment(cast, finance) -> None:
    events = _events(cast, 100, day=datetime.now(UTC) - timedelta(hours=30))
    fields = list(events[0].__dataclass_fields__)
    _ingest([UsageEvent(**{**{f: getattr(e, f) for f in fields}, "deployment_id": 77})
             for e in events])  # fmt: skip
    body = finance.get(f"{REPORTS}insights/").json()
    assert Decimal(body["month"]["spent_usd"]) >= 0
    (hint,) = [h for h in body["hints"] if h["kind"] == "high_error_rate"]
    assert hint["deployment"] == 77
    assert "failed 20% of 100 calls" in hint["message"]


def test_rollups_rebuild_command(cast) -> None:
    from django.core.management import CommandError, call_command

    _ingest(_events(cast, 30, day=MONTH_START))
    UsageRollup.objects.all().delete()
    out = io.StringIO()
    call_command("rollups_rebuild", "--tenant", "acme", "--start", "2026-10-01", stdout=out)
    assert "from 30 records" in out.getvalue()
    assert UsageRollup.objects.filter(granularity="day").aggregate(n=Sum("requests"))["n"] == 30
    with pytest.raises(CommandError, match="No tenant"):
        call_command("rollups_rebuild", "--tenant", "nope")
    with pytest.raises(CommandError, match="ISO date"):
        call_command("rollups_rebuild", "--start", "soon")
