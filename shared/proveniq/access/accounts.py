"""Partners (organizations, the tenants) and their API keys: the rules, over an AccountStore."""

from __future__ import annotations

import secrets

from proveniq.access import apikeys
from proveniq.errors import Conflict, Forbidden, NotFound, ValidationError
from proveniq.ports import AccountStore, KeyRecord, Partner, Principal

TIERS = ("free", "pro", "enterprise", "internal")
ORG_ROLES = ("OWNER", "ADMIN", "MEMBER", "VIEWER")
GLOBAL_ROLES = ("ADMIN", "AUDITOR", "INVESTOR", "USER")


class Accounts:
    def __init__(self, store: AccountStore) -> None:
        self.store = store

    def create_partner(self, *, name: str, tier: str) -> Partner:
        if tier not in TIERS:
            raise ValidationError(f"tier must be one of {', '.join(TIERS)}", field="tier")
        return self.store.insert_partner(
            partner_id=f"prt_{secrets.token_hex(8)}", name=name, tier=tier
        )

    def list_partners(self) -> list[Partner]:
        return self.store.partners()

    def get_partner(self, partner_id: str) -> Partner:
        partner = self.store.partner(partner_id)
        if partner is None:
            raise NotFound(f"partner {partner_id} not found")
        return partner

    def update_partner(
        self, partner_id: str, *, tier: str | None = None, status: str | None = None
    ) -> Partner:
        """Change the tier and/or suspend (`suspended`) or reinstate (`active`) a partner. A
        suspended partner's keys and app tokens are refused (within the caches' seconds)."""
        if tier is not None and tier not in TIERS:
            raise ValidationError(f"tier must be one of {', '.join(TIERS)}", field="tier")
        if status is not None and status not in ("active", "suspended"):
            raise ValidationError("status must be 'active' or 'suspended'", field="status")
        updated = self.store.update_partner(
            partner_id, tier=tier, suspended=None if status is None else status == "suspended"
        )
        if updated is None:
            raise NotFound(f"partner {partner_id} not found")
        return updated

    def list_keys(self, partner_id: str | None) -> list[KeyRecord]:
        if partner_id is not None:
            self.get_partner(partner_id)
        return self.store.keys(partner_id)

    def create_key(
        self,
        *,
        partner_id: str | None,
        org_role: str | None,
        global_role: str = "USER",
        label: str = "",
        env: str = "live",
    ) -> tuple[apikeys.NewKey, KeyRecord]:
        if org_role is not None and org_role not in ORG_ROLES:
            raise ValidationError(f"role must be one of {', '.join(ORG_ROLES)}", field="role")
        if global_role not in GLOBAL_ROLES:
            raise ValidationError("unknown global role", field="global_role")
        if partner_id is None and global_role == "USER":
            raise ValidationError("a key needs a partner or a global role", field="partner_id")
        if partner_id is not None and org_role is None:
            org_role = "MEMBER"
        if partner_id is not None and not self.store.partner_exists(partner_id):
            raise NotFound(f"partner {partner_id} not found")
        new = apikeys.generate(env=env)
        self.store.insert_key(
            key_id=new.key_id,
            prefix=new.prefix,
            key_hash=new.key_hash,
            partner_id=partner_id,
            org_role=org_role,
            global_role=global_role,
            label=label,
        )
        return new, self.lookup(new.prefix)

    def revoke_key(self, key_id: str) -> None:
        outcome = self.store.revoke_key(key_id)
        if outcome == "missing":
            raise NotFound(f"API key {key_id} not found")
        if outcome == "already":
            raise Conflict(f"API key {key_id} is already revoked")

    def partner_tier(self, partner_id: str) -> str | None:
        """The tier of an active partner, None if there is no such (active) partner."""
        return self.store.active_partner_tier(partner_id)

    def lookup(self, prefix: str) -> KeyRecord:
        rec = self.store.key_by_prefix(prefix)
        if rec is None:
            raise NotFound("no such key")
        return rec


def principal_of(rec: KeyRecord) -> Principal:
    return Principal(
        subject=f"key:{rec.id}",
        tenant=rec.partner_id,
        org_role=rec.org_role,  # type: ignore[arg-type]
        global_role=rec.global_role,  # type: ignore[arg-type]
        tier=rec.tier,
    )


# An organization's OWNER may mint any org role; its ADMIN any but OWNER; nobody else mints.
MINTABLE: dict[str, frozenset[str]] = {
    "OWNER": frozenset(ORG_ROLES),
    "ADMIN": frozenset({"ADMIN", "MEMBER", "VIEWER"}),
}


def check_mintable(principal: Principal, role: str) -> None:
    """An organization's own key managers never mint a role above their own."""
    if principal.global_role == "ADMIN":
        return
    allowed = MINTABLE.get(principal.org_role or "", frozenset())
    if role not in allowed:
        raise Forbidden(f"a {principal.org_role} cannot create a key with role {role}")
