"""Risk handlers: re-score a claim, its score and explanation, the review queue, reviews.

Re-scoring and reviews append to the ledger (`risk.scored`, `risk.reviewed`), so write_event
serves them; get_proof serves the reads. Every answer is scoped to the caller's organization.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from proveniq.edge import params
from proveniq.edge.http import Call, Reply
from proveniq.edge.views import NO_STORE, proof_url
from proveniq.errors import ValidationError
from proveniq.followers.risk.results import ClaimRisk
from proveniq.followers.risk.scoring import RiskScorer

_CLAIM = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")


class RiskHandlers:
    def __init__(self, *, scorer: Callable[[], RiskScorer]) -> None:
        self._scorer = scorer  # built on first use: most requests never touch risk

    def analyze(self, call: Call) -> Reply:
        assert call.tenant is not None
        doc = params.json_object(call.body, {"claim_id"})
        claim = doc.get("claim_id")
        if not isinstance(claim, str) or not _CLAIM.fullmatch(claim):
            raise ValidationError("claim_id must be a claim's subject id", field="claim_id")
        risk = self._scorer().analyze(
            tenant=call.tenant, claim_id=claim, idempotency_key=_idempotency_key(call)
        )
        return Reply(data=score_view(risk), headers=NO_STORE)

    def review(self, call: Call) -> Reply:
        assert call.tenant is not None
        doc = params.json_object(call.body, {"decision", "note"})
        decision = doc.get("decision")
        if decision not in ("approve", "reject", "escalate"):
            raise ValidationError("decision must be approve, reject or escalate", field="decision")
        note = doc.get("note", "")
        if not isinstance(note, str) or len(note) > 2000:
            raise ValidationError("note must be a string of at most 2000 characters", field="note")
        risk = self._scorer().review(
            tenant=call.tenant,
            claim_id=call.params["subject"],
            reviewer=call.principal.subject,
            decision=decision,
            note=note,
            idempotency_key=_idempotency_key(call),
        )
        return Reply(status=201, data=score_view(risk), headers=NO_STORE)

    def score(self, call: Call) -> Reply:
        assert call.tenant is not None
        risk = self._scorer().claim_risk(tenant=call.tenant, claim_id=call.params["subject"])
        return Reply(data=score_view(risk), headers=NO_STORE)

    def explanation(self, call: Call) -> Reply:
        assert call.tenant is not None
        risk = self._scorer().claim_risk(tenant=call.tenant, claim_id=call.params["subject"])
        result = risk.score.result
        reasons = [
            {**r, "evidence": [_with_proof(e) for e in r.get("evidence", [])]}
            for r in result.get("reasons", [])
        ]
        return Reply(
            data={
                "claim_id": risk.score.claim_id,
                "score": risk.score.score,
                "level": risk.score.level,
                "reasons": reasons,
                "explanation": result.get("explanation"),
                "models": result.get("model"),
                "proof_url": proof_url(risk.score.ref.event_id),
            },
            headers=NO_STORE,
        )

    def queue(self, call: Call) -> Reply:
        assert call.tenant is not None
        limit = params.page_limit(call, default=50, maximum=200)
        items = [score_view(r) for r in self._scorer().queue(tenant=call.tenant, limit=limit)]
        return Reply(data=items, meta={"count": len(items)}, headers=NO_STORE)


def _idempotency_key(call: Call) -> str | None:
    """A client's Idempotency-Key, scoped to the route and claim so it cannot replay another
    request's entry; a retry after a timeout then appends nothing new."""
    key = params.idempotency_key(call, max_length=200)
    return None if key is None else f"{call.request.path}:{key}"


def score_view(risk: ClaimRisk) -> dict[str, Any]:
    s = risk.score
    view: dict[str, Any] = {
        "claim_id": s.claim_id,
        "score": s.score,
        "level": s.level,
        "review_required": s.review_required,
        "review_status": risk.state,
        "scored_event": s.scored_event_id,
        "risk_event": {"id": s.ref.event_id, "seq": s.ref.seq, "leaf_hash": s.ref.leaf_hash},
        "proof_url": proof_url(s.ref.event_id),
    }
    if risk.review is not None:
        r = risk.review
        view["review"] = {
            "decision": r.decision,
            "reviewer": r.reviewer,
            "note": r.note,
            "event_id": r.ref.event_id,
            "proof_url": proof_url(r.ref.event_id),
        }
    return view


def _with_proof(evidence: Any) -> Any:
    if isinstance(evidence, dict) and isinstance(evidence.get("event_id"), str):
        return {**evidence, "proof_url": proof_url(evidence["event_id"])}
    return evidence
