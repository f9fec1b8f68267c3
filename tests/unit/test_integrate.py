"""Incremental integration and proofs from stored nodes agree with the reference functions."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import cache
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proveniq.errors import FormatError, InternalError, ValidationError
from proveniq.log import merkle, proof
from proveniq.log.integrate import (
    Integration,
    MemoryNodeStore,
    NodeId,
    integrate,
    integrate_node_ids,
    perfect_subtrees,
)

N = 3000
LEAVES = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(N)]
SETTINGS = settings(max_examples=100, deadline=None)


@cache
def root_of(size: int) -> bytes:
    return merkle.root(LEAVES[:size])


class CountingStore(MemoryNodeStore):
    """Records each batch of ids read, to check the one-call, O(log n)-ids promise."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[NodeId]] = []

    def read(self, ids: Sequence[NodeId]) -> dict[NodeId, bytes]:
        self.calls.append(list(ids))
        return super().read(ids)

    def take_calls(self) -> list[list[NodeId]]:
        calls, self.calls = self.calls, []
        return calls


def log_bound(n: int) -> int:
    return 2 * math.ceil(math.log2(max(n, 1))) + 2


def build(batches: Sequence[int]) -> tuple[CountingStore, list[Integration]]:
    store, size, steps = CountingStore(), 0, []
    for count in batches:
        step = integrate(store.read, size, LEAVES[size : size + count])
        store.write(step.new_nodes)
        steps.append(step)
        size = step.new_size
    store.take_calls()
    return store, steps


@st.composite
def batch_splits(draw: st.DrawFn, max_size: int = N) -> list[int]:
    """A tree size and an arbitrary split of it into batches (empty batches included)."""
    size = draw(st.integers(0, max_size))
    cuts = sorted(draw(st.lists(st.integers(0, size), max_size=12)))
    bounds = [0, *cuts, size]
    return [b - a for a, b in pairwise(bounds)]


def completed_nodes(from_size: int, new_size: int) -> set[NodeId]:
    """Perfect nodes whose last leaf lies in [from_size, new_size)."""
    return {
        (level, index)
        for level in range(new_size.bit_length())
        for index in range(from_size >> level, new_size >> level)
    }


@SETTINGS
@given(batch_splits())
def test_integration_matches_reference_at_every_step(batches: list[int]) -> None:
    store, size = CountingStore(), 0
    for count in batches:
        step = integrate(store.read, size, LEAVES[size : size + count])
        calls = store.take_calls()
        assert calls == ([integrate_node_ids(size)] if size else [])
        assert len(integrate_node_ids(size)) <= size.bit_length()
        assert step.new_size == size + count
        assert step.root == root_of(step.new_size)
        assert set(step.new_nodes) == completed_nodes(size, step.new_size)
        store.write(step.new_nodes)
        size = step.new_size
        assert proof.root_at(store.read, size) == step.root
        store.take_calls()
    assert len(store.nodes) == sum(size >> level for level in range(size.bit_length()))


def test_new_nodes_are_subtree_roots() -> None:
    store, steps = build([5, 0, 6, 1, 20])
    for (level, index), h in store.nodes.items():
        assert h == merkle.root(LEAVES[index << level : (index + 1) << level])
    assert [s.new_size for s in steps] == [5, 5, 11, 12, 32]


def test_empty_batch_keeps_size_and_root() -> None:
    store, _ = build([13])
    step = integrate(store.read, 13, [])
    assert (step.new_size, step.root, step.new_nodes) == (13, root_of(13), {})
    assert integrate(MemoryNodeStore().read, 0, []) == Integration(0, merkle.EMPTY_ROOT, {})


