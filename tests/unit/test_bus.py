"""The in-process bus delivers Eventarc-shaped CloudEvents in order, retries, dead-letters;
`proveniq.cloudevents` decodes what it builds and rejects malformed events."""

from __future__ import annotations

import base64
import threading
import time
from typing import Any

import pytest
from cloudevents.http import CloudEvent

from proveniq.adapters.local.bus import InProcessBus
from proveniq.edge.cloudevents import (
    PUBSUB_MESSAGE_PUBLISHED,
    pubsub_delivery_from_cloud_event,
    pubsub_event,
    pubsub_message_from_cloud_event,
)
from proveniq.errors import Unavailable, ValidationError
from proveniq.ports import Message


@pytest.fixture
def bus() -> Any:
    b = InProcessBus(project="demo-local", attempts=3, backoff_seconds=0.001)
    yield b
    b.close()


def test_delivers_eventarc_shaped_cloud_events_in_order(bus: InProcessBus) -> None:
    seen: list[CloudEvent] = []
    sub = bus.subscribe("ledger-events", seen.append, subscription="relay")
    messages = [
        Message(data=f"m{i}".encode(), attributes={"n": str(i)}, ordering_key="k" if i % 2 else "")
        for i in range(50)
    ]
    bus.send("ledger-events", messages[:20])
    bus.send("ledger-events", messages[20:])
    assert bus.flush(5)

    assert sub == "relay"
    assert [pubsub_message_from_cloud_event(e) for e in seen] == messages
    first = seen[1]
    assert first["type"] == "google.cloud.pubsub.topic.v1.messagePublished"
    assert first["source"] == "//pubsub.googleapis.com/projects/demo-local/topics/ledger-events"
    assert first["specversion"] == "1.0"
    msg = first.data["message"]
    assert base64.b64decode(msg["data"]) == b"m1"
    assert msg["attributes"] == {"n": "1"}
    assert msg["orderingKey"] == "k"
    assert "orderingKey" not in seen[0].data["message"]
    assert msg["messageId"] == first["id"] and msg["publishTime"] == first["time"]
    assert first.data["subscription"] == "projects/demo-local/subscriptions/relay"
    ids = [e["id"] for e in seen]
    assert len(set(ids)) == len(ids)


def test_each_subscription_gets_messages_published_after_it(bus: InProcessBus) -> None:
    a: list[bytes] = []
    b: list[bytes] = []
    bus.send("t", [Message(data=b"dropped")])  # no subscription yet: dropped, as on Pub/Sub
    bus.subscribe("t", lambda e: a.append(pubsub_message_from_cloud_event(e).data))
    bus.send("t", [Message(data=b"1")])
    bus.subscribe("t", lambda e: b.append(pubsub_message_from_cloud_event(e).data))
    bus.send("t", [Message(data=b"2")])
    assert bus.flush(5)
    assert a == [b"1", b"2"]
    assert b == [b"2"]


def test_handler_failure_is_retried_then_succeeds(bus: InProcessBus) -> None:
    calls: list[str] = []

    def flaky(event: CloudEvent) -> None:
        calls.append(event["id"])
        if len(calls) < 3:
            raise RuntimeError("transient")

    bus.subscribe("t", flaky)
    bus.send("t", [Message(data=b"x")])
    assert bus.flush(5)
    assert len(calls) == 3 and len(set(calls)) == 1
    assert bus.dead_letters == []


def test_persistent_failure_is_dead_lettered_and_delivery_goes_on(
    bus: InProcessBus, caplog: pytest.LogCaptureFixture
) -> None:
    delivered: list[bytes] = []

    def handler(event: CloudEvent) -> None:
        data = pubsub_message_from_cloud_event(event).data
        if data == b"poison":
            raise ValueError("cannot handle")
        delivered.append(data)

    bus.subscribe("t", handler, subscription="s")
    bus.send("t", [Message(data=b"a"), Message(data=b"poison"), Message(data=b"b")])
    assert bus.flush(5)

    assert delivered == [b"a", b"b"]
    [dead] = bus.dead_letters
    assert dead.topic == "t" and dead.subscription == "s" and dead.attempts == 3
    assert isinstance(dead.error, ValueError)
    assert pubsub_message_from_cloud_event(dead.event).data == b"poison"
    assert "dead-lettered" in caplog.text


def test_close_drains_then_rejects_publish() -> None:
    bus = InProcessBus(backoff_seconds=0.001)
    got: list[bytes] = []
    gate = threading.Event()

    def slow(event: CloudEvent) -> None:
        gate.wait(5)
        got.append(pubsub_message_from_cloud_event(event).data)

    bus.subscribe("t", slow)
    bus.send("t", [Message(data=str(i).encode()) for i in range(5)])
    threading.Timer(0.05, gate.set).start()
    started = time.monotonic()
    bus.close()
    assert got == [b"0", b"1", b"2", b"3", b"4"]
    assert time.monotonic() - started < 5
    with pytest.raises(Unavailable):
        bus.send("t", [Message(data=b"late")])


