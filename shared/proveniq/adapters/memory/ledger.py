"""The log's storage ports in memory: the same behaviour as `adapters.postgres.ledger` for one
process (the unit tests' vehicle and the conformance suite's second subject).

Transactions stage their writes and apply them on a clean exit only; the sequencing and the
integration transactions each hold their own lock from start to commit, as the advisory locks do.
Like PostgreSQL, text containing NUL is refused (`ValidationError`, as SQLSTATE 22021 is mapped).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from proveniq.errors import Conflict, ValidationError
from proveniq.log.chain import Tail
from proveniq.log.entry import ZERO_HASH, Entry
from proveniq.log.integrate import NodeId
from proveniq.ports import (
    EventFilter,
    GroupWrite,
    Idempotency,
    Locked,
    StoredCheckpoint,
    StoredEvent,
    StoredResponse,
)


@dataclass
class _State:
    events: list[StoredEvent] = field(default_factory=list)
    by_id: dict[str, int] = field(default_factory=dict)
    by_leaf: dict[bytes, int] = field(default_factory=dict)
    relayed: set[int] = field(default_factory=set)
    relayable_at: dict[int, float] = field(default_factory=dict)
    statuses: dict[tuple[str, str], tuple[str, int]] = field(default_factory=dict)
    responses: dict[tuple[str, str], tuple[bytes, StoredResponse]] = field(default_factory=dict)
    nodes: dict[NodeId, bytes] = field(default_factory=dict)
    checkpoints: dict[int, StoredCheckpoint] = field(default_factory=dict)


class MemoryLedger:
    """SequencingStore, LedgerReader, IntegrationStore, Outbox, AuditSource and CheckpointWatch
    in memory (an integration commit signals the watchers directly)."""

    def __init__(self) -> None:
        self._state = _State()
        self._data = threading.RLock()  # guards _state
        self._write_lock = threading.Lock()  # the ledger's write lock
        self._integration_lock = threading.Lock()
        self._watchers: list[Callable[[StoredCheckpoint], None]] = []

    # ---- sequencing ------------------------------------------------------------------------

    @contextmanager
    def sequencing(self) -> Iterator[_SequencingTx]:
        tx = _SequencingTx(self)
        try:
            yield tx
            tx.commit()
        finally:
            tx.release()

    @contextmanager
    def group(self) -> Iterator[_GroupTx]:
        tx = _GroupTx(self)
        try:
            yield tx
        finally:
            tx.release()

    def stored_response(self, tenant: str, key: str) -> tuple[bytes, StoredResponse] | None:
        with self._data:
            return self._state.responses.get((tenant, key))

    # ---- reads -----------------------------------------------------------------------------

    @contextmanager
    def snapshot(self) -> Iterator[_View]:
        with self._data:
            yield _View(self._state)

    # ---- integration -----------------------------------------------------------------------

    @contextmanager
    def integration(self) -> Iterator[_IntegrationTx]:
        tx = _IntegrationTx(self)
        try:
            yield tx
            tx.commit()
        finally:
            tx.release()

    # ---- checkpoint watch ------------------------------------------------------------------

    def start(self, on_published: Callable[[StoredCheckpoint], None]) -> None:
        with self._data:
            if on_published in self._watchers:
                return
            self._watchers.append(on_published)
            latest = _View(self._state).latest_checkpoint()
        if latest is not None:
            on_published(latest)

    def close(self) -> None:
        with self._data:
            self._watchers.clear()

    def _published(self) -> None:
        with self._data:
            latest = _View(self._state).latest_checkpoint()
            watchers = list(self._watchers)
        if latest is not None:
            for w in watchers:
                w(latest)

    # ---- outbox ----------------------------------------------------------------------------

    def unrelayed(self, *, limit: int, min_age_seconds: float) -> list[StoredEvent]:
        cutoff = time.monotonic() - min_age_seconds
        with self._data:
            s = self._state
            return [
                ev
                for ev in s.events
                if ev.entry.seq not in s.relayed and s.relayable_at[ev.entry.seq] <= cutoff
            ][:limit]

    def mark_relayed(self, seqs: Sequence[int]) -> None:
        with self._data:
            self._state.relayed.update(seqs)

    def backlog(self) -> int:
        with self._data:
            return len(self._state.events) - len(self._state.relayed)

    # ---- audit -----------------------------------------------------------------------------

    @contextmanager
    def audit_snapshot(self) -> Iterator[_AuditView]:
        with self._data:
            yield _AuditView(self._state)


class _SequencingTx:
    def __init__(self, ledger: MemoryLedger) -> None:
        self._ledger = ledger
        self._locked = False
        self._events: list[StoredEvent] = []
        self._statuses: dict[tuple[str, str], tuple[str, int]] = {}
        self._responses: dict[tuple[str, str], tuple[bytes, StoredResponse]] = {}

    def lock_tail(self) -> tuple[Tail, datetime]:
        if not self._locked:
            self._ledger._write_lock.acquire()
            self._locked = True
        return _tail(self._ledger)

    def subject_statuses(self, tenant: str, subjects: Sequence[str]) -> dict[str, str]:
        with self._ledger._data:
            st = {**self._ledger._state.statuses, **self._statuses}
            return {s: st[(tenant, s)][0] for s in subjects if (tenant, s) in st}

    def insert(self, entries: Sequence[Entry], payloads: Sequence[bytes], actor: str) -> None:
        _text(actor, *(x for e in entries for x in (e.id, e.tenant, e.type, e.subject)))
        with self._ledger._data:
            s = self._ledger._state
            for e in entries:
                if e.id in s.by_id or any(x.entry.id == e.id for x in self._events):
                    raise Conflict(f"event id {e.id} exists")
        self._events += [
            StoredEvent(entry=e, payload=p, actor=actor, stored_leaf=e.leaf_hash())
            for e, p in zip(entries, payloads, strict=True)
        ]

    def save_statuses(self, tenant: str, statuses: Mapping[str, tuple[str, int]]) -> None:
        for subject, value in statuses.items():
            self._statuses[(tenant, subject)] = value

    def save_response(self, tenant: str, idem: Idempotency, response: StoredResponse) -> bool:
        _text(tenant, idem.key)
        with self._ledger._data:
            if (tenant, idem.key) in self._ledger._state.responses:
                return False
        if (tenant, idem.key) in self._responses:
            return False
        self._responses[(tenant, idem.key)] = (idem.request_hash, response)
        return True

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        events, statuses, responses = (
            list(self._events),
            dict(self._statuses),
            dict(self._responses),
        )
        try:
            yield
        except BaseException:
            self._events, self._statuses, self._responses = events, statuses, responses
            raise

    def commit(self) -> None:
        with self._ledger._data:
            _apply(self._ledger._state, self._events, self._statuses, self._responses)

    def release(self) -> None:
        if self._locked:
            self._ledger._write_lock.release()
            self._locked = False


class _GroupTx:
    def __init__(self, ledger: MemoryLedger) -> None:
        self._ledger = ledger
        self._locked = False

    def lock(self, subjects: Sequence[tuple[str, str]]) -> Locked:
        if not self._locked:
            self._ledger._write_lock.acquire()
            self._locked = True
        tail, recorded_at = _tail(self._ledger)
        with self._ledger._data:
            st = self._ledger._state.statuses
            statuses = {k: st[k][0] for k in subjects if k in st}
        return Locked(tail=tail, recorded_at=recorded_at, statuses=statuses)

    def commit(self, write: GroupWrite) -> list[int]:
        if not self._locked:
            raise Conflict("commit without the write lock")
        for ev in write.events:
            e = ev.entry
            _text(ev.actor, e.id, e.tenant, e.type, e.subject)
        for tenant, idem, _ in write.responses:
            _text(tenant, idem.key)
        with self._ledger._data:
            s = self._ledger._state
            taken = [
                i for i, (t, idem, _) in enumerate(write.responses) if (t, idem.key) in s.responses
            ]
            if taken:
                return taken
            _apply(
                s,
                [
                    StoredEvent(
                        entry=ev.entry,
                        payload=ev.payload,
                        actor=ev.actor,
                        stored_leaf=ev.entry.leaf_hash(),
                    )
                    for ev in write.events
                ],
                dict(write.statuses),
                {(t, i.key): (i.request_hash, r) for t, i, r in write.responses},
            )
        return []

    def release(self) -> None:
        if self._locked:
            self._ledger._write_lock.release()
            self._locked = False


def _tail(ledger: MemoryLedger) -> tuple[Tail, datetime]:
    """The tail and the clock, never before the last entry's (the caller holds the lock)."""
    with ledger._data:
        events = ledger._state.events
        tail = (
            Tail(size=len(events), leaf_hash=events[-1].entry.leaf_hash())
            if events
            else Tail(size=0, leaf_hash=ZERO_HASH)
        )
        last = events[-1].entry.recorded_at if events else None
    now = datetime.now(UTC)
    return tail, max(now, last) if last else now


