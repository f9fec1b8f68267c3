"""Sequencing: give validated submissions contiguous `seq` numbers and chain links, all or
nothing, in one transaction under the ledger's write lock; then hand them to the outbox relay.

Everything that does not depend on the tail (validation, canonicalisation, leaf templates) is
done before the lock; under it only the tail is read, lifecycle transitions are checked, the
entries are linked and inserted with their outbox rows (and subject status, idempotency record).

Group commit (`group=GroupCommit(...)`, on by default in the app): concurrent requests of one
process are sequenced together by `commit_group`, in ONE transaction of two round trips
(`SequencingStore.group`): lock + tail + the statuses of every governed subject of the group,
then - after every lifecycle and idempotency decision was taken here, in request order, each
request seeing the effects of the earlier ones - one statement writing the whole group, with
its COMMIT. Each request stays all-or-nothing on its own: a refused request is left out of the
group before linking. A non-transient failure of that statement (a value the database refuses)
redoes the group request by request with savepoints, to isolate the culprit; a transient one
fails every request of the group (503) and commits nothing.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from proveniq.errors import (
    Conflict,
    IdempotencyConflict,
    InternalError,
    ProveniqError,
    Unavailable,
)
from proveniq.grouping import GroupCommitter
from proveniq.ledger import lifecycle
from proveniq.ledger.outbox import Relay
from proveniq.ledger.submission import Prepared, prepare_new_event
from proveniq.log.chain import Draft, Tail, link
from proveniq.log.entry import Entry
from proveniq.ports import (
    AppendRequest,
    GroupWrite,
    Idempotency,
    LedgerReader,
    Locked,
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


GROUPED_MAX_EVENTS = 31  # larger requests are sequenced on their own (COPY on PostgreSQL)


@dataclass(frozen=True, kw_only=True)
class GroupCommit:
    """Group commit's settings: a leader lingers at most `wait` seconds for company (or until
    `max_size` requests are pending); `adaptive`: only when the previous group had company."""

    wait: float
    max_size: int
    adaptive: bool = True


@dataclass(eq=False, kw_only=True)
class Request:
    """One all-or-nothing request of a group; its drafts (leaf templates) are built on
    construction, in the request's own thread, before the lock."""

    tenant: str
    actor: str
    items: list[tuple[str, Prepared]]
    idempotency: Idempotency | None = None
    render: Render | None = None
    drafts: list[Draft] = field(init=False)
    payloads: list[bytes] = field(init=False)

    def __post_init__(self) -> None:
        self.drafts = [p.draft(event_id=eid, tenant=self.tenant) for eid, p in self.items]
        self.payloads = [p.payload for _, p in self.items]


class Replay:
    """A request's outcome in a group: its idempotency key was recorded by another
    transaction; the request's own thread answers with that record, read after the commit."""


Outcome = Sequenced | ProveniqError | Replay


