"""Usage rollups: per UTC hour and day, per dimension combination, kept in step with records.

The drain inserts records with `INSERT … ON CONFLICT (request_id) DO NOTHING RETURNING`, so
it knows exactly which rows are new (a re-delivered or raced event returns nothing), and adds
only those to the rollups with an additive upsert in the same transaction. Records and
rollups therefore always agree, and replaying a stream changes neither. `rollups_rebuild`
recomputes a range from the records (after a bug fix, or for data loaded by other means).
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection, transaction

from analytics.models import LATENCY_BUCKET_FIELDS, LATENCY_BUCKETS_MS, UsageRecord, UsageRollup

ERROR_STATUSES = frozenset({"provider_error", "error", "blocked"})
_KEY_FIELDS = ("tenant_id", "granularity", "bucket_start", "team_id", "api_key_id", "end_user",
               "deployment_id", "provider", "model", "task_type")  # fmt: skip
_SUM_FIELDS = ("requests", "errors", "prompt_tokens", "completion_tokens", "cached_tokens",
               "cost_usd", "saved_cost_usd", "latency_ms_sum", *LATENCY_BUCKET_FIELDS)  # fmt: skip
RollupKey = tuple[Any, ...]


@dataclass
class _Sums:
    values: dict[str, Any] = field(default_factory=lambda: dict.fromkeys(_SUM_FIELDS, 0))

    def add(self, record: UsageRecord) -> None:
        v = self.values
        v["requests"] += 1
        v["errors"] += record.status in ERROR_STATUSES
        v["prompt_tokens"] += record.prompt_tokens
        v["completion_tokens"] += record.completion_tokens
        v["cached_tokens"] += record.cached_tokens
        v["cost_usd"] += Decimal(record.cost_usd)
        v["saved_cost_usd"] += Decimal(record.saved_cost_usd)
        v["latency_ms_sum"] += record.latency_ms
        v[LATENCY_BUCKET_FIELDS[latency_bucket(record.latency_ms)]] += 1


def latency_bucket(latency_ms: int) -> int:
    for index, bound in enumerate(LATENCY_BUCKETS_MS):
        if latency_ms <= bound:
            return index
    return len(LATENCY_BUCKETS_MS)


def _keys(record: UsageRecord) -> tuple[RollupKey, RollupKey]:
    hour = record.created_at.replace(minute=0, second=0, microsecond=0)
    day = hour.replace(hour=0)
    dims = (record.team_id or 0, record.api_key_id or 0, record.end_user or "",
            record.deployment_id or 0, record.provider or "", record.model or "",
            record.task_type or "")  # fmt: skip
    return (record.tenant_id, "hour", hour, *dims), (record.tenant_id, "day", day, *dims)


def rollup_deltas(records: Iterable[UsageRecord]) -> dict[RollupKey, _Sums]:
    deltas: dict[RollupKey, _Sums] = {}
    for record in records:
        for key in _keys(record):
            deltas.setdefault(key, _Sums()).add(record)
    return deltas


def _quoted(name: str) -> str:
    return connection.ops.quote_name(name)


def rollups_apply(deltas: dict[RollupKey, _Sums], *, chunk: int = 500) -> None:
    """Add the deltas to the rollups (one additive upsert per chunk of rows)."""
    if not deltas:
        return
    table = _quoted(UsageRollup._meta.db_table)
    columns = [*_KEY_FIELDS, *_SUM_FIELDS]
    conflict = ", ".join(_quoted(c) for c in _KEY_FIELDS)
    updates = ", ".join(f"{_quoted(c)} = {table}.{_quoted(c)} + EXCLUDED.{_quoted(c)}"
                        for c in _SUM_FIELDS)  # fmt: skip
    rows = [(*key, *(sums.values[c] for c in _SUM_FIELDS)) for key, sums in deltas.items()]
    placeholder = "(" + ", ".join(["%s"] * len(columns)) + ")"
    with connection.cursor() as cursor:
        for start in range(0, len(rows), chunk):
            part = rows[start : start + chunk]
            # Identifiers are the model's own quoted column names; every value is a parameter.
            names = ", ".join(_quoted(c) for c in columns)
            values = ", ".join([placeholder] * len(part))
            sql = f"INSERT INTO {table} ({names}) VALUES {values} ON CONFLICT ({conflict}) "  # noqa: S608
            sql += f"DO UPDATE SET {updates}"
            cursor.execute(sql, [_adapt(value) for row in part for value in row])


def _adapt(value: Any) -> Any:
    if isinstance(value, datetime):
        return connection.ops.adapt_datetimefield_value(value)
    if isinstance(value, Decimal):
        return connection.ops.adapt_decimalfield_value(value, 24, 10)
    return value


def records_insert_new(records: Sequence[UsageRecord], *, chunk: int = 500) -> list[UsageRecord]:
    """Insert, skipping request ids already stored; return exactly the rows inserted."""
    if not records:
        return []
    fields = [f for f in UsageRecord._meta.concrete_fields if f.column != "id"]
    table = _quoted(UsageRecord._meta.db_table)
    columns = ", ".join(_quoted(str(f.column)) for f in fields)
    placeholder = "(" + ", ".join(["%s"] * len(fields)) + ")"
    by_id = {record.request_id: record for record in records}
    inserted: list[UsageRecord] = []
    with connection.cursor() as cursor:
        for start in range(0, len(records), chunk):
            part = records[start : start + chunk]
            params = [f.get_db_prep_save(getattr(r, f.attname), connection) for r in part
                      for f in fields]  # fmt: skip
            cursor.execute(  # quoted identifiers of the model; values are parameters
                f"INSERT INTO {table} ({columns}) VALUES {', '.join([placeholder] * len(part))} "  # noqa: S608
                f"ON CONFLICT ({_quoted('request_id')}) DO NOTHING "
                f"RETURNING {_quoted('request_id')}",
                params,
            )
            inserted.extend(by_id[row[0]] for row in cursor.fetchall())
    return inserted


def records_store_with_rollups(records: Sequence[UsageRecord]) -> int:
    """Insert new records and add them to the rollups, atomically; returns rows inserted."""
    with transaction.atomic():
        inserted = records_insert_new(records)
        rollups_apply(rollup_deltas(inserted))
    return len(inserted)


def rollups_rebuild(
    *, tenant_id: int | None = None, start: datetime | None = None, end: datetime | None = None
) -> int:
    """Recompute the rollups of whole UTC days in [start, end) from the records."""
    records = UsageRecord.objects.all()
    rollups = UsageRollup.objects.all()
    if tenant_id is not None:
        records, rollups = records.filter(tenant_id=tenant_id), rollups.filter(tenant_id=tenant_id)
    if start is not None:
        start = start.replace(hour=0, minute=0, second=0, microsecond=0)
        records, rollups = (
            records.filter(created_at__gte=start),
            rollups.filter(bucket_start__gte=start),
        )
    if end is not None:
        day_end = end.replace(hour=0, minute=0, second=0, microsecond=0)
        if day_end < end:
            day_end += timedelta(days=1)
        records = records.filter(created_at__lt=day_end)
        rollups = rollups.filter(bucket_start__lt=day_end)
    count = 0
    with transaction.atomic():
        rollups.delete()
        batch: list[UsageRecord] = []
        for record in records.order_by().iterator(chunk_size=5000):
            batch.append(record)
            if len(batch) >= 5000:
                rollups_apply(rollup_deltas(batch))
                count += len(batch)
                batch = []
        rollups_apply(rollup_deltas(batch))
        count += len(batch)
    return count


def percentile_from_histogram(counts: Sequence[int], fraction: float) -> float | None:
    """An estimate of a latency percentile (ms) from bucket counts, interpolating inside the
    bucket; the open last bucket answers its lower bound."""
    total = sum(counts)
    if total == 0:
        return None
    rank = fraction * total
    seen = 0
    lower = 0.0
    for index, count in enumerate(counts):
        upper = float(LATENCY_BUCKETS_MS[index]) if index < len(LATENCY_BUCKETS_MS) else lower
        if seen + count >= rank and count:
            if index >= len(LATENCY_BUCKETS_MS):
                return lower
            return lower + (upper - lower) * (rank - seen) / count
        seen += count
        lower = upper
    return lower
