"""Proofs: inclusion bundles for events, checkpoints, consistency proofs between checkpoints,
and server-side verification of a bundle against this log's keys.

Every event read is scoped by tenant; a bundle is built only against a published checkpoint.

Waiting (`?wait=`, `?wait=proof`) goes through one `CheckpointAwaiter` per instance, woken by
the seal's commit (a `CheckpointWatch`), never by per-request polling; at most `max_waiters`
requests wait at once, the others answer pending at once.

What never changes is cached, in bounded LRU caches (entries x size, see `CACHE_*`): published
checkpoints by size, stored perfect-subtree nodes (written once), and inclusion paths pinned to
a tree size. The latest checkpoint is held for at most `LATEST_TTL_SECONDS` and replaced as
soon as the watch announces a newer one; an event it does not cover is always checked against
the store, so the cache never turns a sealed event into "pending". Bundles themselves are not
cached: an erased payload must disappear from them.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from cachetools import LRUCache

from proveniq.errors import NotFound, ValidationError
from proveniq.ledger.publishing import CheckpointPublisher
from proveniq.log import proof
from proveniq.log.bundle import Bundle, BundleVerdict, verify_bundle
from proveniq.log.integrate import NodeId
from proveniq.ports import (
    CheckpointWatch,
    LedgerReader,
    LedgerView,
    NoTelemetry,
    StoredCheckpoint,
    StoredEvent,
    Telemetry,
)

K = TypeVar("K")
V = TypeVar("V")

MAX_WAIT_SECONDS = 30
MAX_WAITERS = 256  # requests of one instance waiting for a checkpoint at once
LATEST_TTL_SECONDS = 1.0  # the latest checkpoint's cache life (its Cache-Control is max-age=1)
# Memory bound of the caches, per instance (CPython 3.11, tracemalloc, cachetools LRUCache):
CACHE_CHECKPOINTS = 1024  # ~1.0 KiB each (a note with two signatures): ~1 MiB
CACHE_NODES = 65_536  # ~280 B each (key tuple, 32-byte hash, LRU links): ~18 MiB
CACHE_PATHS = 4096  # ~2.0 KiB each at 10 M entries (24 hashes): ~8 MiB


@dataclass(frozen=True)
class Pending:
    """The event is sequenced but not yet covered by a published checkpoint."""

    seq: int
    size: int


class CheckpointAwaiter:
    """One per instance: requests waiting until a published checkpoint covers their seq.

    The watch (started on the first wait) calls `published` after each seal's commit; every
    waiter whose seq is now covered wakes up. At most `max_waiters` wait at once."""

    def __init__(self, watch: CheckpointWatch | None, *, max_waiters: int = MAX_WAITERS) -> None:
        self.watch = watch
        self.max_waiters = max_waiters
        self._cond = threading.Condition()
        self._size = 0  # the latest published size announced by the watch
        self._waiting = 0
        self._started = False
        self._listeners: list[Callable[[StoredCheckpoint], None]] = []

    def subscribe(self, on_published: Callable[[StoredCheckpoint], None]) -> None:
        self._listeners.append(on_published)

    def published(self, cp: StoredCheckpoint) -> None:
        with self._cond:
            if cp.size <= self._size:
                return
            self._size = cp.size
            self._cond.notify_all()
        for f in self._listeners:
            f(cp)

    def start(self) -> None:
        if not self._started and self.watch is not None:
            self._started = True
            self.watch.start(self.published)

    def wait_beyond(self, seq: int, timeout: float) -> bool:
        """True once a checkpoint of size > `seq` is published; False after `timeout` or at
        once when `max_waiters` requests are already waiting."""
        self.start()
        deadline = time.monotonic() + timeout
        with self._cond:
            if self._size > seq:
                return True
            if self._waiting >= self.max_waiters or self.watch is None:
                return False
            self._waiting += 1
            try:
                while self._size <= seq:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self._cond.wait(left)
                return True
            finally:
                self._waiting -= 1

    @property
    def waiting(self) -> int:
        return self._waiting


class Proofs:
    def __init__(
        self,
        *,
        reader: LedgerReader,
        publisher: CheckpointPublisher,
        telemetry: Telemetry | None = None,
        watch: CheckpointWatch | None = None,
        max_waiters: int = MAX_WAITERS,
        awaiter: CheckpointAwaiter | None = None,
    ) -> None:
        """`awaiter`: another Proofs' (one watch per process serves both; then `watch` and
        `max_waiters` are that awaiter's)."""
        self.reader = reader
        self.publisher = publisher
        self.telemetry: Telemetry = telemetry or NoTelemetry()
        self.awaiter = awaiter or CheckpointAwaiter(watch, max_waiters=max_waiters)
        self.awaiter.subscribe(self._announced)
        self._lock = threading.Lock()
        self._checkpoints: LRUCache[int, StoredCheckpoint] = LRUCache(CACHE_CHECKPOINTS)
        self._nodes: LRUCache[NodeId, bytes] = LRUCache(CACHE_NODES)
        self._paths: LRUCache[tuple[int, int], tuple[bytes, ...]] = LRUCache(CACHE_PATHS)
        self._latest: StoredCheckpoint | None = None
        self._latest_until = 0.0

    # ---- bundles ------------------------------------------------------------------------

    def event_bundle(
        self,
        tenant: str | None,
        event_id: str,
        *,
        tree_size: int | None = None,
        wait: float = 0.0,
    ) -> Bundle | Pending:
        """The bundle of one event (one read of the store: the event and the nodes the cache
        lacks); with `wait`, until a checkpoint covers it (at most `wait` seconds)."""
        with self.reader.snapshot() as view:
            ev = view.event(tenant, event_id)
            if ev is None:
                raise NotFound(f"event {event_id} not found")
            result = self._bundle(view, ev, tree_size)
        if isinstance(result, Bundle) or wait <= 0:
            return result
        return self.wait_for_bundle(ev, wait)

    def bundle(self, ev: StoredEvent, *, tree_size: int | None = None) -> Bundle | Pending:
        """The inclusion bundle of `ev` in the latest checkpoint (or the one of `tree_size`)."""
        with self.reader.snapshot() as view:
            return self._bundle(view, ev, tree_size)

    def wait_for_bundle(self, ev: StoredEvent, wait: float) -> Bundle | Pending:
        """`ev`'s bundle once a checkpoint covers it, woken by the seal (bounded by `wait`)."""
        if self.awaiter.wait_beyond(ev.entry.seq, min(wait, MAX_WAIT_SECONDS)):
            return self.bundle(ev)
        return self.bundle(ev)  # timed out or refused: one last look at the store

    def wait_for_entry(
        self, tenant: str | None, event_id: str, seq: int, wait: float
    ) -> Bundle | Pending:
        """`?wait=proof` on a write: wait for the seal first, then read the event once."""
        if not self.awaiter.wait_beyond(seq, min(wait, MAX_WAIT_SECONDS)):
            return Pending(seq=seq, size=self.awaiter._size)
        return self.event_bundle(tenant, event_id)

    def _bundle(self, view: LedgerView, ev: StoredEvent, tree_size: int | None) -> Bundle | Pending:
        seq = ev.entry.seq
        if tree_size is not None:
            cp = self._checkpoint(view, tree_size)
            if cp is None:
                raise NotFound(f"no checkpoint of size {tree_size}")
            if seq >= tree_size:
                raise ValidationError(
                    f"event seq {seq} is not in the tree of size {tree_size}",
                    field="tree_size",
                )
        else:
            cp = self._latest_covering(view, seq)
            if cp is None or seq >= cp.size:
                return Pending(seq=seq, size=0 if cp is None else cp.size)
        self.telemetry.proof_generated("inclusion")
        return Bundle(
            entry=ev.entry,
            payload=None if ev.payload is None else json.loads(ev.payload),
            leaf_index=seq,
            tree_size=cp.size,
            leaf_hash=ev.stored_leaf if ev.stored_leaf is not None else ev.entry.leaf_hash(),
            inclusion_path=self._path(view, seq, cp.size),
            checkpoint=cp.note,
        )

    # ---- caches -------------------------------------------------------------------------

    def _announced(self, cp: StoredCheckpoint) -> None:
        """A checkpoint just read as the latest, or announced by the watch."""
        with self._lock:
            self._checkpoints[cp.size] = cp
            if self._latest is None or cp.size >= self._latest.size:
                self._latest, self._latest_until = cp, time.monotonic() + LATEST_TTL_SECONDS

    def _latest_covering(self, view: LedgerView, seq: int) -> StoredCheckpoint | None:
        """The latest checkpoint: the cached one if it is fresh and covers `seq`, else read."""
        with self._lock:
            cp = self._latest
            if cp is not None and cp.size > seq and time.monotonic() < self._latest_until:
                return cp
        cp = view.latest_checkpoint()
        if cp is not None:
            self._announced(cp)
        return cp

    def _checkpoint(self, view: LedgerView, size: int) -> StoredCheckpoint | None:
        return self._memo(self._checkpoints, size, lambda: view.checkpoint(size))

    def _path(self, view: LedgerView, seq: int, size: int) -> tuple[bytes, ...]:
        path = self._memo(
            self._paths,
            (seq, size),
            lambda: tuple(
                proof.inclusion_proof(lambda ids: self._read_nodes(view, ids), seq, size)
            ),
        )
        assert path is not None
        return path

    def _memo(self, cache: LRUCache[K, V], key: K, compute: Callable[[], V | None]) -> V | None:
        """`cache[key]`, else `compute()` (kept unless None): for values that never change."""
        with self._lock:
            value = cache.get(key)
        if value is None:
            value = compute()
            if value is not None:
                with self._lock:
                    cache[key] = value
        return value

    def _read_nodes(self, view: LedgerView, ids: Sequence[NodeId]) -> dict[NodeId, bytes]:
        """Stored nodes never change: the cache first, one read for the rest."""
        found: dict[NodeId, bytes] = {}
        missing: list[NodeId] = []
        with self._lock:
            for i in ids:
                h = self._nodes.get(i)
                if h is None:
                    missing.append(i)
                else:
                    found[i] = h
        if missing:
            fetched = view.nodes(missing)
            with self._lock:
                self._nodes.update(fetched)
            found.update(fetched)
        return found

    def verify(self, bundle: Bundle) -> BundleVerdict:
        """Check a bundle against this log's keys; raises `VerificationError` naming the check."""
        return verify_bundle(bundle, self.publisher.verifiers())

    def checkpoint(self, size: int | None = None) -> StoredCheckpoint:
        with self.reader.snapshot() as view:
            cp = self._latest_covering(view, -1) if size is None else self._checkpoint(view, size)
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
                if not self._published(view, size):
                    raise NotFound(
                        f"'{name}' must be the size of a published checkpoint; {size} is not"
                    )
            hashes = proof.consistency_proof(lambda ids: self._read_nodes(view, ids), old, new)
        self.telemetry.proof_generated("consistency")
        return hashes

    def _published(self, view: LedgerView, size: int) -> bool:
        return self._checkpoint(view, size) is not None
