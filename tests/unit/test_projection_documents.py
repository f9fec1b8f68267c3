"""The pure projection: what each event changes, and merges that never go back in seq."""

from __future__ import annotations

import ast
import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from proveniq.followers.projection import documents as d
from proveniq.followers.projection.sink import MemorySink
from proveniq.ledger import lifecycle
from proveniq.log.entry import ZERO_HASH, Entry

T0 = datetime(2026, 2, 1, tzinfo=UTC)
PURE = Path(d.__file__).parent
FORBIDDEN = (
    "flask",
    "werkzeug",
    "pg8000",
    "sqlalchemy",
    "google",
    "functions_framework",
    "proveniq.adapters",
    "proveniq.app",
    "proveniq.edge",
    "proveniq.ledger.sequencing",  # followers may read the ledger's message format, not write
)


def entry(seq: int, etype: str, subject: str = "ast_1", tenant: str = "prt_a") -> Entry:
    return Entry(
        seq=seq,
        id=f"evt_{seq}",
        tenant=tenant,
        type=etype,
        subject=subject,
        payload_hash=hashlib.sha256(str(seq).encode()).digest(),
        recorded_at=T0 + timedelta(seconds=seq),
        prev=ZERO_HASH,
    )


def apply_all(events: list[tuple[Entry, dict[str, Any] | None]]) -> MemorySink:
    sink = MemorySink()
    for e, p in events:
        sink.apply(d.change_for(e, p))
    return sink


def test_asset_statuses_are_the_lifecycle_table() -> None:
    expected = {t: to for t, (_, to) in lifecycle.TRANSITIONS.items() if to is not None}
    assert dict(d.ASSET_STATUS) == expected
    assert set(d.ASSET_STATUS.values()) <= lifecycle.STATUSES


def test_a_lifecycle_walk_sets_each_status_and_asset_updated_keeps_it() -> None:
    walk = ["asset.created", "asset.submitted", "asset.verified", "asset.listed", "asset.sold"]
    sink = MemorySink()
    seen = []
    for seq, t in enumerate(walk):
        sink.apply(d.change_for(entry(seq, t), {}))
        seen.append(sink.documents["orgs/prt_a/assets/ast_1"]["status"]["value"])
    assert seen == ["DRAFT", "PENDING", "VERIFIED", "LISTED", "SOLD"]
    sink.apply(d.change_for(entry(9, "asset.disputed"), {}))
    sink.apply(d.change_for(entry(10, "asset.updated"), {"title": "x"}))
    doc = sink.documents["orgs/prt_a/assets/ast_1"]
    assert doc["status"]["value"] == "DISPUTED" and doc["status"]["seq"] == 9
    assert doc["last_event"]["type"] == "asset.updated" and doc["last_seq"] == 10


def test_an_older_group_never_replaces_a_newer_one() -> None:
    newer = d.change_for(entry(5, "asset.verified"), {}).updates[0]
    older = d.change_for(entry(3, "asset.submitted"), {}).updates[0]
    doc = d.merge(None, newer)
    assert doc is not None
    after = d.merge(doc, older)
    assert after is not None  # its counter still counts once
    assert after["status"] == doc["status"] and after["last_event"] == doc["last_event"]
    assert after["counts"] == {"events": 2}
    assert d.merge(after, d.DocUpdate(tenant="prt_a", kind="assets", id="ast_1")) is None


def test_redelivery_is_ignored_by_marker() -> None:
    sink = MemorySink()
    change = d.change_for(entry(1, "document.uploaded", "clm_7"), {"filename": "a"})
    assert sink.apply(change) is True
    assert sink.apply(change) is False
    assert sink.documents["orgs/prt_a/claims/clm_7"]["counts"] == {"events": 1, "documents": 1}


def test_custody_reading_and_device_counts() -> None:
    sink = apply_all(
        [
            (entry(1, "custody.transferred"), {"from": "a", "to": "b"}),
            (entry(2, "custody.received"), {"holder": "c"}),
            (entry(3, "device.reading"), {"device_id": "dev_1", "temp": 3, "huge": 2**70}),
            (entry(4, "device.rejected", "dev_1"), {"reason": "signature"}),
            (entry(5, "device.heartbeat", "dev_1"), {"accepted": False}),
        ]
    )
    asset = sink.documents["orgs/prt_a/assets/ast_1"]
    assert asset["custody"]["holder"] == "c" and asset["custody"]["seq"] == 2
    assert asset["reading"]["device"] == "dev_1"
    assert asset["reading"]["values"] == {"temp": 3}  # out-of-range int dropped
    device = sink.documents["orgs/prt_a/devices/dev_1"]
    assert device["counts"] == {"events": 3, "accepted": 1, "rejected": 2}
    assert device["last_seen"]["seq"] == 5 and "sealed" not in device


