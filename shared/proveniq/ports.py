"""Ports: the narrow interfaces the use cases need from the outside world, and the values that
cross them.

Each port is shaped by one use: sequencing (the append transaction), reading the log, the
integration transaction, the outbox, the audit's snapshot, accounts, rate buckets, the message
bus, identity. PostgreSQL implements the storage ports (`proveniq.adapters.postgres`), with
in-memory twins in `proveniq.adapters.memory`; the bus and identity have GCP and local adapters.
Settings choose, never "if testing".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from proveniq.errors import ProveniqError
from proveniq.log.chain import Tail
from proveniq.log.entry import Entry
from proveniq.log.integrate import NodeId

GlobalRole = Literal["ADMIN", "AUDITOR", "INVESTOR", "USER"]
OrgRole = Literal["OWNER", "ADMIN", "MEMBER", "VIEWER"]

# ---- values ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Message:
    """One Pub/Sub message: `ordering_key` keeps one subject's events in order."""

    data: bytes
    attributes: Mapping[str, str] = field(default_factory=dict)
    ordering_key: str = ""


@dataclass(frozen=True, kw_only=True)
class Principal:
    """Who is calling: an API key of a partner, or an app user with a Firebase ID token."""

    subject: str  # "key:<api key id>" or "firebase:<uid>"
    tenant: str | None  # the partner / organization id, None for platform-wide principals
    org_role: OrgRole | None
    global_role: GlobalRole = "USER"
    tier: str = "free"


@dataclass(frozen=True, kw_only=True)
class StoredEvent:
    """An entry as stored: the entry, its canonical payload bytes (None once erased), the actor."""

    entry: Entry
    payload: bytes | None
    actor: str
    stored_leaf: bytes | None = None  # the leaf_hash column as read, for audits


@dataclass(frozen=True, kw_only=True)
class StoredResponse:
    status: int
    body: bytes


@dataclass(frozen=True, kw_only=True)
class Idempotency:
    key: str
    request_hash: bytes


@dataclass(frozen=True, kw_only=True)
class StoredCheckpoint:
    size: int
    root: bytes
    note: str


@dataclass(frozen=True, kw_only=True)
class EventFilter:
    tenant: str | None
    event_type: str | None = None
    subject: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    after_seq: int | None = None
    limit: int = 50


@dataclass(frozen=True, kw_only=True)
class Partner:
    id: str
    name: str
    tier: str
    created_at: datetime
    status: str = "active"  # active | suspended (its keys and tokens are refused)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "tier": self.tier,
            "status": self.status,
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True, kw_only=True)
class KeyRecord:
    id: str
    prefix: str
    key_hash: bytes
    partner_id: str | None
    org_role: str | None
    global_role: str
    tier: str
    revoked: bool
    label: str = ""
    created_at: datetime | None = None
    revoked_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        """The listing view: never the secret, nor its hash."""
        return {
            "id": self.id,
            "prefix": self.prefix,
            "partner_id": self.partner_id,
            "role": self.org_role,
            "global_role": self.global_role,
            "label": self.label,
            "created_at": None if self.created_at is None else self.created_at.isoformat(),
            "revoked_at": None if self.revoked_at is None else self.revoked_at.isoformat(),
        }


@dataclass(frozen=True, kw_only=True)
class NewEvent:
    """An event a follower or an intake asks the ledger to sequence (validated like a partner's
    submission: type, subject, payload limits, lifecycle rules)."""

    type: str
    subject: str
    payload: Mapping[str, Any]
    occurred_at: datetime | None = None


# ---- the log's storage ----------------------------------------------------------------------


class SequencingTx(Protocol):
    """One append transaction, holding the ledger's write lock from `lock_tail` to commit."""

    def lock_tail(self) -> tuple[Tail, datetime]:
        """Take the write lock; return the tail and the database clock read under it."""

    def subject_statuses(self, tenant: str, subjects: Sequence[str]) -> dict[str, str]: ...

    def insert(self, entries: Sequence[Entry], payloads: Sequence[bytes], actor: str) -> None:
        """Insert the events and their outbox rows."""

    def save_statuses(self, tenant: str, statuses: Mapping[str, tuple[str, int]]) -> None:
        """subject -> (lifecycle status, seq of the event that set it)."""

    def save_response(self, tenant: str, idem: Idempotency, response: StoredResponse) -> bool:
        """Record the idempotent response; False if a concurrent request with the key won."""

    def savepoint(self) -> AbstractContextManager[None]:
        """A nested all-or-nothing step: an exception inside undoes only that step (and is
        re-raised); the transaction and the lock stay."""


