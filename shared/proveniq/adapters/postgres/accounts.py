"""Partners (organizations, the tenants) and their API keys in PostgreSQL (the AccountStore)."""

from __future__ import annotations

from typing import Literal

from proveniq.adapters.postgres.pool import Pool
from proveniq.ports import KeyRecord, Partner


class PostgresAccounts:
    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    def insert_partner(self, *, partner_id: str, name: str, tier: str) -> Partner:
        with self.pool.transaction() as cur:
            cur.execute(
                "INSERT INTO partners (id, name, tier) VALUES (%s, %s, %s) RETURNING created_at",
                (partner_id, name, tier),
            )
            (created,) = cur.fetchone()
        return Partner(id=partner_id, name=name, tier=tier, created_at=created)

    def partners(self) -> list[Partner]:
        with self.pool.transaction() as cur:
            cur.execute("SELECT id, name, tier, created_at FROM partners ORDER BY created_at, id")
            return [Partner(id=r[0], name=r[1], tier=r[2], created_at=r[3]) for r in cur.fetchall()]

    def partner_exists(self, partner_id: str) -> bool:
        with self.pool.transaction() as cur:
            cur.execute("SELECT 1 FROM partners WHERE id = %s", (partner_id,))
            return cur.fetchone() is not None

    def active_partner_tier(self, partner_id: str) -> str | None:
        with self.pool.transaction() as cur:
            cur.execute(
                "SELECT tier FROM partners WHERE id = %s AND disabled_at IS NULL", (partner_id,)
            )
            row = cur.fetchone()
        return None if row is None else str(row[0])

    def insert_key(
        self,
        *,
        key_id: str,
        prefix: str,
        key_hash: bytes,
        partner_id: str | None,
        org_role: str | None,
        global_role: str,
        label: str,
    ) -> None:
        with self.pool.transaction() as cur:
            cur.execute(
                "INSERT INTO api_keys (id, prefix, key_hash, partner_id, org_role, global_role,"
                " label) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (key_id, prefix, key_hash, partner_id, org_role, global_role, label),
            )

    def revoke_key(self, key_id: str) -> Literal["revoked", "already", "missing"]:
        # the app role has no UPDATE on api_keys: one narrow SECURITY DEFINER function
        with self.pool.transaction() as cur:
            cur.execute("SELECT revoke_api_key(%s)", (key_id,))
            outcome = str(cur.fetchone()[0])
        assert outcome in ("revoked", "already", "missing")
        return outcome  # type: ignore[return-value]

    def key_by_prefix(self, prefix: str) -> KeyRecord | None:
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
            return None
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
