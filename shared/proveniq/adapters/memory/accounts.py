"""AccountStore and RateBuckets in memory (the twins of the PostgreSQL adapters)."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Literal

from proveniq.errors import Conflict
from proveniq.ports import KeyRecord, Partner


class MemoryAccounts:
    def __init__(self) -> None:
        self._partners: dict[str, Partner] = {}
        self._keys: dict[str, KeyRecord] = {}  # by prefix
        self._lock = threading.Lock()

    def insert_partner(self, *, partner_id: str, name: str, tier: str) -> Partner:
        with self._lock:
            if partner_id in self._partners:
                raise Conflict(f"partner {partner_id} exists")
            p = Partner(id=partner_id, name=name, tier=tier, created_at=datetime.now(UTC))
            self._partners[partner_id] = p
            return p

    def partners(self) -> list[Partner]:
        with self._lock:
            return sorted(self._partners.values(), key=lambda p: (p.created_at, p.id))

    def partner_exists(self, partner_id: str) -> bool:
        with self._lock:
            return partner_id in self._partners

    def active_partner_tier(self, partner_id: str) -> str | None:
        with self._lock:
            p = self._partners.get(partner_id)
            return None if p is None or p.status != "active" else p.tier

    def partner(self, partner_id: str) -> Partner | None:
        with self._lock:
            return self._partners.get(partner_id)

    def update_partner(
        self, partner_id: str, *, tier: str | None, suspended: bool | None
    ) -> Partner | None:
        with self._lock:
            p = self._partners.get(partner_id)
            if p is None:
                return None
            status = p.status if suspended is None else ("suspended" if suspended else "active")
            p = replace(p, tier=tier or p.tier, status=status)
            self._partners[partner_id] = p
            return p

    def keys(self, partner_id: str | None) -> list[KeyRecord]:
        with self._lock:
            found = [k for k in self._keys.values() if k.partner_id == partner_id]
        return [
            self.key_by_prefix(k.prefix) or k
            for k in sorted(found, key=lambda k: (k.created_at, k.id), reverse=True)
        ]

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
        with self._lock:
            if prefix in self._keys or any(k.id == key_id for k in self._keys.values()):
                raise Conflict(f"API key {key_id} exists")
            self._keys[prefix] = KeyRecord(
                id=key_id,
                prefix=prefix,
                key_hash=key_hash,
                partner_id=partner_id,
                org_role=org_role,
                global_role=global_role,
                tier="enterprise" if partner_id is None else "",
                revoked=False,
                label=label,
                created_at=datetime.now(UTC),
            )

    def revoke_key(self, key_id: str) -> Literal["revoked", "already", "missing"]:
        with self._lock:
            for prefix, rec in self._keys.items():
                if rec.id == key_id:
                    if rec.revoked:
                        return "already"
                    self._keys[prefix] = replace(rec, revoked=True, revoked_at=datetime.now(UTC))
                    return "revoked"
            return "missing"

    def key_by_prefix(self, prefix: str) -> KeyRecord | None:
        with self._lock:
            rec = self._keys.get(prefix)
            if rec is None or rec.partner_id is None:
                return rec
            partner = self._partners[rec.partner_id]
            return replace(
                rec, tier=partner.tier, revoked=rec.revoked or partner.status != "active"
            )


class MemoryRateBuckets:
    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}  # bucket -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, *, bucket: str, capacity: float, refill_per_second: float) -> float:
        now = time.monotonic()
        with self._lock:
            tokens, at = self._buckets.get(bucket, (capacity, now))
            tokens = max(-1.0, min(capacity, tokens + refill_per_second * (now - at)) - 1)
            self._buckets[bucket] = (tokens, now)
            return tokens
