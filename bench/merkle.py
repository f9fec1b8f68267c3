"""Merkle benchmark: incremental integration, roots and proofs from stored nodes.

    python bench/merkle.py [--leaves N] [--batch B] [--proofs P] [--seed S]

Prints one table for N leaves (default 1,000,000), integrated B leaves per `integrate` call
(default 1,000) into a `MemoryNodeStore`, with two ratios measured in the same run:
(a) against the raw hashlib SHA-256 ceiling for as many 65-byte node hashes as integration did;
(b) against PyPI pymerkle 7.0's InmemoryTree doing the same work (it hashes raw entries itself, so
our side of that row includes leaf hashing). Progress goes to stderr (bench/_harness.py).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import platform
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import TypeVar

from _harness import log
from pymerkle import InmemoryTree

from proveniq.log import merkle, proof
from proveniq.log.integrate import MemoryNodeStore, integrate

T = TypeVar("T")


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def rate(count: float, seconds: float, unit: str) -> str:
    per_second = count / seconds if seconds else float("inf")
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if per_second >= scale:
            return f"{per_second / scale:,.2f} {suffix} {unit}/s"
    return f"{per_second:,.1f} {unit}/s"


def integrate_all(
    store: MemoryNodeStore, leaf_hashes: list[bytes], batch: int
) -> tuple[bytes, int, float]:
    """Integrate every leaf hash, ``batch`` per call, writing the new nodes to ``store``.

    Returns the root, the node hashes integration did, and the seconds spent in `integrate`.
    """
    size, hashes, in_calls, root = 0, 0, 0.0, merkle.EMPTY_ROOT
    step = max(len(leaf_hashes) // 10, 1)
    for start in range(0, len(leaf_hashes), batch):
        chunk = leaf_hashes[start : start + batch]
        started = time.perf_counter()
        result = integrate(store.read, size, chunk)
        in_calls += time.perf_counter() - started
        store.write(result.new_nodes)
        # Every new node above level 0 cost one hash; folding the border into the root, the rest.
        hashes += len(result.new_nodes) - len(chunk) + result.new_size.bit_count() - 1
        if result.new_size // step != size // step:
            log(f"integrated {result.new_size:,} / {len(leaf_hashes):,}")
        size, root = result.new_size, result.root
    return root, hashes, in_calls


def sha256_ceiling(count: int) -> float:
    """Seconds for ``count`` bare SHA-256 digests of 65-byte inputs (a node hash's input size)."""
    data, sha256 = bytes(65), hashlib.sha256
    start = time.perf_counter()
    for _ in itertools.repeat(None, count):
        sha256(data).digest()
    return time.perf_counter() - start


@dataclass
class Ours:
    """Timings (seconds) of our side, plus what the peer comparison reuses."""

    leaf_hashing: float
    integrate_total: float  # integrate() calls + store.write
    integrate_calls: float
    node_hashes: int
    reference_root: float
    root_at: float  # per call
    inclusion: float
    consistency: float
    root: bytes
    inclusion_args: list[tuple[int, int]]
    inclusion_proofs: list[list[bytes]]
    store: MemoryNodeStore


def measure_ours(entries: list[bytes], batch: int, proofs: int, rng: random.Random) -> Ours:
    n = len(entries)
    log(f"hashing {n:,} entries")
    leaf_hashes, t_leaf = timed(lambda: [merkle.leaf_hash(e) for e in entries])
    store = MemoryNodeStore()
    (root, node_hashes, t_calls), t_integrate = timed(
        lambda: integrate_all(store, leaf_hashes, batch)
    )
    log("computing the reference root")
    ref_root, t_ref_root = timed(lambda: merkle.root(leaf_hashes))
    reps = 1_000
    roots, t_root_at = timed(lambda: [proof.root_at(store.read, n) for _ in range(reps)])
    assert root == ref_root == roots[-1], "integration root differs from the reference root"

    incl_args = [(rng.randrange(s), s) for s in (rng.randint(1, n) for _ in range(proofs))]
    cons_args = [(rng.randint(0, s), s) for s in (rng.randint(1, n) for _ in range(proofs))]
    log(f"building {proofs:,} inclusion and {proofs:,} consistency proofs")
    incl, t_incl = timed(lambda: [proof.inclusion_proof(store.read, i, s) for i, s in incl_args])
    cons, t_cons = timed(lambda: [proof.consistency_proof(store.read, o, s) for o, s in cons_args])
    for (i, s), p in list(zip(incl_args, incl, strict=True))[:200]:
        merkle.verify_inclusion(leaf_hashes[i], i, s, p, proof.root_at(store.read, s))
    for (o, s), p in list(zip(cons_args, cons, strict=True))[:200]:
        roots = [proof.root_at(store.read, o), proof.root_at(store.read, s)]
        merkle.verify_consistency(o, s, roots[0], roots[1], p)
    return Ours(
        leaf_hashing=t_leaf,
        integrate_total=t_integrate,
        integrate_calls=t_calls,
        node_hashes=node_hashes,
        reference_root=t_ref_root,
        root_at=t_root_at / reps,
        inclusion=t_incl,
        consistency=t_cons,
        root=root,
        inclusion_args=incl_args,
        inclusion_proofs=incl,
        store=store,
    )


def measure_pymerkle(
    entries: list[bytes], ours: Ours, count: int
) -> list[tuple[str, float, float]]:
    """(work, ours, pymerkle) seconds for appending all entries, the root, ``count`` proofs."""
    log(f"pymerkle: appending {len(entries):,} entries")
    tree = InmemoryTree()

    def append_all() -> None:
        for e in entries:
            tree.append_entry(e)

    _, t_append = timed(append_all)
    peer_root, t_root = timed(tree.get_root)
    assert peer_root == ours.root, "pymerkle root differs from ours"
    args = ours.inclusion_args[:count]
    log(f"pymerkle: {len(args):,} inclusion proofs")
    peer_proofs, t_incl = timed(lambda: [tree.prove_inclusion(i + 1, s) for i, s in args])
    # pymerkle's path[0] is the leaf hash itself; the rest is the RFC 6962 audit path.
    assert [list(p.path[1:]) for p in peer_proofs[:100]] == ours.inclusion_proofs[:100]
    read = ours.store.read
    _, t_ours_incl = timed(lambda: [proof.inclusion_proof(read, i, s) for i, s in args])
    return [
        (
            "append N entries (hash + build tree)",
            ours.leaf_hashing + ours.integrate_total,
            t_append,
        ),
        ("root of the whole tree", ours.root_at, t_root),
        (f"{len(args):,} inclusion proofs", t_ours_incl, t_incl),
    ]


def report(
    args: argparse.Namespace, ours: Ours, ceiling: float, peer: list[tuple[str, float, float]]
) -> None:
    n, p = args.leaves, args.proofs
    rows = [
        ("leaf hashing, SHA-256(0x00 || 8-byte entry)", ours.leaf_hashing, n, "leaves"),
        (f"integrate + store.write, {args.batch:,} per call", ours.integrate_total, n, "leaves"),
        ("  of which inside integrate() calls", ours.integrate_calls, n, "leaves"),
        ("root: reference merkle.root over all leaves", ours.reference_root, 1, "roots"),
        ("root: proof.root_at from stored nodes", ours.root_at, 1, "roots"),
        (f"{p:,} inclusion proofs from stored nodes", ours.inclusion, p, "proofs"),
        (f"{p:,} consistency proofs from stored nodes", ours.consistency, p, "proofs"),
    ]
    version = metadata.version("pymerkle")
    print(f"\nMerkle benchmark: {n:,} leaves; Python {platform.python_version()}; ", end="")
    print(f"pymerkle {version}; seed {args.seed}\n")
    print(f"{'operation':<50}{'seconds':>12}  {'rate':>22}")
    print("-" * 86)
    for name, seconds, count, unit in rows:
        print(f"{name:<50}{seconds:>12.6f}  {rate(count, seconds, unit):>22}")
    h, calls = ours.node_hashes, ours.integrate_calls
    print("\n(a) hashlib ceiling: as many bare SHA-256 of 65-byte inputs, in a tight loop")
    print(f"    node hashes done by integrate: {h:,}")
    print(f"    raw hashlib.sha256: {ceiling:.3f} s ({rate(h, ceiling, 'hashes')})")
    print(f"    integrate() calls:  {calls:.3f} s ({rate(h, calls, 'hashes')})")
    print(f"    ours / ceiling (time): {calls / ceiling:.2f}x for integrate() calls, ", end="")
    print(f"{ours.integrate_total / ceiling:.2f}x with store writes")
    print(f"\n(b) pymerkle {version} InmemoryTree, same work (it hashes raw entries itself)")
    print(f"    {'work':<40}{'ours (s)':>12}{'pymerkle (s)':>14}{'ours/pymerkle':>15}")
    for name, mine, theirs in peer:
        print(f"    {name:<40}{mine:>12.6f}{theirs:>14.6f}{mine / theirs:>15.3f}")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--leaves", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1_000, help="leaves per integrate call")
    parser.add_argument("--proofs", type=int, default=20_000, help="proofs of each kind")
    parser.add_argument("--peer-proofs", type=int, default=2_000, help="inclusion proofs, (b)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.leaves < 1:
        parser.error("--leaves must be at least 1")

    entries = [i.to_bytes(8, "big") for i in range(args.leaves)]
    ours = measure_ours(entries, args.batch, args.proofs, random.Random(args.seed))
    log(f"hashlib ceiling: {ours.node_hashes:,} SHA-256 over 65 bytes")
    ceiling = sha256_ceiling(ours.node_hashes)
    peer = measure_pymerkle(entries, ours, args.peer_proofs)
    report(args, ours, ceiling, peer)


if __name__ == "__main__":
    main()
