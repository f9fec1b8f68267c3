"""One conformance test body for the risk ports, over the in-memory twin and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from proveniq.adapters.memory.risk import MemoryRiskFacts, MemoryRiskResults
from proveniq.errors import ValidationError
from proveniq.followers.risk.facts import EvidenceRef, RiskFacts
from proveniq.followers.risk.results import ReviewRecord, RiskResults, ScoreRecord
from proveniq.log.entry import Entry

T0 = datetime(2025, 1, 1, tzinfo=UTC)
A, B = "ptn_a", "ptn_b"


@dataclass
class Stores:
    facts: RiskFacts
    results: RiskResults


@pytest.fixture(params=["memory", "postgres"])
def stores(request: pytest.FixtureRequest) -> Iterator[Stores]:
    if request.param == "memory":
        yield Stores(MemoryRiskFacts(), MemoryRiskResults())
        return
    from proveniq.adapters.postgres.pool import Pool, url_connector
    from proveniq.adapters.postgres.risk import PostgresRiskFacts, PostgresRiskResults

    pg_server = request.getfixturevalue("pg_server")
    database = request.getfixturevalue("database")
    pool = Pool(url_connector(pg_server.url(user="proveniq_app", database=database)), size=2)
    yield Stores(PostgresRiskFacts(pool=pool), PostgresRiskResults(pool=pool))
    pool.dispose()


class Log:
    def __init__(self) -> None:
        self.seq = 0

    def entry(self, tenant: str, type: str, subject: str, *, at: datetime) -> Entry:
        self.seq += 1
        return Entry(
            seq=self.seq,
            id=f"evt_{self.seq}",
            tenant=tenant,
            type=type,
            subject=subject,
            payload_hash=bytes([self.seq % 256]) * 32,
            recorded_at=at + timedelta(seconds=30),
            prev=bytes(32),
            occurred_at=at,
        )


def _claim(**kw: Any) -> dict[str, Any]:
    return {
        "amount_cents": 1000,
        "currency": "EUR",
        "claimant": "c1",
        "asset": "a1",
        "incident_at": "2024-12-30T00:00:00Z",
        "policy_id": "p1",
        **kw,
    }


def test_facts_conformance(stores: Stores) -> None:
    f, log = stores.facts, Log()
    e1 = log.entry(A, "claim.created", "clm_1", at=T0)
    assert f.record(e1, _claim()) is True
    assert f.record(e1, _claim()) is False  # same event again: no change
    c = f.claim(A, "clm_1")
    assert c is not None and (c.claimant, c.asset, c.amount_cents) == ("c1", "a1", 1000)
    assert c.created == EvidenceRef.of(e1) and c.filed_at == T0
    assert c.incident_at == datetime(2024, 12, 30, tzinfo=UTC) and c.policy_start is None
    assert f.claim(B, "clm_1") is None  # tenant-scoped

    # an update overrides what it carries, keeps the rest; a late older event only fills gaps
    e2 = log.entry(A, "claim.updated", "clm_1", at=T0 + timedelta(hours=1))
    f.record(e2, {"amount_cents": 5000, "policy_start": "2024-06-01T00:00:00Z"})
    c = f.claim(A, "clm_1")
    assert c is not None and (c.amount_cents, c.claimant, c.last_seq) == (5000, "c1", e2.seq)
    assert c.policy_start == datetime(2024, 6, 1, tzinfo=UTC)
    latest = f.latest_event(A, "clm_1")
    assert latest is not None and latest.ref == EvidenceRef.of(e2)

    # more claims for windows and amount samples; one in tenant B with the same claimant id
    others = []
    for i in range(2, 7):
        e = log.entry(A, "claim.created", f"clm_{i}", at=T0 + timedelta(days=i))
        f.record(e, _claim(amount_cents=1000 * i, asset=f"a{i}"))
        others.append(e)
    f.record(log.entry(B, "claim.created", "clm_b", at=T0), _claim(amount_cents=99))
    win = f.claims_by_claimant(A, "c1", since=T0, until=T0 + timedelta(days=4), as_of=log.seq)
    assert [x.claim_id for x in win] == ["clm_1", "clm_2", "clm_3", "clm_4"]
    early = f.claims_by_claimant(
        A, "c1", since=T0, until=T0 + timedelta(days=9), as_of=others[1].seq
    )
    assert [x.claim_id for x in early] == ["clm_1", "clm_2", "clm_3"]  # as_of bounds the prefix
    assert [x.claim_id for x in f.claims_by_asset(A, "a1", since=T0, until=T0, as_of=log.seq)] == [
        "clm_1"
    ]
    assert list(f.tenant_amounts(A, "EUR", exclude="clm_6", as_of=log.seq)) == [
        5000,
        4000,
        3000,
        2000,
        5000,
    ]
    assert list(f.tenant_amounts(A, "EUR", exclude="x", as_of=log.seq, limit=2)) == [6000, 5000]
    assert list(f.tenant_amounts(B, "EUR", exclude="x", as_of=log.seq)) == [99]
    assert list(f.claimant_amounts(A, "c1", "EUR", exclude="clm_1", as_of=others[2].seq)) == [
        4000,
        3000,
        2000,
    ]
    assert list(f.tenant_amounts(A, "USD", exclude="x", as_of=log.seq)) == []

    # documents: own, and the same hash on other claims, bounded by as_of and tenant
    h = "cd" * 32
    d1 = log.entry(A, "document.uploaded", "clm_1", at=T0)
    d2 = log.entry(A, "document.uploaded", "clm_2", at=T0)
    d3 = log.entry(B, "document.uploaded", "clm_b", at=T0)
    for d in (d1, d2, d3):
        assert f.record(d, {"sha256": h, "kind": "photo"}) is True
    f.record(log.entry(A, "document.uploaded", "clm_3", at=T0), {"kind": "no hash"})
    assert [d.ref.seq for d in f.documents_of(A, "clm_1", as_of=log.seq)] == [d1.seq]
    assert f.documents_of(A, "clm_1", as_of=d1.seq - 1) == []
    citing = f.documents_citing(A, h, exclude="clm_1", as_of=log.seq)
    assert [(d.claim_id, d.ref) for d in citing] == [("clm_2", EvidenceRef.of(d2))]
    assert f.documents_citing(A, h, exclude="clm_1", as_of=d1.seq) == []
    latest = f.latest_event(A, "clm_1")
    assert latest is not None and latest.ref.seq == d1.seq and latest.recorded_at == d1.recorded_at

    # custody and lifecycle: the last placement / status at or before a time
    k1 = log.entry(A, "custody.locked", "a1", at=T0 - timedelta(days=5))
    k2 = log.entry(A, "custody.released", "a1", at=T0 - timedelta(days=2))
    f.record(k1, {"locker": "L-9"})
    f.record(k2, {"to": "c1"})
    f.record(log.entry(A, "custody.scanned", "a1", at=T0), {"reader": "r1"})
    got = f.last_custody(A, "a1", at=T0 - timedelta(days=3), as_of=log.seq)
    assert got is not None and (got.placement, got.holder, got.ref) == (
        "locker",
        "L-9",
        EvidenceRef.of(k1),
    )
    got = f.last_custody(A, "a1", at=T0, as_of=log.seq)
    assert got is not None and (got.placement, got.holder) == ("custodian", "c1")
    assert f.last_custody(A, "a1", at=T0 - timedelta(days=6), as_of=log.seq) is None
    assert f.last_custody(B, "a1", at=T0, as_of=log.seq) is None
    s1 = log.entry(A, "asset.created", "a1", at=T0 - timedelta(days=30))
    s2 = log.entry(A, "asset.sold", "a1", at=T0 - timedelta(days=1))
    f.record(s1, {})
    f.record(s2, {})
    st = f.asset_status(A, "a1", at=T0, as_of=log.seq)
    assert st is not None and (st.status, st.ref) == ("SOLD", EvidenceRef.of(s2))
    st = f.asset_status(A, "a1", at=T0, as_of=s1.seq)
    assert st is not None and st.status == "DRAFT"

    # malformed known fields are refused and nothing is folded
    bad = log.entry(A, "claim.created", "clm_bad", at=T0)
    with pytest.raises(ValidationError):
        f.record(bad, _claim(currency="euro"))
    assert f.claim(A, "clm_bad") is None
    assert f.record(bad, _claim()) is True  # the seq was not burnt by the refusal


def _score(seq: int, claim: str, score: int, required: bool, scored: str = "") -> ScoreRecord:
    return ScoreRecord(
        tenant=A,
        claim_id=claim,
        ref=EvidenceRef(
            event_id=f"evt_s{seq}", seq=seq, leaf_hash=f"{seq:064x}", type="risk.scored"
        ),
        scored_event_id=scored or f"evt_{seq - 1}",
        score=score,
        level="high",
        review_required=required,
        recorded_at=T0 + timedelta(seconds=seq),
        result={"score": score, "reasons": [{"feature": "velocity", "contribution": 50.0}]},
    )


def _review(seq: int, claim: str, decision: str, score_seq: int) -> ReviewRecord:
    return ReviewRecord(
        tenant=A,
        claim_id=claim,
        ref=EvidenceRef(
            event_id=f"evt_r{seq}", seq=seq, leaf_hash=f"{seq:064x}", type="risk.reviewed"
        ),
        decision=decision,  # type: ignore[arg-type]
        reviewer="key:rev",
        note="checked",
        score_seq=score_seq,
        recorded_at=T0 + timedelta(seconds=seq),
    )


def test_results_conformance(stores: Stores) -> None:
    r = stores.results
    assert r.claim_risk(A, "clm_1") is None and list(r.queue(A)) == []
    s10 = _score(10, "clm_1", 70, True, scored="evt_9")
    r.save_score(s10)
    r.save_score(s10)  # idempotent
    r.save_score(_score(12, "clm_2", 90, True))
    r.save_score(_score(14, "clm_3", 10, False))
    got = r.claim_risk(A, "clm_1")
    assert got is not None and got.state == "pending" and got.score == s10
    assert r.claim_risk(B, "clm_1") is None
    assert [(x.score.claim_id, x.state) for x in r.queue(A)] == [
        ("clm_2", "pending"),
        ("clm_1", "pending"),
    ]
    assert [x.score.claim_id for x in r.queue(A, limit=1)] == ["clm_2"]
    assert list(r.queue(B)) == []
    found = r.score_for_event(A, "evt_9")
    assert found is not None and found.ref.seq == 10 and r.score_for_event(B, "evt_9") is None

    r.save_review(_review(15, "clm_1", "approve", 10))
    got = r.claim_risk(A, "clm_1")
    assert got is not None and got.state == "approved" and got.review is not None
    assert got.review.note == "checked" and got.review.score_seq == 10
    r.save_review(_review(16, "clm_2", "escalate", 12))
    assert [(x.score.claim_id, x.state) for x in r.queue(A)] == [("clm_2", "escalated")]

    # a newer score reopens review; a second score for the same event keeps the earliest
    r.save_score(_score(20, "clm_1", 55, True, scored="evt_9"))
    got = r.claim_risk(A, "clm_1")
    assert got is not None and got.state == "pending" and got.score.ref.seq == 20
    found = r.score_for_event(A, "evt_9")
    assert found is not None and found.ref.seq == 10
    assert [x.score.claim_id for x in r.queue(A)] == ["clm_2", "clm_1"]
    r.save_score(_score(21, "clm_1", 5, False))
    got = r.claim_risk(A, "clm_1")
    assert got is not None and got.state == "not_required"
    # an older score arriving late does not replace the latest
    r.save_score(_score(18, "clm_1", 99, True))
    got = r.claim_risk(A, "clm_1")
    assert got is not None and got.score.ref.seq == 21
