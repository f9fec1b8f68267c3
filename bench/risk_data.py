"""A labelled synthetic claim set for the risk bench, and its evaluation.

`generate(seed=..., claims=10_000)` yields write-path events (`BenchEvent`: type, subject,
payload, occurred_at) in time order, with `labels` (claim id -> pattern) on the generator's
`Dataset`. About 1% of claims are fraudulent through each of the five patterns; hard negatives
are legitimately large claims from claimants with a history of large claims, and fleet
claimants with many unrelated assets claiming regularly over time. Deterministic per seed.

The timeline ends at `end` (default 2025-06-01): history is backfilled, so a bench that writes
through the real HTTP path (recorded_at = now) must score with
``FeatureConfig(max_clock_skew=None)``; the in-process run below records each event a minute
after it occurred.

    python bench/risk_data.py [--claims N] [--seed S] [--threshold T]

runs the set through `RiskScorer` with the in-memory facts and prints the evaluation.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import random
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "shared"))

PATTERNS = ("duplicate_document", "velocity", "amount_outlier", "timing", "custody_contradiction")
HARD_NEGATIVES = ("hard_negative_large", "hard_negative_fleet")
LEGIT = "legit"
END = datetime(2025, 6, 1, tzinfo=UTC)
DAYS = 730
MEDIAN_CENTS = 250_000
SIGMA = 0.6  # natural log


@dataclass(frozen=True)
class BenchEvent:
    type: str
    subject: str
    payload: Mapping[str, Any]
    occurred_at: datetime


@dataclass
class Dataset:
    events: list[BenchEvent] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)  # claim id -> pattern / legit / hard_*


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class _Builder:
    def __init__(self, seed: int, end: datetime) -> None:
        self.r = random.Random(seed)
        self.end = end
        self.start = end - timedelta(days=DAYS)
        self.out: list[tuple[datetime, int, BenchEvent]] = []
        self.labels: dict[str, str] = {}
        self.n_claims = 0
        self.n_events = 0
        self.assets: dict[str, str] = {}  # asset -> owner
        self.docs: list[tuple[str, datetime]] = []  # (sha256, uploaded at) of legit claims

    def emit(self, type: str, subject: str, payload: Mapping[str, Any], at: datetime) -> None:
        self.n_events += 1
        self.out.append((at, self.n_events, BenchEvent(type, subject, payload, at)))

    def when(self, lo: float = 30, hi: float = DAYS - 1) -> datetime:
        return self.start + timedelta(days=self.r.uniform(lo, hi))

    def amount(self, scale: float = 1.0) -> int:
        return max(100, int(MEDIAN_CENTS * scale * math.exp(self.r.gauss(0, SIGMA))))

    def sha(self) -> str:
        return hashlib.sha256(self.r.randbytes(16)).hexdigest()

    def asset(self, owner: str, *, created: datetime) -> str:
        a = f"ast_{len(self.assets):06d}"
        self.assets[a] = owner
        self.emit("asset.created", a, {"title": "insured item", "owner_ref": "x"}, created)
        if self.r.random() < 0.5:  # delivered to the owner through custody
            self.emit("custody.transferred", a, {"from": "dealer", "to": owner}, created)
        return a

    def claim(
        self,
        *,
        label: str,
        claimant: str,
        asset: str,
        filed: datetime,
        amount: int | None = None,
        incident: datetime | None = None,
        policy_start: datetime | None = None,
        docs: Sequence[str] | None = None,
    ) -> str:
        self.n_claims += 1
        cid = f"clm_{self.n_claims:06d}"
        self.labels[cid] = label
        incident = incident or filed - timedelta(days=self.r.uniform(1, 20))
        policy_start = policy_start or incident - timedelta(days=self.r.uniform(15, 1100))
        payload = {
            "amount_cents": amount if amount is not None else self.amount(),
            "currency": "EUR",
            "claimant": claimant,
            "asset": asset,
            "incident_at": _iso(incident),
            "policy_id": f"pol_{claimant}",
            "policy_start": _iso(policy_start),
            "description": "synthetic claim",
        }
        self.emit("claim.created", cid, payload, filed)
        hashes = (
            list(docs) if docs is not None else [self.sha() for _ in range(self.r.randint(1, 2))]
        )
        for i, h in enumerate(hashes):
            kind = "photo" if i == 0 else "invoice"
            self.emit(
                "document.uploaded",
                cid,
                {"sha256": h, "kind": kind},
                filed + timedelta(hours=1 + i),
            )
            if label == LEGIT:
                self.docs.append((h, filed + timedelta(hours=1 + i)))
        return cid


def generate(*, seed: int = 7, claims: int = 10_000, end: datetime = END) -> Dataset:
    b = _Builder(seed, end)
    fraud_each = max(5, claims // 100)
    n_large, n_fleet = max(10, claims // 250), max(3, claims // 2000)
    legit_target = claims - 5 * fraud_each - n_large * 5 - n_fleet * 20

    # legitimate background: claimants with one or two assets, one to three claims over time
    c = 0
    while b.n_claims < legit_target:
        c += 1
        claimant = f"cl_{c:06d}"
        owned = [b.asset(claimant, created=b.start) for _ in range(b.r.choice((1, 1, 2)))]
        for _ in range(b.r.choice((1, 1, 1, 2, 3))):
            b.claim(label=LEGIT, claimant=claimant, asset=b.r.choice(owned), filed=b.when())

    # hard negatives: large claims from claimants whose history is large; fleets
    for i in range(n_large):
        claimant, t = f"corp_{i:04d}", b.when(30, 200)
        for _ in range(5):
            a = b.asset(claimant, created=b.start)
            b.claim(
                label="hard_negative_large",
                claimant=claimant,
                asset=a,
                filed=t,
                amount=b.amount(30),
            )
            t += timedelta(days=b.r.uniform(60, 100))
    for i in range(n_fleet):
        claimant, t = f"fleet_{i:03d}", b.when(30, 60)
        for _ in range(20):
            a = b.asset(claimant, created=b.start)
            b.claim(label="hard_negative_fleet", claimant=claimant, asset=a, filed=t)
            t += timedelta(days=b.r.uniform(32, 40))

    # fraud, pattern by pattern (claimants of their own, so labels do not overlap)
    for i in range(fraud_each):  # a document hash already used by another claimant's claim
        claimant = f"fd_{i:04d}"
        a = b.asset(claimant, created=b.start)
        h, uploaded = b.r.choice([d for d in b.docs if d[1] < end - timedelta(days=10)])
        filed = min(uploaded + timedelta(days=b.r.uniform(1, 200)), end - timedelta(days=1))
        b.claim(label="duplicate_document", claimant=claimant, asset=a, filed=filed, docs=[h])
    done = 0
    while done < fraud_each:  # bursts of claims on different assets within days
        claimant, t = f"fv_{done:04d}", b.when(30, DAYS - 20)
        for _ in range(min(b.r.randint(4, 6), fraud_each - done)):
            a = b.asset(claimant, created=b.start)
            b.claim(label="velocity", claimant=claimant, asset=a, filed=t)
            t += timedelta(days=b.r.uniform(0.5, 2.5))
            done += 1
    for i in range(fraud_each):  # inflated amounts
        claimant = f"fa_{i:04d}"
        a = b.asset(claimant, created=b.start)
        amount = int(MEDIAN_CENTS * b.r.uniform(25, 80))
        b.claim(label="amount_outlier", claimant=claimant, asset=a, filed=b.when(), amount=amount)
    for i in range(fraud_each):  # incident after filing, or just after the policy started
        claimant = f"ft_{i:04d}"
        a = b.asset(claimant, created=b.start)
        filed = b.when()
        if i % 2 == 0:
            b.claim(label="timing", claimant=claimant, asset=a, filed=filed,
                    incident=filed + timedelta(days=b.r.uniform(1, 5)))  # fmt: skip
        else:
            incident = filed - timedelta(days=b.r.uniform(1, 10))
            b.claim(label="timing", claimant=claimant, asset=a, filed=filed, incident=incident,
                    policy_start=incident - timedelta(hours=b.r.uniform(2, 40)))  # fmt: skip
    for i in range(fraud_each):  # the asset was in a locker, or already sold
        claimant = f"fc_{i:04d}"
        filed = b.when(60)
        incident = filed - timedelta(days=b.r.uniform(1, 10))
        a = b.asset(claimant, created=b.start)
        before = incident - timedelta(days=b.r.uniform(2, 20))
        if i % 2 == 0:
            b.emit("custody.locked", a, {"locker": f"L-{i % 50}"}, before)
        else:
            for step in ("asset.submitted", "asset.verified", "asset.listed", "asset.sold"):
                b.emit(step, a, {}, before)
                before += timedelta(minutes=1)
        b.claim(
            label="custody_contradiction",
            claimant=claimant,
            asset=a,
            filed=filed,
            incident=incident,
        )

    b.out.sort(key=lambda x: (x[0], x[1]))
    return Dataset(events=[e for _, _, e in b.out], labels=b.labels)


def evaluate(
    labels: Mapping[str, str],
    scores: Mapping[str, int],
    threshold: int,
    *,
    top_features: Mapping[str, str] | None = None,
    out: Any = None,
) -> dict[str, dict[str, float]]:
    """Precision / recall / F1 at `threshold`, per pattern and overall; prints a table.

    Per pattern, recall is over that pattern's claims; precision over the flagged claims whose
    top reason is that pattern's feature (needs `top_features`). Hard negatives report the share
    flagged (false-positive rate)."""
    out = out or sys.stdout
    flagged = {c for c, s in scores.items() if s >= threshold}
    fraud = {c for c, p in labels.items() if p in PATTERNS}
    tops = top_features or {}

    def prf(tp: int, fp: int, fn: int) -> dict[str, float]:
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0,
                "tp": tp, "fp": fp, "fn": fn}  # fmt: skip

    report: dict[str, dict[str, float]] = {}
    for p in PATTERNS:
        mine = {c for c, lab in labels.items() if lab == p}
        tp = len(mine & flagged)
        by_feature = {c for c in flagged if tops.get(c) == p}
        fp = len(by_feature - fraud)
        report[p] = prf(tp, fp, len(mine) - tp) | {"n": len(mine)}
    report["overall"] = prf(len(fraud & flagged), len(flagged - fraud), len(fraud - flagged)) | {
        "n": len(fraud)
    }
    for h in (*HARD_NEGATIVES, LEGIT):
        mine = {c for c, lab in labels.items() if lab == h}
        report[h] = {"n": len(mine), "flagged": len(mine & flagged),
                     "fp_rate": len(mine & flagged) / len(mine) if mine else 0.0}  # fmt: skip
    print(f"threshold {threshold}: {len(labels)} claims, {len(fraud)} fraudulent", file=out)
    print(f"{'pattern':24} {'n':>6} {'prec':>6} {'recall':>6} {'f1':>6}", file=out)
    for k in (*PATTERNS, "overall"):
        m = report[k]
        print(
            f"{k:24} {m['n']:>6.0f} {m['precision']:>6.3f} {m['recall']:>6.3f} {m['f1']:>6.3f}",
            file=out,
        )
    for h in (*HARD_NEGATIVES, LEGIT):
        m = report[h]
        print(f"{h:24} {m['n']:>6.0f} flagged {m['flagged']:.0f} ({m['fp_rate']:.2%})", file=out)
    return report


def run_in_process(data: Dataset, *, threshold: int) -> dict[str, Any]:
    """Score the set with RiskScorer + in-memory facts/results and an in-process appender."""
    from proveniq.adapters.memory.risk import MemoryRiskFacts, MemoryRiskResults
    from proveniq.followers.risk.assessment import ReviewPolicy
    from proveniq.followers.risk.scoring import RiskScorer
    from proveniq.log.canonical import sha256_canonical
    from proveniq.log.entry import Entry
    from proveniq.ports import NewEvent

    tenant = "ptn_bench"
    log: list[Entry] = []
    clock = [END]

    def link(ev: NewEvent) -> Entry:
        e = Entry(seq=len(log), id=f"evt_{len(log):08d}", tenant=tenant, type=ev.type,
                  subject=ev.subject, payload_hash=sha256_canonical(dict(ev.payload)),
                  recorded_at=clock[0], prev=log[-1].leaf_hash() if log else bytes(32),
                  occurred_at=ev.occurred_at)  # fmt: skip
        log.append(e)
        return e

    class Appender:
        def append(self, *, tenant: str, actor: str, events: Sequence[NewEvent],
                   idempotency_key: str | None = None) -> list[Entry]:  # fmt: skip
            return [link(e) for e in events]

    facts, results = MemoryRiskFacts(), MemoryRiskResults()
    scorer = RiskScorer(facts=facts, results=results, ledger=Appender(),
                        policy=ReviewPolicy(threshold=threshold))  # fmt: skip
    latencies: list[float] = []
    started = time.perf_counter()
    for ev in data.events:
        clock[0] = ev.occurred_at + timedelta(minutes=1)
        entry = link(NewEvent(type=ev.type, subject=ev.subject, payload=ev.payload,
                              occurred_at=ev.occurred_at))  # fmt: skip
        t = time.perf_counter()
        scorer.handle(entry, ev.payload)
        latencies.append(time.perf_counter() - t)
    elapsed = time.perf_counter() - started
    scores, tops = {}, {}
    for cid in data.labels:
        risk = results.claim_risk(tenant, cid)
        if risk is not None:
            scores[cid] = risk.score.score
            reasons = risk.score.result["reasons"]
            if reasons:
                tops[cid] = reasons[0]["feature"]
    latencies.sort()
    return {
        "events": len(data.events),
        "events_per_second": len(data.events) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
        "scores": scores,
        "top_features": tops,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--claims", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--threshold", type=int, default=50)
    args = ap.parse_args()
    data = generate(seed=args.seed, claims=args.claims)
    print(f"generated {len(data.labels)} claims, {len(data.events)} events (seed {args.seed})")
    run = run_in_process(data, threshold=args.threshold)
    print(f"in-process: {run['events_per_second']:.0f} events/s, handle p50 "
          f"{run['p50_ms']:.2f} ms p99 {run['p99_ms']:.2f} ms")  # fmt: skip
    evaluate(data.labels, run["scores"], args.threshold, top_features=run["top_features"])


if __name__ == "__main__":
    main()
