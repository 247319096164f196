"""Usage events: the per-tenant Redis stream every gateway call appends to, and its drain.

Wire format of one stream entry (the settle Lua script must write the same map): each key is
a `UsageEvent` field name and each value a string — integers in decimal, money as a plain
decimal string, `created_at` in ISO 8601 with an offset, booleans "1"/"0", an absent
optional value as "", `metadata` as a JSON object. Unknown keys are ignored.

Delivery into PostgreSQL is at-least-once: entries are acknowledged and deleted only after
the transaction that stored them has committed; a re-delivered entry is absorbed by the
unique request id. An entry that can never be stored is copied, with `_error` (why, naming
fields, never values) and `_source_id`, to the tenant's dead-letter stream `…:usage:dead`.
"""

import json
import logging
import socket
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import MISSING, dataclass, field, fields
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

import redis
import redis.asyncio as aioredis
from django.db import DataError, IntegrityError, transaction
from redis.typing import EncodableT, FieldT

from analytics.models import UsageRecord, UsageStatus
from switchboard.redis_client import redis_async, redis_sync
from tenants.models import ApiKey, Team, Tenant

logger = logging.getLogger(__name__)

USAGE_GROUP = "ingest"
# An entry delivered this long ago and still unacknowledged belongs to a dead consumer.
CLAIM_IDLE_S = 60.0
TENANT_CHUNK = 200
ROUNDS_PER_CHUNK = 20
METADATA_MAX_BYTES = 16 * 1024

_INT16_MAX = 2**15 - 1
_INT32_MAX = 2**31 - 1
_INT64_MAX = 2**63 - 1
_COST_QUANTUM = Decimal("1E-10")
_COST_LIMIT = Decimal(10) ** 10  # NUMERIC(20,10) keeps ten digits before the point
_STATUSES = frozenset(UsageStatus.values)

StreamFields = Mapping[bytes, bytes] | Mapping[str, str] | Mapping[bytes | str, bytes | str]


def usage_stream_key(tenant_id: int) -> str:
    """The tenant's stream; its hash tag is the one of the tenant's budget counters."""
    return f"sb:{{t:{tenant_id}}}:usage"


def usage_dead_letter_key(tenant_id: int) -> str:
    return f"{usage_stream_key(tenant_id)}:dead"


def _fail(name: str, problem: str) -> ValueError:
    # Messages name the field, never its value: events carry end-user ids and metadata.
    return ValueError(f"usage event field {name!r} {problem}")


def _check_int(name: str, value: object, low: int, high: int, *, nullable: bool = False) -> None:
    if value is None and nullable:
        return
    if not isinstance(value, int) or isinstance(value, bool):
        raise _fail(name, "must be an integer")
    if not low <= value <= high:
        raise _fail(name, f"must be between {low} and {high}")


def _check_text(name: str, value: object, max_length: int, *, required: bool = False) -> None:
    if not isinstance(value, str):
        raise _fail(name, "must be a string")
    if required and not value:
        raise _fail(name, "must not be empty")
    if len(value) > max_length:
        raise _fail(name, f"must be at most {max_length} characters")
    if "\x00" in value:
        raise _fail(name, "must not contain NUL characters")


def _money(name: str, value: object) -> Decimal:
    if isinstance(value, int) and not isinstance(value, bool):
        value = Decimal(value)
    if not isinstance(value, Decimal) or not value.is_finite():
        raise _fail(name, "must be a finite Decimal")
    if not Decimal(0) <= value < _COST_LIMIT:
        raise _fail(name, f"must be at least 0 and below {_COST_LIMIT}")
    return value.quantize(_COST_QUANTUM, rounding=ROUND_HALF_EVEN)


