"""The HTTP edge shared by every function: routing, the Core manual's response envelope,
authentication, rate-limit headers, body limits, and error mapping (never a bare 500).

    success: {"success": true, "data": ..., "meta": {...}?}
    error:   {"success": false, "error": {"code", "message", "details": [...]}}
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from flask import Request, Response
from werkzeug.exceptions import HTTPException

from proveniq.access import rbac
from proveniq.errors import (
    InternalError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ProveniqError,
    RateLimited,
    ValidationError,
)
from proveniq.ports import Principal

log = logging.getLogger("proveniq.http")


@dataclass(frozen=True, kw_only=True)
class Reply:
    status: int = 200
    data: Any = None
    meta: Mapping[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    raw: bytes | None = None  # a stored response (idempotent replay), sent as is
    content_type: str = "application/json"


@dataclass(frozen=True, kw_only=True)
class Call:
    request: Request
    params: Mapping[str, str]
    principal: Principal
    tenant: str | None
    body: bytes

    def header(self, name: str) -> str | None:
        return self.request.headers.get(name)


Handler = Callable[[Call], Reply]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    permission: str | None  # None: public (health)
    tenant_scoped: bool = True
    template: str = ""  # the OpenAPI path template, for metrics and traces (never a raw path)

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if method != self.method:
            return None
        m = self.pattern.fullmatch(path)
        return m.groupdict() if m else None


class Gate(Protocol):
    """Authentication, rate limits and tenant checks (`proveniq.access.gate.Gate`)."""

    def authenticate(self, headers: Any, client: str = "") -> Principal: ...

    def rate_limit(self, principal: Principal, tenant: str | None) -> Mapping[str, str]: ...

    def check_tenant(self, tenant: str) -> None: ...


Observe = Callable[[str, str | None, int, float], None]  # method, route template, status, secs


def serve(
    request: Request,
    routes: Sequence[Route],
    edge: Gate,
    *,
    max_body: int,
    observe: Observe | None = None,
) -> Response:
    started = time.perf_counter()
    response, template = _serve(request, routes, edge, max_body=max_body)
    if observe is not None:
        observe(request.method, template, response.status_code, time.perf_counter() - started)
    return response


def _serve(
    request: Request, routes: Sequence[Route], edge: Gate, *, max_body: int
) -> tuple[Response, str | None]:
    """The response, and the matched route's template (None when no route matched)."""
    extra: dict[str, str] = {}
    template: str | None = None
    try:
        route, params = _route(routes, request)
        template = route.template
        if route.permission is None:
            reply = route.handler(
                Call(request=request, params=params, body=b"", principal=_ANONYMOUS, tenant=None)
            )
        else:
            principal = edge.authenticate(request.headers, request.remote_addr or "")
            rbac.require(principal, route.permission)
            tenant = None
            if route.tenant_scoped:
                tenant = rbac.tenant_for(principal, request.headers.get("X-Proveniq-Tenant"))
                if tenant != principal.tenant:
                    rbac.require_in_other_tenant(principal, route.permission)
                    edge.check_tenant(tenant)
            extra.update(edge.rate_limit(principal, tenant))
            body = _body(request, max_body) if request.method in ("POST", "PUT", "PATCH") else b""
            reply = route.handler(
                Call(request=request, params=params, principal=principal, tenant=tenant, body=body)
            )
        return _respond(reply, extra), template
    except ProveniqError as e:
        if e.status >= 500:
            log.error("request failed: %s", e.message, extra={"code": e.code})
        return error_response(e, extra), template
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(InternalError("unexpected server error"), extra), template


def error_response(e: ProveniqError, extra: Mapping[str, str] | None = None) -> Response:
    error: dict[str, Any] = {"code": e.code, "message": e.message}
    details = e.details()
    if details:
        error["details"] = details
    headers = dict(extra or {})
    if isinstance(e, RateLimited):
        headers["Retry-After"] = str(e.retry_after)
        if e.limit:
            headers.update({"X-RateLimit-Limit": str(e.limit), "X-RateLimit-Remaining": "0"})
        if e.reset:
            headers["X-RateLimit-Reset"] = str(e.reset)
    if isinstance(e, MethodNotAllowed) and e.allow:
        headers["Allow"] = ", ".join(e.allow)
    return Response(
        json.dumps({"success": False, "error": error}),
        status=e.status,
        headers=[*headers.items(), ("Content-Type", "application/json")],
    )


def envelope(data: Any, meta: Mapping[str, Any] | None = None) -> bytes:
    doc: dict[str, Any] = {"success": True, "data": data}
    if meta is not None:
        doc["meta"] = dict(meta)
    return json.dumps(doc, separators=(",", ":")).encode()


def _respond(reply: Reply, extra: Mapping[str, str]) -> Response:
    body = (
        reply.raw
        if reply.raw is not None
        else (
            envelope(reply.data, reply.meta)
            if reply.content_type == "application/json"
            else str(reply.data).encode()
        )
    )
    merged = {**extra, **reply.headers} if reply.headers else extra
    if any(k.lower() == "content-type" for k in reply.headers):
        return Response(body, status=reply.status, headers=merged, content_type=reply.content_type)
    # a header list ending in Content-Type: what `content_type=` would build (werkzeug sets it
    # last), without a dict -> Headers conversion and a case-insensitive replace per response
    return Response(
        body, status=reply.status, headers=[*merged.items(), ("Content-Type", reply.content_type)]
    )


def _route(routes: Sequence[Route], request: Request) -> tuple[Route, dict[str, str]]:
    path = request.path.rstrip("/") or "/"
    methods = []
    for r in routes:
        params = r.match(request.method, path)
        if params is not None:
            return r, params
        if r.pattern.fullmatch(path):
            methods.append(r.method)
    if methods:
        raise MethodNotAllowed(
            f"{request.method} is not allowed here; use {', '.join(methods)}",
            allow=tuple(sorted(set(methods))),
        )
    raise NotFound(f"no route for {request.method} {path}")


def _body(request: Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"request body over {limit} bytes")
    try:
        data = request.stream.read(limit + 1)
    except (HTTPException, OSError, ValueError) as e:  # short body, bad chunk framing
        raise ValidationError(
            "request body is shorter than its Content-Length or badly framed", field="body"
        ) from e
    if len(data) > limit:
        raise PayloadTooLarge(f"request body over {limit} bytes")
    ctype = request.environ.get("CONTENT_TYPE", "")
    if ctype != "application/json":  # the usual exact value needs no parsing
        ctype = (request.mimetype or "").lower()
    if data and ctype != "application/json":
        raise ValidationError("Content-Type must be application/json", field="Content-Type")
    return data


_ANONYMOUS = Principal(subject="anonymous", tenant=None, org_role=None)
