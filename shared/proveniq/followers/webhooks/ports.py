"""The values a webhook store keeps and the ports the use cases need.

    WebhookMessage  one event's signed body, stored once per (tenant, event id)
    Delivery        one event to one subscription: state, round, attempts made, next attempt
    Attempt         one HTTP try of a delivery (append-only history)
    AttemptTask     "make attempt N of round R of delivery D, not before T": what the task
                    queue carries (Cloud Tasks in production, a PostgreSQL table locally)

A delivery's life::

    pending --2xx--> delivered
    pending --410--> dead (subscription disabled)
    pending --failure, schedule exhausted--> dead          (dead letter)
    pending --subscription disabled/deleted--> cancelled
    any state --replay--> pending (round + 1, attempts of the round from 0)

Tasks are fenced by (round, attempt): a task whose numbers are not the delivery's next attempt
is stale and dropped, so duplicated, late or pre-replay tasks never send twice. A claim takes a
short lease, so two copies of one task running at once send once.

Adapters: `adapters.memory.webhooks` and `adapters.postgres.webhooks` (store and a polled
queue), `adapters.gcp.tasks` (Cloud Tasks). All raise `errors.Unavailable` for transient
failures and `errors.NotFound` for an id that is not the tenant's.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from proveniq.errors import ValidationError
from proveniq.followers.webhooks.schedule import Outcome
from proveniq.followers.webhooks.subscriptions import Secrets, Subscription
from proveniq.log.timefmt import format_time, parse_time

DeliveryState = Literal["pending", "delivered", "dead", "cancelled"]
DeliveryKind = Literal["event", "test"]
ClaimStatus = Literal["claimed", "stale", "busy"]


@dataclass(frozen=True, kw_only=True)
class WebhookMessage:
    tenant: str
    event_id: str
    type: str
    body: bytes
    created_at: datetime


@dataclass(frozen=True, kw_only=True)
class Delivery:
    id: str
    tenant: str
    subscription_id: str
    event_id: str
    event_type: str
    kind: DeliveryKind = "event"
    state: DeliveryState = "pending"
    round: int = 0  # 0 first, + 1 per replay
    attempt: int = 0  # attempts made in this round
    next_attempt_at: datetime | None = None
    last_status: int | None = None
    last_error: str | None = None
    created_at: datetime
    updated_at: datetime
    seq: int = 0  # assigned by the store: listing order, the cursor

    def next_task(self, not_before: datetime | None = None) -> AttemptTask:
        due = not_before or self.next_attempt_at or self.updated_at
        return AttemptTask(
            tenant=self.tenant,
            delivery_id=self.id,
            round=self.round,
            attempt=self.attempt + 1,
            not_before=due,
        )


@dataclass(frozen=True, kw_only=True)
class Attempt:
    delivery_id: str
    round: int
    number: int  # 1-based within the round
    started_at: datetime
    latency_ms: int
    status: int | None
    error: str | None
    outcome: Outcome
    next_attempt_at: datetime | None  # None: it was final (delivered, gone or dead letter)


@dataclass(frozen=True, kw_only=True)
class Claim:
    status: ClaimStatus
    delivery: Delivery | None  # the delivery as claimed (claimed) or as found (stale/busy)


@dataclass(frozen=True, kw_only=True)
class AttemptTask:
    tenant: str
    delivery_id: str
    round: int
    attempt: int
    not_before: datetime
    # the W3C trace context the task was enqueued under (kept by the queue, sent as a header),
    # so a delivery's log lines share the trace of the write that caused it
    traceparent: str = field(default="", compare=False)

    @property
    def name(self) -> str:
        """Deterministic, so a queue dedupes re-enqueues; starts with a hash (spreads keys)."""
        return f"{self.delivery_id}-r{self.round}-a{self.attempt}"

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "tenant": self.tenant,
                "delivery_id": self.delivery_id,
                "round": self.round,
                "attempt": self.attempt,
                "not_before": format_time(self.not_before),
            },
            separators=(",", ":"),
            sort_keys=True,
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> AttemptTask:
        """Strict: what `to_json` makes (webhook_dispatch answers 400 to anything else)."""
        try:
            d = json.loads(data)
        except (ValueError, UnicodeDecodeError) as e:
            raise ValidationError(f"not a JSON attempt task: {e}", field="body") from e
        keys = {"tenant", "delivery_id", "round", "attempt", "not_before"}
        if not isinstance(d, dict) or d.keys() != keys:
            raise ValidationError(f"an attempt task has exactly {sorted(keys)}", field="body")
        for k in ("tenant", "delivery_id"):
            if not isinstance(d[k], str) or not d[k] or len(d[k]) > 200:
                raise ValidationError("must be a non-empty string", field=k)
        for k in ("round", "attempt"):
            v = d[k]
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < 1_000_000:
                raise ValidationError("must be a small non-negative integer", field=k)
        if d["attempt"] < 1:
            raise ValidationError("attempts are numbered from 1", field="attempt")
        return cls(
            tenant=d["tenant"],
            delivery_id=d["delivery_id"],
            round=d["round"],
            attempt=d["attempt"],
            not_before=parse_time(d["not_before"], field="not_before"),
        )


class SubscriptionStore(Protocol):
    def add_subscription(self, subscription: Subscription, secrets: Secrets) -> None: ...

    def subscription(self, tenant: str, subscription_id: str) -> Subscription:
        """NotFound if it is not the tenant's or was deleted."""

    def subscriptions(self, tenant: str) -> list[Subscription]:
        """The tenant's subscriptions (not deleted), oldest first."""

    def save_subscription(self, subscription: Subscription) -> None:
        """Store url, events, description, enabled, disabled_reason, updated_at."""

    def delete_subscription(self, tenant: str, subscription_id: str, *, now: datetime) -> None:
        """Soft delete: it disappears from every listing, its deliveries stay visible."""

    def secrets(self, tenant: str, subscription_id: str) -> Secrets:
        """Opened from their sealed form."""

    def save_secrets(
        self, tenant: str, subscription_id: str, secrets: Secrets, *, now: datetime
    ) -> None: ...


