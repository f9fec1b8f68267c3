"""Group commit through the use case, against the in-memory twin and PostgreSQL: each request of
a group all-or-nothing on its own, contiguous `seq` for the ones that commit, the fast path's
decisions equal to the slow path's."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from proveniq.errors import (
    IdempotencyConflict,
    LifecycleConflict,
    ProveniqError,
    Unavailable,
    ValidationError,
)
from proveniq.ledger.sequencing import (
    GroupCommit,
    Replay,
    Request,
    Sequenced,
    Sequencer,
    request_hash,
)
from proveniq.ledger.submission import parse_single
from proveniq.log.chain import Tail, verify_chain
from proveniq.ports import EventFilter, Idempotency, StoredResponse
from tests.conformance.conftest import Subject, event


def render(entries: list[Any]) -> StoredResponse:
    return StoredResponse(status=201, body=json.dumps([e.seq for e in entries]).encode())


def req(
    kind: str = "claim.created",
    subject: str = "clm_1",
    *,
    tenant: str = "t1",
    actor: str = "a",
    key: str | None = None,
    body: str = "",
    **payload: Any,
) -> Request:
    idem = (
        None
        if key is None
        else Idempotency(key=key, request_hash=request_hash((body or kind + subject).encode()))
    )
    return Request(
        tenant=tenant,
        actor=actor,
        items=[(f"evt_{uuid.uuid4().hex}", event(kind, subject, **payload))],
        idempotency=idem,
        render=render,
    )


def stored(s: Subject) -> list[Any]:
    entries = [ev.entry for ev in s.queries.events(EventFilter(tenant=None, limit=10_000))]
    verify_chain(entries, start=Tail.empty())
    return entries


def seqs(outcomes: list[Any]) -> list[int]:
    return [
        e.seq for o in outcomes if isinstance(o, Sequenced) and not o.replayed for e in o.entries
    ]


def test_a_refused_request_leaves_the_others_of_its_group_contiguous(subject: Subject) -> None:
    subject.sequencer.commit_group([req("asset.created", "ast_1")])
    out = subject.sequencer.commit_group(
        [
            req(n=1),
            req("asset.submitted", "ast_1"),
            req("asset.created", "ast_1"),  # exists already: 409
            req("asset.verified", "ast_1"),  # sees the earlier submitted: allowed
            req("asset.verified", "ast_1"),  # and now it is VERIFIED: 409
            req(n=2, tenant="t2"),  # another tenant in the same group
            req("asset.created", "ast_1", tenant="t2"),  # another tenant's ast_1
        ]
    )
    assert isinstance(out[2], LifecycleConflict) and isinstance(out[4], LifecycleConflict)
    assert seqs(out) == [1, 2, 3, 4, 5]
    entries = stored(subject)
    assert [e.seq for e in entries] == list(range(6))
    assert [e.type for e in entries[1:]] == [
        "claim.created",
        "asset.submitted",
        "asset.verified",
        "claim.created",
        "asset.created",
    ]
    assert entries[5].tenant == "t2"
    # the statuses written by the group are what the next group sees
    nxt = subject.sequencer.commit_group(
        [req("asset.listed", "ast_1"), req("asset.submitted", "ast_1", tenant="t2")]
    )
    assert seqs(nxt) == [6, 7]


def test_the_same_idempotency_key_twice_in_a_group_replays_the_first(subject: Subject) -> None:
    out = subject.sequencer.commit_group(
        [
            req(key="k", n=1),
            req(key="k", n=1),  # the same request again: the first one's response
            req(key="k", body="other", n=2),  # the key with another body: 409
            req(key="k", tenant="t2", n=3),  # another tenant's key "k"
            req(n=4),
        ]
    )
    first, again, other = out[0], out[1], out[2]
    assert isinstance(first, Sequenced) and not first.replayed
    assert isinstance(again, Sequenced) and again.replayed and again.response == first.response
    assert isinstance(other, IdempotencyConflict)
    assert seqs(out) == [0, 1, 2]
    assert len(stored(subject)) == 3
    found = subject.ledger.stored_response("t1", "k")
    assert found is not None and found[1] == first.response


def test_a_request_whose_key_lost_a_race_replays_and_the_group_is_redone(
    subject: Subject,
) -> None:
    # another instance recorded "k" after this request's check before the lock: the group's
    # write finds the key taken, rolls back and is redone without it
    winner = subject.sequencer.commit_group([req(key="k", n=1)])
    out = subject.sequencer.commit_group([req(n=0), req(key="k", n=1), req(key="k", n=1), req()])
    assert isinstance(out[1], Replay) and isinstance(out[2], Replay)
    assert seqs(out) == [1, 2]
    assert [e.seq for e in stored(subject)] == [0, 1, 2]
    # through sequence(), the request thread answers with the winner's record
    s = Sequencer(store=subject.ledger, relay=None, reader=subject.ledger)
    replayed = s.sequence(
        tenant="t1",
        actor="a",
        prepared=[event(n=1)],
        idempotency=req(key="k").idempotency,
        render=render,
    )
    assert replayed.replayed and replayed.response == winner[0].response  # type: ignore[union-attr]


def test_a_value_the_database_refuses_fails_alone_on_the_slow_path(subject: Subject) -> None:
    # text with NUL passes the Python checks but not PostgreSQL (SQLSTATE 22021): the group's
    # one statement fails, and the group is redone request by request with savepoints
    out = subject.sequencer.commit_group(
        [
            req(n=1, key="k1"),
            req(n=2, actor="bad\x00actor"),
            req("asset.created", "ast_1"),
            req(n=3, key="k1"),  # replays the first, on the slow path too
        ]
    )
    assert isinstance(out[1], ValidationError)
    assert seqs(out) == [0, 1]
    replay = out[3]
    assert isinstance(replay, Replay) or (isinstance(replay, Sequenced) and replay.replayed)
    assert [e.type for e in stored(subject)] == ["claim.created", "asset.created"]
    nxt = subject.sequencer.commit_group([req("asset.submitted", "ast_1")])
    assert seqs(nxt) == [2]


class _FailingCommit:
    """A store whose group commit fails the way a lost database does."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.fail = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    @contextmanager
    def group(self) -> Iterator[Any]:
        with self.store.group() as tx:
            outer = self

            class Tx:
                def lock(self, subjects: Any) -> Any:
                    return tx.lock(subjects)

                def commit(self, write: Any) -> Any:
                    if outer.fail:
                        raise Unavailable("database connection lost")
                    return tx.commit(write)

            yield Tx()


