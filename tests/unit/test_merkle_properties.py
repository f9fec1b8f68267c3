"""Hypothesis properties of proveniq.merkle: generated proofs verify, tampered ones do not.

A proof does not carry the tree size: a verifier that is told another size runs the very same
computation when that size gives the proof the same *shape* (which side each element joins on),
and then accepts (e.g. leaf 0 of sizes 3 and 4). The checkpoint, which signs size and root
together, binds them. So a changed index or size must fail exactly when the shape changes.
"""

from __future__ import annotations

from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proveniq.errors import ConsistencyProofError, InclusionProofError
from proveniq.log import merkle

N = 3000
LEAVES = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(N)]
SETTINGS = settings(max_examples=200, deadline=None)


@cache
def root_of(size: int) -> bytes:
    return merkle.root(LEAVES[:size])


def flip(h: bytes, bit: int) -> bytes:
    bit %= len(h) * 8
    b = bytearray(h)
    b[bit // 8] ^= 1 << (bit % 8)
    return bytes(b)


def inclusion_shape(index: int, size: int) -> tuple[str, ...]:
    """Per RFC 6962 PATH, bottom-up: does each sibling join on the left (L) or right (R)?"""
    if size == 1:
        return ()
    k = merkle.split_point(size)
    if index < k:
        return (*inclusion_shape(index, k), "R")
    return (*inclusion_shape(index - k, size - k), "L")


def consistency_shape(old: int, new: int) -> tuple[str, ...]:
    """Per RFC 6962 SUBPROOF: S = the old tree's last subtree (sent unless the old tree is
    perfect), L = left sibling (enters both roots), R = right sibling (new root only).

    Empty from size 0 and between equal sizes: those proofs are empty and the rules decide.
    """
    if old in (0, new):
        return ()

    def sub(m: int, n: int, whole: bool) -> tuple[str, ...]:
        if m == n:
            return () if whole else ("S",)
        k = merkle.split_point(n)
        if m <= k:
            return (*sub(m, k, whole), "R")
        return (*sub(m - k, n - k, False), "L")

    return sub(old, new, True)


sizes = st.integers(1, N)


@st.composite
def leaf_positions(draw: st.DrawFn) -> tuple[int, int]:
    size = draw(sizes)
    return draw(st.integers(0, size - 1)), size


@st.composite
def size_pairs(draw: st.DrawFn) -> tuple[int, int]:
    new = draw(st.integers(0, N))
    return draw(st.integers(0, new)), new


def near(value: int, low: int, high: int) -> st.SearchStrategy[int]:
    """Values close to ``value`` (and its double and half), where shapes often coincide."""
    candidates = {value + d for d in (-2, -1, 1, 2)} | {value * 2, value // 2}
    nearby = sorted(c for c in candidates if low <= c <= high)
    return (
        st.one_of(st.sampled_from(nearby), st.integers(low, high))
        if nearby
        else st.integers(low, high)
    )


# --- inclusion ---------------------------------------------------------------------------------


@SETTINGS
@given(leaf_positions())
def test_inclusion_proof_verifies(pos: tuple[int, int]) -> None:
    index, size = pos
    proof = merkle.inclusion_proof(LEAVES, index, size)
    assert len(proof) == len(inclusion_shape(index, size))
    merkle.verify_inclusion(LEAVES[index], index, size, proof, root_of(size))


@SETTINGS
@given(leaf_positions(), st.data())
def test_inclusion_bit_flip_fails(pos: tuple[int, int], data: st.DataObject) -> None:
    index, size = pos
    proof = merkle.inclusion_proof(LEAVES, index, size)
    leaf, root = LEAVES[index], root_of(size)
    targets = ["leaf", "root"] + [f"proof[{i}]" for i in range(len(proof))]
    target = data.draw(st.sampled_from(targets))
    bit = data.draw(st.integers(0, 255))
    if target == "leaf":
        leaf = flip(leaf, bit)
    elif target == "root":
        root = flip(root, bit)
    else:
        i = int(target[6:-1])
        proof = [*proof[:i], flip(proof[i], bit), *proof[i + 1 :]]
    with pytest.raises(InclusionProofError):
        merkle.verify_inclusion(leaf, index, size, proof, root)


@SETTINGS
@given(leaf_positions(), st.data())
def test_inclusion_other_index_or_size_fails_unless_same_shape(
    pos: tuple[int, int], data: st.DataObject
) -> None:
    index, size = pos
    proof = merkle.inclusion_proof(LEAVES, index, size)
    other_size = data.draw(near(size, 1, N)) if data.draw(st.booleans()) else size
    other_index = data.draw(near(index, 0, other_size - 1)) if other_size > 1 else 0
    if (other_index, other_size) == (index, size):
        other_index = (index + 1) % size
        if other_index == index:  # size 1: only the size can change
            other_size += 1
    args = (LEAVES[index], other_index, other_size, proof, root_of(size))
    if inclusion_shape(other_index, other_size) == inclusion_shape(index, size):
        # Within one tree size a leaf's position is bound; across sizes it need not be: leaf 128
        # of 161 and leaf 64 of 97 share a shape (each is leaf 0 of a 33-leaf right subtree).
        assert other_size != size or other_index == index
        merkle.verify_inclusion(*args)
    else:
        with pytest.raises(InclusionProofError):
            merkle.verify_inclusion(*args)


def test_same_shape_positions_accept_the_same_proof() -> None:
    # Size (and with it the position) is bound by the checkpoint, not by the proof.
    proof = merkle.inclusion_proof(LEAVES, 0, 3)
    merkle.verify_inclusion(LEAVES[0], 0, 4, proof, root_of(3))
    proof = merkle.inclusion_proof(LEAVES, 128, 161)
    merkle.verify_inclusion(LEAVES[128], 64, 97, proof, root_of(161))


@pytest.mark.parametrize("extra", [0, 1])
def test_inclusion_wrong_proof_length_fails(extra: int) -> None:
    proof = merkle.inclusion_proof(LEAVES, 5, 11)
    bad = [*proof, LEAVES[0]] if extra else proof[:-1]
    with pytest.raises(InclusionProofError) as info:
        merkle.verify_inclusion(LEAVES[5], 5, 11, bad, root_of(11))
    assert info.value.what == "proof length"


@pytest.mark.parametrize(("index", "size"), [(0, 0), (3, 3), (-1, 4)])
def test_inclusion_index_out_of_range_fails(index: int, size: int) -> None:
    with pytest.raises(InclusionProofError):
        merkle.verify_inclusion(LEAVES[0], index, size, [], root_of(1))


def test_inclusion_rejects_short_hashes() -> None:
    proof = merkle.inclusion_proof(LEAVES, 1, 2)
    for args in [
        (LEAVES[1][:31], 1, 2, proof, root_of(2)),
        (LEAVES[1], 1, 2, proof, root_of(2) + b"\0"),
        (LEAVES[1], 1, 2, [proof[0][:16]], root_of(2)),
    ]:
        with pytest.raises(InclusionProofError) as info:
            merkle.verify_inclusion(*args)
        assert info.value.what.endswith("length")


# --- consistency -------------------------------------------------------------------------------


@SETTINGS
@given(size_pairs())
def test_consistency_proof_verifies(pair: tuple[int, int]) -> None:
    old, new = pair
    proof = merkle.consistency_proof(LEAVES, old, new)
    shape = consistency_shape(old, new)
    assert len(proof) == (0 if old in (0, new) else len(shape))
    merkle.verify_consistency(old, new, root_of(old), root_of(new), proof)


@SETTINGS
@given(size_pairs(), st.data())
def test_consistency_bit_flip_fails(pair: tuple[int, int], data: st.DataObject) -> None:
    old, new = pair
    proof = merkle.consistency_proof(LEAVES, old, new)
    old_root, new_root = root_of(old), root_of(new)
    # From size 0 only the old root is checked (the new one is unconstrained by the rule).
    targets = ["old root"] + (["new root"] if old else []) + [f"{i}" for i in range(len(proof))]
    target = data.draw(st.sampled_from(targets))
    bit = data.draw(st.integers(0, 255))
    if target == "old root":
        old_root = flip(old_root, bit)
    elif target == "new root":
        new_root = flip(new_root, bit)
    else:
        i = int(target)
        proof = [*proof[:i], flip(proof[i], bit), *proof[i + 1 :]]
    with pytest.raises(ConsistencyProofError):
        merkle.verify_consistency(old, new, old_root, new_root, proof)


@SETTINGS
@given(size_pairs(), st.data())
def test_consistency_other_sizes_fail_unless_same_shape(
    pair: tuple[int, int], data: st.DataObject
) -> None:
    old, new = pair
    proof = merkle.consistency_proof(LEAVES, old, new)
    other_new = data.draw(near(new, 0, N)) if data.draw(st.booleans()) else new
    other_old = data.draw(near(old, 0, other_new))
    if (other_old, other_new) == (old, new):
        other_new += 1
    old_root, new_root = root_of(old), root_of(new)
    if other_old in (0, other_new):  # no proof to run: the size-0 and equal-size rules decide
        accepted = not proof and (other_old > 0 or old_root == merkle.EMPTY_ROOT)
        accepted &= other_old < other_new or old_root == new_root
    else:
        accepted = consistency_shape(other_old, other_new) == consistency_shape(old, new)
    args = (other_old, other_new, old_root, new_root, proof)
    if accepted:
        merkle.verify_consistency(*args)
    else:
        with pytest.raises(ConsistencyProofError):
            merkle.verify_consistency(*args)


def test_old_size_zero_rule() -> None:
    for new in (0, 1, 7, 8):
        merkle.verify_consistency(0, new, merkle.EMPTY_ROOT, root_of(new), [])
    with pytest.raises(ConsistencyProofError) as info:
        merkle.verify_consistency(0, 5, root_of(1), root_of(5), [])
    assert (info.value.what, info.value.expected) == ("old root", merkle.EMPTY_ROOT.hex())
    with pytest.raises(ConsistencyProofError):
        merkle.verify_consistency(0, 5, merkle.EMPTY_ROOT, root_of(5), [LEAVES[0]])


def test_equal_sizes_rule() -> None:
    merkle.verify_consistency(9, 9, root_of(9), root_of(9), [])
    with pytest.raises(ConsistencyProofError):
        merkle.verify_consistency(9, 9, root_of(9), root_of(8), [])
    with pytest.raises(ConsistencyProofError):
        merkle.verify_consistency(9, 9, root_of(9), root_of(9), [LEAVES[0]])


@pytest.mark.parametrize(("old", "new"), [(5, 4), (-1, 3)])
def test_consistency_bad_sizes_fail(old: int, new: int) -> None:
    with pytest.raises(ConsistencyProofError) as info:
        merkle.verify_consistency(old, new, root_of(4), root_of(4), [])
    assert info.value.what == "old size"


def test_consistency_wrong_proof_length_fails() -> None:
    proof = merkle.consistency_proof(LEAVES, 6, 13)
    for bad in (proof[:-1], [*proof, LEAVES[0]], [LEAVES[0], *proof]):
        with pytest.raises(ConsistencyProofError) as info:
            merkle.verify_consistency(6, 13, root_of(6), root_of(13), bad)
        assert info.value.what == "proof length"