class DeliveryStore(Protocol):
    def add_deliveries(
        self, message: WebhookMessage, deliveries: Sequence[Delivery]
    ) -> list[Delivery]:
        """Store the message and the deliveries not stored yet (by id); return every one of
        `deliveries` as stored (existing ones unchanged), in the given order."""

    def delivery(self, tenant: str, delivery_id: str) -> Delivery: ...

    def message(self, tenant: str, event_id: str) -> WebhookMessage: ...

    def claim(self, task: AttemptTask, *, now: datetime, lease_until: datetime) -> Claim:
        """Take the lease for the task's attempt if the delivery is pending, the task's
        (round, attempt) is its next attempt and no unexpired lease is held."""

    def finish(self, claimed: Delivery, updated: Delivery, attempt: Attempt | None) -> bool:
        """Record ``attempt`` (kept even if the delivery moved on) and, if the delivery is still
        as ``claimed`` left it (same round and attempt count), write ``updated`` and release
        the lease. False if it had moved on (e.g. replayed during the attempt)."""

    def replay(self, tenant: str, delivery_id: str, *, now: datetime) -> Delivery:
        """Start a new round: pending, round + 1, no attempts yet, due ``now``."""

    def deliveries(
        self, tenant: str, subscription_id: str, *, before_seq: int | None, limit: int
    ) -> list[Delivery]:
        """Newest first (by seq), seq < before_seq when given."""

    def attempts(self, tenant: str, delivery_ids: Sequence[str]) -> dict[str, list[Attempt]]:
        """Each delivery's attempts in the order made (round, number)."""

    def overdue(self, *, before: datetime, limit: int) -> list[Delivery]:
        """Pending deliveries of any tenant due before ``before`` with no unexpired lease."""

    def counts(self, tenant: str, subscription_id: str) -> dict[str, int]:
        """Deliveries per state (dead letters are counted here)."""


class WebhookStore(SubscriptionStore, DeliveryStore, Protocol):
    pass


class TaskQueue(Protocol):
    def enqueue(self, task: AttemptTask) -> None:
        """Schedule ``task`` at ``task.not_before``. Idempotent by ``task.name`` (an existing
        task of that name means done). Raises `errors.Unavailable` when it may be retried."""


class PolledQueue(TaskQueue, Protocol):
    """A queue a local worker drains (the durable twin of Cloud Tasks)."""

    def due(self, *, now: datetime, limit: int) -> list[AttemptTask]:
        """Claim up to ``limit`` tasks due at ``now`` (each leased for a while)."""

    def complete(self, task: AttemptTask) -> None: ...

    def retry_later(self, task: AttemptTask, *, at: datetime) -> None: ...
