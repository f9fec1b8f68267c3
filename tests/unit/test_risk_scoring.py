"""RiskScorer with the in-memory facts and results, and a small LedgerAppender twin."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from proveniq.adapters.memory.risk import MemoryRiskFacts, MemoryRiskResults
from proveniq.errors import IdempotencyConflict, NotFound, Unavailable, ValidationError
from proveniq.followers.risk.assessment import GeminiAssessment, Prompt, ReviewPolicy
from proveniq.followers.risk.scoring import RiskScorer
from proveniq.log.canonical import canonicalize, sha256_canonical
from proveniq.log.entry import Entry
from proveniq.log.timefmt import format_time
from proveniq.ports import NewEvent

T0 = datetime(2025, 1, 1, tzinfo=UTC)
TENANT = "ptn_acme"


class Ledger:
    """A LedgerAppender twin: links entries, honours idempotency keys like the real one."""

    def __init__(self) -> None:
        self.entries: list[tuple[Entry, Mapping[str, Any]]] = []
        self._keys: dict[tuple[str, str], tuple[bytes, list[Entry]]] = {}
        self.clock = T0

    def _link(self, tenant: str, ev: NewEvent) -> Entry:
        prev = self.entries[-1][0].leaf_hash() if self.entries else bytes(32)
        entry = Entry(
            seq=len(self.entries),
            id=f"evt_{secrets.token_hex(8)}",
            tenant=tenant,
            type=ev.type,
            subject=ev.subject,
            payload_hash=sha256_canonical(dict(ev.payload)),
            recorded_at=self.clock,
            prev=prev,
            occurred_at=ev.occurred_at,
        )
        self.entries.append((entry, ev.payload))
        return entry

    def append(
        self,
        *,
        tenant: str,
        actor: str,
        events: Sequence[NewEvent],
        idempotency_key: str | None = None,
    ) -> list[Entry]:
        digest = hashlib.sha256(
            canonicalize([[e.type, e.subject, dict(e.payload)] for e in events])
        ).digest()
        if idempotency_key is not None:
            seen = self._keys.get((tenant, idempotency_key))
            if seen is not None:
                if seen[0] != digest:
                    raise IdempotencyConflict("key reused with other events")
                return seen[1]
        out = [self._link(tenant, e) for e in events]
        if idempotency_key is not None:
            self._keys[(tenant, idempotency_key)] = (digest, out)
        return out

    def write(
        self, type: str, subject: str, payload: Mapping[str, Any], *, at: datetime
    ) -> tuple[Entry, Mapping[str, Any]]:
        """A partner's event: occurred at `at`, recorded a minute later."""
        self.clock = at + timedelta(minutes=1)
        entry = self._link(
            TENANT, NewEvent(type=type, subject=subject, payload=payload, occurred_at=at)
        )
        return entry, payload

    def of_type(self, type: str) -> list[tuple[Entry, Mapping[str, Any]]]:
        return [(e, p) for e, p in self.entries if e.type == type]


