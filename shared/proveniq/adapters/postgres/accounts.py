"""Partners (organizations, the tenants) and their API keys in PostgreSQL (the AccountStore)."""

from __future__ import annotations

from typing import Any, Literal

from proveniq.adapters.postgres import statements
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
            cur.execute(f"SELECT {_PARTNER} FROM partners ORDER BY created_at, id")  # noqa: S608
            return [_partner(r) for r in cur.fetchall()]

    def partner(self, partner_id: str) -> Partner | None:
        with self.pool.transaction() as cur:
            cur.execute(f"SELECT {_PARTNER} FROM partners WHERE id = %s", (partner_id,))  # noqa: S608
            row = cur.fetchone()
        return None if row is None else _partner(row)

    def update_partner(
        self, partner_id: str, *, tier: str | None, suspended: bool | None
    ) -> Partner | None:
        # the app role has no UPDATE on partners: one narrow SECURITY DEFINER function
        with self.pool.transaction() as cur:
            cur.execute("SELECT update_partner(%s, %s, %s)", (partner_id, tier, suspended))
            found = bool(cur.fetchone()[0])
        return self.partner(partner_id) if found else None

    def keys(self, partner_id: str | None) -> list[KeyRecord]:
        with self.pool.transaction() as cur:
            cur.execute(
                f"SELECT {_KEY} FROM api_keys k LEFT JOIN partners p ON p.id = k.partner_id "  # noqa: S608
                "WHERE k.partner_id IS NOT DISTINCT FROM %s ORDER BY k.created_at DESC, k.id",
                (partner_id,),
            )
            return [_key(r) for r in cur.fetchall()]

    def partner_exists(self, partner_id: str) -> bool:
        with self.pool.transaction() as cur:
            cur.execute("SELECT 1 FROM partners WHERE id = %s", (partner_id,))
            return cur.fetchone() is not None

    def active_partner_tier(self, partner_id: str) -> str | None:
        with self.pool.connection() as conn:  # one statement, one round trip
            found = statements.rows(
                conn,
                "SELECT tier FROM partners WHERE id = %s AND disabled_at IS NULL",
                (partner_id,),
            )
        return None if not found else str(found[0][0])

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
        with self.pool.connection() as conn:  # one statement, one round trip
            found = statements.rows(
                conn,
                f"SELECT {_KEY} FROM api_keys k LEFT JOIN partners p ON p.id = k.partner_id "  # noqa: S608
                "WHERE k.prefix = %s",
                (prefix,),
            )
        return None if not found else _key(found[0])


_PARTNER = "id, name, tier, created_at, disabled_at IS NOT NULL"
_KEY = (
    "k.id, k.prefix, k.key_hash, k.partner_id, k.org_role, k.global_role, "
    "coalesce(p.tier, 'enterprise'), k.revoked_at IS NOT NULL OR p.disabled_at IS NOT NULL, "
    "k.label, k.created_at, k.revoked_at"
)


def _partner(r: Any) -> Partner:
    return Partner(
        id=r[0],
        name=r[1],
        tier=r[2],
        created_at=r[3],
        status="suspended" if r[4] else "active",
    )


def _key(r: Any) -> KeyRecord:
    return KeyRecord(
        id=r[0],
        prefix=r[1],
        key_hash=bytes(r[2]),
        partner_id=r[3],
        org_role=r[4],
        global_role=r[5],
        tier=r[6],
        revoked=bool(r[7]),
        label=r[8],
        created_at=r[9],
        revoked_at=r[10],
    )
