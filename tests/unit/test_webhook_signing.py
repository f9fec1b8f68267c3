"""The §10.2 body and both signatures: verified with `standardwebhooks` and with plain hmac."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from proveniq.errors import ValidationError
from proveniq.followers.webhooks.signing import (
    SIGNATURE_HEADER,
    LedgerEvent,
    event_body,
    signature_headers,
    verify_proveniq_signature,
    webhook_test_body,
)
from proveniq.followers.webhooks.subscriptions import new_secret
from proveniq.log.canonical import canonicalize, sha256_canonical
from proveniq.log.entry import Entry

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(autouse=True)
def _fresh_now() -> None:
    """Signatures are checked against the clock (5 min tolerance): sign with the time the test
    runs, not the time the module was collected."""
    global NOW
    NOW = datetime.now(UTC).replace(microsecond=0)


def entry(payload: Mapping[str, object], **kw: object) -> Entry:
    fields: dict[str, object] = {
        "seq": 41,
        "id": "evt_" + "ab" * 16,
        "tenant": "org_xyz789",
        "type": "asset.verified",
        "subject": "ast_def456",
        "payload_hash": sha256_canonical(payload),
        "recorded_at": datetime(2026, 12, 1, 18, 0, tzinfo=UTC),
        "prev": bytes(32),
        **kw,
    }
    return Entry(**fields)  # type: ignore[arg-type]


PAYLOAD = {"title": "2019 Toyota Camry", "status": "VERIFIED"}


def outbox_message(e: Entry, payload: object) -> bytes:
    # The relay's message (ledger.outbox.message_for): entry JSON, leaf hash, payload.
    doc = {"entry": e.to_json(), "leaf_hash": e.leaf_hash().hex(), "payload": payload}
    return json.dumps(doc).encode()


def test_body_is_the_core_manual_shape_with_a_ledger_object() -> None:
    e = entry(PAYLOAD)
    body = event_body(LedgerEvent(entry=e, payload=PAYLOAD), proof_base_url="https://api.x/")
    doc = json.loads(body)
    assert body == canonicalize(doc)  # canonical bytes: what is signed is reproducible
    assert set(doc) == {"id", "type", "timestamp", "organizationId", "data"}
    assert doc["id"] == e.id and doc["type"] == "asset.verified"
    assert doc["organizationId"] == "org_xyz789"
    assert doc["timestamp"] == "2026-12-01T18:00:00.000000Z"
    assert doc["data"]["title"] == "2019 Toyota Camry"
    ledger = doc["data"]["ledger"]
    assert ledger["seq"] == 41
    assert ledger["leaf_hash"] == e.leaf_hash().hex()
    assert ledger["proof_url"] == f"https://api.x/v1/events/{e.id}/proof"
    assert Entry.from_json(ledger["entry"]).leaf_hash() == e.leaf_hash()  # recomputable


def test_ledger_event_from_the_relays_message() -> None:
    e = entry(PAYLOAD)
    ev = LedgerEvent.from_message(outbox_message(e, PAYLOAD))
    assert ev.entry == e and ev.payload == PAYLOAD
    assert LedgerEvent.from_message(outbox_message(e, None)).payload is None  # erased
    tampered = json.loads(outbox_message(e, PAYLOAD))
    tampered["leaf_hash"] = "00" * 32
    with pytest.raises(ValidationError, match="leaf_hash"):
        LedgerEvent.from_message(json.dumps(tampered).encode())
    for junk in (b"", b"[]", b"{", json.dumps({"entry": {}}).encode()):
        with pytest.raises(ValidationError):
            LedgerEvent.from_message(junk)


def test_both_signatures_verify_and_a_changed_body_does_not() -> None:
    secret = new_secret()
    body = event_body(LedgerEvent(entry=entry(PAYLOAD), payload=PAYLOAD), proof_base_url="x")
    h = signature_headers(message_id="evt_1", body=body, secrets=[secret], at=NOW)
    assert h["webhook-id"] == "evt_1"
    assert h["webhook-timestamp"] == str(int(NOW.timestamp()))
    assert h["webhook-signature"].startswith("v1,")
    assert Webhook(secret).verify(body, h) == json.loads(body)
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert h[SIGNATURE_HEADER] == f"sha256={expected}"
    assert verify_proveniq_signature(body, h[SIGNATURE_HEADER], secret)

    changed = body.replace(b"Camry", b"Corolla")
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(changed, h)
    assert not verify_proveniq_signature(changed, h[SIGNATURE_HEADER], secret)
    assert not verify_proveniq_signature(body, h[SIGNATURE_HEADER], new_secret())


def test_a_non_utc_time_is_converted_not_relabelled() -> None:
    # standardwebhooks' sign() replaces the zone: a +05:00 "now" would be 5 h off (and refused).
    local = NOW.astimezone(timezone(timedelta(hours=5)))
    secret = new_secret()
    h = signature_headers(message_id="m", body=b"{}", secrets=[secret], at=local)
    assert h["webhook-timestamp"] == str(int(NOW.timestamp()))
    Webhook(secret).verify(b"{}", h)
    with pytest.raises(ValueError, match="naive"):
        signature_headers(message_id="m", body=b"{}", secrets=[secret], at=NOW.replace(tzinfo=None))


def test_during_rotation_both_secrets_sign_and_each_verifies_alone() -> None:
    new, old = new_secret(), new_secret()
    body = webhook_test_body(event_id="evt_test_1", tenant="p1", subscription_id="wh_x", at=NOW)
    h = signature_headers(message_id="evt_test_1", body=body, secrets=[new, old], at=NOW)
    assert len(h["webhook-signature"].split(" ")) == 2
    assert len(h[SIGNATURE_HEADER].split(" ")) == 2
    for secret in (new, old):
        Webhook(secret).verify(body, h)
        assert verify_proveniq_signature(body, h[SIGNATURE_HEADER], secret)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, h)
    assert json.loads(body)["type"] == "webhook.test"
    with pytest.raises(ValueError):
        signature_headers(message_id="m", body=body, secrets=[], at=NOW)