def _metadata(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail("metadata", "must be a JSON object")
    try:
        encoded = json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError):
        raise _fail("metadata", "must be JSON-serialisable") from None
    if len(encoded.encode()) > METADATA_MAX_BYTES:
        raise _fail("metadata", f"must encode to at most {METADATA_MAX_BYTES} bytes")
    if "\\u0000" in encoded:  # PostgreSQL's jsonb rejects NUL
        raise _fail("metadata", "must not contain NUL characters")
    decoded: dict[str, Any] = json.loads(encoded)  # a private, JSON-normalised copy
    return decoded


@dataclass(frozen=True, slots=True)
class UsageEvent:
    """One gateway call's usage, as appended to the stream and stored as a `UsageRecord`.

    Construction validates every field against the table's constraints (raising ValueError),
    so an event that reaches the stream can be stored; costs are rounded to 10 places.
    """

    request_id: str
    created_at: datetime
    tenant_id: int
    model: str
    provider: str
    cost_usd: Decimal
    latency_ms: int
    status: str
    http_status: int
    api_key_id: int | None = None
    team_id: int | None = None
    end_user: str = ""
    deployment_id: int | None = None
    task_type: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    saved_cost_usd: Decimal = Decimal(0)
    ttft_ms: int | None = None
    error_type: str = ""
    attempts: int = 1
    fallback_count: int = 0
    cached: bool = False
    stream: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)
    experiment_id: int | None = None
    variant: str = ""

    def __post_init__(self) -> None:
        _check_text("request_id", self.request_id, 64, required=True)
        if not isinstance(self.created_at, datetime) or self.created_at.utcoffset() is None:
            raise _fail("created_at", "must be a timezone-aware datetime")
        object.__setattr__(self, "created_at", self.created_at.astimezone(UTC))
        _check_int("tenant_id", self.tenant_id, 1, _INT64_MAX)
        for name in ("api_key_id", "team_id", "deployment_id", "experiment_id"):
            _check_int(name, getattr(self, name), 1, _INT64_MAX, nullable=True)
        _check_text("model", self.model, 200, required=True)
        # A call refused before routing (unknown model, not allowed) has no provider.
        _check_text("provider", self.provider, 50, required=False)
        for name, max_length in (
            ("end_user", 256), ("task_type", 100), ("error_type", 50), ("variant", 50),
        ):  # fmt: skip
            _check_text(name, getattr(self, name), max_length)
        for name in ("prompt_tokens", "completion_tokens", "cached_tokens", "latency_ms"):
            _check_int(name, getattr(self, name), 0, _INT32_MAX)
        _check_int("ttft_ms", self.ttft_ms, 0, _INT32_MAX, nullable=True)
        _check_int("http_status", self.http_status, 100, 599)
        _check_int("attempts", self.attempts, 0, _INT16_MAX)
        _check_int("fallback_count", self.fallback_count, 0, _INT16_MAX)
        if self.status not in _STATUSES:
            raise _fail("status", f"must be one of {sorted(_STATUSES)}")
        for name in ("cached", "stream"):
            if not isinstance(getattr(self, name), bool):
                raise _fail(name, "must be a bool")
        object.__setattr__(self, "cost_usd", _money("cost_usd", self.cost_usd))
        object.__setattr__(self, "saved_cost_usd", _money("saved_cost_usd", self.saved_cost_usd))
        object.__setattr__(self, "metadata", _metadata(self.metadata))

    def to_stream_fields(self) -> dict[str, str]:
        """The flat string map XADD stores (the module docstring describes the format)."""
        return {item.name: _encode(getattr(self, item.name)) for item in fields(self)}

    @classmethod
    def from_stream_fields(cls, raw: StreamFields) -> "UsageEvent":
        """Parse a stream entry (bytes or str keys and values); raise ValueError if invalid."""
        values: dict[str, str] = {}
        for key, value in raw.items():
            try:
                name = key.decode() if isinstance(key, bytes) else key
                values[name] = value.decode() if isinstance(value, bytes) else value
            except UnicodeDecodeError:
                raise ValueError("usage event holds a field that is not UTF-8") from None
            if not isinstance(name, str) or not isinstance(values[name], str):
                raise ValueError("usage event fields must be strings or bytes")
        kwargs: dict[str, Any] = {}
        for item in fields(cls):
            if item.name in values:
                kwargs[item.name] = _PARSERS[item.name](item.name, values[item.name])
            elif item.default is MISSING and item.default_factory is MISSING:
                raise _fail(item.name, "is missing")
        return cls(**kwargs)


