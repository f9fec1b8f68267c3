"""The five deterministic, explainable risk features.

`gather` asks the `RiskFacts` port the few narrow questions a claim needs and returns them as a
`ClaimContext` value; every feature is then a pure function of that context and the
`FeatureConfig`. A feature has a weight (its maximum contribution in score points), a value in
[0, 1], a contribution (weight x value), a human-readable reason, the evidence it rests on
(ledger entries) and `facts`: the numbers and flags it saw, which carry no identities and are
all an `Assessor` is ever shown.

    duplicate_document     the same document hash on another claim of another claimant / asset
    velocity               several claims of the claimant or on the asset within a window
    amount_outlier         robust z-score (median/MAD of log10 amounts) against the tenant's
                           claims, tempered or sharpened by the claimant's own history
    timing                 incident after filing or in the future, incident before or just after
                           policy_start, occurred_at far from recorded_at
    custody_contradiction  the asset was in a locker / with another custodian at incident_at,
                           or SOLD / ARCHIVED
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from proveniq.followers.risk.facts import (
    ClaimRecord,
    CustodyRecord,
    DocumentRecord,
    EventFacts,
    EvidenceRef,
    RiskFacts,
    StatusRecord,
)
from proveniq.ledger.evidence import CLOSED_STATUSES

MAX_EVIDENCE = 10
FactValue = float | int | str | bool


@dataclass(frozen=True, kw_only=True)
class FeatureConfig:
    """Weights are the points a feature adds at full strength; windows are half-widths
    around the claim's filing time."""

    weights: Mapping[str, float] = field(
        default_factory=lambda: {
            "duplicate_document": 60.0,
            "velocity": 50.0,
            "amount_outlier": 50.0,
            "timing": 50.0,
            "custody_contradiction": 60.0,
        }
    )
    claimant_window: timedelta = timedelta(days=15)
    asset_window: timedelta = timedelta(days=45)
    min_tenant_sample: int = 30
    min_claimant_history: int = 1
    outlier_z_start: float = 2.0  # robust z where the outlier value starts rising
    outlier_z_full: float = 4.5  # ... and where it reaches 1
    own_history_ratio: float = 3.0  # within this factor of the claimant's median: tempered
    own_jump_ratio: float = 10.0  # this many times the claimant's median: suspicious by itself
    policy_start_full: timedelta = timedelta(days=2)
    policy_start_partial: timedelta = timedelta(days=14)
    max_clock_skew: timedelta | None = timedelta(days=2)  # None: backfills are expected
    tolerance: timedelta = timedelta(minutes=5)

    def fingerprint(self) -> str:
        """SHA-256 (first 16 hex) of the configuration: part of the model ids of a score."""
        d = asdict(self)
        text = json.dumps(d, sort_keys=True, default=lambda v: v.total_seconds())
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True, kw_only=True)
class Feature:
    name: str
    weight: float
    value: float
    reason: str
    evidence: tuple[EvidenceRef, ...] = ()
    facts: Mapping[str, FactValue] = field(default_factory=dict)

    @property
    def contribution(self) -> float:
        return round(self.weight * self.value, 2)

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "weight": self.weight,
            "value": round(self.value, 4),
            "contribution": self.contribution,
            "reason": self.reason,
            "evidence": [e.as_json() for e in self.evidence[:MAX_EVIDENCE]],
            "facts": dict(self.facts),
        }


@dataclass(frozen=True, kw_only=True)
class Citation:
    mine: DocumentRecord
    other: DocumentRecord
    other_claim: ClaimRecord


@dataclass(frozen=True, kw_only=True)
class ClaimContext:
    """Everything the features read about one claim, as of one ledger seq."""

    claim: ClaimRecord
    scored: EvidenceRef
    now: datetime  # recorded_at of the scored event
    scored_occurred_at: datetime | None
    documents: Sequence[DocumentRecord] = ()
    citations: Sequence[Citation] = ()
    claimant_claims: Sequence[ClaimRecord] = ()  # others, in the claimant window
    asset_claims: Sequence[ClaimRecord] = ()  # others, in the asset window
    tenant_amounts: Sequence[int] = ()
    claimant_amounts: Sequence[int] = ()
    custody: CustodyRecord | None = None
    status: StatusRecord | None = None


