"""The `RiskResults` port: every `risk.scored` / `risk.reviewed` entry, the latest score per
claim, its review state and the queue of claims awaiting review.

A projection of the ledger: `score_record` / `review_record` read the records back from an
entry and its payload, so the store can be (re)built from `risk.*` entries as they arrive on
`ledger-events`; saving the same entry twice changes nothing (keyed by seq).

Review state per claim, driven by seq order:

    latest score review_required  -> pending        (a newer score resets the state)
    latest score not required     -> not_required
    a review newer than the score -> approved | rejected | escalated

The queue lists claims in `pending` or `escalated`, highest score first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from proveniq.errors import ValidationError
from proveniq.followers.risk.facts import EvidenceRef
from proveniq.log.entry import Entry

ReviewState = Literal["pending", "not_required", "approved", "rejected", "escalated"]
Decision = Literal["approve", "reject", "escalate"]
DECISION_STATE: Mapping[str, ReviewState] = {
    "approve": "approved",
    "reject": "rejected",
    "escalate": "escalated",
}
QUEUED: frozenset[str] = frozenset({"pending", "escalated"})


@dataclass(frozen=True, kw_only=True)
class ScoreRecord:
    """One `risk.scored` entry: `ref` is the entry itself, `result` its payload."""

    tenant: str
    claim_id: str
    ref: EvidenceRef
    scored_event_id: str
    score: int
    level: str
    review_required: bool
    recorded_at: datetime
    result: Mapping[str, Any]


@dataclass(frozen=True, kw_only=True)
class ReviewRecord:
    tenant: str
    claim_id: str
    ref: EvidenceRef
    decision: Decision
    reviewer: str
    note: str
    score_seq: int  # the risk.scored entry this review decided on
    recorded_at: datetime


@dataclass(frozen=True, kw_only=True)
class ClaimRisk:
    """The read model of one claim: its latest score, state and latest review (if any)."""

    score: ScoreRecord
    state: ReviewState
    review: ReviewRecord | None


def score_record(entry: Entry, payload: Mapping[str, Any]) -> ScoreRecord:
    """A `risk.scored` entry as a record (ValidationError if the payload is not ours)."""
    try:
        return ScoreRecord(
            tenant=entry.tenant,
            claim_id=entry.subject,
            ref=EvidenceRef.of(entry),
            scored_event_id=str(payload["scores"]["event_id"]),
            score=int(payload["score"]),
            level=str(payload["level"]),
            review_required=bool(payload["review_required"]),
            recorded_at=entry.recorded_at,
            result=payload,
        )
    except (KeyError, TypeError, ValueError) as e:
        raise ValidationError("not a risk.scored payload", field="payload") from e


def review_record(entry: Entry, payload: Mapping[str, Any]) -> ReviewRecord:
    decision = payload.get("decision")
    if decision not in ("approve", "reject", "escalate"):
        raise ValidationError("decision must be approve, reject or escalate", field="decision")
    try:
        return ReviewRecord(
            tenant=entry.tenant,
            claim_id=entry.subject,
            ref=EvidenceRef.of(entry),
            decision=decision,
            reviewer=str(payload["reviewer"]),
            note=str(payload.get("note", "")),
            score_seq=int(payload["reviews"]["seq"]),
            recorded_at=entry.recorded_at,
        )
    except (KeyError, TypeError, ValueError) as e:
        raise ValidationError("not a risk.reviewed payload", field="payload") from e


def derive_state(score: ScoreRecord, review: ReviewRecord | None) -> ReviewState:
    """The claim's review state from its latest score and latest review."""
    if review is not None and review.ref.seq > score.ref.seq:
        return DECISION_STATE[review.decision]
    return "pending" if score.review_required else "not_required"


class RiskResults(Protocol):
    def save_score(self, record: ScoreRecord) -> None:
        """Store a risk.scored entry (idempotent by seq); a newer one becomes the claim's."""

    def save_review(self, record: ReviewRecord) -> None:
        """Store a risk.reviewed entry (idempotent by seq); it sets the state if it is newer
        than the claim's latest score."""

    def score_for_event(self, tenant: str, scored_event_id: str) -> ScoreRecord | None:
        """The earliest risk.scored entry that scored this event, if any."""

    def claim_risk(self, tenant: str, claim_id: str) -> ClaimRisk | None: ...

    def queue(self, tenant: str, *, limit: int = 50) -> Sequence[ClaimRisk]:
        """Claims awaiting review (pending or escalated), highest score first."""
