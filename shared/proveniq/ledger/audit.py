"""Audit: recompute the chain and the tree from the database and check every checkpoint.

Trust nothing stored that can be recomputed: each leaf is recomputed from its entry's fields,
payloads are re-hashed, `prev` links are followed, the tree is rebuilt with the kernel and
compared node by node, and every checkpoint's signature, size and root are checked against the
rebuilt tree. The report lists every divergence, the first one precisely (seq or node, expected
vs found).

The audit streams: memory is O(log n) plus one page, whatever the log's size. Entries are read
PAGE at a time in seq order; their recomputed leaves go into a `TreeBuilder` (the tree's right
border only), which returns the perfect nodes each page completes; those are compared with the
stored nodes of the same index ranges (`AuditView.nodes_in`, one range scan per level) and
dropped. Each checkpoint is checked when the rebuilt tree reaches its size (checkpoints are
read in size order, a page at a time). Stored nodes the log has no place for are found at the
end, level by level beyond the log's size (`AuditView.nodes_from`). Each kind of problem lists
at most LISTED lines, then counts the rest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from proveniq.errors import InternalError, ProveniqError
from proveniq.log.checkpoint import Checkpoint
from proveniq.log.entry import ZERO_HASH
from proveniq.log.integrate import NodeId
from proveniq.log.note import NoteVerifier, open_note, parse_note
from proveniq.log.rebuild import TreeBuilder, completed_ranges
from proveniq.ports import AuditView, StoredCheckpoint, StoredEvent

PAGE = 10_000  # entries per page (and stored nodes per page beyond the log's size)
CHECKPOINT_PAGE = 1_000
LISTED = 10_000  # problems listed per kind; the rest are counted in one line
LEVELS = 64  # tree_nodes.level is below 64


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
    return _Audit(view, verifiers, origin, progress or (lambda _: None)).run()


class _Listed:
    """The problems of one kind: at most LISTED of them, sorted by key, then a count."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.items: list[tuple[tuple[int, ...], str]] = []
        self.more = 0

    def room(self) -> int:
        return LISTED - len(self.items)

    def add(self, text: str, key: tuple[int, ...] = ()) -> None:
        if self.room() > 0:
            self.items.append((key, text))
        else:
            self.more += 1

    def lines(self) -> list[str]:
        listed = [text for _, text in sorted(self.items, key=lambda item: item[0])]
        return listed + ([f"... and {self.more} more {self.kind}"] if self.more else [])


