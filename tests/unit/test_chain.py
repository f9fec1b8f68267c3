import dataclasses
import hashlib
import itertools
from datetime import UTC, datetime

import pytest
import rfc8785
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from proveniq.errors import ValidationError, VerificationError
from proveniq.log.chain import Draft, Tail, link, verify_chain
from proveniq.log.entry import ZERO_HASH, Entry
from proveniq.log.timefmt import format_time

T = datetime(2026, 11, 24, 3, 0, 0, 123456, tzinfo=UTC)


def drafts(n: int) -> list[Draft]:
    return [
        Draft(
            id=f"evt_{i}",
            tenant="prt_a",
            type="claim.created",
            subject=f"clm_{i}",
            payload_hash=hashlib.sha256(str(i).encode()).digest(),
        )
        for i in range(n)
    ]


def test_link_assigns_contiguous_seq_and_prev() -> None:
    log = link(drafts(5), tail=Tail.empty(), recorded_at=T)
    assert [e.seq for e in log] == list(range(5))
    assert log[0].prev == ZERO_HASH
    for a, b in itertools.pairwise(log):
        assert b.prev == a.leaf_hash()
    assert verify_chain(log, start=Tail.empty()).size == 5


def test_link_continues_from_tail() -> None:
    first = link(drafts(3), tail=Tail.empty(), recorded_at=T)
    tail = verify_chain(first, start=Tail.empty())
    more = link(drafts(2), tail=tail, recorded_at=T)
    assert more[0].seq == 3 and more[0].prev == first[-1].leaf_hash()


def test_verify_chain_names_first_break() -> None:
    log = link(drafts(6), tail=Tail.empty(), recorded_at=T)
    log[3] = dataclasses.replace(log[3], subject="clm_forged")
    with pytest.raises(VerificationError) as e:
        verify_chain(log, start=Tail.empty())
    assert e.value.what == "prev@4"
    with pytest.raises(VerificationError) as gap:
        verify_chain(log[:2] + log[3:], start=Tail.empty())
    assert gap.value.what == "seq"


def test_entry_json_round_trip_and_leaf_excludes_payload() -> None:
    e = link(drafts(1), tail=Tail.empty(), recorded_at=T)[0]
    assert Entry.from_json(e.to_json()) == e
    leaf = e.leaf_bytes()
    assert b'"payload_hash":"' in leaf and b'"payload":' not in leaf
    assert leaf.startswith(b'{"id":"evt_0","occurred_at":null,"payload_hash":')


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d.update(seq=-1), "entry.seq"),
        (lambda d: d.update(seq=True), "entry.seq"),
        (lambda d: d.update(prev="AB" * 32), "entry.prev"),
        (lambda d: d.update(recorded_at="2026-11-24T03:00:00Z"), "entry.recorded_at"),
        (lambda d: d.update(extra=1), "entry"),
        (lambda d: d.pop("tenant"), "entry"),
        (lambda d: d.update(v=2), "entry.v"),
    ],
)
def test_entry_from_json_is_strict(mutate, field) -> None:  # type: ignore[no-untyped-def]
    d = link(drafts(1), tail=Tail.empty(), recorded_at=T)[0].to_json()
    mutate(d)
    with pytest.raises(ValidationError) as e:
        Entry.from_json(d)
    assert e.value.field == field


@settings(max_examples=300, deadline=None)
@given(
    eid=st.text(min_size=1, max_size=20),
    tenant=st.text(min_size=1, max_size=10),
    etype=st.text(min_size=1, max_size=10),
    subject=st.text(min_size=1, max_size=10),
    seq=st.integers(min_value=0, max_value=2**53 - 1),
    prev=st.binary(min_size=32, max_size=32),
    occurred=st.none() | st.datetimes(timezones=st.just(UTC)),
    recorded=st.datetimes(timezones=st.just(UTC)),
)
def test_leaf_template_equals_rfc8785_of_the_entry(
    eid: str,
    tenant: str,
    etype: str,
    subject: str,
    seq: int,
    prev: bytes,
    occurred: datetime | None,
    recorded: datetime,
) -> None:
    """The spliced fast path under the lock is byte-identical to canonicalising the entry."""
    for s in (eid, tenant, etype, subject):
        try:
            s.encode("utf-8")
        except UnicodeEncodeError:
            assume(False)
    d = Draft(
        id=eid,
        tenant=tenant,
        type=etype,
        subject=subject,
        payload_hash=hashlib.sha256(prev).digest(),
        occurred_at=occurred,
    )
    (linked,) = link([d], tail=Tail(size=seq, leaf_hash=prev), recorded_at=recorded)
    fresh = Entry.from_json(linked.to_json())  # no cached hash: canonicalize's path
    filled = d.leaf_template.fill(seq=seq, prev=prev, recorded_at=format_time(recorded))
    assert filled == fresh.leaf_bytes() == rfc8785.dumps(fresh.to_json())
    assert linked.leaf_hash() == fresh.leaf_hash()
