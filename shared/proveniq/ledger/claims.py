"""Claim verification (reference architecture §5): check every entry of a claim against the
latest checkpoint and give one verdict."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from proveniq.errors import NotFound, ValidationError, VerificationError
from proveniq.ledger.proofs import Pending, Proofs
from proveniq.ledger.queries import Queries
from proveniq.log.bundle import Bundle
from proveniq.ports import EventFilter

MAX_CLAIM_ENTRIES = 200  # ~0.25 s and ~0.4 MB at most; larger claims page via proofs:batch


@dataclass
class ClaimVerdict:
    claim: str
    verdict: str = "verified"  # verified | pending | failed
    entries: list[dict[str, Any]] = field(default_factory=list)
    bundles: list[Bundle] = field(default_factory=list)


class ClaimVerification:
    def __init__(self, *, queries: Queries, proofs: Proofs) -> None:
        self.queries = queries
        self.proofs = proofs

    def verify(self, tenant: str | None, claim: str) -> ClaimVerdict:
        events = self.queries.events(
            EventFilter(tenant=tenant, subject=claim, limit=MAX_CLAIM_ENTRIES + 1)
        )
        if not events:
            raise NotFound(f"no events for claim {claim}")
        if len(events) > MAX_CLAIM_ENTRIES:
            raise ValidationError(
                f"claim has more than {MAX_CLAIM_ENTRIES} entries; verify it "
                "page by page with /v1/proofs:batch",
                field="id",
            )
        out = ClaimVerdict(claim=claim)
        pending = failed = 0
        for ev in events:
            ref = {"id": ev.entry.id, "seq": ev.entry.seq}
            b = self.proofs.bundle(ev)
            if isinstance(b, Pending):
                pending += 1
                out.entries.append({**ref, "status": "pending"})
                continue
            try:
                self.proofs.verify(b)
                out.entries.append({**ref, "status": "verified"})
            except VerificationError as e:
                failed += 1
                out.entries.append({**ref, "status": "failed", "failed": e.what})
            out.bundles.append(b)
        out.verdict = "failed" if failed else ("pending" if pending else "verified")
        return out
