"""Resolving secret references at call time: cached, single-flight, stale-if-error.

- A fetched value is cached in process for `KEYVAULT_CACHE_TTL_S` (jittered ±10 % so many
  processes do not refetch together).
- Concurrent misses for one reference share one fetch (per event loop).
- Throttling (429) is retried a few times with backoff; other errors are not.
- When the vault fails, the last value is served until it is `KEYVAULT_MAX_STALE_S` old;
  after that the call fails with `SecretUnavailable` (a 503 naming the vault, not the secret).
- `invalidate(ref)` drops a value the provider refused (401/403): the next call refetches.
Every fetch (not every call: hits are free) adds to an hourly access rollup — who, which
reference, outcome — never the value.
"""

import asyncio
import importlib
import json
import logging
import random
import threading
import time
import weakref
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, close_old_connections, connection, transaction
from django.db.models import F
from django.utils import timezone

from keyvault.backends.base import FetchErrorKind, SecretBackend, SecretFetchError
from switchboard.secrets import Secret

logger = logging.getLogger(__name__)

BACKEND_MODULES = {
    "azure_key_vault": ("keyvault.backends.azure", "AzureKeyVaultBackend"),
    "aws_secrets_manager": ("keyvault.backends.aws", "AwsSecretsBackend"),
    "hashicorp_vault": ("keyvault.backends.hashicorp", "HashiCorpBackend"),
    "env": ("keyvault.backends.env", "EnvBackend"),
}
THROTTLE_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class SecretRef:
    """What the gateway snapshot knows about a reference (no value, no credentials)."""

    id: int
    connection_id: int
    connection_name: str
    backend: str
    settings_json: str  # canonical JSON of the connection's settings
    secret_name: str
    version: str
    field: str

    @property
    def pinned_version(self) -> str | None:
        return None if self.version in ("", "latest") else self.version


class SecretUnavailable(Exception):
    """No usable value: the message names the vault connection, never the secret's value."""


@dataclass
class _Entry:
    value: Secret
    fetched_at: float
    fresh_until: float


def backend_module(backend: str) -> Any:
    module_name, _ = BACKEND_MODULES[backend]
    return importlib.import_module(module_name)


def build_backend(backend: str, settings_dict: dict[str, Any]) -> SecretBackend:
    module_name, class_name = BACKEND_MODULES[backend]
    module = importlib.import_module(module_name)
    instance: SecretBackend = getattr(module, class_name)(settings_dict)
    return instance