def _encode(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return str(value)


def _parse_text(name: str, raw: str) -> str:
    return raw


def _parse_int(name: str, raw: str) -> int:
    digits = raw[1:] if raw.startswith("-") else raw
    if not (digits.isascii() and digits.isdigit()):
        raise _fail(name, "is not an integer")
    return int(raw)


def _parse_optional_int(name: str, raw: str) -> int | None:
    return None if raw == "" else _parse_int(name, raw)


def _parse_decimal(name: str, raw: str) -> Decimal:
    try:
        return Decimal(raw)
    except InvalidOperation:
        raise _fail(name, "is not a decimal number") from None


def _parse_bool(name: str, raw: str) -> bool:
    parsed = {"1": True, "0": False, "true": True, "false": False}.get(raw.lower())
    if parsed is None:
        raise _fail(name, "is not a boolean")
    return parsed


def _parse_datetime(name: str, raw: str) -> datetime:
    try:
        return datetime.fromisoformat(raw)
    except ValueError:
        raise _fail(name, "is not an ISO 8601 timestamp") from None


def _parse_json(name: str, raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        raise _fail(name, "is not JSON") from None


_PARSERS: dict[str, Callable[[str, str], Any]] = {
    "request_id": _parse_text,
    "created_at": _parse_datetime,
    "tenant_id": _parse_int,
    "model": _parse_text,
    "provider": _parse_text,
    "cost_usd": _parse_decimal,
    "latency_ms": _parse_int,
    "status": _parse_text,
    "http_status": _parse_int,
    "api_key_id": _parse_optional_int,
    "team_id": _parse_optional_int,
    "end_user": _parse_text,
    "deployment_id": _parse_optional_int,
    "task_type": _parse_text,
    "prompt_tokens": _parse_int,
    "completion_tokens": _parse_int,
    "cached_tokens": _parse_int,
    "saved_cost_usd": _parse_decimal,
    "ttft_ms": _parse_optional_int,
    "error_type": _parse_text,
    "attempts": _parse_int,
    "fallback_count": _parse_int,
    "cached": _parse_bool,
    "stream": _parse_bool,
    "metadata": _parse_json,
    "experiment_id": _parse_optional_int,
    "variant": _parse_text,
}


async def usage_event_append(event: UsageEvent, *, client: aioredis.Redis | None = None) -> str:
    """XADD the event to its tenant's stream (never trimmed: trimming loses unread events)."""
    redis_client = client if client is not None else redis_async()
    entry: dict[FieldT, EncodableT] = {k: v for k, v in event.to_stream_fields().items()}
    entry_id = await redis_client.xadd(usage_stream_key(event.tenant_id), entry)
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


# --- Drain: stream → PostgreSQL ------------------------------------------------------------


@dataclass(slots=True)
class _Entry:
    tenant_id: int
    entry_id: bytes
    fields: dict[bytes, bytes] | None  # None: deleted from the stream while pending


@dataclass(slots=True)
class _Pending:
    record: UsageRecord
    entries: list[_Entry]  # the entry and any duplicates of it in the same batch


def usage_stream_drain(
    *,
    batch_size: int = 500,
    time_budget_s: float = 20.0,
    consumer: str | None = None,
    claim_idle_s: float = CLAIM_IDLE_S,
) -> int:
    """Move usage events of every tenant's stream into `UsageRecord` rows; return rows written.

    Safe to run concurrently: each consumer of the `ingest` group gets different entries, and
    entries left pending by a dead consumer for `claim_idle_s` are claimed by the next drain.
    """
    if transaction.get_connection().in_atomic_block:
        # Entries are acknowledged after each commit; inside an outer transaction that
        # commit would not be final, and a rollback would lose acknowledged events.
        raise RuntimeError("usage_stream_drain must not run inside a transaction")
    client = redis_sync()
    consumer_name = consumer or socket.gethostname()
    claim_idle_ms = max(1, int(claim_idle_s * 1000))
    deadline = time.monotonic() + time_budget_s
    written = 0
    while True:  # passes over every tenant, until one finds nothing
        handled = 0
        for tenant_ids in _tenant_id_chunks():
            _groups_ensure(client, tenant_ids)
            chunk_written, chunk_handled = _chunk_drain(
                client, tenant_ids, consumer_name, batch_size, claim_idle_ms, deadline
            )
            written += chunk_written
            handled += chunk_handled
            if time.monotonic() >= deadline:
                return written
        if not handled:
            return written


def _chunk_drain(
    client: redis.Redis,
    tenant_ids: list[int],
    consumer: str,
    batch_size: int,
    claim_idle_ms: int,
    deadline: float,
) -> tuple[int, int]:
    """Drain these tenants' streams in rounds of about `batch_size` entries; (written, handled).

    Rounds per pass are capped so that one tenant producing faster than the drain cannot
    starve the tenants after it.
    """
    written = handled = 0
    active = tenant_ids
    for _round in range(ROUNDS_PER_CHUNK):
        if not active or time.monotonic() >= deadline:
            break
        per_stream = max(1, batch_size // len(active))
        entries, active = _entries_read(client, active, consumer, per_stream, claim_idle_ms)
        if not entries:
            break
        written += _entries_settle(client, entries)
        handled += len(entries)
    return written, handled


def _tenant_id_chunks() -> Iterator[list[int]]:
    # Tenant ids come from PostgreSQL: a Redis registry of streams would live in another slot.
    last_id = 0
    while True:
        ids = list(
            Tenant.objects.filter(id__gt=last_id)
            .order_by("id")
            .values_list("id", flat=True)[:TENANT_CHUNK]
        )
        if not ids:
            return
        yield ids
        last_id = ids[-1]


def _groups_ensure(client: redis.Redis, tenant_ids: list[int]) -> None:
    pipe = client.pipeline(transaction=False)
    for tenant_id in tenant_ids:
        # Id 0, not $: events appended before the group existed must be delivered too.
        pipe.xgroup_create(usage_stream_key(tenant_id), USAGE_GROUP, id="0", mkstream=True)
    for reply in pipe.execute(raise_on_error=False):
        if isinstance(reply, redis.ResponseError) and not str(reply).startswith("BUSYGROUP"):
            raise reply


def _entries_read(
    client: redis.Redis, tenant_ids: list[int], consumer: str, count: int, claim_idle_ms: int
) -> tuple[list[_Entry], list[int]]:
    """One round trip: claim stale entries and read new ones; also return streams not drained."""
    pipe = client.pipeline(transaction=False)
    for tenant_id in tenant_ids:
        key = usage_stream_key(tenant_id)
        pipe.xautoclaim(key, USAGE_GROUP, consumer, claim_idle_ms, start_id="0-0", count=count)
        pipe.xreadgroup(USAGE_GROUP, consumer, {key: ">"}, count=count)
    replies = pipe.execute(raise_on_error=False)
    entries: list[_Entry] = []
    unfinished: list[int] = []
    for index, tenant_id in enumerate(tenant_ids):
        claimed, read = replies[2 * index], replies[2 * index + 1]
        if isinstance(claimed, Exception) or isinstance(read, Exception):
            # The stream vanished since _groups_ensure (NOGROUP); the next drain recreates it.
            logger.warning("usage stream of tenant %s is unreadable; skipped", tenant_id)
            continue
        claimed_messages = claimed[1] if claimed else []
        read_messages = _read_messages(read)
        for entry_id, entry_fields in [*claimed_messages, *read_messages]:
            if entry_id is not None:
                entries.append(_Entry(tenant_id, entry_id, entry_fields))
        if len(claimed_messages) >= count or len(read_messages) >= count:
            unfinished.append(tenant_id)
    return entries, unfinished


def _read_messages(reply: Any) -> list[tuple[bytes, dict[bytes, bytes] | None]]:
    if not reply:
        return []
    if isinstance(reply, dict):  # RESP3: {stream: [messages]}
        return [message for messages in reply.values() for message in messages[0]]
    return [message for _stream, messages in reply for message in messages]


def _entries_settle(client: redis.Redis, entries: list[_Entry]) -> int:
    """Store what can be stored, dead-letter what never can, then acknowledge all of it."""
    done: list[_Entry] = []
    dead: list[tuple[_Entry, str]] = []
    events: list[tuple[_Entry, UsageEvent]] = []
    for entry in entries:
        if entry.fields is None:
            done.append(entry)
            continue
        try:
            event = UsageEvent.from_stream_fields(entry.fields)
        except ValueError as exc:
            dead.append((entry, str(exc)))
            continue
        if event.tenant_id != entry.tenant_id:
            dead.append((entry, "usage event field 'tenant_id' is not the stream's tenant"))
            continue
        events.append((entry, event))
    pending, already_stored = _records_build(events)
    done.extend(already_stored)
    stored, rejected = _records_store(pending)
    dead.extend((entry, reason) for item, reason in rejected for entry in item.entries)
    _dead_letter(client, dead)
    done.extend(entry for item in stored for entry in item.entries)
    _acknowledge(client, [*done, *(entry for entry, _reason in dead)])
    return len(stored)


def _records_build(
    events: list[tuple[_Entry, UsageEvent]],
) -> tuple[list[_Pending], list[_Entry]]:
    """Records to insert, and entries whose request id is already stored."""
    by_request: dict[str, _Pending] = {}
    for entry, event in events:
        if event.request_id in by_request:
            by_request[event.request_id].entries.append(entry)
        else:
            by_request[event.request_id] = _Pending(_record_from_event(event), [entry])
    stored_ids = set(
        UsageRecord.objects.filter(request_id__in=list(by_request)).values_list(
            "request_id", flat=True
        )
    )
    duplicates = [entry for rid in stored_ids for entry in by_request.pop(rid).entries]
    pending = list(by_request.values())
    _foreign_keys_check(pending)
    return pending, duplicates


def _record_from_event(event: UsageEvent) -> UsageRecord:
    # No full_clean(): UsageEvent validated every field, and per-row FK queries would make a
    # batch of 500 cost 1,500 queries; _foreign_keys_check does it in two.
    return UsageRecord(
        request_id=event.request_id,
        created_at=event.created_at,
        tenant_id=event.tenant_id,
        api_key_id=event.api_key_id,
        team_id=event.team_id,
        end_user=event.end_user,
        deployment_id=event.deployment_id,
        model=event.model,
        provider=event.provider,
        task_type=event.task_type,
        prompt_tokens=event.prompt_tokens,
        completion_tokens=event.completion_tokens,
        cached_tokens=event.cached_tokens,
        cost_usd=event.cost_usd,
        saved_cost_usd=event.saved_cost_usd,
        latency_ms=event.latency_ms,
        ttft_ms=event.ttft_ms,
        status=event.status,
        http_status=event.http_status,
        error_type=event.error_type,
        attempts=event.attempts,
        fallback_count=event.fallback_count,
        cached=event.cached,
        stream=event.stream,
        metadata=event.metadata,
        experiment_id=event.experiment_id,
        variant=event.variant,
    )


def _foreign_keys_check(pending: list[_Pending]) -> None:
    """Clear key and team ids that no longer exist (SET_NULL semantics) or are another tenant's."""
    key_ids = {p.record.api_key_id for p in pending if p.record.api_key_id is not None}
    team_ids = {p.record.team_id for p in pending if p.record.team_id is not None}
    key_tenants = dict(ApiKey.objects.filter(id__in=key_ids).values_list("id", "tenant_id"))
    team_tenants = dict(Team.objects.filter(id__in=team_ids).values_list("id", "tenant_id"))
    for item in pending:
        record = item.record
        for attribute, owners in (("api_key_id", key_tenants), ("team_id", team_tenants)):
            value = getattr(record, attribute)
            if value is None or owners.get(value) == record.tenant_id:
                continue
            if value in owners:
                logger.warning(
                    "usage %s of tenant %s names %s %s of another tenant; cleared",
                    record.request_id,
                    record.tenant_id,
                    attribute,
                    value,
                )
            setattr(record, attribute, None)


def _records_store(
    pending: list[_Pending],
) -> tuple[list[_Pending], list[tuple[_Pending, str]]]:
    """Insert in one transaction, with their rollups; if the database rejects the batch,
    isolate the bad rows.

    Errors other than integrity and data errors (database down, disk full) propagate: nothing
    is acknowledged, and the entries are claimed again once idle.
    """
    from analytics.rollups import records_store_with_rollups

    if not pending:
        return [], []
    try:
        records_store_with_rollups([p.record for p in pending])
        return pending, []
    except (IntegrityError, DataError) as exc:
        logger.warning("usage batch rejected (%s); storing row by row", type(exc).__name__)
    stored: list[_Pending] = []
    rejected: list[tuple[_Pending, str]] = []
    for item in pending:
        try:
            records_store_with_rollups([item.record])
            stored.append(item)
        except (IntegrityError, DataError) as exc:
            rejected.append((item, f"rejected by the database ({type(exc).__name__})"))
    return stored, rejected


def _dead_letter(client: redis.Redis, dead: list[tuple[_Entry, str]]) -> None:
    """Copy entries to the dead-letter stream; raises (so nothing is acknowledged) on failure."""
    if not dead:
        return
    pipe = client.pipeline(transaction=False)
    for entry, reason in dead:
        logger.warning(
            "usage entry %s of tenant %s dead-lettered: %s",
            entry.entry_id.decode(),
            entry.tenant_id,
            reason,
        )
        copy: dict[FieldT, EncodableT] = {k: v for k, v in (entry.fields or {}).items()}
        copy[b"_error"] = reason.encode()
        copy[b"_source_id"] = entry.entry_id
        pipe.xadd(usage_dead_letter_key(entry.tenant_id), copy)
    pipe.execute()


def _acknowledge(client: redis.Redis, entries: Iterable[_Entry]) -> None:
    ids_by_tenant: dict[int, list[bytes]] = defaultdict(list)
    for entry in entries:
        ids_by_tenant[entry.tenant_id].append(entry.entry_id)
    if not ids_by_tenant:
        return
    pipe = client.pipeline(transaction=False)
    for tenant_id, ids in ids_by_tenant.items():
        key = usage_stream_key(tenant_id)
        pipe.xack(key, USAGE_GROUP, *ids)
        pipe.xdel(key, *ids)
    pipe.execute()


def usage_record_store(event: UsageEvent) -> None:
    """Store one event straight into PostgreSQL (idempotent by request id): the fallback when
    Redis cannot take it, so a billed call is never lost. A key or team deleted meanwhile is
    kept as NULL, as the drain does."""
    from analytics.rollups import records_store_with_rollups

    record = _record_from_event(event)
    try:
        records_store_with_rollups([record])
    except IntegrityError:
        record.api_key_id = None
        record.team_id = None
        records_store_with_rollups([record])
