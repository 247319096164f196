"""Reads for the console's Models page: a tenant's own and the global deployments, each with
its circuit breaker's state (one Redis round trip for the whole list)."""

from dataclasses import dataclass

from django.db.models import F, Q

from gateway.models import ModelDeployment
from tenants.models import Tenant

MAX_ROWS = 500


@dataclass(frozen=True, slots=True)
class DeploymentRow:
    deployment: ModelDeployment
    breaker: str  # closed, open, half_open

    @property
    def own(self) -> bool:
        return self.deployment.tenant_id is not None


def _breaker_states(deployments: list[ModelDeployment]) -> dict[int, str]:
    from gateway.runtime.executor import breaker

    try:
        states = breaker.states_sync([d.pk for d in deployments])
    except Exception:  # Redis down: the page still renders, without breaker states
        return {}
    return {pk: str(state) for pk, state in states.items()}


def deployment_rows(tenant: Tenant, *, name: str = "") -> list[DeploymentRow]:
    """The tenant's deployments then the global ones, by name; `name` filters (contains)."""
    rows = ModelDeployment.objects.filter(Q(tenant=tenant) | Q(tenant__isnull=True))
    if name:
        rows = rows.filter(name__icontains=name)
    own_first = F("tenant_id").asc(nulls_last=True)
    deployments = list(rows.order_by(own_first, "name", "priority", "id")[:MAX_ROWS])
    states = _breaker_states(deployments)
    return [DeploymentRow(d, states.get(d.pk, "unknown")) for d in deployments]


def deployment_row(deployment: ModelDeployment) -> DeploymentRow:
    states = _breaker_states([deployment])
    return DeploymentRow(deployment, states.get(deployment.pk, "unknown"))


def tenant_deployment(tenant: Tenant, pk: int) -> ModelDeployment | None:
    """One of the tenant's own deployments (a global or another tenant's one is None)."""
    return ModelDeployment.objects.filter(tenant=tenant, pk=pk).first()
