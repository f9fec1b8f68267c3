"""The delivery use cases: fan-out, one attempt, replay, test event, listing, sweep.

`Dispatcher` is the kernel service behind two entry points:

- the fan-out follower on ``ledger-events`` calls `fan_out(LedgerEvent)` per message: each
  enabled subscription of the event's tenant that matches its type gets exactly one delivery
  (id derived from (subscription, event id), so a redelivered message adds nothing) and the
  first attempt is enqueued. A redelivery re-enqueues first attempts not yet made, under the
  same task names: a crash between storing and enqueueing loses nothing.
- ``webhook_dispatch`` (invoked by Cloud Tasks, or by the local worker) calls
  `attempt(AttemptTask)`: claim, sign with the active secrets, send, record the attempt, then
  schedule the next one (or dead-letter, or disable on 410). The attempt is recorded *before*
  the next task is enqueued; if enqueueing fails, `Unavailable` is raised, the platform
  retries the same task, which finds its attempt already made and enqueues the next again.

Only transient failures raise (`errors.Unavailable`: store, queue or secret box unreachable,
or the attempt is in flight elsewhere); every outcome of the partner's endpoint is recorded.
Delivery is at least once: receivers dedupe by ``webhook-id`` (the event id).
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from proveniq.errors import Conflict, NotFound, Unavailable, ValidationError
from proveniq.followers.webhooks.ports import (
    Attempt,
    AttemptTask,
    Delivery,
    TaskQueue,
    WebhookMessage,
    WebhookStore,
)
from proveniq.followers.webhooks.schedule import (
    Outcome,
    RetrySchedule,
    classify,
    parse_retry_after,
)
from proveniq.followers.webhooks.sender import Sender
from proveniq.followers.webhooks.signing import (
    LedgerEvent,
    event_body,
    signature_headers,
    webhook_test_body,
)
from proveniq.followers.webhooks.subscriptions import (
    TEST_EVENT_TYPE,
    delivery_id,
    webhook_type,
)

Clock = Callable[[], datetime]
MAX_PAGE = 100
MAX_ERROR = 500


@dataclass(frozen=True, kw_only=True)
class AttemptReport:
    """What `Dispatcher.attempt` did. ``stale``: the task was not the delivery's next attempt
    (a duplicate, or superseded by a replay) and nothing was sent."""

    result: Literal["attempted", "stale", "cancelled"]
    delivery: Delivery | None
    attempt: Attempt | None = None


@dataclass(frozen=True, kw_only=True)
class DeliveryView:
    delivery: Delivery
    attempts: list[Attempt]


@dataclass(frozen=True, kw_only=True)
class DeliveryPage:
    items: list[DeliveryView]
    next_cursor: str | None


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"d{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, ValueError) as e:
        raise ValidationError("not a cursor from this listing", field="cursor") from e
    if len(cursor) > 40 or not text.startswith("d") or not text[1:].isdigit():
        raise ValidationError("not a cursor from this listing", field="cursor")
    return int(text[1:])


class Dispatcher:
    def __init__(
        self,
        *,
        store: WebhookStore,
        queue: TaskQueue,
        sender: Sender,
        clock: Clock,
        proof_base_url: str,
        schedule: RetrySchedule | None = None,
        lease: timedelta = timedelta(minutes=2),
        random: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.store = store
        self.queue = queue
        self.sender = sender
        self.clock = clock
        self.proof_base_url = proof_base_url
        self.schedule = schedule or RetrySchedule()
        self.lease = lease
        self._random = random

    # -- fan-out -------------------------------------------------------------------------

    def fan_out(self, event: LedgerEvent) -> list[Delivery]:
        """One delivery per enabled matching subscription; first attempts enqueued."""
        entry = event.entry
        kind = webhook_type(entry.type)
        subs = [s for s in self.store.subscriptions(entry.tenant) if s.wants(kind)]
        if not subs:
            return []
        now = self.clock()
        message = WebhookMessage(
            tenant=entry.tenant,
            event_id=entry.id,
            type=kind,
            body=event_body(event, proof_base_url=self.proof_base_url),
            created_at=now,
        )
        first = self.schedule.first_at(now)
        wanted = [
            Delivery(
                id=delivery_id(s.id, entry.id),
                tenant=entry.tenant,
                subscription_id=s.id,
                event_id=entry.id,
                event_type=kind,
                next_attempt_at=first,
                created_at=now,
                updated_at=now,
            )
            for s in subs
        ]
        stored = self.store.add_deliveries(message, wanted)
        for d in stored:
            if d.state == "pending" and d.round == 0 and d.attempt == 0:
                self.queue.enqueue(d.next_task())
        return stored

    # -- one attempt ---------------------------------------------------------------------

    def attempt(self, task: AttemptTask) -> AttemptReport:
        now = self.clock()
        claim = self.store.claim(task, now=now, lease_until=now + self.lease)
        if claim.status == "busy":
            raise Unavailable(f"attempt {task.name} is in flight elsewhere; retry later")
        found = claim.delivery
        if claim.status == "stale" or found is None:
            if (
                found is not None
                and found.state == "pending"
                and found.round == task.round
                and found.attempt == task.attempt
            ):
                # This task's attempt was made and recorded, but enqueueing the next one
                # failed (we are the platform's retry): enqueue it again.
                self.queue.enqueue(found.next_task())
            return AttemptReport(result="stale", delivery=found)
        claimed = found
        try:
            sub = self.store.subscription(claimed.tenant, claimed.subscription_id)
        except NotFound:
            sub = None
        if sub is None or (not sub.enabled and claimed.kind != "test"):
            reason = "subscription deleted" if sub is None else "subscription disabled"
            cancelled = replace(
                claimed, state="cancelled", next_attempt_at=None, last_error=reason, updated_at=now
            )
            self.store.finish(claimed, cancelled, None)
            return AttemptReport(result="cancelled", delivery=cancelled)
        message = self.store.message(claimed.tenant, claimed.event_id)
        secrets = self.store.secrets(claimed.tenant, claimed.subscription_id).active(now)
        headers = signature_headers(
            message_id=message.event_id, body=message.body, secrets=secrets, at=now
        )
        result = self.sender.send(url=sub.url, body=message.body, headers=headers)
        finished = self.clock()
        outcome = classify(result.status)
        number = task.attempt
        next_at: datetime | None = None
        if outcome is Outcome.DELIVERED:
            state: Literal["pending", "delivered", "dead"] = "delivered"
        elif outcome is Outcome.GONE:
            state = "dead"
        else:
            limit = 1 if claimed.kind == "test" else self.schedule.max_attempts
            retry_after = parse_retry_after(result.retry_after, now=finished)
            next_at = (
                None
                if number >= limit
                else self.schedule.next_at(number, finished_at=finished, retry_after=retry_after)
            )
            state = "pending" if next_at is not None else "dead"
        error = result.error
        if error is None and outcome is not Outcome.DELIVERED:
            error = f"HTTP {result.status}"
        attempt = Attempt(
            delivery_id=claimed.id,
            round=claimed.round,
            number=number,
            started_at=now,
            latency_ms=result.latency_ms,
            status=result.status,
            error=None if error is None else error[:MAX_ERROR],
            outcome=outcome,
            next_attempt_at=next_at,
        )
        updated = replace(
            claimed,
            state=state,
            attempt=number,
            next_attempt_at=next_at,
            last_status=result.status,
            last_error=attempt.error,
            updated_at=finished,
        )
        moved_on = not self.store.finish(claimed, updated, attempt)
        if outcome is Outcome.GONE:
            self.store.save_subscription(
                sub.disabled(reason="410 Gone from the endpoint", now=finished)
            )
        if moved_on:
            return AttemptReport(result="stale", delivery=updated, attempt=attempt)
        if next_at is not None:
            self.queue.enqueue(updated.next_task())
        return AttemptReport(result="attempted", delivery=updated, attempt=attempt)

    # -- operator and partner actions ------------------------------------------------------

    def replay(self, *, tenant: str, subscription_id: str, delivery_id: str) -> Delivery:
        """A new round of attempts now (the whole schedule again), whatever the state."""
        sub = self.store.subscription(tenant, subscription_id)
        d = self.store.delivery(tenant, delivery_id)
        if d.subscription_id != subscription_id:
            raise NotFound(f"delivery {delivery_id} not found")
        if not sub.enabled:
            raise Conflict("the subscription is disabled: enable it before replaying")
        replayed = self.store.replay(tenant, delivery_id, now=self.clock())
        self.queue.enqueue(replayed.next_task())
        return replayed

    def send_test(self, *, tenant: str, subscription_id: str) -> DeliveryView:
        """Send a ``webhook.test`` event now (one attempt, inline; no retries)."""
        sub = self.store.subscription(tenant, subscription_id)
        now = self.clock()
        event_id = "evt_test_" + self._random(16).hex()
        message = WebhookMessage(
            tenant=tenant,
            event_id=event_id,
            type=TEST_EVENT_TYPE,
            body=webhook_test_body(
                event_id=event_id, tenant=tenant, subscription_id=sub.id, at=now
            ),
            created_at=now,
        )
        [d] = self.store.add_deliveries(
            message,
            [
                Delivery(
                    id=delivery_id(sub.id, event_id),
                    tenant=tenant,
                    subscription_id=sub.id,
                    event_id=event_id,
                    event_type=TEST_EVENT_TYPE,
                    kind="test",
                    next_attempt_at=now,
                    created_at=now,
                    updated_at=now,
                )
            ],
        )
        report = self.attempt(d.next_task())
        final = report.delivery or d
        return DeliveryView(delivery=final, attempts=[report.attempt] if report.attempt else [])

    def deliveries(
        self, *, tenant: str, subscription_id: str, cursor: str | None = None, limit: int = 50
    ) -> DeliveryPage:
        """Newest first; ``next_cursor`` continues the listing (None at its end)."""
        if not 1 <= limit <= MAX_PAGE:
            raise ValidationError(f"limit is 1 to {MAX_PAGE}", field="limit")
        self.store.subscription(tenant, subscription_id)  # NotFound for another tenant's
        before = None if cursor is None else decode_cursor(cursor)
        rows = self.store.deliveries(tenant, subscription_id, before_seq=before, limit=limit + 1)
        page, more = rows[:limit], len(rows) > limit
        attempts = self.store.attempts(tenant, [d.id for d in page])
        return DeliveryPage(
            items=[DeliveryView(delivery=d, attempts=attempts.get(d.id, [])) for d in page],
            next_cursor=encode_cursor(page[-1].seq) if more and page else None,
        )

    def delivery(self, *, tenant: str, subscription_id: str, delivery_id: str) -> DeliveryView:
        d = self.store.delivery(tenant, delivery_id)
        if d.subscription_id != subscription_id:
            raise NotFound(f"delivery {delivery_id} not found")
        return DeliveryView(delivery=d, attempts=self.store.attempts(tenant, [d.id]).get(d.id, []))

    def sweep(self, *, grace: timedelta = timedelta(minutes=10), limit: int = 500) -> int:
        """Re-enqueue pending deliveries overdue by more than ``grace`` (a lost task): run it
        from a scheduler. Harmless when nothing is lost: stale tasks are dropped."""
        now = self.clock()
        overdue: Sequence[Delivery] = self.store.overdue(before=now - grace, limit=limit)
        for d in overdue:
            self.queue.enqueue(d.next_task(not_before=now))
        return len(overdue)
