"""admin's handlers: partners and API keys (global ADMIN only)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from proveniq.access.accounts import Accounts
from proveniq.edge.http import Call, Reply
from proveniq.edge.params import json_object
from proveniq.edge.views import NO_STORE
from proveniq.errors import NotFound, ValidationError

SECRET_SETTINGS = frozenset({"database_url", "gemini_api_key"})


class AdminHandlers:
    def __init__(self, *, accounts: Accounts, config: Callable[[], Mapping[str, Any]]) -> None:
        self.accounts = accounts
        self._config = config

    def get_partner(self, call: Call) -> Reply:
        partner = self.accounts.get_partner(call.params["partner_id"])
        return Reply(data=partner.to_json(), headers=NO_STORE)

    def update_partner(self, call: Call) -> Reply:
        doc = json_object(call.body, {"tier", "status"})
        for k in ("tier", "status"):
            if k in doc and not isinstance(doc[k], str):
                raise ValidationError("must be a string", field=k)
        if not doc:
            raise ValidationError("send tier and/or status", field="body")
        partner = self.accounts.update_partner(
            call.params["partner_id"], tier=doc.get("tier"), status=doc.get("status")
        )
        return Reply(data=partner.to_json(), headers=NO_STORE)

    def list_keys(self, call: Call) -> Reply:
        partner_id = call.request.args.get("partner_id") or None
        if partner_id is not None and not re.fullmatch(r"prt_[0-9a-f]{16}", partner_id):
            raise NotFound(f"partner {partner_id[:40]} not found")
        keys = [k.to_json() for k in self.accounts.list_keys(partner_id)]
        return Reply(data=keys, meta={"count": len(keys)}, headers=NO_STORE)

    def config(self, _: Call) -> Reply:
        """The effective configuration, without secrets (a secret shows only as configured)."""
        data = {k: (bool(v) if k in SECRET_SETTINGS else v) for k, v in self._config().items()}
        return Reply(data=data, headers=NO_STORE)

    def create_partner(self, call: Call) -> Reply:
        doc = json_object(call.body, {"name", "tier"})
        name = doc.get("name")
        if not isinstance(name, str) or not 1 <= len(name) <= 200 or not name.isprintable():
            raise ValidationError("name must be 1-200 printable characters", field="name")
        tier = doc.get("tier", "free")
        if not isinstance(tier, str):
            raise ValidationError("tier must be a string", field="tier")
        partner = self.accounts.create_partner(name=name, tier=tier)
        return Reply(status=201, data=partner.to_json())

    def list_partners(self, _: Call) -> Reply:
        partners = [p.to_json() for p in self.accounts.list_partners()]
        return Reply(data=partners, meta={"total": len(partners)})

    def create_key(self, call: Call) -> Reply:
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
        new, rec = self.accounts.create_key(
            partner_id=partner_id,
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

    def revoke_key(self, call: Call) -> Reply:
        key_id = call.params["key_id"]
        self.accounts.revoke_key(key_id)
        return Reply(data={"id": key_id, "revoked": True})