class World:
    def __init__(self, assessor: Any = None, policy: ReviewPolicy | None = None) -> None:
        self.ledger = Ledger()
        self.facts = MemoryRiskFacts()
        self.results = MemoryRiskResults()
        self.scorer = RiskScorer(
            facts=self.facts,
            results=self.results,
            ledger=self.ledger,
            assessor=assessor,
            policy=policy,
        )
        self.n = 0

    def send(self, type: str, subject: str, payload: Mapping[str, Any], *, at: datetime) -> Any:
        entry, p = self.ledger.write(type, subject, payload, at=at)
        return self.scorer.handle(entry, p)

    def claim(
        self,
        *,
        claimant: str,
        asset: str,
        amount: int,
        at: datetime,
        incident: datetime | None = None,
        policy_start: datetime | None = None,
        claim_id: str | None = None,
    ) -> tuple[str, Any]:
        self.n += 1
        cid = claim_id or f"clm_{self.n}"
        payload: dict[str, Any] = {
            "amount_cents": amount,
            "currency": "EUR",
            "claimant": claimant,
            "asset": asset,
            "incident_at": format_time(incident or at - timedelta(days=3)),
            "policy_id": f"pol_{claimant}",
            "policy_start": format_time(policy_start or at - timedelta(days=400)),
            "description": f"secret description of {claimant}",
        }
        return cid, self.send("claim.created", cid, payload, at=at)

    def history(self, count: int = 60) -> None:
        """Normal claims: amounts around 2,500.00 EUR, one claimant and asset each, a day apart."""
        for i in range(count):
            amount = 250000 + (i % 7 - 3) * 40000
            self.claim(claimant=f"h_{i}", asset=f"ha_{i}", amount=amount, at=T0 + timedelta(days=i))

    def score(self, claim_id: str) -> int:
        return self.scorer.claim_risk(tenant=TENANT, claim_id=claim_id).score.score


AFTER = T0 + timedelta(days=100)


@pytest.fixture
def world() -> World:
    w = World()
    w.history()
    return w


def test_a_normal_claim_scores_low_and_appends_one_explained_entry(world: World) -> None:
    cid, out = world.claim(claimant="c_ok", asset="a_ok", amount=240000, at=AFTER)
    assert out.status == "scored"
    risk = world.scorer.claim_risk(tenant=TENANT, claim_id=cid)
    assert risk.score.score < 25 and risk.state == "not_required"
    entry, payload = world.ledger.of_type("risk.scored")[-1]
    assert entry.subject == cid and risk.score.ref.seq == entry.seq
    claim_entry = world.ledger.of_type("claim.created")[-1][0]
    assert payload["scores"] == {
        "event_id": claim_entry.id,
        "seq": claim_entry.seq,
        "leaf_hash": claim_entry.leaf_hash().hex(),
        "type": "claim.created",
    }
    assert [f["name"] for f in payload["features"]] == [
        "duplicate_document",
        "velocity",
        "amount_outlier",
        "timing",
        "custody_contradiction",
    ]
    assert payload["model"]["deterministic"].startswith("proveniq-risk-det/")
    assert payload["model"]["gemini"] is None and payload["assessment"] == {"status": "off"}
    assert "deterministic score stands" in payload["explanation"]


def test_the_same_event_delivered_three_times_appends_one_score(world: World) -> None:
    entry, payload = world.ledger.write(
        "claim.created",
        "clm_dup",
        {"amount_cents": 100, "currency": "EUR", "claimant": "x", "asset": "y"},
        at=AFTER,
    )
    before = len(world.ledger.of_type("risk.scored"))
    outcomes = [world.scorer.handle(entry, payload).status for _ in range(3)]
    assert outcomes == ["scored", "already_scored", "already_scored"]
    assert len(world.ledger.of_type("risk.scored")) == before + 1


def test_redelivery_after_a_lost_projection_still_appends_once(world: World) -> None:
    """Appended, then the results store lost it (crash): the idempotency key holds."""
    entry, payload = world.ledger.write(
        "claim.created", "clm_x", {"amount_cents": 100, "claimant": "x", "asset": "y"}, at=AFTER
    )
    world.scorer.handle(entry, payload)
    fresh = RiskScorer(facts=world.facts, results=MemoryRiskResults(), ledger=world.ledger)
    assert fresh.handle(entry, payload).status == "scored"
    scored = [
        e for e, p in world.ledger.of_type("risk.scored") if p["scores"]["event_id"] == entry.id
    ]
    assert len(scored) == 1