@dataclass(frozen=True, kw_only=True)
class Locked:
    """What a group's transaction reads under the write lock."""

    tail: Tail
    recorded_at: datetime  # the database clock, read under the lock
    statuses: Mapping[tuple[str, str], str]  # (tenant, subject) -> status, for those that have one


@dataclass(frozen=True, kw_only=True)
class GroupWrite:
    """Everything a group of requests writes, in one statement."""

    events: Sequence[StoredEvent]  # in seq order, contiguous from the locked tail
    statuses: Mapping[tuple[str, str], tuple[str, int]]  # (tenant, subject) -> (status, seq)
    responses: Sequence[tuple[str, Idempotency, StoredResponse]]  # (tenant, key, response)


class GroupTx(Protocol):
    """The sequencing transaction of a group (group commit): two round trips in all."""

    def lock(self, subjects: Sequence[tuple[str, str]]) -> Locked:
        """Begin, take the write lock, then read the tail, the clock and the statuses of
        `subjects` (tenant, subject pairs) - one round trip."""

    def commit(self, write: GroupWrite) -> Sequence[int]:
        """Write everything and commit - one round trip. If another transaction recorded some
        of the idempotency keys of `write.responses` meanwhile, nothing is written (rolled
        back) and their positions in `write.responses` are returned; else an empty list."""


class SequencingStore(Protocol):
    def sequencing(self) -> AbstractContextManager[SequencingTx]:
        """A transaction that commits on a clean exit and rolls back on an exception."""

    def group(self) -> AbstractContextManager[GroupTx]:
        """A group's transaction: committed by `GroupTx.commit`, rolled back otherwise."""

    def stored_response(self, tenant: str, key: str) -> tuple[bytes, StoredResponse] | None:
        """(request hash, response) recorded for an idempotency key."""


class LedgerView(Protocol):
    """Reads inside one consistent snapshot. Every event read is scoped by `tenant` (None only
    for platform-wide principals)."""

    def event(self, tenant: str | None, event_id: str) -> StoredEvent | None: ...

    def event_by_leaf(self, tenant: str | None, leaf_hash: bytes) -> StoredEvent | None: ...

    def events(self, f: EventFilter) -> list[StoredEvent]:
        """A page in seq order (a stable cursor: the last seq returned)."""

    def latest_checkpoint(self) -> StoredCheckpoint | None: ...

    def checkpoint(self, size: int) -> StoredCheckpoint | None: ...

    def checkpoints_page(self, *, before: int | None, limit: int) -> list[StoredCheckpoint]:
        """Newest first; `before` is an exclusive upper bound on the size."""

    def nodes(self, ids: Sequence[NodeId]) -> dict[NodeId, bytes]: ...


class LedgerReader(Protocol):
    def snapshot(self) -> AbstractContextManager[LedgerView]: ...


class CheckpointWatch(Protocol):
    """Tells this instance that a checkpoint was published: one listener per process, woken by
    the seal's commit (PostgreSQL LISTEN/NOTIFY; the memory ledger signals directly), with a
    slow safety poll. `start` is idempotent; `on_published` gets the latest published
    checkpoint, from the watch's own thread, at start and after each new one."""

    def start(self, on_published: Callable[[StoredCheckpoint], None]) -> None: ...

    def close(self) -> None: ...


class IntegrationTx(Protocol):
    """One integration run, holding the integration lock until commit."""

    def lock(self) -> None: ...

    def latest_checkpoint(self) -> StoredCheckpoint | None: ...

    def leaves(self, start: int, limit: int) -> list[tuple[int, bytes]]:
        """(seq, leaf hash) from `start` in seq order."""

    def nodes(self, ids: Sequence[NodeId]) -> dict[NodeId, bytes]: ...

    def write_nodes(self, nodes: Mapping[NodeId, bytes]) -> None: ...

    def save_checkpoint(self, checkpoint: StoredCheckpoint) -> None: ...

    def recorded_at(self, seqs: Sequence[int]) -> list[datetime]:
        """When the entries of `seqs` were sequenced (for time-to-integrate)."""


class IntegrationStore(Protocol):
    def integration(self) -> AbstractContextManager[IntegrationTx]: ...


class Outbox(Protocol):
    def unrelayed(self, *, limit: int, min_age_seconds: float) -> list[StoredEvent]:
        """Committed events not yet relayed, older than `min_age_seconds`."""

    def mark_relayed(self, seqs: Sequence[int]) -> None: ...

    def backlog(self) -> int:
        """How many committed events are not yet relayed."""