def test_a_device_intake_event_gives_the_signed_data_as_the_reading() -> None:
    signed = {"counter": 42, "data": {"door": "closed", "weight_g": 1250}, "device": "locker-7"}
    payload = {
        "device": "locker-7",
        "counter": 42,
        "message": json.dumps(signed),
        "signature": "sig",
        "public_key": "key",
    }
    sink = apply_all(
        [(entry(1, "custody.deposited", "asset-0001"), {**payload, "locker": "locker-7"})]
    )
    asset = sink.documents["orgs/prt_a/assets/asset-0001"]
    assert asset["reading"]["values"] == {"door": "closed", "weight_g": 1250}
    assert asset["reading"]["device"] == "locker-7"
    assert asset["custody"]["holder"] == "locker-7"
    assert sink.documents["orgs/prt_a/devices/locker-7"]["counts"] == {"events": 1, "accepted": 1}


def test_review_state_is_the_latest_score_or_review() -> None:
    sink = apply_all(
        [
            (entry(1, "risk.scored", "clm_1"), {"score": 70, "review_required": True}),
            (entry(2, "risk.reviewed", "clm_1"), {"decision": "escalate"}),
        ]
    )
    assert sink.documents["orgs/prt_a/claims/clm_1"]["review"]["state"] == "escalated"
    sink.apply(d.change_for(entry(3, "risk.scored", "clm_1"), {"score": 20}))
    review = sink.documents["orgs/prt_a/claims/clm_1"]["review"]
    assert review == {
        "state": "not_required",
        "decision": None,
        "at": T0 + timedelta(seconds=3),
        "seq": 3,
    }


def test_claim_risk_and_review_follow_seq() -> None:
    sink = apply_all(
        [
            (entry(1, "claim.created", "clm_1"), {"asset": "ast_1"}),
            (entry(3, "risk.reviewed", "clm_1"), {"decision": "reject"}),
            (
                entry(2, "risk.scored", "clm_1"),
                {"score": 91, "level": "HIGH", "review_required": True},
            ),
            (entry(4, "claim.denied", "clm_1"), None),
        ]
    )
    claim = sink.documents["orgs/prt_a/claims/clm_1"]
    assert claim["risk"]["score"] == 91 and claim["risk"]["review_required"] is True
    # The review arrived before the score it reviews: the later seq (the review) stays.
    assert claim["review"]["state"] == "rejected" and claim["review"]["decision"] == "reject"
    assert claim["status"]["value"] == "DENIED"
    assert claim["asset"]["value"] == "ast_1"
    assert "orgs/prt_a/assets/ast_1" not in sink.documents  # claim.created is not an asset event


def test_payload_ids_must_look_like_ids() -> None:
    change = d.change_for(entry(1, "document.uploaded", "ast_1"), {"claim_id": "../x"})
    assert [u.path for u in change.updates] == ["orgs/prt_a/assets/ast_1"]
    assert change.updates[0].counts == {"events": 1, "documents": 1}
    bad = d.change_for(entry(2, "device.reading", "ast_1"), {"device_id": "a/b"})
    assert [u.kind for u in bad.updates] == ["devices"]  # the subject is taken as the device
    assert bad.updates[0].id == "ast_1"


def test_sealed_follows_the_last_event_and_the_known_checkpoint() -> None:
    sink = MemorySink()
    sink.apply(d.change_for(entry(1, "asset.created"), {}))
    assert sink.documents["orgs/prt_a/assets/ast_1"]["sealed"] is False
    assert sink.seal("prt_a", 1) == 0  # size 1 covers seq 0 only
    assert sink.seal("prt_a", 2) == 1
    assert sink.documents["orgs/prt_a/assets/ast_1"]["sealed"] is True
    sink.apply(d.change_for(entry(5, "asset.submitted"), {}))
    assert sink.documents["orgs/prt_a/assets/ast_1"]["sealed"] is False
    # A late event below the known checkpoint size is sealed as soon as it is written.
    sink.apply(d.change_for(entry(0, "asset.created", "ast_2"), {}))
    assert sink.documents["orgs/prt_a/assets/ast_2"]["sealed"] is True
    assert sink.seal("prt_b", 100) == 0  # another tenant's documents are untouched


def test_an_event_with_no_document_changes_nothing() -> None:
    change = d.change_for(entry(1, "risk.scored", "evt_9"), {"score": 1})
    assert [u.kind for u in change.updates] == ["claims"]
    assert d.change_for(entry(2, "claim.note", "clm_1"), None).updates[0].groups[0].name == (
        "last_event"
    )


@pytest.mark.parametrize("path", sorted(PURE.glob("*.py")), ids=lambda p: p.name)
def test_pure_modules_import_no_io(path: Path) -> None:
    tree = ast.parse(path.read_text())
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    bad = [m for m in names if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert not bad, f"{path.name} imports {bad}"
