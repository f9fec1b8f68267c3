"""DeviceIngest over the memory device store, a small LedgerAppender twin and a recording bus."""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from proveniq.adapters.memory.devices import MemoryDevices
from proveniq.errors import (
    IdempotencyConflict,
    LifecycleConflict,
    ProveniqError,
    Unavailable,
    ValidationError,
)
from proveniq.intake.devices.grouping import grouped as grouped_ingest
from proveniq.intake.devices.ingest import (
    DEAD_LETTER_TOPIC,
    AppendRequest,
    Delivery,
    DeviceIngest,
    Ingested,
    OneAtATime,
)
from proveniq.intake.devices.message import Duplicate, Rejected, check_payload
from proveniq.intake.devices.registry import Device, apply_patch, parse_patch
from proveniq.log.canonical import canonicalize
from proveniq.log.entry import Entry
from proveniq.ports import Message, NewEvent

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
KEY = Ed25519PrivateKey.from_private_bytes(bytes(32))
KEY2 = Ed25519PrivateKey.from_private_bytes(bytes([9]) * 32)


def raw(k: Ed25519PrivateKey) -> bytes:
    return k.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass
class Ledger:
    """LedgerAppender twin: sequences events, honours idempotency keys, refuses on demand."""

    entries: list[tuple[str, str, Entry, dict[str, Any]]] = field(default_factory=list)
    keys: dict[tuple[str, str], tuple[bytes, list[Entry]]] = field(default_factory=dict)
    refuse_subjects: dict[str, ProveniqError] = field(default_factory=dict)
    fail: Unavailable | None = None
    calls: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def append(
        self,
        *,
        tenant: str,
        actor: str,
        events: Sequence[NewEvent],
        idempotency_key: str | None = None,
    ) -> list[Entry]:
        with self.lock:
            self.calls += 1
            if self.fail is not None:
                raise self.fail
            request = hashlib.sha256(
                canonicalize([[e.type, e.subject, dict(e.payload)] for e in events])
            ).digest()
            if idempotency_key is not None and (tenant, idempotency_key) in self.keys:
                first, done = self.keys[(tenant, idempotency_key)]
                if first != request:
                    raise IdempotencyConflict("key used for other events")
                return done
            for e in events:
                if e.subject in self.refuse_subjects:
                    raise self.refuse_subjects[e.subject]
            out = []
            for e in events:
                payload = canonicalize(dict(e.payload))
                entry = Entry(
                    seq=len(self.entries),
                    id=f"ev-{len(self.entries)}",
                    tenant=tenant,
                    type=e.type,
                    subject=e.subject,
                    payload_hash=hashlib.sha256(payload).digest(),
                    recorded_at=T0,
                    prev=bytes(32),
                    occurred_at=e.occurred_at,
                )
                self.entries.append((tenant, actor, entry, dict(e.payload)))
                out.append(entry)
            if idempotency_key is not None:
                self.keys[(tenant, idempotency_key)] = (request, out)
            return out


class BatchLedger(Ledger):
    """The same twin with `append_each`: one call (one lock) per tenant and batch."""

    locks: int = 0

    def append_each(
        self, *, tenant: str, requests: Sequence[AppendRequest]
    ) -> list[list[Entry] | ProveniqError]:
        self.locks += 1
        return OneAtATime(self).append_each(tenant=tenant, requests=requests)


@dataclass
class Bus:
    sent: list[tuple[str, Message]] = field(default_factory=list)
    fail: int = 0

    def send(self, topic: str, messages: Sequence[Message]) -> None:
        if self.fail:
            self.fail -= 1
            raise Unavailable("pubsub down")
        self.sent.extend((topic, m) for m in messages)

    def reasons(self) -> list[tuple[str, str]]:
        return [(m.attributes["reason"], m.attributes["device"]) for _, m in self.sent]


class FlakyStore(MemoryDevices):
    def __init__(self) -> None:
        super().__init__()
        self.fail_records = 0

    def record(self, tenant: str, **kw: Any) -> None:
        if self.fail_records:
            self.fail_records -= 1
            raise Unavailable("database restarting")
        super().record(tenant, **kw)


@dataclass
class World:
    store: FlakyStore
    ledger: Ledger
    bus: Bus
    ingest: DeviceIngest
    clock: list[datetime]

    def deliver(self, *messages: Message, publish: datetime | None = None) -> list[Any]:
        return self.ingest.ingest(
            [
                Delivery(message=m, message_id=str(i), publish_time=publish)
                for i, m in enumerate(messages)
            ]
        )

    def device(self, device_id: str = "locker-1", tenant: str = "acme") -> Device:
        return self.store.get(tenant, device_id)


