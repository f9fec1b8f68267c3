"""The hash chain: each entry's `prev` is the leaf hash of the entry before it.

`link` assigns contiguous sequence numbers and chain links to a batch of new entries given the
tail of the log; `verify_chain` checks a run of stored entries and names the first broken link.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from proveniq.errors import VerificationError
from proveniq.log import merkle
from proveniq.log.entry import ZERO_HASH, Entry, LeafTemplate
from proveniq.log.timefmt import format_time


@dataclass(frozen=True, kw_only=True)
class Tail:
    """The last sequenced entry: the next one gets `size` as its seq and `leaf_hash` as prev."""

    size: int
    leaf_hash: bytes

    @classmethod
    def empty(cls) -> Tail:
        return cls(size=0, leaf_hash=ZERO_HASH)


@dataclass(frozen=True, kw_only=True)
class Draft:
    """An entry before sequencing: everything but seq, prev and recorded_at.

    Its leaf template (all the canonicalisation) is computed on construction, before the
    write lock is taken.
    """

    id: str
    tenant: str
    type: str
    subject: str
    payload_hash: bytes
    occurred_at: datetime | None = None

    def __post_init__(self) -> None:
        template = LeafTemplate.of(
            id=self.id,
            tenant=self.tenant,
            type=self.type,
            subject=self.subject,
            payload_hash=self.payload_hash,
            occurred_at=self.occurred_at,
        )
        object.__setattr__(self, "template", template)

    @property
    def leaf_template(self) -> LeafTemplate:
        template: LeafTemplate = self.__dict__["template"]
        return template


def link(drafts: Sequence[Draft], *, tail: Tail, recorded_at: datetime) -> list[Entry]:
    entries: list[Entry] = []
    prev = tail.leaf_hash
    stamp = format_time(recorded_at)
    new = object.__new__
    for offset, d in enumerate(drafts):
        seq = tail.size + offset
        leaf = merkle.leaf_hash(d.leaf_template.fill(seq=seq, prev=prev, recorded_at=stamp))
        # Entry's fields set directly (its frozen __init__ costs one object.__setattr__ per
        # field, the largest part of linking): the same instance, its leaf hash cached.
        e = new(Entry)
        e.__dict__.update(
            seq=seq,
            id=d.id,
            tenant=d.tenant,
            type=d.type,
            subject=d.subject,
            payload_hash=d.payload_hash,
            recorded_at=recorded_at,
            prev=prev,
            occurred_at=d.occurred_at,
            _leaf_hash=leaf,
        )
        prev = leaf
        entries.append(e)
    return entries


def verify_chain(entries: Iterable[Entry], *, start: Tail) -> Tail:
    """Check contiguity and links from `start`; return the new tail or raise at the first break."""
    size, prev = start.size, start.leaf_hash
    for e in entries:
        if e.seq != size:
            raise VerificationError(
                f"sequence gap at seq {size}: found seq {e.seq}",
                what="seq",
                expected=str(size),
                found=str(e.seq),
            )
        if e.prev != prev:
            raise VerificationError(
                f"broken chain link at seq {e.seq}",
                what=f"prev@{e.seq}",
                expected=prev.hex(),
                found=e.prev.hex(),
            )
        prev = e.leaf_hash()
        size += 1
    return Tail(size=size, leaf_hash=prev)
