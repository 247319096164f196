"""Thin Celery entry points for the budgets app."""

from celery import shared_task

from budgets.alerts import alerts_evaluate, alerts_send
from budgets.reconcile import budgets_reconcile


@shared_task(name="budgets.alerts", queue="default", soft_time_limit=50, time_limit=60,
             ignore_result=True, acks_late=True)  # fmt: skip
def budget_alerts_task() -> int:
    alerts_evaluate()
    return alerts_send()


@shared_task(name="budgets.reconcile", queue="default", soft_time_limit=240, time_limit=280,
             ignore_result=True)  # fmt: skip
def budget_reconcile_task() -> int:
    return budgets_reconcile()
