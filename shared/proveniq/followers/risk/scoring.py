"""The use case: fold each ledger event, score the claim it touches, append the result.

`RiskScorer.handle(entry, payload)` is what the risk_score function calls per `ledger-events`
message:

0. A payload that is not the one the entry commits to (its `payload_hash`) is refused as
   malformed: nothing is folded, projected or scored on evidence the ledger never held.
1. `risk.scored` / `risk.reviewed` entries are projected into `RiskResults` (never scored).
2. Any other event is folded into `RiskFacts` (idempotent by seq). A malformed known field is a
   permanent problem: the outcome says so and the caller acknowledges the message.
3. claim.created / claim.updated / document.uploaded: unless this event was already scored, the
   claim is scored as of the event's seq, the assessor is asked (optional, bounded), and ONE
   `risk.scored` entry is appended to the claim's subject with the idempotency key
   ``risk.scored:<event id>``, so a redelivery appends nothing new.

Only `errors.Unavailable` (the store or the ledger) escapes `handle`: Pub/Sub redelivers then.
An assessor failure never does: the deterministic result stands and the explanation says so.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from proveniq.errors import IdempotencyConflict, NotFound, Unavailable, ValidationError
from proveniq.followers.risk.assessment import (
    PROMPT_VERSION,
    Assessor,
    Combined,
    GeminiAssessment,
    ReviewPolicy,
    build_prompt,
    combine,
)
from proveniq.followers.risk.facts import ClaimRecord, EventFacts, RiskFacts
from proveniq.followers.risk.features import FeatureConfig, compute, gather
from proveniq.followers.risk.model import MODEL_VERSION, DeterministicResult, evaluate
from proveniq.followers.risk.results import (
    DECISION_STATE,
    ClaimRisk,
    RiskResults,
    ScoreRecord,
    review_record,
    score_record,
)
from proveniq.ledger import evidence
from proveniq.log.canonical import sha256_canonical
from proveniq.log.entry import Entry
from proveniq.ports import LedgerAppender, NewEvent

log = logging.getLogger("proveniq.risk")
SCORED = "risk.scored"
REVIEWED = "risk.reviewed"
MAX_NOTE = 2000

Status = Literal["scored", "already_scored", "folded", "projected", "ignored", "malformed"]


@dataclass(frozen=True, kw_only=True)
class Outcome:
    status: Status
    claim_id: str | None = None
    record: ScoreRecord | None = None
    detail: str = ""


def _commits_to(entry: Entry, payload: Mapping[str, Any]) -> bool:
    try:
        return sha256_canonical(dict(payload)) == entry.payload_hash
    except ValidationError:  # not representable as canonical JSON: not what was hashed
        return False


def scored_key(event_id: str) -> str:
    return f"{SCORED}:{event_id}"


class RiskScorer:
    def __init__(
        self,
        *,
        facts: RiskFacts,
        results: RiskResults,
        ledger: LedgerAppender,
        assessor: Assessor | None = None,
        features: FeatureConfig | None = None,
        policy: ReviewPolicy | None = None,
        actor: str = "service:risk_score",
    ) -> None:
        self._facts = facts
        self._results = results
        self._ledger = ledger
        self._assessor = assessor
        self._features = features or FeatureConfig()
        self._policy = policy or ReviewPolicy()
        self._actor = actor

    # -- the follower -----------------------------------------------------------------------

    def handle(self, entry: Entry, payload: Mapping[str, Any] | None) -> Outcome:
        if payload is not None and not _commits_to(entry, payload):
            # Not the payload the entry commits to: scoring (or projecting) it would rest a
            # score on evidence the ledger never held. Permanent, so acknowledged.
            log.warning("risk: event %s payload does not match its payload_hash", entry.id)
            return Outcome(status="malformed", claim_id=entry.subject, detail="payload_hash")
        if evidence.is_risk_event(entry.type):
            return self._project(entry, payload)
        try:
            self._facts.record(entry, payload)
        except ValidationError as e:
            log.warning("risk: event %s not folded: %s (%s)", entry.id, e.message, e.field)
            return Outcome(status="malformed", detail=f"{e.field}: {e.message}")
        if not evidence.is_scorable(entry.type):
            return Outcome(status="folded")
        claim_id = entry.subject
        done = self._results.score_for_event(entry.tenant, entry.id)
        if done is not None:
            return Outcome(status="already_scored", claim_id=claim_id, record=done)
        claim = self._facts.claim(entry.tenant, claim_id)
        if claim is None:  # a document for a claim not (yet) in the ledger
            return Outcome(status="folded", claim_id=claim_id, detail="no claim for this subject")
        record = self._score(claim, EventFacts.of(entry), idempotency_key=scored_key(entry.id))
        if record is None:
            return Outcome(status="already_scored", claim_id=claim_id, detail="sequenced before")
        return Outcome(status="scored", claim_id=claim_id, record=record)

    def _project(self, entry: Entry, payload: Mapping[str, Any] | None) -> Outcome:
        if payload is None or entry.type not in (SCORED, REVIEWED):
            return Outcome(status="ignored", claim_id=entry.subject)
        try:
            if entry.type == SCORED:
                self._results.save_score(score_record(entry, payload))
            else:
                self._results.save_review(review_record(entry, payload))
        except ValidationError as e:
            return Outcome(status="malformed", claim_id=entry.subject, detail=e.message)
        return Outcome(status="projected", claim_id=entry.subject)

    # -- HTTP-facing use cases --------------------------------------------------------------

    def analyze(
        self, *, tenant: str, claim_id: str, idempotency_key: str | None = None
    ) -> ClaimRisk:
        """Re-score the claim now (as of its latest evidence) and append the result."""
        claim = self._facts.claim(tenant, claim_id)
        latest = self._facts.latest_event(tenant, claim_id)
        if claim is None or latest is None:
            raise NotFound(f"no claim {claim_id}")
        self._score(claim, latest, idempotency_key=idempotency_key)
        return self.claim_risk(tenant=tenant, claim_id=claim_id)

    def review(
        self,
        *,
        tenant: str,
        claim_id: str,
        reviewer: str,
        decision: str,
        note: str = "",
        idempotency_key: str | None = None,
    ) -> ClaimRisk:
        """Append a reviewer's decision on the claim's latest score as `risk.reviewed`."""
        if decision not in DECISION_STATE:
            raise ValidationError("decision must be approve, reject or escalate", field="decision")
        if not isinstance(note, str) or len(note) > MAX_NOTE:
            raise ValidationError(f"note must be a string of at most {MAX_NOTE}", field="note")
        current = self._results.claim_risk(tenant, claim_id)
        if current is None:
            raise NotFound(f"claim {claim_id} has no risk score to review")
        score = current.score
        payload = {
            "decision": decision,
            "reviewer": reviewer,
            "note": note,
            "score": score.score,
            "reviews": score.ref.as_json(),
        }
        entries = self._ledger.append(
            tenant=tenant,
            actor=reviewer,
            events=[NewEvent(type=REVIEWED, subject=claim_id, payload=payload)],
            idempotency_key=idempotency_key,
        )
        self._results.save_review(review_record(entries[0], payload))
        return self.claim_risk(tenant=tenant, claim_id=claim_id)

    def claim_risk(self, *, tenant: str, claim_id: str) -> ClaimRisk:
        """Score, level, review state and the `risk.scored` entry (for its proof URL)."""
        found = self._results.claim_risk(tenant, claim_id)
        if found is None:
            raise NotFound(f"claim {claim_id} has no risk score")
        return found

    def queue(self, *, tenant: str, limit: int = 50) -> Sequence[ClaimRisk]:
        return self._results.queue(tenant, limit=max(1, min(limit, 500)))

    # -- scoring ----------------------------------------------------------------------------

    def deterministic(self, claim: ClaimRecord, scored: EventFacts) -> DeterministicResult:
        ctx = gather(self._facts, claim=claim, scored=scored, config=self._features)
        return evaluate(compute(ctx, self._features))

    def _score(
        self, claim: ClaimRecord, scored: EventFacts, *, idempotency_key: str | None
    ) -> ScoreRecord | None:
        result = self.deterministic(claim, scored)
        prompt = build_prompt(result)
        assessment: GeminiAssessment | None = None
        status, failure = "off", ""
        if self._assessor is not None:
            try:
                assessment = self._assessor.assess(prompt)
                status = "ok"
            except Unavailable as e:
                status, failure = "unavailable", e.message
            except Exception as e:  # an assessor bug must not stop scoring
                log.exception("risk: assessor failed")
                status, failure = "unavailable", type(e).__name__
        combined = combine(
            result, assessment, policy=self._policy, prompt=prompt, status=status, failure=failure
        )
        payload = self._payload(result, combined, scored, prompt_sha256=prompt.sha256)
        try:
            entries = self._ledger.append(
                tenant=claim.tenant,
                actor=self._actor,
                events=[NewEvent(type=SCORED, subject=claim.claim_id, payload=payload)],
                idempotency_key=idempotency_key,
            )
        except IdempotencyConflict:
            # Sequenced by an earlier delivery whose result differs (the assessor is not
            # deterministic); that entry stands and is projected when it arrives on the bus.
            return None
        record = score_record(entries[0], payload)
        self._results.save_score(record)
        return record

    def _payload(
        self,
        result: DeterministicResult,
        combined: Combined,
        scored: EventFacts,
        *,
        prompt_sha256: str,
    ) -> dict[str, Any]:
        a = combined.assessment
        assessment: dict[str, Any] = {"status": combined.assessor_status}
        if a is not None:
            assessment |= {
                "risk_level": a.risk_level,
                "adjustment": combined.adjustment,
                "rationale": a.rationale,
                "cited_evidence": list(combined.cited_evidence),
            }
        assessor = self._assessor
        return {
            "score": combined.score,
            "level": combined.level,
            "review_required": combined.review_required,
            "review_reasons": list(combined.review_reasons),
            "deterministic": {"score": result.score, "level": result.level},
            "reasons": result.reasons_json(),
            "features": [f.as_json() for f in result.features],
            "assessment": assessment,
            "explanation": combined.explanation,
            "model": {
                "deterministic": MODEL_VERSION,
                "config_sha256": self._features.fingerprint(),
                "gemini": assessor.model if assessor is not None else None,
                "prompt_version": PROMPT_VERSION,
                "prompt_sha256": prompt_sha256 if assessor is not None else None,
            },
            "scores": scored.ref.as_json(),
        }
