"""Thin Celery entry points for the analytics app."""

from celery import shared_task

from analytics.usage import usage_stream_drain


@shared_task(
    name="analytics.usage_drain",
    queue="default",
    soft_time_limit=50,
    time_limit=60,
    ignore_result=True,
)
def usage_drain_task() -> int:
    # Concurrent runs are safe: each reads different entries of the consumer group.
    return usage_stream_drain()
