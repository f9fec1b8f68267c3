"""Sequencing: give validated submissions contiguous `seq` numbers and chain links, all or
nothing, in one transaction under the ledger's write lock; then hand them to the outbox relay.

Everything that does not depend on the tail (validation, canonicalisation, leaf templates) is
done before the lock; under it only the tail is read, lifecycle transitions are checked, the
entries are linked and inserted with their outbox rows (and subject status, idempotency record).
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from proveniq.errors import Conflict, IdempotencyConflict, InternalError, ProveniqError
from proveniq.ledger import lifecycle
from proveniq.ledger.outbox import Relay
from proveniq.ledger.submission import Prepared, prepare_new_event
from proveniq.log.chain import Draft, Tail, link
from proveniq.log.entry import Entry
from proveniq.ports import (
    AppendRequest,
    Idempotency,
    LedgerReader,
    NewEvent,
    NoTelemetry,
    SequencingStore,
    SequencingTx,
    StoredEvent,
    StoredResponse,
    Telemetry,
)

Render = Callable[[list[Entry]], StoredResponse]


@dataclass(frozen=True, kw_only=True)
class Sequenced:
    entries: list[Entry]
    payloads: list[bytes]
    response: StoredResponse | None = None
    replayed: bool = False


def request_hash(body: bytes) -> bytes:
    return hashlib.sha256(body).digest()


class Sequencer:
    def __init__(
        self,
        *,
        store: SequencingStore,
        relay: Relay | None,
        reader: LedgerReader | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.store = store
        self.relay = relay
        self.reader = reader  # to return the original entries of an idempotent replay
        self.telemetry: Telemetry = telemetry or NoTelemetry()

    def sequence(
        self,
        *,
        tenant: str,
        actor: str,
        prepared: Sequence[Prepared],
        idempotency: Idempotency | None = None,
        render: Render | None = None,
    ) -> Sequenced:
        """Sequence `prepared` all-or-nothing, then relay it to `ledger-events` (at least once:
        anything not relayed now is swept later from the outbox)."""
        items = [(f"evt_{uuid.uuid4().hex}", p) for p in prepared]
        started = time.perf_counter()
        try:
            result = self._sequence(tenant, actor, items, idempotency, render)
        except _LostIdempotencyRace:
            assert idempotency is not None
            replay = self._replay(tenant, idempotency)
            assert replay is not None
            return Sequenced(entries=[], payloads=[], response=replay, replayed=True)
        if not result.replayed:
            self.telemetry.events_sequenced(
                [p.type for p in prepared],
                partner_id=tenant,
                seconds=time.perf_counter() - started,
            )
        if not result.replayed and self.relay is not None:
            self.relay.relay(
                [
                    StoredEvent(entry=e, payload=p, actor=actor)
                    for e, p in zip(result.entries, result.payloads, strict=True)
                ]
            )
        return result

    def _sequence(
        self,
        tenant: str,
        actor: str,
        items: Sequence[tuple[str, Prepared]],
        idempotency: Idempotency | None,
        render: Render | None,
    ) -> Sequenced:
        if idempotency is not None:
            replay = self._replay(tenant, idempotency)
            if replay is not None:
                return Sequenced(entries=[], payloads=[], response=replay, replayed=True)
        with self.store.sequencing() as tx:
            tail, recorded_at = tx.lock_tail()
            entries, response = self._sequence_locked(
                tx, tail, recorded_at, tenant, actor, items, idempotency, render
            )
        return Sequenced(entries=entries, payloads=[p.payload for _, p in items], response=response)

    @staticmethod
    def _sequence_locked(
        tx: SequencingTx,
        tail: Tail,
        recorded_at: datetime,
        tenant: str,
        actor: str,
        items: Sequence[tuple[str, Prepared]],
        idempotency: Idempotency | None,
        render: Render | None,
    ) -> tuple[list[Entry], StoredResponse | None]:
        """Under the lock: lifecycle, link after `tail`, insert, statuses, idempotency record."""
        drafts = [p.draft(event_id=eid, tenant=tenant) for eid, p in items]
        governed = sorted({p.subject for _, p in items if lifecycle.governs(p.type)})
        current = tx.subject_statuses(tenant, governed) if governed else {}
        statuses = _next_statuses(current, drafts)
        entries = link(drafts, tail=tail, recorded_at=recorded_at)
        tx.insert(entries, [p.payload for _, p in items], actor)
        if statuses:
            tx.save_statuses(
                tenant, {s: (st, entries[off].seq) for s, (st, off) in statuses.items()}
            )
        response = render(entries) if render else None
        if (
            idempotency is not None
            and response is not None
            and not tx.save_response(tenant, idempotency, response)
        ):
            raise _LostIdempotencyRace("another request with this key won")
        return entries, response

    def _replay(self, tenant: str, idem: Idempotency) -> StoredResponse | None:
        found = self.store.stored_response(tenant, idem.key)
        if found is None:
            return None
        stored_hash, response = found
        if stored_hash != idem.request_hash:
            raise IdempotencyConflict(
                "Idempotency-Key was already used with a different request body"
            )
        return response

    # ---- groups: many requests, one lock acquisition ---------------------------------------

    def append_each(
        self, *, tenant: str, requests: Sequence[AppendRequest]
    ) -> list[list[Entry] | ProveniqError]:
        """The BatchAppender port: every request under one lock, each all-or-nothing on its own
        (a savepoint each). A permanent refusal takes its request's slot; a transient failure
        raises and nothing of the group is committed."""
        slots: list[list[Entry] | ProveniqError | None] = [None] * len(requests)
        work: list[tuple[int, str, list[Prepared], Idempotency | None]] = []
        replays: dict[int, Idempotency] = {}
        for i, r in enumerate(requests):
            try:
                prepared = [
                    prepare_new_event(e, field=f"events[{j}].") for j, e in enumerate(r.events)
                ]
                idem = _appender_idempotency(r.idempotency_key, prepared)
                if idem is not None and self._replay(tenant, idem) is not None:
                    replays[i] = idem
                    continue
            except ProveniqError as e:
                if e.transient:
                    raise
                slots[i] = e
                continue
            work.append((i, r.actor, prepared, idem))
        committed: list[tuple[str, list[Entry], list[bytes]]] = []
        started = time.perf_counter()
        if work:
            with self.store.sequencing() as tx:
                tail, recorded_at = tx.lock_tail()
                for i, actor, prepared, idem in work:
                    items = [(f"evt_{uuid.uuid4().hex}", p) for p in prepared]
                    try:
                        with tx.savepoint():
                            entries = self._sequence_locked(
                                tx, tail, recorded_at, tenant, actor, items, idem, _ids_response
                            )[0]
                    except _LostIdempotencyRace:
                        assert idem is not None
                        replays[i] = idem
                        continue
                    except ProveniqError as e:
                        if e.transient:
                            raise
                        slots[i] = e
                        continue
                    slots[i] = entries
                    committed.append((actor, entries, [p.payload for _, p in items]))
                    tail = Tail(size=entries[-1].seq + 1, leaf_hash=entries[-1].leaf_hash())
        if committed:
            self.telemetry.events_sequenced(
                [e.type for _, entries, _ in committed for e in entries],
                partner_id=tenant,
                seconds=time.perf_counter() - started,
            )
        if self.relay is not None and committed:
            self.relay.relay(
                [
                    StoredEvent(entry=e, payload=p, actor=actor)
                    for actor, entries, payloads in committed
                    for e, p in zip(entries, payloads, strict=True)
                ]
            )
        for i, idem in replays.items():
            try:
                slots[i] = self._replayed_entries(tenant, idem)
            except ProveniqError as e:
                if e.transient:
                    raise
                slots[i] = e
        assert all(s is not None for s in slots)
        return [s for s in slots if s is not None]

    # ---- the LedgerAppender port, for followers and intakes ------------------------------

    def append(
        self,
        *,
        tenant: str,
        actor: str,
        events: Sequence[NewEvent],
        idempotency_key: str | None = None,
    ) -> list[Entry]:
        prepared = [prepare_new_event(e, field=f"events[{i}].") for i, e in enumerate(events)]
        idem = _appender_idempotency(idempotency_key, prepared)
        result = self.sequence(
            tenant=tenant, actor=actor, prepared=prepared, idempotency=idem, render=_ids_response
        )
        if not result.replayed:
            return result.entries
        assert result.response is not None
        return self._entries_of(tenant, result.response)

    def _replayed_entries(self, tenant: str, idem: Idempotency) -> list[Entry]:
        response = self._replay(tenant, idem)
        if response is None:
            raise InternalError("an idempotency record vanished")
        return self._entries_of(tenant, response)

    def _entries_of(self, tenant: str, response: StoredResponse) -> list[Entry]:
        assert self.reader is not None, "a Sequencer serving the appender ports needs a reader"
        ids = json.loads(response.body)["ids"]
        with self.reader.snapshot() as view:
            found = [view.event(tenant, i) for i in ids]
        if any(ev is None for ev in found):
            raise InternalError("an idempotent append's events are missing")
        return [ev.entry for ev in found if ev is not None]


def _appender_idempotency(key: str | None, prepared: Sequence[Prepared]) -> Idempotency | None:
    if key is None:
        return None
    body = b"\n".join(p.payload_hash + p.type.encode() + p.subject.encode() for p in prepared)
    return Idempotency(key=key, request_hash=request_hash(body))


def _ids_response(entries: list[Entry]) -> StoredResponse:
    return StoredResponse(status=201, body=json.dumps({"ids": [e.id for e in entries]}).encode())


def _next_statuses(current: dict[str, str], drafts: Sequence[Draft]) -> dict[str, tuple[str, int]]:
    """Walk the batch's asset events in order; return subject -> (final status, offset)."""
    state: dict[str, str | None] = dict(current)
    out: dict[str, tuple[str, int]] = {}
    for offset, d in enumerate(drafts):
        if lifecycle.governs(d.type):
            status = lifecycle.next_status(d.type, state.get(d.subject), subject=d.subject)
            state[d.subject] = status
            if status is not None:
                out[d.subject] = (status, offset)
    return out


class _LostIdempotencyRace(Conflict):
    """Internal: roll back and replay the winner's stored response."""