class AuditView(Protocol):
    """A repeatable-read snapshot of everything stored, page by page (the audit streams it:
    no call answers more than its limit or its ranges)."""

    def events_from(self, seq: int, limit: int) -> list[StoredEvent]:
        """At most `limit` events from `seq` on, in seq order."""

    def nodes_in(self, ranges: Sequence[tuple[int, int, int]]) -> list[tuple[NodeId, bytes]]:
        """The stored nodes `(level, idx)` with `lo <= idx < hi`, for each `(level, lo, hi)`
        (ranges of distinct levels, a bounded total span), in any order."""

    def nodes_from(self, level: int, idx: int, limit: int) -> list[tuple[int, bytes]]:
        """At most `limit` stored nodes of `level` from index `idx` on: (index, hash) by index."""

    def checkpoints_after(self, size: int, limit: int) -> list[StoredCheckpoint]:
        """At most `limit` checkpoints larger than `size`, by size."""

    def latest_checkpoint(self) -> StoredCheckpoint | None: ...


class AuditSource(Protocol):
    def audit_snapshot(self) -> AbstractContextManager[AuditView]: ...


# ---- accounts and limits --------------------------------------------------------------------


class AccountStore(Protocol):
    def insert_partner(self, *, partner_id: str, name: str, tier: str) -> Partner: ...

    def partners(self) -> list[Partner]: ...

    def partner_exists(self, partner_id: str) -> bool: ...

    def active_partner_tier(self, partner_id: str) -> str | None: ...

    def insert_key(
        self,
        *,
        key_id: str,
        prefix: str,
        key_hash: bytes,
        partner_id: str | None,
        org_role: str | None,
        global_role: str,
        label: str,
    ) -> None: ...

    def revoke_key(self, key_id: str) -> Literal["revoked", "already", "missing"]: ...

    def key_by_prefix(self, prefix: str) -> KeyRecord | None: ...

    def partner(self, partner_id: str) -> Partner | None: ...

    def update_partner(
        self, partner_id: str, *, tier: str | None, suspended: bool | None
    ) -> Partner | None:
        """Change a partner's tier and/or suspension; None if there is no such partner."""

    def keys(self, partner_id: str | None) -> list[KeyRecord]:
        """Every key of a partner (None: the platform keys), newest first."""


class RateBuckets(Protocol):
    def take(self, *, bucket: str, capacity: float, refill_per_second: float) -> float:
        """Spend one token (refilling first); return the tokens left (negative: refused)."""


# ---- telemetry ------------------------------------------------------------------------------


class Telemetry(Protocol):
    """What the use cases report to the metrics (`proveniq.app.metrics.Metrics` implements it)."""

    def events_sequenced(
        self, event_types: Sequence[str], *, partner_id: str | None, seconds: float
    ) -> None: ...

    def proof_generated(self, proof_type: str) -> None: ...

    def checkpoint_published(self, *, size: int, integrate_seconds: Sequence[float]) -> None: ...

    def checkpoint_refused(self) -> None: ...


class NoTelemetry:
    """Reports nowhere (tests, the offline tools)."""

    def events_sequenced(
        self, event_types: Sequence[str], *, partner_id: str | None, seconds: float
    ) -> None:
        return None

    def proof_generated(self, proof_type: str) -> None:
        return None

    def checkpoint_published(self, *, size: int, integrate_seconds: Sequence[float]) -> None:
        return None

    def checkpoint_refused(self) -> None:
        return None


# ---- messaging and identity -----------------------------------------------------------------


class Bus(Protocol):
    def send(self, topic: str, messages: Sequence[Message]) -> None:
        """Send all messages to a Pub/Sub topic or raise `errors.Unavailable`."""


class IdentityVerifier(Protocol):
    def verify(self, id_token: str) -> Principal:
        """Verify an app's ID token or raise `errors.AuthInvalid` naming why."""


@dataclass(frozen=True, kw_only=True)
class AppendRequest:
    """One all-or-nothing request inside a group (`BatchAppender.append_each`)."""

    actor: str
    events: Sequence[NewEvent]
    idempotency_key: str | None = None


class BatchAppender(Protocol):
    def append_each(
        self, *, tenant: str, requests: Sequence[AppendRequest]
    ) -> list[list[Entry] | ProveniqError]:
        """Sequence every request of `tenant` under one lock acquisition, each all-or-nothing on
        its own: a permanent refusal (ValidationError, Conflict) takes that request's slot and
        the others still commit; a request whose idempotency key was used for the same events
        gets the entries of the first time. Raises `errors.Unavailable` (nothing committed)."""


class LedgerAppender(Protocol):
    def append(
        self,
        *,
        tenant: str,
        actor: str,
        events: Sequence[NewEvent],
        idempotency_key: str | None = None,
    ) -> list[Entry]:
        """Sequence `events` all-or-nothing and return their entries. With an idempotency key
        already used for the same events, return the entries sequenced the first time (no second
        append). Raises `errors.ValidationError` / `errors.LifecycleConflict` for permanent
        refusals and `errors.Unavailable` for transient ones."""