def test_topics_are_delivered_independently(bus: InProcessBus) -> None:
    blocked = threading.Event()
    other: list[bytes] = []
    bus.subscribe("slow", lambda e: blocked.wait(5))
    bus.subscribe("fast", lambda e: other.append(pubsub_message_from_cloud_event(e).data))
    bus.send("slow", [Message(data=b"s")])
    bus.send("fast", [Message(data=b"f")])
    deadline = time.monotonic() + 5
    while not other and time.monotonic() < deadline:
        time.sleep(0.005)
    assert other == [b"f"]
    blocked.set()
    assert bus.flush(5)


def test_publish_rejects_non_bytes_data(bus: InProcessBus) -> None:
    bus.subscribe("t", lambda e: None)
    with pytest.raises(ValidationError):
        bus.send("t", [Message(data="text")])  # type: ignore[arg-type]


# -- proveniq.cloudevents ---------------------------------------------------------------------


def _event(**message: Any) -> CloudEvent:
    attributes, data = pubsub_event(
        project="p",
        topic="ledger-events",
        subscription="s",
        message=Message(data=b"\x00\xffpayload", attributes={"a": "1"}, ordering_key="subj"),
        message_id="42",
        publish_time="2025-01-02T03:04:05.123456Z",
    )
    data["message"].update(message)
    return CloudEvent(attributes, data)


def test_round_trip_through_a_cloud_event() -> None:
    m = Message(data=b"\x00\x01binary\xff", attributes={"k": "v", "type": "x"}, ordering_key="o")
    attributes, data = pubsub_event(
        project="proj",
        topic="top",
        subscription="sub",
        message=m,
        message_id="7",
        publish_time="2025-01-02T03:04:05.000001Z",
    )
    d = pubsub_delivery_from_cloud_event(CloudEvent(attributes, data))
    assert d.message == m
    assert d.message_id == "7"
    assert d.publish_time == "2025-01-02T03:04:05.000001Z"
    assert d.topic == "projects/proj/topics/top"
    assert d.subscription == "projects/proj/subscriptions/sub"
    assert attributes["type"] == PUBSUB_MESSAGE_PUBLISHED


def test_decodes_an_eventarc_event_with_json_bytes_data_and_no_optional_fields() -> None:
    event = CloudEvent(
        {
            "type": PUBSUB_MESSAGE_PUBLISHED,
            "source": "//pubsub.googleapis.com/projects/p/topics/t",
            "id": "9",
            "time": "2025-01-01T00:00:00Z",
        },
        b'{"message": {"message_id": "9"}, "subscription": "projects/p/subscriptions/s"}',
    )
    d = pubsub_delivery_from_cloud_event(event)
    assert d.message == Message(data=b"")
    assert d.message_id == "9" and d.publish_time == "2025-01-01T00:00:00Z"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"type": "google.cloud.storage.object.v1.finalized"}, "type"),
        ({"source": "//storage.googleapis.com/projects/p/buckets/b"}, "source"),
    ],
)
def test_rejects_events_that_are_not_pubsub(change: dict[str, str], field: str) -> None:
    event = _event()
    attributes = {**event.get_attributes(), **change}
    with pytest.raises(ValidationError) as e:
        pubsub_message_from_cloud_event(CloudEvent(attributes, event.get_data()))
    assert e.value.field == field


@pytest.mark.parametrize(
    ("message", "field"),
    [
        ({"data": "not base64!"}, "data.message.data"),
        ({"data": 12}, "data.message.data"),
        ({"attributes": {"a": 1}}, "data.message.attributes"),
        ({"attributes": ["a"]}, "data.message.attributes"),
        ({"orderingKey": 5}, "data.message.orderingKey"),
    ],
)
def test_rejects_malformed_messages(message: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as e:
        pubsub_message_from_cloud_event(_event(**message))
    assert e.value.field == field


@pytest.mark.parametrize("data", [None, "not json", b"[1, 2]", {"message": "x"}, {"other": 1}])
def test_rejects_malformed_data(data: Any) -> None:
    event = CloudEvent(
        {"type": PUBSUB_MESSAGE_PUBLISHED, "source": "//pubsub.googleapis.com/projects/p/topics/t"},
        data,
    )
    with pytest.raises(ValidationError):
        pubsub_message_from_cloud_event(event)


def test_rejects_objects_that_are_not_cloud_events() -> None:
    with pytest.raises(ValidationError):
        pubsub_message_from_cloud_event({"type": PUBSUB_MESSAGE_PUBLISHED})  # type: ignore[arg-type]
