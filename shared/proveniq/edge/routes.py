"""Route tables of the HTTP functions (the paths match terraform's API Gateway config)."""

from __future__ import annotations

import functools
import re
from typing import Any

from flask import Request, Response

from proveniq.app.runtime import Runtime, runtime
from proveniq.edge.http import Call, Reply, Route, json_object, serve
from proveniq.errors import NotFound, ValidationError

EVENT_ID = r"(?P<id>evt_[0-9a-f]{32})"


def health_routes(rt: Runtime) -> list[Route]:
    def health(_: Call) -> Reply:
        return Reply(data={"status": "ok"})

    def ready(_: Call) -> Reply:
        rt.ready()
        return Reply(data={"status": "ready"})

    return [Route("GET", "/health", health, None), Route("GET", "/ready", ready, None)]


def write_routes(rt: Runtime) -> list[Route]:
    return [
        Route("POST", "/v1/events", rt.append.write_one, "asset:create"),
        Route("POST", "/v1/events:batch", rt.append.write_batch, "asset:create"),
        *health_routes(rt),
    ]


SUBJECT = r"(?P<subject>[A-Za-z0-9][A-Za-z0-9_.:-]{0,127})"


def proof_routes(rt: Runtime) -> list[Route]:
    p = rt.prove
    read = "asset:read"
    return [
        Route("GET", rf"/v1/events/{EVENT_ID}/proof", p.event_proof, read),
        Route("GET", rf"/v1/events/{EVENT_ID}", p.get_event, read),
        Route("GET", "/v1/events", p.list_events, read),
        Route("GET", r"/v1/leaves/(?P<leaf>[0-9a-f]{64})", p.by_leaf, read),
        Route("GET", rf"/v1/subjects/{SUBJECT}/history", p.subject_history, read),
        Route("POST", rf"/v1/claims/{SUBJECT}/verify", p.claim_verify, read),
        Route("POST", "/v1/proofs:batch", p.proofs_batch, read),
        Route("POST", "/v1/proofs/verify", p.verify, read, tenant_scoped=False),
        Route("GET", "/v1/checkpoints/latest", p.checkpoint, read, tenant_scoped=False),
        Route(
            "GET",
            r"/v1/checkpoints/(?P<size>[1-9][0-9]{0,17})",
            p.checkpoint,
            read,
            tenant_scoped=False,
        ),
        Route("GET", "/v1/proofs/consistency", p.consistency, read, tenant_scoped=False),
        Route("GET", "/v1/log/public-key", p.public_key, read, tenant_scoped=False),
        *health_routes(rt),
    ]


def admin_routes(rt: Runtime) -> list[Route]:
    def create_partner(call: Call) -> Reply:
        doc = json_object(call.body, {"name", "tier"})
        name = doc.get("name")
        if not isinstance(name, str) or not 1 <= len(name) <= 200 or not name.isprintable():
            raise ValidationError("name must be 1-200 printable characters", field="name")
        tier = doc.get("tier", "free")
        if not isinstance(tier, str):
            raise ValidationError("tier must be a string", field="tier")
        return Reply(status=201, data=rt.accounts.create_partner(name=name, tier=tier).to_json())

    def list_partners(_: Call) -> Reply:
        partners = [p.to_json() for p in rt.accounts.list_partners()]
        return Reply(data=partners, meta={"total": len(partners)})

    def create_key(call: Call) -> Reply:
        doc = json_object(call.body, {"partner_id", "role", "global_role", "label"})
        for k in ("partner_id", "role", "global_role", "label"):
            v = doc.get(k)
            if v is not None and (not isinstance(v, str) or len(v) > 200 or not v.isprintable()):
                raise ValidationError(
                    "must be a printable string of at most 200 characters", field=k
                )
        partner_id = doc.get("partner_id")
        if partner_id is not None and not re.fullmatch(r"prt_[0-9a-f]{16}", partner_id):
            raise NotFound(f"partner {partner_id} not found")
        new, rec = rt.accounts.create_key(
            partner_id=doc.get("partner_id"),
            org_role=doc.get("role"),
            global_role=doc.get("global_role") or "USER",
            label=doc.get("label") or "",
        )
        return Reply(
            status=201,
            data={
                "id": rec.id,
                "prefix": rec.prefix,
                "partner_id": rec.partner_id,
                "role": rec.org_role,
                "global_role": rec.global_role,
                "api_key": new.secret,
                "note": "shown once: store it now",
            },
            headers={"Cache-Control": "no-store"},
        )

    def revoke_key(call: Call) -> Reply:
        rt.accounts.revoke_key(call.params["id"])
        return Reply(data={"id": call.params["id"], "revoked": True})

    return [
        Route("POST", "/v1/admin/partners", create_partner, "admin:system", tenant_scoped=False),
        Route("GET", "/v1/admin/partners", list_partners, "admin:system", tenant_scoped=False),
        Route("POST", "/v1/admin/api-keys", create_key, "admin:system", tenant_scoped=False),
        Route(
            "DELETE",
            r"/v1/admin/api-keys/(?P<id>key_[0-9a-f]{12})",
            revoke_key,
            "admin:system",
            tenant_scoped=False,
        ),
        *health_routes(rt),
    ]


def handle(request: Request, table: Any) -> Response:
    rt = runtime()
    return serve(request, _routes(table, rt), rt, max_body=rt.settings.max_body_bytes)


@functools.lru_cache(maxsize=32)
def _routes(table: Any, rt: Runtime) -> list[Route]:
    return list(table(rt))
