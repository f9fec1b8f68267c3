"""FirestoreSink with the real google-cloud-firestore client against the npm Firestore emulator.

Documents appear and follow the asset lifecycle, a redelivered or late older event changes
nothing, a seal marks documents sealed, and a rebuild from the same events reproduces the
documents exactly (and repairs a damaged projection). Each test uses its own tenant.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.cloud import firestore

from proveniq.adapters.gcp.firestore import FirestoreSink
from proveniq.followers.projection import follower, rebuild
from proveniq.followers.projection.documents import change_for
from proveniq.log.canonical import sha256_canonical
from proveniq.log.entry import ZERO_HASH, Entry
from proveniq.ports import Message
from tests.contract.firestore_emulator import FirestoreEmulator, firestore_emulator

__all__ = ["firestore_emulator"]  # the fixture, imported for pytest
_tenants = itertools.count(1)
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
Event = tuple[Entry, dict[str, Any] | None]


def ledger(tenant: str) -> list[Event]:
    """A small ledger: an asset through its lifecycle with custody and a device reading, and a
    claim with a document, a risk score and a review."""
    kinds: list[tuple[str, str, dict[str, Any] | None]] = [
        ("asset.created", "ast_1", {"title": "Camry"}),
        ("asset.submitted", "ast_1", {}),
        ("custody.transferred", "ast_1", {"from": "yard-7", "to": "carrier-2"}),
        ("device.reading", "ast_1", {"device_id": "dev_9", "temp_c": 4.5, "door": "closed"}),
        ("asset.verified", "ast_1", None),
        ("claim.created", "clm_1", {"asset": "ast_1", "amount_cents": 125000}),
        ("document.uploaded", "clm_1", {"filename": "a.pdf"}),
        ("risk.scored", "clm_1", {"score": 0.82, "level": "HIGH", "review_required": True}),
        ("document.uploaded", "ast_1", {"filename": "deed.pdf", "claim_id": "clm_1"}),
        ("risk.reviewed", "clm_1", {"decision": "approve"}),
        ("asset.updated", "ast_1", {"title": "Camry LE"}),
        ("device.rejected", "dev_9", {"reason": "replay"}),
    ]
    events: list[Event] = []
    for seq, (etype, subject, payload) in enumerate(kinds, start=100):
        entry = Entry(
            seq=seq,
            id=f"evt_{tenant}_{seq}",
            tenant=tenant,
            type=etype,
            subject=subject,
            payload_hash=sha256_canonical(payload),  # what the ledger commits to (RFC 8785)
            recorded_at=T0 + timedelta(seconds=seq),
            prev=ZERO_HASH,
        )
        events.append((entry, payload))
    return events


def message(entry: Entry, payload: dict[str, Any] | None) -> Message:
    doc = {"entry": entry.to_json(), "leaf_hash": entry.leaf_hash().hex(), "payload": payload}
    return Message(data=json.dumps(doc).encode(), attributes={"event_id": entry.id})


@pytest.fixture
def sink(
    firestore_emulator: FirestoreEmulator, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FirestoreSink]:
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", firestore_emulator.host)
    yield FirestoreSink(project=firestore_emulator.project_id)


@pytest.fixture
def tenant() -> str:
    return f"prt_{next(_tenants)}_{random.randrange(10**9)}"


def test_documents_appear_and_follow_the_lifecycle(sink: FirestoreSink, tenant: str) -> None:
    events = ledger(tenant)
    assert sink.client._emulator_host is not None  # the real client, pointed at the emulator
    seen_status = []
    for entry, payload in events[:5]:
        assert follower.handle(sink, message(entry, payload)) is True
        doc = sink.tenant_documents(tenant)[f"orgs/{tenant}/assets/ast_1"]
        seen_status.append(doc["status"]["value"])
    assert seen_status == ["DRAFT", "PENDING", "PENDING", "PENDING", "VERIFIED"]
    for entry, payload in events[5:]:
        assert follower.handle(sink, message(entry, payload)) is True

    docs = sink.tenant_documents(tenant)
    assert set(docs) == {
        f"orgs/{tenant}/assets/ast_1",
        f"orgs/{tenant}/claims/clm_1",
        f"orgs/{tenant}/devices/dev_9",
    }
    asset = docs[f"orgs/{tenant}/assets/ast_1"]
    assert asset["status"] == {
        "value": "VERIFIED",
        "event_type": "asset.verified",
        "at": events[4][0].recorded_at,
        "seq": 104,
    }
    assert asset["last_event"]["type"] == "asset.updated" and asset["last_event"]["seq"] == 110
    assert asset["custody"]["holder"] == "carrier-2"
    assert asset["custody"]["previous"] == "yard-7"
    assert asset["reading"]["device"] == "dev_9"
    assert asset["reading"]["values"] == {"door": "closed", "temp_c": 4.5}
    assert asset["counts"] == {"events": 6}
    assert asset["sealed"] is False

    claim = docs[f"orgs/{tenant}/claims/clm_1"]
    assert claim["status"]["value"] == "OPEN"
    assert claim["asset"]["value"] == "ast_1"
    assert claim["risk"]["score"] == 0.82 and claim["risk"]["level"] == "HIGH"
    assert claim["risk"]["review_required"] is True
    assert claim["review"]["state"] == "approved" and claim["review"]["decision"] == "approve"
    assert claim["counts"] == {"events": 5, "documents": 2}

    device = docs[f"orgs/{tenant}/devices/dev_9"]
    assert device["counts"] == {"events": 2, "accepted": 1, "rejected": 1}
    assert device["last_seen"]["event_type"] == "device.rejected"
    assert device["last_seen"]["at"] == events[-1][0].recorded_at


def test_a_redelivered_or_late_older_event_changes_nothing(
    sink: FirestoreSink, tenant: str
) -> None:
    events = ledger(tenant)
    for entry, payload in (events[0], events[4], events[1]):  # verified before submitted
        sink.apply(change_for(entry, payload))
    path = f"orgs/{tenant}/assets/ast_1"
    before = sink.tenant_documents(tenant)[path]
    assert before["status"]["value"] == "VERIFIED"  # the late asset.submitted did not regress it
    assert before["counts"] == {"events": 3}

    assert follower.handle(sink, message(*events[1])) is False  # redelivered: marker exists
    assert follower.handle(sink, message(*events[0])) is False
    assert sink.tenant_documents(tenant)[path] == before


def test_seal_marks_covered_documents_and_a_new_event_unseals(
    sink: FirestoreSink, tenant: str
) -> None:
    events = ledger(tenant)
    for entry, payload in events[:6]:  # seqs 100..105
        sink.apply(change_for(entry, payload))
    assert sink.seal(tenant, 105) == 1  # the asset (last 104) is covered, the claim (105) not
    docs = sink.tenant_documents(tenant)
    assert docs[f"orgs/{tenant}/assets/ast_1"]["sealed"] is True
    assert docs[f"orgs/{tenant}/claims/clm_1"]["sealed"] is False
    assert "sealed" not in docs[f"orgs/{tenant}/devices/dev_9"]
    assert sink.tenant_state(tenant).sealed_size == 105
    assert sink.seal(tenant, 104) == 0  # an older checkpoint changes nothing

    sink.apply(change_for(*events[10]))  # asset.updated, seq 110
    assert sink.tenant_documents(tenant)[f"orgs/{tenant}/assets/ast_1"]["sealed"] is False


def test_rebuild_reproduces_the_followers_documents_exactly(
    sink: FirestoreSink, tenant: str
) -> None:
    events = ledger(tenant)
    delivery = events + events[3:7]  # at least once: some redelivered
    random.Random(7).shuffle(delivery)
    for entry, payload in delivery:
        sink.apply(change_for(entry, payload))
    sink.seal(tenant, 108)
    followed = sink.tenant_documents(tenant)
    assert len(followed) == 3

    # Damage the projection: a document lost, one edited, one that the ledger never produced.
    db = sink.client
    db.document(f"orgs/{tenant}/devices/dev_9").delete()
    db.document(f"orgs/{tenant}/assets/ast_1").update({"status": {"value": "SOLD", "seq": 999}})
    db.document(f"orgs/{tenant}/claims/clm_bogus").set({"kind": "claim"})

    progress: list[tuple[str, int]] = []
    report = rebuild.rebuild(
        sink, iter(events), tree_size=108, progress=lambda s, n: progress.append((s, n))
    )
    assert sink.tenant_documents(tenant) == followed
    assert report.events == len(events) and report.documents == 3 and report.deleted == 1
    assert report.upto == 111
    assert progress[-1] == ("documents", 3) and ("events", len(events)) in progress
    # The pure fold is the same projection.
    assert rebuild.fold(events, tree_size=108).documents[tenant] == followed

    # Events the rebuild covered are skipped when the subscription redelivers them.
    assert follower.handle(sink, message(*events[6])) is False
    assert sink.tenant_documents(tenant) == followed


def test_client_is_real_and_talks_to_the_emulator(sink: FirestoreSink) -> None:
    assert isinstance(sink.client, firestore.Client)
    host = sink.client._emulator_host
    assert host is not None and host.startswith("127.0.0.1:")
