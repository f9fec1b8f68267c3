"""Partners (organizations, the tenants) and their API keys, in PostgreSQL."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from proveniq.access import apikeys
from proveniq.adapters.postgres.pool import Pool
from proveniq.errors import Conflict, NotFound, ValidationError
from proveniq.ports import Principal

TIERS = ("free", "pro", "enterprise", "internal")
ORG_ROLES = ("OWNER", "ADMIN", "MEMBER", "VIEWER")
GLOBAL_ROLES = ("ADMIN", "AUDITOR", "INVESTOR", "USER")


@dataclass(frozen=True, kw_only=True)
class Partner:
    id: str
    name: str
    tier: str
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "tier": self.tier,
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True, kw_only=True)
class KeyRecord:
    id: str
    prefix: str
    key_hash: bytes
    partner_id: str | None
    org_role: str | None
    global_role: str
    tier: str
    revoked: bool


class Accounts:
    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    def create_partner(self, *, name: str, tier: str) -> Partner:
        if tier not in TIERS:
            raise ValidationError(f"tier must be one of {', '.join(TIERS)}", field="tier")
        pid = f"prt_{secrets.token_hex(8)}"
        with self.pool.transaction() as cur:
            cur.execute(
                "INSERT INTO partners (id, name, tier) VALUES (%s, %s, %s) RETURNING created_at",
                (pid, name, tier),
            )
            (created,) = cur.fetchone()
        return Partner(id=pid, name=name, tier=tier, created_at=created)

    def list_partners(self) -> list[Partner]:
        with self.pool.transaction() as cur:
            cur.execute("SELECT id, name, tier, created_at FROM partners ORDER BY created_at, id")
            return [Partner(id=r[0], name=r[1], tier=r[2], created_at=r[3]) for r in cur.fetchall()]

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
        new = apikeys.generate(env=env)
        with self.pool.transaction() as cur:
            if partner_id is not None:
                cur.execute("SELECT 1 FROM partners WHERE id = %s", (partner_id,))
                if cur.fetchone() is None:
                    raise NotFound(f"partner {partner_id} not found")
            cur.execute(
                "INSERT INTO api_keys (id, prefix, key_hash, partner_id, org_role, global_role,"
                " label) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (new.key_id, new.prefix, new.key_hash, partner_id, org_role, global_role, label),
            )
        return new, self.lookup(new.prefix)

    def revoke_key(self, key_id: str) -> None:
        with self.pool.transaction() as cur:
            cur.execute(
                "UPDATE api_keys SET revoked_at = now() WHERE id = %s AND revoked_at IS NULL "
                "RETURNING id",
                (key_id,),
            )
            if cur.fetchone() is None:
                cur.execute("SELECT 1 FROM api_keys WHERE id = %s", (key_id,))
                if cur.fetchone() is None:
                    raise NotFound(f"API key {key_id} not found")
                raise Conflict(f"API key {key_id} is already revoked")

    def partner_tier(self, partner_id: str) -> str | None:
        """The tier of an active partner, None if there is no such (active) partner."""
        with self.pool.transaction() as cur:
            cur.execute(
                "SELECT tier FROM partners WHERE id = %s AND disabled_at IS NULL", (partner_id,)
            )
            row = cur.fetchone()
        return None if row is None else str(row[0])

    def lookup(self, prefix: str) -> KeyRecord:
        with self.pool.transaction() as cur:
            cur.execute(
                "SELECT k.id, k.prefix, k.key_hash, k.partner_id, k.org_role, k.global_role,"
                " coalesce(p.tier, 'enterprise'), k.revoked_at IS NOT NULL OR"
                " p.disabled_at IS NOT NULL"
                " FROM api_keys k LEFT JOIN partners p ON p.id = k.partner_id"
                " WHERE k.prefix = %s",
                (prefix,),
            )
            row = cur.fetchone()
        if row is None:
            raise NotFound("no such key")
        return KeyRecord(
            id=row[0],
            prefix=row[1],
            key_hash=bytes(row[2]),
            partner_id=row[3],
            org_role=row[4],
            global_role=row[5],
            tier=row[6],
            revoked=bool(row[7]),
        )


def principal_of(rec: KeyRecord) -> Principal:
    return Principal(
        subject=f"key:{rec.id}",
        tenant=rec.partner_id,
        org_role=rec.org_role,  # type: ignore[arg-type]
        global_role=rec.global_role,  # type: ignore[arg-type]
        tier=rec.tier,
    )