def test_risk_events_are_never_scored_but_projected(world: World) -> None:
    cid, _ = world.claim(claimant="c", asset="a", amount=1000, at=AFTER)
    count = len(world.ledger.entries)
    scored_entry, scored_payload = world.ledger.of_type("risk.scored")[-1]
    other = MemoryRiskResults()
    scorer = RiskScorer(facts=world.facts, results=other, ledger=world.ledger)
    assert scorer.handle(scored_entry, scored_payload).status == "projected"
    assert len(world.ledger.entries) == count  # nothing appended
    found = other.claim_risk(TENANT, cid)
    assert found is not None and found.score.ref.seq == scored_entry.seq
    bogus = world.ledger.write("risk.other", cid, {"x": 1}, at=AFTER)
    assert world.scorer.handle(*bogus).status == "ignored"


def test_duplicate_document_hash_raises_the_score(world: World) -> None:
    h = "ab" * 32
    a, _ = world.claim(claimant="c_a", asset="a_a", amount=250000, at=AFTER)
    world.send("document.uploaded", a, {"sha256": h, "kind": "photo"}, at=AFTER)
    b, _ = world.claim(claimant="c_b", asset="a_b", amount=250000, at=AFTER + timedelta(days=2))
    assert world.score(b) < 25
    out = world.send(
        "document.uploaded", b, {"sha256": h, "kind": "photo"}, at=AFTER + timedelta(days=2)
    )
    assert out.status == "scored"
    risk = world.scorer.claim_risk(tenant=TENANT, claim_id=b)
    assert risk.score.score >= 50 and risk.state == "pending"
    top = risk.score.result["reasons"][0]
    assert top["feature"] == "duplicate_document" and a in top["reason"]
    first_doc = world.ledger.of_type("document.uploaded")[0][0]
    assert first_doc.id in {e["event_id"] for e in top["evidence"]}
    assert {e["leaf_hash"] for e in top["evidence"]} >= {first_doc.leaf_hash().hex()}


def test_claim_velocity_raises_the_score(world: World) -> None:
    ids = [
        world.claim(
            claimant="c_fast", asset=f"a_v{i}", amount=250000, at=AFTER + timedelta(days=i)
        )[0]
        for i in range(3)
    ]
    assert world.score(ids[0]) < 25
    assert world.score(ids[2]) >= 50
    reasons = world.scorer.claim_risk(tenant=TENANT, claim_id=ids[2]).score.result["reasons"]
    assert reasons[0]["feature"] == "velocity"


def test_amount_outlier_raises_the_score(world: World) -> None:
    cid, _ = world.claim(claimant="c_big", asset="a_big", amount=250000 * 40, at=AFTER)
    assert world.score(cid) >= 50


@pytest.mark.parametrize(
    "kind", ["incident_after_filing", "future_incident", "soon_after_policy_start"]
)
def test_timing_anomalies_raise_the_score(world: World, kind: str) -> None:
    incident = {
        "incident_after_filing": AFTER + timedelta(hours=6),
        "future_incident": AFTER + timedelta(days=30),
        "soon_after_policy_start": AFTER - timedelta(days=2),
    }[kind]
    start = AFTER - timedelta(days=3) if kind == "soon_after_policy_start" else None
    cid, _ = world.claim(
        claimant="c_t", asset="a_t", amount=250000, at=AFTER, incident=incident, policy_start=start
    )
    risk = world.scorer.claim_risk(tenant=TENANT, claim_id=cid)
    assert risk.score.score >= 50
    timing = next(f for f in risk.score.result["features"] if f["name"] == "timing")
    assert timing["facts"][kind] is True


@pytest.mark.parametrize("how", ["locker", "custodian", "sold"])
def test_custody_contradictions_raise_the_score(world: World, how: str) -> None:
    asset = f"a_{how}"
    before = AFTER - timedelta(days=10)
    world.send("asset.created", asset, {"title": "bike"}, at=before - timedelta(days=5))
    if how == "locker":
        world.send("custody.locked", asset, {"locker": "L-7"}, at=before)
    elif how == "custodian":
        world.send("custody.transferred", asset, {"from": "c_own", "to": "carrier-2"}, at=before)
    else:
        world.send("asset.sold", asset, {}, at=before)
    cid, _ = world.claim(claimant="c_own", asset=asset, amount=250000, at=AFTER)
    risk = world.scorer.claim_risk(tenant=TENANT, claim_id=cid)
    assert risk.score.score >= 45
    assert risk.score.result["reasons"][0]["feature"] == "custody_contradiction"


