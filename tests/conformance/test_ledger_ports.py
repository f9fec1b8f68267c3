"""One conformance suite for the log's storage ports and the accounts ports: the in-memory twin
and PostgreSQL must behave the same through the use cases that drive them."""

from __future__ import annotations

import hashlib
import threading

import pytest

from proveniq.errors import (
    Conflict,
    IdempotencyConflict,
    LifecycleConflict,
    NotFound,
    ValidationError,
)
from proveniq.ledger.audit import audit
from proveniq.ledger.proofs import Pending
from proveniq.ledger.sequencing import request_hash
from proveniq.ledger.submission import parse_batch
from proveniq.log import merkle
from proveniq.log.bundle import Bundle
from proveniq.log.chain import Tail, verify_chain
from proveniq.log.entry import Entry
from proveniq.ports import EventFilter, Idempotency, NewEvent, StoredResponse
from tests.conformance.conftest import Subject, event


def all_entries(s: Subject) -> list[Entry]:
    return [ev.entry for ev in s.queries.events(EventFilter(tenant=None, limit=10_000))]


def test_sequencing_is_contiguous_and_chained(subject: Subject) -> None:
    for i in range(5):
        subject.sequencer.sequence(tenant="t1", actor="a", prepared=[event(n=i)])
    batch = subject.sequencer.sequence(
        tenant="t2",
        actor="b",
        prepared=[event(n=i) for i in range(40)],  # COPY path on PG
    )
    assert [e.seq for e in batch.entries] == list(range(5, 45))
    entries = all_entries(subject)
    assert [e.seq for e in entries] == list(range(45))
    verify_chain(entries, start=Tail.empty())


def test_concurrent_sequencing_never_forks(subject: Subject) -> None:
    errors: list[BaseException] = []

    def writer(t: int) -> None:
        try:
            for i in range(25):
                subject.sequencer.sequence(tenant=f"t{t % 2}", actor="a", prepared=[event(i=i)])
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    entries = all_entries(subject)
    assert [e.seq for e in entries] == list(range(150))
    verify_chain(entries, start=Tail.empty())


def test_idempotent_replay_and_conflict(subject: Subject) -> None:
    idem = Idempotency(key="k1", request_hash=request_hash(b"body"))

    def render(entries: list[Entry]) -> StoredResponse:
        return StoredResponse(status=201, body=",".join(e.id for e in entries).encode())

    first = subject.sequencer.sequence(
        tenant="t1", actor="a", prepared=[event()], idempotency=idem, render=render
    )
    again = subject.sequencer.sequence(
        tenant="t1", actor="a", prepared=[event()], idempotency=idem, render=render
    )
    assert again.replayed and again.response == first.response and not again.entries
    assert len(all_entries(subject)) == 1
    # the same key in another tenant is another key
    other = subject.sequencer.sequence(
        tenant="t2", actor="a", prepared=[event()], idempotency=idem, render=render
    )
    assert not other.replayed
    with pytest.raises(IdempotencyConflict):
        subject.sequencer.sequence(
            tenant="t1",
            actor="a",
            prepared=[event()],
            idempotency=Idempotency(key="k1", request_hash=request_hash(b"other")),
            render=render,
        )


def test_lifecycle_is_enforced_and_a_refused_batch_writes_nothing(subject: Subject) -> None:
    ok = parse_batch(
        b'{"events":[{"type":"asset.created","subject":"ast_1"},'
        b'{"type":"asset.submitted","subject":"ast_1"}]}'
    )
    subject.sequencer.sequence(tenant="t1", actor="a", prepared=ok)
    bad = parse_batch(
        b'{"events":[{"type":"claim.note","subject":"c"},{"type":"asset.sold","subject":"ast_1"}]}'
    )
    with pytest.raises(LifecycleConflict):
        subject.sequencer.sequence(tenant="t1", actor="a", prepared=bad)
    assert len(all_entries(subject)) == 2
    # statuses are per tenant: ast_1 is new in t2
    subject.sequencer.sequence(tenant="t2", actor="a", prepared=[event("asset.created", "ast_1")])
    with pytest.raises(LifecycleConflict):
        subject.sequencer.sequence(
            tenant="t1", actor="a", prepared=[event("asset.created", "ast_1")]
        )


def test_appender_port_replays_the_original_entries(subject: Subject) -> None:
    events = [NewEvent(type="risk.scored", subject="clm_1", payload={"score": 12})]
    first = subject.sequencer.append(tenant="t1", actor="risk", events=events, idempotency_key="r")
    again = subject.sequencer.append(tenant="t1", actor="risk", events=events, idempotency_key="r")
    assert [e.id for e in again] == [e.id for e in first]
    assert again[0].leaf_hash() == first[0].leaf_hash()
    assert len(all_entries(subject)) == 1
    with pytest.raises(IdempotencyConflict):
        subject.sequencer.append(
            tenant="t1",
            actor="risk",
            events=[NewEvent(type="risk.scored", subject="clm_1", payload={"score": 99})],
            idempotency_key="r",
        )
    with pytest.raises(ValidationError):
        subject.sequencer.append(
            tenant="t1", actor="x", events=[NewEvent(type="nope", subject="c", payload={})]
        )


