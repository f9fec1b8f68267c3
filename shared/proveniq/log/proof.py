"""Proof building from stored perfect-subtree nodes, in O(log n) node reads.

Each proof element is the root of an RFC 6962 subtree ``[begin, end)``. Subtrees on the tree's
right edge may be imperfect; their roots are folded from their perfect-subtree decomposition, so
only perfect nodes (written once by `proveniq.integrate.integrate`) are ever read. Every builder
has a ``..._node_ids`` companion listing the nodes it needs, and makes at most ONE `NodeReader`
call, so a store can fetch everything in one query (or serve it from a cache).

The proofs match `proveniq.merkle`'s reference functions element for element.
"""

from __future__ import annotations

from collections.abc import Sequence

from proveniq.errors import ValidationError
from proveniq.log.integrate import NodeId, NodeReader, fold_root, perfect_subtrees, read_all
from proveniq.log.merkle import split_point

__all__ = [
    "consistency_proof",
    "consistency_proof_node_ids",
    "inclusion_proof",
    "inclusion_proof_node_ids",
    "root_at",
    "root_at_node_ids",
]

_Range = tuple[int, int]


def root_at_node_ids(size: int) -> list[NodeId]:
    """The perfect nodes whose fold is the root of the tree of ``size`` leaves."""
    if size < 0:
        raise ValidationError(f"size {size} is negative", field="size")
    return perfect_subtrees(0, size)


def root_at(read_nodes: NodeReader, size: int) -> bytes:
    """The root of the tree of ``size`` leaves (`EMPTY_ROOT` for 0)."""
    ids = root_at_node_ids(size)
    nodes = read_all(read_nodes, ids)
    return fold_root([nodes[i] for i in ids])


def inclusion_proof_node_ids(index: int, size: int) -> list[NodeId]:
    """The perfect nodes `inclusion_proof` reads."""
    return _node_ids(_inclusion_ranges(index, size))


def inclusion_proof(read_nodes: NodeReader, index: int, size: int) -> list[bytes]:
    """The RFC 6962 audit path of leaf ``index`` in the tree of ``size`` leaves, sibling first."""
    return _hashes(read_nodes, _inclusion_ranges(index, size))


def consistency_proof_node_ids(old_size: int, new_size: int) -> list[NodeId]:
    """The perfect nodes `consistency_proof` reads."""
    return _node_ids(_consistency_ranges(old_size, new_size))


def consistency_proof(read_nodes: NodeReader, old_size: int, new_size: int) -> list[bytes]:
    """The RFC 6962 consistency proof from ``old_size`` to ``new_size`` leaves.

    Empty for ``old_size`` 0 or equal sizes (see `proveniq.merkle` for the size-0 rule).
    """
    return _hashes(read_nodes, _consistency_ranges(old_size, new_size))


def _inclusion_ranges(index: int, size: int) -> list[_Range]:
    """PATH(index, D[0:size]) as leaf ranges: the sibling subtree at each split, bottom-up."""
    if not 0 <= index < size:
        raise ValidationError(f"index {index} is not below tree size {size}", field="index")
    ranges: list[_Range] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = lo + split_point(hi - lo)
        if index < k:
            ranges.append((k, hi))
            hi = k
        else:
            ranges.append((lo, k))
            lo = k
    return ranges[::-1]


def _consistency_ranges(old_size: int, new_size: int) -> list[_Range]:
    """PROOF(old_size, D[0:new_size]) (RFC 6962 SUBPROOF) as leaf ranges, bottom-up."""
    if new_size < 0:
        raise ValidationError(f"new size {new_size} is negative", field="new_size")
    if not 0 <= old_size <= new_size:
        raise ValidationError(f"old size {old_size} is not within 0..{new_size}", field="old_size")
    if old_size in (0, new_size):
        return []
    ranges: list[_Range] = []
    lo, hi = 0, new_size
    whole = True  # SUBPROOF's flag: no split has yet put the old tree's end right of its middle
    while hi != old_size:  # until [lo, hi) is the old tree's last subtree
        k = lo + split_point(hi - lo)
        if old_size <= k:
            ranges.append((k, hi))
            hi = k
        else:
            ranges.append((lo, k))
            lo, whole = k, False
    if not whole:
        ranges.append((lo, hi))
    return ranges[::-1]


def _node_ids(ranges: Sequence[_Range]) -> list[NodeId]:
    return [i for begin, end in ranges for i in perfect_subtrees(begin, end)]


def _hashes(read_nodes: NodeReader, ranges: Sequence[_Range]) -> list[bytes]:
    pieces = [perfect_subtrees(begin, end) for begin, end in ranges]
    nodes = read_all(read_nodes, [i for ids in pieces for i in ids])
    return [fold_root([nodes[i] for i in ids]) for ids in pieces]
