"""In-memory twins of the risk ports (`RiskFacts`, `RiskResults`): tests, the bench, and
the local stack without a database. Same behaviour as `adapters.postgres.risk` (one
conformance test holds both); thread-safe with one lock each."""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from proveniq.followers.risk.facts import (
    MAX_SAMPLE,
    ClaimRecord,
    CustodyRecord,
    DocumentRecord,
    EventFacts,
    StatusRecord,
    contribution,
    fold_claim,
)
from proveniq.followers.risk.results import (
    QUEUED,
    ClaimRisk,
    ReviewRecord,
    ScoreRecord,
    derive_state,
)
from proveniq.ledger.evidence import ClaimEvidence
from proveniq.log.entry import Entry

Key = tuple[str, str]


class MemoryRiskFacts:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: set[tuple[str, int]] = set()
        self._claims: dict[Key, ClaimRecord] = {}
        self._latest: dict[Key, EventFacts] = {}
        self._by_claimant: dict[Key, set[str]] = defaultdict(set)
        self._by_asset: dict[Key, set[str]] = defaultdict(set)
        self._by_currency: dict[Key, list[tuple[int, str]]] = defaultdict(list)
        self._docs_of: dict[Key, list[DocumentRecord]] = defaultdict(list)
        self._docs_by_hash: dict[Key, list[DocumentRecord]] = defaultdict(list)
        self._custody: dict[Key, list[CustodyRecord]] = defaultdict(list)
        self._status: dict[Key, list[StatusRecord]] = defaultdict(list)

    def record(self, entry: Entry, payload: Mapping[str, Any] | None) -> bool:
        c = contribution(entry, payload)  # validates before anything is folded
        t = entry.tenant
        with self._lock:
            if (t, entry.seq) in self._seen:
                return False
            self._seen.add((t, entry.seq))
            if isinstance(c, ClaimEvidence):
                self._fold_claim(entry, c)
                self._touch(t, entry.subject, entry)
            elif isinstance(c, DocumentRecord):
                bisect.insort(self._docs_of[(t, c.claim_id)], c, key=_seq)
                bisect.insort(self._docs_by_hash[(t, c.sha256)], c, key=_seq)
                self._touch(t, entry.subject, entry)
            elif isinstance(c, CustodyRecord):
                self._custody[(t, c.asset)].append(c)
            elif isinstance(c, StatusRecord):
                self._status[(t, c.asset)].append(c)
            return True

    def _touch(self, tenant: str, claim_id: str, entry: Entry) -> None:
        cur = self._latest.get((tenant, claim_id))
        if cur is None or entry.seq > cur.ref.seq:
            self._latest[(tenant, claim_id)] = EventFacts.of(entry)

    def _fold_claim(self, entry: Entry, fields: ClaimEvidence) -> None:
        t, cid = entry.tenant, entry.subject
        old = self._claims.get((t, cid))
        new = fold_claim(old, entry, fields)
        self._claims[(t, cid)] = new
        if old is not None:
            self._by_claimant[(t, old.claimant or "")].discard(cid)
            self._by_asset[(t, old.asset or "")].discard(cid)
            if old.currency is not None:
                self._by_currency[(t, old.currency)].remove((old.created.seq, cid))
        if new.claimant is not None:
            self._by_claimant[(t, new.claimant)].add(cid)
        if new.asset is not None:
            self._by_asset[(t, new.asset)].add(cid)
        if new.currency is not None:
            bisect.insort(self._by_currency[(t, new.currency)], (new.created.seq, cid))

    def claim(self, tenant: str, claim_id: str) -> ClaimRecord | None:
        with self._lock:
            return self._claims.get((tenant, claim_id))

    def latest_event(self, tenant: str, claim_id: str) -> EventFacts | None:
        with self._lock:
            return self._latest.get((tenant, claim_id))

    def _window(
        self, tenant: str, ids: set[str], since: datetime, until: datetime, as_of: int
    ) -> list[ClaimRecord]:
        found = [self._claims[(tenant, i)] for i in ids]
        found = [c for c in found if c.created.seq <= as_of and since <= c.filed_at <= until]
        return sorted(found, key=lambda c: (c.filed_at, c.created.seq))

    def claims_by_claimant(
        self, tenant: str, claimant: str, *, since: datetime, until: datetime, as_of: int
    ) -> Sequence[ClaimRecord]:
        with self._lock:
            ids = self._by_claimant.get((tenant, claimant), set())
            return self._window(tenant, ids, since, until, as_of)

    def claims_by_asset(
        self, tenant: str, asset: str, *, since: datetime, until: datetime, as_of: int
    ) -> Sequence[ClaimRecord]:
        with self._lock:
            ids = self._by_asset.get((tenant, asset), set())
            return self._window(tenant, ids, since, until, as_of)

    def claimant_amounts(
        self, tenant: str, claimant: str, currency: str, *, exclude: str, as_of: int
    ) -> Sequence[int]:
        with self._lock:
            ids = self._by_claimant.get((tenant, claimant), set())
            found = [self._claims[(tenant, i)] for i in ids if i != exclude]
            found = [
                c
                for c in found
                if c.currency == currency and c.amount_cents is not None and c.created.seq <= as_of
            ]
            found.sort(key=lambda c: -c.created.seq)
            return [c.amount_cents for c in found[:MAX_SAMPLE] if c.amount_cents is not None]

    def tenant_amounts(
        self, tenant: str, currency: str, *, exclude: str, as_of: int, limit: int = MAX_SAMPLE
    ) -> Sequence[int]:
        with self._lock:
            index = self._by_currency.get((tenant, currency), [])
            end = bisect.bisect_right(index, (as_of, "\U0010ffff"))
            out: list[int] = []
            for i in range(end - 1, -1, -1):
                if len(out) >= limit:
                    break
                cid = index[i][1]
                amount = self._claims[(tenant, cid)].amount_cents
                if cid != exclude and amount is not None:
                    out.append(amount)
            return out

    def documents_of(self, tenant: str, claim_id: str, *, as_of: int) -> Sequence[DocumentRecord]:
        with self._lock:
            return [d for d in self._docs_of.get((tenant, claim_id), []) if d.ref.seq <= as_of]

    def documents_citing(
        self, tenant: str, sha256: str, *, exclude: str, as_of: int, limit: int = 20
    ) -> Sequence[DocumentRecord]:
        with self._lock:
            docs = self._docs_by_hash.get((tenant, sha256), [])
            return [d for d in docs if d.claim_id != exclude and d.ref.seq <= as_of][:limit]

    def last_custody(
        self, tenant: str, asset: str, *, at: datetime, as_of: int
    ) -> CustodyRecord | None:
        with self._lock:
            rows = [
                c
                for c in self._custody.get((tenant, asset), [])
                if c.at <= at and c.ref.seq <= as_of
            ]
            return max(rows, key=lambda c: (c.at, c.ref.seq), default=None)

    def asset_status(
        self, tenant: str, asset: str, *, at: datetime, as_of: int
    ) -> StatusRecord | None:
        with self._lock:
            rows = [
                s
                for s in self._status.get((tenant, asset), [])
                if s.at <= at and s.ref.seq <= as_of
            ]
            return max(rows, key=lambda s: (s.at, s.ref.seq), default=None)