def test_reads_are_tenant_scoped(subject: Subject) -> None:
    a = subject.sequencer.sequence(tenant="t1", actor="a", prepared=[event(subject="s1")])
    subject.sequencer.sequence(tenant="t2", actor="a", prepared=[event("claim.paid", "s1")])
    e = a.entries[0]
    assert subject.queries.event("t1", e.id).entry == e
    with pytest.raises(NotFound):
        subject.queries.event("t2", e.id)
    assert subject.queries.event(None, e.id).entry == e  # platform-wide principals
    assert subject.queries.event_by_leaf("t1", e.leaf_hash()).entry.id == e.id
    with pytest.raises(NotFound):
        subject.queries.event_by_leaf("t2", e.leaf_hash())
    page = subject.queries.events(EventFilter(tenant="t2", subject="s1"))
    assert [ev.entry.type for ev in page] == ["claim.paid"]
    stored = subject.queries.event("t1", e.id)
    assert stored.payload is not None
    assert hashlib.sha256(stored.payload).digest() == e.payload_hash
    assert stored.actor == "a"


def test_event_pages_follow_the_cursor(subject: Subject) -> None:
    subject.sequencer.sequence(
        tenant="t1",
        actor="a",
        prepared=[event("claim.note" if i % 2 else "claim.created", n=i) for i in range(9)],
    )
    seen, cursor = [], None
    while True:
        page = subject.queries.events(
            EventFilter(tenant="t1", event_type="claim.note", after_seq=cursor, limit=2)
        )
        seen += [ev.entry.seq for ev in page]
        if len(page) < 2:
            break
        cursor = page[-1].entry.seq
    assert seen == [1, 3, 5, 7]
    with pytest.raises(NotFound):
        subject.queries.subject_history("t1", "nobody", after_seq=None, limit=10)


def test_integration_publishes_checkpoints_that_prove_inclusion(subject: Subject) -> None:
    assert subject.integrator.integrate_and_publish() is None
    sizes = []
    for n in (1, 2, 5, 8):
        subject.sequencer.sequence(tenant="t1", actor="a", prepared=[event(i=i) for i in range(n)])
        published = subject.integrator.integrate_and_publish()
        assert published is not None
        sizes.append(published.size)
    assert sizes == [1, 3, 8, 16]
    assert subject.integrator.integrate_and_publish() is None
    entries = all_entries(subject)
    leaves = [e.leaf_hash() for e in entries]
    assert subject.proofs.checkpoint().size == 16
    assert subject.proofs.checkpoint(3).root == merkle.root(leaves[:3])
    with pytest.raises(NotFound):
        subject.proofs.checkpoint(4)
    assert [c.size for c in subject.proofs.checkpoints(before=None, limit=2)] == [16, 8]
    assert [c.size for c in subject.proofs.checkpoints(before=8, limit=5)] == [3, 1]
    for ev in subject.queries.events(EventFilter(tenant="t1", limit=100)):
        b = subject.proofs.bundle(ev)
        assert isinstance(b, Bundle)
        subject.proofs.verify(b)
        pinned = subject.proofs.bundle(ev, tree_size=8) if ev.entry.seq < 8 else None
        assert pinned is None or (isinstance(pinned, Bundle) and pinned.tree_size == 8)
    assert subject.proofs.consistency(3, 16) == merkle.consistency_proof(leaves, 3, 16)
    with pytest.raises(NotFound):
        subject.proofs.consistency(2, 16)
    subject.sequencer.sequence(tenant="t1", actor="a", prepared=[event()])
    newest = subject.queries.events(EventFilter(tenant="t1", after_seq=15))[0]
    assert isinstance(subject.proofs.bundle(newest), Pending)


def test_outbox_relays_each_committed_event_once(subject: Subject) -> None:
    subject.sequencer.sequence(tenant="t1", actor="a", prepared=[event(i=i) for i in range(4)])
    pending = subject.ledger.unrelayed(limit=10, min_age_seconds=0)
    assert [ev.entry.seq for ev in pending] == [0, 1, 2, 3]
    assert subject.ledger.unrelayed(limit=10, min_age_seconds=3600) == []
    subject.ledger.mark_relayed([0, 2])
    assert [ev.entry.seq for ev in subject.ledger.unrelayed(limit=10, min_age_seconds=0)] == [1, 3]


