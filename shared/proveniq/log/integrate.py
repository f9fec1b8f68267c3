"""Integration: merge newly sequenced leaf hashes into the stored Merkle tree (tessera style).

The store holds only roots of *perfect* subtrees, addressed by ``(level, index)``: level 0 are the
leaf hashes and node ``(L, i)`` covers leaves ``[i * 2**L, (i + 1) * 2**L)``. A node never changes
once written, so stored nodes are safe to cache.

`integrate` is pure: it reads the O(log n) perfect-subtree roots on the right border of the
existing tree (in ONE batched `NodeReader` call) and returns the new size, the new root and every
newly completed perfect node, for the caller to write in the same transaction that records the
new size. `MemoryNodeStore` is the in-memory twin of a database node table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from proveniq.errors import FormatError, InternalError, ValidationError
from proveniq.log.merkle import EMPTY_ROOT, HASH_SIZE, node_hash

__all__ = [
    "Integration",
    "MemoryNodeStore",
    "NodeId",
    "NodeReader",
    "fold_root",
    "integrate",
    "integrate_node_ids",
    "perfect_subtrees",
    "read_all",
]

NodeId = tuple[int, int]
"""``(level, index)`` of a perfect subtree root; covers leaves ``[index << level, ...)``."""

NodeReader = Callable[[Sequence[NodeId]], Mapping[NodeId, bytes]]
"""Batch reader: returns the stored hash of each requested node (a store answers in one query)."""


@dataclass(frozen=True)
class Integration:
    """The result of `integrate`: what to write, and the tree it produces."""

    new_size: int
    root: bytes
    new_nodes: dict[NodeId, bytes]


def perfect_subtrees(begin: int, end: int) -> list[NodeId]:
    """The perfect subtrees covering leaves ``[begin, end)``, largest (leftmost) first.

    ``begin`` must be aligned to the largest piece, as RFC 6962 subtrees are (for example
    ``[0, n)``): the pieces follow the set bits of ``end - begin``, from high to low.
    """
    ids: list[NodeId] = []
    while begin < end:
        level = (end - begin).bit_length() - 1
        ids.append((level, begin >> level))
        begin += 1 << level
    return ids


def fold_root(hashes: Sequence[bytes]) -> bytes:
    """The RFC 6962 root over the roots of `perfect_subtrees` (largest first): a right fold."""
    if not hashes:
        return EMPTY_ROOT
    r = hashes[-1]
    for h in reversed(hashes[:-1]):
        r = node_hash(h, r)
    return r


def read_all(read_nodes: NodeReader, ids: Sequence[NodeId]) -> dict[NodeId, bytes]:
    """Read ``ids`` with one call (none when empty); a missing node is an `InternalError`."""
    if not ids:
        return {}
    found = read_nodes(ids)
    missing = [i for i in ids if i not in found]
    if missing:
        raise InternalError(f"node store lacks {len(missing)} node(s), first {missing[0]}")
    return {i: found[i] for i in ids}


def integrate_node_ids(from_size: int) -> list[NodeId]:
    """The node ids `integrate` reads for a tree of ``from_size`` leaves (its right border)."""
    if from_size < 0:
        raise ValidationError(f"from_size {from_size} is negative", field="from_size")
    return perfect_subtrees(0, from_size)


def integrate(read_nodes: NodeReader, from_size: int, leaf_hashes: Sequence[bytes]) -> Integration:
    """Append ``leaf_hashes`` to the tree of ``from_size`` leaves; return what to write.

    ``new_nodes`` holds the new leaves (level 0) and every perfect subtree they complete. With no
    leaf hashes the size and root are unchanged and nothing is new.
    """
    for i, h in enumerate(leaf_hashes):
        if len(h) != HASH_SIZE:
            raise FormatError(
                f"leaf hash {i} is {len(h)} bytes, not {HASH_SIZE}", field="leaf_hashes"
            )
    border = read_all(read_nodes, integrate_node_ids(from_size))
    new_nodes: dict[NodeId, bytes] = {}
    # Level by level: the nodes just completed at `level`, the first of them at index `start`.
    level, start, row = 0, from_size, list(leaf_hashes)
    while row:
        new_nodes.update({(level, start + j): h for j, h in enumerate(row)})
        if start & 1:  # the first node's left sibling is on the old border
            start -= 1
            row.insert(0, border[(level, start)])
        row = list(map(node_hash, row[0::2], row[1::2]))  # each complete pair makes a parent
        level, start = level + 1, start >> 1
    new_size = from_size + len(leaf_hashes)
    new_border = perfect_subtrees(0, new_size)
    root = fold_root([new_nodes[i] if i in new_nodes else border[i] for i in new_border])
    return Integration(new_size=new_size, root=root, new_nodes=new_nodes)


class MemoryNodeStore:
    """A dict-backed node store: the in-memory twin of a database node table."""

    def __init__(self) -> None:
        self.nodes: dict[NodeId, bytes] = {}

    def read(self, ids: Sequence[NodeId]) -> dict[NodeId, bytes]:
        """A `NodeReader`: the stored nodes among ``ids`` (absent ones are left out)."""
        nodes = self.nodes
        return {i: nodes[i] for i in ids if i in nodes}

    def write(self, nodes: Mapping[NodeId, bytes]) -> None:
        """Store ``nodes``; perfect nodes never change, so rewriting one is harmless."""
        self.nodes.update(nodes)
