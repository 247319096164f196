"""Writes of the analytics app that are not usage ingestion."""

from analytics.models import Feedback


def feedback_record(
    *, tenant_id: int, api_key_id: int | None, request_id: str, score: float, comment: str
) -> Feedback:
    """Store (or replace) the application's verdict on one of its tenant's calls."""
    feedback, _ = Feedback.objects.update_or_create(
        tenant_id=tenant_id,
        request_id=request_id,
        defaults={"score": score, "comment": comment, "api_key_id": api_key_id},
    )
    return feedback
