"""device_ingest as Eventarc drives it: binary-mode CloudEvents POSTed to the function's own
functions-framework app (`create_app(...).test_client()`), against a real PostgreSQL.

A 2xx answer acknowledges the Pub/Sub message. Every refused message must be acknowledged,
published to `device-telemetry-dead-letter` with attributes `reason` and `device`, counted for
its device, and leave the ledger untouched; a redelivered message must not append twice.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cloudevents.http import CloudEvent
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from proveniq.edge.cloudevents import pubsub_event
from proveniq.intake.devices.ingest import DEAD_LETTER_TOPIC, TELEMETRY_TOPIC
from proveniq.intake.devices.message import MAX_MESSAGE_BYTES, build, check_payload
from proveniq.intake.devices.registry import Device, apply_patch, encode_key, parse_patch
from proveniq.log.timefmt import format_time
from proveniq.ports import Message

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "functions" / "device_ingest" / "main.py"


def raw_key(k: Ed25519PrivateKey) -> bytes:
    return k.public_key().public_bytes_raw()


@dataclass
class Function:
    """The device_ingest app, its runtime, the dead-letter topic's messages, and SQL access."""

    client: Any
    rt: Any
    pg: Any
    database: str
    tenant: str
    dead: list[Message] = field(default_factory=list)
    ids: Iterator[int] = field(default_factory=lambda: iter(range(1, 1_000_000)))

    def deliver(
        self,
        message: Message,
        *,
        publish_time: datetime | None = None,
        message_id: str = "",
        expect: int = 200,
    ) -> None:
        """POST one Pub/Sub message as Eventarc does (binary mode); 200 acknowledges it."""
        attributes, data = pubsub_event(
            project="proveniq-test",
            topic=TELEMETRY_TOPIC,
            subscription="device-telemetry-device-ingest",
            message=message,
            message_id=message_id or str(next(self.ids)),
            publish_time=format_time(publish_time or datetime.now(UTC)),
        )
        headers = {f"ce-{k}": v for k, v in attributes.items() if k != "datacontenttype"}
        headers["Content-Type"] = "application/json"
        resp = self.client.post("/", data=json.dumps(data), headers=headers)
        assert resp.status_code == expect, (resp.status_code, resp.get_data(as_text=True))

    def dead_letters(self) -> list[Message]:
        assert self.rt.bus.flush(timeout=10)
        return list(self.dead)

    def events(self) -> list[tuple[int, str, str, dict[str, Any]]]:
        conn = self.pg.connect(database=self.database)
        try:
            cur = conn.cursor()
            cur.execute("SELECT seq, actor, type, convert_from(payload, 'UTF8') FROM events")
            rows = cur.fetchall()
            conn.commit()
        finally:
            conn.close()
        return [(seq, actor, kind, json.loads(p)) for seq, actor, kind, p in sorted(rows)]

    def register(self, device_id: str, key: Ed25519PrivateKey, **kw: Any) -> Device:
        now = datetime.now(UTC)
        device = Device(
            device_id=device_id,
            tenant=self.tenant,
            kind=kw.pop("kind", "locker"),
            public_key=raw_key(key),
            created_at=now,
            updated_at=now,
            **kw,
        )
        registered: Device = self.rt.devices.store.register(device)
        return registered

    def device(self, device_id: str) -> Device:
        found: Device = self.rt.devices.store.get(self.tenant, device_id)
        return found


@pytest.fixture
def fn(
    pg_server: Any, database: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Function]:
    from functions_framework import create_app

    from proveniq.app.runtime import release_runtime, runtime

    monkeypatch.setenv(
        "PROVENIQ_DATABASE_URL", pg_server.url(user="proveniq_app", database=database)
    )
    monkeypatch.setenv("PROVENIQ_STATE_DIR", str(tmp_path / "state"))
    app = create_app(target="device_ingest", source=str(SOURCE))  # type: ignore[no-untyped-call]
    rt = runtime()
    tenant = rt.accounts.create_partner(name="acme", tier="internal").id
    f = Function(app.test_client(), rt, pg_server, database, tenant)
    rt.bus.subscribe(
        DEAD_LETTER_TOPIC,
        lambda ev: f.dead.append(
            Message(
                data=base64.b64decode(ev.data["message"]["data"]),
                attributes=ev.data["message"]["attributes"],
            )
        ),
        subscription="dead-letter-recorder",
    )
    yield f
    release_runtime()  # before the database is dropped