def _seq(d: DocumentRecord) -> int:
    return d.ref.seq


class MemoryRiskResults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scores: dict[tuple[str, int], ScoreRecord] = {}
        self._reviews: dict[tuple[str, int], ReviewRecord] = {}
        self._by_event: dict[Key, ScoreRecord] = {}
        self._latest_score: dict[Key, ScoreRecord] = {}
        self._latest_review: dict[Key, ReviewRecord] = {}

    def save_score(self, record: ScoreRecord) -> None:
        t, key = record.tenant, (record.tenant, record.claim_id)
        with self._lock:
            if (t, record.ref.seq) in self._scores:
                return
            self._scores[(t, record.ref.seq)] = record
            first = self._by_event.get((t, record.scored_event_id))
            if first is None or record.ref.seq < first.ref.seq:
                self._by_event[(t, record.scored_event_id)] = record
            cur = self._latest_score.get(key)
            if cur is None or record.ref.seq > cur.ref.seq:
                self._latest_score[key] = record

    def save_review(self, record: ReviewRecord) -> None:
        t, key = record.tenant, (record.tenant, record.claim_id)
        with self._lock:
            if (t, record.ref.seq) in self._reviews:
                return
            self._reviews[(t, record.ref.seq)] = record
            cur = self._latest_review.get(key)
            if cur is None or record.ref.seq > cur.ref.seq:
                self._latest_review[key] = record

    def score_for_event(self, tenant: str, scored_event_id: str) -> ScoreRecord | None:
        with self._lock:
            return self._by_event.get((tenant, scored_event_id))

    def _risk(self, key: Key) -> ClaimRisk | None:
        score = self._latest_score.get(key)
        if score is None:
            return None
        review = self._latest_review.get(key)
        return ClaimRisk(score=score, state=derive_state(score, review), review=review)

    def claim_risk(self, tenant: str, claim_id: str) -> ClaimRisk | None:
        with self._lock:
            return self._risk((tenant, claim_id))

    def queue(self, tenant: str, *, limit: int = 50) -> Sequence[ClaimRisk]:
        with self._lock:
            risks = [self._risk(k) for k in self._latest_score if k[0] == tenant]
            queued = [r for r in risks if r is not None and r.state in QUEUED]
            queued.sort(key=lambda r: (-r.score.score, r.score.claim_id))
            return queued[:limit]
