"""The access gate every HTTP request passes: authenticate, then spend from the organization's
rate budget (sized by that organization's tier, not by whatever tier a token claims)."""

from __future__ import annotations

import threading
from collections.abc import Mapping

from cachetools import TTLCache

from proveniq.access.accounts import Accounts
from proveniq.access.authentication import Authenticator
from proveniq.access.ratelimit import RateLimiter
from proveniq.errors import AuthInvalid, AuthRequired, NotFound
from proveniq.ports import Principal

TIER_CACHE_SECONDS = 30
FAILURES_PER_MINUTE = 60
_UNKNOWN = object()


class Gate:
    def __init__(
        self, *, authenticator: Authenticator, limiter: RateLimiter, accounts: Accounts
    ) -> None:
        self.authenticator = authenticator
        self.limiter = limiter
        self.accounts = accounts
        self._tiers: TTLCache[str, str | None] = TTLCache(maxsize=10_000, ttl=TIER_CACHE_SECONDS)
        self._failures: TTLCache[str, int] = TTLCache(maxsize=100_000, ttl=60)
        self._lock = threading.Lock()

    def authenticate(self, headers: Mapping[str, str], client: str = "") -> Principal:
        """The caller, or AuthRequired/AuthInvalid. Failures are limited per client address
        (each can cost a database lookup): past `FAILURES_PER_MINUTE` in a minute, keys this
        instance does not know yet are answered 429 without a lookup.
        A suspended organization's app tokens are refused like its keys."""
        over = bool(client) and self._failures.get(client, 0) >= FAILURES_PER_MINUTE
        try:
            # past the budget, keys already known to this instance still work; unknown ones
            # are not looked up in the database (429)
            principal = self.authenticator.authenticate(headers, lookup=not over)
            if principal.tenant is not None and self._tier(principal.tenant) is None:
                raise AuthInvalid("this organization is suspended")
        except (AuthInvalid, AuthRequired):
            if client:
                with self._lock:
                    self._failures[client] = self._failures.get(client, 0) + 1
            raise
        return principal

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
            raise NotFound(f"organization {tenant[:64]} does not exist")

    def _tier(self, partner_id: str) -> str | None:
        with self._lock:
            cached = self._tiers.get(partner_id, _UNKNOWN)  # None is cached too (suspended)
        if cached is not _UNKNOWN:
            return cached  # type: ignore[return-value]
        tier = self.accounts.partner_tier(partner_id)
        with self._lock:
            self._tiers[partner_id] = tier
        return tier
