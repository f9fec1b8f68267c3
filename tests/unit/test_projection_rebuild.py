"""Rebuild: the fold of the ledger equals what the follower makes of any at-least-once,
any-order delivery with seals in between (a Hypothesis property)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from proveniq.followers.projection import rebuild
from proveniq.followers.projection.documents import change_for
from proveniq.followers.projection.sink import MemorySink, TenantState
from proveniq.log.entry import ZERO_HASH, Entry

T0 = datetime(2026, 3, 1, tzinfo=UTC)
KINDS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("asset.created", "ast_{n}", {}),
    ("asset.submitted", "ast_{n}", None),
    ("custody.transferred", "ast_{n}", {"to": "h{n}"}),
    ("device.reading", "ast_{n}", {"device_id": "dev_{n}", "t": 1.5}),
    ("claim.created", "clm_{n}", {"asset": "ast_{n}"}),
    ("document.uploaded", "clm_{n}", {}),
    ("risk.scored", "clm_{n}", {"score": 10, "level": "LOW", "review_required": False}),
    ("risk.reviewed", "clm_{n}", {"decision": "ok"}),
    ("device.rejected", "dev_{n}", {"reason": "replay"}),
    ("asset.verified", "ast_{n}", {}),
]

Event = tuple[Entry, dict[str, Any] | None]


def ledger(picks: list[tuple[int, int, int]]) -> list[Event]:
    out: list[Event] = []
    for seq, (kind, n, tenant) in enumerate(picks):
        etype, subject, payload = KINDS[kind]
        p = (
            None
            if payload is None
            else {k: v.format(n=n) if isinstance(v, str) else v for k, v in payload.items()}
        )
        out.append(
            (
                Entry(
                    seq=seq,
                    id=f"evt_{seq}",
                    tenant=f"prt_{tenant}",
                    type=etype,
                    subject=subject.format(n=n),
                    payload_hash=hashlib.sha256(str(seq).encode()).digest(),
                    recorded_at=T0 + timedelta(seconds=seq),
                    prev=ZERO_HASH,
                ),
                p,
            )
        )
    return out


picks = st.lists(
    st.tuples(st.integers(0, len(KINDS) - 1), st.integers(0, 2), st.integers(0, 1)),
    min_size=1,
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(picks=picks, data=st.data())
def test_any_delivery_order_with_duplicates_and_seals_equals_the_fold(
    picks: list[tuple[int, int, int]], data: st.DataObject
) -> None:
    events = ledger(picks)
    tree_size = data.draw(st.integers(0, len(events)), label="tree_size")
    extra = data.draw(st.lists(st.sampled_from(events), max_size=10), label="redelivered")
    delivery = data.draw(st.permutations(events + extra), label="delivery")
    seals = data.draw(st.lists(st.integers(0, tree_size), max_size=3), label="earlier seals")
    sink = MemorySink()
    tenants = {e.tenant for e, _ in events}
    for i, (e, p) in enumerate(delivery):
        sink.apply(change_for(e, p))
        if seals and i % 7 == 0:
            sink.seal(e.tenant, seals.pop())
    for t in tenants:
        sink.seal(t, tree_size)
    folded = rebuild.fold(events, tree_size=tree_size)
    for t in tenants:
        assert sink.tenant_documents(t) == folded.documents[t]


def test_rebuild_replaces_and_the_follower_then_skips_what_it_covered() -> None:
    events = ledger([(0, 0, 0), (1, 0, 0), (4, 0, 0), (5, 0, 0), (0, 1, 1)])
    target = MemorySink()
    target.documents["orgs/prt_0/assets/ast_stale"] = {"kind": "asset"}
    target.documents["orgs/prt_0/assets/ast_0"] = {"kind": "asset", "broken": True}
    progress: list[tuple[str, int]] = []
    report = rebuild.rebuild(
        target, events, tree_size=3, progress=lambda s, n: progress.append((s, n))
    )
    assert report == rebuild.RebuildReport(events=5, documents=3, deleted=1, tenants=2, upto=4)
    assert "orgs/prt_0/assets/ast_stale" not in target.documents
    assert "broken" not in target.documents["orgs/prt_0/assets/ast_0"]
    assert target.tenants["prt_0"] == TenantState(sealed_size=3, rebuilt_upto=4)
    assert progress == [("events", 5), ("documents", 2), ("documents", 3)]
    before = dict(target.documents)
    assert target.apply(change_for(*events[3])) is False  # covered by the rebuild
    assert target.documents == before
    later = ledger([(0, 0, 0)] * 6)[5]
    assert target.apply(change_for(*later)) is True


def test_fold_reports_progress_every_so_many_events(monkeypatch: Any) -> None:
    monkeypatch.setattr(rebuild, "PROGRESS_EVERY", 2)
    seen: list[tuple[str, int]] = []
    rebuild.fold(ledger([(0, 0, 0)] * 5), tree_size=0, progress=lambda s, n: seen.append((s, n)))
    assert seen == [("events", 2), ("events", 4), ("events", 5)]
