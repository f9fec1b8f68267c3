"""Audit: recompute the chain and the tree from the database and check every checkpoint.

Trust nothing stored that can be recomputed: each leaf is recomputed from its entry's fields,
payloads are re-hashed, `prev` links are followed, the tree is rebuilt with the kernel and
compared node by node, and every checkpoint's signature, size and root are checked against the
rebuilt tree. The report lists every divergence, the first one precisely (seq or node, expected
vs found).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from proveniq.errors import ProveniqError
from proveniq.log import proof
from proveniq.log.checkpoint import Checkpoint
from proveniq.log.entry import ZERO_HASH
from proveniq.log.integrate import MemoryNodeStore, integrate
from proveniq.log.note import NoteVerifier, open_note, parse_note
from proveniq.ports import AuditView, StoredCheckpoint

PAGE = 20_000


@dataclass
class AuditReport:
    entries: int = 0
    nodes: int = 0
    checkpoints: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def audit(
    view: AuditView,
    verifiers: Sequence[NoteVerifier],
    *,
    origin: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> AuditReport:
    report = AuditReport()
    say = progress or (lambda _: None)
    leaves = _chain(view, report, say)
    tree = MemoryNodeStore()
    tree.write(integrate(tree.read, 0, leaves).new_nodes)
    say(f"rebuilt the tree of {len(leaves)} leaves")
    checkpoints = view.checkpoints()
    _nodes(view, tree, len(leaves), checkpoints, report)
    _checkpoints(checkpoints, tree, len(leaves), verifiers, report, origin)
    say(f"checked {report.nodes} stored nodes and {report.checkpoints} checkpoints")
    return report


def _chain(view: AuditView, report: AuditReport, say: Callable[[str], None]) -> list[bytes]:
    leaves: list[bytes] = []
    prev, expected_seq = ZERO_HASH, 0
    while True:
        page = view.events_from(expected_seq, PAGE)
        if not page:
            return leaves
        for ev in page:
            entry, seq = ev.entry, ev.entry.seq
            if seq != expected_seq:
                report.problems.append(f"seq {expected_seq}: missing (next stored is {seq})")
                return leaves
            leaf = entry.leaf_hash()
            if ev.stored_leaf != leaf:
                found = ev.stored_leaf.hex() if ev.stored_leaf else "nothing"
                report.problems.append(
                    f"seq {seq}: stored leaf_hash {found}, recomputed from the entry {leaf.hex()}"
                )
            if entry.prev != prev:
                report.problems.append(
                    f"seq {seq}: prev {entry.prev.hex()}, expected the "
                    f"leaf hash of seq {seq - 1} {prev.hex()}"
                )
            if ev.payload is not None and hashlib.sha256(ev.payload).digest() != entry.payload_hash:
                report.problems.append(
                    f"seq {seq}: payload does not hash to payload_hash {entry.payload_hash.hex()}"
                )
            leaves.append(leaf)
            prev = leaf
            expected_seq += 1
        report.entries = expected_seq
        say(f"checked {expected_seq} entries")


def _nodes(
    view: AuditView,
    tree: MemoryNodeStore,
    size: int,
    checkpoints: Sequence[StoredCheckpoint],
    report: AuditReport,
) -> None:
    stored: dict[tuple[int, int], bytes] = {}
    last = (-1, -1)
    while True:
        rows = view.nodes_after(last, PAGE)
        if not rows:
            break
        stored.update(rows)
        last = rows[-1][0]
    report.nodes = len(stored)
    integrated = max((c.size for c in checkpoints), default=0)
    for level in range(max(integrated, 1).bit_length()):
        for idx in range(integrated >> level):  # every perfect subtree a seal must have stored
            if (level, idx) not in stored:
                report.problems.append(
                    f"node ({level}, {idx}): missing; checkpoint {integrated} covers it"
                )
    expected = tree.read(list(stored))
    for node_id, h in sorted(stored.items()):
        want = expected.get(node_id)
        if want is None:
            report.problems.append(
                f"node {node_id}: stored but the log of {size} entries has no such node"
            )
        elif want != h:
            report.problems.append(f"node {node_id}: stored {h.hex()}, expected {want.hex()}")


def _checkpoints(
    checkpoints: Sequence[StoredCheckpoint],
    tree: MemoryNodeStore,
    size: int,
    verifiers: Sequence[NoteVerifier],
    report: AuditReport,
    origin: str | None,
) -> None:
    report.checkpoints = len(checkpoints)
    for c in checkpoints:
        csize, croot, note = c.size, c.root, c.note
        where = f"checkpoint {csize}"
        try:
            open_note(note, verifiers)
            cp = Checkpoint.from_body(parse_note(note).body)
        except ProveniqError as e:
            report.problems.append(f"{where}: {e.message}")
            continue
        if origin is not None and cp.origin != origin:
            report.problems.append(f"{where}: origin {cp.origin!r}, expected {origin!r}")
        if cp.size != csize or cp.root_hash != bytes(croot):
            report.problems.append(
                f"{where}: signed note says size {cp.size} root "
                f"{cp.root_hash.hex()}, columns say size {csize} root "
                f"{bytes(croot).hex()}"
            )
        if csize > size:
            report.problems.append(f"{where}: covers {csize} entries but the log has {size}")
            continue
        want = proof.root_at(tree.read, csize)
        if cp.root_hash != want:
            report.problems.append(
                f"{where}: signed root {cp.root_hash.hex()}, recomputed {want.hex()}"
            )