def reading(
    key: Ed25519PrivateKey,
    device: str,
    counter: int,
    *,
    subject: str = "asset-0001",
    sent_at: datetime | None = None,
    **data: Any,
) -> Message:
    return build(
        device=device,
        counter=counter,
        sent_at=sent_at or datetime.now(UTC),
        type="device.reading",
        subject=subject,
        data={"temp_c": 21.5, **data},
        sign=key.sign,
    )


def signed(key: Ed25519PrivateKey, device: str, data: bytes) -> Message:
    """Arbitrary bytes, correctly signed by `key` (to get past the signature check)."""
    signature = base64.b64encode(key.sign(data)).decode()
    return Message(data=data, attributes={"device": device, "signature": signature})


def test_a_valid_reading_is_appended_with_the_device_as_actor(fn: Function) -> None:
    key = Ed25519PrivateKey.generate()
    fn.register("locker-1", key)
    message = reading(key, "locker-1", 7)
    fn.deliver(message)
    [(seq, actor, kind, payload)] = fn.events()
    assert (seq, actor, kind) == (0, "device:locker-1", "device.reading")
    assert payload["message"].encode() == message.data
    assert check_payload(payload, keys=[raw_key(key)]).counter == 7
    assert fn.dead_letters() == []
    d = fn.device("locker-1")
    assert (d.last_counter, d.accepted, dict(d.rejected)) == (7, 1, {})


@pytest.mark.parametrize(
    "case",
    [
        "forged_signature",
        "unknown_device",
        "suspended_device",
        "replayed_counter",
        "reordered_counter",
        "non_canonical",
        "oversized",
    ],
)
def test_a_bad_message_is_dead_lettered_with_its_reason_and_nothing_is_appended(
    fn: Function, case: str
) -> None:
    key = Ed25519PrivateKey.generate()
    fn.register("locker-1", key)
    fn.deliver(reading(key, "locker-1", 10))  # the device's last accepted counter is 10
    before = fn.events()
    assert len(before) == 1

    device, reason = "locker-1", case
    if case == "forged_signature":
        message, reason = reading(Ed25519PrivateKey.generate(), "locker-1", 11), "bad_signature"
    elif case == "unknown_device":
        device = "locker-404"
        message = reading(Ed25519PrivateKey.generate(), device, 1)
    elif case == "suspended_device":
        fn.rt.devices.store.update(
            fn.tenant,
            "locker-1",
            lambda d: apply_patch(d, parse_patch({"status": "suspended"}), now=datetime.now(UTC)),
        )
        message = reading(key, "locker-1", 11)
    elif case == "replayed_counter":  # counter 10 again, other bytes (a replay, not a redelivery)
        message = reading(key, "locker-1", 10, temp_c=99.0)
    elif case == "reordered_counter":  # an older counter arriving after a newer one
        message, reason = reading(key, "locker-1", 9), "replayed_counter"
    elif case == "non_canonical":  # signed, well-formed, but not the RFC 8785 bytes
        value = json.loads(reading(key, "locker-1", 11).data)
        message = signed(key, "locker-1", json.dumps(value, indent=1).encode())
    else:
        message = reading(key, "locker-1", 11, filler="x" * MAX_MESSAGE_BYTES)
        assert len(message.data) > MAX_MESSAGE_BYTES

    fn.deliver(message, message_id="m-bad")

    [dead] = fn.dead_letters()
    assert dead.attributes["reason"] == reason
    assert dead.attributes["device"] == device
    assert dead.attributes["message_id"] == "m-bad"
    assert dead.data == message.data  # the original data is kept for inspection
    assert fn.events() == before, "a refused message must not be appended"
    if case != "unknown_device":
        d = fn.device("locker-1")
        assert (d.last_counter, d.accepted, dict(d.rejected)) == (10, 1, {reason: 1})


def test_the_same_message_delivered_three_times_is_one_entry(fn: Function) -> None:
    key = Ed25519PrivateKey.generate()
    fn.register("tag-1", key, kind="smart-tag", asset="asset-0001")
    message = reading(key, "tag-1", 3)
    publish_time = datetime.now(UTC)
    for attempt in range(3):  # Pub/Sub redelivers with the same id and publish time
        fn.deliver(message, publish_time=publish_time, message_id="m-1")
        assert len(fn.events()) == 1, f"attempt {attempt + 1} appended again"
    fn.deliver(reading(key, "tag-1", 4))
    assert [p["counter"] for _, _, _, p in fn.events()] == [3, 4]
    assert fn.dead_letters() == []
    d = fn.device("tag-1")
    assert (d.last_counter, d.accepted, dict(d.rejected)) == (4, 2, {})


