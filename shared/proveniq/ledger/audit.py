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
from typing import Any

from proveniq.adapters.postgres.ledger import EVENT_COLUMNS, stored_event
from proveniq.errors import ProveniqError
from proveniq.log import proof
from proveniq.log.checkpoint import Checkpoint
from proveniq.log.entry import ZERO_HASH
from proveniq.log.integrate import MemoryNodeStore, integrate
from proveniq.log.note import NoteVerifier, open_note, parse_note

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
    cur: Any,
    verifiers: Sequence[NoteVerifier],
    *,
    origin: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> AuditReport:
    report = AuditReport()
    say = progress or (lambda _: None)
    leaves = _chain(cur, report, say)
    tree = MemoryNodeStore()
    tree.write(integrate(tree.read, 0, leaves).new_nodes)
    say(f"rebuilt the tree of {len(leaves)} leaves")
    _nodes(cur, tree, len(leaves), report)
    _checkpoints(cur, tree, len(leaves), verifiers, report, origin)
    say(f"checked {report.nodes} stored nodes and {report.checkpoints} checkpoints")
    return report


def _chain(cur: Any, report: AuditReport, say: Callable[[str], None]) -> list[bytes]:
    leaves: list[bytes] = []
    prev, expected_seq = ZERO_HASH, 0
    while True:
        cur.execute(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE seq >= %s ORDER BY seq LIMIT %s",  # noqa: S608
            (expected_seq, PAGE),
        )
        rows = cur.fetchall()
        if not rows:
            return leaves
        for row in rows:
            ev = stored_event(row)
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


def _nodes(cur: Any, tree: MemoryNodeStore, size: int, report: AuditReport) -> None:
    stored: dict[tuple[int, int], bytes] = {}
    last = (-1, -1)
    while True:
        cur.execute(
            "SELECT level, idx, hash FROM tree_nodes WHERE (level, idx) > (%s, %s) "
            "ORDER BY level, idx LIMIT %s",
            (last[0], last[1], PAGE),
        )
        rows = cur.fetchall()
        if not rows:
            break
        for level, idx, h in rows:
            stored[(level, idx)] = bytes(h)
        last = (rows[-1][0], rows[-1][1])
    report.nodes = len(stored)
    cur.execute("SELECT coalesce(max(size), 0) FROM checkpoints")
    (integrated,) = cur.fetchone()
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
    cur: Any,
    tree: MemoryNodeStore,
    size: int,
    verifiers: Sequence[NoteVerifier],
    report: AuditReport,
    origin: str | None,
) -> None:
    cur.execute("SELECT size, root, note FROM checkpoints ORDER BY size")
    rows = cur.fetchall()
    report.checkpoints = len(rows)
    for csize, croot, note in rows:
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