def gather(
    facts: RiskFacts, *, claim: ClaimRecord, scored: EventFacts, config: FeatureConfig
) -> ClaimContext:
    """Read what the features need from the index, as of the scored event's seq."""
    t, as_of, cid = claim.tenant, scored.ref.seq, claim.claim_id
    documents = list(facts.documents_of(t, cid, as_of=as_of))
    citations = []
    for doc in documents:
        for other in facts.documents_citing(t, doc.sha256, exclude=cid, as_of=as_of):
            other_claim = facts.claim(t, other.claim_id)
            if other_claim is not None:
                citations.append(Citation(mine=doc, other=other, other_claim=other_claim))
    claimant_claims: list[ClaimRecord] = []
    claimant_amounts: Sequence[int] = ()
    if claim.claimant is not None:
        w = config.claimant_window
        claimant_claims = [
            c
            for c in facts.claims_by_claimant(
                t, claim.claimant, since=claim.filed_at - w, until=claim.filed_at + w, as_of=as_of
            )
            if c.claim_id != cid
        ]
        if claim.currency is not None:
            claimant_amounts = facts.claimant_amounts(
                t, claim.claimant, claim.currency, exclude=cid, as_of=as_of
            )
    asset_claims: list[ClaimRecord] = []
    custody = status = None
    if claim.asset is not None:
        w = config.asset_window
        asset_claims = [
            c
            for c in facts.claims_by_asset(
                t, claim.asset, since=claim.filed_at - w, until=claim.filed_at + w, as_of=as_of
            )
            if c.claim_id != cid
        ]
        at = claim.incident_at or claim.filed_at
        custody = facts.last_custody(t, claim.asset, at=at, as_of=as_of)
        status = facts.asset_status(t, claim.asset, at=at, as_of=as_of)
    tenant_amounts: Sequence[int] = ()
    if claim.currency is not None:
        tenant_amounts = facts.tenant_amounts(t, claim.currency, exclude=cid, as_of=as_of)
    return ClaimContext(
        claim=claim,
        scored=scored.ref,
        now=scored.recorded_at,
        scored_occurred_at=scored.occurred_at,
        documents=documents,
        citations=citations,
        claimant_claims=claimant_claims,
        asset_claims=asset_claims,
        tenant_amounts=tenant_amounts,
        claimant_amounts=claimant_amounts,
        custody=custody,
        status=status,
    )


def _none(name: str, cfg: FeatureConfig, reason: str) -> Feature:
    return Feature(name=name, weight=cfg.weights[name], value=0.0, reason=reason)


def duplicate_document(ctx: ClaimContext, cfg: FeatureConfig) -> Feature:
    name, claim = "duplicate_document", ctx.claim
    best, hits = 0.0, []
    for c in ctx.citations:
        other_claimant = c.other_claim.claimant != claim.claimant
        other_asset = c.other_claim.asset != claim.asset
        v = 1.0 if other_claimant else 0.8 if other_asset else 0.0
        if v > 0:
            hits.append((c, other_claimant))
            best = max(best, v)
    if not hits:
        return _none(name, cfg, "no document of this claim is attached to another claim")
    c0, by_other = hits[0]
    whose = "another claimant" if by_other else "the same claimant on another asset"
    others = sorted({c.other_claim.claim_id for c, _ in hits})
    reason = (
        f"document sha256 {c0.mine.sha256[:12]}... is also attached to {len(others)} other "
        f"claim(s) ({', '.join(others[:3])}), of {whose}"
    )
    evidence = [c0.mine.ref] + [c.other.ref for c, _ in hits]
    return Feature(
        name=name,
        weight=cfg.weights[name],
        value=best,
        reason=reason,
        evidence=tuple(evidence[:MAX_EVIDENCE]),
        facts={
            "other_claims": len(others),
            "different_claimant": any(o for _, o in hits),
            "different_asset": any(c.other_claim.asset != claim.asset for c, _ in hits),
        },
    )


