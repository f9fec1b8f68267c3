"""Rebuilding: the tree of a stream of leaf hashes, in O(log n) memory.

A `TreeBuilder` keeps only the right border of the tree built so far: the roots of
`perfect_subtrees(0, size)`, largest first (the stack of the streaming RFC 6962 algorithm).
Each `extend` runs the log's own `integrate` against that border and returns every perfect
node the new leaves complete - exactly the nodes a seal stores for them - so a caller can
compare them with a node store batch by batch and drop them. `completed_ranges` names those
nodes as one index range per level, for a store to fetch with range scans.

Pure: no I/O. The audit (`proveniq.ledger.audit`) streams a whole log through one builder.
"""

from __future__ import annotations

from collections.abc import Sequence

from proveniq.errors import ValidationError
from proveniq.log.integrate import NodeId, integrate, perfect_subtrees
from proveniq.log.merkle import EMPTY_ROOT

__all__ = ["NodeRange", "TreeBuilder", "completed_ranges"]

NodeRange = tuple[int, int, int]
"""``(level, lo, hi)``: the nodes ``(level, idx)`` with ``lo <= idx < hi``."""


def completed_ranges(begin: int, end: int) -> list[NodeRange]:
    """The perfect nodes whose last leaf is in ``[begin, end)``, as one range per level.

    Node ``(L, i)`` covers leaves up to ``(i + 1) << L``, so leaves ``[begin, end)`` complete
    the nodes ``begin >> L <= i < end >> L`` of each level ``L`` (empty levels left out).
    """
    if not 0 <= begin <= end:
        raise ValidationError(f"[{begin}, {end}) is not a range of leaves", field="begin")
    return [
        (level, begin >> level, end >> level)
        for level in range(end.bit_length())
        if begin >> level < end >> level
    ]


class TreeBuilder:
    """The RFC 6962 tree of every leaf hash given so far, holding only its right border."""

    def __init__(self) -> None:
        self.size = 0
        self.root = EMPTY_ROOT
        self._border: dict[NodeId, bytes] = {}

    @property
    def border(self) -> dict[NodeId, bytes]:
        """The roots of `perfect_subtrees(0, size)`: at most one node per level."""
        return dict(self._border)

    def extend(self, leaf_hashes: Sequence[bytes]) -> dict[NodeId, bytes]:
        """Append ``leaf_hashes``; return the nodes they complete (`completed_ranges` of them).

        `size` and `root` then describe the tree with these leaves appended.
        """
        old = self._border
        step = integrate(lambda ids: {i: old[i] for i in ids if i in old}, self.size, leaf_hashes)
        new = step.new_nodes
        self._border = {
            i: new[i] if i in new else old[i] for i in perfect_subtrees(0, step.new_size)
        }
        self.size, self.root = step.new_size, step.root
        return new
