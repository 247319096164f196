"""The tenant-scoped base for every management endpoint under /api/v1/tenants/{tenant}/.

Tenancy fails closed here and only here: the tenant comes from the URL, the caller must be a
member (or platform staff), or the tenant does not exist for them (404). Querysets are always
filtered by that tenant, and subclasses cannot override the methods that do it.
"""

from typing import Any, ClassVar, TypeVar

from django.db.models import Model, Q, QuerySet
from rest_framework import exceptions, viewsets
from rest_framework.request import Request

from tenants.audit import AuditContext
from tenants.roles import role_allows
from tenants.selectors import TenantAccess, tenant_access_for_user
from tenants.services import Actor

_M = TypeVar("_M", bound=Model)

_SEALED = ("initial", "get_queryset", "get_object")


class TenantScopedViewSet(viewsets.GenericViewSet[_M]):
    """Resolves `self.access` from the URL and scopes every queryset to that tenant."""

    #: Unfiltered queryset of a tenant-owned model; the base adds `tenant=…` to it.
    scoped_queryset: ClassVar[QuerySet[Any]]
    #: action name -> permission from tenants.roles.PERMISSIONS; missing actions are denied.
    action_permissions: ClassVar[dict[str, str]] = {}
    tenant_field: ClassVar[str] = "tenant"
    #: Read actions also see platform-wide rows (tenant is NULL), e.g. global deployments;
    #: writes never reach them through a tenant URL.
    include_shared_on_read: ClassVar[bool] = False
    read_actions: ClassVar[frozenset[str]] = frozenset({"list", "retrieve", "metadata"})
    lookup_value_regex = r"[0-9]+"

    access: TenantAccess

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        overridden = [name for name in _SEALED if name in cls.__dict__]
        if overridden:
            raise TypeError(f"{cls.__name__} may not override {', '.join(overridden)}")

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        access = tenant_access_for_user(request.user, kwargs.get("tenant", ""))
        if access is None:
            raise exceptions.NotFound("No such tenant.")
        self.access = access
        if self.action is None:
            return  # no handler for this method: DRF answers 405 next
        action = "list" if self.action == "metadata" else self.action
        permission = self.action_permissions.get(action)
        if permission is None or not role_allows(access.role, permission):
            raise exceptions.PermissionDenied(
                f"Your role ({access.role}) does not allow this action."
            )

    def get_queryset(self) -> QuerySet[_M]:
        if getattr(self, "swagger_fake_view", False):  # schema generation: no request, no tenant
            return self.scoped_queryset.none()
        own = Q(**{self.tenant_field: self.access.tenant})
        if self.include_shared_on_read and self.action in self.read_actions:
            own |= Q(**{f"{self.tenant_field}__isnull": True})
        return self.scoped_queryset.filter(own)

    def get_object(self) -> _M:
        lookup = self.kwargs.get(self.lookup_url_kwarg or self.lookup_field, "")
        if not str(lookup).isdigit():
            raise exceptions.NotFound()
        obj = self.get_queryset().filter(pk=int(lookup)).first()
        if obj is None:
            raise exceptions.NotFound()
        return obj

    def get_serializer_context(self) -> dict[str, Any]:
        context = dict(super().get_serializer_context())
        if hasattr(self, "access"):
            context["tenant"] = self.access.tenant
        return context

    @property
    def audit_context(self) -> AuditContext:
        return AuditContext.from_request(self.request)

    @property
    def actor(self) -> Actor:
        return Actor(user=self.request.user, role=self.access.role)  # type: ignore[arg-type]