class Sequencer:
    def __init__(
        self,
        *,
        store: SequencingStore,
        relay: Relay | None,
        reader: LedgerReader | None = None,
        telemetry: Telemetry | None = None,
        group: GroupCommit | None = None,
    ) -> None:
        self.store = store
        self.relay = relay
        self.reader = reader  # to return the original entries of an idempotent replay
        self.telemetry: Telemetry = telemetry or NoTelemetry()
        # None: one transaction per request, as before group commit
        self.committer: GroupCommitter[Request, Outcome] | None = (
            None
            if group is None
            else GroupCommitter(
                self.commit_group,
                wait=group.wait,
                max_size=group.max_size,
                adaptive=group.adaptive,
            )
        )

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
        if self.committer is not None and len(items) <= GROUPED_MAX_EVENTS:
            return self._sequence_grouped(
                Request(
                    tenant=tenant, actor=actor, items=items, idempotency=idempotency, render=render
                ),
                started,
            )
        try:
            result = self._sequence(tenant, actor, items, idempotency, render)
        except _LostIdempotencyRace:
            assert idempotency is not None
            replay = self._replay(tenant, idempotency)
            assert replay is not None
            return Sequenced(entries=[], payloads=[], response=replay, replayed=True)
        if not result.replayed:
            self._committed(tenant, _stored(actor, result), started)
        return result

    def _committed(self, tenant: str, events: list[StoredEvent], started: float) -> None:
        """After a commit: count the events, then relay them to `ledger-events`."""
        if not events:
            return
        self.telemetry.events_sequenced(
            [ev.entry.type for ev in events],
            partner_id=tenant,
            seconds=time.perf_counter() - started,
        )
        if self.relay is not None:
            self.relay.relay(events)

    def _sequence_grouped(self, request: Request, started: float) -> Sequenced:
        assert self.committer is not None
        idem = request.idempotency
        if idem is not None:
            replay = self._replay(request.tenant, idem)
            if replay is not None:
                return Sequenced(entries=[], payloads=[], response=replay, replayed=True)
        outcome = self.committer.submit(request)
        if isinstance(outcome, ProveniqError):
            raise outcome
        if isinstance(outcome, Replay):
            assert idem is not None
            replay = self._replay(request.tenant, idem)
            if replay is None:
                raise InternalError("an idempotency record vanished")
            return Sequenced(entries=[], payloads=[], response=replay, replayed=True)
        if outcome.replayed:
            return outcome
        self._committed(request.tenant, _stored(request.actor, outcome), started)
        if outcome.response is None and request.render is not None:
            # rendered here, outside the lock: only an idempotent request's response is stored
            return Sequenced(
                entries=outcome.entries,
                payloads=outcome.payloads,
                response=request.render(outcome.entries),
            )
        return outcome

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

    def commit_group(self, requests: Sequence[Request]) -> list[Outcome]:
        """Sequence `requests` under ONE lock acquisition, each all-or-nothing on its own and in
        order; one outcome per request. A refused request (lifecycle, idempotency conflict,
        a value the database refuses) gets its error and takes no `seq`; a request whose key
        an earlier request of the group recorded with the same body replays it; one whose key
        another transaction recorded meanwhile gets `Replay`. A transient failure gives every
        request `Unavailable` and commits nothing. Nothing is relayed here."""
        lost: set[int] = set()  # requests whose key another transaction recorded
        while True:
            try:
                outcomes, lost_now = self._commit_fast(requests, lost)
            except _StatementRefused:
                try:
                    return self._commit_slowly(requests, lost)
                except ProveniqError as e:
                    if e.transient:
                        return _unavailable(requests, e)
                    raise
            except ProveniqError as e:
                if e.transient:
                    return _unavailable(requests, e)
                raise
            if not lost_now:
                return outcomes
            lost |= lost_now  # rolled back: redo without them (each round drops one or more)

    def _commit_fast(
        self, requests: Sequence[Request], lost: set[int]
    ) -> tuple[list[Outcome], set[int]]:
        """Two round trips: lock + tail + statuses, then write + commit."""
        subjects = sorted(
            {(r.tenant, d.subject) for r in requests for d in r.drafts if lifecycle.governs(d.type)}
        )
        with self.store.group() as tx:
            locked = tx.lock(subjects)
            plan = _plan(requests, locked, lost)
            if not plan.write.events:
                return plan.outcomes, set()  # nothing to write: rolled back
            try:
                taken = tx.commit(plan.write)
            except ProveniqError as e:
                if e.transient:
                    raise
                raise _StatementRefused(e.message) from e
        lost_now = {plan.keyed[i] for i in taken}
        if taken and lost_now <= lost:
            raise InternalError("the store reported an idempotency race it cannot have had")
        return plan.outcomes, lost_now

    def _commit_slowly(self, requests: Sequence[Request], lost: set[int]) -> list[Outcome]:
        """The slow path: one savepoint per request (two more round trips each), so a request
        whose values the database refuses fails alone."""
        outcomes: list[Outcome] = []
        with self.store.sequencing() as tx:
            tail, recorded_at = tx.lock_tail()
            for i, r in enumerate(requests):
                if i in lost:
                    outcomes.append(Replay())
                    continue
                items = list(r.items)
                render = r.render if r.idempotency is not None else None
                try:
                    with tx.savepoint():
                        entries, response = self._sequence_locked(
                            tx, tail, recorded_at, r.tenant, r.actor, items, r.idempotency, render
                        )
                except _LostIdempotencyRace:
                    outcomes.append(Replay())  # recorded before, in this group or elsewhere
                    continue
                except ProveniqError as e:
                    if e.transient:
                        raise
                    outcomes.append(e)
                    continue
                outcomes.append(Sequenced(entries=entries, payloads=r.payloads, response=response))
                tail = Tail(size=entries[-1].seq + 1, leaf_hash=entries[-1].leaf_hash())
        return outcomes

    def append_each(
        self, *, tenant: str, requests: Sequence[AppendRequest]
    ) -> list[list[Entry] | ProveniqError]:
        """The BatchAppender port: every request under one lock (`commit_group`), each
        all-or-nothing on its own. A permanent refusal takes its request's slot; a transient
        failure raises and nothing of the group is committed."""
        slots: list[list[Entry] | ProveniqError | None] = [None] * len(requests)
        group: list[tuple[int, Request]] = []
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
            items = [(f"evt_{uuid.uuid4().hex}", p) for p in prepared]
            group.append(
                (
                    i,
                    Request(
                        tenant=tenant,
                        actor=r.actor,
                        items=items,
                        idempotency=idem,
                        render=_ids_response,
                    ),
                )
            )
        started = time.perf_counter()
        outcomes = self.commit_group([req for _, req in group]) if group else []
        committed: list[StoredEvent] = []
        for (i, req), o in zip(group, outcomes, strict=True):
            if isinstance(o, ProveniqError):
                if o.transient:
                    raise o
                slots[i] = o
            elif isinstance(o, Replay) or o.replayed:
                assert req.idempotency is not None
                replays[i] = req.idempotency
            else:
                slots[i] = o.entries
                committed += _stored(req.actor, o)
        self._committed(tenant, committed, started)
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


