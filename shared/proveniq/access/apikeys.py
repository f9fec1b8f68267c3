"""Partner API keys: `pvq_<env>_<12 hex id>_<secret>`; shown once, stored only as SHA-256.

The visible prefix `pvq_<env>_<id>` identifies a key in listings and logs; the secret part never
leaves the response that created it. Keys carry 256 bits of randomness, so a plain SHA-256 is a
sufficient stored verifier (no password-style stretching is needed).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from proveniq.errors import AuthInvalid

_SCHEME = "pvq"


@dataclass(frozen=True)
class NewKey:
    key_id: str
    prefix: str
    secret: str  # the full key, shown once
    key_hash: bytes


def generate(*, env: str = "live") -> NewKey:
    key_id = secrets.token_hex(6)
    prefix = f"{_SCHEME}_{env}_{key_id}"
    full = f"{prefix}_{secrets.token_urlsafe(32)}"
    return NewKey(key_id=f"key_{key_id}", prefix=prefix, secret=full, key_hash=digest(full))


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def looks_like_key(token: str) -> bool:
    return token.startswith(f"{_SCHEME}_")


def prefix_of(key: str) -> str:
    parts = key.split("_", 3)
    if len(parts) != 4 or parts[0] != _SCHEME or len(parts[2]) != 12 or not parts[3]:
        raise AuthInvalid("malformed API key")
    return "_".join(parts[:3])


def matches(key: str, stored_hash: bytes) -> bool:
    return hmac.compare_digest(digest(key), stored_hash)