def test_a_transient_failure_after_the_append_is_redelivered_without_a_second_entry(
    fn: Function, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database goes away between the append (committed) and the counter bookkeeping:
    the function answers 500, so Pub/Sub redelivers; the redelivery appends nothing new."""
    from proveniq.errors import Unavailable

    key = Ed25519PrivateKey.generate()
    fn.register("locker-5", key)
    store = fn.rt.devices.store
    real_record = store.record
    failures = iter([Unavailable("database connection lost")])

    def flaky_record(*args: Any, **kw: Any) -> None:
        for e in failures:
            raise e
        real_record(*args, **kw)

    monkeypatch.setattr(store, "record", flaky_record)
    message = reading(key, "locker-5", 1)
    publish_time = datetime.now(UTC)
    fn.deliver(message, publish_time=publish_time, message_id="m-t", expect=500)
    assert len(fn.events()) == 1  # committed, but not acknowledged
    assert fn.device("locker-5").last_counter == 0
    fn.deliver(message, publish_time=publish_time, message_id="m-t")  # the redelivery
    assert len(fn.events()) == 1
    d = fn.device("locker-5")
    assert (d.last_counter, d.accepted, dict(d.rejected)) == (1, 1, {})
    assert fn.dead_letters() == []


def test_a_key_rotation_overlap_accepts_both_keys_then_only_the_new_one(fn: Function) -> None:
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    fn.register("locker-2", old)
    fn.deliver(reading(old, "locker-2", 1))
    rotated = fn.rt.devices.store.update(
        fn.tenant,
        "locker-2",
        lambda d: apply_patch(
            d,
            parse_patch({"public_key": encode_key(raw_key(new)), "key_overlap_seconds": 2}),
            now=datetime.now(UTC),
        ),
    )
    assert rotated.previous_key == raw_key(old) and rotated.previous_key_until is not None

    # during the overlap: a message still signed by the old key, and the new key's
    fn.deliver(reading(old, "locker-2", 2))
    fn.deliver(reading(new, "locker-2", 3))
    assert fn.dead_letters() == []

    # after it (judged by the publish time): the old key's messages are forged
    while datetime.now(UTC) <= rotated.previous_key_until + timedelta(milliseconds=50):
        time.sleep(0.1)
    fn.deliver(reading(old, "locker-2", 4), message_id="m-old")
    fn.deliver(reading(new, "locker-2", 5))

    [dead] = fn.dead_letters()
    assert dead.attributes["reason"] == "bad_signature"
    assert dead.attributes["message_id"] == "m-old"
    rows = fn.events()
    assert [p["counter"] for _, _, _, p in rows] == [1, 2, 3, 5]
    signers = [p["public_key"] for _, _, _, p in rows]
    assert signers == [encode_key(raw_key(k)) for k in (old, old, new, new)]
    for _, _, _, p in rows:  # each payload names the key that verified it, and it verifies
        check_payload(p, keys=[raw_key(old), raw_key(new)])
    d = fn.device("locker-2")
    assert (d.last_counter, d.accepted, dict(d.rejected)) == (5, 4, {"bad_signature": 1})


def test_a_malformed_cloud_event_is_acknowledged_and_dead_lettered(fn: Function) -> None:
    attributes = {
        "specversion": "1.0",
        "type": "google.cloud.pubsub.topic.v1.messagePublished",
        "source": "//pubsub.googleapis.com/projects/proveniq-test/topics/device-telemetry",
        "id": "m-garbled",
    }
    headers = {f"ce-{k}": v for k, v in attributes.items()}
    for body in ({"message": {"data": "***not base64***"}}, {"no": "message"}):
        resp = fn.client.post(
            "/", data=json.dumps(body), headers={**headers, "Content-Type": "application/json"}
        )
        assert resp.status_code == 200, resp.get_data(as_text=True)  # acknowledged
    dead = fn.dead_letters()
    assert [(m.attributes["reason"], m.attributes["device"]) for m in dead] == [
        ("bad_event", ""),
        ("bad_event", ""),
    ]
    assert b"not base64" in dead[0].data  # what the event carried is kept
    assert fn.events() == []


def test_a_structured_mode_event_is_ingested_too(fn: Function) -> None:
    from cloudevents.conversion import to_structured

    key = Ed25519PrivateKey.generate()
    fn.register("locker-3", key)
    attributes, data = pubsub_event(
        project="proveniq-test",
        topic=TELEMETRY_TOPIC,
        subscription="s",
        message=reading(key, "locker-3", 1),
        message_id="m-s",
        publish_time=format_time(datetime.now(UTC)),
    )
    headers, body = to_structured(CloudEvent(attributes, data))
    resp = fn.client.post("/", data=body, headers=dict(headers))
    assert resp.status_code == 200
    assert [a for _, a, _, _ in fn.events()] == ["device:locker-3"]
