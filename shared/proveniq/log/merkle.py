"""RFC 6962 / RFC 9162 Merkle tree hashing, reference proofs and proof verification.

The tree hashes leaves as ``SHA-256(0x00 || data)`` and interior nodes as
``SHA-256(0x01 || left || right)``; the root of ``n > 1`` leaves splits them at ``k``, the largest
power of two smaller than ``n``. The reference functions (`root`, `inclusion_proof`,
`consistency_proof`) work over a full list of 32-byte leaf hashes and follow the RFC 6962
definitions literally; the log serves proofs from stored nodes instead (see `proveniq.proof`).

Verification uses the RFC 9162 §2.1.3.2 / §2.1.4.2 algorithms and raises `InclusionProofError` /
`ConsistencyProofError` on any mismatch or malformed input; every hash must be 32 bytes.

Rule for an old size of 0: the empty tree is a prefix of every tree, so a consistency proof from
size 0 is accepted iff the proof is empty and the old root is `EMPTY_ROOT` (the CCTV suite's rule;
the transparency-dev suite rejects ``size1 = 0`` outright). Equal sizes: accepted iff the proof is
empty and both roots are equal.
"""

from __future__ import annotations

from collections.abc import Sequence
from hashlib import sha256

from proveniq.errors import ConsistencyProofError, InclusionProofError, ValidationError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root",
    "split_point",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
EMPTY_ROOT = sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """RFC 6962 leaf hash: SHA-256(0x00 || data)."""
    return sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 interior node hash: SHA-256(0x01 || left || right)."""
    return sha256(b"\x01" + left + right).digest()


def split_point(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


# --- reference functions over a list of leaf hashes ------------------------------------------


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH(D[n]): the root of all ``leaf_hashes``; `EMPTY_ROOT` for none."""
    if not leaf_hashes:
        return EMPTY_ROOT
    return _mth(leaf_hashes, 0, len(leaf_hashes))


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int, size: int) -> list[bytes]:
    """PATH(index, D[0:size]): the audit path of leaf ``index``, its sibling first."""
    _check_size(leaf_hashes, size, "size")
    if not 0 <= index < size:
        raise ValidationError(f"index {index} is not below tree size {size}", field="index")
    return _path(leaf_hashes, index, 0, size)


def consistency_proof(leaf_hashes: Sequence[bytes], old_size: int, new_size: int) -> list[bytes]:
    """PROOF(old_size, D[0:new_size]) in the RFC 6962 SUBPROOF layout.

    Sizes 0 -> n and n -> n give an empty proof (see the module docstring for the size-0 rule).
    """
    _check_size(leaf_hashes, new_size, "new_size")
    if not 0 <= old_size <= new_size:
        raise ValidationError(f"old size {old_size} is not within 0..{new_size}", field="old_size")
    if old_size in (0, new_size):
        return []
    return _subproof(leaf_hashes, old_size, 0, new_size, True)


def _check_size(leaf_hashes: Sequence[bytes], size: int, field: str) -> None:
    if not 0 <= size <= len(leaf_hashes):
        raise ValidationError(f"{field} {size} is not within 0..{len(leaf_hashes)}", field=field)


def _mth(leaves: Sequence[bytes], lo: int, hi: int) -> bytes:
    if hi - lo == 1:
        return leaves[lo]
    k = lo + split_point(hi - lo)
    return node_hash(_mth(leaves, lo, k), _mth(leaves, k, hi))


def _path(leaves: Sequence[bytes], m: int, lo: int, hi: int) -> list[bytes]:
    if hi - lo == 1:
        return []
    k = split_point(hi - lo)
    if m < k:
        return [*_path(leaves, m, lo, lo + k), _mth(leaves, lo + k, hi)]
    return [*_path(leaves, m - k, lo + k, hi), _mth(leaves, lo, lo + k)]