def test_audit_recomputes_what_was_stored(subject: Subject) -> None:
    subject.sequencer.sequence(tenant="t1", actor="a", prepared=[event(i=i) for i in range(7)])
    subject.integrator.integrate_and_publish()
    subject.sequencer.sequence(tenant="t1", actor="a", prepared=[event(i=i) for i in range(3)])
    subject.integrator.integrate_and_publish()
    with subject.ledger.audit_snapshot() as view:
        report = audit(view, subject.publisher.verifiers(), origin="proveniq.test/conformance")
    assert report.ok, report.problems
    assert (report.entries, report.checkpoints) == (10, 2)
    with subject.ledger.audit_snapshot() as view:
        foreign = audit(view, subject.publisher.verifiers(), origin="someone.else/log")
    assert not foreign.ok


def test_accounts_and_keys(subject: Subject) -> None:
    accounts = subject.accounts
    p = accounts.create_partner(name="Acme", tier="pro")
    assert [x.id for x in accounts.list_partners()] == [p.id]
    assert accounts.partner_tier(p.id) == "pro"
    assert accounts.partner_tier("prt_0000000000000000") is None
    new, rec = accounts.create_key(partner_id=p.id, org_role=None)
    assert (rec.org_role, rec.tier, rec.revoked) == ("MEMBER", "pro", False)
    assert accounts.lookup(new.prefix).key_hash == rec.key_hash
    accounts.revoke_key(rec.id)
    assert accounts.lookup(new.prefix).revoked
    with pytest.raises(Conflict):
        accounts.revoke_key(rec.id)
    with pytest.raises(NotFound):
        accounts.revoke_key("key_000000000000")
    with pytest.raises(NotFound):
        accounts.create_key(partner_id="prt_ffffffffffffffff", org_role="VIEWER")
    with pytest.raises(ValidationError):
        accounts.create_key(partner_id=None, org_role=None)
    _, admin = accounts.create_key(partner_id=None, org_role=None, global_role="ADMIN")
    assert (admin.partner_id, admin.tier) == (None, "enterprise")


def test_rate_buckets_spend_and_refill(subject: Subject) -> None:
    left = [subject.buckets.take(bucket="b", capacity=3, refill_per_second=0.001) for _ in range(5)]
    assert left[0] == pytest.approx(2, abs=0.01)
    assert left[2] == pytest.approx(0, abs=0.01)
    assert left[3] < 0 and left[4] < 0
    assert subject.buckets.take(bucket="other", capacity=3, refill_per_second=1) == pytest.approx(
        2, abs=0.01
    )


def test_a_group_commits_each_request_on_its_own(subject: Subject) -> None:
    from proveniq.ports import AppendRequest

    subject.sequencer.append(
        tenant="t1",
        actor="a",
        events=[NewEvent(type="asset.created", subject="ast_1", payload={})],
    )
    first = subject.sequencer.append_each(
        tenant="t1",
        requests=[
            AppendRequest(
                actor="d1",
                events=[NewEvent(type="device.reading", subject="a", payload={"c": 1})],
                idempotency_key="d:1",
            ),
            AppendRequest(
                actor="d1", events=[NewEvent(type="asset.created", subject="ast_1", payload={})]
            ),
            AppendRequest(actor="d2", events=[NewEvent(type="nope", subject="a", payload={})]),
            AppendRequest(
                actor="d2",
                events=[
                    NewEvent(type="asset.submitted", subject="ast_1", payload={}),
                    NewEvent(type="asset.verified", subject="ast_1", payload={}),
                ],
                idempotency_key="d:2",
            ),
            AppendRequest(
                actor="d3", events=[NewEvent(type="asset.verified", subject="ast_1", payload={})]
            ),
        ],
    )
    assert isinstance(first[1], LifecycleConflict)  # ast_1 already exists
    assert isinstance(first[2], ValidationError)
    assert isinstance(first[4], LifecycleConflict)  # already VERIFIED by request 3
    ok = [r for r in first if isinstance(r, list)]
    assert [e.seq for r in ok for e in r] == [1, 2, 3]
    entries = all_entries(subject)
    assert [e.seq for e in entries] == [0, 1, 2, 3]
    verify_chain(entries, start=Tail.empty())
    assert [e.actor for e in subject.queries.events(EventFilter(tenant="t1"))] == [
        "a",
        "d1",
        "d2",
        "d2",
    ]
    # redelivered in another group: the same entries, nothing appended
    again = subject.sequencer.append_each(
        tenant="t1",
        requests=[
            AppendRequest(
                actor="d1",
                events=[NewEvent(type="device.reading", subject="a", payload={"c": 1})],
                idempotency_key="d:1",
            ),
            AppendRequest(
                actor="d1",
                events=[NewEvent(type="device.reading", subject="a", payload={"c": 9})],
                idempotency_key="d:1",
            ),
        ],
    )
    assert isinstance(again[0], list) and [e.id for e in again[0]] == [e.id for e in first[0]]  # type: ignore[union-attr]
    assert isinstance(again[1], IdempotencyConflict)
    assert len(all_entries(subject)) == 4
