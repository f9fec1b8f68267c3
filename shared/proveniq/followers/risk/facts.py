"""The `RiskFacts` port: a derived index of the tenant's evidence, folded from ledger events.

Scoring asks narrow questions (claims of a claimant in a window, documents with a hash, the last
custody event of an asset before a time, ...) instead of rescanning the tenant's history. Every
query is tenant-scoped and bounded by ``as_of``: only events with ``seq <= as_of`` count, so a
score depends on a prefix of the log and re-scoring the same event gives the same features.

`record(entry, payload)` is idempotent: the event's seq is remembered and a second delivery
changes nothing. A claim's current fields are the fold of its claim.* events in seq order (a
field absent from an update keeps its value; an older event arriving late only fills gaps).
`fold_claim` is that rule, shared by every implementation.

Implementations: `adapters.memory.risk.MemoryRiskFacts`, `adapters.postgres.risk.PostgresRiskFacts`;
`tests/integration/test_risk_store.py` holds both to the same conformance test.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from proveniq.ledger import evidence
from proveniq.ledger.evidence import ClaimEvidence
from proveniq.log.entry import Entry

MAX_SAMPLE = 1000


@dataclass(frozen=True, kw_only=True)
class EvidenceRef:
    """A ledger entry a feature rests on: enough to fetch its inclusion proof."""

    event_id: str
    seq: int
    leaf_hash: str  # lowercase hex
    type: str

    @classmethod
    def of(cls, entry: Entry) -> EvidenceRef:
        return cls(
            event_id=entry.id, seq=entry.seq, leaf_hash=entry.leaf_hash().hex(), type=entry.type
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "seq": self.seq,
            "leaf_hash": self.leaf_hash,
            "type": self.type,
        }


@dataclass(frozen=True, kw_only=True)
class EventFacts:
    """A folded event as the scorer needs it: its reference and its two clocks."""

    ref: EvidenceRef
    occurred_at: datetime | None
    recorded_at: datetime

    @classmethod
    def of(cls, entry: Entry) -> EventFacts:
        return cls(
            ref=EvidenceRef.of(entry), occurred_at=entry.occurred_at, recorded_at=entry.recorded_at
        )


def effective_time(entry: Entry) -> datetime:
    """When the event happened: occurred_at if the partner gave it, else recorded_at."""
    return entry.occurred_at or entry.recorded_at


@dataclass(frozen=True, kw_only=True)
class ClaimRecord:
    tenant: str
    claim_id: str
    claimant: str | None
    asset: str | None
    amount_cents: int | None
    currency: str | None
    incident_at: datetime | None
    policy_id: str | None
    policy_start: datetime | None
    filed_at: datetime  # effective time of the claim's first event
    created: EvidenceRef  # the claim's first event
    created_occurred_at: datetime | None
    created_recorded_at: datetime
    last_seq: int  # the claim.* event the fields were last folded from


def fold_claim(current: ClaimRecord | None, entry: Entry, fields: ClaimEvidence) -> ClaimRecord:
    """The claim after folding one claim.* event (the rule every implementation follows)."""
    new = {k: v for k, v in vars(fields).items() if v is not None}
    if current is None:
        base = ClaimEvidence()
        return ClaimRecord(
            tenant=entry.tenant,
            claim_id=entry.subject,
            **{**vars(base), **new},
            filed_at=effective_time(entry),
            created=EvidenceRef.of(entry),
            created_occurred_at=entry.occurred_at,
            created_recorded_at=entry.recorded_at,
            last_seq=entry.seq,
        )
    if entry.seq > current.last_seq:
        updated = replace(current, **new, last_seq=entry.seq)
    else:  # a late older event only fills fields still unknown
        gaps = {k: v for k, v in new.items() if getattr(current, k) is None}
        updated = replace(current, **gaps)
    if entry.seq < current.created.seq:
        updated = replace(
            updated,
            filed_at=effective_time(entry),
            created=EvidenceRef.of(entry),
            created_occurred_at=entry.occurred_at,
            created_recorded_at=entry.recorded_at,
        )
    return updated


@dataclass(frozen=True, kw_only=True)
class DocumentRecord:
    tenant: str
    claim_id: str
    sha256: str
    kind: str | None
    taken_at: datetime | None
    ref: EvidenceRef
    at: datetime


@dataclass(frozen=True, kw_only=True)
class CustodyRecord:
    tenant: str
    asset: str
    placement: str  # "locker" | "custodian"
    holder: str
    at: datetime
    ref: EvidenceRef


@dataclass(frozen=True, kw_only=True)
class StatusRecord:
    tenant: str
    asset: str
    status: str
    at: datetime
    ref: EvidenceRef


Contribution = ClaimEvidence | DocumentRecord | CustodyRecord | StatusRecord | None


def contribution(entry: Entry, payload: Mapping[str, Any] | None) -> Contribution:
    """What one event adds to the index (None: nothing), after `check_evidence`."""
    if payload is None:
        return None
    t = entry.type
    if t in evidence.CLAIM_TYPES:
        return evidence.claim_evidence(payload)
    ref, at = EvidenceRef.of(entry), effective_time(entry)
    if t == evidence.DOCUMENT_TYPE:
        doc = evidence.document_evidence(payload)
        if doc.sha256 is None:
            return None
        return DocumentRecord(
            tenant=entry.tenant,
            claim_id=entry.subject,
            sha256=doc.sha256,
            kind=doc.kind,
            taken_at=doc.taken_at,
            ref=ref,
            at=at,
        )
    if t.startswith("custody."):
        c = evidence.custody_evidence(t, payload)
        if c is None:
            return None
        return CustodyRecord(
            tenant=entry.tenant,
            asset=entry.subject,
            placement=c.placement,
            holder=c.holder,
            at=at,
            ref=ref,
        )
    status = evidence.ASSET_STATUS.get(t)
    if status is not None:
        return StatusRecord(tenant=entry.tenant, asset=entry.subject, status=status, at=at, ref=ref)
    return None


class RiskFacts(Protocol):
    def record(self, entry: Entry, payload: Mapping[str, Any] | None) -> bool:
        """Fold one ledger event into the index; False if this seq was already folded.
        Raises `errors.ValidationError` for a malformed known field (nothing is folded)."""

    def claim(self, tenant: str, claim_id: str) -> ClaimRecord | None: ...

    def latest_event(self, tenant: str, claim_id: str) -> EventFacts | None:
        """The claim's latest folded claim.* or document.uploaded event."""

    def claims_by_claimant(
        self, tenant: str, claimant: str, *, since: datetime, until: datetime, as_of: int
    ) -> Sequence[ClaimRecord]:
        """Claims of `claimant` filed in [since, until], oldest first."""

    def claims_by_asset(
        self, tenant: str, asset: str, *, since: datetime, until: datetime, as_of: int
    ) -> Sequence[ClaimRecord]: ...

    def claimant_amounts(
        self, tenant: str, claimant: str, currency: str, *, exclude: str, as_of: int
    ) -> Sequence[int]:
        """Amounts of the claimant's other claims in `currency` (most recent MAX_SAMPLE)."""

    def tenant_amounts(
        self, tenant: str, currency: str, *, exclude: str, as_of: int, limit: int = MAX_SAMPLE
    ) -> Sequence[int]:
        """A sample of the tenant's claim amounts in `currency`: the most recent `limit`."""

    def documents_of(self, tenant: str, claim_id: str, *, as_of: int) -> Sequence[DocumentRecord]:
        """The claim's documents, in seq order."""

    def documents_citing(
        self, tenant: str, sha256: str, *, exclude: str, as_of: int, limit: int = 20
    ) -> Sequence[DocumentRecord]:
        """Documents with this hash attached to other claims, in seq order."""

    def last_custody(
        self, tenant: str, asset: str, *, at: datetime, as_of: int
    ) -> CustodyRecord | None:
        """The asset's last custody placement that happened at or before `at`."""

    def asset_status(
        self, tenant: str, asset: str, *, at: datetime, as_of: int
    ) -> StatusRecord | None:
        """The asset's lifecycle status as of `at` (its last asset.* transition by then)."""