def _stored(actor: str, result: Sequenced) -> list[StoredEvent]:
    return [
        StoredEvent(entry=e, payload=p, actor=actor)
        for e, p in zip(result.entries, result.payloads, strict=True)
    ]


def _ids_response(entries: list[Entry]) -> StoredResponse:
    return StoredResponse(status=201, body=json.dumps({"ids": [e.id for e in entries]}).encode())


def _next_statuses(
    current: Mapping[str, str | None], drafts: Sequence[Draft]
) -> dict[str, tuple[str, int]]:
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


class _StatementRefused(ProveniqError):
    """Internal: the database refused the group's write for a non-transient reason (rolled
    back; the connection is fine)."""


@dataclass(frozen=True)
class _Plan:
    outcomes: list[Outcome]
    write: GroupWrite
    keyed: list[int]  # request index of each of write.responses


def _plan(requests: Sequence[Request], locked: Locked, lost: set[int]) -> _Plan:
    """Decide every request of a group in order, after the tail and statuses read under the
    lock: lifecycle transitions (each request sees the statuses left by the earlier ones) and
    idempotency keys used twice in the group; then link the accepted ones, in one run. Pure."""
    decided: list[Outcome | int | None] = []  # None: accepted; int: replays that request
    state: dict[tuple[str, str], str | None] = dict(locked.statuses)
    moves: list[dict[tuple[str, str], tuple[str, int]]] = []  # of the accepted, in order
    drafts: list[Draft] = []
    first: dict[tuple[str, str], int] = {}  # (tenant, key) -> the request that records it
    for i, r in enumerate(requests):
        idem = r.idempotency
        key = None if idem is None or r.render is None else (r.tenant, idem.key)
        if key is not None and key in first:  # an earlier request of the group has it
            j = first[key]
            earlier = decided[j]
            same = requests[j].idempotency.request_hash == idem.request_hash  # type: ignore[union-attr]
            decided.append(
                earlier
                if isinstance(earlier, Replay)
                else j
                if same
                else IdempotencyConflict(
                    "Idempotency-Key was already used with a different request body"
                )
            )
            continue
        if i in lost:
            decided.append(Replay())
            if key is not None:
                first[key] = i
            continue
        try:
            changes = _transitions(r, state)
        except ProveniqError as e:
            decided.append(e)
            continue
        for k, (status, _) in changes.items():
            state[k] = status
        decided.append(None)
        moves.append(changes)
        drafts += r.drafts
        if key is not None:
            first[key] = i
    linked = link(drafts, tail=locked.tail, recorded_at=locked.recorded_at) if drafts else []
    outcomes: list[Outcome] = []
    events: list[StoredEvent] = []
    statuses: dict[tuple[str, str], tuple[str, int]] = {}
    responses: list[tuple[str, Idempotency, StoredResponse]] = []
    keyed: list[int] = []
    at = 0
    accepted = iter(moves)
    for i, (r, d) in enumerate(zip(requests, decided, strict=True)):
        if d is not None:
            outcomes.append(d if not isinstance(d, int) else _replayed(outcomes[d]))
            continue
        entries = linked[at : at + len(r.drafts)]
        at += len(r.drafts)
        for k, (status, offset) in next(accepted).items():
            statuses[k] = (status, entries[offset].seq)
        events += [
            StoredEvent(entry=e, payload=p, actor=r.actor)
            for e, p in zip(entries, r.payloads, strict=True)
        ]
        response = None
        if r.idempotency is not None and r.render is not None:
            response = r.render(entries)
            responses.append((r.tenant, r.idempotency, response))
            keyed.append(i)
        outcomes.append(Sequenced(entries=entries, payloads=r.payloads, response=response))
    return _Plan(
        outcomes=outcomes,
        write=GroupWrite(events=events, statuses=statuses, responses=responses),
        keyed=keyed,
    )


def _replayed(first: Outcome) -> Outcome:
    assert isinstance(first, Sequenced)
    return Sequenced(entries=[], payloads=[], response=first.response, replayed=True)


def _transitions(
    r: Request, state: dict[tuple[str, str], str | None]
) -> dict[tuple[str, str], tuple[str, int]]:
    """The request's lifecycle moves from `state` (not changed): (tenant, subject) -> (final
    status, offset of the event that set it); LifecycleConflict if one is impossible."""
    current = {
        d.subject: state.get((r.tenant, d.subject)) for d in r.drafts if lifecycle.governs(d.type)
    }
    return {(r.tenant, s): move for s, move in _next_statuses(current, r.drafts).items()}


def _unavailable(requests: Sequence[Request], e: ProveniqError) -> list[Outcome]:
    """A transient failure: every request of the group fails with its own 503."""
    out: list[Outcome] = []
    for _ in requests:
        err = Unavailable(e.message)
        err.__cause__ = e
        out.append(err)
    return out