def velocity(ctx: ClaimContext, cfg: FeatureConfig) -> Feature:
    name = "velocity"
    n_claimant, n_asset = len(ctx.claimant_claims), len(ctx.asset_claims)
    v_claimant = 0.0 if n_claimant == 0 else 0.3 if n_claimant == 1 else 1.0
    v_asset = 0.0 if n_asset == 0 else 0.6 if n_asset == 1 else 1.0
    value = max(v_claimant, v_asset)
    if value == 0:
        return _none(name, cfg, "no other claim of the claimant or on the asset nearby")
    parts = []
    if n_claimant:
        days = cfg.claimant_window.days
        parts.append(f"{n_claimant} other claim(s) of the same claimant within {days} days")
    if n_asset:
        parts.append(
            f"{n_asset} other claim(s) on the same asset within {cfg.asset_window.days} days"
        )
    refs = [ctx.claim.created] + [c.created for c in [*ctx.claimant_claims, *ctx.asset_claims]]
    unique = list({r.seq: r for r in refs}.values())
    return Feature(
        name=name,
        weight=cfg.weights[name],
        value=value,
        reason="; ".join(parts),
        evidence=tuple(unique[:MAX_EVIDENCE]),
        facts={
            "claimant_claims_in_window": n_claimant,
            "asset_claims_in_window": n_asset,
            "claimant_window_days": cfg.claimant_window.days,
            "asset_window_days": cfg.asset_window.days,
        },
    )


def robust_z(x: float, sample: Sequence[float], *, floor: float = 0.05) -> float:
    """(x - median) / (1.4826 * MAD), the MAD floored so a flat sample does not explode."""
    med = statistics.median(sample)
    mad = statistics.median(abs(s - med) for s in sample)
    return (x - med) / max(1.4826 * mad, floor)


def _log(amount: int) -> float:
    return math.log10(amount + 1)


def amount_outlier(ctx: ClaimContext, cfg: FeatureConfig) -> Feature:
    name, claim = "amount_outlier", ctx.claim
    if claim.amount_cents is None or len(ctx.tenant_amounts) < cfg.min_tenant_sample:
        return _none(name, cfg, "not enough claim history in this currency to compare")
    x = _log(claim.amount_cents)
    z = robust_z(x, [_log(a) for a in ctx.tenant_amounts])
    span = cfg.outlier_z_full - cfg.outlier_z_start
    value = min(1.0, max(0.0, (z - cfg.outlier_z_start) / span))
    facts: dict[str, FactValue] = {
        "tenant_robust_z": round(z, 2),
        "tenant_sample": len(ctx.tenant_amounts),
    }
    reasons = [f"amount is {z:.1f} robust SDs from the tenant's median claim"]
    own = ctx.claimant_amounts
    if len(own) >= cfg.min_claimant_history:
        ratio = claim.amount_cents / max(statistics.median(own), 1)
        facts["claimant_history"] = len(own)
        facts["ratio_to_claimant_median"] = round(ratio, 2)
        if ratio <= cfg.own_history_ratio and value > 0:
            value *= 0.2
            reasons.append(f"but in line with the claimant's own {len(own)} claims ({ratio:.1f}x)")
        elif ratio >= cfg.own_jump_ratio:
            value = max(value, 0.6)
            reasons.append(f"and {ratio:.0f}x the claimant's own median claim")
    if value == 0:
        return Feature(
            name=name,
            weight=cfg.weights[name],
            value=0.0,
            reason="amount within the tenant's usual range",
            facts=facts,
        )
    return Feature(
        name=name,
        weight=cfg.weights[name],
        value=value,
        reason=" ".join(reasons),
        evidence=(ctx.claim.created,),
        facts=facts,
    )


