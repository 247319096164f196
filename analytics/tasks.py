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


@shared_task(name="analytics.export_build", queue="default", soft_time_limit=3300,
             time_limit=3600, ignore_result=True, acks_late=True)  # fmt: skip
def export_build_task(export_id: int) -> None:
    from analytics.exports import export_build

    export_build(export_id)


@shared_task(name="analytics.statements", queue="default", soft_time_limit=1700,
             time_limit=1800, ignore_result=True)  # fmt: skip
def statements_task() -> int:
    """Hourly: create the monthly statements that are due, then email unsent ones."""
    from analytics.exports import statements_due, statements_send

    statements_due()
    return statements_send()


@shared_task(name="analytics.exports_prune", queue="default", ignore_result=True)
def exports_prune_task() -> int:
    from analytics.exports import exports_prune

    return exports_prune()
