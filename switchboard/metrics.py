"""Prometheus metrics: what every gateway call records, and what `/metrics` reports.

Per-call metrics (counters and histograms) are written by the process that served the call,
from one place: `observe_call`, called by `gateway.runtime.pipeline.record_usage`. Writing is
an in-memory (or mmap) update: no database query and no Redis round trip on the hot path.

With several web worker processes (`granian --workers N`), a scrape reaches one of them, so
each process writes its own files under `PROMETHEUS_MULTIPROC_DIR` and the scraping process
merges them all (`MultiProcessCollector`). prometheus_client picks that mode when it is first
imported, which is why the settings module sets the variable (settings load before anything
imports prometheus_client). Without the variable each process keeps its own numbers, which is
only right with a single worker.

Gauges describe shared state, not one process's work, so they are computed at scrape time by
the scraping process (breaker states and usage queue from Redis, budgets through
`budget_status`) and never written to the multiprocess files.

Labels are bounded: tenant slugs, deployments' public names, providers, fixed status and error
codes. Never request ids, end users, keys or prompt text.
"""

import hmac
import ipaddress
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING

from django.conf import settings
from django.http import HttpRequest
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector

from analytics.usage import usage_stream_key
from budgets.models import Budget
from budgets.selectors import budget_status
from gateway.models import ModelDeployment
from gateway.runtime.breaker import BreakerState
from gateway.runtime.executor import breaker
from switchboard.redis_client import redis_sync
from tenants.credentials import bearer_token
from tenants.models import Tenant

if TYPE_CHECKING:  # the pipeline imports this module
    from gateway.runtime.pipeline import CallContext, Usage
    from gateway.runtime.snapshot import DeploymentEntry

logger = logging.getLogger(__name__)

STATUSES = frozenset({"success", "provider_error", "blocked", "cancelled", "error"})
# Error types are codes from our own code (route, ledger and provider error kinds); anything
# else is folded into "other" so a surprise value cannot grow the label set.
_ERROR_TYPE = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
NO_DEPLOYMENT = "none"  # model / provider label of a call refused before routing chose one
# Scrape-time reads stay bounded however large the installation grows.
MAX_BUDGETS_AT_SCRAPE = 1000
MAX_DEPLOYMENTS_AT_SCRAPE = 5000
MAX_TENANTS_AT_SCRAPE = 10000

BREAKER_STATE_VALUES = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}
_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_OVERHEAD_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)
_TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)


