"""What a webhook request carries: the Core manual §10.2 body and two signatures over it.

Body (RFC 8785 canonical JSON, UTF-8; signed as sent, byte for byte)::

    {"id": <event id>, "type": <event type>, "timestamp": <recorded_at>,
     "organizationId": <tenant>,
     "data": {<the event's payload fields>...,
              "ledger": {"seq", "leaf_hash", "proof_url", "entry": <the ledger entry JSON>}}}

``data.ledger`` lets a receiver fetch the inclusion proof of what it was told and recompute
``leaf_hash`` from ``entry`` (docs/FORMAT.md). A payload field named ``ledger`` is shadowed.

Headers, one signature per active secret (two during a rotation's overlap), space-separated:

    X-Proveniq-Signature: sha256=<hex HMAC-SHA256(key=secret text as UTF-8, msg=raw body)>
    webhook-id: <event id>       webhook-timestamp: <unix seconds of this attempt>
    webhook-signature: v1,<base64>   (Standard Webhooks, made by the `standardwebhooks` package)

No I/O here.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from standardwebhooks.webhooks import Webhook

from proveniq.followers.webhooks.subscriptions import TEST_EVENT_TYPE, webhook_type
from proveniq.ledger.outbox import decode_message
from proveniq.log.canonical import canonicalize
from proveniq.log.entry import Entry
from proveniq.log.timefmt import format_time

SIGNATURE_HEADER: Final = "X-Proveniq-Signature"
USER_AGENT: Final = "Proveniq-Webhooks/1"


@dataclass(frozen=True, kw_only=True)
class LedgerEvent:
    """A sequenced event as a follower receives it: the entry and its payload (None if erased)."""

    entry: Entry
    payload: Mapping[str, Any] | None

    @classmethod
    def from_message(cls, data: bytes) -> LedgerEvent:
        """Decode an outbox relay message (`ledger.outbox.message_for`)."""
        entry, payload = decode_message(data)
        return cls(entry=entry, payload=payload)


def proof_url(proof_base_url: str, event_id: str) -> str:
    return f"{proof_base_url.rstrip('/')}/v1/events/{event_id}/proof"


def event_body(event: LedgerEvent, *, proof_base_url: str) -> bytes:
    e = event.entry
    data: dict[str, Any] = dict(event.payload or {})
    data["ledger"] = {
        "seq": e.seq,
        "leaf_hash": e.leaf_hash().hex(),
        "proof_url": proof_url(proof_base_url, e.id),
        "entry": e.to_json(),
    }
    return canonicalize(
        {
            "id": e.id,
            "type": webhook_type(e.type),
            "timestamp": format_time(e.recorded_at),
            "organizationId": e.tenant,
            "data": data,
        }
    )


def webhook_test_body(*, event_id: str, tenant: str, subscription_id: str, at: datetime) -> bytes:
    return canonicalize(
        {
            "id": event_id,
            "type": TEST_EVENT_TYPE,
            "timestamp": format_time(at),
            "organizationId": tenant,
            "data": {"subscriptionId": subscription_id, "message": "Test event from Proveniq"},
        }
    )


def proveniq_signature(secret: str, body: bytes) -> str:
    """One ``sha256=<hex>`` value of the X-Proveniq-Signature header."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def signature_headers(
    *, message_id: str, body: bytes, secrets: Sequence[str], at: datetime
) -> dict[str, str]:
    """Both signature headers for one attempt at time ``at`` (any aware datetime)."""
    if not secrets:
        raise ValueError("at least one secret signs a webhook")
    if at.tzinfo is None:
        raise ValueError("naive datetime: webhook timestamps are UTC-aware")
    # standardwebhooks' sign() *replaces* the time zone with UTC: give it UTC already.
    utc = at.astimezone(UTC)
    text = body.decode("utf-8")
    return {
        SIGNATURE_HEADER: " ".join(proveniq_signature(s, body) for s in secrets),
        "webhook-id": message_id,
        "webhook-timestamp": str(int(utc.timestamp())),
        "webhook-signature": " ".join(Webhook(s).sign(message_id, utc, text) for s in secrets),
    }


def verify_proveniq_signature(body: bytes, header: str, secret: str) -> bool:
    """True if any ``sha256=`` value of the header is the HMAC of ``body`` under ``secret``."""
    expected = proveniq_signature(secret, body)
    return any(hmac.compare_digest(expected, v) for v in header.split())
