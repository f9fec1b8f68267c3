"""The single route map: which function serves which method and path, with what permission.

The function entry points, the local gateway (`proveniq.app.localstack`) and the API Gateway
spec (`terraform/openapi.yaml`, checked by a test) all read this table. Paths are OpenAPI
templates; each `{name}` matches the pattern in `PARAMS`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass

from proveniq.edge.http import Handler, Route

SUBJECT = r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}"
PARAMS = {
    "event_id": r"evt_[0-9a-f]{32}",
    "leaf_hash": r"[0-9a-f]{64}",
    "subject": SUBJECT,
    "size": r"[1-9][0-9]{0,17}",
    "key_id": r"key_[0-9a-f]{12}",
    "partner_id": r"prt_[0-9a-f]{16}",
    "webhook_id": r"wh_[0-9a-f]{24}",
    "delivery_id": r"dlv_[0-9a-f]{32}",
    "device_id": r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}",
}
READ = "asset:read"
WRITE = "asset:create"
ADMIN = "admin:system"
REVIEW = "asset:update"  # a risk review is a decision on the claim (OWNER, ADMIN, MEMBER)
SETTINGS = "org:settings"  # webhooks and devices are the organization's settings
MEMBERS = "org:members"  # an organization's own API keys


@dataclass(frozen=True)
class RouteSpec:
    function: str  # functions/<function>/ serves it; "*" for every HTTP function (health)
    method: str
    path: str  # OpenAPI path template
    handler: str  # attribute of the function's handler object
    permission: str | None  # None: public
    tenant_scoped: bool = True

    @functools.cached_property
    def regex(self) -> re.Pattern[str]:
        return re.compile(
            re.sub(
                r"\\{(\w+)\\}",
                lambda m: f"(?P<{m.group(1)}>{PARAMS[m.group(1)]})",
                re.escape(self.path),
            )
        )


ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec("*", "GET", "/health", "health", None),
    RouteSpec("*", "GET", "/ready", "ready", None),
    # write_event: sequencing
    RouteSpec("write_event", "POST", "/v1/events", "write_one", WRITE),
    RouteSpec("write_event", "POST", "/v1/events:batch", "write_batch", WRITE),
    RouteSpec("write_event", "POST", "/v1/risk/analyze", "analyze", WRITE),
    RouteSpec("write_event", "POST", "/v1/risk/{subject}/review", "review", REVIEW),
    # get_proof: proofs, checkpoints, queries
    RouteSpec("get_proof", "GET", "/v1/events/{event_id}/proof", "event_proof", READ),
    RouteSpec("get_proof", "GET", "/v1/events/{event_id}", "get_event", READ),
    RouteSpec("get_proof", "GET", "/v1/events", "list_events", READ),
    RouteSpec("get_proof", "GET", "/v1/leaves/{leaf_hash}", "by_leaf", READ),
    RouteSpec("get_proof", "GET", "/v1/subjects/{subject}/history", "subject_history", READ),
    RouteSpec("get_proof", "POST", "/v1/claims/{subject}/verify", "claim_verify", READ),
    RouteSpec("get_proof", "POST", "/v1/proofs:batch", "proofs_batch", READ),
    RouteSpec("get_proof", "POST", "/v1/proofs/verify", "verify", READ, tenant_scoped=False),
    RouteSpec("get_proof", "GET", "/v1/checkpoints", "checkpoints", READ, tenant_scoped=False),
    RouteSpec(
        "get_proof", "GET", "/v1/checkpoints/latest", "checkpoint", READ, tenant_scoped=False
    ),
    RouteSpec(
        "get_proof", "GET", "/v1/checkpoints/{size}", "checkpoint", READ, tenant_scoped=False
    ),
    RouteSpec(
        "get_proof", "GET", "/v1/proofs/consistency", "consistency", READ, tenant_scoped=False
    ),
    RouteSpec("get_proof", "GET", "/v1/log/public-key", "public_key", READ, tenant_scoped=False),
    RouteSpec("get_proof", "GET", "/v1/risk/reviews", "queue", READ),
    RouteSpec("get_proof", "GET", "/v1/risk/{subject}/score", "score", READ),
    RouteSpec("get_proof", "GET", "/v1/risk/{subject}/explanation", "explanation", READ),
    # admin: partners and keys
    RouteSpec("admin", "POST", "/v1/admin/partners", "create_partner", ADMIN, tenant_scoped=False),
    RouteSpec("admin", "GET", "/v1/admin/partners", "list_partners", ADMIN, tenant_scoped=False),
    RouteSpec(
        "admin", "GET", "/v1/admin/partners/{partner_id}", "get_partner", ADMIN, tenant_scoped=False
    ),
    RouteSpec(
        "admin",
        "PATCH",
        "/v1/admin/partners/{partner_id}",
        "update_partner",
        ADMIN,
        tenant_scoped=False,
    ),
    RouteSpec("admin", "POST", "/v1/admin/api-keys", "create_key", ADMIN, tenant_scoped=False),
    RouteSpec("admin", "GET", "/v1/admin/api-keys", "list_keys", ADMIN, tenant_scoped=False),
    RouteSpec("admin", "GET", "/v1/admin/config", "config", ADMIN, tenant_scoped=False),
    RouteSpec(
        "admin", "DELETE", "/v1/admin/api-keys/{key_id}", "revoke_key", ADMIN, tenant_scoped=False
    ),
    # admin: the organization's own keys, webhooks and devices
    RouteSpec("admin", "POST", "/v1/keys", "create", MEMBERS),
    RouteSpec("admin", "GET", "/v1/keys", "list", MEMBERS),
    RouteSpec("admin", "DELETE", "/v1/keys/{key_id}", "revoke", MEMBERS),
    RouteSpec("admin", "POST", "/v1/webhooks", "create", SETTINGS),
    RouteSpec("admin", "GET", "/v1/webhooks", "list", SETTINGS),
    RouteSpec("admin", "GET", "/v1/webhooks/{webhook_id}", "get", SETTINGS),
    RouteSpec("admin", "PATCH", "/v1/webhooks/{webhook_id}", "update", SETTINGS),
    RouteSpec("admin", "DELETE", "/v1/webhooks/{webhook_id}", "delete", SETTINGS),
    RouteSpec(
        "admin", "POST", "/v1/webhooks/{webhook_id}/rotate-secret", "rotate_secret", SETTINGS
    ),
    RouteSpec("admin", "POST", "/v1/webhooks/{webhook_id}/test", "test", SETTINGS),
    RouteSpec("admin", "GET", "/v1/webhooks/{webhook_id}/deliveries", "deliveries", SETTINGS),
    RouteSpec(
        "admin",
        "POST",
        "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/replay",
        "replay",
        SETTINGS,
    ),
    RouteSpec("admin", "POST", "/v1/devices", "register", SETTINGS),
    RouteSpec("admin", "GET", "/v1/devices", "list", SETTINGS),
    RouteSpec("admin", "GET", "/v1/devices/{device_id}", "get", SETTINGS),
    RouteSpec("admin", "PATCH", "/v1/devices/{device_id}", "patch", SETTINGS),
)


def specs_for(function: str) -> list[RouteSpec]:
    return [s for s in ROUTES if s.function in (function, "*")]


def http_functions() -> list[str]:
    return sorted({s.function for s in ROUTES if s.function != "*"})


def handler_group(path: str) -> str:
    """Which handler object serves a path: the first segment after /v1 (health: "health")."""
    parts = path.split("/")
    return parts[2].split(":")[0] if len(parts) > 2 else "health"


def routes_for(function: str, handlers: Mapping[str, object]) -> list[Route]:
    """The routes `function` serves, bound to `handlers[handler_group(path)].<handler>`."""
    out = []
    for spec in specs_for(function):
        group = handlers.get(handler_group(spec.path))
        handler: Handler | None = getattr(group, spec.handler, None)
        if handler is None:
            raise LookupError(f"no handler {spec.handler!r} for {spec.path} in {function}")
        out.append(
            Route(spec.method, spec.regex, handler, spec.permission, spec.tenant_scoped, spec.path)
        )
    return out


def matching(path: str) -> tuple[RouteSpec, ...]:
    """Every route whose template matches `path`, in route-map order. A path without
    parameters (`/v1/events`) is a dictionary look-up; others are matched once per distinct
    path while they stay in a bounded cache."""
    found = _STATIC.get(path)
    if found is not None:
        return found
    return _cached_scan(path) if len(path) <= _CACHED_PATH else _scan(path)


_CACHED_PATH = 256  # longer paths (none of ours) are matched without being cached


def _scan(path: str) -> tuple[RouteSpec, ...]:
    return tuple(s for s in ROUTES if s.regex.fullmatch(path))


_cached_scan = functools.lru_cache(maxsize=2048)(_scan)


# Each parameter-free template, with every route that matches it (templates included).
_STATIC: dict[str, tuple[RouteSpec, ...]] = {
    s.path: tuple(r for r in ROUTES if r.regex.fullmatch(s.path))
    for s in ROUTES
    if "{" not in s.path
}


def function_for(method: str, path: str) -> str | None:
    """Which function the gateway sends a request to: the one serving this method and path, or
    (for a 405 answer) the first one serving the path with another method."""
    fallback = None
    for spec in matching(path):
        if spec.method == method:
            return spec.function
        fallback = fallback or spec.function
    return fallback


def allowed_methods(path: str) -> set[str]:
    """Every method the route map serves on `path` (for a 405's Allow header)."""
    return {s.method for s in matching(path)}