def multiprocess_dir() -> str:
    """The shared metrics directory, or '' in single-process mode."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")


if multiprocess_dir():
    # Each metric below opens this process's file in the directory as it is defined.
    os.makedirs(multiprocess_dir(), mode=0o700, exist_ok=True)

REQUESTS = Counter(
    "switchboard_requests",
    "Gateway calls, by tenant, public model, provider, outcome and streaming.",
    ["tenant", "model", "provider", "status", "stream"],
)
ERRORS = Counter(
    "switchboard_errors",
    "Gateway calls that did not succeed, by error type.",
    ["error_type"],
)
REQUEST_LATENCY = Histogram(
    "switchboard_request_latency_seconds",
    "Wall time of a gateway call, from arrival to its usage record.",
    buckets=_LATENCY_BUCKETS,
)
GATEWAY_OVERHEAD = Histogram(
    "switchboard_gateway_overhead_seconds",
    "Time a gateway call spent in Switchboard itself (latency minus upstream time).",
    buckets=_OVERHEAD_BUCKETS,
)
TIME_TO_FIRST_TOKEN = Histogram(
    "switchboard_time_to_first_token_seconds",
    "Time from a streamed call's arrival to its first content token.",
    buckets=_TTFT_BUCKETS,
)
TOKENS = Counter(
    "switchboard_tokens",
    "Tokens billed, by tenant, public model and kind (prompt, completion, cached).",
    ["tenant", "model", "kind"],
)
COST = Counter(
    "switchboard_cost_usd",
    "Cost billed in USD, by tenant and public model.",
    ["tenant", "model"],
)
CACHE_HITS = Counter(
    "switchboard_cache_hits",
    "Gateway calls answered from the response cache, by tenant.",
    ["tenant"],
)


def _error_label(status: str, error_type: str) -> str:
    label = error_type or status
    return label if _ERROR_TYPE.match(label) else "other"


def observe_call(
    ctx: "CallContext",
    deployment: "DeploymentEntry | None",
    usage: "Usage",
    cost: Decimal,
    *,
    status: str,
    error_type: str,
    ttft_ms: int | None,
    stream: bool,
) -> None:
    """Record one finished gateway call. Never raises: metrics must not break a call."""
    try:
        _observe_call(ctx, deployment, usage, cost, status, error_type, ttft_ms, stream)
    except Exception:
        logger.exception("could not record metrics for request %s", ctx.request_id)


def _observe_call(
    ctx: "CallContext", deployment: "DeploymentEntry | None", usage: "Usage", cost: Decimal,
    status: str, error_type: str, ttft_ms: int | None, stream: bool,
) -> None:  # fmt: skip
    tenant = ctx.caller.tenant.slug
    model = deployment.name if deployment else NO_DEPLOYMENT
    provider = deployment.provider if deployment else NO_DEPLOYMENT
    status = status if status in STATUSES else "error"
    REQUESTS.labels(tenant, model, provider, status, "true" if stream else "false").inc()
    if status != "success":
        ERRORS.labels(_error_label(status, error_type)).inc()
    REQUEST_LATENCY.observe(max(time.monotonic() - ctx.started, 0.0))
    GATEWAY_OVERHEAD.observe(ctx.overhead_ms() / 1000)
    if stream and ttft_ms is not None:
        TIME_TO_FIRST_TOKEN.observe(ttft_ms / 1000)
    for kind, count in (
        ("prompt", usage.prompt_tokens),
        ("completion", usage.completion_tokens),
        ("cached", usage.cached_tokens),
    ):
        if count > 0:  # a refused call must not create zero-valued series per tenant
            TOKENS.labels(tenant, model, kind).inc(count)
    if cost > 0:
        COST.labels(tenant, model).inc(float(cost))


def observe_cache_hit(tenant_slug: str) -> None:
    """Count a call served from the response cache (for the cache, when it records hits)."""
    CACHE_HITS.labels(tenant_slug).inc()


# --- Scrape time ---------------------------------------------------------------------------


def _breaker_states() -> Iterator[Metric]:
    rows = list(
        ModelDeployment.objects.filter(enabled=True)
        .order_by("id")
        .values_list("id", "name")[:MAX_DEPLOYMENTS_AT_SCRAPE]
    )
    states = breaker.states_sync([pk for pk, _ in rows])
    family = GaugeMetricFamily(
        "switchboard_breaker_state",
        "Circuit breaker of each enabled deployment: 0 closed, 1 half-open, 2 open.",
        labels=["deployment", "model"],
    )
    for pk, name in rows:
        family.add_metric([str(pk), name], BREAKER_STATE_VALUES[states[pk]])
    yield family


def _budget_utilisation() -> Iterator[Metric]:
    budgets = (
        Budget.objects.filter(enabled=True)
        .select_related("tenant")
        .order_by("id")[:MAX_BUDGETS_AT_SCRAPE]
    )
    family = GaugeMetricFamily(
        "switchboard_budget_utilisation_ratio",
        "Spend in the current period over the limit of each enabled budget (1 = exhausted).",
        labels=["budget", "tenant", "scope"],
    )
    for budget in budgets:
        spent = Decimal(budget_status(budget)["spent_usd"])
        limit = budget.amount_usd
        ratio = float(spent / limit) if limit else (1.0 if spent else 0.0)
        family.add_metric([str(budget.pk), budget.tenant.slug, budget.scope], ratio)
    yield family


def _usage_queue_lag() -> Iterator[Metric]:
    tenant_ids = Tenant.objects.order_by("id").values_list("id", flat=True)
    pipe = redis_sync().pipeline(transaction=False)
    for tenant_id in tenant_ids[:MAX_TENANTS_AT_SCRAPE]:
        pipe.xlen(usage_stream_key(tenant_id))
    lag = sum(int(length) for length in pipe.execute())
    yield GaugeMetricFamily(
        "switchboard_usage_queue_lag_events",
        "Usage events in the tenants' Redis streams not yet stored in PostgreSQL.",
        value=lag,
    )


SCRAPE_SOURCES: dict[str, Callable[[], Iterable[Metric]]] = {
    "breakers": _breaker_states,
    "budgets": _budget_utilisation,
    "usage_queue": _usage_queue_lag,
}


class ScrapeTimeCollector:
    """Gauges read from Redis and PostgreSQL when Prometheus scrapes. A source that fails is
    left out and reported as `switchboard_scrape_source_up 0`, so one sick store does not
    take the per-call metrics down with it."""

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "switchboard_scrape_source_up",
            "Whether the scrape-time source could be read (1) or not (0).",
            labels=["source"],
        )
        for name, source in SCRAPE_SOURCES.items():
            try:
                families = list(source())
            except Exception as exc:
                logger.warning("metrics source %s failed: %s", name, type(exc).__name__)
                up.add_metric([name], 0)
                continue
            up.add_metric([name], 1)
            yield from families
        yield up

    def describe(self) -> list[Metric]:
        return []  # nothing to check at registration; keeps it from scraping then


def scrape_registry() -> CollectorRegistry:
    """A registry for one scrape: every process's call metrics, plus the scrape-time gauges."""
    registry = CollectorRegistry()
    path = multiprocess_dir()
    if path:
        MultiProcessCollector(registry, path=path)
    else:
        registry.register(REGISTRY)  # this process's metrics (and its process_* collectors)
    registry.register(ScrapeTimeCollector())
    return registry


def exposition(accept: str) -> tuple[bytes, str]:
    """The scrape body and its content type, in the format the scraper asked for."""
    encoder, content_type = choose_encoder(accept)
    return encoder(scrape_registry()), content_type


# --- Access --------------------------------------------------------------------------------


class MetricsAccess(StrEnum):
    """Who may scrape: everyone allowed, a token missing or wrong (401), or a public peer."""

    ALLOWED = "allowed"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"


def metrics_access(request: HttpRequest) -> MetricsAccess:
    """With METRICS_TOKEN set, the bearer token decides; without it, only loopback and
    private peers may scrape (Prometheus runs inside the network, the public does not)."""
    token = settings.METRICS_TOKEN
    if token:
        presented = bearer_token(request.headers.get("authorization", ""))
        if presented and hmac.compare_digest(presented.encode(), token.encode()):
            return MetricsAccess.ALLOWED
        return MetricsAccess.UNAUTHORIZED
    if _is_internal(request.META.get("REMOTE_ADDR", "")):
        return MetricsAccess.ALLOWED
    return MetricsAccess.FORBIDDEN


def _is_internal(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback or (ip.is_private and not ip.is_unspecified)
