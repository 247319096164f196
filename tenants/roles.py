"""Roles and the permission matrix: one table that every check reads."""

from enum import StrEnum


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    FINANCE = "finance"
    DEVELOPER = "developer"
    VIEWER = "viewer"


ROLE_CHOICES = [(role.value, role.value.title()) for role in Role]

# Rank decides who may grant what: nobody grants a role above their own, and only an owner
# grants or changes an owner. Finance and developer are peers.
ROLE_RANK = {
    Role.OWNER: 50,
    Role.ADMIN: 40,
    Role.FINANCE: 20,
    Role.DEVELOPER: 20,
    Role.VIEWER: 10,
}

_ALL = frozenset(Role)
_MANAGERS = frozenset({Role.OWNER, Role.ADMIN})

PERMISSIONS: dict[str, frozenset[Role]] = {
    "tenant.view": _ALL,
    "tenant.update": _MANAGERS,
    "team.view": _ALL,
    "team.manage": _MANAGERS,
    "membership.view": _ALL,
    "membership.manage": _MANAGERS,
    "api_key.view": _ALL,
    "api_key.manage": frozenset({Role.OWNER, Role.ADMIN, Role.DEVELOPER}),
    "deployment.view": _ALL,
    "deployment.manage": _MANAGERS,
    "vault.view": _ALL,
    "vault.manage": _MANAGERS,
    "audit.view": frozenset({Role.OWNER, Role.ADMIN, Role.FINANCE}),
    "usage.view": frozenset({Role.OWNER, Role.ADMIN, Role.FINANCE}),
    "budget.view": _ALL,
    "budget.manage": frozenset({Role.OWNER, Role.ADMIN, Role.FINANCE}),
}


def role_allows(role: str | None, permission: str) -> bool:
    """True when `role` holds `permission`; unknown roles and permissions are denied."""
    if role is None:
        return False
    try:
        return Role(role) in PERMISSIONS.get(permission, frozenset())
    except ValueError:
        return False


def role_can_grant(granter: str, role: str) -> bool:
    """An owner grants anything; an admin grants up to admin, never owner."""
    granter_role, target = Role(granter), Role(role)
    if target is Role.OWNER:
        return granter_role is Role.OWNER
    return ROLE_RANK[granter_role] >= ROLE_RANK[target]
