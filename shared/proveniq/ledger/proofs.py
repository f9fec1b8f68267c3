"""Proofs: inclusion bundles for events, checkpoints, consistency proofs between checkpoints,
and server-side verification of a bundle against this log's keys.

Every event read is scoped by tenant; a bundle is built only against a published checkpoint.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from proveniq.errors import NotFound, ValidationError
from proveniq.ledger.publishing import CheckpointPublisher
from proveniq.log import proof
from proveniq.log.bundle import Bundle, BundleVerdict, verify_bundle
from proveniq.ports import (
    LedgerReader,
    LedgerView,
    NoTelemetry,
    StoredCheckpoint,
    StoredEvent,
    Telemetry,
)

MAX_WAIT_SECONDS = 30
POLL_SECONDS = 0.1


@dataclass(frozen=True)
class Pending:
    """The event is sequenced but not yet covered by a published checkpoint."""

    seq: int
    size: int


class Proofs:
    def __init__(
        self,
        *,
        reader: LedgerReader,
        publisher: CheckpointPublisher,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.reader = reader
        self.publisher = publisher
        self.telemetry: Telemetry = telemetry or NoTelemetry()

    def bundle(self, ev: StoredEvent, *, tree_size: int | None = None) -> Bundle | Pending:
        """The inclusion bundle of `ev` in the latest checkpoint (or the one of `tree_size`)."""
        with self.reader.snapshot() as view:
            cp = view.latest_checkpoint() if tree_size is None else view.checkpoint(tree_size)
            if cp is None and tree_size is not None:
                raise NotFound(f"no checkpoint of size {tree_size}")
            if tree_size is not None and ev.entry.seq >= tree_size:
                raise ValidationError(
                    f"event seq {ev.entry.seq} is not in the tree of size {tree_size}",
                    field="tree_size",
                )
            if cp is None or ev.entry.seq >= cp.size:
                return Pending(seq=ev.entry.seq, size=0 if cp is None else cp.size)
            path = proof.inclusion_proof(view.nodes, ev.entry.seq, cp.size)
        self.telemetry.proof_generated("inclusion")
        return Bundle(
            entry=ev.entry,
            payload=None if ev.payload is None else json.loads(ev.payload),
            leaf_index=ev.entry.seq,
            tree_size=cp.size,
            leaf_hash=ev.entry.leaf_hash(),
            inclusion_path=tuple(path),
            checkpoint=cp.note,
        )

    def wait_for_bundle(self, ev: StoredEvent, wait: float) -> Bundle | Pending:
        deadline = time.monotonic() + min(wait, MAX_WAIT_SECONDS)
        while True:
            result = self.bundle(ev)
            if isinstance(result, Bundle) or time.monotonic() >= deadline:
                return result
            time.sleep(POLL_SECONDS)

    def verify(self, bundle: Bundle) -> BundleVerdict:
        """Check a bundle against this log's keys; raises `VerificationError` naming the check."""
        return verify_bundle(bundle, self.publisher.verifiers())

    def checkpoint(self, size: int | None = None) -> StoredCheckpoint:
        with self.reader.snapshot() as view:
            cp = view.latest_checkpoint() if size is None else view.checkpoint(size)
        if cp is None:
            raise NotFound(
                "no checkpoint published yet" if size is None else f"no checkpoint of size {size}"
            )
        return cp

    def checkpoints(self, *, before: int | None, limit: int) -> list[StoredCheckpoint]:
        """Published checkpoints, newest first."""
        with self.reader.snapshot() as view:
            return view.checkpoints_page(before=before, limit=limit)

    def consistency(self, old: int, new: int) -> list[bytes]:
        """The RFC 6962 consistency proof between two published checkpoints."""
        if not 0 < old <= new:
            raise ValidationError("need 0 < from <= to", field="from")
        with self.reader.snapshot() as view:
            for name, size in (("from", old), ("to", new)):
                if not _published(view, size):
                    raise NotFound(
                        f"'{name}' must be the size of a published checkpoint; {size} is not"
                    )
            hashes = proof.consistency_proof(view.nodes, old, new)
        self.telemetry.proof_generated("consistency")
        return hashes


def _published(view: LedgerView, size: int) -> bool:
    return view.checkpoint(size) is not None