class _Audit:
    def __init__(
        self,
        view: AuditView,
        verifiers: Sequence[NoteVerifier],
        origin: str | None,
        say: Callable[[str], None],
    ) -> None:
        self.view, self.verifiers, self.origin, self.say = view, verifiers, origin, say
        self.tree = TreeBuilder()
        self.chain = _Listed("entry problems")
        self.missing = _Listed("missing nodes")
        self.stored = _Listed("stored node problems")  # wrong or extra, in node order
        self.signed = _Listed("checkpoint problems")
        latest = view.latest_checkpoint()
        self.integrated = 0 if latest is None else latest.size  # nodes up to here must exist
        self.checkpoints = _checkpoints(view)
        self.next_checkpoint = next(self.checkpoints, None)
        self.nodes = self.checked = 0
        self.prev, self.broken = ZERO_HASH, False

    def run(self) -> AuditReport:
        while not self.broken:
            begin = self.tree.size
            page = self.view.events_from(begin, PAGE)
            if not page:
                break
            leaves = self._chain(page)
            del page
            self._compare(begin, self._extend(leaves))
            self.say(f"checked {self.tree.size} entries and {self.nodes} stored nodes")
        size = self.tree.size
        self.say(f"rebuilt the tree of {size} leaves")
        while self.next_checkpoint is not None:  # checkpoints beyond the log
            self._checkpoint(self.next_checkpoint, None)
            self.next_checkpoint = next(self.checkpoints, None)
        for level in range(LEVELS):
            self._beyond(level, size)
        self.say(f"checked {self.nodes} stored nodes and {self.checked} checkpoints")
        problems = [
            *self.chain.lines(),
            *self.missing.lines(),
            *self.stored.lines(),
            *self.signed.lines(),
        ]
        return AuditReport(
            entries=size, nodes=self.nodes, checkpoints=self.checked, problems=problems
        )

    # ---- the chain -------------------------------------------------------------------------

    def _chain(self, page: Sequence[StoredEvent]) -> list[bytes]:
        """Check one page of entries in seq order; their recomputed leaf hashes, up to a gap."""
        leaves: list[bytes] = []
        prev, expected_seq, add = self.prev, self.tree.size, self.chain.add
        for ev in page:
            entry, seq = ev.entry, ev.entry.seq
            if seq != expected_seq:
                add(f"seq {expected_seq}: missing (next stored is {seq})")
                self.broken = True
                break
            leaf = entry.leaf_hash()
            if ev.stored_leaf != leaf:
                found = ev.stored_leaf.hex() if ev.stored_leaf else "nothing"
                add(f"seq {seq}: stored leaf_hash {found}, recomputed from the entry {leaf.hex()}")
            if entry.prev != prev:
                add(
                    f"seq {seq}: prev {entry.prev.hex()}, expected the "
                    f"leaf hash of seq {seq - 1} {prev.hex()}"
                )
            if ev.payload is not None and hashlib.sha256(ev.payload).digest() != entry.payload_hash:
                add(f"seq {seq}: payload does not hash to payload_hash {entry.payload_hash.hex()}")
            leaves.append(leaf)
            prev = leaf
            expected_seq += 1
        self.prev = prev
        return leaves

    # ---- the tree --------------------------------------------------------------------------

    def _extend(self, leaves: Sequence[bytes]) -> dict[NodeId, bytes]:
        """Add ``leaves`` to the rebuilt tree, checking each checkpoint the tree reaches on
        the way; return the nodes they complete."""
        completed: dict[NodeId, bytes] = {}
        begin, done = self.tree.size, 0
        while self.next_checkpoint is not None and self.next_checkpoint.size <= begin + len(leaves):
            cut = max(done, self.next_checkpoint.size - begin)
            completed.update(self.tree.extend(leaves[done:cut]))
            done = cut
            self._checkpoint(self.next_checkpoint, self.tree.root)
            self.next_checkpoint = next(self.checkpoints, None)
        completed.update(self.tree.extend(leaves[done:]))
        return completed

    def _compare(self, begin: int, completed: dict[NodeId, bytes]) -> None:
        """Compare the nodes leaves ``[begin, size)`` completed with the stored ones there."""
        stored = self.view.nodes_in(completed_ranges(begin, self.tree.size))
        self.nodes += len(stored)
        for node_id, h in stored:
            want = completed.pop(node_id, None)
            if want is None:
                raise InternalError(f"audit view answered node {node_id}, outside the ranges")
            if want != h:
                self.stored.add(f"node {node_id}: stored {h.hex()}, expected {want.hex()}", node_id)
        for level, idx in completed:  # not stored: missing if a checkpoint covers it
            if idx < self.integrated >> level:
                self._missing(level, idx, idx + 1)

    def _beyond(self, level: int, size: int) -> None:
        """Stored nodes of ``level`` the log of ``size`` entries has no place for; and, when
        the latest checkpoint is larger than the log, the nodes it covers that are absent."""
        lo, covered = size >> level, self.integrated >> level
        start = lo
        while True:
            rows = self.view.nodes_from(level, start, PAGE)
            for idx, _ in rows:
                self._missing(level, start, min(idx, covered))
                self.stored.add(
                    f"node {(level, idx)}: stored but the log of {size} entries has no such node",
                    (level, idx),
                )
                start = idx + 1
            self.nodes += len(rows)
            if len(rows) < PAGE:
                break
        self._missing(level, start, covered)

    def _missing(self, level: int, lo: int, hi: int) -> None:
        """Nodes ``(level, lo..hi-1)`` are covered by the latest checkpoint but not stored."""
        listed = max(0, min(hi, lo + self.missing.room()))
        for idx in range(lo, listed):
            self.missing.add(
                f"node ({level}, {idx}): missing; checkpoint {self.integrated} covers it",
                (level, idx),
            )
        self.missing.more += max(0, hi - max(lo, listed))

    # ---- checkpoints -----------------------------------------------------------------------

    def _checkpoint(self, c: StoredCheckpoint, root: bytes | None) -> None:
        """Check one checkpoint; ``root`` is the rebuilt tree's at its size (None: the log is
        shorter than the checkpoint)."""
        self.checked += 1
        csize, croot, note = c.size, bytes(c.root), c.note
        where, add = f"checkpoint {csize}", self.signed.add
        try:
            open_note(note, self.verifiers)
            cp = Checkpoint.from_body(parse_note(note).body)
        except ProveniqError as e:
            add(f"{where}: {e.message}")
            return
        if self.origin is not None and cp.origin != self.origin:
            add(f"{where}: origin {cp.origin!r}, expected {self.origin!r}")
        if cp.size != csize or cp.root_hash != croot:
            add(
                f"{where}: signed note says size {cp.size} root "
                f"{cp.root_hash.hex()}, columns say size {csize} root {croot.hex()}"
            )
        if root is None:
            add(f"{where}: covers {csize} entries but the log has {self.tree.size}")
        elif cp.root_hash != root:
            add(f"{where}: signed root {cp.root_hash.hex()}, recomputed {root.hex()}")


def _checkpoints(view: AuditView) -> Iterator[StoredCheckpoint]:
    """Every stored checkpoint in size order, read a page at a time."""
    after = -1
    while True:
        page = view.checkpoints_after(after, CHECKPOINT_PAGE)
        yield from page
        if len(page) < CHECKPOINT_PAGE:
            return
        after = page[-1].size