def make_world(ledger: Ledger | None = None) -> World:
    store = FlakyStore()
    for device_id, tenant in [("locker-1", "acme"), ("tag-2", "acme"), ("locker-3", "globex")]:
        store.register(
            Device(
                device_id=device_id,
                tenant=tenant,
                kind="smart-tag" if device_id.startswith("tag") else "locker",
                public_key=raw(KEY),
                created_at=T0,
                updated_at=T0,
            )
        )
    ledger = ledger if ledger is not None else Ledger()
    bus = Bus()
    clock = [T0]
    ingest = DeviceIngest(store=store, appender=ledger, dead_letters=bus, clock=lambda: clock[0])
    return World(store, ledger, bus, ingest, clock)


@pytest.fixture
def world() -> World:
    return make_world()


def msg(
    counter: int = 1,
    *,
    device: str = "locker-1",
    key: Ed25519PrivateKey = KEY,
    subject: str = "asset-1",
    type: str = "device.reading",
    data: Any = None,
    sent_at: str = "2026-11-24T10:00:00.000000Z",
    raw_data: bytes | None = None,
    **attrs: str,
) -> Message:
    body = {
        "device": device,
        "counter": counter,
        "sent_at": sent_at,
        "type": type,
        "subject": subject,
        "data": {"temp_c": counter} if data is None else data,
    }
    b = raw_data if raw_data is not None else rfc8785.dumps(body)
    sig = base64.b64encode(key.sign(b)).decode()
    return Message(data=b, attributes={"device": device, "signature": sig, **attrs})


def test_a_valid_message_is_appended_with_the_device_as_actor(world: World) -> None:
    m = msg(1)
    [out] = world.deliver(m)
    assert isinstance(out, Ingested)
    [(tenant, actor, entry, payload)] = world.ledger.entries
    assert (tenant, actor, entry.type, entry.subject) == (
        "acme",
        "device:locker-1",
        "device.reading",
        "asset-1",
    )
    assert entry.occurred_at == T0 and out.entry == entry
    assert check_payload(payload, keys=[raw(KEY)]).raw == m.data
    assert world.ledger.keys.keys() == {("acme", "device:locker-1:1")}
    d = world.device()
    assert (d.last_counter, d.last_seen, d.accepted, d.rejected) == (1, T0, 1, {})
    assert world.bus.sent == []


def test_the_same_message_three_times_is_one_entry(world: World) -> None:
    m = msg(1)
    first = world.deliver(m)
    again = world.deliver(m)
    twice_in_one_batch = world.deliver(m, m)
    assert isinstance(first[0], Ingested)
    assert [type(o) for o in again + twice_in_one_batch] == [Duplicate, Duplicate, Duplicate]
    fresh = make_world()
    assert [type(o) for o in fresh.deliver(m, m, m)] == [Ingested, Duplicate, Duplicate]
    for w in (world, fresh):
        assert len(w.ledger.entries) == 1
        assert (w.device().accepted, w.bus.sent) == (1, [])


BAD: list[tuple[str, Any, str]] = [
    ("forged signature", lambda: msg(1, key=KEY2), "bad_signature"),
    ("unknown device", lambda: msg(1, device="ghost"), "unknown_device"),
    ("non-canonical", lambda: msg(raw_data=b'{"device": "locker-1"}'), "non_canonical"),
    (
        "oversized",
        lambda: msg(1, data={"blob": "x" * 17000}),
        "oversized",
    ),
    ("bad schema", lambda: msg(0), "bad_schema"),
    ("stale", lambda: msg(1, sent_at="2026-11-24T09:00:00.000000Z"), "stale_sent_at"),
]


