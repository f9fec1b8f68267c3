"""An organization's own API keys (permission `org:members`: OWNER and ADMIN): create, list and
revoke them without a platform admin, never minting a role above one's own."""

from __future__ import annotations

from proveniq.access.accounts import ORG_ROLES, Accounts, check_mintable
from proveniq.edge.http import Call, Reply
from proveniq.edge.params import json_object
from proveniq.edge.views import NO_STORE
from proveniq.errors import NotFound, ValidationError


class KeyHandlers:
    def __init__(self, *, accounts: Accounts) -> None:
        self.accounts = accounts

    def create(self, call: Call) -> Reply:
        assert call.tenant is not None
        doc = json_object(call.body, {"role", "label"})
        role, label = doc.get("role", "MEMBER"), doc.get("label", "")
        if role not in ORG_ROLES:
            raise ValidationError(f"role must be one of {', '.join(ORG_ROLES)}", field="role")
        if not isinstance(label, str) or len(label) > 200 or not label.isprintable():
            raise ValidationError("label must be printable, at most 200 characters", field="label")
        check_mintable(call.principal, role)
        new, rec = self.accounts.create_key(partner_id=call.tenant, org_role=role, label=label)
        data = {**rec.to_json(), "api_key": new.secret, "note": "shown once: store it now"}
        return Reply(status=201, data=data, headers=NO_STORE)

    def list(self, call: Call) -> Reply:
        assert call.tenant is not None
        keys = [k.to_json() for k in self.accounts.list_keys(call.tenant)]
        return Reply(data=keys, meta={"count": len(keys)}, headers=NO_STORE)

    def revoke(self, call: Call) -> Reply:
        assert call.tenant is not None
        key_id = call.params["key_id"]
        if key_id not in {k.id for k in self.accounts.list_keys(call.tenant)}:
            raise NotFound(f"API key {key_id} not found")  # another organization's: not found
        self.accounts.revoke_key(key_id)
        return Reply(data={"id": key_id, "revoked": True}, headers=NO_STORE)
