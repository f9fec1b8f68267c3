"""Reads off a read replica: a `LedgerReader` that answers from a streaming replica and falls back
to the primary whenever the replica may not have the answer yet.

A streaming replica holds a prefix of the primary's commit order, and the log's rows are
append-only: an event, a tree node or a checkpoint the replica has is the primary's own. So an
answer the replica *has* is right, and what it may lack is only what is new. Each read is then:

    by key   event (id or leaf hash), checkpoint of a size, tree nodes: the replica's answer
             when it has the item; a miss (None, any node absent) is asked of the primary.
    newest   the latest checkpoint: the replica's, unless it is older than the `floor`, the
             newest this reader knows the primary has (a checkpoint it already served, or the
             size that covers an event it had to fetch from the primary: the replica lacks
             that event, hence every checkpoint covering it). So an event the replica lacks is
             proven against the primary's checkpoint, never answered "pending" by a stale one,
             and a client never sees the latest checkpoint go back in time on this instance.
    pages    events in seq order: a full page from the replica is the primary's page (anything
             the replica lacks comes later); a short page may end early, so it is read on the
             primary. Checkpoints newest first: as "newest" for the first page; a later page
             (`before`) when the replica has a checkpoint at least `before - 1`.

Once one read of a view has gone to the primary, the rest of that view does too (its next
reads need the same new rows): the answer is then the primary's, with at most immutable rows
from the replica. A replica that fails (down, recovery conflict) is skipped for `cooldown`
seconds; its reads go to the primary meanwhile. Pure over the `LedgerReader` port: no I/O here.

What the replica answers that the primary would answer otherwise: an event it has whose covering
checkpoint it has not replayed yet is "pending" (202) until it has (`?wait=proof` waits for it),
and an erased payload stays readable on the replica until the erasure is replayed (its lag).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from types import TracebackType
from typing import TypeVar

from proveniq.log.integrate import NodeId
from proveniq.ports import EventFilter, LedgerReader, LedgerView, StoredCheckpoint, StoredEvent

Fallback = Callable[[str], None]
_T = TypeVar("_T")
REASONS = ("event", "checkpoint", "latest", "nodes", "page", "unavailable")


class ReplicaReader:
    """Reads from `replica`, falling back to `primary` (see the module docstring)."""

    def __init__(
        self,
        *,
        primary: LedgerReader,
        replica: LedgerReader,
        on_fallback: Fallback | None = None,
        cooldown: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.primary = primary
        self.replica = replica
        self.on_fallback = on_fallback
        self.cooldown = cooldown
        self.clock = clock
        self.fallbacks: Counter[str] = Counter()  # by reason, for tests and benchmarks
        self._floor = 0
        self._down_until = -float("inf")
        self._lock = threading.Lock()

    @contextmanager
    def snapshot(self) -> Iterator[LedgerView]:
        view = _View(self)
        try:
            yield view
        except BaseException as e:
            view.close(type(e), e, e.__traceback__)
            raise
        view.close(None, None, None)

    @property
    def floor(self) -> int:
        """The smallest latest checkpoint of the replica this reader accepts: the newest size
        it served from the primary, or the size covering an event only the primary had."""
        return self._floor

    def _raise_floor(self, size: int) -> None:
        with self._lock:
            self._floor = max(self._floor, size)

    def _fell_back(self, reason: str) -> None:
        with self._lock:
            self.fallbacks[reason] += 1
        if self.on_fallback is not None:
            self.on_fallback(reason)

    def _replica_up(self) -> bool:
        return self.clock() >= self._down_until

    def _replica_failed(self) -> None:
        self._down_until = self.clock() + self.cooldown
        self._fell_back("unavailable")


_Exit = tuple[type[BaseException] | None, BaseException | None, TracebackType | None]


class _View:
    """One read: a replica transaction, and a primary one opened on the first fallback."""

    def __init__(self, reader: ReplicaReader) -> None:
        self.r = reader
        self._rcm: AbstractContextManager[LedgerView] | None = None
        self._rview: LedgerView | None = None
        self._pcm: AbstractContextManager[LedgerView] | None = None
        self._pview: LedgerView | None = None
        self._on_primary = not reader._replica_up()
        if self._on_primary:
            reader._fell_back("unavailable")

    # ---- the two sides -----------------------------------------------------------------------

    def _primary(self, reason: str | None = None) -> LedgerView:
        if reason is not None and not self._on_primary:
            self.r._fell_back(reason)
        self._on_primary = True
        if self._pview is None:
            self._pcm = self.r.primary.snapshot()
            self._pview = self._pcm.__enter__()
        return self._pview

    def _ask_replica(self, read: Callable[[LedgerView], _T]) -> tuple[bool, _T | None]:
        """(True, answer) from the replica, or (False, None) when this view is on the primary
        or the replica failed (then it is closed with the error and skipped for a while)."""
        if self._on_primary:
            return False, None
        try:
            if self._rview is None:
                cm = self.r.replica.snapshot()
                self._rview = cm.__enter__()
                self._rcm = cm
            return True, read(self._rview)
        except BaseException as e:
            self._close_replica((type(e), e, e.__traceback__))
            if not isinstance(e, Exception):
                raise  # an interrupt: the replica's connection is discarded, nothing redone
            self.r._replica_failed()
            self._on_primary = True
            return False, None

    def _close_replica(self, exc: _Exit) -> None:
        """End the replica's transaction: with the replica's own error (its connection is then
        rolled back or discarded by the adapter), or cleanly (a read-only commit)."""
        cm, self._rcm, self._rview = self._rcm, None, None
        if cm is not None:
            try:
                cm.__exit__(*exc)
            except Exception:
                if exc[0] is None:
                    raise

    def close(self, *exc: object) -> None:
        """End both transactions; an error of the caller or of the primary is the primary's
        (the replica's own errors were handled where they happened)."""
        info: _Exit = exc  # type: ignore[assignment]
        try:
            try:
                self._close_replica((None, None, None))
            except Exception:
                self.r._replica_failed()  # its commit failed: nothing read is lost
        finally:
            pcm, self._pcm, self._pview = self._pcm, None, None
            if pcm is not None:
                pcm.__exit__(*info)

    # ---- LedgerView --------------------------------------------------------------------------

    def event(self, tenant: str | None, event_id: str) -> StoredEvent | None:
        return self._event(lambda v: v.event(tenant, event_id))

    def event_by_leaf(self, tenant: str | None, leaf_hash: bytes) -> StoredEvent | None:
        return self._event(lambda v: v.event_by_leaf(tenant, leaf_hash))

    def _event(self, read: Callable[[LedgerView], StoredEvent | None]) -> StoredEvent | None:
        ok, ev = self._ask_replica(read)
        if ok and ev is not None:
            return ev
        ev = read(self._primary("event" if ok else None))
        if ev is not None:
            self.r._raise_floor(ev.entry.seq + 1)  # the replica lacks it, and what covers it
        return ev

    def events(self, f: EventFilter) -> list[StoredEvent]:
        ok, page = self._ask_replica(lambda v: v.events(f))
        if ok and page is not None and len(page) >= f.limit:
            return page
        full = self._primary("page" if ok else None).events(f)
        if full and (not ok or page is None or len(full) > len(page)):
            self.r._raise_floor(full[-1].entry.seq + 1)
        return full

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        ok, cp = self._ask_replica(lambda v: v.latest_checkpoint())
        if ok and cp is not None and cp.size >= self.r.floor:
            return cp
        cp = self._primary("latest" if ok else None).latest_checkpoint()
        if cp is not None:
            self.r._raise_floor(cp.size)
        return cp

    def checkpoint(self, size: int) -> StoredCheckpoint | None:
        ok, cp = self._ask_replica(lambda v: v.checkpoint(size))
        if ok and cp is not None:
            return cp
        cp = self._primary("checkpoint" if ok else None).checkpoint(size)
        if cp is not None:
            self.r._raise_floor(cp.size)
        return cp

    def checkpoints_page(self, *, before: int | None, limit: int) -> list[StoredCheckpoint]:
        def read(v: LedgerView) -> list[StoredCheckpoint] | None:
            if before is None:
                page = v.checkpoints_page(before=None, limit=limit)
                newest = page[0].size if page else 0
                return page if newest >= self.r.floor and (page or self.r.floor == 0) else None
            latest = v.latest_checkpoint()
            if latest is None or latest.size < before - 1:
                return None
            return v.checkpoints_page(before=before, limit=limit)

        ok, page = self._ask_replica(read)
        if ok and page is not None:
            return page
        page = self._primary("page" if ok else None).checkpoints_page(before=before, limit=limit)
        if page and before is None:
            self.r._raise_floor(page[0].size)
        return page

    def nodes(self, ids: Sequence[NodeId]) -> dict[NodeId, bytes]:
        ok, got = self._ask_replica(lambda v: v.nodes(ids))
        if ok and got is not None and len(got) == len(set(ids)):
            return got
        return self._primary("nodes" if ok else None).nodes(ids)
