"""Sequencing: give validated submissions contiguous `seq` numbers and chain links, all or
nothing, in one transaction under the ledger's write lock; then hand them to the outbox relay.

Everything that does not depend on the tail (validation, canonicalisation, leaf templates) is
done before the lock; under it only the tail is read, lifecycle transitions are checked, the
entries are linked and inserted with their outbox rows (and subject status, idempotency record).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from proveniq.errors import Conflict, IdempotencyConflict, InternalError
from proveniq.ledger import lifecycle
from proveniq.ledger.outbox import Relay
from proveniq.ledger.submission import Prepared, prepare_new_event
from proveniq.log.chain import Draft, link
from proveniq.log.entry import Entry
from proveniq.ports import (
    Idempotency,
    LedgerReader,
    NewEvent,
    SequencingStore,
    StoredEvent,
    StoredResponse,
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
        self, *, store: SequencingStore, relay: Relay | None, reader: LedgerReader | None = None
    ) -> None:
        self.store = store
        self.relay = relay
        self.reader = reader  # to return the original entries of an idempotent replay

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
        try:
            result = self._sequence(tenant, actor, items, idempotency, render)
        except _LostIdempotencyRace:
            assert idempotency is not None
            replay = self._replay(tenant, idempotency)
            assert replay is not None
            return Sequenced(entries=[], payloads=[], response=replay, replayed=True)
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
        drafts = [p.draft(event_id=eid, tenant=tenant) for eid, p in items]
        payloads = [p.payload for _, p in items]
        governed = sorted({p.subject for _, p in items if lifecycle.governs(p.type)})
        with self.store.sequencing() as tx:
            tail, recorded_at = tx.lock_tail()
            current = tx.subject_statuses(tenant, governed) if governed else {}
            statuses = _next_statuses(current, drafts)
            entries = link(drafts, tail=tail, recorded_at=recorded_at)
            tx.insert(entries, payloads, actor)
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
        return Sequenced(entries=entries, payloads=payloads, response=response)

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
        idem = None
        if idempotency_key is not None:
            body = b"\n".join(
                p.payload_hash + p.type.encode() + p.subject.encode() for p in prepared
            )
            idem = Idempotency(key=idempotency_key, request_hash=request_hash(body))
        result = self.sequence(
            tenant=tenant, actor=actor, prepared=prepared, idempotency=idem, render=_ids_response
        )
        if not result.replayed:
            return result.entries
        assert result.response is not None and self.reader is not None
        ids = json.loads(result.response.body)["ids"]
        with self.reader.snapshot() as view:
            found = [view.event(tenant, i) for i in ids]
        if any(ev is None for ev in found):
            raise InternalError("an idempotent append's events are missing")
        return [ev.entry for ev in found if ev is not None]


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
