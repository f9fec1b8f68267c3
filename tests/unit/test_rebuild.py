"""The streaming TreeBuilder agrees with the reference root, with `integrate` node for node, and
holds only the right border; `completed_ranges` names exactly the nodes each step completes."""

from __future__ import annotations

import base64
import json
from functools import cache
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proveniq.errors import ValidationError
from proveniq.log import merkle
from proveniq.log.integrate import MemoryNodeStore, NodeId, integrate, perfect_subtrees
from proveniq.log.rebuild import TreeBuilder, completed_ranges

N = 2500
LEAVES = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(N)]
CCTV = Path(__file__).resolve().parent.parent / "data" / "rfc6962" / "cctv" / "merkle_tree.json"


@cache
def full_tree() -> dict[NodeId, bytes]:
    """Every perfect node of the tree of all N leaves, built by the seal's `integrate`."""
    store = MemoryNodeStore()
    store.write(integrate(store.read, 0, LEAVES).new_nodes)
    return store.nodes


def ids_of(begin: int, end: int) -> set[NodeId]:
    return {(lv, i) for lv, lo, hi in completed_ranges(begin, end) for i in range(lo, hi)}


def test_cctv_roots_leaf_by_leaf() -> None:
    cases = json.loads(CCTV.read_text())
    tree = TreeBuilder()
    assert tree.root == merkle.EMPTY_ROOT
    for d in cases:
        tree.extend([merkle.leaf_hash(d["leaf_data"].encode())])
        assert tree.root == base64.b64decode(d["root_hash"]), tree.size


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 300), min_size=1, max_size=25))
def test_any_chunking_matches_integrate_and_the_reference_root(chunks: list[int]) -> None:
    tree, begin, emitted = TreeBuilder(), 0, {}
    for k in chunks:
        end = min(N, begin + k)
        new = tree.extend(LEAVES[begin:end])
        assert set(new) == ids_of(begin, end)  # exactly the nodes these leaves complete
        assert not set(new) & set(emitted)  # each node once
        emitted.update(new)
        assert (tree.size, tree.root) == (end, merkle.root(LEAVES[:end]))
        border = perfect_subtrees(0, end)
        assert tree.border == {i: full_tree()[i] for i in border}
        assert len(border) <= max(end, 1).bit_length()
        begin = end
    want = ids_of(0, begin)
    assert emitted == {i: h for i, h in full_tree().items() if i in want}


@pytest.mark.parametrize("size", [1, 2, 3, 7, 8, 9, 1023, 1024, 1025, 2047, N])
def test_one_extend_rebuilds_the_whole_tree(size: int) -> None:
    tree = TreeBuilder()
    new = tree.extend(LEAVES[:size])
    assert tree.root == merkle.root(LEAVES[:size])
    want = ids_of(0, size)
    assert new == {i: h for i, h in full_tree().items() if i in want}
    # the count of perfect nodes of a tree of n leaves: n at level 0, n >> 1 at level 1, ...
    assert len(new) == sum(size >> lv for lv in range(size.bit_length()))


def test_empty_extend_changes_nothing() -> None:
    tree = TreeBuilder()
    tree.extend(LEAVES[:5])
    root = tree.root
    assert tree.extend([]) == {}
    assert (tree.size, tree.root) == (5, root)


def test_completed_ranges() -> None:
    assert completed_ranges(0, 0) == []
    assert completed_ranges(0, 1) == [(0, 0, 1)]
    assert completed_ranges(0, 6) == [(0, 0, 6), (1, 0, 3), (2, 0, 1)]
    # leaf 7 completes (0,7), (1,3), (2,1) and (3,0); leaf 8 only (0,8)
    assert completed_ranges(7, 9) == [(0, 7, 9), (1, 3, 4), (2, 1, 2), (3, 0, 1)]
    with pytest.raises(ValidationError):
        completed_ranges(5, 4)
    with pytest.raises(ValidationError):
        completed_ranges(-1, 4)
