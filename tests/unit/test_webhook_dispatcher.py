"""The delivery state machine on the in-memory twins, with a simulated clock."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook

from proveniq.adapters.local.secretbox import LocalSecretBox
from proveniq.adapters.memory.webhooks import MemoryTaskQueue, MemoryWebhookStore
from proveniq.errors import Conflict, NotFound, Unavailable, ValidationError
from proveniq.followers.webhooks.deliveries import Dispatcher
from proveniq.followers.webhooks.guard import Guard, Policy
from proveniq.followers.webhooks.manage import Subscriptions
from proveniq.followers.webhooks.ports import AttemptTask
from proveniq.followers.webhooks.schedule import RetrySchedule
from proveniq.followers.webhooks.sender import SendResult
from proveniq.followers.webhooks.signing import SIGNATURE_HEADER, LedgerEvent
from proveniq.followers.webhooks.worker import drain
from proveniq.log.canonical import sha256_canonical
from proveniq.log.entry import Entry

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class SimClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@dataclass
class StubReceiver:
    """A Sender that answers ``status`` (None: connection error) and records every request."""

    clock: SimClock
    status: int | None = 500
    retry_after: str | None = None
    requests: list[tuple[datetime, str, bytes, dict[str, str]]] = field(default_factory=list)

    def send(self, *, url: str, body: bytes, headers: Mapping[str, str]) -> SendResult:
        self.requests.append((self.clock(), url, body, dict(headers)))
        if self.status is None:
            return SendResult(status=None, latency_ms=3, error="connection: refused")
        return SendResult(status=self.status, latency_ms=7, retry_after=self.retry_after)


class FlakyQueue(MemoryTaskQueue):
    fail_next = 0

    def enqueue(self, task: AttemptTask) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise Unavailable("queue down")
        super().enqueue(task)


@dataclass
class World:
    clock: SimClock
    store: MemoryWebhookStore
    queue: FlakyQueue
    receiver: StubReceiver
    dispatcher: Dispatcher
    subs: Subscriptions

    def subscribe(self, tenant: str = "p1", events: tuple[str, ...] = ("*",)) -> tuple[str, str]:
        c = self.subs.create(tenant=tenant, url="https://hooks.partner.example/in", events=events)
        return c.subscription.id, c.secret

    def run_due(self) -> int:
        """Advance the clock to each due task in turn and run it (the platform's role)."""
        n = 0
        while self.queue.pending():
            task = self.queue.pending()[0]
            self.clock.now = max(self.clock.now, task.not_before)
            [got] = self.queue.due(now=self.clock.now, limit=1)
            self.dispatcher.attempt(got)
            self.queue.complete(got)
            n += 1
        return n


@pytest.fixture
def world(tmp_path: Path) -> World:
    clock = SimClock()
    store = MemoryWebhookStore(box=LocalSecretBox.load_or_create(tmp_path / "kek"))
    queue = FlakyQueue()
    receiver = StubReceiver(clock)
    guard = Guard(policy=Policy(), resolver=lambda h: ["93.184.215.14"])
    return World(
        clock=clock,
        store=store,
        queue=queue,
        receiver=receiver,
        dispatcher=Dispatcher(
            store=store,
            queue=queue,
            sender=receiver,
            clock=clock,
            proof_base_url="https://api.proveniq.example",
            schedule=RetrySchedule(),
        ),
        subs=Subscriptions(store=store, guard=guard, clock=clock),
    )


def event(n: int = 1, *, tenant: str = "p1", type: str = "claim.filed") -> LedgerEvent:
    payload = {"claimId": f"clm_{n}", "amount": 100 + n}
    e = Entry(
        seq=n,
        id=f"evt_{n:032x}",
        tenant=tenant,
        type=type,
        subject=f"clm_{n}",
        payload_hash=sha256_canonical(payload),
        recorded_at=T0,
        prev=bytes(32),
    )
    return LedgerEvent(entry=e, payload=payload)


def test_fan_out_one_delivery_per_enabled_matching_subscription_deduplicated(
    world: World,
) -> None:
    a, _ = world.subscribe(events=("claim.*",))
    b, _ = world.subscribe(events=("*",))
    off, _ = world.subscribe(events=("claim.filed",))
    world.subs.update(tenant="p1", subscription_id=off, enabled=False)
    world.subscribe(events=("asset.*",))  # does not match
    world.subscribe(tenant="p2", events=("*",))  # another tenant's
    world.receiver.status = 200

    first = world.dispatcher.fan_out(event())
    assert sorted(d.subscription_id for d in first) == sorted([a, b])
    assert len(world.queue.enqueued) == 2
    again = world.dispatcher.fan_out(event())  # Pub/Sub redelivery
    assert again == first
    assert len(world.queue.enqueued) == 2
    assert world.run_due() == 2
    world.dispatcher.fan_out(event())  # after the attempts: still nothing new
    assert len(world.queue.enqueued) == 2 and world.queue.pending() == []
    assert len(world.receiver.requests) == 2


def test_redelivery_after_a_crash_before_enqueue_enqueues_the_first_attempt(world: World) -> None:
    world.subscribe()
    world.queue.fail_next = 1
    with pytest.raises(Unavailable):
        world.dispatcher.fan_out(event())  # stored, but the enqueue failed: Pub/Sub redelivers
    assert world.queue.pending() == []
    world.dispatcher.fan_out(event())
    assert len(world.queue.pending()) == 1


def test_a_failing_receiver_gets_six_attempts_at_the_offsets_then_one_dead_letter(
    world: World,
) -> None:
    sid, secret = world.subscribe()
    [d] = world.dispatcher.fan_out(event())
    assert world.run_due() == 6
    times = [r[0] for r in world.receiver.requests]
    offsets = [0, 60, 360, 2160, 9360, 95760]  # 0, +1 min, +5 min, +30 min, +2 h, +24 h
    assert times == [T0 + timedelta(seconds=s) for s in offsets]
    dead = world.store.delivery("p1", d.id)
    assert dead.state == "dead" and dead.attempt == 6 and dead.next_attempt_at is None
    assert world.store.counts("p1", sid) == {"dead": 1}
    assert world.queue.pending() == []
    view = world.dispatcher.delivery(tenant="p1", subscription_id=sid, delivery_id=d.id)
    assert [a.number for a in view.attempts] == [1, 2, 3, 4, 5, 6]
    assert all(a.status == 500 and a.outcome == "retry" for a in view.attempts)
    assert view.attempts[-1].next_attempt_at is None
    assert view.attempts[0].next_attempt_at == T0 + timedelta(seconds=60)

    # Every attempt carried the same message id and body, freshly signed at its own time.
    bodies = {r[2] for r in world.receiver.requests}
    assert len(bodies) == 1
    for at, _, body, headers in world.receiver.requests:
        assert headers["webhook-id"] == d.event_id
        assert headers["webhook-timestamp"] == str(int(at.timestamp()))
        assert headers["webhook-signature"] == Webhook(secret).sign(d.event_id, at, body.decode())
        mac = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        assert headers[SIGNATURE_HEADER] == f"sha256={mac}"

    # Replay once the receiver is up: delivered, once.
    world.clock.now += timedelta(days=3)
    world.receiver.status = 200
    replayed = world.dispatcher.replay(tenant="p1", subscription_id=sid, delivery_id=d.id)
    assert replayed.state == "pending" and replayed.round == 1
    assert world.run_due() == 1
    done = world.store.delivery("p1", d.id)
    assert done.state == "delivered" and done.last_status == 200
    assert len(world.receiver.requests) == 7
    assert world.store.counts("p1", sid) == {"delivered": 1}
    attempts = world.store.attempts("p1", [d.id])[d.id]
    assert [(a.round, a.number) for a in attempts] == [(0, n) for n in range(1, 7)] + [(1, 1)]


def test_shortened_schedule_from_the_setting(world: World) -> None:
    world.dispatcher.schedule = RetrySchedule.parse("0,1,2")
    world.subscribe()
    [d] = world.dispatcher.fan_out(event())
    assert world.run_due() == 3
    assert [r[0] for r in world.receiver.requests] == [T0 + timedelta(seconds=s) for s in (0, 1, 3)]
    assert world.store.delivery("p1", d.id).state == "dead"


def test_a_later_retry_after_wins(world: World) -> None:
    world.subscribe()
    world.receiver.status, world.receiver.retry_after = 429, "600"
    world.dispatcher.fan_out(event())
    [task] = world.queue.due(now=T0, limit=5)
    report = world.dispatcher.attempt(task)
    world.queue.complete(task)
    assert report.attempt is not None
    assert report.attempt.next_attempt_at == T0 + timedelta(seconds=600)
    assert world.queue.pending()[0].not_before == T0 + timedelta(seconds=600)


def test_410_disables_the_subscription_and_cancels_what_is_pending(world: World) -> None:
    sid, _ = world.subscribe()
    world.receiver.status = 410
    [d1] = world.dispatcher.fan_out(event(1))
    [d2] = world.dispatcher.fan_out(event(2))
    tasks = {t.delivery_id: t for t in world.queue.due(now=T0, limit=5)}
    t1, t2 = tasks[d1.id], tasks[d2.id]
    assert world.dispatcher.attempt(t1).delivery.state == "dead"  # type: ignore[union-attr]
    sub = world.store.subscription("p1", sid)
    assert not sub.enabled and sub.disabled_reason and "410" in sub.disabled_reason
    report = world.dispatcher.attempt(t2)  # not sent: the subscription is disabled now
    assert report.result == "cancelled"
    assert world.store.delivery("p1", d2.id).state == "cancelled"
    assert len(world.receiver.requests) == 1
    assert world.dispatcher.fan_out(event(3)) == []
    with pytest.raises(Conflict):
        world.dispatcher.replay(tenant="p1", subscription_id=sid, delivery_id=d1.id)


def test_a_duplicate_task_sends_once_and_a_task_in_flight_is_busy(world: World) -> None:
    world.subscribe()
    world.receiver.status = 200
    world.dispatcher.fan_out(event())
    [task] = world.queue.due(now=T0, limit=1)
    # A copy claims the lease first (e.g. Cloud Tasks ran the task twice at once).
    claim = world.store.claim(task, now=T0, lease_until=T0 + timedelta(minutes=2))
    assert claim.status == "claimed"
    with pytest.raises(Unavailable, match="in flight"):
        world.dispatcher.attempt(task)
    world.clock.now = T0 + timedelta(minutes=3)  # the lease expired: the copy died mid-send
    assert world.dispatcher.attempt(task).result == "attempted"
    assert world.dispatcher.attempt(task).result == "stale"  # a late duplicate
    assert len(world.receiver.requests) == 1


def test_recorded_attempt_then_enqueue_failure_is_healed_by_the_platform_retry(
    world: World,
) -> None:
    world.subscribe()
    [d] = world.dispatcher.fan_out(event())
    [task] = world.queue.due(now=T0, limit=1)
    world.queue.fail_next = 1
    with pytest.raises(Unavailable):
        world.dispatcher.attempt(task)  # sent and recorded; the next task was not enqueued
    assert world.store.delivery("p1", d.id).attempt == 1
    assert world.queue.pending() == [task]  # still there: the handler failed
    assert world.dispatcher.attempt(task).result == "stale"  # the retry: no second send...
    assert len(world.receiver.requests) == 1
    world.queue.complete(task)
    [nxt] = world.queue.pending()  # ...but the next attempt is enqueued now
    assert (nxt.attempt, nxt.not_before) == (2, T0 + timedelta(seconds=60))


def test_replay_of_a_pending_delivery_supersedes_its_scheduled_task(world: World) -> None:
    sid, _ = world.subscribe()
    [d] = world.dispatcher.fan_out(event())
    [old] = world.queue.pending()
    world.dispatcher.replay(tenant="p1", subscription_id=sid, delivery_id=d.id)
    assert world.dispatcher.attempt(old).result == "stale"
    assert world.receiver.requests == []


def test_rotation_signs_with_both_secrets_during_the_overlap(world: World) -> None:
    sid, old = world.subscribe()
    new = world.subs.rotate_secret(tenant="p1", subscription_id=sid).secret
    world.receiver.status = 200
    world.dispatcher.fan_out(event(1))
    world.run_due()
    _, _, body, h = world.receiver.requests[-1]
    sigs = h["webhook-signature"].split(" ")
    at = world.clock.now
    assert sigs == [Webhook(s).sign(h["webhook-id"], at, body.decode()) for s in (new, old)]
    world.clock.now = T0 + timedelta(hours=25)
    world.dispatcher.fan_out(event(2))
    world.run_due()
    _, _, body, h = world.receiver.requests[-1]
    assert h["webhook-signature"] == Webhook(new).sign(
        h["webhook-id"], world.clock.now, body.decode()
    )
    assert len(h[SIGNATURE_HEADER].split(" ")) == 1


def test_send_test_attempts_once_inline(world: World) -> None:
    sid, _ = world.subscribe(events=("asset.sold",))
    world.receiver.status = 204
    view = world.dispatcher.send_test(tenant="p1", subscription_id=sid)
    assert view.delivery.state == "delivered" and view.delivery.kind == "test"
    [(_, _, body, headers)] = world.receiver.requests
    assert json.loads(body)["type"] == "webhook.test"
    assert headers["webhook-id"] == view.delivery.event_id
    world.receiver.status = 500
    failed = world.dispatcher.send_test(tenant="p1", subscription_id=sid)
    assert failed.delivery.state == "dead" and len(failed.attempts) == 1
    assert world.queue.pending() == []  # a test event is not retried
    with pytest.raises(NotFound):
        world.dispatcher.send_test(tenant="p2", subscription_id=sid)


def test_listing_is_cursor_paginated_newest_first_and_tenant_scoped(world: World) -> None:
    sid, _ = world.subscribe()
    ids = [world.dispatcher.fan_out(event(n))[0].id for n in range(1, 6)]
    world.receiver.status = 200
    world.run_due()
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = world.dispatcher.deliveries(tenant="p1", subscription_id=sid, cursor=cursor, limit=2)
        pages += 1
        seen += [v.delivery.id for v in page.items]
        assert all(len(v.attempts) == 1 and v.attempts[0].status == 200 for v in page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert pages == 3 and seen == ids[::-1]
    with pytest.raises(NotFound):
        world.dispatcher.deliveries(tenant="p2", subscription_id=sid)
    with pytest.raises(NotFound):
        world.dispatcher.delivery(tenant="p2", subscription_id=sid, delivery_id=ids[0])
    for bad in ("zzz", base64.urlsafe_b64encode(b"x1").decode()):
        with pytest.raises(ValidationError):
            world.dispatcher.deliveries(tenant="p1", subscription_id=sid, cursor=bad)
    with pytest.raises(ValidationError):
        world.dispatcher.deliveries(tenant="p1", subscription_id=sid, limit=0)


def test_sweep_re_enqueues_a_lost_task(world: World) -> None:
    world.subscribe()
    [d] = world.dispatcher.fan_out(event())
    [lost] = world.queue.due(now=T0, limit=1)
    world.queue.complete(lost)  # the task vanished without running
    world.clock.now = T0 + timedelta(minutes=5)
    assert world.dispatcher.sweep() == 0  # within the grace period
    world.clock.now = T0 + timedelta(minutes=11)
    assert world.dispatcher.sweep() == 1
    world.receiver.status = 200
    assert world.run_due() == 1
    assert world.store.delivery("p1", d.id).state == "delivered"


def test_a_deleted_subscription_cancels_its_pending_deliveries(world: World) -> None:
    sid, _ = world.subscribe()
    [d] = world.dispatcher.fan_out(event())
    world.subs.delete(tenant="p1", subscription_id=sid)
    world.run_due()
    assert world.store.delivery("p1", d.id).state == "cancelled"
    assert world.receiver.requests == []


def test_drain_completes_handled_tasks_and_defers_unavailable_ones(world: World) -> None:
    world.subscribe()
    world.receiver.status = 200
    world.dispatcher.fan_out(event(1))
    world.dispatcher.fan_out(event(2))
    calls: list[str] = []

    def handle(task: AttemptTask) -> None:
        calls.append(task.name)
        if len(calls) == 1:
            raise Unavailable("database restarting")
        world.dispatcher.attempt(task)

    assert drain(world.queue, handle, now=T0) == 1
    [deferred] = world.queue.pending()
    assert deferred.not_before == T0 + timedelta(seconds=5)
    assert deferred.name == calls[0]


def test_attempt_task_json_round_trips_and_is_strict() -> None:
    t = AttemptTask(tenant="p1", delivery_id="dlv_x", round=1, attempt=2, not_before=T0)
    assert AttemptTask.from_json(t.to_json()) == t
    assert t.name == "dlv_x-r1-a2"
    good = json.loads(t.to_json())
    for change in (
        {"attempt": 0},
        {"round": True},
        {"tenant": ""},
        {"extra": 1},
        {"not_before": "x"},
    ):
        with pytest.raises(ValidationError):
            AttemptTask.from_json(json.dumps({**good, **change}).encode())
    with pytest.raises(ValidationError):
        AttemptTask.from_json(b"\xff")