def test_a_transient_failure_fails_the_whole_group_and_commits_nothing(subject: Subject) -> None:
    store = _FailingCommit(subject.ledger)
    s = Sequencer(store=store, relay=None, reader=subject.ledger)
    out = s.commit_group([req(n=1), req(key="k", n=2), req("asset.created", "ast_2")])
    assert all(isinstance(o, Unavailable) for o in out) and len({id(o) for o in out}) == 3
    assert stored(subject) == [] and subject.ledger.stored_response("t1", "k") is None
    store.fail = False  # the lock was released: the next group commits from seq 0
    assert seqs(s.commit_group([req(n=1), req(n=2)])) == [0, 1]


def test_concurrent_requests_through_the_committer_form_one_group(subject: Subject) -> None:
    n = 12
    s = Sequencer(
        store=subject.ledger,
        relay=None,
        reader=subject.ledger,
        group=GroupCommit(wait=5.0, max_size=n, adaptive=False),  # the n-th ends the wait
    )
    s.sequence(tenant="t1", actor="a", prepared=[event("asset.created", "ast_1")])
    assert s.committer is not None and s.committer.groups == 1
    barrier = threading.Barrier(n)
    results: dict[int, Sequenced | ProveniqError] = {}

    def one(i: int) -> None:
        prepared = [event("asset.sold", "ast_1")] if i == 5 else [event(n=i)]  # 5: DRAFT->SOLD
        barrier.wait()
        try:
            results[i] = s.sequence(tenant="t1", actor=f"w{i}", prepared=prepared, render=render)
        except ProveniqError as e:
            results[i] = e

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert s.committer.groups == 2 and s.committer.largest == n  # all n in one group
    assert isinstance(results[5], LifecycleConflict)
    ok = [r for r in results.values() if isinstance(r, Sequenced)]
    assert len(ok) == n - 1 and all(r.response is not None for r in ok)  # rendered after commit
    assert sorted(e.seq for r in ok for e in r.entries) == list(range(1, n))
    assert [e.seq for e in stored(subject)] == list(range(n))


@pytest.mark.parametrize("size", [1, 31, 32])
def test_requests_of_any_size_commit_with_group_commit_on(subject: Subject, size: int) -> None:
    # up to GROUPED_MAX_EVENTS events a request joins a group; larger ones go on their own
    r = subject.sequencer.sequence(
        tenant="t1", actor="a", prepared=[event(n=i) for i in range(size)], render=render
    )
    assert [e.seq for e in r.entries] == list(range(size)) and r.response is not None
    assert len(stored(subject)) == size


def test_every_value_round_trips_through_the_group_write(subject: Subject) -> None:
    # the PostgreSQL adapter builds its own array literals: quotes, backslashes, commas, braces,
    # NULL-like words and non-ASCII text must come back exactly
    odd = 'a"b\\c,{d} NULL é\\"'
    r = req("claim.created", "clm_1", actor=odd, key=odd, note=odd)
    occurred = parse_single(
        json.dumps(
            {"type": "claim.paid", "subject": "x:1", "occurred_at": "2026-11-24T10:00:00.5+02:00"}
        ).encode()
    )
    r2 = Request(tenant=odd, actor="a", items=[(f"evt_{uuid.uuid4().hex}", occurred)])
    out = subject.sequencer.commit_group([r, r2])
    assert seqs(out) == [0, 1]
    found = subject.ledger.stored_response("t1", odd)
    assert found is not None and found[1] == out[0].response  # type: ignore[union-attr]
    evs = subject.queries.events(EventFilter(tenant=None))
    assert evs[0].actor == odd and evs[0].payload == r.items[0][1].payload
    assert evs[1].entry.tenant == odd and evs[1].entry.occurred_at == occurred.occurred_at
    assert [e.entry.leaf_hash() for e in evs] == [
        o.entries[0].leaf_hash() for o in out if isinstance(o, Sequenced)
    ]
    assert evs[0].entry.occurred_at is None
    assert all(e.stored_leaf == e.entry.leaf_hash() for e in evs)