def test_custody_after_the_incident_or_back_to_the_claimant_is_no_contradiction(
    world: World,
) -> None:
    world.send("custody.locked", "a_back", {"locker": "L-1"}, at=AFTER - timedelta(days=20))
    world.send("custody.released", "a_back", {"to": "c_back"}, at=AFTER - timedelta(days=10))
    world.send("custody.locked", "a_back", {"locker": "L-1"}, at=AFTER - timedelta(hours=1))
    cid, _ = world.claim(
        claimant="c_back",
        asset="a_back",
        amount=250000,
        at=AFTER,
        incident=AFTER - timedelta(days=3),
    )
    assert world.score(cid) < 25


def test_hard_negative_large_claims_from_a_claimant_with_large_history(world: World) -> None:
    big = 250000 * 40
    for i in range(3):
        world.claim(
            claimant="c_corp", asset=f"a_corp{i}", amount=big, at=AFTER + timedelta(days=60 * i)
        )
    cid, _ = world.claim(
        claimant="c_corp", asset="a_corp9", amount=big + 50000, at=AFTER + timedelta(days=200)
    )
    assert world.score(cid) < 50


def test_hard_negative_one_claimant_many_unrelated_assets_over_time(world: World) -> None:
    scores = []
    for i in range(12):
        cid, _ = world.claim(
            claimant="c_fleet",
            asset=f"a_fleet{i}",
            amount=250000,
            at=AFTER + timedelta(days=40 * i),
        )
        scores.append(world.score(cid))
    assert max(scores) < 50


class FixedAssessor:
    """An Assessor twin: answers with `answer`, or raises `error`; records the prompts."""

    model = "gemini-test"

    def __init__(self, answer: GeminiAssessment | None = None, error: Exception | None = None):
        self.answer, self.error = answer, error
        self.prompts: list[Prompt] = []

    def assess(self, prompt: Prompt) -> GeminiAssessment:
        self.prompts.append(prompt)
        if self.error is not None:
            raise self.error
        assert self.answer is not None
        return self.answer


def _answer(level: str, adjustment: int, cited: list[str] | None = None) -> GeminiAssessment:
    return GeminiAssessment.model_validate(
        {
            "risk_level": level,
            "adjustment": adjustment,
            "rationale": "because",
            "cited_evidence": cited or [],
            "narrative": "A handler-readable narrative.",
        }
    )


def test_assessor_adjusts_within_bounds_and_its_prompt_is_minimal() -> None:
    assessor = FixedAssessor(_answer("medium", 15, ["evt_not_given"]))
    w = World(assessor=assessor)
    w.history(40)
    cid, _ = w.claim(claimant="c_secret_id", asset="a_secret", amount=250000, at=AFTER)
    risk = w.scorer.claim_risk(tenant=TENANT, claim_id=cid)
    det = risk.score.result["deterministic"]["score"]
    assert risk.score.score == det + 15
    assert risk.score.result["assessment"]["cited_evidence"] == []  # unknown ids dropped
    assert risk.score.result["explanation"] == "A handler-readable narrative."
    prompt = assessor.prompts[-1]
    assert risk.score.result["model"] == {
        "deterministic": "proveniq-risk-det/1.0",
        "config_sha256": risk.score.result["model"]["config_sha256"],
        "gemini": "gemini-test",
        "prompt_version": "risk-prompt/1",
        "prompt_sha256": prompt.sha256,
    }
    text = prompt.system + prompt.user
    for secret in ("c_secret_id", "a_secret", "secret description", cid, "amount_cents", "EUR"):
        assert secret not in text


