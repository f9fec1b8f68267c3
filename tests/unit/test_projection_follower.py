"""The follower decodes the outbox relay's ledger-events message and applies it once."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from proveniq.errors import ValidationError
from proveniq.followers.projection import follower
from proveniq.followers.projection.sink import MemorySink
from proveniq.log.canonical import sha256_canonical
from proveniq.log.entry import ZERO_HASH, Entry
from proveniq.ports import Message

ENTRY = Entry(
    seq=7,
    id="evt_7",
    tenant="prt_a",
    type="asset.created",
    subject="ast_1",
    payload_hash=sha256_canonical({"title": "x"}),  # what the relay's message carries
    recorded_at=datetime(2026, 1, 1, tzinfo=UTC),
    prev=ZERO_HASH,
)


def relay_message(**override: object) -> Message:
    # The shape of proveniq.ledger.outbox.message_for.
    doc: dict[str, object] = {
        "entry": ENTRY.to_json(),
        "leaf_hash": ENTRY.leaf_hash().hex(),
        "payload": {"title": "x"},
    }
    doc.update(override)
    return Message(
        data=json.dumps(doc, separators=(",", ":")).encode(),
        attributes={"event_id": ENTRY.id, "tenant": ENTRY.tenant, "type": ENTRY.type, "seq": "7"},
        ordering_key="prt_a/ast_1",
    )


def test_decode_round_trips_the_entry() -> None:
    entry, payload = follower.decode(relay_message())
    assert entry == ENTRY and payload == {"title": "x"}
    assert follower.decode(relay_message(payload=None))[1] is None


def test_handle_applies_once() -> None:
    sink = MemorySink()
    assert follower.handle(sink, relay_message()) is True
    assert follower.handle(sink, relay_message()) is False
    assert sink.documents["orgs/prt_a/assets/ast_1"]["status"]["value"] == "DRAFT"


@pytest.mark.parametrize(
    ("message", "field"),
    [
        (Message(data=b"not json"), "data"),
        (Message(data=b"[1]"), "data"),
        (relay_message(leaf_hash="00" * 32), "leaf_hash"),
        (relay_message(payload=[1]), "payload"),
        (relay_message(entry={"seq": 1}), "entry"),
    ],
)
def test_malformed_messages_are_validation_errors(message: Message, field: str) -> None:
    with pytest.raises(ValidationError) as e:
        follower.decode(message)
    assert e.value.field == field