@SETTINGS
@given(batch_splits(), st.data())
def test_stored_proofs_match_reference(batches: list[int], data: st.DataObject) -> None:
    store, _ = build(batches)
    n = sum(batches)
    if n == 0:
        return
    for _ in range(5):
        size = data.draw(st.integers(1, n))
        index = data.draw(st.integers(0, size - 1))
        got = proof.inclusion_proof(store.read, index, size)
        assert got == merkle.inclusion_proof(LEAVES, index, size)
        (ids,) = store.take_calls() or [[]]
        assert ids == proof.inclusion_proof_node_ids(index, size)
        assert len(ids) <= log_bound(size)

        old = data.draw(st.integers(0, size))
        got = proof.consistency_proof(store.read, old, size)
        assert got == merkle.consistency_proof(LEAVES, old, size)
        calls = store.take_calls()
        assert len(calls) <= 1
        assert (calls[0] if calls else []) == proof.consistency_proof_node_ids(old, size)
        assert len(proof.consistency_proof_node_ids(old, size)) <= log_bound(size)

        assert proof.root_at(store.read, size) == root_of(size)
        assert len(store.take_calls()[0]) <= size.bit_length()


@pytest.mark.parametrize("n", [1, 2, 3, 7, 8, 9, 33, 64, 100])
def test_stored_proofs_for_every_index_and_size(n: int) -> None:
    store, _ = build([n])
    for size in range(n + 1):
        assert proof.root_at(store.read, size) == root_of(size)
        for index in range(size):
            got = proof.inclusion_proof(store.read, index, size)
            assert got == merkle.inclusion_proof(LEAVES, index, size)
            merkle.verify_inclusion(LEAVES[index], index, size, got, root_of(size))
        for old in range(size + 1):
            got = proof.consistency_proof(store.read, old, size)
            assert got == merkle.consistency_proof(LEAVES, old, size)
            merkle.verify_consistency(old, size, root_of(old), root_of(size), got)


@pytest.mark.parametrize("n", [2**20 - 1, 2**20, 10**6 + 7, 2**40 + 12345])
def test_node_ids_stay_logarithmic_for_large_trees(n: int) -> None:
    for index in (0, 1, n // 3, n - 2, n - 1):
        assert len(proof.inclusion_proof_node_ids(index, n)) <= log_bound(n)
    for old in (1, 2, n // 2, n // 2 + 1, n - 1):
        assert len(proof.consistency_proof_node_ids(old, n)) <= log_bound(n)
    assert len(integrate_node_ids(n)) <= n.bit_length()


def test_perfect_subtrees() -> None:
    assert perfect_subtrees(0, 0) == []
    assert perfect_subtrees(0, 13) == [(3, 0), (2, 2), (0, 12)]
    assert perfect_subtrees(8, 14) == [(2, 2), (1, 6)]


def test_missing_node_is_internal_error() -> None:
    store, _ = build([10])
    del store.nodes[(3, 0)]
    for call in (
        lambda: integrate(store.read, 10, LEAVES[10:11]),
        lambda: proof.inclusion_proof(store.read, 9, 10),
        lambda: proof.root_at(store.read, 10),
        lambda: proof.inclusion_proof(store.read, 0, 11),  # beyond the stored tree
    ):
        with pytest.raises(InternalError):
            call()


def test_bad_arguments() -> None:
    read = MemoryNodeStore().read
    with pytest.raises(FormatError):
        integrate(read, 0, [b"short"])
    for call in (
        lambda: integrate(read, -1, []),
        lambda: proof.inclusion_proof(read, 3, 3),
        lambda: proof.inclusion_proof(read, -1, 3),
        lambda: proof.consistency_proof(read, 4, 3),
        lambda: proof.consistency_proof(read, -1, 3),
        lambda: proof.root_at(read, -1),
    ):
        with pytest.raises(ValidationError):
            call()


def test_reader_may_return_extra_nodes() -> None:
    store, _ = build([21])

    def generous(ids: Sequence[NodeId]) -> Mapping[NodeId, bytes]:
        return store.nodes

    assert proof.inclusion_proof(generous, 4, 21) == merkle.inclusion_proof(LEAVES, 4, 21)
    assert integrate(generous, 21, LEAVES[21:30]).root == root_of(30)
