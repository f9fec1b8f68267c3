"""The risk ports over PostgreSQL (tables of migration 0004); every statement is tenant-scoped.

`PostgresRiskFacts.record` folds one event in one transaction: the seq goes into `risk_folded`
first (ON CONFLICT DO NOTHING), so a redelivered event changes nothing. A claim's row is
folded under a transaction-scoped advisory lock on (tenant, claim id) with the same
`fold_claim` rule as the in-memory twin. `PostgresRiskResults` keeps `risk_review_state` (one
row per claim) current under the same kind of lock so the review queue is one indexed query.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from proveniq.adapters.postgres.pool import Pool
from proveniq.followers.risk.facts import (
    MAX_SAMPLE,
    ClaimRecord,
    CustodyRecord,
    DocumentRecord,
    EventFacts,
    EvidenceRef,
    StatusRecord,
    contribution,
    fold_claim,
)
from proveniq.followers.risk.results import (
    ClaimRisk,
    ReviewRecord,
    ScoreRecord,
    derive_state,
)
from proveniq.ledger.evidence import ClaimEvidence
from proveniq.log.entry import Entry

_CLAIM_COLS = (
    "claim_id, claimant, asset, amount_cents, currency, incident_at, policy_id, policy_start, "
    "filed_at, created_event_id, created_seq, created_leaf_hash, created_type, "
    "created_occurred_at, created_recorded_at, latest_seq, tenant"
)
_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"


def _ref(event_id: str, seq: int, leaf_hash: bytes, type_: str) -> EvidenceRef:
    return EvidenceRef(
        event_id=event_id, seq=int(seq), leaf_hash=bytes(leaf_hash).hex(), type=type_
    )


def _claim(row: Sequence[Any]) -> ClaimRecord:
    return ClaimRecord(
        tenant=row[16],
        claim_id=row[0],
        claimant=row[1],
        asset=row[2],
        amount_cents=None if row[3] is None else int(row[3]),
        currency=row[4],
        incident_at=row[5],
        policy_id=row[6],
        policy_start=row[7],
        filed_at=row[8],
        created=_ref(row[9], row[10], row[11], row[12]),
        created_occurred_at=row[13],
        created_recorded_at=row[14],
        last_seq=int(row[15]),
    )


_DOC_COLS = "claim_id, sha256, kind, taken_at, at, event_id, seq, leaf_hash, type, tenant"


def _document(row: Sequence[Any]) -> DocumentRecord:
    return DocumentRecord(
        tenant=row[9],
        claim_id=row[0],
        sha256=row[1],
        kind=row[2],
        taken_at=row[3],
        at=row[4],
        ref=_ref(row[5], row[6], row[7], row[8]),
    )


class PostgresRiskFacts:
    def __init__(self, *, pool: Pool) -> None:
        self._pool = pool

    def record(self, entry: Entry, payload: Mapping[str, Any] | None) -> bool:
        c = contribution(entry, payload)  # validates before anything is written
        t, leaf = entry.tenant, entry.leaf_hash()
        with self._pool.transaction() as cur:
            cur.execute(
                "INSERT INTO risk_folded (tenant, seq) VALUES (%s, %s) "
                "ON CONFLICT DO NOTHING RETURNING seq",
                (t, entry.seq),
            )
            if cur.fetchone() is None:
                return False
            if isinstance(c, ClaimEvidence):
                self._fold_claim(cur, entry, c)
            elif isinstance(c, DocumentRecord):
                cur.execute(
                    "INSERT INTO risk_documents (tenant, seq, claim_id, sha256, kind, taken_at, "
                    "at, occurred_at, recorded_at, event_id, leaf_hash, type) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    (t, entry.seq, c.claim_id, c.sha256, c.kind, c.taken_at, c.at,
                     entry.occurred_at, entry.recorded_at, entry.id, leaf, entry.type),
                )  # fmt: skip
            elif isinstance(c, CustodyRecord):
                cur.execute(
                    "INSERT INTO risk_custody (tenant, seq, asset, placement, holder, at, "
                    "event_id, leaf_hash, type) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    (t, entry.seq, c.asset, c.placement, c.holder, c.at, entry.id, leaf,
                     entry.type),
                )  # fmt: skip
            elif isinstance(c, StatusRecord):
                cur.execute(
                    "INSERT INTO risk_asset_status (tenant, seq, asset, status, at, event_id, "
                    "leaf_hash, type) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    (t, entry.seq, c.asset, c.status, c.at, entry.id, leaf, entry.type),
                )
            return True

    def _fold_claim(self, cur: Any, entry: Entry, fields: ClaimEvidence) -> None:
        t, cid = entry.tenant, entry.subject
        cur.execute(_LOCK, (f"risk-claim\x1f{t}\x1f{cid}",))
        cur.execute(
            f"SELECT {_CLAIM_COLS} FROM risk_claims WHERE tenant = %s AND claim_id = %s",  # noqa: S608 (column lists are constants)
            (t, cid),
        )
        row = cur.fetchone()
        old = None if row is None else _claim(row)
        new = fold_claim(old, entry, fields)
        values = (
            new.claimant,
            new.asset,
            new.amount_cents,
            new.currency,
            new.incident_at,
            new.policy_id,
            new.policy_start,
            new.filed_at,
            new.created.event_id,
            new.created.seq,
            bytes.fromhex(new.created.leaf_hash),
            new.created.type,
            new.created_occurred_at,
            new.created_recorded_at,
        )
        if old is None:
            cur.execute(
                "INSERT INTO risk_claims (claimant, asset, amount_cents, currency, incident_at, "
                "policy_id, policy_start, filed_at, created_event_id, created_seq, "
                "created_leaf_hash, created_type, created_occurred_at, created_recorded_at, "
                "tenant, claim_id, latest_event_id, latest_seq, latest_leaf_hash, latest_type, "
                "latest_occurred_at, latest_recorded_at) VALUES "
                "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
                "%s, %s, %s, %s, %s, %s)",
                (*values, t, cid, entry.id, entry.seq, entry.leaf_hash(), entry.type,
                 entry.occurred_at, entry.recorded_at),
            )  # fmt: skip
            return
        cur.execute(
            "UPDATE risk_claims SET claimant = %s, asset = %s, amount_cents = %s, currency = %s, "
            "incident_at = %s, policy_id = %s, policy_start = %s, filed_at = %s, "
            "created_event_id = %s, created_seq = %s, created_leaf_hash = %s, created_type = %s, "
            "created_occurred_at = %s, created_recorded_at = %s "
            "WHERE tenant = %s AND claim_id = %s",
            (*values, t, cid),
        )
        if entry.seq > old.last_seq:
            cur.execute(
                "UPDATE risk_claims SET latest_event_id = %s, latest_seq = %s, "
                "latest_leaf_hash = %s, latest_type = %s, latest_occurred_at = %s, "
                "latest_recorded_at = %s WHERE tenant = %s AND claim_id = %s",
                (entry.id, entry.seq, entry.leaf_hash(), entry.type, entry.occurred_at,
                 entry.recorded_at, t, cid),
            )  # fmt: skip

    def _query(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        with self._pool.transaction() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall())

    def claim(self, tenant: str, claim_id: str) -> ClaimRecord | None:
        rows = self._query(
            f"SELECT {_CLAIM_COLS} FROM risk_claims WHERE tenant = %s AND claim_id = %s",  # noqa: S608 (column lists are constants)
            (tenant, claim_id),
        )
        return _claim(rows[0]) if rows else None

    def latest_event(self, tenant: str, claim_id: str) -> EventFacts | None:
        rows = self._query(
            "SELECT latest_event_id, latest_seq, latest_leaf_hash, latest_type, "
            "latest_occurred_at, latest_recorded_at FROM risk_claims "
            "WHERE tenant = %s AND claim_id = %s "
            "UNION ALL (SELECT event_id, seq, leaf_hash, type, occurred_at, recorded_at "
            "FROM risk_documents WHERE tenant = %s AND claim_id = %s ORDER BY seq DESC LIMIT 1) "
            "ORDER BY 2 DESC LIMIT 1",
            (tenant, claim_id, tenant, claim_id),
        )
        if not rows:
            return None
        r = rows[0]
        return EventFacts(ref=_ref(r[0], r[1], r[2], r[3]), occurred_at=r[4], recorded_at=r[5])

    def _window(
        self, column: str, tenant: str, value: str, since: datetime, until: datetime, as_of: int
    ) -> list[ClaimRecord]:
        assert column in ("claimant", "asset")
        rows = self._query(
            f"SELECT {_CLAIM_COLS} FROM risk_claims WHERE tenant = %s AND {column} = %s "  # noqa: S608 (column lists are constants)
            "AND filed_at BETWEEN %s AND %s AND created_seq <= %s ORDER BY filed_at, created_seq",
            (tenant, value, since, until, as_of),
        )
        return [_claim(r) for r in rows]

    def claims_by_claimant(
        self, tenant: str, claimant: str, *, since: datetime, until: datetime, as_of: int
    ) -> Sequence[ClaimRecord]:
        return self._window("claimant", tenant, claimant, since, until, as_of)

    def claims_by_asset(
        self, tenant: str, asset: str, *, since: datetime, until: datetime, as_of: int
    ) -> Sequence[ClaimRecord]:
        return self._window("asset", tenant, asset, since, until, as_of)

    def claimant_amounts(
        self, tenant: str, claimant: str, currency: str, *, exclude: str, as_of: int
    ) -> Sequence[int]:
        rows = self._query(
            "SELECT amount_cents FROM risk_claims WHERE tenant = %s AND claimant = %s "
            "AND currency = %s AND claim_id <> %s AND created_seq <= %s "
            "AND amount_cents IS NOT NULL ORDER BY created_seq DESC LIMIT %s",
            (tenant, claimant, currency, exclude, as_of, MAX_SAMPLE),
        )
        return [int(r[0]) for r in rows]

    def tenant_amounts(
        self, tenant: str, currency: str, *, exclude: str, as_of: int, limit: int = MAX_SAMPLE
    ) -> Sequence[int]:
        rows = self._query(
            "SELECT amount_cents FROM risk_claims WHERE tenant = %s AND currency = %s "
            "AND claim_id <> %s AND created_seq <= %s AND amount_cents IS NOT NULL "
            "ORDER BY created_seq DESC LIMIT %s",
            (tenant, currency, exclude, as_of, limit),
        )
        return [int(r[0]) for r in rows]

    def documents_of(self, tenant: str, claim_id: str, *, as_of: int) -> Sequence[DocumentRecord]:
        rows = self._query(
            f"SELECT {_DOC_COLS} FROM risk_documents WHERE tenant = %s AND claim_id = %s "  # noqa: S608 (column lists are constants)
            "AND seq <= %s ORDER BY seq",
            (tenant, claim_id, as_of),
        )
        return [_document(r) for r in rows]

    def documents_citing(
        self, tenant: str, sha256: str, *, exclude: str, as_of: int, limit: int = 20
    ) -> Sequence[DocumentRecord]:
        rows = self._query(
            f"SELECT {_DOC_COLS} FROM risk_documents WHERE tenant = %s AND sha256 = %s "  # noqa: S608 (column lists are constants)
            "AND claim_id <> %s AND seq <= %s ORDER BY seq LIMIT %s",
            (tenant, sha256, exclude, as_of, limit),
        )
        return [_document(r) for r in rows]

    def last_custody(
        self, tenant: str, asset: str, *, at: datetime, as_of: int
    ) -> CustodyRecord | None:
        rows = self._query(
            "SELECT asset, placement, holder, at, event_id, seq, leaf_hash, type FROM risk_custody "
            "WHERE tenant = %s AND asset = %s AND at <= %s AND seq <= %s "
            "ORDER BY at DESC, seq DESC LIMIT 1",
            (tenant, asset, at, as_of),
        )
        if not rows:
            return None
        r = rows[0]
        return CustodyRecord(
            tenant=tenant,
            asset=r[0],
            placement=r[1],
            holder=r[2],
            at=r[3],
            ref=_ref(r[4], r[5], r[6], r[7]),
        )

    def asset_status(
        self, tenant: str, asset: str, *, at: datetime, as_of: int
    ) -> StatusRecord | None:
        rows = self._query(
            "SELECT asset, status, at, event_id, seq, leaf_hash, type FROM risk_asset_status "
            "WHERE tenant = %s AND asset = %s AND at <= %s AND seq <= %s "
            "ORDER BY at DESC, seq DESC LIMIT 1",
            (tenant, asset, at, as_of),
        )
        if not rows:
            return None
        r = rows[0]
        return StatusRecord(
            tenant=tenant, asset=r[0], status=r[1], at=r[2], ref=_ref(r[3], r[4], r[5], r[6])
        )


_SCORE_COLS = (
    "s.claim_id, s.event_id, s.seq, s.leaf_hash, s.scored_event_id, s.score, s.level, "
    "s.review_required, s.recorded_at, s.result, s.tenant"
)
_REVIEW_COLS = (
    "r.claim_id, r.event_id, r.seq, r.leaf_hash, r.decision, r.reviewer, r.note, r.score_seq, "
    "r.recorded_at, r.tenant"
)


def _score(row: Sequence[Any]) -> ScoreRecord:
    result = row[9] if not isinstance(row[9], str) else json.loads(row[9])
    return ScoreRecord(
        tenant=row[10],
        claim_id=row[0],
        ref=_ref(row[1], row[2], row[3], "risk.scored"),
        scored_event_id=row[4],
        score=int(row[5]),
        level=row[6],
        review_required=bool(row[7]),
        recorded_at=row[8],
        result=result,
    )


def _review(row: Sequence[Any]) -> ReviewRecord:
    return ReviewRecord(
        tenant=row[9],
        claim_id=row[0],
        ref=_ref(row[1], row[2], row[3], "risk.reviewed"),
        decision=row[4],
        reviewer=row[5],
        note=row[6],
        score_seq=int(row[7]),
        recorded_at=row[8],
    )


class PostgresRiskResults:
    def __init__(self, *, pool: Pool) -> None:
        self._pool = pool

    def save_score(self, record: ScoreRecord) -> None:
        with self._pool.transaction() as cur:
            cur.execute(
                "INSERT INTO risk_scores (tenant, seq, claim_id, event_id, leaf_hash, "
                "scored_event_id, score, level, review_required, recorded_at, result) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb) "
                "ON CONFLICT DO NOTHING RETURNING seq",
                (record.tenant, record.ref.seq, record.claim_id, record.ref.event_id,
                 bytes.fromhex(record.ref.leaf_hash), record.scored_event_id, record.score,
                 record.level, record.review_required, record.recorded_at,
                 json.dumps(record.result, sort_keys=True)),
            )  # fmt: skip
            if cur.fetchone() is not None:
                self._refresh(cur, record.tenant, record.claim_id)

    def save_review(self, record: ReviewRecord) -> None:
        with self._pool.transaction() as cur:
            cur.execute(
                "INSERT INTO risk_reviews (tenant, seq, claim_id, event_id, leaf_hash, decision, "
                "reviewer, note, score_seq, recorded_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT DO NOTHING RETURNING seq",
                (record.tenant, record.ref.seq, record.claim_id, record.ref.event_id,
                 bytes.fromhex(record.ref.leaf_hash), record.decision, record.reviewer,
                 record.note, record.score_seq, record.recorded_at),
            )  # fmt: skip
            if cur.fetchone() is not None:
                self._refresh(cur, record.tenant, record.claim_id)

    def _refresh(self, cur: Any, tenant: str, claim_id: str) -> None:
        """Recompute the claim's review state from its latest score and review."""
        cur.execute(_LOCK, (f"risk-result\x1f{tenant}\x1f{claim_id}",))
        risk = self._latest(cur, tenant, claim_id)
        if risk is None:
            return  # a review projected before its score: the score's save sets the state
        cur.execute(
            "INSERT INTO risk_review_state (tenant, claim_id, score_seq, review_seq, score, state) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (tenant, claim_id) DO UPDATE SET "
            "score_seq = EXCLUDED.score_seq, review_seq = EXCLUDED.review_seq, "
            "score = EXCLUDED.score, state = EXCLUDED.state",
            (tenant, claim_id, risk.score.ref.seq, risk.review.ref.seq if risk.review else None,
             risk.score.score, risk.state),
        )  # fmt: skip

    def _latest(self, cur: Any, tenant: str, claim_id: str) -> ClaimRisk | None:
        cur.execute(
            f"SELECT {_SCORE_COLS} FROM risk_scores s WHERE s.tenant = %s AND s.claim_id = %s "  # noqa: S608 (column lists are constants)
            "ORDER BY s.seq DESC LIMIT 1",
            (tenant, claim_id),
        )
        row = cur.fetchone()
        if row is None:
            return None
        cur.execute(
            f"SELECT {_REVIEW_COLS} FROM risk_reviews r WHERE r.tenant = %s AND r.claim_id = %s "  # noqa: S608 (column lists are constants)
            "ORDER BY r.seq DESC LIMIT 1",
            (tenant, claim_id),
        )
        rrow = cur.fetchone()
        score, review = _score(row), None if rrow is None else _review(rrow)
        return ClaimRisk(score=score, state=derive_state(score, review), review=review)

    def score_for_event(self, tenant: str, scored_event_id: str) -> ScoreRecord | None:
        with self._pool.transaction() as cur:
            cur.execute(
                f"SELECT {_SCORE_COLS} FROM risk_scores s "  # noqa: S608 (column lists are constants)
                "WHERE s.tenant = %s AND s.scored_event_id = %s ORDER BY s.seq LIMIT 1",
                (tenant, scored_event_id),
            )
            row = cur.fetchone()
            return None if row is None else _score(row)

    def claim_risk(self, tenant: str, claim_id: str) -> ClaimRisk | None:
        with self._pool.transaction() as cur:
            return self._latest(cur, tenant, claim_id)

    def queue(self, tenant: str, *, limit: int = 50) -> Sequence[ClaimRisk]:
        with self._pool.transaction() as cur:
            cur.execute(
                f"SELECT {_SCORE_COLS}, st.state, {_REVIEW_COLS} FROM risk_review_state st "  # noqa: S608 (column lists are constants)
                "JOIN risk_scores s ON s.tenant = st.tenant AND s.seq = st.score_seq "
                "LEFT JOIN risk_reviews r ON r.tenant = st.tenant AND r.seq = st.review_seq "
                "WHERE st.tenant = %s AND st.state IN ('pending', 'escalated') "
                "ORDER BY st.score DESC, st.claim_id LIMIT %s",
                (tenant, limit),
            )
            out = []
            for row in cur.fetchall():
                review = None if row[12] is None else _review(row[12:])
                out.append(ClaimRisk(score=_score(row[:11]), state=row[11], review=review))
            return out