def timing(ctx: ClaimContext, cfg: FeatureConfig) -> Feature:
    name, claim, tol = "timing", ctx.claim, cfg.tolerance
    signals: list[tuple[float, str, str]] = []  # (value, flag, reason)
    inc = claim.incident_at
    if inc is not None and inc > claim.filed_at + tol:
        signals.append((1.0, "incident_after_filing", "incident_at is after the claim was filed"))
    if inc is not None and inc > ctx.now + tol:
        signals.append((1.0, "future_incident", "incident_at is in the future"))
    for occurred in (claim.created_occurred_at, ctx.scored_occurred_at):
        if occurred is not None and occurred > ctx.now + tol:
            signals.append((1.0, "future_occurred_at", "occurred_at is in the future"))
            break
    if inc is not None and claim.policy_start is not None:
        after = inc - claim.policy_start
        if after < timedelta(0):
            signals.append((1.0, "incident_before_policy", "incident_at is before policy_start"))
        elif after < cfg.policy_start_full:
            signals.append(
                (1.0, "soon_after_policy_start", f"incident {after.days} day(s) after policy_start")
            )
        elif after < cfg.policy_start_partial:
            signals.append(
                (0.5, "soon_after_policy_start", f"incident {after.days} days after policy_start")
            )
    skew = None
    if cfg.max_clock_skew is not None and claim.created_occurred_at is not None:
        skew = abs(claim.created_recorded_at - claim.created_occurred_at)
        if skew > cfg.max_clock_skew:
            signals.append(
                (0.5, "clock_skew", f"filed occurred_at is {skew.days} days from recorded_at")
            )
    if not signals:
        return _none(name, cfg, "incident, policy and filing dates are consistent")
    signals.sort(key=lambda s: -s[0])
    flags: dict[str, FactValue] = {flag: True for _, flag, _ in signals}
    if inc is not None and claim.policy_start is not None:
        flags["days_after_policy_start"] = round(
            (inc - claim.policy_start).total_seconds() / 86400, 1
        )
    if skew is not None:
        flags["clock_skew_days"] = round(skew.total_seconds() / 86400, 1)
    evidence = list({r.seq: r for r in (claim.created, ctx.scored)}.values())
    return Feature(
        name=name,
        weight=cfg.weights[name],
        value=signals[0][0],
        reason="; ".join(dict.fromkeys(r for _, _, r in signals)),
        evidence=tuple(evidence),
        facts=flags,
    )


def custody_contradiction(ctx: ClaimContext, cfg: FeatureConfig) -> Feature:
    name, claim = "custody_contradiction", ctx.claim
    signals: list[tuple[float, str, str, EvidenceRef]] = []
    if ctx.status is not None and ctx.status.status in CLOSED_STATUSES:
        signals.append(
            (
                1.0,
                "asset_status",
                f"the asset is {ctx.status.status} at incident_at",
                ctx.status.ref,
            )
        )
    c = ctx.custody
    if c is not None and c.placement == "locker":
        signals.append((1.0, "in_locker", "the asset was in a locker at incident_at", c.ref))
    elif c is not None and claim.claimant is not None and c.holder != claim.claimant:
        signals.append(
            (0.8, "other_custodian", "the asset was with another custodian at incident_at", c.ref)
        )
    if not signals:
        return _none(name, cfg, "custody and lifecycle are consistent with the claim")
    signals.sort(key=lambda s: -s[0])
    facts: dict[str, FactValue] = {flag: True for _, flag, _, _ in signals}
    if ctx.status is not None:
        facts["asset_status"] = ctx.status.status
    return Feature(
        name=name,
        weight=cfg.weights[name],
        value=signals[0][0],
        reason="; ".join(r for _, _, r, _ in signals),
        evidence=(claim.created, *(ref for _, _, _, ref in signals)),
        facts=facts,
    )


FEATURES = (duplicate_document, velocity, amount_outlier, timing, custody_contradiction)


def compute(ctx: ClaimContext, cfg: FeatureConfig) -> list[Feature]:
    return [f(ctx, cfg) for f in FEATURES]
