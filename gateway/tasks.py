"""Thin Celery entry points for the gateway app."""

from celery import shared_task

from gateway.experiments.services import experiments_auto_promote


@shared_task(
    name="gateway.experiments_auto_promote",
    queue="default",
    soft_time_limit=50,
    time_limit=60,
    ignore_result=True,
)
def experiments_auto_promote_task() -> int:
    return len(experiments_auto_promote())
