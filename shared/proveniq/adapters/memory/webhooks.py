"""In-memory twins of the webhook ports: `MemoryWebhookStore` and `MemoryTaskQueue`.

They behave like the PostgreSQL adapters (the conformance test runs one body over both):
tenant-scoped lookups, secrets kept only sealed by the given `SecretBox`, fenced claims with
leases, newest-first listing by seq. Thread-safe (one lock).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from proveniq.errors import NotFound
from proveniq.followers.webhooks.ports import (
    Attempt,
    AttemptTask,
    Claim,
    Delivery,
    WebhookMessage,
)
from proveniq.followers.webhooks.secrets import SecretBox
from proveniq.followers.webhooks.subscriptions import Secrets, Subscription


@dataclass(frozen=True, kw_only=True)
class _SealedSecrets:
    current: bytes
    previous: bytes | None
    previous_until: datetime | None


class MemoryWebhookStore:
    def __init__(self, *, box: SecretBox) -> None:
        self._box = box
        self._lock = threading.Lock()
        self._subs: dict[str, Subscription] = {}
        self._deleted: set[str] = set()
        self.sealed: dict[str, _SealedSecrets] = {}  # public: tests check nothing is plain
        self._messages: dict[tuple[str, str], WebhookMessage] = {}
        self._deliveries: dict[str, Delivery] = {}
        self._leases: dict[str, datetime] = {}
        self._attempts: dict[tuple[str, int, int], Attempt] = {}
        self._seq = 0

    # -- subscriptions -------------------------------------------------------------------

    def add_subscription(self, subscription: Subscription, secrets: Secrets) -> None:
        sealed = self._seal(secrets)
        with self._lock:
            self._subs[subscription.id] = subscription
            self.sealed[subscription.id] = sealed

    def subscription(self, tenant: str, subscription_id: str) -> Subscription:
        with self._lock:
            return self._sub(tenant, subscription_id)

    def subscriptions(self, tenant: str) -> list[Subscription]:
        with self._lock:
            subs = [
                s for s in self._subs.values() if s.tenant == tenant and s.id not in self._deleted
            ]
        return sorted(subs, key=lambda s: (s.created_at, s.id))

    def save_subscription(self, subscription: Subscription) -> None:
        with self._lock:
            self._sub(subscription.tenant, subscription.id)
            self._subs[subscription.id] = subscription

    def delete_subscription(self, tenant: str, subscription_id: str, *, now: datetime) -> None:
        with self._lock:
            self._sub(tenant, subscription_id)
            self._deleted.add(subscription_id)

    def secrets(self, tenant: str, subscription_id: str) -> Secrets:
        with self._lock:
            self._sub(tenant, subscription_id)
            s = self.sealed[subscription_id]
        return Secrets(
            current=self._box.open(s.current).decode(),
            previous=None if s.previous is None else self._box.open(s.previous).decode(),
            previous_until=s.previous_until,
        )

    def save_secrets(
        self, tenant: str, subscription_id: str, secrets: Secrets, *, now: datetime
    ) -> None:
        sealed = self._seal(secrets)
        with self._lock:
            self._sub(tenant, subscription_id)
            self.sealed[subscription_id] = sealed

    def _sub(self, tenant: str, subscription_id: str) -> Subscription:
        s = self._subs.get(subscription_id)
        if s is None or s.tenant != tenant or subscription_id in self._deleted:
            raise NotFound(f"webhook {subscription_id} not found")
        return s

    def _seal(self, secrets: Secrets) -> _SealedSecrets:
        return _SealedSecrets(
            current=self._box.seal(secrets.current.encode()),
            previous=None
            if secrets.previous is None
            else self._box.seal(secrets.previous.encode()),
            previous_until=secrets.previous_until,
        )

    # -- deliveries ----------------------------------------------------------------------

    def add_deliveries(
        self, message: WebhookMessage, deliveries: Sequence[Delivery]
    ) -> list[Delivery]:
        out = []
        with self._lock:
            self._messages.setdefault((message.tenant, message.event_id), message)
            for d in deliveries:
                if d.id not in self._deliveries:
                    self._seq += 1
                    self._deliveries[d.id] = replace(d, seq=self._seq)
                out.append(self._deliveries[d.id])
        return out

    def delivery(self, tenant: str, delivery_id: str) -> Delivery:
        with self._lock:
            return self._delivery(tenant, delivery_id)

    def message(self, tenant: str, event_id: str) -> WebhookMessage:
        with self._lock:
            m = self._messages.get((tenant, event_id))
        if m is None:
            raise NotFound(f"webhook message {event_id} not found")
        return m

    def claim(self, task: AttemptTask, *, now: datetime, lease_until: datetime) -> Claim:
        with self._lock:
            d = self._deliveries.get(task.delivery_id)
            if d is None or d.tenant != task.tenant:
                return Claim(status="stale", delivery=None)
            if d.state != "pending" or d.round != task.round or d.attempt != task.attempt - 1:
                return Claim(status="stale", delivery=d)
            lease = self._leases.get(d.id)
            if lease is not None and lease > now:
                return Claim(status="busy", delivery=d)
            self._leases[d.id] = lease_until
            return Claim(status="claimed", delivery=d)

    def finish(self, claimed: Delivery, updated: Delivery, attempt: Attempt | None) -> bool:
        with self._lock:
            if attempt is not None:
                self._attempts.setdefault(
                    (attempt.delivery_id, attempt.round, attempt.number), attempt
                )
            d = self._deliveries.get(claimed.id)
            if d is None or d.round != claimed.round or d.attempt != claimed.attempt:
                return False
            if d.state != "pending":
                return False
            self._deliveries[claimed.id] = replace(updated, seq=d.seq)
            self._leases.pop(claimed.id, None)
            return True

    def replay(self, tenant: str, delivery_id: str, *, now: datetime) -> Delivery:
        with self._lock:
            d = self._delivery(tenant, delivery_id)
            r = replace(
                d,
                state="pending",
                round=d.round + 1,
                attempt=0,
                next_attempt_at=now,
                updated_at=now,
            )
            self._deliveries[d.id] = r
            self._leases.pop(d.id, None)
            return r

    def deliveries(
        self, tenant: str, subscription_id: str, *, before_seq: int | None, limit: int
    ) -> list[Delivery]:
        with self._lock:
            rows = [
                d
                for d in self._deliveries.values()
                if d.tenant == tenant
                and d.subscription_id == subscription_id
                and (before_seq is None or d.seq < before_seq)
            ]
        return sorted(rows, key=lambda d: -d.seq)[:limit]

    def attempts(self, tenant: str, delivery_ids: Sequence[str]) -> dict[str, list[Attempt]]:
        out: dict[str, list[Attempt]] = {}
        with self._lock:
            mine = {i for i in delivery_ids if self._owned(tenant, i)}
            for key in sorted(self._attempts):
                if key[0] in mine:
                    out.setdefault(key[0], []).append(self._attempts[key])
        return out

    def overdue(self, *, before: datetime, limit: int) -> list[Delivery]:
        with self._lock:
            rows = [
                d
                for d in self._deliveries.values()
                if d.state == "pending"
                and d.next_attempt_at is not None
                and d.next_attempt_at < before
                and not (d.id in self._leases and self._leases[d.id] > before)
            ]
        return sorted(rows, key=lambda d: (d.next_attempt_at or before, d.seq))[:limit]

    def counts(self, tenant: str, subscription_id: str) -> dict[str, int]:
        out: dict[str, int] = {}
        with self._lock:
            for d in self._deliveries.values():
                if d.tenant == tenant and d.subscription_id == subscription_id:
                    out[d.state] = out.get(d.state, 0) + 1
        return out

    def _owned(self, tenant: str, delivery_id: str) -> bool:
        d = self._deliveries.get(delivery_id)
        return d is not None and d.tenant == tenant

    def _delivery(self, tenant: str, delivery_id: str) -> Delivery:
        d = self._deliveries.get(delivery_id)
        if d is None or d.tenant != tenant:
            raise NotFound(f"delivery {delivery_id} not found")
        return d


class MemoryTaskQueue:
    """A `PolledQueue` in memory: tasks by name, due by ``not_before``, leased when taken."""

    def __init__(self, *, lease: timedelta = timedelta(minutes=2)) -> None:
        self._lock = threading.Lock()
        self._tasks: dict[str, AttemptTask] = {}
        self._leased: dict[str, datetime] = {}
        self.enqueued: list[AttemptTask] = []  # every accepted enqueue, in order (tests)
        self._lease = lease

    def enqueue(self, task: AttemptTask) -> None:
        with self._lock:
            if task.name not in self._tasks:
                self._tasks[task.name] = task
                self.enqueued.append(task)

    def pending(self) -> list[AttemptTask]:
        with self._lock:
            return sorted(self._tasks.values(), key=lambda t: (t.not_before, t.name))

    def due(self, *, now: datetime, limit: int) -> list[AttemptTask]:
        with self._lock:
            ready = sorted(
                (
                    t
                    for t in self._tasks.values()
                    if t.not_before <= now
                    and not (t.name in self._leased and self._leased[t.name] > now)
                ),
                key=lambda t: (t.not_before, t.name),
            )[:limit]
            for t in ready:
                self._leased[t.name] = now + self._lease
            return ready

    def complete(self, task: AttemptTask) -> None:
        with self._lock:
            self._tasks.pop(task.name, None)
            self._leased.pop(task.name, None)

    def retry_later(self, task: AttemptTask, *, at: datetime) -> None:
        with self._lock:
            if task.name in self._tasks:
                self._tasks[task.name] = replace(task, not_before=at)
                self._leased.pop(task.name, None)
