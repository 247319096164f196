"""Budget alert emails received by a real SMTP server on 127.0.0.1 (aiosmtpd): one per
threshold, never two — with concurrent senders and with a sender killed mid-task."""

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from django.db import connection

from analytics.models import UsageRecord
from budgets.alerts import alerts_evaluate, alerts_send
from budgets.models import BudgetAlert
from budgets.services import budget_create
from tenants.audit import AuditContext
from tenants.roles import Role
from tests.system.conftest import free_port
from tests.tenants.factories import MembershipFactory, UserFactory

CTX = AuditContext.system("test")
ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db(transaction=True)


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content)))
        return "250 OK"


@pytest.fixture
def smtp(settings) -> Iterator[_Inbox]:  # type: ignore[no-untyped-def]
    inbox = _Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = port
    settings.EMAIL_USE_TLS = False
    try:
        yield inbox
    finally:
        controller.stop()


def _spend(cast, amount: str, n: int = 1) -> None:  # type: ignore[no-untyped-def]
    from django.utils import timezone

    for i in range(n):
        UsageRecord.objects.create(
            request_id=f"req-{time.monotonic_ns()}-{i}", created_at=timezone.now(),
            tenant=cast.acme, model="m", provider="openai", cost_usd=Decimal(amount),
            latency_ms=5, status="success", http_status=200,
        )  # fmt: skip


@pytest.fixture
def budget(cast):  # type: ignore[no-untyped-def]
    finance = UserFactory(username="fin", email="fin@acme.test")
    MembershipFactory(tenant=cast.acme, user=finance, role=Role.FINANCE)
    return budget_create(context=CTX, tenant=cast.acme, fields={
        "name": "monthly", "scope": "tenant", "amount_usd": Decimal("10"),
        "notify_emails": ["ops@acme.test"],
    })  # fmt: skip


def _late_in_period():  # type: ignore[no-untyped-def]
    """An instant near the end of this month: a linear forecast then adds almost nothing."""
    from datetime import UTC, datetime, timedelta

    from budgets.periods import period_bounds

    return period_bounds("monthly", datetime.now(UTC), "UTC")[1] - timedelta(minutes=1)


def test_one_email_per_threshold(cast, budget, smtp) -> None:
    late = _late_in_period()
    _spend(cast, "5.5")  # 55 %: the 50 % alert
    assert alerts_evaluate(now=late) == 1
    assert alerts_send() == 1
    assert alerts_evaluate(now=late) == 0  # the same threshold never again
    assert alerts_send() == 0
    _spend(cast, "4")  # 95 %: 80 and 95
    assert alerts_evaluate(now=late) == 2
    assert alerts_send() == 2
    subjects = [message["Subject"] for _, message in smtp.messages]
    assert subjects == [
        "[Switchboard] Acme: budget 'monthly' at 50%",
        "[Switchboard] Acme: budget 'monthly' at 80%",
        "[Switchboard] Acme: budget 'monthly' at 95%",
    ]
    rcpt, message = smtp.messages[0]
    assert sorted(rcpt) == ["fin@acme.test", "ops@acme.test"]
    body = message.get_payload()
    assert "Spent: $5.50 of $10.00" in body
    assert "Top models this period:" in body
    assert "  m: $5.50" in body
    assert "/console/budgets/" in body
    assert message["Message-ID"].startswith(f"<budget-{budget.pk}-")
    assert "sbk_" not in body


def test_concurrent_senders_send_each_alert_once(cast, budget, smtp) -> None:
    _spend(cast, "10")  # 100 %: four thresholds at once
    assert alerts_evaluate(now=_late_in_period()) == 4
    barrier = threading.Barrier(4)

    def worker() -> None:
        barrier.wait()
        try:
            alerts_evaluate(now=_late_in_period())
            alerts_send()
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(smtp.messages) == 4
    assert len({message["Subject"] for _, message in smtp.messages}) == 4
    assert BudgetAlert.objects.filter(sent_at__isnull=True).count() == 0


KILLED_SENDER = """
import os, sys, time
import django
django.setup()
from django.db import transaction
from budgets.models import BudgetAlert
with transaction.atomic():
    alert = BudgetAlert.objects.select_for_update(skip_locked=True).filter(
        sent_at__isnull=True).first()
    print(alert.pk, flush=True)
    time.sleep(60)  # killed here: holding the row, nothing sent, nothing committed
"""


def test_a_sender_killed_mid_task_loses_nothing_and_doubles_nothing(cast, budget, smtp) -> None:
    _spend(cast, "6")
    assert alerts_evaluate(now=_late_in_period()) == 1
    db = connection.settings_dict
    url = (f"postgres://{db.get('USER') or 'postgres'}@{db.get('HOST') or '127.0.0.1'}"
           f":{db.get('PORT') or 5432}/{db['NAME']}")  # fmt: skip
    env = {**os.environ, "SWITCHBOARD_ENV": "test", "DATABASE_URL": url,
           "DJANGO_SETTINGS_MODULE": "switchboard.settings"}  # fmt: skip
    child = subprocess.Popen([sys.executable, "-c", KILLED_SENDER], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert child.stdout is not None
        claimed = child.stdout.readline().strip()
        assert claimed.isdigit()
        assert alerts_send() == 0  # the row is locked by the (live) sender: skipped, not doubled
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
    deadline = time.monotonic() + 10
    sent = 0
    while sent == 0 and time.monotonic() < deadline:  # the server notices the dead session
        sent = alerts_send()
        time.sleep(0.1)
    assert sent == 1
    assert alerts_send() == 0
    assert len(smtp.messages) == 1


def test_forecast_alert(cast, budget, smtp) -> None:
    from datetime import UTC, datetime, timedelta

    from budgets.periods import period_bounds

    start, end = period_bounds("monthly", datetime.now(UTC), "UTC")
    # Early in the period with a third of the budget spent: the projection overshoots.
    early = start + (end - start) / 10 + timedelta(hours=2)
    _spend(cast, "3.4")
    alerts_evaluate(now=early)
    kinds = set(BudgetAlert.objects.values_list("kind", flat=True))
    assert "forecast" in kinds
    assert alerts_send() >= 1
    assert any("forecast over limit" in m["Subject"] for _, m in smtp.messages)
