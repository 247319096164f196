"""Sticky, weighted assignment of traffic to experiment variants.

The bucket comes from BLAKE2b (never Python's salted ``hash()``), so the same end user lands on
the same variant in every worker process, on every host and across Python versions. The
experiment id is part of the hashed key, so two experiments split the same users independently.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

# 64 bits of digest: the modulo bias of mapping onto any realistic total weight is < 2**-40.
_BUCKET_BITS = 64


@dataclass(frozen=True, slots=True)
class VariantWeight:
    """One variant's share of an experiment's traffic (relative, not a percentage)."""

    key: str
    weight: int

    def __post_init__(self) -> None:
        if self.weight < 0:
            raise ValueError(f"variant {self.key!r} has a negative weight ({self.weight})")


def assignment_bucket(experiment_id: str | int, subject: str, total: int) -> int:
    """Map ``experiment_id:subject`` uniformly onto ``[0, total)``."""
    digest = hashlib.blake2b(f"{experiment_id}:{subject}".encode(), digest_size=8).digest()
    # Multiply-shift keeps the high bits, which is as uniform as modulo and cheaper to reason about.
    return (int.from_bytes(digest, "big") * total) >> _BUCKET_BITS


def assign_variant(
    experiment_id: str | int,
    variants: Sequence[VariantWeight],
    user_id: str | None,
    *,
    request_id: str,
) -> str:
    """Return the key of the variant this end user (or, without one, this request) falls into.

    With an end-user id the choice is sticky for the life of the experiment's weights; without
    one each request is assigned on its own, hashed under a separate ``req:`` namespace so a
    request id can never shadow a user id. Zero-weight variants are never chosen.
    """
    total = sum(v.weight for v in variants)
    if total <= 0:
        raise ValueError("an experiment needs at least one variant with a positive weight")
    subject = user_id if user_id else f"req:{request_id}"
    bucket = assignment_bucket(experiment_id, subject, total)
    upper = 0
    for variant in variants:
        upper += variant.weight
        if bucket < upper:
            return variant.key
    raise AssertionError("unreachable: bucket is always below the total weight")  # pragma: no cover
