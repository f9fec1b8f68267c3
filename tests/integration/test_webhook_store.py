"""One conformance body for the webhook store and polled queue: in memory and on PostgreSQL.

The PostgreSQL variant runs as the app role (proveniq_app) on a fresh migrated database, so
the grants of migration 0005 are exercised too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from proveniq.adapters.local.secretbox import LocalSecretBox
from proveniq.adapters.memory.webhooks import MemoryTaskQueue, MemoryWebhookStore
from proveniq.errors import NotFound
from proveniq.followers.webhooks.deliveries import Dispatcher
from proveniq.followers.webhooks.ports import (
    Attempt,
    AttemptTask,
    Delivery,
    PolledQueue,
    WebhookMessage,
    WebhookStore,
)
from proveniq.followers.webhooks.schedule import Outcome, RetrySchedule
from proveniq.followers.webhooks.sender import SendResult
from proveniq.followers.webhooks.signing import LedgerEvent
from proveniq.followers.webhooks.subscriptions import (
    Secrets,
    Subscription,
    delivery_id,
    new_secret,
    new_subscription_id,
)
from proveniq.followers.webhooks.worker import drain
from proveniq.log.canonical import sha256_canonical
from proveniq.log.entry import Entry

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@dataclass
class Backend:
    store: WebhookStore
    queue: PolledQueue
    raw_secrets: Callable[[str], bytes]  # everything stored for a subscription's secrets
    reopen: Callable[[], tuple[WebhookStore, PolledQueue]]  # a "restart"


@pytest.fixture(params=["memory", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    box = LocalSecretBox.load_or_create(tmp_path / "kek")
    if request.param == "memory":
        mem = MemoryWebhookStore(box=box)
        q = MemoryTaskQueue()

        def raw(sid: str) -> bytes:
            s = mem.sealed[sid]
            return s.current + (s.previous or b"")

        yield Backend(store=mem, queue=q, raw_secrets=raw, reopen=lambda: (mem, q))
        return
    from proveniq.adapters.postgres.pool import Pool, url_connector
    from proveniq.adapters.postgres.webhooks import PgTaskQueue, PgWebhookStore

    pg_server = request.getfixturevalue("pg_server")
    database = request.getfixturevalue("database")
    url = pg_server.url(user="proveniq_app", database=database)
    pools = [Pool(url_connector(url), size=2)]

    def raw_pg(sid: str) -> bytes:
        conn = pg_server.connect(database=database)
        try:
            cur = conn.cursor()
            cur.execute(
                "SELECT secret_sealed, previous_secret_sealed FROM webhook_subscriptions "
                "WHERE id = %s",
                (sid,),
            )
            row = cur.fetchone()
            return bytes(row[0]) + bytes(row[1] or b"")
        finally:
            conn.close()

    def reopen() -> tuple[WebhookStore, PolledQueue]:
        pools[-1].dispose()
        pools.append(Pool(url_connector(url), size=2))
        box2 = LocalSecretBox.load_or_create(tmp_path / "kek")
        return PgWebhookStore(pool=pools[-1], box=box2), PgTaskQueue(pool=pools[-1])

    yield Backend(
        store=PgWebhookStore(pool=pools[0], box=box),
        queue=PgTaskQueue(pool=pools[0]),
        raw_secrets=raw_pg,
        reopen=reopen,
    )
    for p in pools:
        p.dispose()


def subscription(tenant: str = "p1", **kw: Any) -> Subscription:
    fields: dict[str, Any] = {
        "id": new_subscription_id(),
        "tenant": tenant,
        "url": "https://hooks.partner.example/in",
        "events": ("claim.*", "asset.sold"),
        "description": "ops",
        "created_at": T0,
        "updated_at": T0,
        **kw,
    }
    return Subscription(**fields)


def message(event_id: str = "evt_1", tenant: str = "p1") -> WebhookMessage:
    return WebhookMessage(
        tenant=tenant, event_id=event_id, type="claim.filed", body=b'{"x":1}', created_at=T0
    )


def delivery(sub: Subscription, event_id: str = "evt_1", **kw: Any) -> Delivery:
    fields: dict[str, Any] = {
        "id": delivery_id(sub.id, event_id),
        "tenant": sub.tenant,
        "subscription_id": sub.id,
        "event_id": event_id,
        "event_type": "claim.filed",
        "next_attempt_at": T0,
        "created_at": T0,
        "updated_at": T0,
        **kw,
    }
    return Delivery(**fields)


def test_subscriptions_round_trip_tenant_scoped_with_secrets_only_sealed(b: Backend) -> None:
    s = b.store
    sub = subscription()
    secret = new_secret()
    s.add_subscription(sub, Secrets(current=secret))
    other = subscription(tenant="p2")
    s.add_subscription(other, Secrets(current=new_secret()))
    assert s.subscription("p1", sub.id) == sub
    assert s.subscriptions("p1") == [sub]
    with pytest.raises(NotFound):
        s.subscription("p2", sub.id)
    with pytest.raises(NotFound):
        s.secrets("p2", sub.id)
    assert s.secrets("p1", sub.id) == Secrets(current=secret)
    assert secret.encode() not in b.raw_secrets(sub.id)

    changed = replace(
        sub,
        url="https://new.partner.example/",
        events=("*",),
        enabled=False,
        disabled_reason="410 Gone",
        updated_at=T0 + timedelta(hours=1),
    )
    s.save_subscription(changed)
    assert s.subscription("p1", sub.id) == changed
    with pytest.raises(NotFound):
        s.save_subscription(replace(changed, tenant="p2"))

    new = new_secret()
    rotated = Secrets(current=secret).rotated(new, now=T0)
    s.save_secrets("p1", sub.id, rotated, now=T0)
    assert s.secrets("p1", sub.id) == rotated
    raw = b.raw_secrets(sub.id)
    assert secret.encode() not in raw and new.encode() not in raw
    with pytest.raises(NotFound):
        s.save_secrets("p2", sub.id, rotated, now=T0)

    s.delete_subscription("p1", sub.id, now=T0)
    assert s.subscriptions("p1") == []
    with pytest.raises(NotFound):
        s.subscription("p1", sub.id)
    with pytest.raises(NotFound):
        s.delete_subscription("p1", sub.id, now=T0)
    assert s.subscriptions("p2") == [other]


@pytest.fixture
def b(backend: Backend) -> Backend:
    return backend


def test_add_deliveries_is_idempotent_and_returns_what_is_stored(b: Backend) -> None:
    s = b.store
    sub1, sub2 = subscription(), subscription()
    for sub in (sub1, sub2):
        s.add_subscription(sub, Secrets(current=new_secret()))
    d1, d2 = delivery(sub1), delivery(sub2)
    first = s.add_deliveries(message(), [d1, d2])
    assert [d.id for d in first] == [d1.id, d2.id]
    assert first[0].seq < first[1].seq
    assert replace(first[0], seq=0) == d1
    again = s.add_deliveries(
        replace(message(), body=b"other"), [replace(d1, event_type="changed"), d2]
    )
    assert again == first  # unchanged: the first store wins
    assert s.message("p1", "evt_1").body == b'{"x":1}'
    assert s.delivery("p1", d1.id) == first[0]
    with pytest.raises(NotFound):
        s.delivery("p2", d1.id)
    with pytest.raises(NotFound):
        s.message("p2", "evt_1")
    assert s.add_deliveries(message("evt_9"), []) == []


def test_claim_finish_and_replay_are_fenced(b: Backend) -> None:
    s = b.store
    sub = subscription()
    s.add_subscription(sub, Secrets(current=new_secret()))
    [d] = s.add_deliveries(message(), [delivery(sub)])
    task = d.next_task()
    assert (task.round, task.attempt) == (0, 1)
    lease = T0 + timedelta(minutes=2)
    claim = s.claim(task, now=T0, lease_until=lease)
    assert claim.status == "claimed" and claim.delivery == d
    assert s.claim(task, now=T0 + timedelta(minutes=1), lease_until=lease).status == "busy"
    assert s.claim(replace(task, attempt=2), now=T0, lease_until=lease).status == "stale"
    assert s.claim(replace(task, tenant="p2"), now=T0, lease_until=lease).status == "stale"
    assert s.overdue(before=T0 + timedelta(minutes=1), limit=10) == []  # leased

    at = T0 + timedelta(seconds=1)
    attempt = Attempt(
        delivery_id=d.id,
        round=0,
        number=1,
        started_at=T0,
        latency_ms=12,
        status=500,
        error="HTTP 500",
        outcome=Outcome.RETRY,
        next_attempt_at=at + timedelta(seconds=60),
    )
    updated = replace(
        d,
        attempt=1,
        next_attempt_at=attempt.next_attempt_at,
        last_status=500,
        last_error="HTTP 500",
        updated_at=at,
    )
    assert s.finish(d, updated, attempt)
    assert s.delivery("p1", d.id) == updated
    assert not s.finish(d, updated, attempt)  # the same claim again: moved on
    assert s.attempts("p1", [d.id]) == {d.id: [attempt]}
    assert s.attempts("p2", [d.id]) == {}
    assert s.claim(task, now=at, lease_until=lease).status == "stale"  # attempt 1 is done
    nxt = updated.next_task()
    assert (nxt.attempt, nxt.not_before) == (2, at + timedelta(seconds=60))
    assert s.overdue(before=at + timedelta(seconds=61), limit=10) == [updated]
    assert s.counts("p1", sub.id) == {"pending": 1}

    claimed = s.claim(nxt, now=at, lease_until=lease)
    assert claimed.status == "claimed" and claimed.delivery is not None
    replayed = s.replay("p1", d.id, now=at)
    assert (replayed.state, replayed.round, replayed.attempt) == ("pending", 1, 0)
    done = replace(claimed.delivery, attempt=2, state="dead")
    assert not s.finish(claimed.delivery, done, None)
    assert s.delivery("p1", d.id) == replayed
    assert s.claim(replayed.next_task(), now=at, lease_until=lease).status == "claimed"
    with pytest.raises(NotFound):
        s.replay("p2", d.id, now=at)


def test_listing_newest_first_by_seq(b: Backend) -> None:
    s = b.store
    sub, other = subscription(), subscription()
    for x in (sub, other):
        s.add_subscription(x, Secrets(current=new_secret()))
    stored = [
        s.add_deliveries(message(f"evt_{n}"), [delivery(sub, f"evt_{n}")])[0] for n in range(5)
    ]
    s.add_deliveries(message("evt_0"), [delivery(other, "evt_0")])
    page1 = s.deliveries("p1", sub.id, before_seq=None, limit=2)
    assert page1 == stored[::-1][:2]
    page2 = s.deliveries("p1", sub.id, before_seq=page1[-1].seq, limit=10)
    assert page2 == stored[::-1][2:]
    assert s.deliveries("p2", sub.id, before_seq=None, limit=10) == []
    assert s.counts("p1", sub.id) == {"pending": 5}


def test_polled_queue_is_idempotent_leases_and_survives_a_restart(b: Backend) -> None:
    q = b.queue
    t1 = AttemptTask(tenant="p1", delivery_id="dlv_a", round=0, attempt=1, not_before=T0)
    t2 = AttemptTask(
        tenant="p1", delivery_id="dlv_b", round=0, attempt=1, not_before=T0 + timedelta(seconds=30)
    )
    q.enqueue(t1)
    q.enqueue(t1)
    q.enqueue(t2)
    assert q.due(now=T0 - timedelta(seconds=1), limit=10) == []
    assert q.due(now=T0, limit=10) == [t1]
    assert q.due(now=T0, limit=10) == []  # leased
    _, q2 = b.reopen()
    got = q2.due(now=T0 + timedelta(minutes=5), limit=10)  # lease expired; t2 due
    assert got == [t1, t2]
    q2.complete(t1)
    q2.retry_later(t2, at=T0 + timedelta(hours=1))
    assert q2.due(now=T0 + timedelta(minutes=10), limit=10) == []
    assert q2.due(now=T0 + timedelta(hours=1), limit=10) == [
        replace(t2, not_before=T0 + timedelta(hours=1))
    ]


@dataclass
class Receiver:
    status: int = 503
    sent: int = 0

    def send(self, *, url: str, body: bytes, headers: Mapping[str, str]) -> SendResult:
        self.sent += 1
        return SendResult(status=self.status, latency_ms=1)


def test_a_pending_retry_survives_a_restart_and_is_delivered(b: Backend) -> None:
    now = [T0]
    receiver = Receiver()

    def dispatcher(store: WebhookStore, queue: PolledQueue) -> Dispatcher:
        return Dispatcher(
            store=store,
            queue=queue,
            sender=receiver,
            clock=lambda: now[0],
            proof_base_url="http://127.0.0.1:8080",
            schedule=RetrySchedule.parse("0,1,2"),
        )

    sub = subscription(events=("*",))
    b.store.add_subscription(sub, Secrets(current=new_secret()))
    payload = {"claimId": "clm_1"}
    entry = Entry(
        seq=0,
        id="evt_" + "1" * 32,
        tenant="p1",
        type="claim.filed",
        subject="clm_1",
        payload_hash=sha256_canonical(payload),
        recorded_at=T0,
        prev=bytes(32),
    )
    d1 = dispatcher(b.store, b.queue)
    [d] = d1.fan_out(LedgerEvent(entry=entry, payload=payload))
    assert drain(b.queue, d1.attempt, now=now[0]) == 1
    assert receiver.sent == 1 and b.store.delivery("p1", d.id).attempt == 1

    store2, queue2 = b.reopen()  # the stack restarts between the failure and its retry
    receiver.status = 200
    now[0] = T0 + timedelta(seconds=1)
    d2 = dispatcher(store2, queue2)
    assert drain(queue2, d2.attempt, now=now[0]) == 1
    final = store2.delivery("p1", d.id)
    assert final.state == "delivered" and receiver.sent == 2
    assert [a.status for a in store2.attempts("p1", [d.id])[d.id]] == [503, 200]
    assert drain(queue2, d2.attempt, now=now[0] + timedelta(hours=1)) == 0