def _apply(
    s: _State,
    events: Sequence[StoredEvent],
    statuses: Mapping[tuple[str, str], tuple[str, int]],
    responses: Mapping[tuple[str, str], tuple[bytes, StoredResponse]],
) -> None:
    """Apply a transaction's writes to the state (all checks first: all or nothing)."""
    for offset, ev in enumerate(events):
        seq = ev.entry.seq
        if seq != len(s.events) + offset:
            raise Conflict(f"seq {seq} out of order (the write lock was not taken)")
        if ev.entry.id in s.by_id:
            raise Conflict(f"event id {ev.entry.id} exists")
    now = time.monotonic()
    for ev in events:
        seq = ev.entry.seq
        s.events.append(ev)
        s.by_id[ev.entry.id] = seq
        s.by_leaf[ev.entry.leaf_hash()] = seq
        s.relayable_at[seq] = now
    s.statuses.update(statuses)
    s.responses.update(responses)


def _text(*values: str) -> None:
    if any("\x00" in v for v in values):
        raise ValidationError(
            "a value is malformed or out of range for the ledger", field="request"
        )


class _View:
    def __init__(self, state: _State) -> None:
        self._s = state

    def event(self, tenant: str | None, event_id: str) -> StoredEvent | None:
        return self._scoped(self._s.by_id.get(event_id), tenant)

    def event_by_leaf(self, tenant: str | None, leaf_hash: bytes) -> StoredEvent | None:
        return self._scoped(self._s.by_leaf.get(leaf_hash), tenant)

    def _scoped(self, seq: int | None, tenant: str | None) -> StoredEvent | None:
        if seq is None:
            return None
        ev = self._s.events[seq]
        return ev if tenant is None or ev.entry.tenant == tenant else None

    def events(self, f: EventFilter) -> list[StoredEvent]:
        out = []
        for ev in self._s.events[(f.after_seq + 1 if f.after_seq is not None else 0) :]:
            e = ev.entry
            if (
                (f.tenant is None or e.tenant == f.tenant)
                and (f.event_type is None or e.type == f.event_type)
                and (f.subject is None or e.subject == f.subject)
                and (f.since is None or e.recorded_at >= f.since)
                and (f.until is None or e.recorded_at < f.until)
            ):
                out.append(ev)
                if len(out) == f.limit:
                    break
        return out

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        cps = self._s.checkpoints
        return cps[max(cps)] if cps else None

    def checkpoint(self, size: int) -> StoredCheckpoint | None:
        return self._s.checkpoints.get(size)

    def checkpoints_page(self, *, before: int | None, limit: int) -> list[StoredCheckpoint]:
        sizes = sorted(
            (s for s in self._s.checkpoints if before is None or s < before), reverse=True
        )
        return [self._s.checkpoints[s] for s in sizes[:limit]]

    def nodes(self, ids: Sequence[NodeId]) -> dict[NodeId, bytes]:
        return {i: self._s.nodes[i] for i in ids if i in self._s.nodes}


