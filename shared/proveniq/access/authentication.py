"""Authentication: partner API keys (`Authorization: Bearer` or `X-API-Key`) and app users'
Firebase ID tokens. Key look-ups are cached briefly per instance (revocation takes effect within
`KEY_CACHE_SECONDS`); the key itself is never logged or cached, only its hash is compared."""

from __future__ import annotations

import threading
from collections.abc import Mapping

from cachetools import TTLCache

from proveniq.access import apikeys
from proveniq.access.accounts import Accounts, principal_of
from proveniq.errors import AuthInvalid, AuthRequired, NotFound, RateLimited
from proveniq.ports import IdentityVerifier, KeyRecord, Principal

KEY_CACHE_SECONDS = 5


class Authenticator:
    def __init__(
        self,
        *,
        accounts: Accounts,
        identity: IdentityVerifier | None,
        behind_gateway: bool = False,
    ) -> None:
        self._behind_gateway = behind_gateway  # API Gateway's own token is in Authorization
        self._accounts = accounts
        self._identity = identity
        # prefix -> the key's record and its principal (both immutable values)
        self._cache: TTLCache[str, tuple[KeyRecord, Principal]] = TTLCache(
            maxsize=10_000, ttl=KEY_CACHE_SECONDS
        )
        self._lock = threading.Lock()

    def authenticate(self, headers: Mapping[str, str], *, lookup: bool = True) -> Principal:
        """`lookup=False`: a key not in the cache is refused (429) instead of looked up (a
        client past its budget of failed authentications)."""
        token = _credential(headers, behind_gateway=self._behind_gateway)
        if apikeys.looks_like_key(token):
            return self._api_key(token, lookup=lookup)
        if self._identity is None:
            raise AuthInvalid("unrecognised credential (expected a Proveniq API key)")
        return self._identity.verify(token)

    def _api_key(self, key: str, *, lookup: bool = True) -> Principal:
        prefix = apikeys.prefix_of(key)
        with self._lock:
            cached = self._cache.get(prefix)
        if cached is None and not lookup:
            raise RateLimited(
                "too many failed authentications from this client; retry later", retry_after=60
            )
        if cached is None:
            try:
                rec = self._accounts.lookup(prefix)
            except NotFound:
                raise AuthInvalid("unknown API key") from None
            cached = (rec, principal_of(rec))
            with self._lock:
                self._cache[prefix] = cached
        rec, principal = cached
        if not apikeys.matches(key, rec.key_hash):
            raise AuthInvalid("unknown API key")
        if rec.revoked:
            raise AuthInvalid("API key has been revoked")
        return principal


def _credential(headers: Mapping[str, str], *, behind_gateway: bool = False) -> str:
    """The one credential of a request. Two different credentials are refused, never resolved
    silently. Behind API Gateway the client's Authorization header arrives as
    X-Forwarded-Authorization (the gateway authenticates itself to the function with its own
    Authorization token), so it is read there and only there."""
    found: dict[str, str] = {}
    api_key = headers.get("X-API-Key")
    if api_key:
        found["X-API-Key"] = api_key.strip()
    forwarded = headers.get("X-Forwarded-Authorization")
    if forwarded:
        found["X-Forwarded-Authorization"] = _bearer(forwarded)
    if headers.get("Authorization") and not (behind_gateway and forwarded):
        found["Authorization"] = _bearer(headers["Authorization"])
    if not found:
        raise AuthRequired("send an API key (Authorization: Bearer <key> or X-API-Key)")
    if len(set(found.values())) > 1:
        raise AuthInvalid(f"conflicting credentials in {' and '.join(sorted(found))}")
    return next(iter(found.values()))


def _bearer(value: str) -> str:
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthInvalid("Authorization header must be 'Bearer <credential>'")
    return token.strip()