class SecretResolver:
    def __init__(self) -> None:
        # Keyed by the whole reference: when its target changes (name, version, connection
        # settings) every process's new snapshot misses the old value at once.
        self._cache: dict[SecretRef, _Entry] = {}
        self._backends: dict[tuple[str, str], SecretBackend] = {}
        self._backends_lock = threading.Lock()
        self._inflight: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[SecretRef, asyncio.Task[Secret]]
        ] = weakref.WeakKeyDictionary()
        self.fetches = 0
        self.hits = 0
        self.errors = 0
        self.stale_served = 0

    async def get(self, ref: SecretRef, *, accessor: str = "gateway") -> Secret:
        entry = self._cache.get(ref)
        now = time.monotonic()
        if entry is not None and now < entry.fresh_until:
            self.hits += 1
            return entry.value
        inflight = self._inflight.setdefault(asyncio.get_running_loop(), {})
        task = inflight.get(ref)
        if task is None:
            # The fetch is a task of its own: a caller that times out or is cancelled must not
            # cancel it for the others waiting on it.
            task = asyncio.ensure_future(self._refresh(ref, entry, accessor))
            inflight[ref] = task
            task.add_done_callback(lambda _: inflight.pop(ref, None))
        return await asyncio.shield(task)

    async def _refresh(self, ref: SecretRef, entry: _Entry | None, accessor: str) -> Secret:
        started = time.monotonic()
        try:
            value = await asyncio.to_thread(self._fetch_with_retries, ref, accessor)
        except SecretFetchError as exc:
            self.errors += 1
            max_stale = settings.KEYVAULT_MAX_STALE_S
            if entry is not None and time.monotonic() - entry.fetched_at < max_stale:
                self.stale_served += 1
                logger.warning(
                    "vault %s failed (%s); serving a cached value for reference %s",
                    ref.connection_name, exc.kind, ref.id,
                )  # fmt: skip
                # Try the vault again soon, not on every call.
                entry.fresh_until = time.monotonic() + settings.KEYVAULT_STALE_RETRY_S
                return entry.value
            raise SecretUnavailable(
                f"The provider key could not be read from vault '{ref.connection_name}' "
                f"({ref.backend}: {exc.kind})."
            ) from None
        finally:
            logger.debug("vault fetch for reference %s took %.1f ms", ref.id,
                         (time.monotonic() - started) * 1000)  # fmt: skip
        self.fetches += 1
        ttl = settings.KEYVAULT_CACHE_TTL_S * random.uniform(0.9, 1.1)  # noqa: S311 (jitter)
        fetched_at = time.monotonic()
        self._cache[ref] = _Entry(value=value, fetched_at=fetched_at, fresh_until=fetched_at + ttl)
        return value

    def _fetch_with_retries(self, ref: SecretRef, accessor: str) -> Secret:
        """Runs in a worker thread: the vendor SDKs are synchronous."""
        backend = self._backend(ref)
        for attempt in range(THROTTLE_ATTEMPTS):
            try:
                value = backend.fetch(
                    name=ref.secret_name, version=ref.pinned_version, field=ref.field or None
                )
            except SecretFetchError as exc:
                if exc.kind is FetchErrorKind.THROTTLED and attempt + 1 < THROTTLE_ATTEMPTS:
                    time.sleep(random.uniform(0, 0.2 * 2**attempt))  # noqa: S311 (jitter)
                    continue
                record_access(ref.id, outcome=str(exc.kind), accessor=accessor)
                raise
            except Exception as exc:
                # A backend bug must not leak details (or values) into the caller's error.
                record_access(ref.id, outcome="unavailable", accessor=accessor)
                raise SecretFetchError(
                    FetchErrorKind.UNAVAILABLE, f"{type(exc).__name__} while reading the vault"
                ) from None
            record_access(ref.id, outcome="ok", accessor=accessor)
            return value
        raise AssertionError("unreachable")

    def _backend(self, ref: SecretRef) -> SecretBackend:
        key = (ref.backend, ref.settings_json)
        with self._backends_lock:
            backend = self._backends.get(key)
            if backend is None:
                backend = build_backend(ref.backend, json.loads(ref.settings_json))
                self._backends[key] = backend
            return backend

    def invalidate(self, ref: SecretRef) -> None:
        self._cache.pop(ref, None)

    def clear(self) -> None:
        self._cache.clear()
        with self._backends_lock:
            self._backends.clear()


def _hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def record_access(reference_id: int, *, outcome: str, accessor: str) -> None:
    """Count one fetch in the hourly rollup (runs in the fetching thread, off the event loop)."""
    from keyvault.models import SecretAccessRollup

    now = timezone.now()
    key = {"reference_id": reference_id, "hour": _hour(now), "outcome": outcome,
           "accessor": accessor[:100]}  # fmt: skip
    try:
        updated = SecretAccessRollup.objects.filter(**key).update(count=F("count") + 1, last_at=now)
        if not updated:
            try:
                with transaction.atomic():
                    SecretAccessRollup.objects.create(**key, count=1, last_at=now)
            except IntegrityError:  # another process created it first
                SecretAccessRollup.objects.filter(**key).update(count=F("count") + 1, last_at=now)
    except Exception:
        logger.warning("could not record a vault access for reference %s", reference_id)
    finally:
        if not connection.in_atomic_block:
            close_old_connections()


secret_resolver = SecretResolver()