@pytest.mark.parametrize(("case", "make", "reason"), BAD, ids=[c for c, *_ in BAD])
def test_bad_messages_are_dead_lettered_counted_and_nothing_appended(
    world: World, case: str, make: Any, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    m = make()
    [out] = world.deliver(m)
    assert isinstance(out, Rejected) and out.reason == reason
    assert world.ledger.entries == []
    [(topic, dead)] = world.bus.sent
    assert topic == DEAD_LETTER_TOPIC
    assert dead.data == m.data  # kept for inspection; nothing silently dropped
    assert (dead.attributes["reason"], dead.attributes["device"]) == (
        reason,
        m.attributes["device"],
    )
    assert dead.attributes["message_id"] == "0"
    if m.attributes["device"] == "locker-1":
        assert world.device().rejected == {reason: 1}
        assert world.device().last_counter == 0
    assert reason in caplog.text
    assert m.data.decode() not in caplog.text  # logged without the payload


def test_suspended_device_is_refused_and_reactivation_accepts_again(world: World) -> None:
    world.store.update(
        "acme", "locker-1", lambda d: apply_patch(d, parse_patch({"status": "suspended"}), now=T0)
    )
    [out] = world.deliver(msg(1))
    assert isinstance(out, Rejected) and out.reason == "suspended_device"
    world.store.update(
        "acme", "locker-1", lambda d: apply_patch(d, parse_patch({"status": "active"}), now=T0)
    )
    assert isinstance(world.deliver(msg(1))[0], Ingested)
    assert world.device().rejected == {"suspended_device": 1}


def test_replayed_and_reordered_counters_are_refused(world: World) -> None:
    assert isinstance(world.deliver(msg(5))[0], Ingested)
    replayed = world.deliver(msg(5, data={"temp_c": 99}))  # same counter, other bytes
    reordered = world.deliver(msg(4))
    assert [o.reason for o in replayed + reordered] == ["replayed_counter", "replayed_counter"]
    assert len(world.ledger.entries) == 1
    assert world.bus.reasons() == [("replayed_counter", "locker-1")] * 2
    assert world.device().rejected == {"replayed_counter": 2}


def test_one_batch_is_judged_in_counter_order(world: World) -> None:
    out = world.deliver(msg(3), msg(1), msg(2))
    assert all(isinstance(o, Ingested) for o in out)
    assert [e.payload_hash for _, _, e, _ in world.ledger.entries] == [
        o.entry.payload_hash for o in (out[1], out[2], out[0])
    ]
    assert world.device().last_counter == 3


def test_a_crash_between_append_and_counter_update_gives_one_entry(world: World) -> None:
    world.store.fail_records = 1
    with pytest.raises(Unavailable):
        world.deliver(msg(1), msg(2))
    assert len(world.ledger.entries) == 2  # committed, but the counters were not advanced
    assert world.device().last_counter == 0
    out = world.deliver(msg(2), msg(1))  # Pub/Sub redelivers, maybe in another grouping
    assert all(isinstance(o, Ingested) for o in out)
    assert len(world.ledger.entries) == 2  # the idempotency keys answered the first entries
    assert (world.device().last_counter, world.device().accepted) == (2, 2)


def test_transient_ledger_failure_propagates_and_nothing_is_acknowledged(world: World) -> None:
    world.ledger.fail = Unavailable("database unavailable")
    with pytest.raises(Unavailable):
        world.deliver(msg(1), msg(2, key=KEY2))
    assert (world.bus.sent, world.device().rejected, world.device().last_counter) == ([], {}, 0)
    world.ledger.fail = None
    out = world.deliver(msg(1), msg(2, key=KEY2))
    assert [type(o) for o in out] == [Ingested, Rejected]
    assert world.device().rejected == {"bad_signature": 1}


def test_dead_letter_failure_propagates_and_counts_once_on_redelivery(world: World) -> None:
    world.bus.fail = 1
    with pytest.raises(Unavailable):
        world.deliver(msg(1, key=KEY2))
    assert world.device().rejected == {}
    world.deliver(msg(1, key=KEY2))
    assert world.device().rejected == {"bad_signature": 1}
    assert len(world.bus.sent) == 1


def test_a_lifecycle_conflict_dead_letters_only_that_message(world: World) -> None:
    world.ledger.refuse_subjects["sold-asset"] = LifecycleConflict("asset is SOLD")
    world.ledger.refuse_subjects["weird"] = ValidationError("bad payload", field="payload")
    out = world.deliver(
        msg(1),
        msg(2, subject="sold-asset", type="custody.deposited"),
        msg(3),
        msg(4, subject="weird"),
    )
    assert [type(o) for o in out] == [Ingested, Rejected, Ingested, Rejected]
    assert world.bus.reasons() == [
        ("lifecycle_conflict", "locker-1"),
        ("ledger_refused", "locker-1"),
    ]
    assert len(world.ledger.entries) == 2
    d = world.device()
    assert (d.last_counter, d.accepted) == (3, 2)
    assert d.rejected == {"lifecycle_conflict": 1, "ledger_refused": 1}


def test_same_counter_other_bytes_after_a_lost_counter_update_is_a_replay(world: World) -> None:
    world.store.fail_records = 1
    with pytest.raises(Unavailable):
        world.deliver(msg(1))
    [out] = world.deliver(msg(1, data={"temp_c": 42}))  # the counter row was lost, the key was not
    assert isinstance(out, Rejected) and out.reason == "replayed_counter"
    assert len(world.ledger.entries) == 1


def test_a_batch_takes_one_lock_per_tenant() -> None:
    ledger = BatchLedger()
    w = make_world(ledger)
    out = w.deliver(
        *(msg(c) for c in range(1, 6)),
        *(msg(c, device="locker-3") for c in range(1, 4)),
        *(msg(c, device="tag-2") for c in range(1, 3)),
        msg(9, key=KEY2),
    )
    assert sum(isinstance(o, Ingested) for o in out) == 10
    assert ledger.locks == 2  # acme and globex, not one per message
    tenants = {(t, a) for t, a, _, _ in ledger.entries}
    assert tenants == {
        ("acme", "device:locker-1"),
        ("acme", "device:tag-2"),
        ("globex", "device:locker-3"),
    }
    assert (w.device("locker-3", "globex").accepted, w.device("tag-2").accepted) == (3, 2)

    plain = make_world()  # a plain LedgerAppender: correct, one append per message
    plain.deliver(*(msg(c) for c in range(1, 6)))
    assert plain.ledger.calls == 5


def test_a_rotation_overlap_accepts_both_keys_then_only_the_new_one(world: World) -> None:
    patch = parse_patch(
        {"public_key": base64.b64encode(raw(KEY2)).decode(), "key_overlap_seconds": 600}
    )
    world.store.update("acme", "locker-1", lambda d: apply_patch(d, patch, now=T0))
    during = world.deliver(msg(1, key=KEY), msg(2, key=KEY2), publish=T0 + timedelta(minutes=5))
    assert [type(o) for o in during] == [Ingested, Ingested]
    later = "2026-11-24T10:11:00.000000Z"
    after = world.deliver(
        msg(3, key=KEY, sent_at=later),
        msg(4, key=KEY2, sent_at=later),
        publish=T0 + timedelta(minutes=11),
    )
    assert [type(o) for o in after] == [Rejected, Ingested]
    assert world.bus.reasons() == [("bad_signature", "locker-1")]


def test_skew_is_judged_against_the_publish_time_not_the_redelivery_time(world: World) -> None:
    world.clock[0] = T0 + timedelta(hours=6)  # redelivered after a long outage
    assert isinstance(world.deliver(msg(1), publish=T0 + timedelta(seconds=1))[0], Ingested)
    [late] = world.deliver(msg(2))  # no publish time known: the clock decides
    assert isinstance(late, Rejected) and late.reason == "stale_sent_at"


def test_delivery_of_reads_pubsub_publish_times() -> None:
    m = msg(1)
    d = Delivery.of(message=m, message_id="7", publish_time="2026-11-24T10:00:01.123456789Z")
    assert d.publish_time == T0 + timedelta(seconds=1, microseconds=123456)
    assert Delivery.of(message=m, publish_time="2026-11-24T10:00:01Z").publish_time == (
        T0 + timedelta(seconds=1)
    )
    assert Delivery.of(message=m, publish_time="").publish_time is None
    assert Delivery.of(message=m, publish_time="yesterday").publish_time is None


def test_grouped_ingest_sequences_concurrent_deliveries_together() -> None:
    ledger = BatchLedger()
    w = make_world(ledger)
    grouped = grouped_ingest(w.ingest, max_size=64, wait=0.02, adaptive=False)
    outcomes: dict[int, Any] = {}
    start = threading.Barrier(40)

    def one(c: int) -> None:
        start.wait()
        outcomes[c] = grouped.submit(Delivery(message=msg(c, key=KEY if c != 13 else KEY2)))

    threads = [threading.Thread(target=one, args=(c,)) for c in range(1, 41)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(outcomes) == 40
    assert isinstance(outcomes[13], Rejected) and outcomes[13].reason == "bad_signature"
    assert sum(isinstance(o, Ingested) for o in outcomes.values()) == 39
    assert grouped.groups < 40 and ledger.locks == grouped.groups
    assert len(ledger.entries) == 39


def test_grouped_ingest_hands_the_batch_error_to_each_submitter() -> None:
    w = make_world()
    w.ledger.fail = Unavailable("down")
    grouped = grouped_ingest(w.ingest, wait=0)
    with pytest.raises(Unavailable):
        grouped.submit(Delivery(message=msg(1)))
    w.ledger.fail = None
    assert isinstance(grouped.submit(Delivery(message=msg(1))), Ingested)