class _IntegrationTx:
    def __init__(self, ledger: MemoryLedger) -> None:
        self._ledger = ledger
        self._locked = False
        self._nodes: dict[NodeId, bytes] = {}
        self._checkpoints: list[StoredCheckpoint] = []

    def lock(self) -> None:
        if not self._locked:
            self._ledger._integration_lock.acquire()
            self._locked = True

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        with self._ledger._data:
            return _View(self._ledger._state).latest_checkpoint()

    def leaves(self, start: int, limit: int) -> list[tuple[int, bytes]]:
        with self._ledger._data:
            return [
                (ev.entry.seq, ev.entry.leaf_hash())
                for ev in self._ledger._state.events[start : start + limit]
            ]

    def nodes(self, ids: Sequence[NodeId]) -> dict[NodeId, bytes]:
        with self._ledger._data:
            return _View(self._ledger._state).nodes(ids)

    def write_nodes(self, nodes: Mapping[NodeId, bytes]) -> None:
        self._nodes.update(nodes)

    def recorded_at(self, seqs: Sequence[int]) -> list[datetime]:
        with self._ledger._data:
            events = self._ledger._state.events
            return [events[s].entry.recorded_at for s in sorted(seqs) if s < len(events)]

    def save_checkpoint(self, checkpoint: StoredCheckpoint) -> None:
        self._checkpoints.append(checkpoint)

    def commit(self) -> None:
        with self._ledger._data:
            s = self._ledger._state
            for node_id in self._nodes:
                if node_id in s.nodes:
                    raise Conflict(f"tree node {node_id} exists (nodes are append-only)")
            for cp in self._checkpoints:
                if cp.size in s.checkpoints:
                    raise Conflict(f"checkpoint {cp.size} exists")
            s.nodes.update(self._nodes)
            for cp in self._checkpoints:
                s.checkpoints[cp.size] = cp
        if self._checkpoints:
            self._ledger._published()

    def release(self) -> None:
        if self._locked:
            self._ledger._integration_lock.release()
            self._locked = False


class _AuditView(_View):
    def events_from(self, seq: int, limit: int) -> list[StoredEvent]:
        return self._s.events[seq : seq + limit]

    def nodes_in(self, ranges: Sequence[tuple[int, int, int]]) -> list[tuple[NodeId, bytes]]:
        nodes = self._s.nodes
        ids = ((level, idx) for level, lo, hi in ranges for idx in range(lo, hi))
        return [(i, nodes[i]) for i in ids if i in nodes]

    def nodes_from(self, level: int, idx: int, limit: int) -> list[tuple[int, bytes]]:
        found = sorted((i, h) for (lv, i), h in self._s.nodes.items() if lv == level and i >= idx)
        return found[:limit]

    def checkpoints_after(self, size: int, limit: int) -> list[StoredCheckpoint]:
        cps = self._s.checkpoints
        return [cps[s] for s in sorted(s for s in cps if s > size)[:limit]]