def _subproof(leaves: Sequence[bytes], m: int, lo: int, hi: int, whole: bool) -> list[bytes]:
    if m == hi - lo:
        return [] if whole else [_mth(leaves, lo, hi)]
    k = split_point(hi - lo)
    if m <= k:
        return [*_subproof(leaves, m, lo, lo + k, whole), _mth(leaves, lo + k, hi)]
    return [*_subproof(leaves, m - k, lo + k, hi, False), _mth(leaves, lo, lo + k)]


# --- verification (RFC 9162 §2.1.3.2 and §2.1.4.2) --------------------------------------------


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree of ``size`` leaves with ``root``.

    Raises `InclusionProofError` (``what``/``expected``/``found`` filled) on any failure.
    """
    err = InclusionProofError
    if not 0 <= index < size:
        raise err(
            f"index {index} is not below tree size {size}",
            what="index",
            expected=f"< {size}",
            found=str(index),
        )
    _check_hashes(err, [("leaf hash", leaf_hash), ("root", root)], proof)
    inner = (index ^ (size - 1)).bit_length()  # levels where the path descends below the edge
    _check_length(err, inner + (index >> inner).bit_count(), len(proof))

    # With the exact length checked, RFC 9162's "sn == 0" checks can no longer fail.
    fn, sn = index, size - 1
    r = leaf_hash
    for p in proof:
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    _check_root(err, "root", root, r)


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree of ``old_size`` leaves is a prefix of the tree of ``new_size`` leaves.

    Raises `ConsistencyProofError` on any failure. Size 0 -> n is accepted iff the proof is empty
    and ``old_root`` is `EMPTY_ROOT` (the empty tree is a prefix of every tree; CCTV's rule,
    transparency-dev rejects size 0); n -> n iff the proof is empty and the roots are equal.
    """
    err = ConsistencyProofError
    if not 0 <= old_size <= new_size:
        raise err(
            f"old size {old_size} is not within 0..{new_size}",
            what="old size",
            expected=f"0..{new_size}",
            found=str(old_size),
        )
    _check_hashes(err, [("old root", old_root), ("new root", new_root)], proof)
    if old_size in (0, new_size):  # nothing to prove: the proof is empty and the rules decide
        _check_length(err, 0, len(proof))
        if old_size == 0:
            _check_root(err, "old root", EMPTY_ROOT, old_root)
        if old_size == new_size:
            _check_root(err, "new root", old_root, new_root)
        return

    shift = (old_size & -old_size).bit_length() - 1  # trailing zero bits of old_size
    fn, sn = (old_size - 1) >> shift, (new_size - 1) >> shift
    inner = (fn ^ sn).bit_length()
    # A perfect old tree is itself a node of the new tree: its root seeds the path, unsent.
    seeded = fn == 0
    _check_length(err, (0 if seeded else 1) + inner + (fn >> inner).bit_count(), len(proof))
    path = [old_root, *proof] if seeded else list(proof)

    fr = sr = path[0]
    for c in path[1:]:
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    _check_root(err, "old root", old_root, fr)
    _check_root(err, "new root", new_root, sr)


_Err = type[InclusionProofError] | type[ConsistencyProofError]


def _check_hashes(err: _Err, named: Sequence[tuple[str, bytes]], proof: Sequence[bytes]) -> None:
    for name, h in [*named, *((f"proof[{i}]", p) for i, p in enumerate(proof))]:
        if len(h) != HASH_SIZE:
            raise err(
                f"{name} is {len(h)} bytes, not {HASH_SIZE}",
                what=f"{name} length",
                expected=str(HASH_SIZE),
                found=str(len(h)),
            )


def _check_length(err: _Err, want: int, got: int) -> None:
    if got != want:
        raise err(
            f"proof has {got} hashes, expected {want}",
            what="proof length",
            expected=str(want),
            found=str(got),
        )


def _check_root(err: _Err, what: str, want: bytes, got: bytes) -> None:
    if got != want:
        raise err(
            f"{what} mismatch: expected {want.hex()}, calculated {got.hex()}",
            what=what,
            expected=want.hex(),
            found=got.hex(),
        )
