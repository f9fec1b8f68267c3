"""The access gate every HTTP request passes: authenticate, then spend from the organization's
rate budget (sized by that organization's tier, not by whatever tier a token claims)."""

from __future__ import annotations

import threading
from collections.abc import Mapping

from cachetools import TTLCache

from proveniq.access.accounts import Accounts
from proveniq.access.authentication import Authenticator
from proveniq.access.ratelimit import RateLimiter
from proveniq.errors import NotFound
from proveniq.ports import Principal

TIER_CACHE_SECONDS = 30


class Gate:
    def __init__(
        self, *, authenticator: Authenticator, limiter: RateLimiter, accounts: Accounts
    ) -> None:
        self.authenticator = authenticator
        self.limiter = limiter
        self.accounts = accounts
        self._tiers: TTLCache[str, str | None] = TTLCache(maxsize=10_000, ttl=TIER_CACHE_SECONDS)
        self._lock = threading.Lock()

    def authenticate(self, headers: Mapping[str, str]) -> Principal:
        return self.authenticator.authenticate(headers)

    def rate_limit(self, principal: Principal, tenant: str | None) -> Mapping[str, str]:
        # One bucket per organization; platform credentials without one get their own bucket.
        if principal.tenant is not None:
            bucket, tier = principal.tenant, self._tier(principal.tenant) or "free"
        else:
            bucket, tier = principal.subject, principal.tier
        budget = self.limiter.take(bucket=bucket, tier=tier)
        return budget.headers() if budget else {}

    def check_tenant(self, tenant: str) -> None:
        """Raise NotFound unless `tenant` is an existing (active) organization."""
        if self._tier(tenant) is None:
            raise NotFound(f"organization {tenant} does not exist")

    def _tier(self, partner_id: str) -> str | None:
        with self._lock:
            if partner_id in self._tiers:
                return self._tiers[partner_id]
        tier = self.accounts.partner_tier(partner_id)
        with self._lock:
            self._tiers[partner_id] = tier
        return tier
