"""Webhook subscriptions: values, validation, event patterns, signing secrets and rotation.

A subscription belongs to one tenant (the Core manual's organization) and names an endpoint
URL, the event patterns it wants and whether it is enabled. Patterns are exact event types
(``asset.verified``), a namespace prefix (``claim.*`` matches ``claim.filed`` and
``claim.payout.sent``) or ``*`` (every ledger event of the tenant).

Event types: the ledger's own types are already dotted ``namespace.action`` names, and the ones
the Core manual §10.1 lists (``asset.created`` ... ``document.verified``) are delivered under
exactly those names; `webhook_type` is the single place that maps a ledger type to the type a
partner sees. §10.1's ``member.*`` events are not ledger events and are never delivered.

Secrets follow Standard Webhooks: ``whsec_`` + base64 of 32 random bytes. Rotation makes a new
secret current; the previous one keeps signing beside it for `ROTATION_OVERLAP` (24 h), then
stops. Only one previous secret is kept: rotating twice within the overlap drops the oldest.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Final

from proveniq.errors import ValidationError

SECRET_PREFIX: Final = "whsec_"  # noqa: S105 - a prefix, not a secret
SECRET_BYTES: Final = 32
ROTATION_OVERLAP: Final = timedelta(hours=24)
TEST_EVENT_TYPE: Final = "webhook.test"

MAX_PATTERNS: Final = 50
MAX_DESCRIPTION: Final = 500
MAX_URL: Final = 2048

# The ledger namespaces a subscription may name (partner-written and the chain's own).
NAMESPACES: Final = frozenset({"asset", "document", "claim", "custody", "device", "risk"})

# Core manual §10.1. The ledger sequences the asset.* and document.* ones under these names;
# member.* are organization-administration events the ledger does not carry.
CORE_EVENT_TYPES: Final = {
    "asset.created": "Asset was created",
    "asset.updated": "Asset was updated",
    "asset.verified": "Asset verification completed",
    "asset.disputed": "Dispute raised against asset",
    "asset.sold": "Asset sale completed",
    "document.uploaded": "Document was uploaded",
    "document.verified": "Document verification completed",
    "member.invited": "Member invitation sent (not a ledger event: never delivered)",
    "member.joined": "Member joined organization (not a ledger event: never delivered)",
    "member.removed": "Member removed from organization (not a ledger event: never delivered)",
}

_SEGMENT = r"[a-z][a-z0-9_]{0,48}"
_PATTERN = re.compile(rf"^(?P<ns>{_SEGMENT})((\.{_SEGMENT}){{1,2}}|(\.{_SEGMENT}){{0,2}}\.\*)$")
_SUBSCRIPTION_ID = re.compile(r"^wh_[0-9a-f]{24}$")


def webhook_type(ledger_type: str) -> str:
    """The event type a partner sees for a ledger event type (the §10.1 names are the ledger's)."""
    return ledger_type


def check_patterns(events: Iterable[object], *, field: str = "events") -> tuple[str, ...]:
    """Validate event patterns; returns them de-duplicated, in the order given."""
    if not isinstance(events, list | tuple):
        raise ValidationError("must be a list of event types or patterns", field=field)
    out: dict[str, None] = {}  # ordered, O(1) de-duplication
    for i, p in enumerate(events):
        where = f"{field}[{i}]"
        if i >= 4 * MAX_PATTERNS:  # refuse early: never walk a huge list
            raise ValidationError(f"at most {MAX_PATTERNS} patterns", field=field)
        if not isinstance(p, str):
            raise ValidationError("must be a string", field=where)
        if p != "*":
            m = _PATTERN.fullmatch(p)
            if m is None:
                raise ValidationError(
                    "expected '*', an event type like 'asset.verified' or a prefix like 'claim.*'",
                    field=where,
                )
            if m["ns"] not in NAMESPACES:
                known = ", ".join(sorted(NAMESPACES))
                raise ValidationError(f"unknown namespace {m['ns']!r}; known: {known}", field=where)
        out.setdefault(p)
        if len(out) > MAX_PATTERNS:
            raise ValidationError(f"at most {MAX_PATTERNS} patterns", field=field)
    if not out:
        raise ValidationError("at least one event type or pattern is required", field=field)
    if len(out) > MAX_PATTERNS:
        raise ValidationError(f"at most {MAX_PATTERNS} patterns", field=field)
    return tuple(out)


def pattern_matches(pattern: str, event_type: str) -> bool:
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        return event_type.startswith(pattern[:-1])  # keeps the dot: "claim." not "claims"
    return pattern == event_type


def check_description(description: object, *, field: str = "description") -> str:
    if not isinstance(description, str):
        raise ValidationError("must be a string", field=field)
    if len(description) > MAX_DESCRIPTION:
        raise ValidationError(f"at most {MAX_DESCRIPTION} characters", field=field)
    if any(
        (ord(c) < 0x20 and c != "\t") or unicodedata.category(c) in ("Cc", "Cf")
        for c in description
    ):
        raise ValidationError("must not contain control characters", field=field)
    return description


def check_subscription_id(value: str) -> str:
    if not _SUBSCRIPTION_ID.match(value):
        raise ValidationError("not a webhook subscription id (wh_ + 24 hex)", field="id")
    return value


def new_subscription_id(random: Callable[[int], bytes] = os.urandom) -> str:
    return "wh_" + random(12).hex()


def new_secret(random: Callable[[int], bytes] = os.urandom) -> str:
    """A Standard Webhooks secret: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(random(SECRET_BYTES)).decode("ascii")


def secret_key(secret: str) -> bytes:
    """The raw key bytes of a ``whsec_`` secret (what Standard Webhooks HMACs with)."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValidationError("a webhook secret starts with whsec_", field="secret")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError) as e:
        raise ValidationError("a webhook secret is whsec_ + base64", field="secret") from e
    if not 24 <= len(key) <= 64:
        raise ValidationError("a webhook secret holds 24 to 64 bytes", field="secret")
    return key


def delivery_id(subscription_id: str, event_id: str) -> str:
    """Deterministic: one delivery per (subscription, event), whatever the redelivery."""
    digest = hashlib.sha256(f"{subscription_id}\x00{event_id}".encode()).hexdigest()
    return "dlv_" + digest[:32]


@dataclass(frozen=True, kw_only=True)
class Secrets:
    """The signing secrets of one subscription (never logged: `repr` hides them)."""

    current: str
    previous: str | None = None
    previous_until: datetime | None = None

    def active(self, now: datetime) -> tuple[str, ...]:
        """The secrets that sign at `now`: the current one first, then the previous one while
        its overlap lasts."""
        if self.previous and self.previous_until is not None and now < self.previous_until:
            return (self.current, self.previous)
        return (self.current,)

    def rotated(self, new: str, *, now: datetime, overlap: timedelta = ROTATION_OVERLAP) -> Secrets:
        secret_key(new)
        return Secrets(current=new, previous=self.current, previous_until=now + overlap)

    def __repr__(self) -> str:
        return f"Secrets(current=<hidden>, previous_until={self.previous_until!r})"


@dataclass(frozen=True, kw_only=True)
class Subscription:
    id: str
    tenant: str
    url: str
    events: tuple[str, ...]
    description: str = ""
    enabled: bool = True
    disabled_reason: str | None = None  # e.g. "410 Gone from the endpoint"
    created_at: datetime
    updated_at: datetime

    def matches(self, event_type: str) -> bool:
        return any(pattern_matches(p, event_type) for p in self.events)

    def wants(self, event_type: str) -> bool:
        """Enabled and matching: this subscription gets a delivery of the event."""
        return self.enabled and self.matches(event_type)

    def disabled(self, *, reason: str, now: datetime) -> Subscription:
        return replace(self, enabled=False, disabled_reason=reason, updated_at=now)

    def to_json(self) -> dict[str, object]:
        """The API view (Core manual naming); never includes a secret."""
        return {
            "id": self.id,
            "url": self.url,
            "events": list(self.events),
            "description": self.description,
            "enabled": self.enabled,
            "disabledReason": self.disabled_reason,
            "createdAt": self.created_at.isoformat().replace("+00:00", "Z"),
            "updatedAt": self.updated_at.isoformat().replace("+00:00", "Z"),
        }