def test_disagreement_requires_review_even_below_threshold() -> None:
    w = World(assessor=FixedAssessor(_answer("critical", 10)))
    w.history(40)
    cid, _ = w.claim(claimant="c", asset="a", amount=250000, at=AFTER)
    risk = w.scorer.claim_risk(tenant=TENANT, claim_id=cid)
    assert risk.score.score < 50 and risk.score.review_required and risk.state == "pending"
    assert "disagree" in " ".join(risk.score.result["review_reasons"])


@pytest.mark.parametrize("error", [Unavailable("Gemini answered 503"), RuntimeError("bug")])
def test_a_failing_assessor_leaves_the_deterministic_result(error: Exception) -> None:
    w = World(assessor=FixedAssessor(error=error))
    w.history(40)
    cid, _ = w.claim(claimant="c_big", asset="a", amount=250000 * 40, at=AFTER)
    risk = w.scorer.claim_risk(tenant=TENANT, claim_id=cid)
    result = risk.score.result
    assert risk.score.score == result["deterministic"]["score"] >= 50
    assert result["assessment"] == {"status": "unavailable"}
    assert result["explanation"].startswith("Gemini unavailable")
    assert "deterministic score stands" in result["explanation"]


def test_review_decisions_and_the_queue(world: World) -> None:
    a, _ = world.claim(claimant="c1", asset="x1", amount=250000 * 40, at=AFTER)
    b, _ = world.claim(
        claimant="c2", asset="x2", amount=250000 * 60, at=AFTER, incident=AFTER + timedelta(hours=6)
    )
    queued = [r.score.claim_id for r in world.scorer.queue(tenant=TENANT)]
    assert set(queued) == {a, b} and queued[0] == b  # highest score first
    after = world.scorer.review(
        tenant=TENANT, claim_id=a, reviewer="key:rev", decision="approve", note="known customer"
    )
    assert after.state == "approved" and after.review is not None
    _, payload = world.ledger.of_type("risk.reviewed")[-1]
    assert payload["reviews"]["seq"] == after.score.ref.seq and payload["reviewer"] == "key:rev"
    world.scorer.review(tenant=TENANT, claim_id=b, reviewer="key:rev", decision="escalate")
    assert [(r.score.claim_id, r.state) for r in world.scorer.queue(tenant=TENANT)] == [
        (b, "escalated")
    ]
    with pytest.raises(ValidationError) as e:
        world.scorer.review(tenant=TENANT, claim_id=a, reviewer="r", decision="maybe")
    assert e.value.field == "decision"
    with pytest.raises(NotFound):
        world.scorer.review(tenant=TENANT, claim_id="nope", reviewer="r", decision="approve")
    with pytest.raises(NotFound):
        world.scorer.claim_risk(tenant="other-tenant", claim_id=a)


def test_analyze_rescores_now_and_a_new_score_reopens_review(world: World) -> None:
    cid, _ = world.claim(claimant="c1", asset="x1", amount=250000 * 40, at=AFTER)
    world.scorer.review(tenant=TENANT, claim_id=cid, reviewer="r", decision="approve")
    again = world.scorer.analyze(tenant=TENANT, claim_id=cid)
    assert again.state == "pending"
    scored = [p for _, p in world.ledger.of_type("risk.scored") if _.subject == cid]
    assert len(scored) == 2 and scored[0]["scores"] == scored[1]["scores"]
    with pytest.raises(NotFound):
        world.scorer.analyze(tenant=TENANT, claim_id="nope")


def test_a_malformed_known_field_is_acknowledged_not_scored(world: World) -> None:
    count = len(world.ledger.of_type("risk.scored"))
    out = world.send("claim.created", "clm_bad", {"amount_cents": -5}, at=AFTER)
    assert out.status == "malformed" and "payload.amount_cents" in out.detail
    assert len(world.ledger.of_type("risk.scored")) == count
    assert world.facts.claim(TENANT, "clm_bad") is None
