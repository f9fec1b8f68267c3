"""Roles and permissions exactly as the Core manual's matrix (§6.3-6.4), and tenant resolution.

Org roles grant the matrix's permissions inside their own organization (tenant). Global roles:
ADMIN has every permission in every tenant; AUDITOR reads every tenant (`asset:read`,
`admin:audit`); INVESTOR and USER get nothing beyond their org role. The ledger maps its
operations onto the matrix: appending an event is `asset:create`, reading events and proofs is
`asset:read`, partner and API-key management is `admin:system`.
"""

from __future__ import annotations

from collections.abc import Mapping

from proveniq.errors import Forbidden, ValidationError
from proveniq.ports import Principal

PERMISSIONS: Mapping[str, frozenset[str]] = {
    "asset:create": frozenset({"OWNER", "ADMIN", "MEMBER"}),
    "asset:read": frozenset({"OWNER", "ADMIN", "MEMBER", "VIEWER"}),
    "asset:update": frozenset({"OWNER", "ADMIN", "MEMBER"}),
    "asset:delete": frozenset({"OWNER", "ADMIN"}),
    "org:settings": frozenset({"OWNER", "ADMIN"}),
    "org:members": frozenset({"OWNER", "ADMIN"}),
    "org:billing": frozenset({"OWNER"}),
    "org:delete": frozenset({"OWNER"}),
    "admin:audit": frozenset({"ADMIN", "AUDITOR"}),
    "admin:users": frozenset({"ADMIN"}),
    "admin:system": frozenset({"ADMIN"}),
}
_GLOBAL_ONLY = {"admin:audit", "admin:users", "admin:system"}
_AUDITOR_GRANTS = frozenset({"asset:read", "admin:audit"})


def allowed(principal: Principal, permission: str) -> bool:
    roles = PERMISSIONS.get(permission)
    if roles is None:
        raise ValueError(f"unknown permission {permission!r}")
    if principal.global_role == "ADMIN":
        return True
    if principal.global_role == "AUDITOR" and permission in _AUDITOR_GRANTS:
        return True
    if permission in _GLOBAL_ONLY:
        return False
    return principal.org_role is not None and principal.org_role in roles


def require(principal: Principal, permission: str) -> None:
    if not allowed(principal, permission):
        raise Forbidden(f"permission {permission} is required")


def require_in_other_tenant(principal: Principal, permission: str) -> None:
    """Acting outside one's own organization: only the global role counts (an org role grants
    nothing in another organization)."""
    if principal.global_role == "ADMIN":
        return
    if principal.global_role == "AUDITOR" and permission in _AUDITOR_GRANTS:
        return
    raise Forbidden(f"permission {permission} in another organization needs a platform role")


def tenant_for(principal: Principal, requested: str | None) -> str:
    """The tenant a request acts in: the principal's own; platform roles must name one."""
    if principal.tenant is not None:
        if requested is not None and requested != principal.tenant:
            if principal.global_role not in ("ADMIN", "AUDITOR"):
                raise Forbidden("this credential cannot act in another organization")
            return requested
        return principal.tenant
    if requested is None:
        raise ValidationError(
            "platform credentials must name the organization (X-Proveniq-Tenant header)",
            field="X-Proveniq-Tenant",
        )
    return requested
